//! The Tempo API on the golden traces, as Grafana's Tempo data source calls it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Request;
use loupe_storage::TenantId;
use loupe_storage::TenantResolver;
use loupe_storage::catalog::{Catalog, WalSource};
use loupe_storage::conformance::{add, chunks};
use loupe_storage::fresh::NoFresh;
use loupe_storage::lifecycle::write_file;
use loupe_storage::spans::{SpanFormat, SpanReader};
use loupe_storage::store::Storage;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::Value;
use tower::ServiceExt;

use crate::service::TraceService;
use crate::state::QueryState;

async fn app() -> axum::Router {
    let storage = Storage::in_memory();
    let catalog = Catalog::new(storage.clone(), "w");
    let reader = Arc::new(SpanReader::new(storage.clone()));
    let format = Arc::new(SpanFormat::new(reader.clone()));
    let tenant = TenantId::new("default").unwrap();
    for (seq, (_, spans)) in crate::traceql::golden::traces().into_iter().enumerate() {
        let source = vec![WalSource {
            writer: "w".into(),
            max_seq: seq as u64 + 1,
        }];
        let e = write_file(&catalog, &format, &tenant, chunks(spans), source)
            .await
            .unwrap();
        add(&catalog, &tenant, vec![e]).await;
    }
    let logs = Arc::new(crate::logs::LogService::new(
        catalog.clone(),
        Arc::new(loupe_storage::logs::index::LogIndexReader::new(
            catalog.storage().clone(),
        )),
        Arc::new(NoFresh),
        Duration::ZERO,
    ));
    let traces = Arc::new(TraceService::new(
        catalog,
        reader,
        Arc::new(NoFresh),
        Duration::ZERO,
    ));
    crate::router(QueryState {
        traces,
        logs,
        metrics: crate::promql::service::empty_for_tests(),
        resolver: TenantResolver::default(),
    })
}

async fn call(app: &axum::Router, path: &str, accept: &str) -> (u16, String, Vec<u8>) {
    let resp = app
        .clone()
        .oneshot(
            Request::get(path)
                .header("accept", accept)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, ct, body.to_vec())
}

async fn json(app: &axum::Router, path: &str) -> (u16, Value) {
    let (s, _, body) = call(app, path, "application/json").await;
    (s, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn echo_and_trace_by_id_in_protobuf_and_json() {
    let app = app().await;
    let (s, _, body) = call(&app, "/tempo/api/echo", "*/*").await;
    assert_eq!((s, body.as_slice()), (200, b"echo".as_slice()));
    let id = hex::encode([1u8; 16]);
    // v2 in protobuf: TraceByIDResponse whose field 1 is the trace.
    let (s, ct, body) = call(
        &app,
        &format!("/tempo/api/v2/traces/{id}"),
        "application/protobuf",
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "application/protobuf"));
    assert_eq!(body[0], 0x0a, "field 1, length-delimited");
    let (len, used) = decode_varint(&body[1..]);
    let td = TracesData::decode(&body[1 + used..1 + used + len]).unwrap();
    let spans: usize = td
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans, 5);
    assert_eq!(td.resource_spans.len(), 2, "frontend and checkout");
    // v1 in protobuf: the bare trace.
    let (_, _, body) = call(
        &app,
        &format!("/tempo/api/traces/{id}"),
        "application/protobuf",
    )
    .await;
    assert_eq!(TracesData::decode(body.as_slice()).unwrap(), td);
    // JSON: v1 says `batches`, v2 wraps `resourceSpans`.
    let (s, v1) = json(&app, &format!("/tempo/api/traces/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(v1["batches"].as_array().unwrap().len(), 2);
    let (_, v2) = json(&app, &format!("/tempo/api/v2/traces/{id}?start=0&end=10")).await;
    assert_eq!(v2["trace"]["resourceSpans"], v1["batches"]);
    // Absent: v1 answers 404 with an empty body; v2 an empty trace.
    let absent = hex::encode([7u8; 16]);
    let (s, _, body) = call(
        &app,
        &format!("/tempo/api/traces/{absent}"),
        "application/protobuf",
    )
    .await;
    assert_eq!((s, body.len()), (404, 0));
    let (s, _, body) = call(
        &app,
        &format!("/tempo/api/v2/traces/{absent}"),
        "application/protobuf",
    )
    .await;
    assert_eq!((s, body), (200, vec![0x0a, 0x00]));
    let (s, _, body) = call(&app, "/tempo/api/traces/not-hex", "*/*").await;
    assert_eq!(s, 400);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("invalid trace id")
    );
    let (s, _, _) = call(
        &app,
        &format!("/tempo/api/traces/{id}?start=10&end=5"),
        "*/*",
    )
    .await;
    assert_eq!(s, 400);
}

fn decode_varint(b: &[u8]) -> (usize, usize) {
    let (mut v, mut shift) = (0usize, 0);
    for (i, byte) in b.iter().enumerate() {
        v |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return (v, i + 1);
        }
        shift += 7;
    }
    panic!("truncated varint")
}

