//! Metrics at the edge: OTLP metrics (gRPC and HTTP, through the generic edges) and
//! Prometheus remote write 1.0 (`POST /prometheus/api/v1/write`, [`remote_write`]) both
//! become a remote-write [`wire::WriteRequest`] — the metrics WAL payload — and the series
//! the metrics lane buffers. What is durable when is the ingest core's rule
//! (`crate::ingest`): an export is answered after its WAL record is fsynced.
//!
//! - [`wire`]: the remote-write messages; [`names`]: OpenTelemetry → Prometheus names;
//!   [`otlp`]: OTLP → series (delta → cumulative), read in place by [`otlp_wire`], per
//!   metric kind in [`otlp_points`]; [`validate`]: names, labels, times;
//!   [`cache`]: each tenant's active series (known ones cost a lookup; the series limit).

pub mod cache;
pub mod deltas;
pub mod names;
pub mod otlp;
pub mod otlp_points;
pub mod otlp_wire;
pub mod remote_write;
pub mod validate;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use loupe_core::TenantId;
use loupe_storage::fresh::Chunk;
use loupe_storage::metrics::model::Point;
use loupe_storage::metrics::{Exemplar, ExemplarPoint, Labels, MetricRows};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use crate::error::IngestError;
use crate::ingest::{Decoded, ExportCounters, Ingester};
use crate::otlp::{Encoding, TimeWindow, Validated};
use crate::prom::cache::SeriesCache;
use crate::prom::otlp::{Applied, Deltas};
use crate::prom::validate::Problems;

type Fast = foldhash::fast::RandomState;

/// A decoded metrics export, with what must follow its fate: the deltas its conversion
/// added to running totals (taken back if it fails) and each series' newest sample (recorded
/// in the series cache once it is durable).
pub struct DecodedMetrics {
    pub decoded: Decoded<MetricRows>,
    applied: Applied,
    newest: Vec<(u128, i64, u64)>,
    tenant: TenantId,
    deltas: Arc<Deltas>,
    cache: Arc<SeriesCache>,
}

/// The order rules for one sample of a series whose newest sample so far is `last`:
/// `Ok(true)` store it, `Ok(false)` the very same sample again (taken, not stored),
/// `Err(why)` refused as out of order or as a duplicate with another value.
pub fn in_order(labels: &Labels, last: Option<(i64, u64)>, t: i64, v: f64) -> Result<bool, String> {
    match last {
        Some((lt, _)) if t < lt => Err(format!(
            "out of order sample: {labels} at {t} ms is older than its newest sample at {lt} ms"
        )),
        Some((lt, bits)) if t == lt && bits == v.to_bits() => Ok(false),
        Some((lt, bits)) if t == lt => Err(format!(
            "duplicate sample for timestamp: {labels} at {t} ms already has the value {}",
            f64::from_bits(bits)
        )),
        _ => Ok(true),
    }
}

/// What decoding a metrics export needs besides its body.
pub struct MetricParams {
    pub window: TimeWindow,
    pub tenant: TenantId,
    pub deltas: Arc<Deltas>,
    pub cache: Arc<SeriesCache>,
}

/// The decoded export from valid rows: the payload is the body as received when nothing was
/// left out, else the rows encoded again.
fn finish(rows: MetricRows, problems: Problems, plain: Option<Bytes>) -> Decoded<MetricRows> {
    let validated = Validated {
        accepted: rows.points.len() as u64,
        rejected: problems.rejected,
        message: problems.message(),
    };
    if rows.points.is_empty() && rows.exemplars.is_empty() {
        return Decoded {
            validated,
            payload: Bytes::new(),
            chunk: None,
        };
    }
    let payload = match plain {
        Some(p) if !problems.any() => p,
        _ => Bytes::from(wire::encode_rows(&rows)),
    };
    let chunk = Chunk::new(rows, payload.len() as u64);
    Decoded {
        validated,
        payload,
        chunk: Some(chunk),
    }
}

