//! Concurrent OTLP/HTTP exporters (small OTLP/JSON requests, one trace each) that record
//! the outcome of every request, and the read-back that checks what they were told: every
//! acknowledged trace is stored whole, a request whose outcome is unknown (the connection
//! broke after it was sent) is stored whole or not at all, and nothing is stored twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;

use crate::harness::{Server, get_json, stored_rows};
use crate::otlp::{now_ns, random_trace_id};

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// 200: the server promised durability.
    Acked,
    /// Refused with this status and whether it carried `Retry-After`.
    Refused(u16, bool),
    /// The connection was refused: nothing was sent.
    NotSent,
    /// The connection broke after sending: stored whole or not at all.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub trace_id: [u8; 16],
    pub spans: usize,
    pub outcome: Outcome,
}

pub fn json_request(service: &str, trace_id: [u8; 16], n: usize) -> String {
    let start = now_ns() - 1_000_000_000;
    let spans: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "traceId": hex::encode(trace_id),
                "spanId": format!("{:016x}", i as u64 + 1),
                "parentSpanId": if i == 0 { String::new() } else { format!("{:016x}", 1) },
                "name": format!("op-{i}"),
                "kind": 2,
                "startTimeUnixNano": (start + i as u64).to_string(),
                "endTimeUnixNano": (start + 2_000_000).to_string(),
                "attributes": [{"key": "load.exporter", "value": {"stringValue": service}}]
            })
        })
        .collect();
    serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"spans": spans}]
    }]})
    .to_string()
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sent>>>,
}

impl Load {
    /// `exporters` tasks, exporter `i` sending to `urls[i % urls.len()]` (OTLP/HTTP base
    /// URLs), each pausing `pace` between requests.
    pub fn start(urls: &[String], exporters: usize, pace: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let tasks = (0..exporters)
            .map(|i| {
                let url = format!("{}/v1/traces", urls[i % urls.len()]);
                let (stop, client) = (stop.clone(), client.clone());
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    let service = format!("load-{i}");
                    while !stop.load(Ordering::Relaxed) {
                        let id = random_trace_id();
                        let n = 1 + (id[0] as usize % 4);
                        let outcome = send(&client, &url, &service, id, n).await;
                        let pause = match outcome {
                            Outcome::Acked => pace,
                            _ => pace.max(Duration::from_millis(50)),
                        };
                        sent.push(Sent {
                            trace_id: id,
                            spans: n,
                            outcome,
                        });
                        tokio::time::sleep(pause).await;
                    }
                    sent
                })
            })
            .collect();
        Load { stop, tasks }
    }

    pub async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("exporter task"));
        }
        all
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    service: &str,
    id: [u8; 16],
    n: usize,
) -> Outcome {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .body(json_request(service, id, n))
        .send()
        .await;
    match resp {
        Ok(r) if r.status() == 200 => {
            let body = r.text().await.unwrap_or_default();
            assert!(
                !body.contains("partialSuccess"),
                "valid spans were rejected: {body}"
            );
            Outcome::Acked
        }
        Ok(r) => {
            let status = r.status().as_u16();
            assert!(
                status == 503 || status < 500,
                "the server answered {status}: {}",
                r.text().await.unwrap_or_default()
            );
            Outcome::Refused(status, r.headers().contains_key("retry-after"))
        }
        Err(e) if e.is_connect() => Outcome::NotSent,
        Err(_) => Outcome::Unknown,
    }
}

/// Counts of each outcome: (acked, refused, not sent, unknown).
pub fn tally(sent: &[Sent]) -> (usize, usize, usize, usize) {
    let n = |f: &dyn Fn(&Outcome) -> bool| sent.iter().filter(|s| f(&s.outcome)).count();
    (
        n(&|o| *o == Outcome::Acked),
        n(&|o| matches!(o, Outcome::Refused(..))),
        n(&|o| *o == Outcome::NotSent),
        n(&|o| *o == Outcome::Unknown),
    )
}

/// Spans stored per trace, for many traces at once (Jaeger's `?traceID=a&traceID=b`).
async fn span_counts(server: &Server, ids: &[[u8; 16]]) -> HashMap<[u8; 16], usize> {
    let query: Vec<String> = ids
        .iter()
        .map(|id| format!("traceID={}", hex::encode(id)))
        .collect();
    let url = server.url(&format!("/jaeger/api/traces?{}", query.join("&")));
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{body}");
    let mut out = HashMap::new();
    for t in body["data"].as_array().expect("data") {
        let id = hex::decode(t["traceID"].as_str().unwrap()).unwrap();
        let id: [u8; 16] = id.try_into().unwrap();
        out.insert(id, t["spans"].as_array().map_or(0, |s| s.len()));
    }
    out
}

/// Waits (up to 20 s) until a role that reads the catalog on a timer has caught up with at
/// least every acknowledged span; [`verify_exactly_once`] then says what, if anything, is missing.
pub async fn wait_for_acked_rows(server: &Server, sent: &[Sent]) {
    let acked: u64 = sent
        .iter()
        .filter(|s| s.outcome == Outcome::Acked)
        .map(|s| s.spans as u64)
        .sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stored = stored_rows(server, "traces").await;
        if stored >= acked {
            return;
        }
        // A lagging catalog and a lost span look alike later: say which this is.
        assert!(
            std::time::Instant::now() < deadline,
            "after 60 s the catalog holds {stored} spans of the {acked} acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads back every acknowledged and unknown request through `server` and checks the
/// catalog holds each stored span exactly once. Returns the number of stored spans.
pub async fn verify_exactly_once(server: &Server, sent: &[Sent]) -> u64 {
    let wanted: Vec<&Sent> = sent
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Acked | Outcome::Unknown))
        .collect();
    let found: HashMap<[u8; 16], usize> = futures::stream::iter(wanted.chunks(200))
        .map(|chunk| async move {
            let ids: Vec<[u8; 16]> = chunk.iter().map(|s| s.trace_id).collect();
            span_counts(server, &ids).await
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut expected = 0u64;
    for s in wanted {
        let id = hex::encode(s.trace_id);
        match (&s.outcome, found.get(&s.trace_id)) {
            (Outcome::Acked, None) => panic!("acknowledged trace {id} is missing"),
            (_, Some(&n)) => {
                assert_eq!(n, s.spans, "trace {id} ({:?}) is not whole", s.outcome);
                expected += n as u64;
            }
            (_, None) => {}
        }
    }
    let rows = stored_rows(server, "traces").await;
    assert_eq!(
        rows, expected,
        "the catalog holds every stored span exactly once"
    );
    rows
}
