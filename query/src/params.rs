//! Parsing of query parameters shared by the native and Jaeger APIs: Go-style durations
//! (`1.5s`, `250ms`, `1h30m`), timestamps, and tag filters (`k=v` pairs, logfmt, or a JSON
//! object as Grafana and the Jaeger UI send).

use loupe_storage::model::{SpanKind, StatusCode};
use loupe_storage::spans::SpanFilter;

use crate::error::QueryError;

/// Parses a Go-style duration into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, QueryError> {
    let bad = || {
        QueryError::BadRequest(format!(
            "invalid duration {s:?}: expected e.g. 250ms, 1.5s, 2m or 1h30m"
        ))
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if s == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return Err(bad()),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    // Longer than ~292 years saturates: as a bound it means "no span is that long".
    Ok(if total.is_finite() {
        total.min(i64::MAX as f64) as i64
    } else {
        i64::MAX
    })
}

/// Parses `key=value` tag filters: logfmt (`a=1 b="x y"`) or a JSON object of strings.
pub fn parse_tags(s: &str) -> Result<Vec<(String, String)>, QueryError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Vec::new());
    }
    if s.starts_with('{') {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(s).map_err(|e| {
                QueryError::BadRequest(format!("invalid tags {s:?}: expected a JSON object: {e}"))
            })?;
        return Ok(map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect());
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if chars.next() != Some('=') || key.is_empty() {
            return Err(QueryError::BadRequest(format!(
                "invalid tags {s:?}: expected key=value pairs separated by spaces"
            )));
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('\\') => v.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => v.push(c),
                    None => {
                        return Err(QueryError::BadRequest(format!(
                            "invalid tags {s:?}: unterminated quote"
                        )));
                    }
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
        };
        out.push((key, value));
    }
    Ok(out)
}

/// Parses a timestamp given as unix time in `unit_nanos` units or as RFC 3339.
pub fn parse_time(s: &str, unit_nanos: i64, what: &str) -> Result<i64, QueryError> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        // Digits beyond i64 saturate (a time after 2262 is "the end of time").
        return Ok(t
            .parse::<i64>()
            .unwrap_or(i64::MAX)
            .saturating_mul(unit_nanos));
    }
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n.saturating_mul(unit_nanos));
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        // Dates outside 1677..2262 (i64 nanoseconds) saturate.
        .map(|d| {
            d.timestamp_nanos_opt().unwrap_or(if d.timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            })
        })
        .ok_or_else(|| {
            QueryError::BadRequest(format!(
                "invalid {what} {s:?}: expected unix time or RFC 3339"
            ))
        })
}

/// Parses a result limit: at least 1; above `max` it is clamped to `max` (as Jaeger does).
pub fn parse_limit(v: &str, max: usize) -> Result<usize, QueryError> {
    let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| v.parse::<usize>().unwrap_or(usize::MAX))
        .filter(|l| *l >= 1)
        .map(|l| l.min(max))
        .ok_or_else(|| QueryError::BadRequest(format!("invalid limit {v:?}: expected 1 to {max}")))
}

/// Without a service, a search looks at most this far back from its end.
pub const MAX_UNSCOPED_RANGE_NANOS: i64 = 24 * 3_600_000_000_000;

/// Adds a status condition. Two different required statuses match no span: the filter then
/// requires and excludes the first (a search with no results, not an error).
fn set_status(f: &mut SpanFilter, want: StatusCode) {
    match f.status {
        Some(s) if s != want => f.status_not = Some(s),
        _ => f.status = Some(want),
    }
}

/// Turns the tags our trace views show but that are not attributes into conditions:
/// `error` (true/false), `otel.status_code` (OK/ERROR/UNSET), `span.kind` and
/// `otel.status_description`. With another value they stay ordinary attribute tags, as
/// Jaeger treats every tag.
fn synthetic_tags(f: &mut SpanFilter) {
    let tags = std::mem::take(&mut f.tags);
    for (k, v) in tags {
        let lower = v.to_ascii_lowercase();
        match (k.as_str(), v.as_str()) {
            ("error", "true") => set_status(f, StatusCode::Error),
            ("error", "false") => f.status_not = Some(StatusCode::Error),
            ("otel.status_code", _) if StatusCode::parse(&lower).is_some() => {
                set_status(f, StatusCode::parse(&lower).unwrap_or_default())
            }
            ("span.kind", _) if SpanKind::parse(&lower).is_some() => {
                f.kind = SpanKind::parse(&lower)
            }
            ("otel.status_description", _) => f.status_message = Some(v),
            _ => f.tags.push((k, v)),
        }
    }
}

