//! A seeded generator of Kubernetes container logs, as a node's pods write them: JSON-logging
//! services (structured fields, request and trace ids), an nginx-style access log, a Java
//! service whose errors carry multi-line stack traces, and Go and Python services writing
//! plain text with key=value pairs. Message templates repeat with varying values and
//! realistic cardinalities (a few hundred users and routes, unique request ids), so the text
//! compresses the way real logs do.
//!
//! Lines become OTLP `ExportLogsServiceRequest`s grouped by pod (its resource carries the
//! Kubernetes identity), as an agent tailing `/var/log/pods` would send them: the line as the
//! string body, no attributes, the observed time.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy)]
enum Kind {
    Json,
    Nginx,
    Java,
    Go,
    Python,
}

const SERVICES: &[(&str, Kind)] = &[
    ("checkout", Kind::Json),
    ("cart", Kind::Json),
    ("ingress-nginx", Kind::Nginx),
    ("orders", Kind::Java),
    ("inventory", Kind::Go),
    ("recommendation", Kind::Python),
];

const ROUTES: &[&str] = &[
    "/api/cart",
    "/api/checkout",
    "/api/products",
    "/api/products/{id}",
    "/api/users/{id}",
    "/api/orders",
    "/api/orders/{id}",
    "/healthz",
    "/api/search",
    "/static/app.js",
];

/// One generated line.
pub struct Line {
    pub service: &'static str,
    pub pod: usize,
    pub time_unix_nano: u64,
    pub text: String,
    /// A unique id in the text (a request or trace id), if the line prints one.
    pub needle: Option<String>,
}

pub struct LogGen {
    rng: StdRng,
    t: u64,
    seq: u64,
}

