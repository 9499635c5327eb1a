//! How many lines match a filter, per time bucket and severity level: the histogram a log
//! explorer draws above its results.
//!
//! A [`Visit`]or of [`scan`]: a file is counted from its `time`, `severity_number` and
//! `service_name` columns alone when the filter asks nothing else (no terms, attributes or
//! trace), otherwise from the records that match.

use crate::error::StorageError;
use crate::logs::filter::LogFilter;
use crate::logs::model::LogRecord;
use crate::logs::scan::{PlainRows, ScanSource, Visit, scan};
use crate::logs::schema;

/// Severity levels, by index: unspecified (0), then OpenTelemetry's ranges of four.
pub const LEVELS: [&str; 7] = [
    "unknown", "trace", "debug", "info", "warn", "error", "fatal",
];

/// The level index of an OTLP severity number.
pub fn level_of(severity_number: i32) -> usize {
    match severity_number {
        1..=24 => ((severity_number - 1) / 4 + 1) as usize,
        _ => 0,
    }
}

/// Counts per bucket `[start + i * step, start + (i + 1) * step)` and level.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub start_unix_nano: i64,
    pub step_nanos: i64,
    pub counts: Vec<[u64; LEVELS.len()]>,
}

impl Histogram {
    fn new(filter: &LogFilter, step_nanos: i64) -> Self {
        let span = filter
            .end_unix_nano
            .saturating_sub(filter.start_unix_nano)
            .max(0) as u128
            + 1;
        let n = span.div_ceil(step_nanos.max(1) as u128) as usize;
        Histogram {
            start_unix_nano: filter.start_unix_nano,
            step_nanos: step_nanos.max(1),
            counts: vec![[0; LEVELS.len()]; n],
        }
    }

    fn add(&mut self, time_unix_nano: i64, severity_number: i32) {
        let i = (time_unix_nano.saturating_sub(self.start_unix_nano) / self.step_nanos) as usize;
        if let Some(bucket) = self.counts.get_mut(i) {
            bucket[level_of(severity_number)] += 1;
        }
    }
}

impl Visit for Histogram {
    fn visit(&mut self, r: &LogRecord) {
        self.add(r.time_unix_nano, r.severity_number);
    }

    fn merge(&mut self, other: Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }

    fn columns(&self) -> Option<&'static [&'static str]> {
        Some(&[schema::TIME, schema::SEVERITY_NUMBER, schema::SERVICE_NAME])
    }

    fn visit_columns(&mut self, batch: &arrow_array::RecordBatch, filter: &LogFilter) {
        count_columns(batch, filter, self)
    }
}

/// The histogram of `filter` in buckets of `step_nanos` (at least 1).
pub async fn histogram(
    src: ScanSource<'_>,
    filter: &LogFilter,
    step_nanos: i64,
) -> Result<Histogram, StorageError> {
    scan(src, filter, || Histogram::new(filter, step_nanos)).await
}

fn count_columns(b: &arrow_array::RecordBatch, filter: &LogFilter, h: &mut Histogram) {
    let Some(rows) = PlainRows::new(b, filter) else {
        return;
    };
    for i in rows.iter() {
        h.add(rows.time.value(i), rows.severity.value(i));
    }
}