/// Decodes an OTLP metrics export. CPU-heavy: call on the CPU pool.
pub fn decode_otlp(
    plain: Bytes,
    enc: Encoding,
    p: MetricParams,
) -> Result<DecodedMetrics, IngestError> {
    if plain.is_empty() {
        return Err(IngestError::BadRequest(
            "request body is empty: expected an OTLP ExportMetricsServiceRequest".into(),
        ));
    }
    let cx = || otlp::Context {
        tenant: &p.tenant,
        deltas: &p.deltas,
        cache: &p.cache,
        window: p.window,
    };
    // Protobuf is read in place; JSON, and protobuf the in-place reader does not read as
    // prost does, go through prost and its canonical encoding.
    let direct = match enc {
        Encoding::Protobuf => otlp::convert(&plain, cx()).ok(),
        Encoding::Json => None,
    };
    let converted = match direct {
        Some(c) => c,
        None => {
            let req: ExportMetricsServiceRequest = match enc {
                Encoding::Protobuf => ExportMetricsServiceRequest::decode(plain).map_err(|e| {
                    IngestError::BadRequest(format!(
                        "invalid OTLP protobuf ExportMetricsServiceRequest: {e}"
                    ))
                })?,
                Encoding::Json => serde_json::from_slice(&plain).map_err(|e| {
                    IngestError::BadRequest(format!(
                        "invalid OTLP/JSON ExportMetricsServiceRequest: {e}"
                    ))
                })?,
            };
            otlp::convert(&req.encode_to_vec(), cx()).map_err(|_| {
                IngestError::BadRequest(
                    "invalid OTLP ExportMetricsServiceRequest: a message could not be read".into(),
                )
            })?
        }
    };
    let (rows, problems, applied, newest) = converted;
    Ok(DecodedMetrics {
        decoded: finish(rows, problems, None),
        applied,
        newest,
        tenant: p.tenant,
        deltas: p.deltas,
        cache: p.cache,
    })
}

/// Decodes a remote-write body (snappy block format): series already known to the tenant's
/// cache cost a lookup; new ones are checked and, within the series limit, remembered.
/// CPU-heavy: call on the CPU pool.
pub fn decode_remote_write(
    raw: Bytes,
    max_bytes: usize,
    p: &MetricParams,
) -> Result<DecodedMetrics, IngestError> {
    let snappy = |e: snap::Error| {
        IngestError::BadRequest(format!(
            "invalid snappy body (remote write uses snappy's block format): {e}"
        ))
    };
    let len = snap::raw::decompress_len(&raw).map_err(snappy)?;
    if len > max_bytes {
        return Err(IngestError::TooLarge(format!(
            "request body decompresses to {len} bytes, over the limit of {max_bytes}"
        )));
    }
    let plain = Bytes::from(
        snap::raw::Decoder::new()
            .decompress_vec(&raw)
            .map_err(snappy)?,
    );
    let req = wire::read_request(&plain).map_err(|e| {
        IngestError::BadRequest(format!("invalid remote-write protobuf WriteRequest: {e}"))
    })?;
    let known = p.cache.lookup(&p.tenant, req.series.iter().map(|s| s.hash));
    let mut problems = Problems::default();
    // New series: checked once per request, then offered to the cache.
    let mut fresh: Vec<(u128, Arc<Labels>)> = Vec::new();
    let mut fresh_of: Vec<Option<usize>> = vec![None; req.series.len()];
    let mut seen: HashMap<u128, usize, Fast> = HashMap::default();
    for (i, s) in req.series.iter().enumerate() {
        if known[i].is_some() {
            continue;
        }
        let n = s.samples.len() as u64;
        if s.histograms > 0 && n == 0 {
            problems.add(s.histograms as u64, || {
                "native histograms are not stored: send classic buckets (le) instead".into()
            });
            continue;
        }
        if let Some(&j) = seen.get(&s.hash) {
            fresh_of[i] = Some(j);
            continue;
        }
        let pairs = match wire::key_labels(&s.key) {
            Ok(pairs) => pairs,
            Err(e) => {
                problems.add(n, || format!("bad labels: {e}"));
                continue;
            }
        };
        if let Some(why) = validate::labels_problem(&pairs) {
            problems.add(n, || why);
            continue;
        }
        seen.insert(s.hash, fresh.len());
        fresh_of[i] = Some(fresh.len());
        fresh.push((s.hash, Arc::new(Labels::new(pairs))));
    }
    let inserted = if fresh.is_empty() {
        Vec::new()
    } else {
        p.cache.insert(&p.tenant, fresh)
    };
    let mut rows = MetricRows {
        metadata: validate::metadata(&req.metadata),
        ..MetricRows::default()
    };
    let mut index: HashMap<*const Labels, u32, Fast> = HashMap::default();
    let mut limited = vec![false; inserted.len()];
    // Each series' newest sample: acknowledged before (from the cache), then this request's.
    let mut newest: HashMap<u128, (i64, u64), Fast> = HashMap::default();
    for (i, s) in req.series.iter().enumerate() {
        let (labels, last) = match (&known[i], fresh_of[i]) {
            (Some(k), _) => (k.labels.clone(), k.last),
            (None, Some(j)) => match &inserted[j] {
                Ok(l) => (l.clone(), None),
                Err(why) => {
                    let first = !std::mem::replace(&mut limited[j], true);
                    problems.add(s.samples.len() as u64, || {
                        if first { why.clone() } else { String::new() }
                    });
                    continue;
                }
            },
            _ => continue,
        };
        let id = *index.entry(Arc::as_ptr(&labels)).or_insert_with(|| {
            rows.series.push(labels.clone());
            (rows.series.len() - 1) as u32
        });
        for e in &req.exemplars[s.exemplars.clone()] {
            if let Some(why) = validate::exemplar_problem(&e.labels)
                .or_else(|| validate::outside(&labels, e.t, &p.window))
            {
                problems.drop_exemplar(|| format!("exemplar of {labels} left out: {why}"));
                continue;
            }
            rows.exemplars.push(exemplar(id, &e.labels, e.t, e.v));
        }
        for &(t, v) in &req.samples[s.samples.clone()] {
            if let Some(why) = validate::outside(&labels, t, &p.window) {
                problems.add(1, || why);
                continue;
            }
            let prev = newest.get(&s.hash).copied().or(last);
            match in_order(&labels, prev, t, v) {
                Ok(true) => {
                    rows.points.push(Point { series: id, t, v });
                    newest.insert(s.hash, (t, v.to_bits()));
                }
                Ok(false) => {}
                Err(why) => problems.add(1, || why),
            }
        }
    }
    Ok(DecodedMetrics {
        decoded: finish(rows, problems, Some(plain.clone())),
        applied: Applied::default(),
        newest: newest.into_iter().map(|(h, (t, b))| (h, t, b)).collect(),
        tenant: p.tenant.clone(),
        deltas: p.deltas.clone(),
        cache: p.cache.clone(),
    })
}