/// Completes a search filter the same way for every API: the synthetic tags become
/// conditions, the time range defaults to `lookback` (1h) before `end` (now) and, without a
/// service, covers at most the last [`MAX_UNSCOPED_RANGE_NANOS`] of it. `Err` says why the
/// filter can match nothing (an inverted time or duration range).
pub fn complete_filter(
    f: &mut SpanFilter,
    start: Option<i64>,
    end: Option<i64>,
    lookback: Option<i64>,
) -> Result<(), &'static str> {
    synthetic_tags(f);
    f.end_unix_nano = end.unwrap_or_else(now_nanos);
    f.start_unix_nano = start.unwrap_or(
        f.end_unix_nano
            .saturating_sub(lookback.unwrap_or(3_600_000_000_000)),
    );
    if f.start_unix_nano > f.end_unix_nano {
        return Err("start is after end");
    }
    if f.service.is_none() {
        f.start_unix_nano = f
            .start_unix_nano
            .max(f.end_unix_nano.saturating_sub(MAX_UNSCOPED_RANGE_NANOS));
    }
    if let (Some(a), Some(b)) = (f.min_duration_nano, f.max_duration_nano)
        && a > b
    {
        return Err("minDuration is greater than maxDuration");
    }
    Ok(())
}

/// [`complete_filter`], answering an inverted range with 400 (the Jaeger and Tempo APIs).
pub fn finish_filter(
    f: &mut SpanFilter,
    start: Option<i64>,
    end: Option<i64>,
    lookback: Option<i64>,
) -> Result<(), QueryError> {
    complete_filter(f, start, end, lookback).map_err(|why| QueryError::BadRequest(why.into()))
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert_eq!(parse_duration("1.5s").unwrap(), 1_500_000_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("10us").unwrap(), 10_000);
        assert_eq!(parse_duration("7ns").unwrap(), 7);
        for bad in ["", "ms", "5", "5x", "-1s", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_logfmt_and_json() {
        assert_eq!(
            parse_tags(r#"error=true http.route="/a b" x=1"#).unwrap(),
            vec![
                ("error".into(), "true".into()),
                ("http.route".into(), "/a b".into()),
                ("x".into(), "1".into())
            ]
        );
        assert_eq!(
            parse_tags(r#"{"http.response.status_code":"500","n":3}"#).unwrap(),
            vec![
                ("http.response.status_code".into(), "500".into()),
                ("n".into(), "3".into())
            ]
        );
        assert!(parse_tags("novalue").is_err());
        assert!(parse_tags("{bad").is_err());
    }

    #[test]
    fn synthetic_tags_become_conditions() {
        let mut f = SpanFilter {
            tags: parse_tags("error=false span.kind=server otel.status_code=ok x=1").unwrap(),
            ..Default::default()
        };
        finish_filter(&mut f, Some(0), Some(10), None).unwrap();
        assert_eq!(f.status_not, Some(StatusCode::Error));
        assert_eq!(f.status, Some(StatusCode::Ok));
        assert_eq!(f.kind, Some(SpanKind::Server));
        assert_eq!(f.tags, vec![("x".to_string(), "1".to_string())]);
        // Other values stay attribute tags (as Jaeger treats every tag); two different
        // required statuses match nothing.
        let mut other = SpanFilter {
            tags: parse_tags("span.kind=sideways error=maybe").unwrap(),
            ..Default::default()
        };
        finish_filter(&mut other, None, None, None).unwrap();
        assert_eq!(other.kind, None);
        assert_eq!(other.tags.len(), 2);
        let mut conflict = SpanFilter {
            tags: parse_tags("error=true otel.status_code=OK").unwrap(),
            ..Default::default()
        };
        finish_filter(&mut conflict, None, None, None).unwrap();
        let s = (conflict.status, conflict.status_not);
        assert!(
            s.0.is_some() && s.0 == s.1,
            "requires and excludes one status: {s:?}"
        );
    }

    #[test]
    fn out_of_range_values_saturate() {
        assert_eq!(parse_duration("99999999999999h").unwrap(), i64::MAX);
        assert_eq!(parse_limit("99999999999999999999999", 1000).unwrap(), 1000);
        assert!(parse_limit("0", 1000).is_err());
        assert_eq!(
            parse_time("99999999999999999999", 1_000_000, "t").unwrap(),
            i64::MAX
        );
        assert_eq!(
            parse_time("9999-12-31T23:59:59Z", 1, "t").unwrap(),
            i64::MAX
        );
        assert_eq!(
            parse_time("0001-01-01T00:00:00Z", 1, "t").unwrap(),
            i64::MIN
        );
    }

    #[test]
    fn limits_are_clamped_and_searches_without_a_service_bounded() {
        assert_eq!(parse_limit("5000", 1500).unwrap(), 1500);
        assert!(parse_limit("0", 1500).is_err());
        assert!(parse_limit("many", 1500).is_err());
        let week = 7 * 24 * 3_600_000_000_000i64;
        let mut f = SpanFilter::default();
        finish_filter(&mut f, Some(1), Some(week), None).unwrap();
        assert_eq!(
            f.end_unix_nano - f.start_unix_nano,
            MAX_UNSCOPED_RANGE_NANOS
        );
        let mut scoped = SpanFilter {
            service: Some("svc".into()),
            ..Default::default()
        };
        finish_filter(&mut scoped, Some(1), Some(week), None).unwrap();
        assert_eq!(scoped.start_unix_nano, 1);
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("1700000000000", 1_000_000, "start").unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", 1, "start").unwrap(),
            1_700_000_000_000_000_000
        );
        assert!(parse_time("yesterday", 1, "start").is_err());
    }
}
