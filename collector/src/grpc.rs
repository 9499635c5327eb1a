//! OTLP/gRPC: `TraceService/Export`, `LogsService/Export` and `MetricsService/Export` (one service type, generic over
//! the signal's [`SignalEdge`]).
//!
//! Order of admission, as on the HTTP edge: the tenant is resolved from the request's
//! metadata and capacity checked before tonic reads the body; the body's frames and the
//! decompressed message are reserved in the in-flight budget as tonic reads them (past it,
//! the call fails with UNAVAILABLE); decoding, validation and conversion run on the CPU pool.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Frame;
use loupe_core::{TenantId, TenantResolver};
use prost::Message;
use tonic::codec::{
    Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings, EncodeBuf, Encoder,
};
use tonic::codegen::{Body, BoxFuture, StdError};

use crate::edge::{Logs, Metrics, SignalEdge, Traces};
use crate::error::IngestError;
use crate::inflight::{DECODED_FACTOR, Permit};
use crate::ingest::Ingester;
use crate::otlp::Encoding;

/// A signal's `Export` method, written out rather than generated: admission happens before
/// the body is read, and the request's protobuf bytes are kept as they are for the WAL
/// (measured: re-encoding cost gRPC ingest ~15% of its CPU).
pub struct ExportService<S> {
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    accept: EnabledCompressionEncodings,
    send: EnabledCompressionEncodings,
    max_bytes: usize,
    signal: std::marker::PhantomData<fn() -> S>,
}

impl<S> Clone for ExportService<S> {
    fn clone(&self) -> Self {
        ExportService {
            ingester: self.ingester.clone(),
            resolver: self.resolver.clone(),
            accept: self.accept,
            send: self.send,
            max_bytes: self.max_bytes,
            signal: std::marker::PhantomData,
        }
    }
}

pub type TraceExportService = ExportService<Traces>;
pub type LogsExportService = ExportService<Logs>;
pub type MetricsExportService = ExportService<Metrics>;

/// The traces service, accepting gzip and zstd and limiting decoded messages to `max_bytes`.
pub fn trace_service(
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
) -> TraceExportService {
    export_service(ingester, resolver, max_bytes)
}

/// The logs service, as [`trace_service`].
pub fn logs_service(
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
) -> LogsExportService {
    export_service(ingester, resolver, max_bytes)
}

/// The metrics service, as [`trace_service`].
pub fn metrics_service(
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
) -> MetricsExportService {
    export_service(ingester, resolver, max_bytes)
}

fn export_service<S: SignalEdge>(
    ingester: Arc<Ingester>,
    resolver: TenantResolver,
    max_bytes: usize,
) -> ExportService<S> {
    let mut accept = EnabledCompressionEncodings::default();
    accept.enable(CompressionEncoding::Gzip);
    accept.enable(CompressionEncoding::Zstd);
    let mut send = EnabledCompressionEncodings::default();
    send.enable(CompressionEncoding::Gzip);
    ExportService {
        ingester,
        resolver,
        accept,
        send,
        max_bytes,
        signal: std::marker::PhantomData,
    }
}

impl<S: SignalEdge> tonic::server::NamedService for ExportService<S> {
    const NAME: &'static str = S::GRPC_SERVICE;
}

type SharedPermit = Arc<Mutex<Permit>>;

fn grow(permit: &SharedPermit, bytes: u64) -> Result<(), tonic::Status> {
    permit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .grow_to(bytes)
        .map_err(IngestError::into_status)
}

/// What admission established, carried to the handler in the request's extensions.
#[derive(Clone)]
struct Admitted {
    tenant: TenantId,
    permit: SharedPermit,
}

/// The request body, reserving each frame in the in-flight budget as tonic reads it.
struct Counted<B> {
    inner: Pin<Box<B>>,
    permit: SharedPermit,
    seen: u64,
}

