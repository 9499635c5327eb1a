//! Golden tests: `golden/parse.txt` (query → canonical tree or error) and `golden/eval.txt`
//! (query → the spans it matches in the fixed traces below). Each case is a query line and an
//! `=> ` line; `LOUPE_UPDATE_GOLDEN=1` rewrites the `=> ` lines from what the code now says.

use std::sync::Arc;

use loupe_storage::model::{
    AttrValue, Attrs, Event, Link, Resource, Scope, SpanKind, SpanRecord, StatusCode,
};

use super::{TraceView, parse};

const MS: i64 = 1_000_000;

fn golden(file: &str, answer: impl Fn(&str) -> String) {
    crate::golden::check("src/traceql/golden", file, answer)
}

#[test]
fn parse_golden() {
    golden("parse.txt", |q| match parse(q) {
        Ok(expr) => {
            let printed = expr.to_string();
            // The canonical form parses back to the same tree.
            assert_eq!(parse(&printed).as_ref(), Ok(&expr), "{q} → {printed}");
            printed
        }
        Err(e) => format!("error: {e}"),
    });
}

#[test]
fn eval_golden() {
    let traces = traces();
    golden("eval.txt", |q| {
        let expr = match parse(q) {
            Ok(e) => e,
            Err(e) => return format!("error: {e}"),
        };
        let mut parts = Vec::new();
        for (label, spans) in &traces {
            let view = TraceView::new(spans);
            if let Some(m) = view.eval(&expr) {
                let names: Vec<&str> = m.spans.iter().map(|&i| spans[i].name.as_str()).collect();
                let mut part = format!("{label}[{}]", names.join(", "));
                if !m.select.is_empty() {
                    let sel: Vec<String> = m.select.iter().map(|f| f.to_string()).collect();
                    part.push_str(&format!(" select({})", sel.join(", ")));
                }
                parts.push(part);
            }
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(" ")
        }
    });
}

fn resource(service: &str, env: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.to_string(),
        attributes: Attrs(vec![
            ("service.name".into(), AttrValue::Str(service.into())),
            ("deployment.environment".into(), AttrValue::Str(env.into())),
        ]),
    })
}

struct Span {
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &'static str,
    name: &'static str,
    kind: SpanKind,
    start_ms: i64,
    dur_ms: i64,
    status: StatusCode,
    attrs: Vec<(&'static str, AttrValue)>,
}

fn record(s: Span) -> SpanRecord {
    SpanRecord {
        trace_id: [s.trace; 16],
        span_id: [s.id; 8],
        parent_span_id: s.parent.map(|p| [p; 8]),
        trace_state: String::new(),
        name: s.name.to_string(),
        kind: s.kind,
        start_unix_nano: s.start_ms * MS,
        duration_nano: s.dur_ms * MS,
        status_code: s.status,
        status_message: if s.status == StatusCode::Error {
            "deadlock detected".to_string()
        } else {
            String::new()
        },
        resource: resource(s.service, if s.trace == 2 { "staging" } else { "prod" }),
        scope: Arc::new(Scope::default()),
        attributes: Attrs(
            s.attrs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        ),
        events: Vec::new(),
        links: Vec::new(),
    }
}

fn s(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    service: &'static str,
    name: &'static str,
    kind: SpanKind,
    (start_ms, dur_ms): (i64, i64),
) -> Span {
    Span {
        trace,
        id,
        parent,
        service,
        name,
        kind,
        start_ms,
        dur_ms,
        status: StatusCode::Unset,
        attrs: Vec::new(),
    }
}

/// Three traces: a checkout through four services with a failing query, a health check,
/// and a slow failing cart with a cache miss.
pub(crate) fn traces() -> Vec<(&'static str, Vec<SpanRecord>)> {
    use AttrValue::*;
    use SpanKind::*;
    let t1 = vec![
        Span {
            attrs: vec![
                ("http.method", Str("GET".into())),
                ("http.status_code", Int(200)),
            ],
            ..s(1, 1, None, "frontend", "GET /checkout", Server, (0, 500))
        },
        s(
            1,
            2,
            Some(1),
            "frontend",
            "POST checkout",
            Client,
            (10, 300),
        ),
        Span {
            attrs: vec![("order.items", Int(3)), ("order.amount", Double(12.5))],
            ..s(1, 3, Some(2), "checkout", "PlaceOrder", Server, (15, 280))
        },
        Span {
            status: StatusCode::Error,
            attrs: vec![("db.system", Str("postgresql".into()))],
            ..s(
                1,
                4,
                Some(3),
                "checkout",
                "SELECT orders",
                Client,
                (20, 120),
            )
        },
        s(1, 5, Some(3), "checkout", "charge", Internal, (150, 100)),
    ];
    let mut t1: Vec<SpanRecord> = t1.into_iter().map(record).collect();
    t1[3].events.push(Event {
        time_unix_nano: 130 * MS,
        name: "exception".into(),
        attributes: Attrs(vec![("exception.type".into(), Str("PgError".into()))]),
    });
    let t2: Vec<SpanRecord> = vec![Span {
        attrs: vec![
            ("http.method", Str("GET".into())),
            ("http.status_code", Int(200)),
        ],
        ..s(2, 1, None, "frontend", "GET /health", Server, (1000, 2))
    }]
    .into_iter()
    .map(record)
    .collect();
    let t3 = vec![
        Span {
            status: StatusCode::Error,
            attrs: vec![
                ("http.method", Str("GET".into())),
                ("http.status_code", Int(500)),
            ],
            ..s(3, 1, None, "frontend", "GET /cart", Server, (2000, 900))
        },
        Span {
            attrs: vec![
                ("cache.hit", Bool(false)),
                ("my attr", Str("spaced".into())),
            ],
            ..s(3, 2, Some(1), "cart", "GetCart", Server, (2010, 850))
        },
        Span {
            attrs: vec![("db.system", Str("redis".into()))],
            ..s(3, 3, Some(2), "cart", "redis GET", Client, (2020, 5))
        },
    ];
    let mut t3: Vec<SpanRecord> = t3.into_iter().map(record).collect();
    t3[1].links.push(Link {
        trace_id: [9; 16],
        span_id: [9; 8],
        trace_state: String::new(),
        attributes: Attrs(vec![("reason".into(), Str("retry".into()))]),
    });
    vec![("t1", t1), ("t2", t2), ("t3", t3)]
}
