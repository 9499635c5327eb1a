//! A seeded generator of production-like traces: 24 services of a shop with templated HTTP
//! routes, gRPC methods, database statements and Kafka messaging; semantic-convention
//! attributes with realistic cardinalities; trace shapes from 3 to several hundred spans,
//! depth up to 12, fan-out; about 2% of traces fail with `exception` events and stack traces.
//! Ids are random (from the seed). Output is OTLP requests grouped by resource, as an SDK or
//! Collector would batch them.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}
fn s(k: &str, v: impl Into<String>) -> KeyValue {
    kv(k, any_value::Value::StringValue(v.into()))
}
fn n(k: &str, v: i64) -> KeyValue {
    kv(k, any_value::Value::IntValue(v))
}

/// How a service is called.
#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Http,
    Grpc,
}

struct Service {
    name: &'static str,
    version: &'static str,
    lang: &'static str,
    proto: Proto,
    ops: &'static [&'static str],
    db: Option<(&'static str, &'static [&'static str])>,
    /// Downstream services this one calls (chosen per request).
    calls: &'static [&'static str],
    /// Topic it publishes to, consumed by the named service.
    publishes: Option<(&'static str, &'static str)>,
}

const SERVICES: &[Service] = &[
    Service {
        name: "frontend-web",
        version: "5.12.0",
        lang: "nodejs",
        proto: Proto::Http,
        ops: &[
            "GET /",
            "GET /product/{id}",
            "GET /cart",
            "POST /cart/checkout",
            "GET /search",
            "GET /account/orders",
        ],
        db: None,
        calls: &["api-gateway"],
        publishes: None,
    },
    Service {
        name: "api-gateway",
        version: "2.3.1",
        lang: "go",
        proto: Proto::Http,
        ops: &[
            "GET /api/v1/products/{id}",
            "GET /api/v1/cart",
            "POST /api/v1/checkout",
            "GET /api/v1/search",
            "GET /api/v1/orders",
            "GET /api/v1/recommendations",
        ],
        db: None,
        calls: &[
            "auth",
            "catalog",
            "cart",
            "checkout",
            "search",
            "order-history",
            "recommendation",
            "ads",
        ],
        publishes: None,
    },
    Service {
        name: "auth",
        version: "1.9.4",
        lang: "go",
        proto: Proto::Grpc,
        ops: &[
            "auth.v1.AuthService/ValidateToken",
            "auth.v1.AuthService/RefreshSession",
        ],
        db: Some(("redis", &["GET session:{id}", "EXPIRE session:{id} 3600"])),
        calls: &["user-profile"],
        publishes: None,
    },
    Service {
        name: "user-profile",
        version: "3.0.2",
        lang: "java",
        proto: Proto::Grpc,
        ops: &[
            "users.v1.Profiles/GetProfile",
            "users.v1.Profiles/GetPreferences",
        ],
        db: Some((
            "postgresql",
            &[
                "SELECT id, email, name, tier FROM users WHERE id = $1",
                "SELECT key, value FROM preferences WHERE user_id = $1",
            ],
        )),
        calls: &[],
        publishes: None,
    },
    Service {
        name: "catalog",
        version: "4.7.0",
        lang: "java",
        proto: Proto::Grpc,
        ops: &[
            "catalog.v2.Catalog/GetProduct",
            "catalog.v2.Catalog/ListProducts",
            "catalog.v2.Catalog/GetVariants",
        ],
        db: Some((
            "postgresql",
            &[
                "SELECT * FROM products WHERE id = $1",
                "SELECT * FROM variants WHERE product_id = $1 ORDER BY position",
                "SELECT id, name, price FROM products WHERE category_id = $1 LIMIT $2",
            ],
        )),
        calls: &["pricing", "inventory", "review", "currency"],
        publishes: None,
    },
    Service {
        name: "search",
        version: "1.14.3",
        lang: "python",
        proto: Proto::Http,
        ops: &["GET /search", "GET /suggest"],
        db: Some((
            "elasticsearch",
            &["GET /products/_search", "GET /suggestions/_search"],
        )),
        calls: &["catalog", "ads"],
        publishes: None,
    },
    Service {
        name: "recommendation",
        version: "0.31.0",
        lang: "python",
        proto: Proto::Grpc,
        ops: &["reco.v1.Recommender/ForUser", "reco.v1.Recommender/Similar"],
        db: Some((
            "redis",
            &["ZREVRANGE reco:{user} 0 49", "HMGET features:{id}"],
        )),
        calls: &["catalog"],
        publishes: None,
    },
    Service {
        name: "cart",
        version: "2.2.8",
        lang: "dotnet",
        proto: Proto::Grpc,
        ops: &[
            "cart.v1.Cart/GetCart",
            "cart.v1.Cart/AddItem",
            "cart.v1.Cart/EmptyCart",
        ],
        db: Some((
            "redis",
            &[
                "HGETALL cart:{user}",
                "HSET cart:{user} {sku} {qty}",
                "DEL cart:{user}",
            ],
        )),
        calls: &["pricing", "promotions"],
        publishes: None,
    },
    Service {
        name: "checkout",
        version: "6.0.1",
        lang: "go",
        proto: Proto::Grpc,
        ops: &["checkout.v1.Checkout/PlaceOrder"],
        db: Some((
            "postgresql",
            &[
                "INSERT INTO orders (id, user_id, total, currency) VALUES ($1, $2, $3, $4)",
                "INSERT INTO order_items (order_id, sku, qty, price) VALUES ($1, $2, $3, $4)",
            ],
        )),
        calls: &[
            "cart",
            "pricing",
            "tax",
            "payment",
            "inventory",
            "shipping",
            "currency",
        ],
        publishes: Some(("orders.placed", "notification")),
    },
    Service {
        name: "payment",
        version: "8.4.2",
        lang: "java",
        proto: Proto::Grpc,
        ops: &["payments.v1.Payments/Charge", "payments.v1.Payments/Refund"],
        db: Some((
            "postgresql",
            &[
                "INSERT INTO charges (id, order_id, amount, status) VALUES ($1, $2, $3, $4)",
                "UPDATE charges SET status = $1 WHERE id = $2",
            ],
        )),
        calls: &["fraud-detection"],
        publishes: Some(("payments.settled", "order-history")),
    },
    Service {
        name: "fraud-detection",
        version: "2.0.0",
        lang: "python",
        proto: Proto::Grpc,
        ops: &["fraud.v1.Scorer/Score"],
        db: Some(("redis", &["HMGET risk:{user} score velocity"])),
        calls: &[],
        publishes: None,
    },
    Service {
        name: "inventory",
        version: "3.3.5",
        lang: "rust",
        proto: Proto::Grpc,
        ops: &["inventory.v1.Stock/Check", "inventory.v1.Stock/Reserve"],
        db: Some((
            "postgresql",
            &[
                "SELECT available FROM stock WHERE sku = $1 AND warehouse_id = $2",
                "UPDATE stock SET reserved = reserved + $1 WHERE sku = $2",
            ],
        )),
        calls: &["warehouse"],
        publishes: None,
    },
    Service {
        name: "pricing",
        version: "1.5.0",
        lang: "go",
        proto: Proto::Grpc,
        ops: &["pricing.v1.Prices/Quote", "pricing.v1.Prices/BulkQuote"],
        db: Some(("redis", &["MGET price:{sku}"])),
        calls: &["currency", "promotions"],
        publishes: None,
    },
    Service {
        name: "promotions",
        version: "0.9.7",
        lang: "nodejs",
        proto: Proto::Http,
        ops: &["GET /promotions/active", "POST /promotions/apply"],
        db: Some(("mongodb", &["find promotions", "findOne coupons"])),
        calls: &[],
        publishes: None,
    },
    Service {
        name: "shipping",
        version: "2.8.0",
        lang: "ruby",
        proto: Proto::Http,
        ops: &["POST /shipments/quote", "POST /shipments"],
        db: Some((
            "postgresql",
            &["INSERT INTO shipments (id, order_id, carrier) VALUES ($1, $2, $3)"],
        )),
        calls: &["warehouse"],
        publishes: Some(("shipments.created", "notification")),
    },
    Service {
        name: "order-history",
        version: "1.1.2",
        lang: "java",
        proto: Proto::Http,
        ops: &["GET /orders", "GET /orders/{id}"],
        db: Some((
            "postgresql",
            &[
                "SELECT id, total, status, created_at FROM orders WHERE user_id = $1 ORDER BY created_at DESC LIMIT 20",
            ],
        )),
        calls: &["catalog"],
        publishes: None,
    },
    Service {
        name: "notification",
        version: "4.0.3",
        lang: "python",
        proto: Proto::Http,
        ops: &["POST /notify"],
        db: None,
        calls: &["email", "sms"],
        publishes: None,
    },
    Service {
        name: "email",
        version: "1.0.9",
        lang: "python",
        proto: Proto::Http,
        ops: &["POST /send"],
        db: None,
        calls: &[],
        publishes: None,
    },
    Service {
        name: "sms",
        version: "0.4.1",
        lang: "go",
        proto: Proto::Http,
        ops: &["POST /messages"],
        db: None,
        calls: &[],
        publishes: None,
    },
    Service {
        name: "review",
        version: "2.6.0",
        lang: "php",
        proto: Proto::Http,
        ops: &["GET /reviews/{product_id}", "GET /ratings/{product_id}"],
        db: Some((
            "mysql",
            &[
                "SELECT rating, body, author FROM reviews WHERE product_id = ? ORDER BY created_at DESC LIMIT 10",
            ],
        )),
        calls: &[],
        publishes: None,
    },
    Service {
        name: "ads",
        version: "1.2.0",
        lang: "java",
        proto: Proto::Grpc,
        ops: &["ads.v1.Ads/GetAds"],
        db: Some(("redis", &["SRANDMEMBER ads:{category} 3"])),
        calls: &[],
        publishes: None,
    },
    Service {
        name: "currency",
        version: "1.0.4",
        lang: "cpp",
        proto: Proto::Grpc,
        ops: &[
            "currency.v1.Currency/Convert",
            "currency.v1.Currency/GetSupportedCurrencies",
        ],
        db: None,
        calls: &[],
        publishes: None,
    },
    Service {
        name: "tax",
        version: "0.7.2",
        lang: "dotnet",
        proto: Proto::Http,
        ops: &["POST /tax/calculate"],
        db: Some((
            "postgresql",
            &["SELECT rate FROM tax_rates WHERE region = $1"],
        )),
        calls: &[],
        publishes: None,
    },
    Service {
        name: "warehouse",
        version: "5.1.0",
        lang: "java",
        proto: Proto::Grpc,
        ops: &[
            "warehouse.v1.Warehouses/Nearest",
            "warehouse.v1.Warehouses/Allocate",
        ],
        db: Some((
            "postgresql",
            &[
                "SELECT id, lat, lon FROM warehouses WHERE region = $1",
                "UPDATE allocations SET qty = qty + $1 WHERE warehouse_id = $2 AND sku = $3",
            ],
        )),
        calls: &[],
        publishes: None,
    },
];