impl LogGen {
    /// Lines starting at `t0` (unix nanoseconds), a few hundred microseconds apart.
    pub fn new(seed: u64, t0: u64) -> Self {
        LogGen {
            rng: StdRng::seed_from_u64(seed),
            t: t0,
            seq: 0,
        }
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[self.rng.random_range(0..16)]))
            .collect()
    }

    fn route(&mut self) -> String {
        let r = ROUTES[self.rng.random_range(0..ROUTES.len())];
        r.replace("{id}", &self.rng.random_range(1..5000).to_string())
    }

    pub fn line(&mut self) -> Line {
        self.t += self.rng.random_range(50_000..500_000);
        self.seq += 1;
        let (service, kind) = SERVICES[self.rng.random_range(0..SERVICES.len())];
        let pod = self.rng.random_range(0..3);
        let roll: f64 = self.rng.random();
        let level = if roll < 0.02 {
            "error"
        } else if roll < 0.08 {
            "warn"
        } else if roll < 0.2 {
            "debug"
        } else {
            "info"
        };
        let trace = self.hex(32);
        let span = self.hex(16);
        let request = self.hex(12);
        let user = self.rng.random_range(1..800);
        let ms = self.rng.random_range(1..900);
        let secs = self.t / 1_000_000_000;
        let millis = (self.t / 1_000_000) % 1000;
        let ts = format!(
            "2026-11-23T{:02}:{:02}:{:02}.{millis:03}Z",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60
        );
        let text = match kind {
            Kind::Json => {
                let msg = match level {
                    "error" => format!(
                        "payment declined: card_expired for order ord-{}",
                        self.rng.random_range(10_000..99_999)
                    ),
                    "warn" => format!("slow query on cart_items took {ms}ms"),
                    "debug" => format!(
                        "cache lookup key=cart:{user} hit={}",
                        self.rng.random_bool(0.7)
                    ),
                    _ => format!(
                        "{} {} completed",
                        ["GET", "POST", "PUT"][self.rng.random_range(0..3)],
                        self.route()
                    ),
                };
                format!(
                    r#"{{"ts":"{ts}","level":"{level}","logger":"{service}.handler","msg":"{msg}","user_id":{user},"request_id":"{request}","duration_ms":{ms},"trace_id":"{trace}","span_id":"{span}"}}"#
                )
            }
            Kind::Nginx => {
                let status = [
                    200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 499, 500, 502,
                ][self.rng.random_range(0..13)];
                format!(
                    r#"10.{}.{}.{} - - [23/Nov/2026:{:02}:{:02}:{:02} +0000] "{} {} HTTP/1.1" {status} {} "-" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36" rt={:.3} uct=0.000 request_id={request}"#,
                    self.rng.random_range(0..4),
                    self.rng.random_range(0..255),
                    self.rng.random_range(1..255),
                    (secs / 3600) % 24,
                    (secs / 60) % 60,
                    secs % 60,
                    ["GET", "POST"][self.rng.random_range(0..2)],
                    self.route(),
                    self.rng.random_range(0..20_000),
                    ms as f64 / 1000.0
                )
            }
            Kind::Java => {
                if level == "error" {
                    format!(
                        "{ts} ERROR [http-nio-8080-exec-{}] c.s.orders.OrderService - Failed to persist order ord-{} traceId={trace}\njava.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available, request timed out after 30000ms.\n\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)\n\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:197)\n\tat com.shop.orders.OrderRepository.save(OrderRepository.java:{})\n\tat com.shop.orders.OrderService.place(OrderService.java:88)\n\tat java.base/java.lang.Thread.run(Thread.java:1583)",
                        self.rng.random_range(1..200),
                        self.rng.random_range(10_000..99_999),
                        self.rng.random_range(40..120)
                    )
                } else {
                    format!(
                        "{ts} {:5} [http-nio-8080-exec-{}] c.s.orders.OrderController - {} {} user={user} took {ms}ms traceId={trace}",
                        level.to_uppercase(),
                        self.rng.random_range(1..200),
                        ["GET", "POST"][self.rng.random_range(0..2)],
                        self.route()
                    )
                }
            }
            Kind::Go => format!(
                "time={ts} level={level} msg=\"{}\" sku=SKU-{} warehouse=wh-{} latency={ms}ms request_id={request} trace_id={trace}",
                [
                    "stock checked",
                    "reservation created",
                    "reservation released",
                    "cache refreshed"
                ][self.rng.random_range(0..4)],
                self.rng.random_range(1000..1300),
                self.rng.random_range(1..9)
            ),
            Kind::Python => {
                if level == "error" {
                    format!(
                        "{ts} ERROR recommendation.model: scoring failed for user {user}\nTraceback (most recent call last):\n  File \"/app/recommend/model.py\", line {}, in score\n    return self.model.predict(features)\n  File \"/app/recommend/model.py\", line 57, in predict\n    raise ValueError(\"feature vector has wrong shape\")\nValueError: feature vector has wrong shape",
                        self.rng.random_range(100..140)
                    )
                } else {
                    format!(
                        "{ts} {} recommendation.api: served {} recommendations to user {user} in {ms}ms (model v{}.{}) traceparent=00-{trace}-{span}-01",
                        level.to_uppercase(),
                        self.rng.random_range(1..20),
                        self.rng.random_range(3..5),
                        self.rng.random_range(0..10)
                    )
                }
            }
        };
        let needle = [&request, &trace]
            .into_iter()
            .find(|id| text.contains(id.as_str()))
            .cloned();
        Line {
            service,
            pod,
            time_unix_nano: self.t,
            text,
            needle,
        }
    }
}

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// The lines as exports of about `per_request` lines each, grouped by pod within each.
pub fn requests(lines: &[Line], per_request: usize) -> Vec<ExportLogsServiceRequest> {
    lines
        .chunks(per_request)
        .map(|chunk| {
            let mut pods: Vec<((&str, usize), Vec<LogRecord>)> = Vec::new();
            for l in chunk {
                let key = (l.service, l.pod);
                let rec = LogRecord {
                    observed_time_unix_nano: l.time_unix_nano,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(l.text.clone())),
                    }),
                    ..Default::default()
                };
                match pods.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(rec),
                    None => pods.push((key, vec![rec])),
                }
            }
            let resource_logs = pods
                .into_iter()
                .map(|((service, pod), log_records)| {
                    let pod_name = format!("{service}-7d9f8c6b5-{pod:05x}");
                    ResourceLogs {
                        resource: Some(Resource {
                            attributes: vec![
                                kv("service.name", service),
                                kv("k8s.namespace.name", "shop"),
                                kv("k8s.pod.name", &pod_name),
                                kv("k8s.container.name", service),
                                kv("k8s.node.name", "node-1"),
                            ],
                            ..Default::default()
                        }),
                        scope_logs: vec![ScopeLogs {
                            log_records,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect();
            ExportLogsServiceRequest { resource_logs }
        })
        .collect()
}
