//! The native log search syntax: whitespace-separated conditions, all of which must hold.
//!
//! - `word` or `"a phrase"`: its tokens occur in a row in the line's body, ignoring case (a
//!   token is a run of letters and digits: `GET /api` finds `get /API/items`, `error` does
//!   not find `errors`; see `loupe_storage::logs::index::tokens`);
//! - `service:checkout`; `trace_id:<32 hex>`;
//! - `severity:warn` (that level: WARN..WARN4), `severity>=warn`, `severity<=info`
//!   (`level` is a synonym; levels are trace, debug, info, warn, error, fatal, or a number
//!   1–24);
//! - `key:value` / `attributes.key:value`: an attribute of the record or of its resource
//!   (`resource.key:value` too) equal to the value.
//!
//! Anything else (an empty field, a value missing its closing quote, an unknown severity) is
//! an error naming it.

use loupe_storage::logs::{LogFilter, severity_from_text};
use loupe_storage::model::parse_trace_id;

use crate::error::QueryError;

/// Splits on whitespace, keeping double-quoted parts (with `\"` escapes) together.
fn tokens(q: &str) -> Result<Vec<String>, QueryError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = q.chars();
    let mut quoted = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if quoted {
        return Err(QueryError::BadRequest(format!(
            "invalid query {q:?}: a quoted phrase is not closed"
        )));
    }
    if any {
        out.push(cur);
    }
    Ok(out)
}

/// The severity range of a level name or number.
fn level(v: &str) -> Result<(i32, i32), QueryError> {
    if let Ok(n) = v.parse::<i32>() {
        if (1..=24).contains(&n) {
            return Ok((n, n));
        }
    } else {
        let n = severity_from_text(v);
        if n > 0 && (n - 1) % 4 == 0 {
            return Ok((n, n + 3));
        }
    }
    Err(QueryError::BadRequest(format!(
        "unknown severity {v:?}: expected trace, debug, info, warn, error, fatal or 1 to 24"
    )))
}

/// Adds the conditions of query `q` to `f`.
pub fn apply(q: &str, f: &mut LogFilter) -> Result<(), QueryError> {
    for t in tokens(q)? {
        let sev = ["severity", "level"]
            .iter()
            .find_map(|k| t.strip_prefix(k).filter(|r| r.starts_with([':', '>', '<'])));
        if let Some(rest) = sev {
            let (op, v) = if let Some(v) = rest.strip_prefix(">=") {
                (">=", v)
            } else if let Some(v) = rest.strip_prefix("<=") {
                ("<=", v)
            } else if let Some(v) = rest.strip_prefix(':') {
                (":", v)
            } else {
                return Err(QueryError::BadRequest(format!(
                    "invalid condition {t:?}: severity takes :, >= or <="
                )));
            };
            let (lo, hi) = level(v)?;
            match op {
                ">=" => f.min_severity = Some(f.min_severity.map_or(lo, |m| m.max(lo))),
                "<=" => f.max_severity = Some(f.max_severity.map_or(hi, |m| m.min(hi))),
                _ => {
                    f.min_severity = Some(f.min_severity.map_or(lo, |m| m.max(lo)));
                    f.max_severity = Some(f.max_severity.map_or(hi, |m| m.min(hi)));
                }
            }
            continue;
        }
        match t.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(['"', ' ']) && !t.starts_with("http") => {
                if v.is_empty() {
                    return Err(QueryError::BadRequest(format!(
                        "invalid condition {t:?}: no value after {k}:"
                    )));
                }
                match k {
                    "service" | "service.name" | "service_name" => f.service = Some(v.to_string()),
                    "trace_id" | "traceId" | "traceID" => {
                        f.trace_id = Some(parse_trace_id(v).ok_or_else(|| {
                            QueryError::BadRequest(format!(
                                "invalid trace_id {v:?}: expected 32 hex digits"
                            ))
                        })?)
                    }
                    _ => {
                        let key = k
                            .strip_prefix("attributes.")
                            .or_else(|| k.strip_prefix("resource."))
                            .unwrap_or(k);
                        f.attributes.push((key.to_string(), v.to_string()));
                    }
                }
            }
            _ => f.terms.push(t),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(q: &str) -> LogFilter {
        let mut f = LogFilter::default();
        apply(q, &mut f).unwrap();
        f
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
        let f = parsed("level:error trace_id:4bf92f3577b34da6a3ce929d0e0e4736 https://x/y");
        assert_eq!((f.min_severity, f.max_severity), (Some(17), Some(20)));
        assert!(f.trace_id.is_some());
        assert_eq!(f.terms, vec!["https://x/y"]);
        assert_eq!(parsed("severity<=9").max_severity, Some(9));
    }

    #[test]
    fn bad_conditions_are_errors_that_name_them() {
        for (q, want) in [
            (r#""open"#, "not closed"),
            ("severity:loud", "unknown severity"),
            ("severity>warn", "takes :, >= or <="),
            ("service:", "no value after service:"),
            ("trace_id:xyz", "invalid trace_id"),
        ] {
            let e = apply(q, &mut LogFilter::default()).unwrap_err().to_string();
            assert!(e.contains(want), "{q}: {e}");
        }
    }
}
