//! The agent's buffer on a small tmpfs that fills up while the collector is away: reading
//! pauses (readiness says why), nothing is dropped, and once the collector is back the
//! shipped segments are deleted, space returns, reading resumes and every line arrives.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::agent::{Agent, loki_lines, rfc3339};
use crate::full_disk::Tmpfs;
use crate::harness::{Server, env_refs, fixed_addrs, stored_rows};

const LINES: u64 = 100_000;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_buffer_disk_pauses_reading_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("agent"), "12m");
    let pods = dir.path().join("pods");
    let container = pods.join("shop_web-1_u1").join("app");
    std::fs::create_dir_all(&container).unwrap();
    let start_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // 100,000 lines (about 25 MB encoded): more than the disk holds.
    let mut text = String::new();
    for n in 0..LINES {
        let ts = rfc3339(start_ns + n * 1000);
        text += &format!(
            "{ts} stdout F web-1 {n:06} GET /api/cart/{n} 200 in {} ms user=u{} agent=\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\"\n",
            n % 97,
            n % 1000
        );
    }
    std::fs::File::create(container.join("0.log"))
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();

    // The collector is not there yet: its addresses are fixed, the agent ships to them.
    let addrs = fixed_addrs();
    let otlp = addrs
        .iter()
        .find(|(k, _)| *k == "LOUPE_OTLP_HTTP_ADDR")
        .unwrap()
        .1
        .clone();
    let agent_env = vec![
        ("LOUPE_AGENT_ENDPOINT", format!("http://{otlp}")),
        ("LOUPE_AGENT_PODS_DIR", pods.display().to_string()),
        (
            "LOUPE_AGENT_DATA_DIR",
            dir.path().join("agent/data").display().to_string(),
        ),
        ("LOUPE_AGENT_BUFFER_BYTES", "256MiB".into()),
        ("LOUPE_AGENT_MAX_BACKOFF", "500ms".into()),
    ];
    let agent = Agent::start(&agent_env, &dir.path().join("agent.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let reason = loop {
        let r = reqwest::get(format!("http://{}/readyz", agent.http)).await;
        if let Ok(r) = r
            && r.status() == 503
        {
            break r.text().await.unwrap();
        }
        if Instant::now() > deadline {
            panic!(
                "the buffer's disk never filled: {:?} lines read, {:?} bytes buffered",
                agent.metric("loupe_agent_lines_read_total").await,
                agent.metric("loupe_agent_buffer_bytes").await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains("buffer cannot be written"), "{reason}");
    assert_eq!(agent.metric("loupe_agent_reading_paused").await, Some(1.0));
    let read_while_full = agent
        .metric("loupe_agent_lines_read_total")
        .await
        .unwrap_or(0.0);
    assert!(
        read_while_full < LINES as f64,
        "reading paused before the end"
    );

    let server = Server::start(&["server"], &dir.path().join("loupe"), &env_refs(&addrs));
    server.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while stored_rows(&server, "logs").await < LINES {
        assert!(
            Instant::now() < deadline,
            "lines still missing after the disk freed up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = reqwest::get(format!("http://{}/readyz", agent.http))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "space returned: the buffer is writable again"
    );
    assert_eq!(agent.metric("loupe_agent_dropped_total").await, Some(0.0));
    let lines = loki_lines(&server, "shop", "web-1", start_ns - 1).await;
    let mut seen = vec![false; LINES as usize];
    for (_, text, _) in &lines {
        let n: usize = text.split(' ').nth(1).unwrap().parse().unwrap();
        seen[n] = true;
    }
    let missing = seen.iter().filter(|s| !**s).count();
    assert_eq!(missing, 0, "{missing} lines missing");
    let stored = stored_rows(&server, "logs").await;
    assert!(
        stored - LINES <= LINES / 1000,
        "{} stored twice",
        stored - LINES
    );
    drop(disk);
}
