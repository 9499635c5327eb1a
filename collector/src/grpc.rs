//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.

use std::sync::Arc;

use loupe_storage::TenantResolver;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;

use crate::error::IngestError;
use crate::ingest::Ingester;

pub struct GrpcTraces {
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
}

/// The tonic service, accepting gzip and zstd and limiting decoded messages to `max_bytes`.
pub fn trace_service(
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
) -> TraceServiceServer<GrpcTraces> {
    TraceServiceServer::new(GrpcTraces { ingester, resolver })
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_bytes)
}

fn metadata_str<'a>(
    req: &'a tonic::Request<ExportTraceServiceRequest>,
    key: &str,
) -> Option<&'a str> {
    req.metadata().get(key).and_then(|v| v.to_str().ok())
}

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let result = async {
            let tenant = self
                .resolver
                .resolve(
                    metadata_str(&request, "authorization"),
                    metadata_str(&request, "x-scope-orgid"),
                )
                .map_err(IngestError::from)?;
            self.ingester
                .export_traces(&tenant, request.into_inner(), None, "grpc")
                .await
        }
        .await;
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
