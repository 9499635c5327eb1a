//! Shipping the buffer to the collector over OTLP/HTTP, in order, at least once.
//!
//! Records are read from the buffer ([`crate::buffer::Reader`]), joined per signal into one
//! request (concatenated OTLP messages are one message holding all their resources),
//! compressed (zstd or gzip) and POSTed to `{endpoint}/v1/logs` or `/v1/metrics` as
//! protobuf. Only after the collector's 2xx answer is the buffer's shipped bound advanced.
//!
//! The OTLP/HTTP retry rules:
//! - 429, 502, 503, 504 and connection errors are retried: exponential backoff from 100 ms
//!   to `max_backoff`, with jitter (×0.5–1.5), or the server's `Retry-After` when it sends
//!   one (capped at five minutes).
//! - 401 and 403 are retried too, at `max_backoff`: a token that is wrong now is fixed by an
//!   operator, and the buffer keeps the lines meanwhile.
//! - 413: a request of several buffer records is split and sent again in halves; a single
//!   record too large for the collector is refused.
//! - A 2xx with partial success is never retried: the rejected count and the collector's
//!   message are logged and counted (`loupe_agent_rejected_total`).
//! - Any other answer (400, 500, …) is not retryable: the request is refused by the
//!   collector, logged and counted. The agent itself never drops a line
//!   (`loupe_agent_dropped_total` stays 0).
//! - **Circuit breaker**: after five failures in a row the circuit opens (the gauge
//!   `loupe_agent_circuit_open` is 1, logged once): one probe request every `max_backoff`,
//!   until one succeeds and closes it.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use loupe_core::Signal;
use rand::Rng;

use crate::buffer::Buffer;

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone)]
pub struct ShipSettings {
    /// Collector OTLP/HTTP base URL, without `/v1/...`.
    pub endpoint: String,
    pub token: Option<String>,
    pub compression: Compression,
    /// Uncompressed bytes per request (at least one buffer record).
    pub max_request_bytes: usize,
    pub max_backoff: Duration,
}

/// The OTLP messages of `parts` joined and compressed. One contiguous input compresses
/// faster than a stream of parts (zstd's single-segment path).
fn compress(c: Compression, parts: &[Bytes]) -> std::io::Result<Vec<u8>> {
    let mut joined = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        joined.extend_from_slice(crate::record::otlp(p));
    }
    match c {
        Compression::None => Ok(joined),
        Compression::Zstd => zstd::bulk::compress(&joined, 1),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(joined.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(&joined)?;
            enc.finish()
        }
    }
}

enum Outcome {
    Done,
    /// Split the request and send the halves.
    TooLarge,
    Retry(Option<Duration>),
    Refused(String),
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .ok()?
        }
    };
    Some(d.min(Duration::from_secs(300)))
}

