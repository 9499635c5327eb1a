//! `loupe server --demo`: a small shop of real services that call each other over HTTP on
//! loopback with W3C `traceparent` propagation, record their spans, and export them over real
//! OTLP/HTTP (protobuf) to this server, so a newcomer sees cross-service traces at once.
//! Errors (declined payments, a flaky inventory database) and latency outliers are built in.
//! Each request also writes a log line (see `demo_logs`) and records its duration in an HTTP
//! server histogram (see `demo_metrics`), exported over OTLP/HTTP too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use tokio::sync::watch;

const SERVICES: &[(&str, &str)] = &[
    ("frontend", "2.14.0"),
    ("checkout", "1.8.3"),
    ("cart", "3.0.1"),
    ("inventory", "1.22.0"),
    ("payment", "4.2.7"),
    ("notification", "0.9.4"),
];

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(key: &str, v: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

fn jitter(lo: u64, hi: u64) -> u64 {
    rand::random_range(lo..hi)
}

/// Span ids of the current operation, carried in `traceparent`.
#[derive(Clone, Copy)]
struct Ctx {
    trace: [u8; 16],
    span: [u8; 8],
}

impl Ctx {
    fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-01",
            hex::encode(self.trace),
            hex::encode(self.span)
        )
    }

    fn parse(h: &str) -> Option<Ctx> {
        let mut parts = h.split('-');
        let (_, t, s) = (parts.next()?, parts.next()?, parts.next()?);
        let mut ctx = Ctx {
            trace: [0; 16],
            span: [0; 8],
        };
        hex::decode_to_slice(t, &mut ctx.trace).ok()?;
        hex::decode_to_slice(s, &mut ctx.span).ok()?;
        Some(ctx)
    }
}

/// Spans of one service waiting for export.
struct Exporter {
    resource: Resource,
    pending: Mutex<Vec<Span>>,
    logs: crate::demo_logs::Pending,
    metrics: crate::demo_metrics::Recorder,
}

/// A span being recorded.
struct Active {
    span: Span,
    exporter: Arc<Exporter>,
}

impl Active {
    fn ctx(&self) -> Ctx {
        let mut c = Ctx {
            trace: [0; 16],
            span: [0; 8],
        };
        c.trace.copy_from_slice(&self.span.trace_id);
        c.span.copy_from_slice(&self.span.span_id);
        c
    }

    fn attr(&mut self, a: KeyValue) -> &mut Self {
        self.span.attributes.push(a);
        self
    }

    fn error(&mut self, message: &str, exception_type: &str, stack: &str) {
        self.span.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: message.to_string(),
        });
        self.span.events.push(span::Event {
            time_unix_nano: now_ns(),
            name: "exception".into(),
            attributes: vec![
                s("exception.type", exception_type),
                s("exception.message", message),
                s("exception.stacktrace", stack),
            ],
            ..Default::default()
        });
    }

    fn end(mut self) {
        self.span.end_time_unix_nano = now_ns();
        if let Ok(mut p) = self.exporter.pending.lock() {
            p.push(self.span);
        }
    }
}

struct Svc {
    name: &'static str,
    exporter: Arc<Exporter>,
    client: reqwest::Client,
    peers: OnceLock<HashMap<&'static str, SocketAddr>>,
}

impl Svc {
    fn start(&self, name: &str, kind: span::SpanKind, parent: Option<Ctx>) -> Active {
        let trace = parent.map_or_else(rand::random::<[u8; 16]>, |p| p.trace);
        Active {
            span: Span {
                trace_id: trace.to_vec(),
                span_id: rand::random::<[u8; 8]>().to_vec(),
                parent_span_id: parent.map(|p| p.span.to_vec()).unwrap_or_default(),
                name: name.to_string(),
                kind: kind as i32,
                start_time_unix_nano: now_ns(),
                ..Default::default()
            },
            exporter: self.exporter.clone(),
        }
    }

