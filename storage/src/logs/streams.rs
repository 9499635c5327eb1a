//! The streams that hold matching lines, with how many lines and bytes each holds: what label
//! browsers ask for (Loki's labels, label values, series, index stats and volume). A stream
//! is a distinct resource (service and resource attributes).
//!
//! A [`Visit`]or of [`crate::logs::scan`]: for a plain filter a file is folded from its
//! time, severity, service and resource columns (the resource column is dictionary-coded,
//! so this reads little), plus the body column when bytes are wanted.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch};

use crate::logs::body_ids;
use crate::logs::filter::LogFilter;
use crate::logs::model::LogRecord;
use crate::logs::scan::{PlainRows, Visit};
use crate::logs::schema;
use crate::model::{Attrs, Resource};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamStats {
    pub lines: u64,
    /// Bytes of the lines' text (when counted).
    pub bytes: u64,
}

impl StreamStats {
    fn add(&mut self, o: StreamStats) {
        self.lines += o.lines;
        self.bytes += o.bytes;
    }
}

/// Time buckets `[start + i * step, start + (i + 1) * step)`, `n` of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buckets {
    pub start: i64,
    pub step: i64,
    pub n: usize,
}

impl Buckets {
    fn of(&self, t: i64) -> Option<usize> {
        let i = t.checked_sub(self.start)?.checked_div(self.step.max(1))?;
        (i >= 0 && (i as usize) < self.n).then_some(i as usize)
    }
}

/// Lines per stream (and per time bucket), keyed by service and the resource's attributes
/// as JSON.
#[derive(Debug)]
pub struct Streams {
    with_bytes: bool,
    buckets: Option<Buckets>,
    pub by_key: HashMap<(String, String), Vec<StreamStats>>,
    /// Files (and the fresh records) that held any of the lines.
    pub files: u64,
}

const COLUMNS: &[&str] = &[
    schema::TIME,
    schema::SEVERITY_NUMBER,
    schema::SERVICE_NAME,
    schema::RESOURCE_ATTRIBUTES,
];
const COLUMNS_WITH_BODY: &[&str] = &[
    schema::TIME,
    schema::SEVERITY_NUMBER,
    schema::SERVICE_NAME,
    schema::RESOURCE_ATTRIBUTES,
    schema::BODY,
    schema::BODY_IDS,
];

impl Streams {
    /// `with_bytes`: also count the bytes of the lines (reads the body column); `buckets`:
    /// count per time bucket (`None`: one bucket, every time).
    pub fn new(with_bytes: bool, buckets: Option<Buckets>) -> Self {
        Streams {
            with_bytes,
            buckets,
            by_key: HashMap::new(),
            files: 0,
        }
    }

    /// The bucket of time `t`.
    fn bucket(&self, t: i64) -> Option<usize> {
        match &self.buckets {
            Some(b) => b.of(t),
            None => Some(0),
        }
    }

    fn add(&mut self, key: (String, String), bucket: usize, stats: StreamStats) {
        let n = self.buckets.map_or(1, |b| b.n);
        self.by_key
            .entry(key)
            .or_insert_with(|| vec![StreamStats::default(); n])[bucket]
            .add(stats);
    }

    /// The streams as resources, with their counts per bucket.
    pub fn resources(&self) -> Vec<(Arc<Resource>, Vec<StreamStats>)> {
        self.by_key
            .iter()
            .map(|((service, attrs), stats)| {
                let r = Resource {
                    service_name: service.clone(),
                    attributes: Attrs::from_json(attrs).unwrap_or_default(),
                };
                (Arc::new(r), stats.clone())
            })
            .collect()
    }
}

impl Visit for Streams {
    fn visit(&mut self, r: &LogRecord) {
        let key = (
            r.service_name().to_string(),
            r.resource.attributes.to_json(),
        );
        let bytes = if self.with_bytes {
            r.body_text().len() as u64
        } else {
            0
        };
        if let Some(b) = self.bucket(r.time_unix_nano) {
            self.add(key, b, StreamStats { lines: 1, bytes });
        }
    }

    fn merge(&mut self, other: Streams) {
        if !other.by_key.is_empty() {
            self.files += 1;
        }
        for (k, v) in other.by_key {
            match self.by_key.get_mut(&k) {
                Some(mine) => {
                    for (a, b) in mine.iter_mut().zip(v) {
                        a.add(b);
                    }
                }
                None => {
                    self.by_key.insert(k, v);
                }
            }
        }
    }

    fn columns(&self) -> Option<&'static [&'static str]> {
        Some(if self.with_bytes {
            COLUMNS_WITH_BODY
        } else {
            COLUMNS
        })
    }

    fn visit_columns(&mut self, b: &RecordBatch, filter: &LogFilter) {
        let Some(rows) = PlainRows::new(b, filter) else {
            return;
        };
        let Some(resource) = b
            .column_by_name(schema::RESOURCE_ATTRIBUTES)
            .and_then(|c| c.as_dictionary_opt::<Int32Type>())
        else {
            return;
        };
        let (Some(services), Some(resources)) = (
            rows.service.values().as_string_opt::<i32>(),
            resource.values().as_string_opt::<i32>(),
        ) else {
            return;
        };
        let body = b
            .column_by_name(schema::BODY)
            .and_then(|c| c.as_string_opt::<i32>());
        let ids = b
            .column_by_name(schema::BODY_IDS)
            .and_then(|c| c.as_binary_opt::<i32>());
        // Counted per pair of dictionary keys and bucket first: a batch has few streams.
        let mut per_key: HashMap<(i32, i32, usize), StreamStats> = HashMap::new();
        for i in rows.iter() {
            if rows.service.is_null(i) || resource.is_null(i) {
                continue;
            }
            let Some(bucket) = self.bucket(rows.time.value(i)) else {
                continue;
            };
            let k = (
                rows.service.keys().value(i),
                resource.keys().value(i),
                bucket,
            );
            let bytes = body.map_or(0, |b| match ids {
                Some(ids) if !ids.is_null(i) => body_ids::joined_len(b.value(i), ids.value(i)),
                _ => b.value(i).len(),
            }) as u64;
            per_key
                .entry(k)
                .or_default()
                .add(StreamStats { lines: 1, bytes });
        }
        for ((s, r, bucket), stats) in per_key {
            let key = (
                services.value(s as usize).to_string(),
                resources.value(r as usize).to_string(),
            );
            self.add(key, bucket, stats);
        }
    }
}
