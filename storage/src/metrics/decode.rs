//! Reading metric batches back into series: typed access to a batch's columns, and the
//! decoding of sample rows into series runs (mantissas rebuilt from run bases and
//! differences, a series' name, labels, step and exponent carried forward from its first
//! row). The layout is [`crate::metrics::file`]'s.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    Array, DictionaryArray, Float64Array, Int8Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};

use crate::error::StorageError;
use crate::metrics::decimal::{MAX_DIGITS, POW10, unzigzag};
use crate::metrics::file::{BASE, EXPONENT, LABELS, MANTISSA, METRIC, STEP, TIME, VALUE};
use crate::metrics::model::{Labels, Sample, Series};

/// A column of a metric batch as its array type.
pub(crate) fn column<'b, A: 'static>(
    path: &str,
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b A, StorageError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| StorageError::parquet(path, format!("metric file: bad {name} column")))
}

/// A dictionary string column of a metric batch: its keys and values.
pub(crate) fn dict_column<'b>(
    path: &str,
    batch: &'b RecordBatch,
    name: &str,
) -> Result<(&'b Int32Array, &'b StringArray), StorageError> {
    let d = column::<DictionaryArray<Int32Type>>(path, batch, name)?;
    let v = d
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| StorageError::parquet(path, format!("metric file: bad {name} column")))?;
    Ok((d.keys(), v))
}

/// What decoding carries from one batch to the next of a file: the last mantissa, and the
/// series under way (a series' later rows have no labels, step or exponent): whether it is
/// wanted, its step and exponent.
#[derive(Debug, Default)]
pub struct Run {
    mantissa: i64,
    wanted: Option<bool>,
    step: i64,
    exponent: i8,
}

/// The rows of one decoded batch as series runs, calling `keep` once per distinct series
/// to decide whether its samples (within `[start_ms, end_ms]`) are wanted.
pub fn batch_series(
    path: &str,
    run: &mut Run,
    batch: &RecordBatch,
    start_ms: i64,
    end_ms: i64,
    keep: &mut dyn FnMut(&Labels) -> bool,
    out: &mut Vec<Series>,
) -> Result<(), StorageError> {
    let (mk, mv) = dict_column(path, batch, METRIC)?;
    let (lk, lv) = dict_column(path, batch, LABELS)?;
    let times = column::<TimestampMillisecondArray>(path, batch, TIME)?;
    let values = column::<Float64Array>(path, batch, VALUE)?;
    let mantissas = column::<Int64Array>(path, batch, MANTISSA)?;
    let exponents = column::<Int8Array>(path, batch, EXPONENT)?;
    let bases = column::<Int64Array>(path, batch, BASE)?;
    let steps = column::<Int64Array>(path, batch, STEP)?;
    // The running mantissa (a run may continue from the previous batch of the row group);
    // step and exponent are the series' (version 1 repeats them on every row).
    let mut value = |i: usize| {
        if steps.is_valid(i) {
            run.step = steps.value(i);
        }
        if exponents.is_valid(i) {
            run.exponent = exponents.value(i);
        }
        if mantissas.is_valid(i) {
            let m = if bases.is_valid(i) {
                bases.value(i)
            } else {
                run.mantissa
                    .wrapping_add(unzigzag(mantissas.value(i)).wrapping_mul(run.step))
            };
            run.mantissa = m;
            let e = run.exponent.clamp(0, MAX_DIGITS as i8) as usize;
            m as f64 / POW10[e]
        } else {
            values.value(i)
        }
    };
    let mut current: Option<(i32, i32, bool)> = None;
    let mut series_wanted = run.wanted;
    for i in 0..batch.num_rows() {
        // Version 2 names a series on its first row only; version 1 on every row.
        let wanted = if lk.is_null(i) {
            series_wanted.ok_or_else(|| {
                StorageError::parquet(path, "metric file: a row group starts without labels")
            })?
        } else {
            let (m, l) = (mk.value(i), lk.value(i));
            if mk.is_null(i) {
                return Err(StorageError::parquet(
                    path,
                    "metric file: a series has labels but no metric",
                ));
            }
            match current {
                Some((cm, cl, w)) if cm == m && cl == l => w,
                _ => {
                    let labels = Labels::from_key(mv.value(m as usize), lv.value(l as usize))
                        .map_err(|e| StorageError::parquet(path, e))?;
                    let w = keep(&labels);
                    if w {
                        out.push(Series {
                            labels: Arc::new(labels),
                            samples: Vec::new(),
                        });
                    }
                    current = Some((m, l, w));
                    w
                }
            }
        };
        series_wanted = Some(wanted);
        let t = times.value(i);
        // Decoded for every row: the next row's difference builds on it.
        let v = value(i);
        if wanted
            && t >= start_ms
            && t <= end_ms
            && let Some(s) = out.last_mut()
        {
            s.samples.push(Sample { t, v });
        }
    }
    run.wanted = series_wanted;
    Ok(())
}
