//! Starting real `loupe` processes on ephemeral loopback ports with temporary data dirs,
//! and small HTTP helpers. A `Server` is killed when dropped; its log is printed on failure.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the test virtualenv (created by `tests/setup.sh`).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LOUPE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `tests/setup.sh` (or `make test`) first",
        p.display()
    );
    p
}

impl Server {
    /// Starts `loupe <args>` with `env` on `data_dir`, waiting until it listens.
    pub fn start(args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_loupe"));
        cmd.args(args)
            .env("LOUPE_DATA_DIR", data_dir)
            .env("LOUPE_HTTP_ADDR", "127.0.0.1:0")
            .env("LOUPE_OTLP_GRPC_ADDR", "127.0.0.1:0")
            .env("LOUPE_OTLP_HTTP_ADDR", "127.0.0.1:0")
            .env("LOUPE_LOG_FORMAT", "json")
            .env("LOUPE_FLUSH_INTERVAL", "500ms")
            .env_remove("LOUPE_STORAGE_URL")
            .env_remove("LOUPE_AUTH_TOKENS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn loupe");
        let stdout = child.stdout.take().expect("stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v["message"] == "listening"
                    {
                        let _ = tx.send(v);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let Ok(v) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "loupe did not start listening:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        let addr = |k: &str| v[k].as_str().and_then(|s| s.parse().ok());
        Server {
            child,
            http: addr("http").expect("http address"),
            otlp_grpc: addr("otlp_grpc"),
            otlp_http: addr("otlp_http"),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn otlp_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.otlp_http.expect("collector role"))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(self.url("/readyz")).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server never became ready:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL: no flush, no clean shutdown.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- loupe log ----\n{}", self.log_text());
        }
    }
}

/// A loopback address with a port free right now (for servers restarted on the same port).
/// The port is drawn below Linux's ephemeral range (32768 and up): a port the kernel handed
/// out for `:0` could be handed out again, to another test's server or to an outgoing
/// connection, before this server binds it; one drawn here is taken only by a bind like this.
///
/// Between this probe and the server's bind the port is free, so two draws (in this test, or
/// in another test process: nextest runs each test in its own) could return the same port.
/// Each port handed out is therefore also reserved by an exclusive lock on a file named for
/// it, held until this test process exits; a draw skips ports whose lock another holds.
pub fn free_addr() -> String {
    use rand::Rng;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let locks = std::env::temp_dir().join("loupe-test-ports");
    let _ = std::fs::create_dir_all(&locks);
    let mut rng = rand::rng();
    loop {
        let port: u16 = rng.random_range(20_000..32_000);
        // Without a writable lock directory (another user's), ports go unreserved.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locks.join(port.to_string()))
            .ok();
        // A lock this process already holds is refused too: `flock` locks belong to the
        // open file, and this is a new one.
        if lock
            .as_ref()
            .is_some_and(|l| matches!(l.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
        {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            HELD.lock().unwrap().extend(lock);
            return l.local_addr().expect("addr").to_string();
        }
    }
}

/// Fixed addresses for a server that is restarted: clients keep their URLs.
pub fn fixed_addrs() -> Vec<(&'static str, String)> {
    vec![
        ("LOUPE_HTTP_ADDR", free_addr()),
        ("LOUPE_OTLP_GRPC_ADDR", free_addr()),
        ("LOUPE_OTLP_HTTP_ADDR", free_addr()),
    ]
}

/// `(k, v)` pairs as the `&str` pairs `Server::start` takes.
pub fn env_refs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A numeric sample from `/metrics` (the first line of `name` whose labels contain `labels`).
pub async fn metric(server: &Server, name: &str, labels: &str) -> Option<f64> {
    metric_at(&server.url("/metrics"), name, labels).await
}

/// The same, from the Prometheus text at `url` (another process's `/metrics`).
pub async fn metric_at(url: &str, name: &str, labels: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Rows the catalog holds for a signal (counts every stored row; the APIs de-duplicate).
pub async fn stored_rows(server: &Server, signal: &str) -> u64 {
    let (status, body) = get_json(&server.url("/api/v1/stats"), None).await;
    assert_eq!(status, 200, "{body}");
    body["signals"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["signal"] == signal))
        .and_then(|s| s["rows"].as_u64())
        .unwrap_or_else(|| panic!("no {signal} in {body}"))
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The result of an instant PromQL query through the Prometheus API (status 200 required).
pub async fn instant(server: &Server, q: &str) -> Vec<serde_json::Value> {
    let url = format!(
        "{}?query={}",
        server.url("/prometheus/api/v1/query"),
        url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    );
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{q}: {body}");
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub async fn get_json(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

/// A server-sent-events stream being read: its events `(event, data)` as they come.
pub struct EventStream {
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
}

impl EventStream {
    /// Opens `url`; fails the test unless it answers 200 with `text/event-stream`.
    pub async fn open(url: &str) -> EventStream {
        use futures::StreamExt;
        let resp = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .expect("open event stream");
        assert_eq!(resp.status(), 200, "{url}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut body = resp.bytes_stream();
        tokio::spawn(async move {
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let (mut event, mut data) = (String::from("message"), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if !data.is_empty() && tx.send((event, data)).is_err() {
                        return;
                    }
                }
            }
        });
        EventStream { rx }
    }

    /// The next event, waiting at most `secs`.
    pub async fn next(&mut self, secs: u64) -> Option<(String, serde_json::Value)> {
        let (event, data) = tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .ok()??;
        Some((
            event,
            serde_json::from_str(&data).expect("event data is JSON"),
        ))
    }
}

/// Posts one OTLP/JSON log export of `lines` from `service`; fails the test unless acked.
pub async fn post_log_lines(otlp_url: &str, service: &str, lines: &[&str]) {
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::json!({"body": {"stringValue": l}}))
        .collect();
    let export = serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"logRecords": records}]}]});
    let resp = reqwest::Client::new()
        .post(otlp_url)
        .header("content-type", "application/json")
        .body(export.to_string())
        .send()
        .await
        .expect("post logs");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}
