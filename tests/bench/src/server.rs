//! The server under test: a separate `loupe server` process on loopback ports with its own
//! data dir, and what we read from it (CPU seconds and peak RSS from /proc, metrics).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Server {
    child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub otlp_http: SocketAddr,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc_sysconf(2) };
    if t > 0 { t as f64 } else { 100.0 }
}

unsafe extern "C" {
    #[link_name = "sysconf"]
    fn libc_sysconf(name: i32) -> i64;
}

impl Server {
    pub fn start(bin: &Path, data_dir: &Path, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .env("LOUPE_DATA_DIR", data_dir)
            .env("LOUPE_HTTP_ADDR", "127.0.0.1:0")
            .env("LOUPE_OTLP_GRPC_ADDR", "127.0.0.1:0")
            .env("LOUPE_OTLP_HTTP_ADDR", "127.0.0.1:0")
            .env("LOUPE_LOG_FORMAT", "json")
            .env("LOUPE_LOG", "warn,loupe::server=info")
            .env_remove("LOUPE_STORAGE_URL")
            .env_remove("LOUPE_AUTH_TOKENS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "listening"
                {
                    let _ = tx.send(v);
                }
            }
        });
        let v = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                bail!("the server did not start listening");
            }
        };
        let addr = |k: &str| -> anyhow::Result<SocketAddr> {
            v[k].as_str()
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no {k} address"))
        };
        Ok(Server {
            http: addr("http")?,
            grpc: addr("otlp_grpc")?,
            otlp_http: addr("otlp_http")?,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let (u, s) = cpu_split_of(self.pid());
        u + s
    }

    /// User and system CPU seconds of the process so far.
    pub fn cpu_split(&self) -> (f64, f64) {
        cpu_split_of(self.pid())
    }

    /// Peak resident set size in MiB (VmHWM).
    pub fn rss_peak_mib(&self) -> f64 {
        rss_peak_mib_of(self.pid())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn wait_ready(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("server not ready after 120 s")
    }

    /// A gauge or counter from `/metrics` (first sample with that name); an error when the
    /// server does not export it, so a renamed metric cannot pass for zero.
    pub async fn metric(&self, client: &reqwest::Client, name: &str) -> anyhow::Result<f64> {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the server exports no metric {name}"))
    }

    /// A labelled counter sample (`labels` as written: `op="get"`): 0 while the counter has
    /// no such sample yet; an error when the server does not declare the counter at all.
    pub async fn counter(
        &self,
        client: &reqwest::Client,
        family: &str,
        labels: &str,
    ) -> anyhow::Result<f64> {
        let text = client
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        if !text.contains(&format!("# TYPE {family} counter")) {
            bail!("the server exports no counter {family}");
        }
        Ok(sample(&text, family, labels).unwrap_or(0.0))
    }

    /// Waits until nothing is buffered (everything acknowledged is in committed files).
    pub async fn wait_flushed(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            if self.metric(client, "loupe_buffered_rows").await? == 0.0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("buffers never drained")
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sample of `name` with exactly `labels` (as written: `op="get"`; empty: no labels) in
/// Prometheus text.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// A peer or agent process, killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free right now (for a peer told its port on its command line).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// User and system CPU seconds process `pid` has used so far (from /proc).
pub fn cpu_split_of(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) / clock_ticks(), ticks(12) / clock_ticks())
}

/// Peak resident set size of process `pid` in MiB (VmHWM).
pub fn rss_peak_mib_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The `loupe` binary next to this one (same cargo profile), unless given.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("loupe")))
        .unwrap_or_else(|| PathBuf::from("target/release/loupe"))
}