    /// An HTTP call to a peer service, recorded as a client span; returns the status code.
    async fn call(
        &self,
        parent: &Active,
        peer: &str,
        method: &str,
        route: &str,
        path: &str,
    ) -> u16 {
        let Some(addr) = self.peers.get().and_then(|p| p.get(peer)).copied() else {
            return 503;
        };
        let mut c = self.start(method, span::SpanKind::Client, Some(parent.ctx()));
        let url = format!("http://{addr}{path}");
        c.attr(s("http.request.method", method))
            .attr(s("url.full", url.clone()))
            .attr(s("server.address", peer))
            .attr(i("server.port", addr.port() as i64))
            .attr(s("http.route", route));
        let req = match method {
            "POST" => self.client.post(&url),
            _ => self.client.get(&url),
        };
        let code = match req
            .header("traceparent", c.ctx().traceparent())
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 503,
        };
        c.attr(i("http.response.status_code", code as i64));
        if code >= 500 {
            c.span.status = Some(Status {
                code: status::StatusCode::Error as i32,
                message: format!("HTTP {code}"),
            });
        }
        c.end();
        code
    }

    fn db(&self, parent: &Active, system: &str, op: &str, table: &str, query: &str) -> Active {
        let mut d = self.start(
            &format!("{op} {table}"),
            span::SpanKind::Client,
            Some(parent.ctx()),
        );
        d.attr(s("db.system", system))
            .attr(s("db.operation.name", op))
            .attr(s("db.collection.name", table))
            .attr(s("db.query.text", query))
            .attr(s(
                "server.address",
                format!("{system}.demo.svc.cluster.local"),
            ));
        d
    }
}

async fn handle(State(svc): State<Arc<Svc>>, req: Request) -> impl IntoResponse {
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(Ctx::parse);
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    let (route, work) = route_of(svc.name, &path);
    let started = std::time::Instant::now();
    let mut server = svc.start(&format!("{method} {route}"), span::SpanKind::Server, parent);
    server
        .attr(s("http.request.method", method.clone()))
        .attr(s("http.route", route))
        .attr(s("url.path", path.clone()));
    let code = work.run(&svc, &mut server).await;
    server.attr(i("http.response.status_code", code as i64));
    if code >= 500 && server.span.status.is_none() {
        server.span.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: format!("HTTP {code}"),
        });
    }
    let ctx = server.ctx();
    let error = server.span.status.as_ref().map(|s| s.message.clone());
    let access = crate::demo_logs::Access {
        method: &method,
        path: &path,
        code,
        millis: started.elapsed().as_millis() as u64,
        trace: ctx.trace,
        span: ctx.span,
        error: error.as_deref(),
    };
    svc.exporter.metrics.record(
        &method,
        route,
        code,
        started.elapsed().as_secs_f64(),
        (ctx.trace, ctx.span, now_ns()),
    );
    let style = crate::demo_logs::style_of(svc.name);
    svc.exporter
        .logs
        .push(crate::demo_logs::record(style, &access, now_ns()));
    server.end();
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Clone, Copy)]
enum Work {
    FrontCheckout,
    FrontProduct,
    Checkout,
    Cart,
    Reserve,
    Stock,
    Charge,
    Notify,
    NotFound,
}

fn route_of(service: &str, path: &str) -> (&'static str, Work) {
    match (service, path) {
        ("frontend", "/api/checkout") => ("/api/checkout", Work::FrontCheckout),
        ("frontend", p) if p.starts_with("/api/products/") => {
            ("/api/products/{id}", Work::FrontProduct)
        }
        ("checkout", "/checkout") => ("/checkout", Work::Checkout),
        ("cart", p) if p.starts_with("/cart/") => ("/cart/{user_id}", Work::Cart),
        ("inventory", "/reserve") => ("/reserve", Work::Reserve),
        ("inventory", p) if p.starts_with("/stock/") => ("/stock/{sku}", Work::Stock),
        ("payment", "/charge") => ("/charge", Work::Charge),
        ("notification", "/events/order-placed") => ("/events/order-placed", Work::Notify),
        _ => ("/{path}", Work::NotFound),
    }
}

