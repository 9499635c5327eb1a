//! The span Parquet format.
//!
//! One row per span; files are sorted by `(trace_id, start)` so that row-group statistics on
//! `trace_id` prune a lookup to the row group holding the trace, and spans of one trace sit
//! together (better compression, one read per trace). Common semantic-convention attributes
//! have columns of their own (see [`schema`]); the rest are a JSON object per span.
//!
//! - [`schema`]: the Arrow schema and the promoted attribute columns.
//! - [`rows`]: one export's spans as a columnar batch, the form the collector buffers;
//!   [`builder`] builds them.
//! - [`encode`]: a flush's rows → sorted Parquet bytes plus the file's catalog statistics.
//! - [`decode`]: Arrow rows → `SpanRecord`s.
//! - [`bloom`]: the per-file trace-id filter the catalog keeps.
//! - [`filter`]: the span predicate used by trace search, on rows and on records.
//! - [`read`]: pruned reads from the object store with a footer cache; [`links`]: the
//!   parent/child columns a service graph needs.
//! - [`format`]: the span format as a [`crate::lifecycle::Format`]: flushes and compaction.

pub mod bloom;
pub mod builder;
pub mod decode;
pub mod encode;
pub mod filter;
pub mod format;
pub mod links;
pub mod read;
pub mod rows;
pub mod schema;

pub use bloom::TraceIdFilter;
pub use builder::{RowsBuilder, SpanIn, Value};
pub use encode::encode_rows;
pub use filter::SpanFilter;
pub use format::SpanFormat;
pub use links::SpanLink;
pub use read::{Projection, SpanReader};
pub use rows::SpanRows;
