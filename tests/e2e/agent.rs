//! `loupe-agent` on a simulated node: three pods write numbered lines (CRI and Docker
//! json-file, stdout and stderr, 40 KB lines the runtime split into parts) through kubelet
//! rename rotations with compression of older files, and a copytruncate rotation. The agent
//! is SIGKILLed mid-way and files are rotated and compressed while it is down; then the
//! collector is stopped long enough for the agent's buffer to fill (reading pauses) and
//! started again. Every line must come back through the Loki API, byte for byte, under its
//! pod's labels, with stdout and stderr told apart.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{Server, env_refs, fixed_addrs, free_addr, get_json, stored_rows};

/// A running `loupe-agent`, killed when dropped.
pub struct Agent {
    child: Child,
    pub http: String,
    log: PathBuf,
}

pub fn agent_bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_loupe")).with_file_name("loupe-agent");
    assert!(
        p.exists(),
        "{} is missing: `cargo build --workspace --bins` first (make test does)",
        p.display()
    );
    p
}

impl Agent {
    pub fn start(env: &[(&str, String)], log: &Path) -> Agent {
        Agent::start_with(Command::new(agent_bin()), free_addr(), env, log)
    }

    /// Started inside network namespace `ns`, its endpoints on `http` (an address there).
    pub fn start_in_netns(ns: &str, http: String, env: &[(&str, String)], log: &Path) -> Agent {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(agent_bin());
        Agent::start_with(cmd, http, env, log)
    }

    fn start_with(mut cmd: Command, http: String, env: &[(&str, String)], log: &Path) -> Agent {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        cmd.env("LOUPE_AGENT_HTTP_ADDR", &http)
            .env("LOUPE_AGENT_LOG_FORMAT", "json")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Agent {
            child: cmd.spawn().expect("spawn loupe-agent"),
            http,
            log: log.to_path_buf(),
        }
    }

    pub async fn metric(&self, name: &str) -> Option<f64> {
        crate::harness::metric_at(&format!("http://{}/metrics", self.http), name, "").await
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- loupe-agent log ----\n{}", self.log_text());
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Cri,
    Docker,
}

/// One container writing lines, as its runtime would.
struct Writer {
    dir: PathBuf,
    name: &'static str,
    format: Format,
    next: u64,
    last_ns: u64,
    rotations: u32,
}

const PART: usize = 16 * 1024;

/// The trace id a line carries (web-1's every tenth line), as logfmt.
fn trace_of(name: &str, n: u64) -> Option<String> {
    (name == "web-1" && n % 10 == 5).then(|| format!("{:032x}", 0xabc0_0000 + n))
}

/// The record line `n` of `name` makes: most are one line; web-1's every 100th is a Java
/// stack trace the runtime writes as several lines and the agent joins.
fn line_text(name: &str, n: u64) -> String {
    let head = format!("{name} {n:06}");
    if name == "web-1" && n % 100 == 42 {
        return format!(
            "java.lang.IllegalStateException: {head} failed\n\tat com.shop.Cart.add(Cart.java:42)\n\tat com.shop.Api.handle(Api.java:7)\nCaused by: java.io.IOException: disk\n\t... 2 more"
        );
    }
    if let Some(t) = trace_of(name, n) {
        return format!("{head} level=info trace_id={t} msg=\"served\"");
    }
    if n % 500 == 499 {
        // Longer than the runtime's buffer: written in parts, joined by the agent.
        format!("{head} {}", "0123456789abcdefghij".repeat(2000))
    } else {
        format!("{head} lorem ipsum dolor sit amet, consectetur adipiscing elit")
    }
}

fn stream_of(name: &str, n: u64) -> &'static str {
    if name == "web-1" && n % 7 == 3 {
        "stderr"
    } else {
        "stdout"
    }
}

