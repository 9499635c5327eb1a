//! Golden tests: `golden/parse.txt` (query → canonical text or error) and
//! `golden/eval.txt` (query → its result over the fixed lines below). A log query answers
//! with its lines, oldest first, as `@second service {parsed labels} line`; a metric query
//! with its series over the steps 10 s, 20 s and 30 s, as `{labels} [v v v]` (`_`: no point).
//! `LOUPE_UPDATE_GOLDEN=1` rewrites the answers.

use std::collections::HashMap;
use std::sync::Arc;

use loupe_storage::logs::scan::Visit;
use loupe_storage::logs::{LogFilter, LogRecord};
use loupe_storage::model::{AttrValue, Attrs, Resource, Scope};

use super::ast::Query;
use super::eval::{Collect, Steps, evaluate, leaf};
use super::labels::Cat;
use super::{Plan, parse};

pub(crate) const S: i64 = 1_000_000_000;
pub(crate) const T0: i64 = 1_700_000_000 * S;

fn resource(service: &str, pod: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.into(),
        attributes: Attrs(vec![
            ("service.name".into(), AttrValue::Str(service.into())),
            ("k8s.namespace.name".into(), AttrValue::Str("shop".into())),
            ("k8s.pod.name".into(), AttrValue::Str(pod.into())),
            ("host.arch".into(), AttrValue::Str("amd64".into())),
        ]),
    })
}

/// Thirty lines, one a second: JSON from web, logfmt from api, nginx-like text from db.
pub(crate) fn lines() -> Vec<LogRecord> {
    let scope = Arc::new(Scope::default());
    (0..30)
        .map(|i| {
            let (service, body, severity) = match i % 3 {
                0 => (
                    "web",
                    format!(
                        r#"{{"level":"{}","method":"GET","path":"/items/{i}","status":{},"duration":"{}ms","req":{{"id":"r{i}"}}}}"#,
                        if i % 9 == 0 { "error" } else { "info" },
                        if i % 9 == 0 { 500 } else { 200 },
                        i * 10
                    ),
                    if i % 9 == 0 { 17 } else { 9 },
                ),
                1 => (
                    "api",
                    format!(r#"level=warn msg="slow query" took={i}ms user=u{} size={i}KB"#, i % 4),
                    13,
                ),
                _ => (
                    "db",
                    format!(r#"10.0.0.{} - - "POST /q HTTP/1.1" 201 {}"#, i % 4, i * 100),
                    0,
                ),
            };
            LogRecord {
                time_unix_nano: T0 + i * S,
                observed_unix_nano: T0 + i * S,
                severity_number: severity,
                severity_text: String::new(),
                body: AttrValue::Str(body),
                attributes: Attrs(if i % 5 == 0 {
                    vec![("http.route".into(), AttrValue::Str("/items".into()))]
                } else {
                    vec![]
                }),
                trace_id: (i % 10 == 3).then_some([i as u8; 16]),
                span_id: (i % 10 == 3).then_some([i as u8; 8]),
                flags: 0,
                event_name: String::new(),
                resource: resource(service, &format!("{service}-{}", i % 2)),
                scope: scope.clone(),
            }
        })
        .collect()
}

#[test]
fn parse_golden() {
    crate::golden::check("src/logql/golden", "parse.txt", |q| match parse(q) {
        Ok(query) => {
            let printed = query.to_string();
            assert_eq!(parse(&printed).as_ref(), Ok(&query), "{q} → {printed}");
            printed
        }
        Err(e) => format!("error: {e}"),
    });
}

fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.4}")
    }
}

#[test]
fn eval_golden() {
    let records = lines();
    crate::golden::check("src/logql/golden", "eval.txt", |q| {
        let query = match parse(q) {
            Ok(q) => q,
            Err(e) => return format!("error: {e}"),
        };
        match query {
            Query::Log(log) => {
                let plan = Plan::new(log);
                // What the storage would offer must hold every line the pipeline keeps.
                let narrowed = {
                    let mut f = LogFilter {
                        start_unix_nano: i64::MIN,
                        end_unix_nano: i64::MAX,
                        ..LogFilter::default()
                    };
                    plan.narrow(&mut f);
                    f
                };
                let terms = narrowed.prepared_terms();
                let mut out = Vec::new();
                for r in &records {
                    if let Some(e) = plan.entry(r) {
                        assert!(
                            narrowed.matches(r, &terms),
                            "{q}: narrowing lost {:?}",
                            e.line
                        );
                        let parsed: Vec<String> = e
                            .labels
                            .0
                            .iter()
                            .filter(|(_, (_, c))| *c == Cat::Parsed)
                            .map(|(k, (v, _))| format!("{k}={v:?}"))
                            .collect();
                        out.push(format!(
                            "@{} {} {{{}}} {}",
                            (e.time_unix_nano - T0) / S,
                            e.labels.get("service_name").unwrap_or_default(),
                            parsed.join(", "),
                            e.line
                        ));
                    }
                }
                if out.is_empty() {
                    "none".into()
                } else {
                    out.join(" ; ")
                }
            }
            Query::Metric(m) => {
                let agg = Arc::new(leaf(&m).clone());
                let mut c = Collect::new(Plan::new(agg.log.clone()), agg);
                for r in &records {
                    c.visit(r);
                }
                let series: HashMap<_, _> = match c.finish() {
                    Ok(s) => s,
                    Err(e) => return format!("error: {e}"),
                };
                let steps = Steps {
                    start: T0 + 10 * S,
                    end: T0 + 30 * S,
                    step: 10 * S,
                };
                match evaluate(&m, series, steps) {
                    Ok(result) if result.is_empty() => "none".into(),
                    Ok(result) => result
                        .iter()
                        .map(|(l, points)| {
                            let vs: Vec<String> = (0..steps.count())
                                .map(|i| {
                                    points
                                        .iter()
                                        .find(|(t, _)| *t == steps.at(i))
                                        .map_or("_".into(), |(_, v)| show(*v))
                                })
                                .collect();
                            format!("{} [{}]", super::eval::series_text(l), vs.join(" "))
                        })
                        .collect::<Vec<_>>()
                        .join(" ; "),
                    Err(e) => format!("error: {e}"),
                }
            }
        }
    });
}
