//! A [`LogFilter`] as a tantivy query over one file's index. The query selects candidate
//! granules: those that may hold a match (a term's keys anywhere in the granule, a value on
//! some record or resource, a time or severity range overlapping the granule's);
//! [`LogFilter::matches`] then decides on the rows read.

use std::ops::Bound;
use std::sync::Arc;

use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;

use crate::catalog::FileEntry;
use crate::logs::expr::{Cond, LogExpr, ValueTest};
use crate::logs::filter::LogFilter;
use crate::logs::index::build::{Fields, GRANULE_ROWS, MAX_INDEXED_VALUE, fields};
use crate::logs::index::ids::{GranuleSet, IdFilter, PREFIX_BYTES, is_id_token};
use crate::logs::index::tokens::{KEY_BYTES, Term, index_key, token_ranges};

fn term(t: tantivy::Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
}

/// What a query over one file is built with.
struct Ctx<'a> {
    f: Fields,
    /// The file's id filter (`None`: an index from before, with ids as terms).
    ids: Option<&'a IdFilter>,
    granules: u32,
}

impl Ctx<'_> {
    /// The granules that may hold the whole (lower-cased) token `token`.
    fn word(&self, token: &str) -> Box<dyn Query> {
        match self.ids {
            Some(ids) if is_id_token(token.as_bytes()) => {
                Box::new(GranuleSet(Arc::new(ids.granules(token, self.granules))))
            }
            _ => term(tantivy::Term::from_field_text(
                self.f.body,
                index_key(token),
            )),
        }
    }

    /// The granules that may hold a token starting with `prefix` (lower-cased, not empty).
    fn prefixed(&self, prefix: &str) -> Box<dyn Query> {
        let body = if prefix.len() >= KEY_BYTES {
            term(tantivy::Term::from_field_text(
                self.f.body,
                index_key(prefix),
            ))
        } else {
            starting_with(self.f.body, prefix)
        };
        if self.ids.is_none() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return body;
        }
        // An id token starting with `prefix` is in the filter: its first bytes are a term.
        let ids = if prefix.len() >= PREFIX_BYTES {
            term(tantivy::Term::from_field_text(
                self.f.id_prefix,
                &prefix[..PREFIX_BYTES],
            ))
        } else {
            starting_with(self.f.id_prefix, prefix)
        };
        Box::new(BooleanQuery::union(vec![body, ids]))
    }
}

/// The terms of `field` that start with `prefix`.
fn starting_with(field: tantivy::schema::Field, prefix: &str) -> Box<dyn Query> {
    let upper = match prefix_successor(prefix) {
        Some(s) => Bound::Excluded(tantivy::Term::from_field_text(field, &s)),
        None => Bound::Unbounded,
    };
    Box::new(RangeQuery::new(
        Bound::Included(tantivy::Term::from_field_text(field, prefix)),
        upper,
    ))
}

/// The candidates of `filter` in the file `entry`, whose id filter is `ids`; `terms` from
/// [`LogFilter::prepared_terms`].
pub fn candidates_query(
    filter: &LogFilter,
    terms: &[Term],
    entry: &FileEntry,
    ids: Option<&IdFilter>,
) -> Box<dyn Query> {
    let f: Fields = fields();
    let c = Ctx {
        f,
        ids,
        granules: entry.rows.div_ceil(GRANULE_ROWS as u64) as u32,
    };
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
        must.push(trace(&c, id));
    }
    for (k, v) in &filter.attributes {
        if v.len() <= MAX_INDEXED_VALUE {
            let mut t = tantivy::Term::from_field_json_path(f.attributes, k, true);
            t.append_type_and_str(v);
            must.push(term(t));
        }
    }
    for t in terms {
        for token in &t.tokens {
            must.push(c.word(token));
        }
    }
    if let Some(e) = &filter.expr
        && let Some(q) = narrow(e, &c)
    {
        must.push(q);
    }
    match must.len() {
        0 => Box::new(AllQuery),
        1 => must.remove(0),
        _ => Box::new(BooleanQuery::new(
            must.into_iter().map(|q| (Occur::Must, q)).collect(),
        )),
    }
}

