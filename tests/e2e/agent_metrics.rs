//! The agent's host metrics through the Prometheus API: named as OpenTelemetry's
//! host-metrics conventions say (then as the collector translates them), with values that
//! agree with this host — memory states adding up to `MemTotal`, each CPU's time growing
//! at one second per second.

use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::harness::{Server, instant};

async fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["server"], &dir.path().join("loupe"), &[]);
    server.wait_ready().await;
    std::fs::create_dir_all(dir.path().join("pods")).unwrap();
    (dir, server)
}

/// An agent shipping to `server` with an empty pods directory, and `extra` settings.
fn agent(dir: &tempfile::TempDir, server: &Server, extra: &[(&'static str, String)]) -> Agent {
    let mut env = vec![
        (
            "LOUPE_AGENT_ENDPOINT",
            format!("http://{}", server.otlp_http.unwrap()),
        ),
        (
            "LOUPE_AGENT_PODS_DIR",
            dir.path().join("pods").display().to_string(),
        ),
        (
            "LOUPE_AGENT_DATA_DIR",
            dir.path().join("agent").display().to_string(),
        ),
    ];
    env.extend_from_slice(extra);
    Agent::start(&env, &dir.path().join("agent.log"))
}

fn value(v: &serde_json::Value) -> f64 {
    v["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn host_metrics_reach_the_prometheus_api_with_this_hosts_values() {
    let (dir, server) = server().await;
    let _agent = agent(
        &dir,
        &server,
        &[
            ("LOUPE_AGENT_NODE_NAME", "node-m".into()),
            ("LOUPE_AGENT_HOST_METRICS_INTERVAL", "1s".into()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let rates = loop {
        // Ten seconds of one-second collections first.
        let n = instant(&server, "count_over_time(system_cpu_load_average_1m[10s])").await;
        if n.first().is_some_and(|s| value(s) >= 9.0) {
            break instant(
                &server,
                "sum by (cpu) (rate(system_cpu_time_seconds_total{job=\"host-metrics\"}[10s]))",
            )
            .await;
        }
        assert!(
            Instant::now() < deadline,
            "no ten seconds of host metrics: {n:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let cpus = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    assert_eq!(rates.len(), cpus, "a series per CPU: {rates:?}");
    for r in &rates {
        let v = value(r);
        assert!(
            (0.8..1.2).contains(&v),
            "each CPU's time grows one second per second: {r}"
        );
    }
    let mem = instant(
        &server,
        "system_memory_usage_bytes{job=\"host-metrics\", instance=\"node-m\"}",
    )
    .await;
    assert_eq!(mem.len(), 4, "{mem:?}");
    let total_kb: f64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let sum: f64 = mem.iter().map(value).sum();
    assert!(
        (sum - total_kb * 1024.0).abs() < 1.0,
        "states add up to MemTotal: {sum} vs {}",
        total_kb * 1024.0
    );
    for q in [
        "system_cpu_load_average_1m",
        "system_disk_io_bytes_total",
        "system_filesystem_usage_bytes{mountpoint=\"/\"}",
        "system_network_io_bytes_total{device=\"lo\", direction=\"receive\"}",
    ] {
        assert!(!instant(&server, q).await.is_empty(), "{q}");
    }
}

/// Debian's node exporter on a free port, stopped when dropped.
pub struct NodeExporter(std::process::Child);

impl NodeExporter {
    pub fn start(addr: &str) -> NodeExporter {
        NodeExporter(
            std::process::Command::new("/usr/bin/prometheus-node-exporter")
                .arg(format!("--web.listen-address={addr}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("prometheus-node-exporter (tests/setup.sh installs it)"),
        )
    }
}

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_exporter_is_scraped_into_the_prometheus_api_unchanged() {
    let addr = crate::harness::free_addr();
    let _exporter = NodeExporter::start(&addr);
    let (dir, server) = server().await;
    let _agent = agent(
        &dir,
        &server,
        &[
            ("LOUPE_AGENT_HOST_METRICS_INTERVAL", "0s".into()),
            (
                "LOUPE_AGENT_SCRAPE_TARGETS",
                format!("node=http://{addr}/metrics"),
            ),
            ("LOUPE_AGENT_SCRAPE_INTERVAL", "1s".into()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = instant(&server, "up{job=\"node\"}").await;
        if up.first().is_some_and(|s| value(s) == 1.0) {
            assert_eq!(up[0]["metric"]["instance"], addr.as_str());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node exporter never came up: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The exporter's own answer, to compare with.
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mem_total: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("node_memory_MemTotal_bytes "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cpu_series = text
        .lines()
        .filter(|l| l.starts_with("node_cpu_seconds_total{"))
        .count();
    let mem = instant(&server, "node_memory_MemTotal_bytes{job=\"node\"}").await;
    assert_eq!(mem.len(), 1, "{mem:?}");
    assert_eq!(value(&mem[0]), mem_total);
    let cpu = instant(&server, "node_cpu_seconds_total{job=\"node\"}").await;
    assert_eq!(cpu.len(), cpu_series, "every CPU series under its own name");
    assert!(cpu[0]["metric"]["mode"].is_string() && cpu[0]["metric"]["cpu"].is_string());
    // Gauges too.
    assert!(
        !instant(
            &server,
            "node_scrape_collector_duration_seconds{job=\"node\"}"
        )
        .await
        .is_empty()
    );
}
