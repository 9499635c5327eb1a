//! A [`LogFilter`] as a tantivy query over one file's index. The query selects candidates: a
//! superset of the matches (a term's tokens anywhere in the line, a value on the record or
//! its resource); [`LogFilter::matches`] then decides on the rows read.

use std::ops::Bound;

use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;

use crate::catalog::FileEntry;
use crate::logs::filter::LogFilter;
use crate::logs::index::build::{Fields, MAX_INDEXED_VALUE, fields};
use crate::logs::index::tokens::{MAX_INDEXED_TOKEN, Term};

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
        must.push(Box::new(RangeQuery::new(
            Bound::Included(tantivy::Term::from_field_i64(
                f.time,
                filter.start_unix_nano,
            )),
            Bound::Included(tantivy::Term::from_field_i64(f.time, filter.end_unix_nano)),
        )));
    }
    if filter.min_severity.is_some() || filter.max_severity.is_some() {
        let bound = |v: Option<i32>| match v {
            Some(v) => Bound::Included(tantivy::Term::from_field_u64(f.severity, v.max(0) as u64)),
            None => Bound::Unbounded,
        };
        must.push(Box::new(RangeQuery::new(
            bound(filter.min_severity),
            bound(filter.max_severity),
        )));
    }
    if let Some(s) = &filter.service
        && entry.services.len() > 1
    {
        must.push(term(tantivy::Term::from_field_text(f.service, s)));
    }
    if let Some(id) = &filter.trace_id {
        must.push(Box::new(BooleanQuery::union(vec![
            term(tantivy::Term::from_field_bytes(f.trace_id, id)),
            term(tantivy::Term::from_field_text(f.body, &hex::encode(id))),
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
        for token in t.indexed_tokens() {
            debug_assert!(token.len() <= MAX_INDEXED_TOKEN);
            must.push(term(tantivy::Term::from_field_text(f.body, token)));
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
