//! Log lines written by real programs, so the log figures also hold on text nobody here
//! generated: Debian's nginx serving `wrk` (its access log, combined format: clients, paths,
//! statuses, sizes, user agents) and PostgreSQL under `pgbench` (its statement log). Both are
//! started by the harness on loopback in a directory of their own and stopped after.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::loggen::Line;
use crate::server::{Running, free_port};

/// As `Line`s of `service`, one nanosecond-spaced timestamp each, ending now.
fn as_lines(service: &'static str, texts: Vec<String>) -> Vec<Line> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = texts.len() as u64;
    texts
        .into_iter()
        .enumerate()
        .map(|(i, text)| Line {
            service,
            pod: 0,
            time_unix_nano: now - (n - i as u64) * 1_000,
            text,
            needle: None,
        })
        .collect()
}

/// nginx's access log under `wrk` (varied paths, some missing), at most `max` lines.
pub fn nginx(dir: &Path, max: usize) -> anyhow::Result<Vec<Line>> {
    let dir = dir.join("nginx");
    std::fs::create_dir_all(dir.join("tmp"))?;
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 512; }}\n\
         http {{\n  access_log {d}/access.log combined;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  \
         fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location /missing {{ return 404; }}\n    \
         location / {{ default_type text/plain; return 200 \"ok $request_uri\\n\"; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let _nginx = Running(
        Command::new("nginx")
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context(
                "cannot start nginx (run tests/setup.sh, which installs Debian's nginx-light)",
            )?,
    );
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Varied paths and query strings, one in ten missing.
    let script = dir.join("paths.lua");
    std::fs::write(
        &script,
        "math.randomseed(7)\nrequest = function()\n  local n = math.random(1, 50000)\n  \
         if n % 10 == 0 then return wrk.format('GET', '/missing/' .. n) end\n  \
         return wrk.format('GET', '/api/items/' .. n .. '?page=' .. math.random(1, 40))\nend\n",
    )?;
    let out = Command::new("wrk")
        .args(["-t2", "-c16", "-d4s", "-s"])
        .arg(&script)
        .arg(format!("http://{addr}/"))
        .output()
        .context("cannot run wrk (run tests/setup.sh, which installs Debian's wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    drop(_nginx);
    let text = std::fs::read_to_string(dir.join("access.log"))?;
    let lines: Vec<String> = text.lines().take(max).map(str::to_string).collect();
    if lines.len() < 1000 {
        bail!("nginx logged only {} requests", lines.len());
    }
    Ok(as_lines("nginx", lines))
}

/// PostgreSQL's log with every statement under `pgbench`, at most `max` lines. The server
/// runs as `nobody` (PostgreSQL refuses root).
pub fn postgres(dir: &Path, max: usize) -> anyhow::Result<Vec<Line>> {
    // Debian installs each major version under /usr/lib/postgresql/<version>/bin.
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (run tests/setup.sh)")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let version = versions
        .last()
        .context("no PostgreSQL under /usr/lib/postgresql")?;
    let bin_dir = std::path::PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
    let bin = bin_dir.as_path();
    let dir = dir.join("postgres");
    let data = dir.join("data");
    std::fs::create_dir_all(&dir)?;
    let as_nobody = |cmd: &Path| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(cmd)
            .env("HOME", &dir);
        c
    };
    let status = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&dir)
        .status()?;
    if !status.success() {
        bail!("cannot hand {} to nobody", dir.display());
    }
    let out = as_nobody(&bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-sync"])
        .output()
        .context("cannot run initdb (run tests/setup.sh, which installs Debian's postgresql)")?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = free_port()?;
    let log = dir.join("postgres.log");
    let log_file = std::fs::File::create(&log)?;
    let status = Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(&log)
        .status()?;
    if !status.success() {
        bail!("cannot hand the log to nobody");
    }
    let _pg = Running(
        as_nobody(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "log_statement=all",
                "-c",
                "fsync=off",
            ])
            .args(["-c", "log_line_prefix=%m [%p] %q%u@%d "])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()?,
    );
    let pg_isready = bin.join("pg_isready");
    for _ in 0..100 {
        let ok = Command::new(&pg_isready)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pgbench = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(bin.join("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .output()?;
        if !out.status.success() {
            bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    pgbench(&["-i", "-s", "1", "-q"])?;
    pgbench(&["-c", "4", "-j", "2", "-T", "4"])?;
    drop(_pg);
    let text = std::fs::read_to_string(&log)?;
    let lines: Vec<String> = text.lines().take(max).map(str::to_string).collect();
    if lines.len() < 1000 {
        bail!("PostgreSQL logged only {} lines", lines.len());
    }
    Ok(as_lines("postgres", lines))
}
