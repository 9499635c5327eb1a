//! Loupe's shared vocabulary, used by the collector, the query service, the write-ahead log
//! and the node agent alike, and small enough for the agent's binary:
//!
//! - [`tenant`]: validated tenant names and the resolution of a request's tenant from its
//!   credentials (`Authorization: Bearer`, `X-Scope-OrgID`).
//! - [`signal`]: the kinds of data (traces, logs, metrics) and their stable wire codes.
//! - [`error`]: one error vocabulary ([`ErrorCode`]) that every crate's error type maps to,
//!   and the one mapping from it to HTTP statuses and gRPC codes.
//! - [`trace_context`]: trace and span ids carried in the text of a log line.
//! - [`log_level`]: the level a log line states in its text.
//! - [`fs`]: free space of a filesystem (`statvfs`).
//! - [`cpu`]: the bounded pool for CPU-heavy work (decoding, decompression, page decoding), so
//!   it never runs on the async runtime's threads.

pub mod cpu;
pub mod error;
pub mod fs;
pub mod log_level;
pub mod signal;
pub mod tenant;
pub mod trace_context;

pub use error::{Classify, ErrorCode, GrpcCode};
pub use signal::Signal;
pub use tenant::{AuthError, InvalidTenant, TenantId, TenantResolver};