#[tokio::test]
async fn traceql_search_answers_grafanas_shape() {
    let app = app().await;
    let q = "q=%7B%20status%20%3D%20error%20%7D&start=0&end=10&limit=20&spss=3";
    let (s, body) = json(&app, &format!("/tempo/api/search?{q}")).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(keys(&body), vec!["metrics", "traces"]);
    let traces = body["traces"].as_array().unwrap();
    let ids: Vec<&str> = traces
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![hex::encode([3u8; 16]), hex::encode([1u8; 16])],
        "newest first"
    );
    let t3 = &traces[0];
    assert_eq!(
        keys(t3),
        vec![
            "durationMs",
            "rootServiceName",
            "rootTraceName",
            "serviceStats",
            "spanSet",
            "spanSets",
            "startTimeUnixNano",
            "traceID"
        ]
    );
    assert_eq!(t3["rootServiceName"], "frontend");
    assert_eq!(t3["rootTraceName"], "GET /cart");
    assert_eq!(t3["startTimeUnixNano"], "2000000000");
    assert_eq!(t3["durationMs"], 900);
    assert_eq!(t3["serviceStats"]["cart"]["spanCount"], 2);
    assert_eq!(t3["serviceStats"]["frontend"]["errorCount"], 1);
    let set = &t3["spanSets"][0];
    assert_eq!(set, &t3["spanSet"]);
    assert_eq!(set["matched"], 1);
    let span = &set["spans"][0];
    assert_eq!(
        keys(span),
        vec![
            "attributes",
            "durationNanos",
            "name",
            "spanID",
            "startTimeUnixNano"
        ]
    );
    assert_eq!(span["durationNanos"], "900000000");
    assert_eq!(
        span["attributes"][0],
        serde_json::json!({"key": "status", "value": {"stringValue": "error"}})
    );
    // spss bounds the spans per spanset; matched still counts all.
    let (_, body) = json(&app, "/tempo/api/search?q=%7B%7D&start=0&end=10&spss=2").await;
    let t1 = body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["rootTraceName"] == "GET /checkout")
        .unwrap();
    assert_eq!(t1["spanSets"][0]["spans"].as_array().unwrap().len(), 2);
    assert_eq!(t1["spanSets"][0]["matched"], 5);
    // select() returns the attributes asked for; limit bounds the traces.
    let q = urlencode("{ kind = server } | select(span.http.method)");
    let (_, body) = json(
        &app,
        &format!("/tempo/api/search?q={q}&start=0&end=10&limit=1"),
    )
    .await;
    let traces = body["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1);
    let attrs = &traces[0]["spanSets"][0]["spans"][0]["attributes"];
    assert!(
        attrs
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "http.method"),
        "{attrs}"
    );
    // Attributes in the JSON columns are read when the query names them.
    let q = urlencode(
        r#"{ .order.amount > 12 && span."my attr" != "x" } || { ."my attr" = "spaced" }"#,
    );
    let (_, body) = json(&app, &format!("/tempo/api/search?q={q}&start=0&end=10")).await;
    let roots: Vec<&str> = body["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rootTraceName"].as_str().unwrap())
        .collect();
    assert_eq!(roots, vec!["GET /cart"], "{body}");
    let q = urlencode(r#"{ .order.amount > 12 }"#);
    let (_, body) = json(&app, &format!("/tempo/api/search?q={q}&start=0&end=10")).await;
    let t = &body["traces"][0];
    assert_eq!(t["rootTraceName"], "GET /checkout", "{body}");
    assert_eq!(
        t["spanSets"][0]["spans"][0]["attributes"][0],
        serde_json::json!({"key": "order.amount", "value": {"doubleValue": 12.5}})
    );
    // A count threshold: traces with too few candidate spans are not even read.
    for (n, want) in [(2, 1), (3, 0)] {
        let q = urlencode(&format!(
            r#"{{ resource.service.name = "checkout" }} | count() > {n}"#
        ));
        let (_, body) = json(&app, &format!("/tempo/api/search?q={q}&start=0&end=10")).await;
        let got = body["traces"].as_array().map_or(0, |a| a.len());
        assert_eq!(got, want, "count() > {n}: {body}");
    }
    // Nothing found: no `traces` key, as Tempo omits empty lists.
    let q = urlencode(r#"{ name = "nope" }"#);
    let (s, body) = json(&app, &format!("/tempo/api/search?q={q}&start=0&end=10")).await;
    assert_eq!((s, keys(&body)), (200, vec!["metrics"]));
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn bad_searches_answer_400_in_plain_text() {
    let app = app().await;
    for (path, needle) in [
        (
            "/tempo/api/search?q=%7B%20.a%20%3D%20%7D",
            "invalid TraceQL query: expected a value",
        ),
        (
            "/tempo/api/search?q=%7B%7D%20%7C%20by(.a)",
            "not supported: `by()`",
        ),
        ("/tempo/api/search?limit=0", "invalid limit"),
        ("/tempo/api/search?spss=x", "invalid spss"),
        (
            "/tempo/api/search?start=20&end=10",
            "start must be before end",
        ),
        (
            "/tempo/api/search?q=%7B%7D&tags=a%3Db",
            "can't specify tags and q",
        ),
        (
            "/tempo/api/v2/search/tags?scope=nope",
            "invalid scope: nope",
        ),
        (
            "/tempo/api/v2/search/tag/%7Bnope/values",
            "please provide a valid tagName",
        ),
    ] {
        let (s, ct, body) = call(&app, path, "application/json").await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(s, 400, "{path}: {body}");
        assert!(ct.starts_with("text/plain"), "{path}: {ct}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    let (s, _, _) = call(&app, "/tempo/api/metrics/query_range", "*/*").await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn tag_names_and_typed_values_for_autocomplete() {
    let app = app().await;
    let (s, body) = json(&app, "/tempo/api/v2/search/tags?start=0&end=10").await;
    assert_eq!(s, 200);
    let scope = |name: &str| -> Vec<String> {
        body["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| {
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(scope("span").contains(&"http.method".to_string()));
    assert!(scope("resource").contains(&"deployment.environment".to_string()));
    assert!(scope("event").contains(&"exception.type".to_string()));
    assert!(scope("intrinsic").contains(&"status".to_string()));
    let (_, only) = json(&app, "/tempo/api/v2/search/tags?scope=intrinsic").await;
    assert_eq!(only["scopes"].as_array().unwrap().len(), 1);

    let values = |body: &Value| -> Vec<(String, String)> {
        body["tagValues"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| {
                        (
                            v["type"].as_str().unwrap().to_string(),
                            v["value"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let pair = |t: &str, v: &str| (t.to_string(), v.to_string());
    let (_, b) = json(
        &app,
        "/tempo/api/v2/search/tag/resource.service.name/values?start=0&end=10",
    )
    .await;
    assert_eq!(
        values(&b),
        vec![
            pair("string", "cart"),
            pair("string", "checkout"),
            pair("string", "frontend")
        ]
    );
    let (_, b) = json(
        &app,
        "/tempo/api/v2/search/tag/.http.status_code/values?start=0&end=10",
    )
    .await;
    assert_eq!(values(&b), vec![pair("int", "200"), pair("int", "500")]);
    let (_, b) = json(
        &app,
        "/tempo/api/v2/search/tag/span.cache.hit/values?start=0&end=10",
    )
    .await;
    assert_eq!(values(&b), vec![pair("bool", "false")]);
    let (_, b) = json(
        &app,
        "/tempo/api/v2/search/tag/.order.amount/values?start=0&end=10",
    )
    .await;
    assert_eq!(values(&b), vec![pair("float", "12.5")]);
    let (_, b) = json(&app, "/tempo/api/v2/search/tag/status/values").await;
    assert_eq!(
        values(&b),
        vec![
            pair("keyword", "error"),
            pair("keyword", "ok"),
            pair("keyword", "unset")
        ]
    );
    let (_, b) = json(&app, "/tempo/api/v2/search/tag/duration/values").await;
    assert!(b.get("tagValues").is_none());
    // A partial query as typed keeps its complete conditions.
    let q = urlencode(r#"{ resource.service.name = "cart" && span.db"#);
    let (s, b) = json(
        &app,
        &format!("/tempo/api/v2/search/tag/name/values?start=0&end=10&q={q}"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        values(&b),
        vec![pair("string", "GetCart"), pair("string", "redis GET")]
    );
    // v1 forms.
    let (_, b) = json(
        &app,
        "/tempo/api/search/tag/service.name/values?start=0&end=10",
    )
    .await;
    assert_eq!(
        b["tagValues"],
        serde_json::json!(["cart", "checkout", "frontend"])
    );
    let (_, b) = json(&app, "/tempo/api/search/tags?start=0&end=10").await;
    assert!(
        b["tagNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "http.method")
    );
}

#[tokio::test]
async fn the_native_api_runs_the_same_traceql() {
    let app = app().await;
    let q = urlencode(r#"{ resource.service.name = "frontend" } >> { status = error }"#);
    let (s, native) = json(&app, &format!("/api/v1/traces?q={q}&start=0&end=10000")).await;
    assert_eq!(s, 200, "{native}");
    let (_, tempo) = json(&app, &format!("/tempo/api/search?q={q}&start=0&end=10")).await;
    let ids = |v: &Value, key: &str| -> Vec<String> {
        v["traces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t[key].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids(&native, "traceId"), vec![hex::encode([1u8; 16])]);
    assert_eq!(ids(&native, "traceId"), ids(&tempo, "traceID"));
    assert_eq!(
        native["traces"][0]["matchedSpanIds"],
        serde_json::json!([hex::encode([4u8; 8])])
    );
    // With form conditions too, a trace must satisfy both.
    let both = |extra: &str| format!("/api/v1/traces?q={q}&start=0&end=10000&{extra}");
    let (s, body) = json(&app, &both("service=checkout")).await;
    assert_eq!(
        (s, ids(&body, "traceId")),
        (200, vec![hex::encode([1u8; 16])])
    );
    let (s, body) = json(&app, &both("service=cart")).await;
    assert_eq!((s, ids(&body, "traceId")), (200, Vec::<String>::new()));
    let (s, body) = json(&app, "/api/v1/traces?q=%7B%20.a%20%3D%20%7D").await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid TraceQL query")
    );
}