/// Decodes a metrics WAL payload (a `WriteRequest` as acknowledged) into rows. Replay has
/// no cache: each payload's series get their own labels.
pub fn decode_metric_payload(payload: &[u8]) -> Result<MetricRows, String> {
    let req = wire::read_request(payload)?;
    let mut rows = MetricRows {
        metadata: validate::metadata(&req.metadata),
        ..MetricRows::default()
    };
    let mut index: HashMap<&[u8], u32, Fast> = HashMap::default();
    for s in &req.series {
        let id = match index.get(&*s.key) {
            Some(&id) => id,
            None => {
                let labels = Arc::new(Labels::new(wire::key_labels(&s.key)?));
                rows.series.push(labels);
                let id = (rows.series.len() - 1) as u32;
                index.insert(&s.key, id);
                id
            }
        };
        rows.points
            .extend(req.samples[s.samples.clone()].iter().map(|&(t, v)| Point {
                series: id,
                t,
                v,
            }));
        rows.exemplars.extend(
            req.exemplars[s.exemplars.clone()]
                .iter()
                .map(|e| exemplar(id, &e.labels, e.t, e.v)),
        );
    }
    Ok(rows)
}

/// An exemplar of the row series `series`.
pub fn exemplar(series: u32, labels: &[(String, String)], t: i64, v: f64) -> ExemplarPoint {
    ExemplarPoint {
        series,
        exemplar: Exemplar {
            labels: Arc::new(Labels::new(labels.to_vec())),
            t,
            v,
        },
    }
}

const COUNTERS: ExportCounters = ExportCounters {
    accepted: "loupe_ingest_samples_total",
    rejected: "loupe_ingest_rejected_samples_total",
};

/// Makes the valid samples of an export durable; then records each series' newest sample in
/// the series cache, or, if that failed, takes its deltas back.
pub async fn export(
    ingester: &Ingester,
    d: DecodedMetrics,
    protocol: &'static str,
) -> Result<Validated, IngestError> {
    let DecodedMetrics {
        decoded,
        applied,
        newest,
        tenant,
        deltas,
        cache,
    } = d;
    match ingester
        .export(ingester.metrics(), &tenant, decoded, protocol, COUNTERS)
        .await
    {
        Ok(v) => {
            cache.advance(&tenant, &newest);
            Ok(v)
        }
        Err(e) => {
            deltas.undo(applied);
            Err(e)
        }
    }
}
