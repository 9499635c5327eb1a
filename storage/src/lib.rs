//! Loupe storage: everything that lives in the object store.
//!
//! - [`tenant`]: validated tenant names, the first path segment of every object.
//! - [`store`]: opening the object store from a URL (`file://`, `s3://`, `memory://`) and the
//!   object layout (`{tenant}/{signal}/{yyyy}/{mm}/{dd}/{hh}/{ulid}.parquet`).
//! - [`catalog`]: the per-tenant list of data files, changed only by atomic commits
//!   (create-if-absent objects), so several writers can share one bucket.
//! - [`model`]: our own span structs; OTLP types stop at the collector edge.
//! - [`spans`]: the span Parquet format: writing, pruned reading, filters.
//! - [`lifecycle`]: compaction of small files and retention by age.
//! - [`fresh`]: the hook through which queries see acknowledged data not yet flushed.

pub mod catalog;
#[cfg(any(test, feature = "test-suite"))]
pub mod conformance;
pub mod error;
pub mod fresh;
pub mod lifecycle;
pub mod model;
pub mod spans;
pub mod store;
pub mod tenant;

pub use error::{ErrorKind, StorageError};
pub use tenant::{AuthError, TenantId, TenantResolver};
