//! Log records: the model the collector buffers and queries return ([`model`]), their
//! Parquet file format ([`schema`], [`encode`], [`decode`], ids cut out of the text:
//! [`body_ids`]), the file lifecycle's
//! [`LogFormat`], the predicate every log search applies ([`filter`]) and live tail
//! ([`tail`]).
//!
//! A log file is sorted by (service, time) so lines of one service sit together and
//! compress well; its catalog entry carries the time range, the services and a filter of the
//! trace ids its lines carry (so a trace's lines are found without opening other files).

pub mod body_ids;
pub mod decode;
pub mod encode;
pub mod expr;
pub mod filter;
pub mod format;
pub mod histogram;
pub mod index;
pub mod model;
pub mod scan;
pub mod schema;
pub mod search;
pub mod streams;
pub mod tail;

pub use expr::{Cond, Glob, LogExpr, Pattern, Scalar, ValueTest};
pub use filter::{LogFilter, Residual};
pub use format::LogFormat;
pub use histogram::{Histogram, LEVELS, histogram};
pub use model::{LogRecord, severity_from_text};
pub use search::{LogQuery, Order, search};