impl<B> Body for Counted<B>
where
    B: Body,
    B::Error: Into<StdError>,
{
    type Data = B::Data;
    type Error = StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, StdError>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.seen += d.remaining() as u64;
                    if let Err(status) = grow(&self.permit, self.seen) {
                        return Poll::Ready(Some(Err(Box::new(status))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

struct ExportCodec<S> {
    permit: SharedPermit,
    signal: std::marker::PhantomData<fn() -> S>,
}
struct ResponseEncoder<S>(std::marker::PhantomData<fn() -> S>);
struct RequestDecoder {
    permit: SharedPermit,
}

impl<S: SignalEdge> Encoder for ResponseEncoder<S> {
    type Item = S::Response;
    type Error = tonic::Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for RequestDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    /// Only takes the (decompressed) message bytes; decoding happens on the CPU pool.
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        let held = self
            .permit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bytes();
        grow(&self.permit, held + src.remaining() as u64)?;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl<S: SignalEdge> Codec for ExportCodec<S> {
    type Encode = S::Response;
    type Decode = Bytes;
    type Encoder = ResponseEncoder<S>;
    type Decoder = RequestDecoder;
    fn encoder(&mut self) -> ResponseEncoder<S> {
        ResponseEncoder(std::marker::PhantomData)
    }
    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder {
            permit: self.permit.clone(),
        }
    }
}

struct ExportMethod<S>(Arc<Ingester>, std::marker::PhantomData<fn() -> S>);

impl<S: SignalEdge> tonic::server::UnaryService<Bytes> for ExportMethod<S> {
    type Response = S::Response;
    type Future = BoxFuture<tonic::Response<S::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingester = self.0.clone();
        Box::pin(async move {
            match export::<S>(&ingester, request).await {
                Ok(v) => Ok(tonic::Response::new(S::response(&v))),
                Err(e) => Err(rejected(e)),
            }
        })
    }
}

fn rejected(e: IngestError) -> tonic::Status {
    metrics::counter!("loupe_ingest_rejected_requests_total", "protocol" => "grpc", "reason" => e.reason())
        .increment(1);
    e.into_status()
}

async fn export<S: SignalEdge>(
    ingester: &Ingester,
    request: tonic::Request<Bytes>,
) -> Result<crate::otlp::Validated, IngestError> {
    let Some(Admitted { tenant, permit }) = request.extensions().get::<Admitted>().cloned() else {
        return Err(IngestError::Internal("request was not admitted".into()));
    };
    let raw = request.into_inner();
    let len = raw.len() as u64;
    {
        let mut p = permit.lock().unwrap_or_else(|e| e.into_inner());
        // The compressed frames are gone; the message and its decoded form remain.
        p.shrink_to(len);
        p.grow_to(len * (1 + DECODED_FACTOR))?;
    }
    let params = S::params(ingester, &tenant);
    let decoded =
        loupe_core::cpu::run(move || S::decode(raw, Encoding::Protobuf, params)).await??;
    let v = S::export(ingester, &tenant, decoded, "grpc").await;
    drop(permit);
    v
}

impl<S: SignalEdge> ExportService<S> {
    /// Resolves the tenant and reserves the in-flight budget before any body byte is read.
    fn admit(&self, headers: &http::HeaderMap) -> Result<Admitted, IngestError> {
        let meta = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let tenant = self
            .resolver
            .resolve(meta("authorization"), meta("x-scope-orgid"))?;
        self.ingester.check_capacity(&tenant, S::SIGNAL)?;
        let hint = meta("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .min(self.max_bytes as u64);
        let permit = self.ingester.inflight().try_acquire(hint)?;
        Ok(Admitted {
            tenant,
            permit: Arc::new(Mutex::new(permit)),
        })
    }
}

impl<S: SignalEdge, B> tower::Service<http::Request<B>> for ExportService<S>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != S::GRPC_PATH {
            return Box::pin(async move {
                let status = tonic::Status::unimplemented(format!(
                    "only {}/Export is served here",
                    S::GRPC_SERVICE
                ));
                Ok(status.into_http())
            });
        }
        let admitted = match self.admit(req.headers()) {
            Ok(a) => a,
            Err(e) => {
                let status = rejected(e);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let (mut parts, body) = req.into_parts();
        let body = Counted {
            inner: Box::pin(body),
            permit: admitted.permit.clone(),
            seen: 0,
        };
        parts.extensions.insert(admitted.clone());
        let req = http::Request::from_parts(parts, body);
        let svc = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ExportCodec::<S> {
                permit: admitted.permit,
                signal: std::marker::PhantomData,
            })
            .apply_compression_config(svc.accept, svc.send)
            .apply_max_message_size_config(Some(svc.max_bytes), None);
            Ok(grpc
                .unary(
                    ExportMethod::<S>(svc.ingester, std::marker::PhantomData),
                    req,
                )
                .await)
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