/// Reads an OTLP partial success from an export response: (rejected, message). Logs and
/// metrics responses share the shape (field 1: `partial_success`, in it field 1 the count
/// and field 2 the message).
fn partial_success(body: &[u8]) -> Option<(i64, String)> {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Partial {
        #[prost(int64, tag = "1")]
        rejected: i64,
        #[prost(string, tag = "2")]
        message: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Response {
        #[prost(message, optional, tag = "1")]
        partial_success: Option<Partial>,
    }
    let p = Response::decode(body).ok()?.partial_success?;
    (p.rejected > 0 || !p.message.is_empty()).then_some((p.rejected, p.message))
}

pub struct Shipper {
    buffer: Arc<Buffer>,
    settings: ShipSettings,
    client: reqwest::Client,
    failures: u32,
    circuit_open: bool,
}

impl Shipper {
    pub fn new(
        buffer: Arc<Buffer>,
        settings: ShipSettings,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("loupe-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Shipper {
            buffer,
            settings,
            client,
            failures: 0,
            circuit_open: false,
        })
    }

    /// Ships forever.
    pub async fn run(mut self) {
        let mut reader = Some(self.buffer.reader());
        loop {
            let Some(mut r) = reader.take() else { return };
            let durable = self.buffer.durable_below();
            let max = self.settings.max_request_bytes;
            let (r, got) = match tokio::task::spawn_blocking(move || {
                let got = r.next(durable, max);
                (r, got)
            })
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "buffer reader task failed");
                    return;
                }
            };
            let cursor = r.cursor();
            reader = Some(r);
            let records = match got {
                Ok(rs) => rs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the buffer; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    reader = Some(self.buffer.reader());
                    continue;
                }
            };
            if records.is_empty() {
                self.buffer.wait_appended(Duration::from_millis(500)).await;
                continue;
            }
            tracing::debug!(
                first = records[0].seq,
                last = records[records.len() - 1].seq,
                cursor,
                "shipping"
            );
            for group in records.chunk_by(|a, b| a.signal == b.signal) {
                let payloads: Vec<Bytes> = group.iter().map(|r| r.payload.clone()).collect();
                self.send_all(group[0].signal, payloads).await;
            }
            let buffer = self.buffer.clone();
            match tokio::task::spawn_blocking(move || buffer.shipped(cursor)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot save the shipped bound (records may be sent again)")
                }
                Err(e) => tracing::error!(error = %e, "shipped-bound task failed"),
            }
        }
    }

    /// Sends `payloads` (buffer records of one signal), splitting on 413.
    async fn send_all(&mut self, signal: Signal, payloads: Vec<Bytes>) {
        let mut queue = vec![payloads];
        while let Some(part) = queue.pop() {
            let lines: u64 = part.iter().map(|p| crate::record::count(p)).sum();
            match self.send(signal, &part).await {
                Outcome::Done => {
                    metrics::counter!("loupe_agent_shipped_total", "signal" => signal.as_str())
                        .increment(lines);
                }
                Outcome::TooLarge if part.len() > 1 => {
                    let mut first = part;
                    let second = first.split_off(first.len() / 2);
                    queue.push(second);
                    queue.push(first);
                }
                Outcome::TooLarge => {
                    self.refused(signal, lines, "413: larger than the collector accepts")
                }
                Outcome::Refused(why) => self.refused(signal, lines, &why),
                Outcome::Retry(_) => unreachable!("send retries until done or refused"),
            }
        }
    }

    fn refused(&self, signal: Signal, lines: u64, why: &str) {
        tracing::error!(signal = signal.as_str(), count = lines, reason = %why, "the collector refused a request; not retryable");
        metrics::counter!("loupe_agent_rejected_total", "signal" => signal.as_str())
            .increment(lines);
    }

    /// One request, retried until it is done, too large, or refused.
    async fn send(&mut self, signal: Signal, parts: &[Bytes]) -> Outcome {
        // CPU work: off the runtime's event loop.
        let body = match tokio::task::block_in_place(|| compress(self.settings.compression, parts))
        {
            Ok(b) => Bytes::from(b),
            Err(e) => return Outcome::Refused(format!("cannot compress: {e}")),
        };
        let url = format!(
            "{}/v1/{}",
            self.settings.endpoint.trim_end_matches('/'),
            signal.as_str()
        );
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = self.attempt(&url, body.clone()).await;
            let wait = match outcome {
                Outcome::Retry(after) => after,
                done => {
                    self.success_or_refusal();
                    return done;
                }
            };
            metrics::counter!("loupe_agent_retries_total", "signal" => signal.as_str())
                .increment(1);
            self.failures += 1;
            if self.failures >= 5 && !self.circuit_open {
                self.circuit_open = true;
                metrics::gauge!("loupe_agent_circuit_open").set(1.0);
                tracing::warn!(endpoint = %self.settings.endpoint, "collector unreachable: circuit open, probing every {:?}", self.settings.max_backoff);
            }
            let base = if self.circuit_open {
                self.settings.max_backoff
            } else {
                backoff
            };
            let jittered = base.mul_f64(rand::rng().random_range(0.5..1.5));
            tokio::time::sleep(wait.unwrap_or(jittered)).await;
            backoff = (backoff * 2).min(self.settings.max_backoff);
        }
    }

    fn success_or_refusal(&mut self) {
        self.failures = 0;
        if self.circuit_open {
            self.circuit_open = false;
            metrics::gauge!("loupe_agent_circuit_open").set(0.0);
            tracing::info!("collector reachable again: circuit closed");
        }
    }

    async fn attempt(&self, url: &str, body: Bytes) -> Outcome {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(body);
        match self.settings.compression {
            Compression::Zstd => req = req.header("content-encoding", "zstd"),
            Compression::Gzip => req = req.header("content-encoding", "gzip"),
            Compression::None => {}
        }
        if let Some(t) = &self.settings.token {
            req = req.bearer_auth(t);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "export failed; retrying");
                return Outcome::Retry(None);
            }
        };
        let status = resp.status().as_u16();
        let after = retry_after(resp.headers());
        let body = resp.bytes().await.unwrap_or_default();
        match status {
            200..=299 => {
                if let Some((rejected, message)) = partial_success(&body) {
                    tracing::warn!(rejected, message = %message, "collector accepted the request in part (not retried)");
                    metrics::counter!("loupe_agent_rejected_total", "signal" => "partial")
                        .increment(rejected.max(0) as u64);
                }
                Outcome::Done
            }
            429 | 502 | 503 | 504 => Outcome::Retry(after),
            401 | 403 => {
                tracing::error!(status, body = %String::from_utf8_lossy(&body), "collector refused the agent's credentials; retrying (set LOUPE_AGENT_TOKEN)");
                Outcome::Retry(Some(self.settings.max_backoff))
            }
            413 => Outcome::TooLarge,
            _ => Outcome::Refused(format!("{status}: {}", String::from_utf8_lossy(&body))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates_and_partial_success_is_read() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        h.insert("retry-after", later.to_rfc2822().parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert("retry-after", "99999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(300)), "capped");
        // ExportLogsServiceResponse { partial_success { rejected_log_records: 3, error_message: "bad" } }
        let body = [0x0a, 0x07, 0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd'];
        assert_eq!(partial_success(&body), Some((3, "bad".into())));
        assert_eq!(partial_success(&[]), None);
    }

    #[test]
    fn requests_compress_to_the_joined_messages() {
        let a = crate::record::encode(2, &[], b"abc");
        let b = crate::record::encode(5, &[], b"def");
        let z = compress(Compression::Zstd, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(zstd::decode_all(z.as_slice()).unwrap(), b"abcdef");
        let g = compress(Compression::Gzip, &[a.clone(), b.clone()]).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(g.as_slice()), &mut out)
            .unwrap();
        assert_eq!(out, b"abcdef");
        assert_eq!(compress(Compression::None, &[a, b]).unwrap(), b"abcdef");
    }
}
