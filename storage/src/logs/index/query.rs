//! A [`LogFilter`] as a tantivy query over one file's index. The query selects candidate
//! granules: those that may hold a match (a term's keys anywhere in the granule, a value on
//! some record or resource, a time or severity range overlapping the granule's);
//! [`LogFilter::matches`] then decides on the rows read.

use std::ops::Bound;

use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;

use crate::catalog::FileEntry;
use crate::logs::filter::LogFilter;
use crate::logs::index::build::{Fields, MAX_INDEXED_VALUE, fields};
use crate::logs::index::tokens::{Term, index_key};

fn term(t: tantivy::Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
}

/// The candidates of `filter` in the file `entry`; `terms` from
/// [`LogFilter::prepared_terms`].
pub fn candidates_query(filter: &LogFilter, terms: &[Term], entry: &FileEntry) -> Box<dyn Query> {
    let f: Fields = fields();
    let mut must: Vec<Box<dyn Query>> = Vec::new();
    if entry.min_time_unix_nano < filter.start_unix_nano
        || entry.max_time_unix_nano > filter.end_unix_nano
    {
        // The granule's [min, max] overlaps [start, end].
        must.push(Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Included(tantivy::Term::from_field_i64(
                f.time_min,
                filter.end_unix_nano,
            )),
        )));
        must.push(Box::new(RangeQuery::new(
            Bound::Included(tantivy::Term::from_field_i64(
                f.time_max,
                filter.start_unix_nano,
            )),
            Bound::Unbounded,
        )));
    }
    let severity = |field, v: i32| tantivy::Term::from_field_u64(field, v.max(0) as u64);
    if let Some(min) = filter.min_severity {
        must.push(Box::new(RangeQuery::new(
            Bound::Included(severity(f.severity_max, min)),
            Bound::Unbounded,
        )));
    }
    if let Some(max) = filter.max_severity {
        must.push(Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Included(severity(f.severity_min, max)),
        )));
    }
    if let Some(s) = &filter.service
        && entry.services.len() > 1
    {
        must.push(term(tantivy::Term::from_field_text(f.service, s)));
    }
    if let Some(id) = &filter.trace_id {
        let hex = hex::encode(id);
        must.push(Box::new(BooleanQuery::union(vec![
            term(tantivy::Term::from_field_bytes(f.trace_id, id)),
            term(tantivy::Term::from_field_text(f.body, index_key(&hex))),
        ])));
    }
    for (k, v) in &filter.attributes {
        if v.len() <= MAX_INDEXED_VALUE {
            let mut t = tantivy::Term::from_field_json_path(f.attributes, k, true);
            t.append_type_and_str(v);
            must.push(term(t));
        }
    }
    for t in terms {
        for key in t.index_keys() {
            must.push(term(tantivy::Term::from_field_text(f.body, key)));
        }
    }
    match must.len() {
        0 => Box::new(AllQuery),
        1 => must.remove(0),
        _ => Box::new(BooleanQuery::new(
            must.into_iter().map(|q| (Occur::Must, q)).collect(),
        )),
    }
}
