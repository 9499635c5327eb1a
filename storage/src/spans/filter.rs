//! The span predicate of trace search: a trace matches when one of its spans satisfies every
//! condition (as in Jaeger and Tempo). Evaluated on Parquet rows (only the columns the
//! conditions need are read) and on fresh in-memory `SpanRecord`s, with the same semantics.

use std::collections::HashSet;

use arrow_array::{Array, RecordBatch};

use crate::model::{AttrValue, SpanKind, SpanRecord, StatusCode, TraceId};
use crate::spans::decode::{Columns, str_at};
use crate::spans::schema::{self, AttrColumn};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanFilter {
    /// Span start in `[start_unix_nano, end_unix_nano]`.
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub service: Option<String>,
    pub name: Option<String>,
    /// `key = value` on span or resource attributes, values compared as strings.
    pub tags: Vec<(String, String)>,
    pub status: Option<StatusCode>,
    /// The span's status is not this one (Jaeger's `error=false`).
    pub status_not: Option<StatusCode>,
    pub status_message: Option<String>,
    pub kind: Option<SpanKind>,
    pub min_duration_nano: Option<i64>,
    pub max_duration_nano: Option<i64>,
}

/// A tag condition holds when the span's own attribute or its resource's attribute has the
/// value (the same rule for fresh spans and for file rows).
fn attr_is(v: Option<&AttrValue>, want: &str) -> bool {
    v.is_some_and(|a| a.to_filter_string() == want)
}

impl SpanFilter {
    /// How selective the filter is, roughly: its number of conditions (a tag counts twice,
    /// for it usually names few spans). Used to pick the stronger of two filters.
    pub fn score(&self) -> usize {
        [
            self.service.is_some(),
            self.name.is_some(),
            self.status.is_some(),
            self.status_not.is_some(),
            self.status_message.is_some(),
            self.kind.is_some(),
            self.min_duration_nano.is_some(),
            self.max_duration_nano.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
            + self.tags.len() * 2
    }

    pub fn matches(&self, s: &SpanRecord) -> bool {
        s.start_unix_nano >= self.start_unix_nano
            && s.start_unix_nano <= self.end_unix_nano
            && self
                .service
                .as_deref()
                .is_none_or(|v| v == s.service_name())
            && self.name.as_deref().is_none_or(|v| v == s.name)
            && self.status.is_none_or(|v| v == s.status_code)
            && self.status_not.is_none_or(|v| v != s.status_code)
            && self
                .status_message
                .as_deref()
                .is_none_or(|v| v == s.status_message)
            && self.kind.is_none_or(|v| v == s.kind)
            && self.min_duration_nano.is_none_or(|v| s.duration_nano >= v)
            && self.max_duration_nano.is_none_or(|v| s.duration_nano <= v)
            && self.tags.iter().all(|(k, v)| {
                (k == "service.name" && s.service_name() == v)
                    || attr_is(s.attributes.get(k), v)
                    || attr_is(s.resource.attributes.get(k), v)
            })
    }

    /// The columns [`SpanFilter::matching_rows`] needs from a file whose JSON columns hold
    /// `json_keys` (`None`: unknown). `None` when the file cannot match: a wanted key that
    /// has no column of its own is absent from its JSON columns.
    pub fn columns(&self, json_keys: Option<&HashSet<String>>) -> Option<Vec<&'static str>> {
        // Only what the conditions read: on wide files the other columns are most of a scan.
        let mut cols = vec![schema::TRACE_ID, schema::START];
        if self.min_duration_nano.is_some() || self.max_duration_nano.is_some() {
            cols.push(schema::DURATION);
        }
        if self.service.is_some() || self.tags.iter().any(|(k, _)| k == "service.name") {
            cols.push(schema::SERVICE_NAME);
        }
        if self.name.is_some() {
            cols.push(schema::NAME);
        }
        if self.status.is_some() || self.status_not.is_some() {
            cols.push(schema::STATUS_CODE);
        }
        if self.kind.is_some() {
            cols.push(schema::KIND);
        }
        if self.status_message.is_some() {
            cols.push(schema::STATUS_MESSAGE);
        }
        let mut json = false;
        for (k, _) in &self.tags {
            // A promoted key whose value had another type lives in the JSON columns.
            let in_json = json_keys.is_none_or(|keys| keys.contains(k));
            match schema::column_for_key(k) {
                Some(AttrColumn::ServiceName) => {}
                Some(AttrColumn::Promoted { column, .. }) => {
                    cols.push(column);
                    json |= in_json;
                }
                None if in_json => json = true,
                None => return None,
            }
        }
        if json {
            cols.push(schema::ATTRIBUTES);
            cols.push(schema::RESOURCE_ATTRIBUTES);
        }
        cols.sort_unstable();
        cols.dedup();
        Some(cols)
    }

