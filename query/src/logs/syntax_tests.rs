use super::*;

fn parsed(q: &str) -> LogFilter {
    let mut f = LogFilter::default();
    apply(q, &mut f).unwrap();
    f
}

fn words(t: &str) -> LogExpr {
    LogExpr::Cond(Cond::Words(Term::new(t)))
}

#[test]
fn parses_terms_phrases_fields_and_severities() {
    let f = parsed(
        r#"timeout "payment \"declined\"" service:checkout severity>=warn attributes.http.status_code:500 user:u1"#,
    );
    assert_eq!(f.terms, vec!["timeout", r#"payment "declined""#]);
    assert_eq!(f.service.as_deref(), Some("checkout"));
    assert_eq!((f.min_severity, f.max_severity), (Some(13), None));
    assert_eq!(
        f.attributes,
        vec![
            ("http.status_code".to_string(), "500".to_string()),
            ("user".to_string(), "u1".to_string())
        ]
    );
    assert_eq!(f.expr, None, "plain conditions need no expression");
    let f = parsed("level:error trace_id:4bf92f3577b34da6a3ce929d0e0e4736 https://x/y");
    assert_eq!((f.min_severity, f.max_severity), (Some(17), Some(20)));
    assert!(f.trace_id.is_some());
    assert_eq!(f.terms, vec!["https://x/y"]);
    assert_eq!(parsed("severity<=9").max_severity, Some(9));
    assert_eq!(parsed("severity<warn").max_severity, Some(12));
    assert_eq!(parsed("severity>warn").min_severity, Some(17));
    let f = parsed("severity:[info TO error]");
    assert_eq!((f.min_severity, f.max_severity), (Some(9), Some(20)));
}

#[test]
fn boolean_operators_group_as_lucene_does() {
    // AND binds tighter than OR; juxtaposition is AND.
    let e = parse("a b OR c AND NOT d").unwrap();
    assert_eq!(
        e,
        LogExpr::Any(vec![
            LogExpr::All(vec![words("a"), words("b")]),
            LogExpr::All(vec![words("c"), LogExpr::Not(Box::new(words("d")))]),
        ])
    );
    let e = parse(r#"-(x OR "y z") -w"#).unwrap();
    assert_eq!(
        e,
        LogExpr::All(vec![
            LogExpr::Not(Box::new(LogExpr::Any(vec![words("x"), words("y z")]))),
            LogExpr::Not(Box::new(words("w"))),
        ])
    );
    // Plain conditions at the top go to the filter's fields, the rest to its expression.
    let f = parsed("service:web (error OR warn) -debug");
    assert_eq!(f.service.as_deref(), Some("web"));
    assert_eq!(
        f.expr,
        Some(LogExpr::All(vec![
            LogExpr::Any(vec![words("error"), words("warn")]),
            LogExpr::Not(Box::new(words("debug"))),
        ]))
    );
    // Lower-case words and a lone dash are words.
    assert_eq!(
        parse("a or b").unwrap(),
        LogExpr::All(vec![words("a"), words("or"), words("b")])
    );
    assert_eq!(
        parse("a - b").unwrap(),
        LogExpr::All(vec![words("a"), words("-"), words("b")])
    );
}

#[test]
fn wildcards_and_ranges() {
    let f = parsed(
        r#"time* service:check* route:"/api/*" status:[200 TO 299] took_ms>=1.5 user:{a TO *}"#,
    );
    let Some(LogExpr::All(xs)) = f.expr else {
        panic!("{:?}", f.expr)
    };
    let glob = |p: &str| Glob::new(p).unwrap();
    assert_eq!(xs[0], LogExpr::Cond(Cond::TokenGlob(glob("time*"))));
    assert_eq!(
        xs[1],
        LogExpr::Cond(Cond::Service(ValueTest::Glob(glob("check*"))))
    );
    assert_eq!(
        xs[2],
        LogExpr::Cond(Cond::Attribute(
            "status".into(),
            ValueTest::Range(
                Bound::Included(Scalar::Num(200.0)),
                Bound::Included(Scalar::Num(299.0))
            )
        ))
    );
    assert_eq!(
        xs[3],
        LogExpr::Cond(Cond::Attribute(
            "took_ms".into(),
            ValueTest::Range(Bound::Included(Scalar::Num(1.5)), Bound::Unbounded)
        ))
    );
    assert_eq!(
        xs[4],
        LogExpr::Cond(Cond::Attribute(
            "user".into(),
            ValueTest::Range(Bound::Excluded(Scalar::Text("a".into())), Bound::Unbounded)
        ))
    );
    // A quoted value with a star is that text.
    assert_eq!(
        f.attributes,
        vec![("route".to_string(), "/api/*".to_string())]
    );
    // Upper case in a wildcard word is ignored, as in words.
    assert_eq!(
        parse("TIME*").unwrap(),
        LogExpr::Cond(Cond::TokenGlob(glob("time*")))
    );
}

#[test]
fn bad_queries_are_errors_that_name_them() {
    for (q, want) in [
        (r#""open"#, "not closed"),
        ("severity:loud", "unknown severity"),
        ("service:", "no value after service:"),
        ("trace_id:xyz", "invalid trace_id"),
        ("trace_id>=ab", "only compared with :"),
        ("(a OR b", "parenthesis is not closed"),
        ("a)", "no opening one"),
        ("a OR", "OR needs a condition on each side"),
        ("AND a", "AND needs a condition on each side"),
        ("a NOT", "NOT needs a condition after it"),
        ("status:[1 TO", "invalid range for status"),
        ("status:[1 2]", "expected [a TO b]"),
        ("/api/*", "a wildcard applies to one word"),
        (&"(".repeat(100_000), "nested deeper than 64"),
        (&"NOT ".repeat(100), "nested deeper than 64"),
    ] {
        let e = apply(q, &mut LogFilter::default())
            .err()
            .unwrap_or_else(|| panic!("{q} parsed"))
            .to_string();
        assert!(e.contains(want), "{q}: {e}");
    }
}