impl Work {
    async fn run(self, svc: &Svc, span: &mut Active) -> u16 {
        match self {
            Work::FrontCheckout => {
                pause(jitter(1, 4)).await;
                let code = svc
                    .call(span, "checkout", "POST", "/checkout", "/checkout")
                    .await;
                if code >= 500 { 502 } else { 200 }
            }
            Work::FrontProduct => {
                let sku = jitter(1000, 1040);
                let code = svc
                    .call(
                        span,
                        "inventory",
                        "GET",
                        "/stock/{sku}",
                        &format!("/stock/SKU-{sku}"),
                    )
                    .await;
                if code >= 500 { 503 } else { 200 }
            }
            Work::Checkout => {
                let user = jitter(1, 500);
                if svc
                    .call(
                        span,
                        "cart",
                        "GET",
                        "/cart/{user_id}",
                        &format!("/cart/{user}"),
                    )
                    .await
                    >= 500
                {
                    return 500;
                }
                if svc
                    .call(span, "inventory", "POST", "/reserve", "/reserve")
                    .await
                    >= 500
                {
                    span.error(
                        "inventory reservation failed",
                        "ReservationError",
                        "at checkout.placeOrder (order.go:88)\nat checkout.Handler (handler.go:41)",
                    );
                    return 500;
                }
                if svc
                    .call(span, "payment", "POST", "/charge", "/charge")
                    .await
                    >= 400
                {
                    span.error(
                        "payment declined",
                        "PaymentDeclined",
                        "at checkout.charge (payment.go:57)\nat checkout.placeOrder (order.go:97)",
                    );
                    return 502;
                }
                let mut produce =
                    svc.start("orders publish", span::SpanKind::Producer, Some(span.ctx()));
                produce
                    .attr(s("messaging.system", "kafka"))
                    .attr(s("messaging.destination.name", "orders"))
                    .attr(s("messaging.operation.type", "publish"));
                pause(jitter(1, 3)).await;
                svc.call(
                    &produce,
                    "notification",
                    "POST",
                    "/events/order-placed",
                    "/events/order-placed",
                )
                .await;
                produce.end();
                200
            }
            Work::Cart => {
                let mut d = svc.db(span, "redis", "HGETALL", "cart", "HGETALL cart:{user_id}");
                pause(jitter(1, 4)).await;
                d.attr(i("db.response.returned_rows", jitter(0, 12) as i64));
                d.end();
                200
            }
            Work::Reserve | Work::Stock => {
                let (op, q) = match self {
                    Work::Reserve => (
                        "UPDATE",
                        "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2 AND available >= $1",
                    ),
                    _ => (
                        "SELECT",
                        "SELECT sku, available, reserved FROM stock WHERE sku = $1",
                    ),
                };
                let mut d = svc.db(span, "postgresql", op, "stock", q);
                // A rare slow query: a latency outlier.
                let slow = rand::random::<f64>() < 0.02;
                pause(if slow {
                    jitter(800, 1500)
                } else {
                    jitter(2, 15)
                })
                .await;
                if rand::random::<f64>() < 0.01 {
                    d.error("connection reset by peer", "PSQLException", "at org.postgresql.core.v3.QueryExecutorImpl.execute(QueryExecutorImpl.java:356)\nat com.shop.inventory.StockRepository.reserve(StockRepository.java:42)");
                    d.end();
                    return 500;
                }
                d.end();
                200
            }
            Work::Charge => {
                let mut ext = svc.start("POST", span::SpanKind::Client, Some(span.ctx()));
                ext.attr(s("http.request.method", "POST"))
                    .attr(s("url.full", "https://api.payments.example/v1/charges"))
                    .attr(s("server.address", "api.payments.example"));
                let slow = rand::random::<f64>() < 0.03;
                pause(if slow {
                    jitter(1200, 2500)
                } else {
                    jitter(20, 80)
                })
                .await;
                let declined = rand::random::<f64>() < 0.05;
                ext.attr(i(
                    "http.response.status_code",
                    if declined { 402 } else { 200 },
                ));
                ext.end();
                span.attr(s(
                    "payment.method",
                    if rand::random::<bool>() {
                        "card"
                    } else {
                        "wallet"
                    },
                ));
                if declined {
                    span.error("card declined: insufficient funds", "CardDeclinedError", "Traceback (most recent call last):\n  File \"payment/charge.py\", line 41, in charge\n    raise CardDeclinedError(reason)\nCardDeclinedError: insufficient funds");
                    return 402;
                }
                200
            }
            Work::Notify => {
                let mut consume =
                    svc.start("orders process", span::SpanKind::Consumer, Some(span.ctx()));
                consume
                    .attr(s("messaging.system", "kafka"))
                    .attr(s("messaging.destination.name", "orders"))
                    .attr(s("messaging.operation.type", "process"));
                pause(jitter(2, 10)).await;
                consume.end();
                202
            }
            Work::NotFound => 404,
        }
    }
}

