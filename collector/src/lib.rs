//! Loupe collector: the OTLP front door.
//!
//! Data flow: an export arrives over gRPC ([`grpc`]) or HTTP ([`http`]); its tenant is
//! resolved and capacity checked before the body is read ([`ingest`], [`inflight`]) → it is
//! decompressed, decoded and validated on the CPU pool ([`otlp`], [`traces`], [`logs`], [`prom`] for OTLP metrics and Prometheus remote write) → appended to
//! the write-ahead log (`loupe-wal`), whose writer hands its rows to the signal's lane
//! ([`lane`], [`batcher`]) in log order, and only then acknowledged → flushed by the lane
//! into a file, committed to the catalog, and the WAL is trimmed. [`replay`] puts the log's
//! records back into the lanes at start.

pub mod batcher;
pub mod edge;
pub mod error;
pub mod grpc;
pub mod http;
pub mod inflight;
pub mod ingest;
pub mod lane;
pub mod logs;
pub mod otlp;
pub mod prom;
pub mod replay;
pub mod traces;

pub use error::IngestError;
pub use ingest::{IngestLimits, Ingester};