const STACK: &str = "java.lang.IllegalStateException: upstream returned 503\n\tat com.shop.client.ResilientClient.call(ResilientClient.java:212)\n\tat com.shop.client.ResilientClient.lambda$execute$3(ResilientClient.java:148)\n\tat io.github.resilience4j.retry.Retry.lambda$decorateCheckedSupplier$3(Retry.java:137)\n\tat com.shop.service.Handler.handle(Handler.java:88)\n\tat io.grpc.stub.ServerCalls$UnaryServerCallHandler$UnaryServerCallListener.onHalfClose(ServerCalls.java:182)\n\tat io.grpc.internal.ServerImpl$JumpToApplicationThreadServerStreamListener$1HalfClosed.runInContext(ServerImpl.java:351)\n\tat java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1136)\n\tat java.base/java.lang.Thread.run(Thread.java:840)";

fn svc(name: &str) -> &'static Service {
    SERVICES
        .iter()
        .find(|s| s.name == name)
        .unwrap_or(&SERVICES[0])
}

/// Per-service resources: 3 pods each on 8 nodes.
struct Resources {
    pods: HashMap<&'static str, Vec<Resource>>,
}

impl Resources {
    fn new(rng: &mut StdRng) -> Self {
        let mut pods = HashMap::new();
        for sv in SERVICES {
            let list = (0..3)
                .map(|_| {
                    let pod = format!(
                        "{}-{:x}-{}",
                        sv.name,
                        rng.random_range(0x1000_0000u32..0xffff_ffff),
                        rand_suffix(rng)
                    );
                    Resource {
                        attributes: vec![
                            s("service.name", sv.name),
                            s("service.version", sv.version),
                            s("service.namespace", "shop"),
                            s("service.instance.id", pod.clone()),
                            s("deployment.environment.name", "production"),
                            s("telemetry.sdk.language", sv.lang),
                            s("telemetry.sdk.name", "opentelemetry"),
                            s("telemetry.sdk.version", "1.45.0"),
                            s("k8s.namespace.name", "shop"),
                            s("k8s.deployment.name", sv.name),
                            s("k8s.pod.name", pod.clone()),
                            s(
                                "k8s.node.name",
                                format!(
                                    "ip-10-0-{}-{}.ec2.internal",
                                    rng.random_range(0..4),
                                    rng.random_range(10..12)
                                ),
                            ),
                            s("host.name", pod),
                            s("cloud.region", "eu-west-1"),
                        ],
                        ..Default::default()
                    }
                })
                .collect();
            pods.insert(sv.name, list);
        }
        Resources { pods }
    }
}

