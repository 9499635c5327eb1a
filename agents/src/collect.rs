//! The reading loop, on a thread of its own: rounds of reading every open file into one
//! OTLP logs request, appending it to the buffer, then advancing the files' checkpoints.
//!
//! Order of a round (what makes a crash lose nothing): read → encode → [`Buffer::append`]
//! returns (the request is durable) → [`Files::committed`] saves the checkpoints durably →
//! scan for new, renamed and deleted files. A crash before the append reads the lines again
//! from the old checkpoints; between the append and the save, the lines are in the buffer
//! and are read again too (duplicates, at most one round); after the save, neither.
//!
//! Back-pressure: while the buffer refuses appends (full, or its disk is), the round's
//! request is retried every 250 ms and no file is read further — nothing is dropped, the
//! lines wait in their files. `loupe_agent_reading_paused` is 1 meanwhile. Scanning goes
//! on: a file rotated while reading is paused is opened, and held open, before the kubelet
//! compresses and deletes it — so a long outage holds the disk space of deleted files
//! until their lines are read (the price of dropping nothing).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loupe_core::Signal;

use crate::buffer::Buffer;
use crate::files::{FileRecords, Files};
use crate::otlp_logs::{Line, LogsBatch, Value};

#[derive(Debug, Clone)]
pub struct CollectSettings {
    /// Encoded bytes at which a round's request is sealed.
    pub batch_bytes: usize,
    /// Longest a round gathers before its request is sealed.
    pub batch_interval: Duration,
    /// Pause between reads that found nothing new.
    pub poll_interval: Duration,
    /// How often the pods directory is scanned for new, renamed and deleted files.
    pub scan_interval: Duration,
    /// Bytes read from one file per read.
    pub read_bytes: usize,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Adds one file's records to the request; returns the lines added.
fn encode(batch: &mut LogsBatch, fr: &FileRecords, observed: u64) -> usize {
    let mut n = 0;
    for (rec, _) in &fr.records {
        let incomplete = [
            ("log.iostream", Value::Str(rec.stream.as_str())),
            ("loupe.log.incomplete", Value::Bool(true)),
        ];
        let attrs = if rec.complete {
            &incomplete[..1]
        } else {
            &incomplete[..]
        };
        // Trace context in the line (JSON, logfmt, traceparent), lifted here so it reaches
        // any OTLP backend: the collector's own reader of it, shared through loupe-core.
        let ctx = std::str::from_utf8(&rec.message)
            .ok()
            .and_then(loupe_core::trace_context::find);
        batch.push(
            &fr.resource,
            &Line {
                time_unix_nano: rec.time_unix_nano,
                observed_unix_nano: observed,
                body: &rec.message,
                attributes: attrs,
                trace_id: ctx.map(|c| c.trace_id),
                span_id: ctx.and_then(|c| c.span_id),
                ..Line::default()
            },
        );
        n += 1;
    }
    for (raw, why, _) in &fr.unparsed {
        let reason = why.to_string();
        let attrs = [("loupe.log.unparsed", Value::Str(&reason))];
        batch.push(
            &fr.resource,
            &Line {
                observed_unix_nano: observed,
                body: raw,
                attributes: &attrs,
                ..Line::default()
            },
        );
        n += 1;
    }
    n
}

/// What one round read: the request to buffer and the checkpoints it advances.
pub struct Gathered {
    /// The buffer record ([`crate::record`]); `None` when nothing was read.
    pub payload: Option<bytes::Bytes>,
    pub offsets: HashMap<(u64, u64), u64>,
    pub lines: usize,
    pub bytes: u64,
}

/// A round being gathered: its request, the checkpoints its records advance and counts.
#[derive(Default)]
pub struct Round {
    batch: LogsBatch,
    offsets: HashMap<(u64, u64), u64>,
    lines: usize,
    bytes: u64,
}

impl Round {
    /// Adds one read of the files ([`Files::read`]); `true` if it gave anything.
    pub fn add(&mut self, got: &[FileRecords]) -> bool {
        let observed = now_nanos();
        for fr in got {
            self.lines += encode(&mut self.batch, fr, observed);
            self.bytes += fr.bytes;
            if fr.truncated {
                // Offsets read before the truncation are of the old content.
                self.offsets.remove(&fr.key);
            }
            let resume = fr
                .records
                .iter()
                .map(|r| r.1)
                .chain(fr.unparsed.iter().map(|u| u.2))
                .max();
            if let Some(r) = resume {
                let e = self.offsets.entry(fr.key).or_insert(r);
                *e = (*e).max(r);
            }
        }
        !got.is_empty()
    }

