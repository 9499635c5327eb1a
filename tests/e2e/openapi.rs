//! The OpenAPI document is exact: `schemathesis` generates requests from it against a demo
//! server and finds no server error, no undocumented status code or content type, no response
//! outside its schema, and no schema-valid request rejected. TraceQL (`q`, the custom format
//! `traceql`) is generated valid by tests/python/schemathesis_hooks.py. Live tail, an endless
//! event stream, is left out.

use std::process::Command;

use crate::harness::{Server, eventually, get_json, workspace_root};

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_the_openapi_document_exact() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server", "--demo"], dir.path(), &[]);
    server.wait_ready().await;
    eventually(30, "demo traces", || async {
        let (_, b) = get_json(&server.url("/api/v1/traces?limit=1"), None).await;
        (b["traces"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let st = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        st.exists(),
        "schemathesis is missing: run tests/setup.sh first"
    );
    let out = Command::new(st)
        // Schemathesis keeps a cache in its working directory: keep it out of the repository.
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", workspace_root().join("tests/python"))
        .args(["run", &server.url("/api/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance",
        ])
        .args(["--max-examples", "60", "--seed", "20261123"])
        // An event stream never ends, so a request/response check cannot read it; its errors
        // are checked by live_tail.rs.
        .args(["--exclude-path", "/api/v1/logs/tail"])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.contains("generated"))
        .unwrap_or_default();
    eprintln!("schemathesis: {}", summary.trim());
}
