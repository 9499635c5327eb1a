//! Tenancy: with tokens configured the tenant comes from the token only, one tenant never
//! sees another's data, and a crafted tenant name cannot escape its storage prefix.

use crate::harness::{Server, get_json};
use crate::otlp::{post_proto, random_trace_id, trace_request};

const ALPHA: &str = "alpha-token-0001";
const BETA: &str = "beta-token-0002";

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = format!("{ALPHA}=alpha,{BETA}=beta");
    let server = Server::start(&["server"], dir.path(), &[("LOUPE_AUTH_TOKENS", &tokens)]);
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    let (a, b) = (random_trace_id(), random_trace_id());
    assert_eq!(
        post_proto(&url, &trace_request("alpha-svc", a, 3), Some(ALPHA))
            .await
            .status(),
        200
    );
    assert_eq!(
        post_proto(&url, &trace_request("beta-svc", b, 2), Some(BETA))
            .await
            .status(),
        200
    );

    // Wrong or missing tokens: 401 on ingest and query, nothing stored.
    let resp = post_proto(
        &url,
        &trace_request("intruder", random_trace_id(), 1),
        Some("wrong-token-xyz"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        post_proto(&url, &trace_request("anon", random_trace_id(), 1), None)
            .await
            .status(),
        401
    );
    let (s, body) = get_json(&server.url("/api/v1/services"), None).await;
    assert_eq!(s, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bearer token")
    );
    let (s, _) = get_json(&server.url("/jaeger/api/services"), Some("nope-nope-nope")).await;
    assert_eq!(s, 401);

    let trace = |id: [u8; 16], token| {
        let u = server.url(&format!("/api/v1/traces/{}", hex::encode(id)));
        async move { get_json(&u, Some(token)).await.0 }
    };
    assert_eq!(trace(a, ALPHA).await, 200);
    assert_eq!(trace(b, ALPHA).await, 404, "alpha cannot read beta's trace");
    assert_eq!(trace(b, BETA).await, 200);
    assert_eq!(trace(a, BETA).await, 404);
    let (_, s) = get_json(&server.url("/api/v1/services"), Some(ALPHA)).await;
    assert_eq!(s["services"], serde_json::json!(["alpha-svc"]));
    let (_, s) = get_json(&server.url("/jaeger/api/services"), Some(BETA)).await;
    assert_eq!(s["data"], serde_json::json!(["beta-svc"]));

    // X-Scope-OrgID cannot override the token's tenant.
    let resp = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/traces/{}", hex::encode(b))))
        .bearer_auth(ALPHA)
        .header("x-scope-orgid", "beta")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // After the flush, objects live only under each tenant's prefix.
    server.stop();
    let files = files_under(&dir.path().join("objects"));
    assert!(
        files.iter().any(|f| f.starts_with("alpha/traces/")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.starts_with("beta/traces/")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("alpha/") || f.starts_with("beta/")),
        "{files:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crafted_tenant_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], dir.path(), &[]);
    server.wait_ready().await;
    let url = server.otlp_url("/v1/traces");
    for evil in [
        "../etc",
        "..",
        "a/b",
        "%2e%2e",
        "UPPER",
        "x".repeat(65).as_str(),
    ] {
        let resp = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .header("x-scope-orgid", evil)
            .body(prost::Message::encode_to_vec(&trace_request(
                "evil",
                random_trace_id(),
                1,
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{evil}");
        let (s, body) = get_json(&server.url("/api/v1/services"), None).await;
        assert_eq!(s, 200, "{body}");
    }
    let resp = reqwest::Client::new()
        .get(server.url("/api/v1/services"))
        .header("x-scope-orgid", "../../etc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid tenant name")
    );

    // A legitimate org id lands under its own prefix.
    let resp = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("x-scope-orgid", "team-x")
        .body(prost::Message::encode_to_vec(&trace_request(
            "ok",
            random_trace_id(),
            1,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop();
    let files = files_under(&dir.path().join("objects"));
    assert!(!files.is_empty());
    assert!(files.iter().all(|f| f.starts_with("team-x/")), "{files:?}");
    assert!(!dir.path().join("etc").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_authenticates_before_reading_the_body() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let tokens = format!("{ALPHA}=alpha");
    let env = [
        ("LOUPE_AUTH_TOKENS", tokens.as_str()),
        ("LOUPE_MAX_REQUEST_BYTES", "64KiB"),
    ];
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.otlp_grpc.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    // Over the size limit and with a wrong token: the token is checked first.
    let mut big = trace_request("intruder", random_trace_id(), 1);
    big.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(crate::otlp::str_kv("pad", &"x".repeat(200 * 1024)));
    let mut req = tonic::Request::new(big.clone());
    req.metadata_mut()
        .insert("authorization", "Bearer wrong-token-xyz".parse().unwrap());
    let err = TraceServiceClient::new(channel.clone())
        .export(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    // With the right token the same request reaches the size check.
    let mut req = tonic::Request::new(big);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ALPHA}").parse().unwrap());
    let err = TraceServiceClient::new(channel)
        .export(req)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
}