fn rand_suffix(rng: &mut StdRng) -> String {
    (0..5)
        .map(|_| (b'a' + rng.random_range(0..26)) as char)
        .collect()
}

/// A generated span with the index of its resource (pod).
struct GenSpan {
    service: &'static str,
    pod: usize,
    span: Span,
}

pub struct Generator {
    rng: StdRng,
    resources: Resources,
    /// Start of the next trace (unix ns); traces are spread over time.
    clock: u64,
}

struct Builder<'a> {
    rng: &'a mut StdRng,
    trace_id: Vec<u8>,
    out: Vec<GenSpan>,
    max_spans: usize,
}

impl Builder<'_> {
    fn id(&mut self) -> Vec<u8> {
        self.rng.random::<[u8; 8]>().to_vec()
    }

    fn push(&mut self, service: &'static str, span: Span) -> usize {
        let pod = self.rng.random_range(0..3);
        self.out.push(GenSpan { service, pod, span });
        self.out.len() - 1
    }

    /// A server span of `sv` handling `op` from `start`, with its subtree; returns its index
    /// and end time.
    fn server(
        &mut self,
        sv: &'static Service,
        parent: &[u8],
        start: u64,
        depth: usize,
    ) -> (usize, u64) {
        let op = sv.ops[self.rng.random_range(0..sv.ops.len())];
        let id = self.id();
        let mut attrs = Vec::new();
        let name;
        match sv.proto {
            Proto::Http => {
                let (method, route) = op.split_once(' ').unwrap_or(("GET", op));
                name = op.to_string();
                attrs.push(s("http.request.method", method));
                attrs.push(s("http.route", route));
                attrs.push(s("url.scheme", "http"));
                attrs.push(s(
                    "url.path",
                    route
                        .replace("{id}", &self.rng.random_range(1..50_000).to_string())
                        .replace("{product_id}", &self.rng.random_range(1..5000).to_string()),
                ));
                attrs.push(s("network.protocol.version", "1.1"));
                if sv.name == "frontend-web" {
                    attrs.push(s(
                        "client.address",
                        format!("203.0.113.{}", self.rng.random_range(1..255)),
                    ));
                    attrs.push(s("user_agent.original", ["Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) Mobile/15E148"][self.rng.random_range(0..3)]));
                }
            }
            Proto::Grpc => {
                name = op.to_string();
                let (service, method) = op.split_once('/').unwrap_or((op, ""));
                attrs.push(s("rpc.system", "grpc"));
                attrs.push(s("rpc.service", service));
                attrs.push(s("rpc.method", method));
            }
        }
        let mut span = Span {
            trace_id: self.trace_id.clone(),
            span_id: id.clone(),
            parent_span_id: parent.to_vec(),
            name,
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            attributes: attrs,
            flags: 0x301,
            ..Default::default()
        };
        let idx = self.push(sv.name, span.clone());
        let mut t = start + self.rng.random_range(50_000..400_000);
        // Database work.
        if let Some((system, stmts)) = sv.db {
            let k = if self.rng.random_bool(0.15) {
                self.rng.random_range(2..12)
            } else {
                self.rng.random_range(1..3)
            };
            for _ in 0..k {
                if self.out.len() >= self.max_spans {
                    break;
                }
                let stmt = stmts[self.rng.random_range(0..stmts.len())];
                let dur = lognormal(self.rng, 800_000.0, 0.9);
                let op_name = stmt
                    .split_whitespace()
                    .next()
                    .unwrap_or("query")
                    .to_string();
                let table = stmt
                    .split_whitespace()
                    .skip_while(|w| !matches!(*w, "FROM" | "INTO" | "UPDATE"))
                    .nth(1)
                    .unwrap_or(sv.name);
                let table = if op_name == "UPDATE" {
                    stmt.split_whitespace().nth(1).unwrap_or(sv.name)
                } else {
                    table
                };
                let db = Span {
                    trace_id: self.trace_id.clone(),
                    span_id: self.id(),
                    parent_span_id: id.clone(),
                    name: format!("{op_name} {table}"),
                    kind: span::SpanKind::Client as i32,
                    start_time_unix_nano: t,
                    end_time_unix_nano: t + dur,
                    attributes: vec![
                        s("db.system", system),
                        s("db.namespace", format!("{}_db", sv.name.replace('-', "_"))),
                        s("db.operation.name", op_name),
                        s("db.query.text", stmt),
                        s(
                            "server.address",
                            format!("{system}-{}.shop.svc.cluster.local", sv.name),
                        ),
                        n(
                            "server.port",
                            match system {
                                "postgresql" => 5432,
                                "redis" => 6379,
                                "mysql" => 3306,
                                "mongodb" => 27017,
                                _ => 9200,
                            },
                        ),
                    ],
                    ..Default::default()
                };
                self.push(sv.name, db);
                t += dur + self.rng.random_range(10_000..100_000);
            }
        }
        // Downstream calls; fan-out loops for list endpoints make the big traces.
        if depth < 11 && !sv.calls.is_empty() {
            // Entry services always call on, so every trace has at least 3 spans.
            let min = if depth <= 1 { 1 } else { 0 };
            let calls = self.rng.random_range(min..=sv.calls.len().min(4).max(min));
            for _ in 0..calls {
                let target = svc(sv.calls[self.rng.random_range(0..sv.calls.len())]);
                let repeat = if self.rng.random_bool(0.08) {
                    self.rng.random_range(3..30)
                } else {
                    1
                };
                for _ in 0..repeat {
                    if self.out.len() + 2 >= self.max_spans {
                        break;
                    }
                    t = self.client_call(sv, target, &id, t, depth)
                        + self.rng.random_range(20_000..200_000);
                }
            }
        }
        if let Some((topic, consumer)) = sv.publishes
            && self.out.len() + 3 < self.max_spans
        {
            let pid = self.id();
            let dur = self.rng.random_range(300_000..2_000_000);
            let produce = Span {
                trace_id: self.trace_id.clone(),
                span_id: pid.clone(),
                parent_span_id: id.clone(),
                name: format!("publish {topic}"),
                kind: span::SpanKind::Producer as i32,
                start_time_unix_nano: t,
                end_time_unix_nano: t + dur,
                attributes: vec![
                    s("messaging.system", "kafka"),
                    s("messaging.destination.name", topic),
                    s("messaging.operation.type", "send"),
                    s(
                        "messaging.kafka.message.key",
                        hex::encode(self.rng.random::<[u8; 6]>()),
                    ),
                    s("server.address", "kafka-0.kafka.shop.svc.cluster.local"),
                ],
                ..Default::default()
            };
            self.push(sv.name, produce);
            let cstart = t + dur + self.rng.random_range(1_000_000..30_000_000);
            let csv = svc(consumer);
            let (cidx, cend) = self.server(csv, &pid, cstart, depth + 1);
            let c = &mut self.out[cidx].span;
            c.kind = span::SpanKind::Consumer as i32;
            c.name = format!("process {topic}");
            c.attributes = vec![
                s("messaging.system", "kafka"),
                s("messaging.destination.name", topic),
                s("messaging.operation.type", "process"),
                s("messaging.consumer.group.name", format!("{consumer}-group")),
            ];
            let _ = cend;
            t += dur;
        }
        let end = t + self.rng.random_range(30_000..300_000);
        span.end_time_unix_nano = end;
        self.out[idx].span.end_time_unix_nano = end;
        span.attributes.clear();
        if sv.proto == Proto::Http {
            self.out[idx]
                .span
                .attributes
                .push(n("http.response.status_code", 200));
        } else {
            self.out[idx]
                .span
                .attributes
                .push(n("rpc.grpc.status_code", 0));
        }
        (idx, end)
    }

    /// A client span from `from` to `to` and the callee's server subtree; returns its end.
    fn client_call(
        &mut self,
        from: &'static Service,
        to: &'static Service,
        parent: &[u8],
        start: u64,
        depth: usize,
    ) -> u64 {
        let cid = self.id();
        let cidx = self.push(
            from.name,
            Span {
                trace_id: self.trace_id.clone(),
                span_id: cid.clone(),
                parent_span_id: parent.to_vec(),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: start,
                ..Default::default()
            },
        );
        let net = self.rng.random_range(150_000..900_000);
        let (sidx, send) = self.server(to, &cid, start + net / 2, depth + 1);
        let end = send + net / 2;
        let server_name = self.out[sidx].span.name.clone();
        let c = &mut self.out[cidx].span;
        c.end_time_unix_nano = end;
        match to.proto {
            Proto::Http => {
                let (method, route) = server_name.split_once(' ').unwrap_or(("GET", &server_name));
                c.name = method.to_string();
                let path = route
                    .replace("{id}", &self.rng.random_range(1..50_000).to_string())
                    .replace("{product_id}", &self.rng.random_range(1..5000).to_string());
                c.attributes = vec![
                    s("http.request.method", method),
                    s(
                        "url.full",
                        format!(
                            "http://{}.shop.svc.cluster.local:8080{path}?trace={}",
                            to.name,
                            self.rng.random_range(0..1_000_000)
                        ),
                    ),
                    s(
                        "server.address",
                        format!("{}.shop.svc.cluster.local", to.name),
                    ),
                    n("server.port", 8080),
                    n("http.response.status_code", 200),
                ];
            }
            Proto::Grpc => {
                c.name = server_name.clone();
                let (service, method) = server_name.split_once('/').unwrap_or((&server_name, ""));
                c.attributes = vec![
                    s("rpc.system", "grpc"),
                    s("rpc.service", service),
                    s("rpc.method", method),
                    s(
                        "server.address",
                        format!("{}.shop.svc.cluster.local", to.name),
                    ),
                    n("server.port", 50051),
                    n("rpc.grpc.status_code", 0),
                ];
            }
        }
        end
    }

    /// Fails a random span and its ancestors, with an exception event on the failing span.
    fn fail(&mut self) {
        let victim = self.rng.random_range(0..self.out.len());
        let by_id: HashMap<Vec<u8>, usize> = self
            .out
            .iter()
            .enumerate()
            .map(|(i, g)| (g.span.span_id.clone(), i))
            .collect();
        let mut cur = Some(victim);
        let mut first = true;
        while let Some(i) = cur {
            let sp = &mut self.out[i].span;
            sp.status = Some(Status {
                code: 2,
                message: if first {
                    "upstream returned 503".into()
                } else {
                    String::new()
                },
            });
            for a in sp.attributes.iter_mut() {
                if a.key == "http.response.status_code" {
                    a.value = Some(AnyValue {
                        value: Some(any_value::Value::IntValue(if first { 503 } else { 500 })),
                    });
                }
                if a.key == "rpc.grpc.status_code" {
                    a.value = Some(AnyValue {
                        value: Some(any_value::Value::IntValue(14)),
                    });
                }
            }
            if first {
                sp.events.push(span::Event {
                    time_unix_nano: sp.end_time_unix_nano.saturating_sub(1000),
                    name: "exception".into(),
                    attributes: vec![
                        s("exception.type", "java.lang.IllegalStateException"),
                        s("exception.message", "upstream returned 503"),
                        s("exception.stacktrace", STACK),
                        kv("exception.escaped", any_value::Value::BoolValue(true)),
                    ],
                    ..Default::default()
                });
                first = false;
            }
            cur = by_id.get(&sp.parent_span_id).copied();
        }
    }
}