pub fn rfc3339(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let t = chrono::DateTime::from_timestamp(secs, (ns % 1_000_000_000) as u32).unwrap();
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

impl Writer {
    fn live(&self) -> PathBuf {
        self.dir.join("0.log")
    }

    fn write(&mut self, count: u64) {
        let mut out = Vec::new();
        for _ in 0..count {
            let n = self.next;
            self.next += 1;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            self.last_ns = now.max(self.last_ns + 1);
            let ts = rfc3339(self.last_ns);
            let record = line_text(self.name, n);
            let stream = stream_of(self.name, n);
            for text in record.split('\n') {
                let parts: Vec<&[u8]> = text.as_bytes().chunks(PART).collect();
                for (i, p) in parts.iter().enumerate() {
                    let last = i + 1 == parts.len();
                    let p = std::str::from_utf8(p).unwrap();
                    match self.format {
                        Format::Cri => {
                            let tag = if last { "F" } else { "P" };
                            writeln!(out, "{ts} {stream} {tag} {p}").unwrap();
                        }
                        Format::Docker => {
                            let log = if last {
                                format!("{p}\n")
                            } else {
                                p.to_string()
                            };
                            let rec = serde_json::json!({"log": log, "stream": stream, "time": ts});
                            writeln!(out, "{rec}").unwrap();
                        }
                    }
                }
            }
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap()
            .write_all(&out)
            .unwrap();
    }

    /// The kubelet's rotation: older rotated files compressed (the originals deleted), the
    /// live file renamed with a timestamp.
    fn rotate(&mut self) {
        for e in std::fs::read_dir(&self.dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("0.log.") && !name.ends_with(".gz") {
                let gz = self.dir.join(format!("{name}.gz"));
                let mut enc = flate2::write::GzEncoder::new(
                    std::fs::File::create(&gz).unwrap(),
                    flate2::Compression::fast(),
                );
                enc.write_all(&std::fs::read(&p).unwrap()).unwrap();
                enc.finish().unwrap();
                std::fs::remove_file(&p).unwrap();
            }
        }
        self.rotations += 1;
        let to = self
            .dir
            .join(format!("0.log.20261205-{:06}", self.rotations));
        if self.live().exists() {
            std::fs::rename(self.live(), to).unwrap();
        }
    }

    /// logrotate's copytruncate: the content copied to a new file, the live one emptied.
    fn copytruncate(&mut self) {
        self.rotations += 1;
        let to = self
            .dir
            .join(format!("0.log.20261205-{:06}", self.rotations));
        std::fs::copy(self.live(), to).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.live())
            .unwrap()
            .set_len(0)
            .unwrap();
    }
}

/// Every line of `{namespace, pod}` through the Loki API, oldest first, paged by time.
pub async fn loki_lines(
    server: &Server,
    ns: &str,
    pod: &str,
    from_ns: u64,
) -> Vec<(u64, String, BTreeMap<String, String>)> {
    let query = format!("{{k8s_namespace_name=\"{ns}\", k8s_pod_name=\"{pod}\"}}");
    let mut start = from_ns;
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        + 60_000_000_000;
    let mut out = Vec::new();
    loop {
        let url = format!(
            "{}?query={}&start={start}&end={end}&limit=5000&direction=forward",
            server.url("/loki/api/v1/query_range"),
            urlencode(&query)
        );
        let (status, body) = get_json(&url, None).await;
        assert_eq!(status, 200, "{body}");
        let mut page = Vec::new();
        for s in body["data"]["result"].as_array().unwrap() {
            let labels: BTreeMap<String, String> = s["stream"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            for v in s["values"].as_array().unwrap() {
                let t: u64 = v[0].as_str().unwrap().parse().unwrap();
                page.push((t, v[1].as_str().unwrap().to_string(), labels.clone()));
            }
        }
        page.sort_by_key(|p| p.0);
        let Some(last) = page.last().map(|p| p.0) else {
            return out;
        };
        let full = page.len() >= 5000;
        out.extend(page);
        if !full {
            return out;
        }
        start = last + 1;
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_loses_no_line_through_rotations_kill_and_collector_outage() {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let specs = [
        ("shop", "web-1", "u1", "app", Format::Cri),
        ("shop", "db-0", "u2", "postgres", Format::Docker),
        ("ops", "cron-7", "u3", "job", Format::Cri),
    ];
    let mut writers: Vec<Writer> = specs
        .iter()
        .map(|(ns, pod, uid, c, f)| {
            let d = pods.join(format!("{ns}_{pod}_{uid}")).join(c);
            std::fs::create_dir_all(&d).unwrap();
            Writer {
                dir: d,
                name: pod,
                format: *f,
                next: 0,
                last_ns: 0,
                rotations: 0,
            }
        })
        .collect();
    let started_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        - 1_000_000_000;

    let addrs = fixed_addrs();
    let server_env = env_refs(&addrs);
    let server_dir = dir.path().join("loupe");
    let server = Server::start(&["server"], &server_dir, &server_env);
    server.wait_ready().await;
    let agent_env = vec![
        (
            "LOUPE_AGENT_ENDPOINT",
            format!("http://{}", server.otlp_http.unwrap()),
        ),
        ("LOUPE_AGENT_PODS_DIR", pods.display().to_string()),
        (
            "LOUPE_AGENT_DATA_DIR",
            dir.path().join("agent").display().to_string(),
        ),
        ("LOUPE_AGENT_NODE_NAME", "node-a".into()),
        ("LOUPE_AGENT_BUFFER_BYTES", "1MiB".into()),
        ("LOUPE_AGENT_BATCH_INTERVAL", "200ms".into()),
        ("LOUPE_AGENT_SCAN_INTERVAL", "200ms".into()),
        ("LOUPE_AGENT_ROTATE_WAIT", "1s".into()),
        ("LOUPE_AGENT_MAX_BACKOFF", "500ms".into()),
    ];
    let agent_log = dir.path().join("agent.log");
    let mut agent = Some(Agent::start(&agent_env, &agent_log));

    // The writer: ~1,500 lines a second over three containers, each rotated every 1,500 of
    // its lines; the cron job's file is copied and truncated once instead.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut copytruncated = false;
            while !stop.load(Ordering::Relaxed) {
                for w in writers.iter_mut() {
                    w.write(5);
                    if w.next % 1500 == 0 {
                        if w.name == "cron-7" && !copytruncated {
                            w.copytruncate();
                            copytruncated = true;
                        } else {
                            w.rotate();
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            writers
                .iter()
                .map(|w| (w.name, w.next, w.rotations))
                .collect::<Vec<_>>()
        })
    };
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    tokio::time::sleep_until(at(6).into()).await;
    agent.take().unwrap().kill9();
    // Down for 5 s: two rotations per container happen, the older compressed.
    tokio::time::sleep_until(at(11).into()).await;
    let agent = Agent::start(&agent_env, &agent_log);
    tokio::time::sleep_until(at(15).into()).await;
    assert_eq!(server.stop().code(), Some(0));
    // The collector is away for 8 s: the agent's 1 MiB buffer fills and reading pauses.
    let mut paused = false;
    while Instant::now() < at(23) {
        paused |= agent.metric("loupe_agent_reading_paused").await == Some(1.0);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(paused, "the buffer never filled: reading never paused");
    let server = Server::start(&["server"], &server_dir, &server_env);
    server.wait_ready().await;
    tokio::time::sleep_until(at(28).into()).await;
    stop.store(true, Ordering::Relaxed);
    let totals = writer.join().unwrap();

    // Everything arrives.
    let expected: u64 = totals.iter().map(|t| t.1).sum();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let stored = stored_rows(&server, "logs").await;
        let pending = agent.metric("loupe_agent_buffer_pending_records").await;
        // Past the deadline the checks below say which lines are missing.
        if stored >= expected && pending == Some(0.0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(agent.metric("loupe_agent_dropped_total").await, Some(0.0));

    // On a failure below: what the agent says of itself.
    let agent_metrics = reqwest::get(format!("http://{}/metrics", agent.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let agent_metrics: String = agent_metrics
        .lines()
        .filter(|l| l.starts_with("loupe_agent") && !l.contains("lag"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut total_rows = 0;
    for ((ns, pod, uid, container, format), (name, count, rotations)) in specs.iter().zip(&totals) {
        assert_eq!(pod, name);
        assert!(*rotations >= 3, "{pod}: only {rotations} rotations");
        let lines = loki_lines(&server, ns, pod, started_ns).await;
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for (_, text, labels) in &lines {
            let n: u64 = text
                .split([' ', '\n'])
                .skip_while(|w| w != pod)
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{pod}: a line not written by the test: {:.200}", text));
            assert_eq!(text, &line_text(pod, n), "{pod}: line {n} not byte-exact");
            *seen.entry(n).or_default() += 1;
            for (k, v) in [
                ("k8s_namespace_name", *ns),
                ("k8s_pod_name", *pod),
                ("k8s_pod_uid", *uid),
                ("k8s_container_name", *container),
                ("k8s_node_name", "node-a"),
                ("log_iostream", stream_of(pod, n)),
            ] {
                assert_eq!(
                    labels.get(k).map(String::as_str),
                    Some(v),
                    "{pod} line {n}: {k} in {labels:?}"
                );
            }
        }
        let missing: Vec<u64> = (0..*count).filter(|n| !seen.contains_key(n)).collect();
        assert!(
            missing.is_empty(),
            "{pod} ({format:?}): {} of {count} lines missing, first {:?}\nagent metrics:\n{agent_metrics}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
        total_rows += lines.len();
    }
    // Trace context lifted from the lines: a trace id finds its line.
    for n in [5u64, 1005, 2005] {
        let t = trace_of("web-1", n).unwrap();
        let (status, body) = get_json(
            &server.url(&format!(
                "/api/v1/logs?query=trace_id%3A{t}&start={}",
                started_ns / 1_000_000
            )),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let lines = body["logs"].as_array().unwrap();
        assert_eq!(lines.len(), 1, "trace {t}: {body}");
        assert_eq!(lines[0]["body"], line_text("web-1", n), "{body}");
    }
    // Duplicates: the API answers each distinct line once; the stored rows count copies.
    let stored = stored_rows(&server, "logs").await;
    assert!(
        stored >= expected,
        "{stored} rows stored for {expected} lines"
    );
    assert!(
        (stored - expected) as f64 <= expected as f64 * 0.001,
        "{} of {expected} lines stored twice (more than 0.1%)",
        stored - expected
    );
    // The API answers a line sent twice once when both copies are alike; copies that differ
    // in anything count here, within the same 0.1%.
    let shown = total_rows as u64;
    assert!(
        shown >= expected && (shown - expected) as f64 <= expected as f64 * 0.001,
        "{shown} lines shown for {expected} written"
    );
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Cri => "CRI",
            Format::Docker => "Docker json-file",
        })
    }
}
