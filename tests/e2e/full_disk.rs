//! A full disk under the WAL: a small tmpfs mounted by the test (CI runs as root). Ingest
//! answers 503 / UNAVAILABLE (never a crash or a 500) and readiness says why, reads keep
//! working, ingest resumes once space returns, and nothing acknowledged is lost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::harness::{Server, env_refs, fixed_addrs, get_json};
use crate::load::{Load, Outcome, tally, verify_exactly_once};
use crate::otlp::{random_trace_id, trace_request};

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test needs root, as CI has): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the file system up to `leave` free bytes with a file; returns its path.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output()
            .unwrap();
        let avail: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output");
        let bytes = avail.saturating_sub(leave);
        std::fs::write(&filler, vec![0u8; bytes as usize]).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_wal_disk_refuses_ingest_keeps_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("wal"), "16m");
    let mut env = fixed_addrs();
    env.push(("LOUPE_FLUSH_INTERVAL", "200ms".to_string()));
    let env = env_refs(&env);
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    let otlp = format!("http://{}", server.otlp_http.unwrap());
    let first = Load::start(std::slice::from_ref(&otlp), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut sent = first.stop().await;
    let readable = sent
        .iter()
        .find(|s| s.outcome == Outcome::Acked)
        .unwrap()
        .clone();

    // The disk fills up under load.
    let filler = disk.fill(64 * 1024);
    let full = Load::start(std::slice::from_ref(&otlp), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = full.stop().await;
    let (acked, refused, not_sent, unknown) = tally(&during);
    eprintln!(
        "disk full: {acked} acked, {refused} refused, {not_sent} not sent, {unknown} unknown"
    );
    assert!(
        during
            .iter()
            .any(|s| s.outcome == Outcome::Refused(503, true)),
        "a full disk answers 503 with Retry-After"
    );
    assert_eq!((not_sent, unknown), (0, 0), "the server never crashed");
    sent.extend(during);
    let (status, why) = get_json(&server.url("/readyz"), None).await;
    assert_eq!(status, 503, "readiness tells the truth: {why}");
    assert!(why.to_string().contains("write-ahead log failing"), "{why}");
    let mut grpc = TraceServiceClient::connect(format!("http://{}", server.otlp_grpc.unwrap()))
        .await
        .unwrap();
    let err = grpc
        .export(trace_request("grpc", random_trace_id(), 2))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    // Reads keep working.
    let url = server.url(&format!(
        "/api/v1/traces/{}",
        hex::encode(readable.trace_id)
    ));
    let (status, body) = get_json(&url, None).await;
    assert_eq!(status, 200, "{body}");

    // Space returns: ingest resumes and readiness turns good without a restart.
    std::fs::remove_file(filler).unwrap();
    crate::harness::eventually(10, "ready again", || async {
        let (s, _) = get_json(&server.url("/readyz"), None).await;
        (s == 200).then_some(())
    })
    .await;
    let again = Load::start(std::slice::from_ref(&otlp), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = again.stop().await;
    assert!(tally(&again).0 > 0, "ingest resumed");
    sent.extend(again);

    server.kill9();
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    assert!(server.stop().success());
    let server = Server::start(&["server"], dir.path(), &env);
    server.wait_ready().await;
    verify_exactly_once(&server, &sent).await;
    drop(server);
    drop(disk);
}
