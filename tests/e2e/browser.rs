//! The web UI in headless Chromium against a demo server: search → open a trace → the
//! waterfall shows its spans → span search highlights; recent traces on arrival; a TraceQL
//! query from the query box; a pasted trace id opens it. The log explorer: a JSON and a
//! logfmt line (context only in their text) → expand → their trace → the Logs tab shows them;
//! autocomplete, filters, context and live tail. Saves screenshots under target/.

use std::process::Command;

use crate::harness::{Server, eventually, get_json, workspace_root};

/// The browser checks' folder (with playwright-core installed) and a ready demo server.
async fn demo() -> (std::path::PathBuf, tempfile::TempDir, Server) {
    let browser_dir = workspace_root().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `tests/setup.sh` (or `make test`) first"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server", "--demo"], dir.path(), &[]);
    server.wait_ready().await;
    (browser_dir, dir, server)
}

/// Runs `script` against `server` with `env`, its screenshot saved as `shot` under
/// `target/screenshots`; fails the test when a check fails or when `shot` or one of
/// `also_saved` is not a PNG there.
fn run_browser(
    browser_dir: &std::path::Path,
    script: &str,
    server: &Server,
    env: &[(&str, &str)],
    shot: &str,
    also_saved: &[&str],
) {
    let shots = workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(browser_dir.join(script))
        .env("LOUPE_URL", format!("http://{}", server.http))
        .envs(env.iter().copied())
        .env("LOUPE_SCREENSHOT", shots.join(shot))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    for name in std::iter::once(&shot).chain(also_saved) {
        let png = std::fs::read(shots.join(name)).expect("screenshot saved");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
    eprintln!("browser: {stdout}screenshots: {}", shots.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn ui_search_and_trace_view_in_chromium() {
    let (browser_dir, _dir, server) = demo().await;
    eventually(30, "demo traces", || async {
        let (_, b) = get_json(&server.url("/api/v1/traces?service=checkout&limit=1"), None).await;
        (b["traces"].as_array()?.len() == 1).then_some(())
    })
    .await;
    run_browser(
        &browser_dir,
        "trace_view.mjs",
        &server,
        &[("LOUPE_SERVICE", "checkout"), ("LOUPE_MIN_SPANS", "3")],
        "trace_view.png",
        &["trace_view-traceql.png"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_explorer_leads_to_the_trace_and_its_logs_tab_in_chromium() {
    let (browser_dir, _dir, server) = demo().await;
    // cart logs JSON lines, inventory logfmt lines, both with a traceparent in the text.
    for service in ["cart", "inventory"] {
        eventually(30, "demo log lines", || async {
            let (_, b) = get_json(
                &server.url(&format!("/api/v1/logs?limit=1&query=service%3A{service}")),
                None,
            )
            .await;
            (b["logs"].as_array()?.len() == 1).then_some(())
        })
        .await;
    }
    run_browser(
        &browser_dir,
        "log_explorer.mjs",
        &server,
        &[("LOUPE_SERVICES", "cart,inventory")],
        "log_explorer.png",
        &["log_explorer-cart.png", "log_explorer-inventory.png"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_explorer_charts_the_demo_services_in_chromium() {
    let (browser_dir, _dir, server) = demo().await;
    let q = "/prometheus/api/v1/query?query=count(http_server_request_duration_seconds_count)";
    eventually(30, "demo metrics", || async {
        let (_, b) = get_json(&server.url(q), None).await;
        let n: f64 = b["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n > 0.0).then_some(())
    })
    .await;
    run_browser(
        &browser_dir,
        "metrics_explorer.mjs",
        &server,
        &[],
        "metrics_explorer.png",
        &[],
    );
}
