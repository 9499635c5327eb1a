//! Metrics: Prometheus-model series ([`model`]), their Parquet files ([`file`], values coded
//! as decimals by [`decimal`], read back by [`decode`], exemplars after the samples by
//! [`exemplars`]), the series
//! index in catalog entries ([`index`]), selection over files and fresh chunks ([`select`]),
//! and the lifecycle [`Format`](crate::lifecycle::Format) ([`format`]).

pub mod decimal;
pub mod decode;
pub mod exemplars;
pub mod file;
pub mod format;
pub mod index;
pub mod model;
pub mod select;

pub use format::MetricFormat;
pub use index::{LabelMatcher, MatchOp, SeriesIndex};
pub use model::{
    Exemplar, ExemplarPoint, Labels, METRIC_NAME, MetricMeta, MetricRows, Sample, Series,
    SeriesExemplars,
};
pub use select::{MetricReader, Selector};
