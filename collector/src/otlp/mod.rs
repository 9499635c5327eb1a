//! The OTLP edge: validation and conversion of OTLP trace requests into Loupe's span records,
//! decoding of protobuf and JSON bodies, and the `google.rpc.Status` error body of OTLP/HTTP.
//! OTLP types do not travel further than this module and the gRPC/HTTP handlers.

pub mod convert;
pub mod decode;

pub use convert::{Validated, to_span_records, validate_traces};
pub use decode::{Encoding, RpcStatus, decode_traces};
