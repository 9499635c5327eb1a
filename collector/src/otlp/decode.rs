//! Decoding OTLP/HTTP bodies: content type, content encoding (gzip, zstd) with a limit on the
//! decompressed size (so a small compressed "bomb" cannot exhaust memory), protobuf and
//! OTLP/JSON. Also the `google.rpc.Status` message OTLP/HTTP uses for error bodies.

use std::io::Read;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::error::IngestError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, IngestError> {
        let mime = ct
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            "" => Err(IngestError::UnsupportedMediaType(
                "missing content-type: expected application/x-protobuf or application/json".into(),
            )),
            other => Err(IngestError::UnsupportedMediaType(format!(
                "unsupported content-type {other:?}: expected application/x-protobuf or application/json"
            ))),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

fn read_limited(mut r: impl Read, limit: usize, what: &str) -> Result<Bytes, IngestError> {
    let mut out = Vec::new();
    let n = (&mut r)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| IngestError::BadRequest(format!("invalid {what} body: {e}")))?;
    if n > limit {
        return Err(IngestError::TooLarge(format!(
            "request body exceeds the limit of {limit} bytes after {what} decompression"
        )));
    }
    Ok(Bytes::from(out))
}

/// Undoes `Content-Encoding`, refusing to produce more than `limit` bytes.
pub fn decompress(
    body: Bytes,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Bytes, IngestError> {
    let enc = content_encoding
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let out = match enc.as_str() {
        "" | "identity" => body,
        "gzip" | "x-gzip" => {
            read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip")?
        }
        "zstd" => {
            let mut d = zstd::stream::read::Decoder::new(&body[..])
                .map_err(|e| IngestError::Internal(format!("zstd decoder: {e}")))?;
            // Bound the window a crafted frame may ask for (32 MiB).
            d.window_log_max(25)
                .map_err(|e| IngestError::Internal(format!("zstd decoder: {e}")))?;
            read_limited(d, limit, "zstd")?
        }
        other => {
            return Err(IngestError::UnsupportedMediaType(format!(
                "unsupported content-encoding {other:?}: expected gzip, zstd or identity"
            )));
        }
    };
    if out.len() > limit {
        return Err(IngestError::TooLarge(format!(
            "request body of {} bytes exceeds the limit of {limit} bytes",
            out.len()
        )));
    }
    Ok(out)
}

/// Decodes an `ExportTraceServiceRequest` body.
pub fn decode_traces(body: &[u8], enc: Encoding) -> Result<ExportTraceServiceRequest, IngestError> {
    if body.is_empty() {
        return Err(IngestError::BadRequest(
            "request body is empty: expected an OTLP ExportTraceServiceRequest".into(),
        ));
    }
    match enc {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            IngestError::BadRequest(format!(
                "invalid OTLP protobuf ExportTraceServiceRequest: {e}"
            ))
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            IngestError::BadRequest(format!("invalid OTLP/JSON ExportTraceServiceRequest: {e}"))
        }),
    }
}

/// `google.rpc.Status`, the error body of OTLP/HTTP.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

impl RpcStatus {
    pub fn encode_as(&self, enc: Encoding) -> Vec<u8> {
        match enc {
            Encoding::Protobuf => self.encode_to_vec(),
            Encoding::Json => {
                serde_json::to_vec(&serde_json::json!({"code": self.code, "message": self.message}))
                    .unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types() {
        assert_eq!(
            Encoding::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type(Some("application/x-protobuf")).unwrap(),
            Encoding::Protobuf
        );
        assert!(matches!(
            Encoding::from_content_type(Some("text/plain")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Encoding::from_content_type(None),
            Err(IngestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn gzip_bomb_is_refused_without_inflating_it() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 50 * 1024 * 1024]).unwrap();
        let small = enc.finish().unwrap();
        assert!(small.len() < 100 * 1024);
        let err = decompress(Bytes::from(small), Some("gzip"), 1024 * 1024).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge(_)), "{err}");
    }

    #[test]
    fn zstd_and_gzip_round_trip() {
        let data = b"hello otlp".repeat(100);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(
            &decompress(Bytes::from(z), Some("zstd"), 1 << 20).unwrap()[..],
            &data[..]
        );
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(&data).unwrap();
        let g = g.finish().unwrap();
        assert_eq!(
            &decompress(Bytes::from(g), Some("gzip"), 1 << 20).unwrap()[..],
            &data[..]
        );
        assert!(matches!(
            decompress(Bytes::from_static(b"x"), Some("br"), 10),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            decompress(Bytes::from_static(b"not gzip"), Some("gzip"), 10),
            Err(IngestError::BadRequest(_))
        ));
    }

    #[test]
    fn otlp_json_with_hex_ids_and_string_ints() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
          "scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
          "name":"op","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
          "attributes":[{"key":"n","value":{"intValue":"5"}}],"status":{"code":2}}]}]}]}"#;
        let req = decode_traces(body, Encoding::Json).unwrap();
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(s.kind, 2);
        let err = decode_traces(b"{not json", Encoding::Json).unwrap_err();
        assert!(err.to_string().starts_with("invalid OTLP/JSON"), "{err}");
        let err = decode_traces(b"\x0a\xff\xff", Encoding::Protobuf).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid OTLP protobuf"),
            "{err}"
        );
    }
}
