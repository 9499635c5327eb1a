//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use loupe_storage::TenantResolver;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{Body, BoxFuture, StdError};

use crate::error::IngestError;
use crate::ingest::Ingester;

/// The `TraceService/Export` method, written out rather than generated so that the request's
/// protobuf bytes are kept beside the decoded message: they go to the WAL as they are, with
/// no re-encoding (measured: re-encoding cost gRPC ingest ~15% of its CPU).
#[derive(Clone)]
pub struct TraceExportService {
    handler: Arc<Handler>,
    accept: EnabledCompressionEncodings,
    send: EnabledCompressionEncodings,
    max_bytes: usize,
}

struct Handler {
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
}

/// The service, accepting gzip and zstd and limiting decoded messages to `max_bytes`.
pub fn trace_service(
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
) -> TraceExportService {
    let mut accept = EnabledCompressionEncodings::default();
    accept.enable(CompressionEncoding::Gzip);
    accept.enable(CompressionEncoding::Zstd);
    let mut send = EnabledCompressionEncodings::default();
    send.enable(CompressionEncoding::Gzip);
    TraceExportService {
        handler: Arc::new(Handler { ingester, resolver }),
        accept,
        send,
        max_bytes,
    }
}

impl tonic::server::NamedService for TraceExportService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

/// A decoded request with the bytes it was decoded from.
pub struct Decoded {
    req: ExportTraceServiceRequest,
    raw: Bytes,
}

#[derive(Clone, Copy, Default)]
struct ExportCodec;
struct ResponseEncoder;
struct RequestDecoder;

impl Encoder for ResponseEncoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for RequestDecoder {
    type Item = Decoded;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Decoded>, tonic::Status> {
        let raw = src.copy_to_bytes(src.remaining());
        let req = ExportTraceServiceRequest::decode(&raw[..]).map_err(|e| {
            tonic::Status::invalid_argument(format!(
                "invalid OTLP protobuf ExportTraceServiceRequest: {e}"
            ))
        })?;
        Ok(Some(Decoded { req, raw }))
    }
}

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Decoded;
    type Encoder = ResponseEncoder;
    type Decoder = RequestDecoder;
    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }
    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

struct ExportMethod(Arc<Handler>);

impl tonic::server::UnaryService<Decoded> for ExportMethod {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<ExportTraceServiceResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Decoded>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move { handler.export(request).await })
    }
}

impl Handler {
    async fn export(
        &self,
        request: tonic::Request<Decoded>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let meta = |k: &str| request.metadata().get(k).and_then(|v| v.to_str().ok());
        let tenant = self
            .resolver
            .resolve(meta("authorization"), meta("x-scope-orgid"));
        let result = match tenant {
            Ok(tenant) => {
                let Decoded { req, raw } = request.into_inner();
                self.ingester
                    .export_traces(&tenant, req, Some(raw), "grpc")
                    .await
            }
            Err(e) => Err(IngestError::from(e)),
        };
        match result {
            Ok(v) => Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: (v.rejected > 0).then_some(ExportTracePartialSuccess {
                    rejected_spans: v.rejected as i64,
                    error_message: v.message,
                }),
            })),
            Err(e) => {
                metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "grpc", "reason" => e.reason())
                    .increment(1);
                Err(e.into_status())
            }
        }
    }
}

impl<B> tower::Service<http::Request<B>> for TraceExportService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/opentelemetry.proto.collector.trace.v1.TraceService/Export" {
            return Box::pin(async move {
                let status =
                    tonic::Status::unimplemented("only TraceService/Export is served here");
                Ok(status.into_http())
            });
        }
        let svc = self.clone();
        Box::pin(async move {
            // Refuse before reading and decoding the body when over budget.
            if let Err(e) = svc.handler.ingester.check_capacity() {
                metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "grpc", "reason" => e.reason())
                    .increment(1);
                return Ok(e.into_status().into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ExportCodec)
                .apply_compression_config(svc.accept, svc.send)
                .apply_max_message_size_config(Some(svc.max_bytes), None);
            Ok(grpc.unary(ExportMethod(svc.handler), req).await)
        })
    }
}

/// Rewrites tonic's OUT_OF_RANGE answer for over-limit messages to RESOURCE_EXHAUSTED, the
/// code gRPC specifies (and the OpenTelemetry Collector returns) for a too-large message.
#[derive(Clone)]
pub struct OversizeToResourceExhausted<S>(pub S);

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = OversizeToResourceExhausted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OversizeToResourceExhausted(inner)
    }
}

#[derive(Clone, Copy, Default)]
pub struct OversizeLayer;

impl<S, B, R> tower::Service<http::Request<B>> for OversizeToResourceExhausted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = self.0.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let oversize = resp.headers().get("grpc-status").is_some_and(|v| v == "11")
                && resp
                    .headers()
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .is_some_and(|m| {
                        m.contains("message%20length%20too%20large")
                            || m.contains("message length too large")
                    });
            if oversize {
                resp.headers_mut()
                    .insert("grpc-status", http::HeaderValue::from_static("8"));
            }
            Ok(resp)
        })
    }
}
