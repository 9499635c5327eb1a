//! `POST /prometheus/api/v1/write`: Prometheus remote write 1.0 (a snappy-compressed
//! protobuf `WriteRequest`), on the OTLP/HTTP port with the same admission as OTLP: tenant
//! and capacity before the body is read, the body against the in-flight budget, decoding on
//! the CPU pool, the answer after the WAL sync.
//!
//! Answers as Prometheus's receiver does: 204 when everything was stored; 400 with a text
//! body when something was invalid (senders do not retry a 400 — the valid series of the
//! request are stored and the body says what was left out); 413, 415, 401 as for OTLP; 503
//! or 429 with `Retry-After` when overloaded (senders retry those).

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use loupe_core::Classify;

use crate::error::IngestError;
use crate::http::{HttpState, header_str, read_admitted, with_error_headers};
use crate::inflight::DECODED_FACTOR;

pub const PATH: &str = "/prometheus/api/v1/write";

pub(crate) async fn write(State(st): State<HttpState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let result = async {
        let tenant = st.resolver.resolve(
            header_str(h, "authorization"),
            header_str(h, "x-scope-orgid"),
        )?;
        match header_str(h, "content-encoding").map(str::trim) {
            None | Some("snappy") | Some("") => {}
            Some(other) => {
                return Err(IngestError::UnsupportedMediaType(format!(
                    "content-encoding {other:?} is not supported: remote write 1.0 bodies are snappy-compressed"
                )));
            }
        }
        if let Some(ct) = header_str(h, "content-type")
            && !ct.contains("protobuf")
        {
            return Err(IngestError::UnsupportedMediaType(format!(
                "content-type {ct:?} is not supported: expected application/x-protobuf"
            )));
        }
        let (raw, mut permit) =
            read_admitted(&st, h, &tenant, loupe_core::Signal::Metrics, body).await?;
        let params = <crate::edge::Metrics as crate::edge::SignalEdge>::params(&st.ingester, &tenant);
        let max = st.max_bytes;
        let (decoded, permit) = loupe_core::cpu::run(move || {
            let raw_len = raw.len() as u64;
            let bound = snap::raw::decompress_len(&raw).unwrap_or(0) as u64;
            permit.grow_to(raw_len + bound.min(max as u64) * (1 + DECODED_FACTOR))?;
            Ok::<_, IngestError>((super::decode_remote_write(raw, max, &params)?, permit))
        })
        .await??;
        let v = super::export(&st.ingester, decoded, "remote_write").await?;
        drop(permit);
        Ok::<_, IngestError>(v)
    }
    .await;
    match result {
        Ok(v) if v.rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(v) => {
            metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "remote_write", "reason" => "invalid").increment(1);
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "{} of {} samples were not stored: {}\n",
                    v.rejected,
                    v.rejected + v.accepted,
                    v.message
                ),
            )
                .into_response()
        }
        Err(e) => error_response(e),
    }
}

fn error_response(e: IngestError) -> Response {
    metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "remote_write", "reason" => e.reason()).increment(1);
    let code = e.code();
    with_error_headers((code.http_status(), format!("{e}\n")).into_response(), code)
}
