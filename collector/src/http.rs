//! OTLP/HTTP: `POST /v1/traces` and `POST /v1/logs` with protobuf or JSON bodies, optionally
//! gzip or zstd encoded (one handler, generic over the signal's [`SignalEdge`]).
//! Errors answer with a `google.rpc.Status` in the request's encoding, per the OTLP spec.
//!
//! Order of admission: the tenant is resolved from the headers and capacity checked before a
//! byte of the body is read; the body is read against the in-flight budget; decompression,
//! decoding, validation and conversion run on the CPU pool.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt;
use loupe_core::{Classify, ErrorCode, TenantResolver};
use prost::Message;

use crate::edge::{Logs, Metrics, SignalEdge, Traces};
use crate::error::IngestError;
use crate::inflight::{DECODED_FACTOR, Permit};
use crate::ingest::Ingester;
use crate::otlp::decode::decompress;
use crate::otlp::{Encoding, RpcStatus};

#[derive(Clone)]
pub(crate) struct HttpState {
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) resolver: TenantResolver,
    pub(crate) max_bytes: usize,
}

/// The OTLP/HTTP routes.
pub fn router(ingester: Arc<Ingester>, resolver: TenantResolver, max_bytes: usize) -> Router {
    Router::new()
        .route(Traces::HTTP_PATH, post(export::<Traces>))
        .route(Logs::HTTP_PATH, post(export::<Logs>))
        .route(Metrics::HTTP_PATH, post(export::<Metrics>))
        .route(
            crate::prom::remote_write::PATH,
            post(crate::prom::remote_write::write),
        )
        .with_state(HttpState {
            ingester,
            resolver,
            max_bytes,
        })
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Reads the body frame by frame, reserving each frame in the in-flight budget. `hint` is the
/// announced length (the buffer is allocated once, not grown by doubling).
/// Admission after the headers were checked: capacity for `signal`, then the body read
/// against the in-flight budget (its announced length reserved up front).
pub(crate) async fn read_admitted(
    st: &HttpState,
    h: &HeaderMap,
    tenant: &loupe_core::TenantId,
    signal: loupe_core::Signal,
    body: Body,
) -> Result<(Bytes, Permit), IngestError> {
    st.ingester.check_capacity(tenant, signal)?;
    let hint = header_str(h, "content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(st.max_bytes as u64);
    let mut permit = st.ingester.inflight().try_acquire(hint)?;
    let raw = read_body(body, st.max_bytes, hint as usize, &mut permit).await?;
    Ok((raw, permit))
}

async fn read_body(
    body: Body,
    limit: usize,
    hint: usize,
    permit: &mut Permit,
) -> Result<Bytes, IngestError> {
    let mut body = body;
    let mut buf = BytesMut::with_capacity(hint);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| IngestError::BadRequest(format!("cannot read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = buf.len() + data.len();
        if len > limit {
            return Err(IngestError::TooLarge(format!(
                "request body exceeds the limit of {limit} bytes"
            )));
        }
        permit.grow_to(len as u64)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

async fn export<S: SignalEdge>(State(st): State<HttpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    // Errors are encoded like the request; JSON when the content type itself is unusable.
    let reply_enc = match header_str(h, "content-type") {
        Some(ct) if ct.contains("protobuf") => Encoding::Protobuf,
        _ => Encoding::Json,
    };
    let result = async {
        let tenant = st.resolver.resolve(
            header_str(h, "authorization"),
            header_str(h, "x-scope-orgid"),
        )?;
        let enc = Encoding::from_content_type(header_str(h, "content-type"))?;
        let (raw, mut permit) = read_admitted(&st, h, &tenant, S::SIGNAL, body).await?;
        let encoding = header_str(h, "content-encoding").map(str::to_string);
        let max = st.max_bytes;
        let params = S::params(&st.ingester, &tenant);
        let (decoded, permit) = loupe_core::cpu::run(move || {
            let raw_len = raw.len() as u64;
            let identity = encoding
                .as_deref()
                .is_none_or(|e| e.trim().is_empty() || e.eq_ignore_ascii_case("identity"));
            let plain = decompress(raw, encoding.as_deref(), max)?;
            let plain_len = plain.len() as u64;
            if !identity {
                permit.grow_to(raw_len + plain_len)?;
            }
            permit.grow_to(plain_len * (1 + DECODED_FACTOR))?;
            Ok::<_, IngestError>((S::decode(plain, enc, params)?, permit))
        })
        .await??;
        let v = S::export(&st.ingester, &tenant, decoded, "http").await?;
        drop(permit);
        Ok::<_, IngestError>((enc, v))
    }
    .await;
    match result {
        Ok((enc, v)) => {
            let body = match enc {
                Encoding::Protobuf => S::response(&v).encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&S::json_response(&v)).unwrap_or_default(),
            };
            ([(header::CONTENT_TYPE, enc.content_type())], body).into_response()
        }
        Err(e) => error_response(e, reply_enc),
    }
}

fn error_response(e: IngestError, enc: Encoding) -> Response {
    metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "http", "reason" => e.reason()).increment(1);
    let code = e.code();
    let status = RpcStatus {
        code: code.grpc_code() as i32,
        message: e.to_string(),
    };
    let resp = (
        code.http_status(),
        [(header::CONTENT_TYPE, enc.content_type())],
        status.encode_as(enc),
    )
        .into_response();
    with_error_headers(resp, code)
}

/// The headers an error answer carries: `Retry-After` when a retry may succeed,
/// `WWW-Authenticate` when credentials are missing or wrong.
pub(crate) fn with_error_headers(mut resp: Response, code: ErrorCode) -> Response {
    if let Some(secs) = code.retry_after_secs() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if code == ErrorCode::Unauthenticated {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}