fn resource(name: &str, version: &str) -> Resource {
    let pod = format!(
        "{name}-{:x}-{:x}",
        jitter(0x1000, 0xffff),
        jitter(0x100, 0xfff)
    );
    Resource {
        attributes: vec![
            s("service.name", name),
            s("service.version", version),
            s("service.namespace", "shop"),
            s("deployment.environment.name", "demo"),
            s("k8s.namespace.name", "shop"),
            s("k8s.deployment.name", name),
            s("k8s.pod.name", pod),
            s("k8s.node.name", "node-1"),
            s("telemetry.sdk.name", "loupe-demo"),
            s("telemetry.sdk.language", "rust"),
        ],
        ..Default::default()
    }
}

async fn export_loop(
    exporters: Vec<Arc<Exporter>>,
    otlp: SocketAddr,
    token: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = reqwest::Client::new();
    let url = format!("http://{otlp}/v1/traces");
    let logs_url = format!("http://{otlp}/v1/logs");
    let metrics_url = format!("http://{otlp}/v1/metrics");
    let mut tick = 0u64;
    loop {
        tick += 1;
        let stop = tokio::select! {
            _ = pause(1000) => false,
            _ = shutdown.changed() => true,
        };
        let resource_spans: Vec<ResourceSpans> = exporters
            .iter()
            .filter_map(|e| {
                let spans = std::mem::take(&mut *e.pending.lock().ok()?);
                (!spans.is_empty()).then(|| ResourceSpans {
                    resource: Some(e.resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "loupe-demo".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
            })
            .collect();
        let logs = crate::demo_logs::export(exporters.iter().map(|e| (&e.logs, &e.resource)));
        let mut bodies = Vec::new();
        if !resource_spans.is_empty() {
            bodies.push((
                &url,
                ExportTraceServiceRequest { resource_spans }.encode_to_vec(),
            ));
        }
        if let Some(logs) = logs {
            bodies.push((&logs_url, logs.encode_to_vec()));
        }
        // Metrics every 5 s (an SDK's reader exports on an interval too).
        if (tick.is_multiple_of(5) || stop)
            && let Some(m) = crate::demo_metrics::export(
                exporters.iter().map(|e| (&e.metrics, &e.resource)),
                now_ns(),
            )
        {
            bodies.push((&metrics_url, m.encode_to_vec()));
        }
        for (url, body) in bodies {
            let mut req = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .body(body);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!(status = %r.status(), "demo export rejected"),
                Err(e) => tracing::warn!(error = %e, "demo export failed"),
            }
        }
        if stop {
            return;
        }
    }
}

/// Starts the demo services and a load generator; runs until `shutdown`.
pub async fn run(otlp_http: SocketAddr, token: Option<String>, shutdown: watch::Receiver<bool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut svcs = Vec::new();
    let mut peers = HashMap::new();
    for (name, version) in SERVICES {
        let svc = Arc::new(Svc {
            name,
            exporter: Arc::new(Exporter {
                resource: resource(name, version),
                pending: Mutex::new(Vec::new()),
                logs: Default::default(),
                metrics: crate::demo_metrics::Recorder::new(now_ns()),
            }),
            client: client.clone(),
            peers: OnceLock::new(),
        });
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "demo: cannot bind a loopback port");
                return;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            peers.insert(*name, addr);
        }
        let app = Router::new().fallback(handle).with_state(svc.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        svcs.push(svc);
    }
    for svc in &svcs {
        let _ = svc.peers.set(peers.clone());
    }
    let exporters = svcs.iter().map(|s| s.exporter.clone()).collect();
    tokio::spawn(export_loop(exporters, otlp_http, token, shutdown.clone()));
    let Some(frontend) = peers.get("frontend").copied() else {
        return;
    };
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            _ = pause(jitter(100, 400)) => {}
            _ = shutdown.changed() => return,
        }
        let path = if rand::random::<f64>() < 0.6 {
            "/api/checkout".to_string()
        } else {
            format!("/api/products/{}", jitter(1, 300))
        };
        let method = if path == "/api/checkout" {
            "POST"
        } else {
            "GET"
        };
        let c = client.clone();
        tokio::spawn(async move {
            let url = format!("http://{frontend}{path}");
            let _ = if method == "POST" {
                c.post(url).send().await
            } else {
                c.get(url).send().await
            };
        });
    }
}