    /// (trace id, span start) of every row of `batch` that matches.
    pub fn matching_rows(&self, batch: &RecordBatch) -> Vec<(TraceId, i64)> {
        let c = Columns::new(batch);
        let (Some(trace), Some(start)) = (c.fixed(schema::TRACE_ID), c.timestamp(schema::START))
        else {
            return Vec::new();
        };
        // Read when a condition needs them (see `columns`); absent, such a condition fails.
        let dur = c.i64(schema::DURATION);
        let service = c.string(schema::SERVICE_NAME);
        let name = c.string(schema::NAME);
        let status = c.i8(schema::STATUS_CODE);
        let attrs = c.string(schema::ATTRIBUTES);
        let res_attrs = c.string(schema::RESOURCE_ATTRIBUTES);
        let kind = c.i8(schema::KIND);
        let message = c.string(schema::STATUS_MESSAGE);
        let mut out = Vec::new();
        for i in 0..batch.num_rows() {
            let t = start.value(i);
            let d = || dur.map(|a| a.value(i));
            let st = || status.map(|a| a.value(i));
            if t < self.start_unix_nano
                || t > self.end_unix_nano
                || self
                    .min_duration_nano
                    .is_some_and(|v| d().is_none_or(|d| d < v))
                || self
                    .max_duration_nano
                    .is_some_and(|v| d().is_none_or(|d| d > v))
                || self.status.is_some_and(|v| st() != Some(v as i8))
                || self
                    .status_not
                    .is_some_and(|v| st().is_none_or(|s| s == v as i8))
                || self
                    .kind
                    .is_some_and(|v| kind.is_none_or(|k| k.value(i) != v as i8))
                || self
                    .status_message
                    .as_deref()
                    .is_some_and(|v| str_at(message, i).unwrap_or_default() != v)
                || self
                    .service
                    .as_deref()
                    .is_some_and(|v| service.and_then(|s| s.get(i)) != Some(v))
                || self
                    .name
                    .as_deref()
                    .is_some_and(|v| name.and_then(|n| n.get(i)) != Some(v))
            {
                continue;
            }
            let svc = service.and_then(|s| s.get(i)).unwrap_or_default();
            let tags_ok = self.tags.iter().all(|(k, v)| {
                tag_matches(&c, i, k, v, svc)
                    || json_tag_matches(str_at(attrs, i), k, v)
                    || json_tag_matches(str_at(res_attrs, i), k, v)
            });
            if tags_ok {
                let mut id = [0u8; 16];
                id.copy_from_slice(trace.value(i));
                out.push((id, t));
            }
        }
        out
    }
}

fn tag_matches(c: &Columns, i: usize, key: &str, value: &str, service: &str) -> bool {
    match schema::column_for_key(key) {
        Some(AttrColumn::ServiceName) => service == value,
        Some(AttrColumn::Promoted {
            column,
            is_int: false,
            ..
        }) => str_at(c.string(column), i) == Some(value),
        Some(AttrColumn::Promoted {
            column,
            is_int: true,
            ..
        }) => c
            .i64(column)
            .filter(|a| a.is_valid(i))
            .is_some_and(|a| a.value(i).to_string() == value),
        None => false,
    }
}

fn json_tag_matches(json: Option<&str>, key: &str, value: &str) -> bool {
    let Some(json) = json else { return false };
    // Cheap pre-check before parsing: the key must appear as a JSON string.
    let quoted = serde_json::to_string(key).unwrap_or_default();
    if !json.contains(&quoted) {
        return false;
    }
    crate::model::Attrs::from_json(json)
        .ok()
        .and_then(|a| a.get(key).map(|v| v.to_filter_string() == value))
        .unwrap_or(false)
}
