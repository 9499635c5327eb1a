//! The agent and the collector as two hosts: the agent runs in a network namespace made by
//! the test, joined to this one by a veth pair. Under load the link is cut for 30 s (`ip link
//! set … down`) and restored; then the TCP proxy between them (this kernel has no `netem`)
//! stalls connections and resets them in the middle of requests. No line may be lost.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::agent::{Agent, loki_lines, rfc3339};
use crate::harness::{Server, free_addr, stored_rows};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root, as CI has)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to this one by a veth pair; removed when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 250 + 1;
        let n = Netns {
            name: format!("loupe-agent-{id}"),
            host_if: format!("lah{id}"),
            host_ip: format!("10.77.{id}.1"),
            ns_ip: format!("10.77.{id}.2"),
        };
        let _ = Command::new("ip").args(["netns", "del", &n.name]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &n.host_if])
            .output();
        let peer = format!("lan{id}");
        ip(&["netns", "add", &n.name]);
        ip(&[
            "link", "add", &n.host_if, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &n.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", n.host_ip),
            "dev",
            &n.host_if,
        ]);
        ip(&["link", "set", &n.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &n.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/24", n.ns_ip), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        n
    }

    fn link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// A TCP proxy that passes connections through, or, while `bad` is set, stalls half of
/// them for 5 s and resets the others after passing up to 4 KiB of the request (so the
/// collector never gets a whole request, and answers none).
async fn proxy(listener: TcpListener, upstream: String, bad: Arc<AtomicBool>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        let (upstream, bad) = (upstream.clone(), bad.load(Ordering::Relaxed));
        tokio::spawn(async move {
            if !bad {
                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                return;
            }
            let (stall, cut) = {
                let mut rng = rand::rng();
                (rng.random_bool(0.5), rng.random_range(0..4096usize))
            };
            if stall {
                tokio::time::sleep(Duration::from_secs(5)).await;
            } else if let Ok(mut server) = TcpStream::connect(&upstream).await {
                let mut buf = vec![0u8; cut.max(1)];
                if let Ok(n) = client.read(&mut buf).await {
                    let _ = tokio::io::AsyncWriteExt::write_all(&mut server, &buf[..n]).await;
                }
            }
            // Reset, not a clean close.
            let _ = client.set_zero_linger();
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_loses_no_line_over_a_cut_link_and_a_failing_proxy() {
    let net = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], &dir.path().join("loupe"), &[]);
    server.wait_ready().await;
    let bad = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind(format!("{}:0", net.host_ip))
        .await
        .unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    tokio::spawn(proxy(
        listener,
        server.otlp_http.unwrap().to_string(),
        bad.clone(),
    ));

    let pods = dir.path().join("pods");
    let container = pods.join("net_web-1_u1").join("app");
    std::fs::create_dir_all(&container).unwrap();
    let agent_http = format!("{}:{}", net.ns_ip, free_addr().rsplit(':').next().unwrap());
    let env = vec![
        ("LOUPE_AGENT_ENDPOINT", format!("http://{proxy_addr}")),
        ("LOUPE_AGENT_PODS_DIR", pods.display().to_string()),
        (
            "LOUPE_AGENT_DATA_DIR",
            dir.path().join("agent").display().to_string(),
        ),
        ("LOUPE_AGENT_MAX_BACKOFF", "1s".into()),
        ("LOUPE_AGENT_REQUEST_TIMEOUT", "3s".into()),
    ];
    let agent = Agent::start_in_netns(&net.name, agent_http, &env, &dir.path().join("agent.log"));

    // 300 lines a second for the whole test.
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), container.join("0.log"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut text = String::new();
                for _ in 0..3 {
                    let ts = rfc3339(start_ns + n * 1000);
                    text += &format!("{ts} stdout F web-1 {n:06} GET /api/items/{n} 200\n");
                    n += 1;
                }
                f.write_all(text.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    tokio::time::sleep_until(at(5).into()).await;
    net.link(false);
    tokio::time::sleep_until(at(35).into()).await;
    net.link(true);
    tokio::time::sleep_until(at(40).into()).await;
    bad.store(true, Ordering::Relaxed);
    tokio::time::sleep_until(at(50).into()).await;
    bad.store(false, Ordering::Relaxed);
    tokio::time::sleep_until(at(53).into()).await;
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().unwrap();
    // ~300 lines a second when the writer keeps its pace; a slow machine writes fewer, and
    // the checks below hold for whatever was written.
    assert!(total > 3_000, "{total} lines written");

    let deadline = Instant::now() + Duration::from_secs(90);
    while stored_rows(&server, "logs").await < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let retries = agent
        .metric("loupe_agent_retries_total")
        .await
        .unwrap_or(0.0);
    assert!(retries > 0.0, "the link cut and the proxy caused no retry");
    let lines = loki_lines(&server, "net", "web-1", start_ns - 1).await;
    let mut seen = vec![false; total as usize];
    for (_, text, _) in &lines {
        let n: usize = text.split(' ').nth(1).unwrap().parse().unwrap();
        seen[n] = true;
    }
    let missing: Vec<usize> = (0..total as usize).filter(|n| !seen[*n]).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} lines missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let stored = stored_rows(&server, "logs").await;
    assert!(
        stored - total <= total / 1000,
        "{} of {total} lines stored twice",
        stored - total
    );
    drop(agent);
}
