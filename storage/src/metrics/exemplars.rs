//! Exemplars in metric files: after a file's sample row groups come row groups of exemplars,
//! in the same schema (so they follow the file through flush, compaction and retention with
//! nothing else to track). An exemplar row has its series' `metric` and `labels`, its own
//! `time`, its value in `value` (no mantissa), and its labels (`trace_id`, `span_id`, ...)
//! as a JSON object in `exemplar`, which is null in sample rows. The footer key
//! `loupe.exemplar_row_groups` gives the index of the first exemplar row group; files
//! without it (schema version 1, or no exemplars) have none. Sample readers stop before that
//! row group, so exemplars cost a sample query nothing.
//!
//! Prometheus keeps exemplars in a ring buffer of 100k and drops out-of-order ones; here they
//! are kept as long as the samples, in time order per series, each distinct one once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::{
    Array, Float64Array, Int8Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use parquet::file::metadata::KeyValue;

use crate::error::StorageError;
use crate::metrics::file::{
    EXEMPLAR, LABELS, METRIC, METRIC_SCHEMA, NameColumns, TIME, VALUE, column, dict_column,
};
use crate::metrics::model::{Exemplar, Labels, MetricRows, SeriesExemplars};

/// Footer key: the index of the first exemplar row group.
pub const EXEMPLAR_GROUPS_KEY: &str = "loupe.exemplar_row_groups";

/// The index of a file's first exemplar row group, if it has any.
pub fn first_exemplar_group(kv: Option<&Vec<KeyValue>>) -> Option<usize> {
    kv.into_iter()
        .flatten()
        .find(|k| k.key == EXEMPLAR_GROUPS_KEY)
        .and_then(|k| k.value.as_deref())
        .and_then(|v| v.parse().ok())
}

fn key(e: &Exemplar) -> (i64, u64) {
    (e.t, e.v.to_bits())
}

/// Exemplars merged by series (sorted by labels), each series' in time order, each distinct
/// exemplar (time, value, labels) once.
pub fn merge_exemplars(parts: impl IntoIterator<Item = SeriesExemplars>) -> Vec<SeriesExemplars> {
    let mut by: BTreeMap<Arc<Labels>, Vec<Exemplar>> = BTreeMap::new();
    for s in parts {
        by.entry(s.labels).or_default().extend(s.exemplars);
    }
    by.into_iter()
        .map(|(labels, mut exemplars)| {
            exemplars.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.labels.cmp(&b.labels)));
            exemplars.dedup_by(|a, b| key(a) == key(b) && a.labels == b.labels);
            SeriesExemplars { labels, exemplars }
        })
        .collect()
}

/// The exemplars of buffered chunks, by series.
pub fn rows_exemplars(chunks: &[&MetricRows]) -> Vec<SeriesExemplars> {
    let parts = chunks.iter().flat_map(|c| {
        c.exemplars.iter().filter_map(|e| {
            c.series
                .get(e.series as usize)
                .map(|labels| SeriesExemplars {
                    labels: labels.clone(),
                    exemplars: vec![e.exemplar.clone()],
                })
        })
    });
    merge_exemplars(parts)
}

/// Exemplar rows in the metric schema.
pub fn to_batch(series: &[SeriesExemplars]) -> Result<RecordBatch, StorageError> {
    let n: usize = series.iter().map(|s| s.exemplars.len()).sum();
    // Every exemplar row names its series: they are read one by one, not as runs.
    let mut names = NameColumns::with_capacity(n, series.len());
    let mut times = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for s in series {
        names.series(&s.labels);
        for e in &s.exemplars {
            names.row(true);
            times.push(e.t);
            values.push(e.v);
            labels.push(e.labels.key_without_name());
        }
    }
    let (metric_column, labels_column) = names.finish()?;
    RecordBatch::try_new(
        METRIC_SCHEMA.clone(),
        vec![
            Arc::new(metric_column),
            Arc::new(labels_column),
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(Int64Array::new_null(n)),
            Arc::new(Int64Array::new_null(n)),
            Arc::new(Int8Array::new_null(n)),
            Arc::new(Int64Array::new_null(n)),
            Arc::new(Float64Array::from(values)),
            Arc::new(StringArray::from(labels)),
        ],
    )
    .map_err(|e| StorageError::Internal(format!("exemplars: {e}")))
}

/// The exemplars of one batch of exemplar rows with times in `[start_ms, end_ms]`, of the
/// series `keep` wants (asked once per distinct series).
pub fn batch_exemplars(
    path: &str,
    batch: &RecordBatch,
    start_ms: i64,
    end_ms: i64,
    keep: &mut dyn FnMut(&Labels) -> bool,
    out: &mut Vec<SeriesExemplars>,
) -> Result<(), StorageError> {
    let (mk, mv) = dict_column(path, batch, METRIC)?;
    let (lk, lv) = dict_column(path, batch, LABELS)?;
    let times = column::<TimestampMillisecondArray>(path, batch, TIME)?;
    let values = column::<Float64Array>(path, batch, VALUE)?;
    let labels = column::<StringArray>(path, batch, EXEMPLAR)?;
    let mut wanted: HashMap<(i32, i32), Option<usize>> = HashMap::new();
    for i in 0..batch.num_rows() {
        let t = times.value(i);
        if t < start_ms || t > end_ms || labels.is_null(i) || values.is_null(i) {
            continue;
        }
        let (m, l) = (mk.value(i), lk.value(i));
        let slot = match wanted.get(&(m, l)) {
            Some(s) => *s,
            None => {
                let series = Labels::from_key(mv.value(m as usize), lv.value(l as usize))
                    .map_err(|e| StorageError::parquet(path, e))?;
                let s = keep(&series).then(|| {
                    out.push(SeriesExemplars {
                        labels: Arc::new(series),
                        exemplars: Vec::new(),
                    });
                    out.len() - 1
                });
                wanted.insert((m, l), s);
                s
            }
        };
        if let Some(s) = slot {
            let e = Labels::from_key("", labels.value(i))
                .map_err(|e| StorageError::parquet(path, e))?;
            out[s].exemplars.push(Exemplar {
                labels: Arc::new(e),
                t,
                v: values.value(i),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(trace: &str, t: i64, v: f64) -> Exemplar {
        Exemplar {
            labels: Arc::new(Labels::new(vec![("trace_id".into(), trace.into())])),
            t,
            v,
        }
    }

    #[test]
    fn merge_sorts_and_keeps_each_distinct_exemplar_once() {
        let series = Arc::new(Labels::new(vec![("__name__".into(), "x_bucket".into())]));
        let merged = merge_exemplars(vec![
            SeriesExemplars {
                labels: series.clone(),
                exemplars: vec![ex("b", 5, 1.0), ex("a", 1, 2.0)],
            },
            SeriesExemplars {
                labels: series.clone(),
                exemplars: vec![ex("a", 1, 2.0), ex("c", 5, 1.0)],
            },
        ]);
        assert_eq!(merged.len(), 1);
        let got: Vec<(i64, &str)> = merged[0]
            .exemplars
            .iter()
            .map(|e| (e.t, e.labels.get("trace_id").unwrap_or("")))
            .collect();
        assert_eq!(got, vec![(1, "a"), (5, "b"), (5, "c")]);
    }
}
