//! Loupe storage: everything that lives in the object store.
//!
//! - Tenants, signals and the error vocabulary come from `loupe-core` (re-exported here).
//! - [`store`]: opening the object store from a URL (`file://`, `s3://`, `memory://`) and the
//!   object layout (`{tenant}/{signal}/{yyyy}/{mm}/{dd}/{hh}/{ulid}.parquet`).
//! - [`catalog`]: the per-tenant × signal list of data files, changed only by atomic commits
//!   (create-if-absent objects), so several writers can share one bucket.
//! - [`model`]: our own span structs; OTLP types stop at the collector edge.
//! - [`spans`]: the span Parquet format: writing, pruned reading, filters.
//! - [`lifecycle`]: the generic file pipeline ([`lifecycle::Format`]): upload, compaction,
//!   retention, tombstone garbage collection, orphan sweep, the lifecycle lease and loop.
//! - [`parquet_files`]: ranged, cached reads of Parquet files (every signal's reader).
//! - [`logs`]: the log file format (Parquet documents and a tantivy index in one object),
//!   indexed search.
//! - [`fresh`]: acknowledged data not yet flushed (chunks per export) and the hook through which
//!   queries see it, for every signal.
//! - [`counted`]: every object store request counted on `/metrics`.
//! - [`synced`]: the local-filesystem store whose puts are durable (fsync) when they return.

pub mod catalog;
#[cfg(any(test, feature = "test-suite"))]
pub mod conformance;
pub mod counted;
pub mod error;
pub mod fresh;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod parquet_files;
pub mod spans;
pub mod store;
pub mod synced;
#[cfg(any(test, feature = "test-suite"))]
pub mod testing;

pub use error::StorageError;
pub use loupe_core::{AuthError, Classify, ErrorCode, Signal, TenantId, TenantResolver};
