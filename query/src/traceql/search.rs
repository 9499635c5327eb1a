//! Runs a TraceQL search. The expression's narrowing predicate ([`super::plan`]) ranks
//! candidate traces by their most recent qualifying span (the same pruned scan as every other
//! search); the other sides of `&&`, `>` and `>>` are scanned too and only traces that have a
//! span for each stay candidates. Candidates are then read whole, newest first, in batches,
//! and the expression is evaluated on the CPU pool until `limit` traces match. When the narrowing was too weak to
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
use super::plan::{candidate_filter, min_spans, projection, requirements};
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

/// [`search`], reading the matching traces whole (all their attributes), as tag
/// autocomplete needs.
pub async fn search_whole(
    svc: &TraceService,
    tenant: &TenantId,
    expr: Arc<SpansetExpr>,
    range: (i64, i64),
    limit: usize,
) -> Result<Found, QueryError> {
    run(svc, tenant, expr, range, limit, None, false).await
}

/// [`search`], where each trace must also have a span matching `also` (the native API's form
/// conditions given with a query); `also`'s time range is ignored in favour of `range`.
pub async fn search_also(
    svc: &TraceService,
    tenant: &TenantId,
    expr: Arc<SpansetExpr>,
    range: (i64, i64),
    limit: usize,
    also: Option<SpanFilter>,
) -> Result<Found, QueryError> {
    let project = also.is_none();
    run(svc, tenant, expr, range, limit, also, project).await
}

async fn run(
    svc: &TraceService,
    tenant: &TenantId,
    expr: Arc<SpansetExpr>,
    (start, end): (i64, i64),
    limit: usize,
    also: Option<SpanFilter>,
    project: bool,
) -> Result<Found, QueryError> {
    let started = std::time::Instant::now();
    let mut filter = candidate_filter(&expr, start, end);
    // `{ cond } | count() > N`: traces with too few candidate spans are dropped unread (the
    // counts are exact only over a complete scan, so such a query scans its whole range).
    let mut min = min_spans(&expr);
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
        min = None;
    }
    // Every other requirement narrows the candidates further: a trace must have a span for
    // each. A requirement whose hits fill the cap is not exact, so it is not used.
    let others: Vec<SpanFilter> = requirements(&expr, start, end)
        .into_iter()
        .filter(|r| *r != filter)
        .collect();
    // Alone, the predicate ranks as many candidates as the page holds (it matches most of
    // them) and the window grows ×4 while too few match. With a count threshold or other
    // requirements, one complete scan gives the exact candidates instead of many growing ones.
    let batch = limit.clamp(1, 512);
    let mut want = if min.is_some() || !others.is_empty() {
        MAX_CANDIDATES
    } else {
        limit.clamp(1, MAX_CANDIDATES)
    };
    // The requirements' scans and the first ranking scan run at once.
    let (narrowing, first) = futures::try_join!(
        futures::future::try_join_all(others.iter().map(|r| svc.ranked_hits(
            tenant,
            r,
            MAX_CANDIDATES
        ))),
        svc.counted_hits(tenant, &filter, want),
    )?;
    let narrowing: Vec<HashSet<TraceId>> = narrowing
        .into_iter()
        .filter(|hits| hits.len() < MAX_CANDIDATES)
        .map(|hits| hits.into_iter().map(|(id, _)| id).collect())
        .collect();
    let mut first = Some(first);
    metrics::histogram!("loupe_query_seconds", "op" => "traceql_narrow")
        .record(started.elapsed().as_secs_f64());
    // Traces are read with the columns the expression uses (and, with form conditions, all).
    let columns = project.then(|| projection(&expr));
    let also = Arc::new(also);
    let mut evaluated: HashSet<TraceId> = HashSet::new();
    let mut found = Found {
        hits: Vec::new(),
        inspected_traces: 0,
        inspected_spans: 0,
    };
    'grow: loop {
        let (ranked, complete) = match first.take() {
            Some(r) => r,
            None => svc.counted_hits(tenant, &filter, want).await?,
        };
        let exhausted = ranked.len() < want;
        let enough = |spans: u32| !complete || min.is_none_or(|m| spans >= m);
        let new: Vec<TraceId> = ranked
            .into_iter()
            .filter(|h| enough(h.spans))
            .map(|h| h.id)
            .filter(|id| !evaluated.contains(id))
            .filter(|id| narrowing.iter().all(|n| n.contains(id)))
            .collect();
        for ids in new.chunks(batch) {
            evaluated.extend(ids.iter().copied());
            let mut traces = svc.traces_projected(tenant, ids, columns.as_ref()).await?;
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