    /// The round's buffer record, with the checkpoints it carries.
    pub fn finish(mut self, files: &Files) -> Gathered {
        let payload = (!self.batch.is_empty()).then(|| {
            crate::record::encode(
                self.lines as u32,
                &files.checkpoints_at(&self.offsets),
                &self.batch.finish(),
            )
        });
        Gathered {
            payload,
            offsets: self.offsets,
            lines: self.lines,
            bytes: self.bytes,
        }
    }
}

/// Reads until the request is full or the batch interval is over.
pub fn gather(files: &mut Files, settings: &CollectSettings) -> Gathered {
    let started = Instant::now();
    let mut round = Round::default();
    loop {
        let any = round.add(&files.read(settings.read_bytes));
        let elapsed = started.elapsed();
        if round.batch.bytes() >= settings.batch_bytes || elapsed >= settings.batch_interval {
            break;
        }
        if !any {
            std::thread::sleep(
                settings
                    .poll_interval
                    .min(settings.batch_interval - elapsed),
            );
        }
    }
    round.finish(files)
}

/// Appends the round's request to the buffer, waiting while it refuses (back-pressure).
/// `Some(seq)` of the record (`Some(None)`: nothing to append); `None`: stopped first.
///
/// `while_refused` runs between attempts: the caller keeps scanning, so files rotated,
/// compressed and deleted meanwhile are opened (and held) before they disappear.
pub fn append(
    buffer: &Buffer,
    g: &Gathered,
    rt: &tokio::runtime::Handle,
    stop: &AtomicBool,
    while_refused: &mut dyn FnMut(),
) -> Option<Option<u64>> {
    let Some(payload) = &g.payload else {
        return Some(None);
    };
    let mut paused = false;
    let seq = loop {
        match rt.block_on(buffer.append(Signal::Logs, payload.clone())) {
            Ok(seq) => break seq,
            Err(e) => {
                if !paused {
                    tracing::warn!(error = %e, "buffer refuses appends: reading paused");
                    metrics::gauge!("loupe_agent_reading_paused").set(1.0);
                    paused = true;
                }
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(250));
                while_refused();
            }
        }
    };
    if paused {
        tracing::info!("buffer accepts appends again: reading resumed");
        metrics::gauge!("loupe_agent_reading_paused").set(0.0);
    }
    metrics::counter!("loupe_agent_lines_read_total").increment(g.lines as u64);
    metrics::counter!("loupe_agent_bytes_read_total").increment(g.bytes);
    Some(Some(seq))
}

/// After a round's append: advances the checkpoints (the store is saved now and then);
/// once saved, the buffer may trim up to the record.
pub fn commit(files: &mut Files, buffer: &Buffer, g: &Gathered, seq: Option<u64>) {
    match files.committed(&g.offsets) {
        Ok(true) => {
            buffer.checkpointed(buffer.durable_below().min(seq.map_or(u64::MAX, |s| s + 1)))
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot save checkpoints (the buffer keeps them meanwhile)")
        }
    }
}

/// Runs rounds until `stop` is set.
pub fn run(
    mut files: Files,
    buffer: Arc<Buffer>,
    settings: CollectSettings,
    rt: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    pods: Option<Arc<crate::kube::PodCache>>,
) {
    let mut last_scan: Option<Instant> = None;
    let mut pods_seen = 0;
    let mut started = false;
    while !stop.load(Ordering::Relaxed) {
        if last_scan.is_none_or(|t| t.elapsed() >= settings.scan_interval) {
            if let Err(e) = files.scan() {
                tracing::error!(error = %e, "cannot scan the pods directory");
            }
            last_scan = Some(Instant::now());
            publish_lag(&files);
            if let Some(g) = pods.as_ref().map(|p| p.generation())
                && g != pods_seen
            {
                pods_seen = g;
                files.refresh_resources();
            }
            if !started {
                // The buffer's checkpoints were applied at start: once saved, the records
                // that carried them may be trimmed when shipped.
                match files.save_now() {
                    Ok(()) => buffer.checkpointed(buffer.durable_below()),
                    Err(e) => tracing::error!(error = %e, "cannot save checkpoints"),
                }
                started = true;
            }
        }
        let g = gather(&mut files, &settings);
        let mut scan_while_refused = || {
            if last_scan.is_none_or(|t| t.elapsed() >= settings.scan_interval) {
                if let Err(e) = files.scan() {
                    tracing::error!(error = %e, "cannot scan the pods directory");
                }
                last_scan = Some(Instant::now());
                // Every record in the buffer was committed to `files` (this round's is not
                // in it yet): once the store is saved, shipped records may be deleted to
                // make room — without this a full buffer waited on itself.
                match files.save_now() {
                    Ok(()) => buffer.checkpointed(buffer.durable_below()),
                    Err(e) => tracing::warn!(error = %e, "cannot save checkpoints"),
                }
            }
        };
        let Some(seq) = append(&buffer, &g, &rt, &stop, &mut scan_while_refused) else {
            return;
        };
        commit(&mut files, &buffer, &g, seq);
        metrics::gauge!("loupe_agent_buffer_bytes").set(buffer.bytes() as f64);
    }
    // Stopping: the store saved, so a restart needs no record of the buffer for it.
    if let Err(e) = files.save_now() {
        tracing::error!(error = %e, "cannot save checkpoints");
    }
}

fn publish_lag(files: &Files) {
    metrics::gauge!("loupe_agent_open_files").set(files.open_files() as f64);
    for l in files.lag() {
        let path = l.path.display().to_string();
        metrics::gauge!("loupe_agent_file_lag_bytes", "path" => path.clone()).set(l.bytes as f64);
        metrics::gauge!("loupe_agent_file_lag_seconds", "path" => path).set(l.seconds);
    }
}
