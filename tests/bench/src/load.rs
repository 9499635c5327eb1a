//! Load generators: pre-encoded OTLP requests sent over gRPC (raw bytes through a pass-through
//! codec, so the client does no protobuf work) or HTTP, by many concurrent senders. Overload
//! answers (503 / UNAVAILABLE) are retried after a pause, as an SDK would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Protocol {
    Grpc,
    Http,
}

/// Sends every trace export once (retrying overload answers); returns how many retries there
/// were.
pub async fn send_all(
    protocol: Protocol,
    addr: std::net::SocketAddr,
    requests: Arc<Vec<Bytes>>,
    concurrency: usize,
) -> anyhow::Result<u64> {
    send_all_to(protocol, addr, requests, concurrency, "traces").await
}

/// As [`send_all`], for the exports of `signal` (`traces` or `logs`).
pub async fn send_all_to(
    protocol: Protocol,
    addr: std::net::SocketAddr,
    requests: Arc<Vec<Bytes>>,
    concurrency: usize,
    signal: &'static str,
) -> anyhow::Result<u64> {
    let grpc_path = match signal {
        "logs" => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        _ => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    };
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, retries, requests) = (next.clone(), retries.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            match protocol {
                Protocol::Grpc => {
                    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
                        .connect()
                        .await?;
                    let mut grpc = tonic::client::Grpc::new(channel);
                    let path = http::uri::PathAndQuery::from_static(grpc_path);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = requests.get(i) else { break };
                        loop {
                            grpc.ready().await.context("grpc ready")?;
                            match grpc
                                .unary(tonic::Request::new(body.clone()), path.clone(), RawCodec)
                                .await
                            {
                                Ok(_) => break,
                                Err(s)
                                    if matches!(
                                        s.code(),
                                        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                                    ) =>
                                {
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                Err(s) => anyhow::bail!("grpc export failed: {s}"),
                            }
                        }
                    }
                }
                Protocol::Http => {
                    let client = reqwest::Client::new();
                    let url = format!("http://{addr}/v1/{signal}");
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = requests.get(i) else { break };
                        loop {
                            let r = client
                                .post(&url)
                                .header("content-type", "application/x-protobuf")
                                .body(body.clone())
                                .send()
                                .await?;
                            match r.status().as_u16() {
                                200 => break,
                                503 | 429 => {
                                    retries.fetch_add(1, Ordering::Relaxed);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                s => anyhow::bail!(
                                    "http export failed: {s} {}",
                                    r.text().await.unwrap_or_default()
                                ),
                            }
                        }
                    }
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(retries.load(Ordering::Relaxed))
}