fn lognormal(rng: &mut StdRng, median: f64, sigma: f64) -> u64 {
    // Box-Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (median * (sigma * z).exp()) as u64
}

/// One generated trace: its id and span count.
pub struct TraceInfo {
    pub trace_id: [u8; 16],
    pub spans: usize,
    pub start_unix_nano: u64,
}

impl Generator {
    pub fn new(seed: u64, start_unix_nano: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let resources = Resources::new(&mut rng);
        Generator {
            rng,
            resources,
            clock: start_unix_nano,
        }
    }

    /// Generates traces until at least `spans` spans, as requests of about `per_request`
    /// spans. Trace starts advance by `gap_ns` on average.
    pub fn batch(
        &mut self,
        spans: usize,
        per_request: usize,
        gap_ns: u64,
    ) -> (Vec<ExportTraceServiceRequest>, Vec<TraceInfo>) {
        let mut requests = Vec::new();
        let mut infos = Vec::new();
        let mut pending: Vec<GenSpan> = Vec::new();
        let mut total = 0;
        while total < spans {
            let trace_id: [u8; 16] = self.rng.random();
            self.clock += self.rng.random_range(0..gap_ns.max(1) * 2);
            let max_spans = if self.rng.random_bool(0.03) { 600 } else { 120 };
            let mut b = Builder {
                rng: &mut self.rng,
                trace_id: trace_id.to_vec(),
                out: Vec::new(),
                max_spans,
            };
            let entry = if b.rng.random_bool(0.7) {
                svc("frontend-web")
            } else {
                svc("api-gateway")
            };
            b.server(entry, &[], self.clock, 0);
            if b.rng.random_bool(0.02) {
                b.fail();
            }
            let out = b.out;
            infos.push(TraceInfo {
                trace_id,
                spans: out.len(),
                start_unix_nano: self.clock,
            });
            total += out.len();
            pending.extend(out);
            if pending.len() >= per_request {
                requests.push(self.request(std::mem::take(&mut pending)));
            }
        }
        if !pending.is_empty() {
            requests.push(self.request(pending));
        }
        (requests, infos)
    }

