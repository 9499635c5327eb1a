//! OTLP/HTTP: `POST /v1/traces` with protobuf or JSON bodies, optionally gzip or zstd encoded.
//! Errors answer with a `google.rpc.Status` in the request's encoding, per the OTLP spec.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use loupe_storage::TenantResolver;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use crate::error::IngestError;
use crate::ingest::Ingester;
use crate::otlp::decode::decompress;
use crate::otlp::{Encoding, RpcStatus, decode_traces};

#[derive(Clone)]
struct HttpState {
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
}

/// The OTLP/HTTP routes.
pub fn router(ingester: Arc<Ingester>, resolver: TenantResolver, max_bytes: usize) -> Router {
    Router::new()
        .route("/v1/traces", post(export_traces))
        .with_state(HttpState {
            ingester,
            resolver,
            max_bytes,
        })
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, IngestError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                Err(IngestError::TooLarge(format!(
                    "request body exceeds the limit of {limit} bytes"
                )))
            } else {
                Err(IngestError::BadRequest(format!(
                    "cannot read request body: {e}"
                )))
            }
        }
    }
}

async fn export_traces(State(st): State<HttpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    // Errors are encoded like the request; JSON when the content type itself is unusable.
    let reply_enc = match header_str(h, "content-type") {
        Some(ct) if ct.contains("protobuf") => Encoding::Protobuf,
        _ => Encoding::Json,
    };
    let result = async {
        let tenant = st
            .resolver
            .resolve(
                header_str(h, "authorization"),
                header_str(h, "x-scope-orgid"),
            )
            .map_err(IngestError::from)?;
        let enc = Encoding::from_content_type(header_str(h, "content-type"))?;
        st.ingester.check_capacity()?;
        let raw = read_body(body, st.max_bytes).await?;
        let identity =
            header_str(h, "content-encoding").is_none_or(|e| e.eq_ignore_ascii_case("identity"));
        let plain = decompress(raw, header_str(h, "content-encoding"), st.max_bytes)?;
        let _ = identity;
        let req = decode_traces(&plain, enc)?;
        let raw_proto = (enc == Encoding::Protobuf).then_some(plain);
        let v = st
            .ingester
            .export_traces(&tenant, req, raw_proto, "http")
            .await?;
        Ok::<_, IngestError>((enc, v))
    }
    .await;
    match result {
        Ok((enc, v)) => {
            let resp = ExportTraceServiceResponse {
                partial_success: (v.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: v.rejected as i64,
                    error_message: v.message.clone(),
                }),
            };
            let body = match enc {
                Encoding::Protobuf => resp.encode_to_vec(),
                Encoding::Json if v.rejected > 0 => serde_json::to_vec(&serde_json::json!({
                    "partialSuccess": {"rejectedSpans": v.rejected.to_string(), "errorMessage": v.message}
                }))
                .unwrap_or_default(),
                Encoding::Json => b"{}".to_vec(),
            };
            ([(header::CONTENT_TYPE, enc.content_type())], body).into_response()
        }
        Err(e) => error_response(e, reply_enc),
    }
}

fn error_response(e: IngestError, enc: Encoding) -> Response {
    metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "http", "reason" => e.reason()).increment(1);
    let status = RpcStatus {
        code: e.grpc_code() as i32,
        message: e.to_string(),
    };
    let mut resp = (
        e.http_status(),
        [(header::CONTENT_TYPE, enc.content_type())],
        status.encode_as(enc),
    )
        .into_response();
    if let Some(secs) = e.retry_after_secs() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if matches!(e, IngestError::Unauthenticated(_)) {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}