/// The granules whose lines may carry the trace `id`: in the trace id field, or lifted from
/// the text (then the id is in the body's tokens).
fn trace(c: &Ctx, id: &[u8; 16]) -> Box<dyn Query> {
    Box::new(BooleanQuery::union(vec![
        term(tantivy::Term::from_field_bytes(c.f.trace_id, id)),
        c.word(&hex::encode(id)),
    ]))
}

/// The granules that may hold a match of `e`, or `None` when the index cannot tell (a
/// negation, a range, a value pattern: every granule may).
fn narrow(e: &LogExpr, c: &Ctx) -> Option<Box<dyn Query>> {
    let f = &c.f;
    let all = |qs: Vec<Box<dyn Query>>| -> Option<Box<dyn Query>> {
        match qs.len() {
            0 => None,
            1 => qs.into_iter().next(),
            _ => Some(Box::new(BooleanQuery::intersection(qs))),
        }
    };
    match e {
        LogExpr::All(xs) => all(xs.iter().filter_map(|x| narrow(x, c)).collect()),
        LogExpr::Any(xs) => {
            let qs: Option<Vec<_>> = xs.iter().map(|x| narrow(x, c)).collect();
            qs.map(|qs| Box::new(BooleanQuery::union(qs)) as Box<dyn Query>)
        }
        LogExpr::Not(_) => None,
        LogExpr::Cond(cond) => match cond {
            Cond::Words(t) => all(t.tokens.iter().map(|k| c.word(k)).collect()),
            Cond::TokenGlob(g) => {
                // A token that fits starts with the pattern's literal prefix.
                let prefix = g.prefix().to_ascii_lowercase();
                (!prefix.is_empty()).then(|| c.prefixed(&prefix))
            }
            Cond::Service(ValueTest::Eq(s)) => {
                Some(term(tantivy::Term::from_field_text(f.service, s)))
            }
            Cond::Severity(lo, hi) => {
                let severity =
                    |field, v: i32| tantivy::Term::from_field_u64(field, v.max(0) as u64);
                Some(Box::new(BooleanQuery::intersection(vec![
                    Box::new(RangeQuery::new(
                        Bound::Included(severity(f.severity_max, *lo)),
                        Bound::Unbounded,
                    )),
                    Box::new(RangeQuery::new(
                        Bound::Unbounded,
                        Bound::Included(severity(f.severity_min, *hi)),
                    )),
                ])))
            }
            Cond::TraceId(id) => Some(trace(c, id)),
            Cond::Attribute(k, ValueTest::Eq(v)) if v.len() <= MAX_INDEXED_VALUE => {
                let mut t = tantivy::Term::from_field_json_path(f.attributes, k, true);
                t.append_type_and_str(v);
                Some(term(t))
            }
            Cond::Resource(k, ValueTest::Eq(v)) if v.len() <= MAX_INDEXED_VALUE => {
                // Resource attributes are indexed in the same field as the record's.
                let mut t = tantivy::Term::from_field_json_path(f.attributes, k, true);
                t.append_type_and_str(v);
                Some(term(t))
            }
            Cond::Contains(s) => contains(s, c),
            Cond::Service(_) | Cond::Attribute(..) | Cond::Resource(..) | Cond::Matches(_) => None,
        },
    }
}

/// The granules whose lines may contain `s`: every token of `s` that is whole in any line
/// containing it is in the line; the first token may be the end of a longer one, the last
/// the start of one (a prefix of a key).
fn contains(s: &str, c: &Ctx) -> Option<Box<dyn Query>> {
    let ranges: Vec<(usize, usize)> = token_ranges(s).collect();
    let mut qs: Vec<Box<dyn Query>> = Vec::new();
    for (i, &(a, b)) in ranges.iter().enumerate() {
        let token = s[a..b].to_ascii_lowercase();
        let cut_before = i == 0 && a == 0;
        let cut_after = i == ranges.len() - 1 && b == s.len();
        if cut_before {
            continue;
        }
        if cut_after {
            qs.push(c.prefixed(&token));
        } else {
            qs.push(c.word(&token));
        }
    }
    match qs.len() {
        0 => None,
        1 => qs.pop(),
        _ => Some(Box::new(BooleanQuery::intersection(qs))),
    }
}

/// The smallest string above every string that starts with `p` (`None`: there is none).
/// UTF-8 orders as code points do, so the last character's successor bounds them.
fn prefix_successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
