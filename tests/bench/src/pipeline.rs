//! The ingest path's CPU work measured in-process, without the server, the network or the
//! load generator: the collector's payload decoding into span rows, then the span Parquet
//! encoding of 64k-span flushes (freeing the buffered rows included), on this process's CPU
//! clock. It leaves out the WAL and the upload, and it is far steadier than the server
//! figures (which share two cores with the load generator), so changes to conversion and
//! encoding show here.

use bytes::Bytes;
use loupe_storage::fresh::Rows;
use loupe_storage::spans::{SpanRows, encode_rows};

pub struct Cost {
    pub spans: usize,
    pub decode_convert_s: f64,
    pub encode_s: f64,
    /// Memory of the buffered rows (Arrow buffers) over the protobuf bytes they came from:
    /// what the collector's buffer budget, counted in protobuf bytes, really holds.
    pub rows_memory_per_payload_byte: f64,
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
        rows_memory_per_payload_byte: 0.0,
    };
    let (mut rows_memory, mut payload) = (0usize, 0usize);
    // The chunks of one flush, as the collector buffers them.
    let mut batch: Vec<SpanRows> = Vec::new();
    let mut buffered = 0;
    let encode = |batch: &mut Vec<SpanRows>, cost: &mut Cost| -> anyhow::Result<()> {
        let t = cpu_s();
        encode_rows(&batch.iter().collect::<Vec<_>>())?;
        batch.clear();
        cost.encode_s += cpu_s() - t;
        Ok(())
    };
    for r in requests {
        let t = cpu_s();
        let rows = loupe_collector::otlp::decode_trace_payload(r).map_err(anyhow::Error::msg)?;
        cost.decode_convert_s += cpu_s() - t;
        cost.spans += rows.len();
        rows_memory += rows.batch().get_array_memory_size();
        payload += r.len();
        buffered += rows.len();
        batch.push(rows);
        if buffered >= BATCH_SPANS {
            encode(&mut batch, &mut cost)?;
            buffered = 0;
        }
    }
    if !batch.is_empty() {
        encode(&mut batch, &mut cost)?;
    }
    cost.rows_memory_per_payload_byte = rows_memory as f64 / payload.max(1) as f64;
    Ok(cost)
}
