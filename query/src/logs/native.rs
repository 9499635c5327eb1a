//! `GET /api/v1/logs`: log search of the native API (see [`super::syntax`] for `query`),
//! page by page: a full page carries a cursor for the next one.

use axum::Json;
use axum::extract::{RawQuery, State};
use loupe_storage::logs::{LogFilter, LogQuery, LogRecord, Order};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ErrorBody, QueryError};
use crate::params::{parse_limit, parse_time};
use crate::state::{QueryState, Tenant};

/// Most lines one search returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
const HOUR_NANOS: i64 = 3_600_000_000_000;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Unix nanoseconds, as a string (exceeds JSON's safe integers).
    pub time_unix_nano: String,
    pub observed_time_unix_nano: String,
    /// OTLP severity number (1–24; 0 unspecified).
    pub severity_number: i32,
    pub severity_text: String,
    pub service_name: String,
    /// The body: a string, or the structured value (object, array, number, ...) as sent.
    pub body: serde_json::Value,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    #[schema(value_type = Object)]
    pub resource: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    pub scope_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub event_name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogsResponse {
    pub logs: Vec<LogLine>,
    pub limit: usize,
    /// When the page is full: pass it as `cursor` (with the same query, range and order) for
    /// the lines that follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where a page ends: the time of its last line and how many lines of that time have been
/// returned so far (lines of one time are in a fixed order: by service, then body).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub order: Order,
    pub time_unix_nano: i64,
    pub seen_at_time: usize,
}

/// Most lines of one timestamp a cursor can skip.
const MAX_SEEN_AT_TIME: usize = 99_999;

impl Cursor {
    pub fn encode(&self) -> String {
        let o = match self.order {
            Order::NewestFirst => 'n',
            Order::OldestFirst => 'o',
        };
        format!("{o}{}-{}", self.time_unix_nano, self.seen_at_time)
    }

    pub fn parse(s: &str) -> Result<Cursor, QueryError> {
        let bad = || {
            QueryError::BadRequest(format!(
                "invalid cursor {s:?}: pass the nextCursor of a previous page"
            ))
        };
        let order = match s.chars().next() {
            Some('n') => Order::NewestFirst,
            Some('o') => Order::OldestFirst,
            _ => return Err(bad()),
        };
        let (t, k) = s[1..].split_once('-').ok_or_else(bad)?;
        let t: u128 = t.parse().map_err(|_| bad())?;
        let k: usize = k.parse().map_err(|_| bad())?;
        Ok(Cursor {
            order,
            time_unix_nano: t.min(i64::MAX as u128) as i64,
            seen_at_time: k.min(MAX_SEEN_AT_TIME),
        })
    }
}

/// The page after `cursor` from lines found with the cursor applied ([`apply_cursor`]), and
/// the cursor after it when the page is full.
fn page(
    found: Vec<LogRecord>,
    cursor: Option<Cursor>,
    q: &LogQuery,
    limit: usize,
) -> (Vec<LogRecord>, Option<String>) {
    let (skip, mut seen) = match cursor {
        Some(c) => (
            found
                .iter()
                .take(c.seen_at_time)
                .take_while(|r| r.time_unix_nano == c.time_unix_nano)
                .count(),
            Some(c),
        ),
        None => (0, None),
    };
    let lines: Vec<LogRecord> = found.into_iter().skip(skip).take(limit).collect();
    let next = (lines.len() == limit).then(|| {
        let last = lines[lines.len() - 1].time_unix_nano;
        let at_last = lines.iter().filter(|r| r.time_unix_nano == last).count();
        let before = match seen.take() {
            Some(c) if c.time_unix_nano == last => c.seen_at_time,
            _ => 0,
        };
        Cursor {
            order: q.order,
            time_unix_nano: last,
            seen_at_time: (before + at_last).min(MAX_SEEN_AT_TIME),
        }
        .encode()
    });
    (lines, next)
}

/// Narrows `q` to what follows `cursor`: the order is the cursor's, the range ends (starts,
/// oldest first) at its time, and enough more lines are asked for to skip those of that time
/// already returned.
fn apply_cursor(q: &mut LogQuery, cursor: &Cursor) {
    q.order = cursor.order;
    match q.order {
        Order::NewestFirst => {
            q.filter.end_unix_nano = q.filter.end_unix_nano.min(cursor.time_unix_nano)
        }
        Order::OldestFirst => {
            q.filter.start_unix_nano = q.filter.start_unix_nano.max(cursor.time_unix_nano)
        }
    }
    q.limit += cursor.seen_at_time;
}

pub fn log_json(r: &LogRecord) -> LogLine {
    LogLine {
        time_unix_nano: r.time_unix_nano.to_string(),
        observed_time_unix_nano: r.observed_unix_nano.to_string(),
        severity_number: r.severity_number,
        severity_text: r.severity_text.clone(),
        service_name: r.service_name().to_string(),
        body: serde_json::to_value(&r.body).unwrap_or_default(),
        attributes: serde_json::to_value(&r.attributes).unwrap_or_default(),
        resource: serde_json::to_value(&r.resource.attributes).unwrap_or_default(),
        trace_id: r.trace_id.map(hex::encode),
        span_id: r.span_id.map(hex::encode),
        scope_name: r.scope.name.clone(),
        event_name: r.event_name.clone(),
    }
}

/// The search a request's query string asks for.
pub fn log_query(query: &str) -> Result<LogQuery, QueryError> {
    let (mut start, mut end, mut limit, mut order) =
        (None, None, DEFAULT_LIMIT, Order::NewestFirst);
    let mut filter = LogFilter::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "query" => super::syntax::apply(&v, &mut filter)?,
            "start" => start = Some(parse_time(&v, 1_000_000, "start")?),
            "end" => end = Some(parse_time(&v, 1_000_000, "end")?),
            "limit" => limit = parse_limit(&v, MAX_LIMIT)?,
            "order" => {
                order = match &*v {
                    "newest" => Order::NewestFirst,
                    "oldest" => Order::OldestFirst,
                    other => {
                        return Err(QueryError::BadRequest(format!(
                            "invalid order {other:?}: expected newest or oldest"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    filter.end_unix_nano = end.unwrap_or(now);
    filter.start_unix_nano = start.unwrap_or(filter.end_unix_nano.saturating_sub(HOUR_NANOS));
    Ok(LogQuery {
        filter,
        limit,
        order,
    })
}

#[utoipa::path(get, path = "/api/v1/logs", tag = "logs",
    params(
        ("query" = Option<String>, Query, description = "Lucene-like conditions, all of which must hold: words and \"phrases\" in the body (whole tokens in a row, ignoring case; a token is a run of letters and digits), service:NAME, trace_id:ID, severity:LEVEL, severity>=LEVEL (also >, <=, <, :[LEVEL TO LEVEL]), key:value on an attribute (attributes.key:value, resource.key:value); wildcards (time*, service:check*), ranges (key>=500, key:[200 TO 299], key:{a TO *}), OR, AND, NOT or -, parentheses"),
        ("start" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default end - 1h"),
        ("end" = Option<String>, Query, description = "unix milliseconds or RFC 3339; default now"),
        ("limit" = Option<usize>, Query, description = "1 to 1000 (larger values are clamped), default 100"),
        ("order" = Option<String>, Query, description = "newest (default) or oldest first"),
        ("cursor" = Option<String>, Query, description = "the nextCursor of the previous page, with the same query and range (the cursor carries the order)")),
    responses((status = 200, body = LogsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn search_logs(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
    RawQuery(q): RawQuery,
) -> Result<Json<LogsResponse>, QueryError> {
    let raw = q.as_deref().unwrap_or("");
    let mut q = log_query(raw)?;
    let limit = q.limit;
    let cursor = url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| Cursor::parse(&v))
        .transpose()?;
    if let Some(c) = &cursor {
        apply_cursor(&mut q, c);
    }
    let found = st.logs.search(&tenant, &q).await?;
    let (lines, next_cursor) = page(found, cursor, &q, limit);
    Ok(Json(LogsResponse {
        logs: lines.iter().map(log_json).collect(),
        limit,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_storage::model::{AttrValue, Attrs, Resource, Scope};
    use std::sync::Arc;

    fn line(t: i64, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: t,
            observed_unix_nano: t,
            severity_number: 9,
            severity_text: String::new(),
            body: AttrValue::Str(body.into()),
            attributes: Attrs::default(),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: String::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
        }
    }

    /// What the search returns: lines in the range, in order (ties by body), at most limit.
    fn search(all: &[LogRecord], q: &LogQuery) -> Vec<LogRecord> {
        let mut hits: Vec<LogRecord> = all
            .iter()
            .filter(|r| {
                r.time_unix_nano >= q.filter.start_unix_nano
                    && r.time_unix_nano <= q.filter.end_unix_nano
            })
            .cloned()
            .collect();
        hits.sort_by(|a, b| {
            let t = a.time_unix_nano.cmp(&b.time_unix_nano);
            match q.order {
                Order::NewestFirst => t.reverse(),
                Order::OldestFirst => t,
            }
            .then_with(|| a.body_text().cmp(&b.body_text()))
        });
        hits.truncate(q.limit);
        hits
    }

    #[test]
    fn pages_follow_each_other_through_lines_of_one_time() {
        let times = [5, 5, 5, 4, 4, 3, 3, 3, 3, 2, 1];
        let all: Vec<LogRecord> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| line(t, &format!("line {i:02}")))
            .collect();
        for order in ["newest", "oldest"] {
            for limit in 1..=4 {
                let base =
                    log_query(&format!("start=0&end=1&limit={limit}&order={order}")).unwrap();
                let base = LogQuery {
                    filter: LogFilter {
                        start_unix_nano: 0,
                        end_unix_nano: 10,
                        ..base.filter
                    },
                    ..base
                };
                let want = search(
                    &all,
                    &LogQuery {
                        limit: 100,
                        ..base.clone()
                    },
                );
                let (mut got, mut cursor) = (Vec::new(), None::<String>);
                for _ in 0..20 {
                    let mut q = base.clone();
                    let c = cursor.as_deref().map(|c| Cursor::parse(c).unwrap());
                    if let Some(c) = &c {
                        apply_cursor(&mut q, c);
                    }
                    let (lines, next) = page(search(&all, &q), c, &q, limit);
                    got.extend(lines);
                    cursor = next;
                    if cursor.is_none() {
                        break;
                    }
                }
                assert_eq!(got, want, "{order} by {limit}");
            }
        }
        assert!(Cursor::parse("x1-2").is_err() && Cursor::parse("n1").is_err());
        let c = Cursor::parse("o99999999999999999999-7").unwrap();
        assert_eq!(
            (c.order, c.time_unix_nano, c.seen_at_time),
            (Order::OldestFirst, i64::MAX, 7)
        );
    }
}