    fn request(&self, spans: Vec<GenSpan>) -> ExportTraceServiceRequest {
        let mut by_res: HashMap<(&str, usize), Vec<Span>> = HashMap::new();
        for g in spans {
            by_res.entry((g.service, g.pod)).or_default().push(g.span);
        }
        let mut keys: Vec<_> = by_res.keys().copied().collect();
        keys.sort();
        ExportTraceServiceRequest {
            resource_spans: keys
                .into_iter()
                .map(|k| ResourceSpans {
                    resource: Some(self.resources.pods[k.0][k.1].clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "io.opentelemetry.instrumentation".into(),
                            version: "2.10.0".into(),
                            ..Default::default()
                        }),
                        spans: by_res.remove(&k).unwrap_or_default(),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_look_like_production() {
        let mut g = Generator::new(7, 1_700_000_000_000_000_000);
        let (reqs, infos) = g.batch(50_000, 1000, 1_000_000);
        let sizes: Vec<usize> = infos.iter().map(|t| t.spans).collect();
        assert!(
            *sizes.iter().min().unwrap() >= 3,
            "{:?}",
            sizes.iter().min()
        );
        assert!(
            *sizes.iter().max().unwrap() >= 150,
            "{:?}",
            sizes.iter().max()
        );
        let spans: Vec<&Span> = reqs
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .collect();
        let errors = infos.len() as f64;
        let failed = spans.iter().filter(|s| !s.events.is_empty()).count() as f64;
        assert!(
            (0.005..0.05).contains(&(failed / errors)),
            "error rate {}",
            failed / errors
        );
        let services: std::collections::HashSet<_> = reqs
            .iter()
            .flat_map(|r| &r.resource_spans)
            .map(|r| format!("{:?}", r.resource.as_ref().unwrap().attributes[0]))
            .collect();
        assert!(services.len() >= 20, "{}", services.len());
        let mut g2 = Generator::new(7, 1_700_000_000_000_000_000);
        assert_eq!(
            g2.batch(1000, 1000, 1_000_000).1[0].trace_id,
            infos[0].trace_id,
            "seeded"
        );
    }
}
