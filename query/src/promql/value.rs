//! PromQL values as the evaluator holds them: every node is evaluated for all steps of a
//! query at once, so an instant vector is a list of series with one optional point per step
//! (`None`: no sample at that step), a scalar one value per step, a range vector the raw
//! samples with the window each step reads.

use std::sync::Arc;

use loupe_storage::metrics::{Labels, Sample, Series};

/// An instant-vector series: a point per step.
#[derive(Debug, Clone, PartialEq)]
pub struct Steps {
    pub labels: Arc<Labels>,
    pub points: Vec<Option<f64>>,
}

/// A range vector: series of samples; step `i` reads the samples in
/// `(ends[i] - range, ends[i]]`. Shared: a selector's fetched series are used as they are
/// when none needs filtering.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub series: Arc<Vec<Series>>,
    pub range: i64,
    pub ends: Vec<i64>,
}

impl Matrix {
    /// The samples of `s` in step `i`'s window.
    pub fn window<'a>(&self, s: &'a Series, i: usize) -> &'a [Sample] {
        let end = self.ends[i];
        let start = end - self.range;
        let lo = s.samples.partition_point(|x| x.t <= start);
        let hi = s.samples.partition_point(|x| x.t <= end);
        &s.samples[lo..hi.max(lo)]
    }
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<Steps>),
    Matrix(Matrix),
    String(String),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "instant vector",
            Value::Matrix(_) => "range vector",
            Value::String(_) => "string",
        }
    }
}

/// Prometheus's text for a float (Go's `'f'` format with the shortest precision: never an
/// exponent, as Rust's `Display`), `NaN`, `+Inf`, `-Inf` — the same text the Loki API writes.
pub use crate::loki::query::value_text as format_float;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_prometheus_prints_them() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.25), "0.25");
        assert_eq!(format_float(-3.5), "-3.5");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1.5e-7), "0.00000015");
        assert_eq!(format_float(0.0), "0");
    }
}
