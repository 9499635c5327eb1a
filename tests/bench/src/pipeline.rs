//! The ingest path's CPU work measured in-process, without the server, the network or the
//! load generator: the collector's payload decoding and conversion to span records, then
//! the span Parquet encoding in 64k-span batches, on this process's CPU clock. It leaves out
//! validation, the WAL and the upload, and it is far steadier than the server figures (which
//! share two cores with the load generator), so changes to conversion and encoding show here.

use bytes::Bytes;
use loupe_storage::model::SpanRecord;
use loupe_storage::spans::encode_spans;

pub struct Cost {
    pub spans: usize,
    pub decode_convert_s: f64,
    pub encode_s: f64,
}

const BATCH_SPANS: usize = 65_536;

/// CPU seconds this process has used.
fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

pub fn measure(requests: &[Bytes]) -> anyhow::Result<Cost> {
    let mut cost = Cost {
        spans: 0,
        decode_convert_s: 0.0,
        encode_s: 0.0,
    };
    let mut batch: Vec<SpanRecord> = Vec::with_capacity(BATCH_SPANS);
    let encode = |batch: &mut Vec<SpanRecord>, cost: &mut Cost| -> anyhow::Result<()> {
        let t = cpu_s();
        encode_spans(batch.iter().collect())?;
        cost.encode_s += cpu_s() - t;
        batch.clear();
        Ok(())
    };
    for r in requests {
        let t = cpu_s();
        let rows = loupe_collector::otlp::decode_trace_payload(r).map_err(anyhow::Error::msg)?;
        cost.decode_convert_s += cpu_s() - t;
        cost.spans += rows.len();
        batch.extend(rows);
        if batch.len() >= BATCH_SPANS {
            encode(&mut batch, &mut cost)?;
        }
    }
    if !batch.is_empty() {
        encode(&mut batch, &mut cost)?;
    }
    Ok(cost)
}
