//! Tests of the native API: its OpenAPI document, parameters and errors.
use std::time::Duration;

use axum::body::Body;
use http::Request;
use loupe_storage::TenantResolver;
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::NoFresh;
use loupe_storage::store::Storage;
use tower::ServiceExt;

use std::sync::Arc;

use super::*;
use crate::service::TraceService;

fn app() -> Router {
    let storage = Storage::in_memory();
    let catalog_for_logs = Catalog::new(storage.clone(), "test");
    let traces = Arc::new(TraceService::new(
        Catalog::new(storage.clone(), "test"),
        Arc::new(loupe_storage::spans::SpanReader::new(storage)),
        Arc::new(NoFresh),
        Duration::ZERO,
    ));
    let logs = Arc::new(crate::logs::LogService::new(
        catalog_for_logs.clone(),
        Arc::new(loupe_storage::logs::index::LogIndexReader::new(
            catalog_for_logs.storage().clone(),
        )),
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

async fn get(path: &str) -> (u16, serde_json::Value) {
    let resp = app()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn openapi_documents_the_native_api() {
    let (s, doc) = get("/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/traces",
        "/api/v1/traces/{traceId}",
        "/api/v1/services",
        "/api/v1/services/{service}/operations",
        "/api/v1/stats",
    ] {
        assert!(doc["paths"][p]["get"].is_object(), "{p} documented");
    }
    assert!(doc["components"]["schemas"]["SpanJson"].is_object());
}

#[tokio::test]
async fn empty_store_and_bad_parameters() {
    assert_eq!(
        get("/api/v1/services").await,
        (200, serde_json::json!({"services": []}))
    );
    let (s, body) = get("/api/v1/traces?status=broken").await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expected error, ok or unset")
    );
    // An inverted range matches nothing (it is not malformed).
    let (s, body) = get("/api/v1/traces?start=1000&end=10").await;
    assert_eq!((s, &body["traces"]), (200, &serde_json::json!([])));
    let (s, _) = get("/api/v1/traces?limit=0").await;
    assert_eq!(s, 400);
    let (s, body) = get("/api/v1/traces/00000000000000000000000000000001").await;
    assert_eq!(s, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (s, _) = get("/api/v1/nothing-here").await;
    assert_eq!(s, 404);
}
