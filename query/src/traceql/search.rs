//! Runs a TraceQL search. The expression's narrowing predicate ([`super::plan`]) ranks
//! candidate traces by their most recent qualifying span (the same pruned scan as every other
//! search); candidates are then read whole, newest first, in batches, and the expression is
//! evaluated on the CPU pool until `limit` traces match. When the narrowing was too weak to
//! fill the page, the candidate window grows (×4) up to [`MAX_CANDIDATES`] traces per query,
//! the bound that keeps an unselective query (`{ .x =~ ".*y" }` over a week) from reading
//! everything; `inspected_traces` says how many were read.

use std::collections::HashSet;
use std::sync::Arc;

use loupe_storage::TenantId;
use loupe_storage::model::TraceId;
use loupe_storage::spans::SpanFilter;

use super::ast::SpansetExpr;
use super::eval::{Matched, TraceView};
use super::plan::candidate_filter;
use crate::error::QueryError;
use crate::service::{Trace, TraceService};

/// Candidate traces one query reads at most.
pub const MAX_CANDIDATES: usize = 20_000;

/// A matching trace, its spans, and what matched in it.
pub struct Hit {
    pub id: TraceId,
    pub trace: Trace,
    pub matched: Matched,
}

pub struct Found {
    /// Newest first.
    pub hits: Vec<Hit>,
    pub inspected_traces: usize,
    pub inspected_spans: usize,
}

/// The `limit` most recent traces matching `expr` with activity in `[start, end]` (unix ns).
pub async fn search(
    svc: &TraceService,
    tenant: &TenantId,
    expr: Arc<SpansetExpr>,
    range: (i64, i64),
    limit: usize,
) -> Result<Found, QueryError> {
    search_also(svc, tenant, expr, range, limit, None).await
}

/// [`search`], where each trace must also have a span matching `also` (the native API's form
/// conditions given with a query); `also`'s time range is ignored in favour of `range`.
pub async fn search_also(
    svc: &TraceService,
    tenant: &TenantId,
    expr: Arc<SpansetExpr>,
    (start, end): (i64, i64),
    limit: usize,
    also: Option<SpanFilter>,
) -> Result<Found, QueryError> {
    let started = std::time::Instant::now();
    let mut filter = candidate_filter(&expr, start, end);
    let also = also.map(|mut a| {
        a.start_unix_nano = i64::MIN;
        a.end_unix_nano = i64::MAX;
        a
    });
    if let Some(a) = also.as_ref().filter(|a| a.score() > filter.score()) {
        filter = SpanFilter {
            start_unix_nano: start,
            end_unix_nano: end,
            ..a.clone()
        };
    }
    let also = Arc::new(also);
    let batch = limit.clamp(32, 512);
    let mut want = (limit * 4).clamp(64, MAX_CANDIDATES);
    let mut evaluated: HashSet<TraceId> = HashSet::new();
    let mut found = Found {
        hits: Vec::new(),
        inspected_traces: 0,
        inspected_spans: 0,
    };
    'grow: loop {
        let ranked = svc.ranked_hits(tenant, &filter, want).await?;
        let exhausted = ranked.len() < want;
        let new: Vec<TraceId> = ranked
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !evaluated.contains(id))
            .collect();
        for ids in new.chunks(batch) {
            evaluated.extend(ids.iter().copied());
            let mut traces = svc.traces(tenant, ids).await?;
            let ordered: Vec<(TraceId, Trace)> = ids
                .iter()
                .filter_map(|id| traces.remove(id).map(|t| (*id, t)))
                .collect();
            found.inspected_traces += ordered.len();
            found.inspected_spans += ordered.iter().map(|(_, t)| t.len()).sum::<usize>();
            let expr = expr.clone();
            let also = also.clone();
            let hits = loupe_core::cpu::run(move || {
                ordered
                    .into_iter()
                    .filter(|(_, trace)| {
                        also.as_ref()
                            .as_ref()
                            .is_none_or(|a| trace.iter().any(|s| a.matches(s)))
                    })
                    .filter_map(|(id, trace)| {
                        let matched = TraceView::new(&trace).eval(&expr)?;
                        Some(Hit { id, trace, matched })
                    })
                    .collect::<Vec<Hit>>()
            })
            .await?;
            found.hits.extend(hits);
            if found.hits.len() >= limit {
                found.hits.truncate(limit);
                break 'grow;
            }
        }
        if exhausted || want >= MAX_CANDIDATES {
            break;
        }
        want = (want * 4).min(MAX_CANDIDATES);
    }
    metrics::histogram!("loupe_query_seconds", "op" => "traceql_search")
        .record(started.elapsed().as_secs_f64());
    Ok(found)
}
