//! Running LogQL over a tenant's logs ([`LogService`]): log queries through the search
//! (the plan's narrowing and its exact check as the residual), metric queries through one
//! scan that collects the samples, and the streams a selector picks for label browsing.

use std::collections::BTreeMap;
use std::sync::Arc;

use loupe_core::TenantId;
use loupe_storage::logs::streams::{Buckets, StreamStats, Streams};
use loupe_storage::logs::{LogFilter, LogQuery, Order};

use super::ast::{Matcher, Metric};
use super::eval::{Collect, Series, Steps, evaluate, leaf};
use super::labels::{Cat, Labels};
use super::pipeline::Entry;
use super::{LogqlError, Plan};
use crate::error::QueryError;
use crate::logs::LogService;

/// The entries of a log query in `[start, end]`, at most `limit`, in `order`.
pub async fn lines(
    logs: &LogService,
    tenant: &TenantId,
    plan: &Plan,
    start: i64,
    end: i64,
    limit: usize,
    order: Order,
) -> Result<Vec<Entry>, QueryError> {
    let filter = plan.search_filter(LogFilter {
        start_unix_nano: start,
        end_unix_nano: end,
        ..LogFilter::default()
    });
    let q = LogQuery {
        filter,
        limit,
        order,
    };
    let records = logs.search(tenant, &q).await?;
    let plan = plan.clone();
    let entries = loupe_core::cpu::run(move || {
        records
            .iter()
            .filter_map(|r| plan.entry(r))
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(entries)
}

/// The series of metric query `m` at `steps`.
pub async fn metric(
    logs: &LogService,
    tenant: &TenantId,
    m: &Metric,
    steps: Steps,
) -> Result<Vec<Series>, QueryError> {
    steps.check()?;
    let agg = Arc::new(leaf(m).clone());
    let plan = Plan::new(agg.log.clone());
    let mut filter = LogFilter {
        start_unix_nano: steps
            .start
            .saturating_sub(agg.range_ns)
            .saturating_sub(agg.offset_ns),
        end_unix_nano: steps.end.saturating_sub(agg.offset_ns),
        ..LogFilter::default()
    };
    plan.narrow(&mut filter);
    let collected = loupe_storage::logs::scan::scan(logs.source(tenant), &filter, || {
        Collect::new(plan.clone(), agg.clone())
    })
    .await?;
    let series = collected.finish()?;
    let m = m.clone();
    let out = loupe_core::cpu::run(move || evaluate(&m, series, steps)).await??;
    Ok(out)
}

impl From<loupe_core::cpu::Panicked> for LogqlError {
    fn from(e: loupe_core::cpu::Panicked) -> Self {
        LogqlError::Pipeline(e.to_string())
    }
}

/// A stream: its labels (stream labels only) and what it holds per bucket.
pub type Stream = (BTreeMap<String, String>, Vec<StreamStats>);

/// The streams that hold lines in `[start, end]` and match every one of `selector`
/// (`None`: all); with the bytes of their lines when `with_bytes`; per bucket when given.
pub async fn streams(
    logs: &LogService,
    tenant: &TenantId,
    selector: Option<&[Matcher]>,
    start: i64,
    end: i64,
    with_bytes: bool,
    buckets: Option<Buckets>,
) -> Result<(Vec<Stream>, u64), QueryError> {
    let mut filter = LogFilter {
        start_unix_nano: start,
        end_unix_nano: end,
        ..LogFilter::default()
    };
    if let Some(s) = selector
        && let Some(m) = s
            .iter()
            .find(|m| m.name == "service_name" && m.op == super::ast::MatchOp::Eq)
    {
        filter.service = Some(m.value.clone());
    }
    let found = loupe_storage::logs::scan::scan(logs.source(tenant), &filter, || {
        Streams::new(with_bytes, buckets)
    })
    .await?;
    let files = found.files;
    let selector: Vec<Matcher> = selector.map(<[Matcher]>::to_vec).unwrap_or_default();
    let out = loupe_core::cpu::run(move || {
        let mut by_labels: BTreeMap<BTreeMap<String, String>, Vec<StreamStats>> = BTreeMap::new();
        for (resource, stats) in found.resources() {
            let labels = Labels::of_resource(&resource).of(&[Cat::Stream]);
            let keep = selector
                .iter()
                .all(|m| m.matches(labels.get(&m.name).map_or("", String::as_str)));
            if !keep {
                continue;
            }
            match by_labels.get_mut(&labels) {
                Some(have) => {
                    for (a, b) in have.iter_mut().zip(stats) {
                        a.lines += b.lines;
                        a.bytes += b.bytes;
                    }
                }
                None => {
                    by_labels.insert(labels, stats);
                }
            }
        }
        by_labels.into_iter().collect::<Vec<_>>()
    })
    .await?;
    Ok((out, files))
}
