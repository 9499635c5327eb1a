//! Loupe collector: the OTLP front door.
//!
//! Data flow: an export arrives over gRPC ([`grpc`]) or HTTP ([`http`]) → it is decoded and
//! validated at the edge ([`otlp`]) → appended to the write-ahead log ([`wal`]) and only then
//! acknowledged → buffered per tenant × signal ([`batcher`]) → flushed by [`ingest::Ingester`]
//! into a Parquet file, committed to the catalog, and the WAL is trimmed.

pub mod batcher;
pub mod error;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod otlp;
pub mod wal;

pub use error::IngestError;
pub use ingest::{IngestLimits, Ingester};
