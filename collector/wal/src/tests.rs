//! WAL tests: durability across reopen, torn tails, trimming, back-pressure, in-order
//! hand-over, healing after failed writes, streaming recovery.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::AtomicU64;

use super::*;

fn tenant() -> TenantId {
    TenantId::new("t").unwrap()
}

fn collect(rec: &Recovery) -> Vec<Record> {
    rec.records().map(|r| r.unwrap()).collect()
}

async fn append(wal: &Wal, payload: impl Into<Bytes>) -> Result<u64, WalError> {
    wal.append(&tenant(), Signal::Traces, payload.into(), None)
        .await
}

#[tokio::test]
async fn appended_records_are_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, rec) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert!(rec.is_empty());
    let mut seqs = Vec::new();
    for i in 0..50u8 {
        seqs.push(append(&wal, vec![i; 100]).await.unwrap());
    }
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    drop(wal);
    let (wal, rec) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert_eq!(rec.len(), 50);
    assert_eq!((rec.first_seq(), rec.end_seq()), (Some(1), 51));
    let recs = collect(&rec);
    assert_eq!(recs.len(), 50);
    assert!(
        recs.iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1 && r.payload[0] == i as u8)
    );
    // Reading again gives the same records (a retried replay).
    assert_eq!(collect(&rec), recs);
    // New appends continue the sequence in a new segment.
    assert_eq!(append(&wal, "x").await.unwrap(), 51);
}

#[tokio::test]
async fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let wal = wal.clone();
            tokio::spawn(async move { append(&wal, format!("r{i}")).await })
        })
        .collect();
    let mut seqs: Vec<u64> = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn hand_over_runs_in_sequence_order_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let handed: Arc<Mutex<Vec<u64>>> = Arc::default();
    let tasks: Vec<_> = (0..300)
        .map(|i| {
            let (wal, handed) = (wal.clone(), handed.clone());
            tokio::spawn(async move {
                let h = handed.clone();
                let cb: OnDurable = Box::new(move |seq| h.lock().unwrap().push(seq));
                let seq = wal
                    .append(
                        &tenant(),
                        Signal::Traces,
                        Bytes::from(format!("{i}")),
                        Some(cb),
                    )
                    .await
                    .unwrap();
                // When the append is answered, its record was handed over and the bound
                // covers it.
                assert!(handed.lock().unwrap().contains(&seq));
                assert!(wal.durable_below() > seq);
                seq
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let handed = handed.lock().unwrap().clone();
    assert_eq!(
        handed,
        (1..=300).collect::<Vec<_>>(),
        "exactly the log's order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_hand_over_stays_at_or_above_the_bound() {
    // While record 2's hand-over runs (and has not finished), the bound must not pass it: a
    // trim computed now may not delete its segment.
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    append(&wal, "one").await.unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let cb: OnDurable = Box::new(move |_| {
        entered_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    });
    let w = wal.clone();
    let pending = tokio::spawn(async move {
        w.append(&tenant(), Signal::Traces, Bytes::from("two"), Some(cb))
            .await
    });
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(
        wal.durable_below(),
        2,
        "record 2 is synced but not handed over"
    );
    release_tx.send(()).unwrap();
    assert_eq!(pending.await.unwrap().unwrap(), 2);
    assert_eq!(wal.durable_below(), 3);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_later_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
        for _ in 0..3 {
            append(&wal, "payload").await.unwrap();
        }
    }
    // Simulate a crash mid-write: half a record at the end of the segment.
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let (wal, rec) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert_eq!(rec.len(), 3);
    append(&wal, "after").await.unwrap();
    drop(wal);
    let (_, rec) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let recs = collect(&rec);
    assert_eq!(recs.len(), 4);
    assert_eq!(&recs[3].payload[..], b"after");
}

#[tokio::test]
async fn an_unknown_signal_code_does_not_cut_off_later_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut buf = Vec::new();
    frame::encode(&mut buf, 1, Signal::Traces.code(), &tenant(), b"a");
    frame::encode(&mut buf, 2, 99, &tenant(), b"newer version");
    frame::encode(&mut buf, 3, Signal::Traces.code(), &tenant(), b"c");
    fs::write(dir.path().join(format!("{:020}.wal", 1)), &buf).unwrap();
    let (wal, rec) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let seqs: Vec<u64> = collect(&rec).iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(append(&wal, "d").await.unwrap(), 4, "no number is reused");
    drop(wal);
    let len = fs::metadata(dir.path().join(format!("{:020}.wal", 1)))
        .unwrap()
        .len();
    assert_eq!(len, buf.len() as u64, "nothing was truncated");
}

#[tokio::test]
async fn trim_deletes_only_fully_committed_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WalConfig::new(dir.path());
    cfg.segment_bytes = 200;
    let (wal, _) = Wal::open(cfg.clone()).unwrap();
    for _ in 0..20 {
        append(&wal, vec![7u8; 100]).await.unwrap();
    }
    let before = wal.segments();
    assert!(before > 5, "segments rotate at the size limit: {before}");
    assert!(wal.trim_below(11) > 0);
    drop(wal);
    let (_, rec) = Wal::open(cfg).unwrap();
    let recs = collect(&rec);
    assert_eq!(
        recs.first().map(|r| r.seq),
        Some(11),
        "records from 11 on are kept"
    );
    assert_eq!(recs.len(), 10);
}

#[tokio::test]
async fn records_stream_even_when_segments_were_trimmed_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WalConfig::new(dir.path());
    cfg.segment_bytes = 200;
    {
        let (wal, _) = Wal::open(cfg.clone()).unwrap();
        for _ in 0..10 {
            append(&wal, vec![1u8; 100]).await.unwrap();
        }
    }
    let (wal, rec) = Wal::open(cfg).unwrap();
    let mut it = rec.records();
    assert_eq!(it.next().unwrap().unwrap().seq, 1);
    wal.trim_below(6);
    let rest: Vec<u64> = it.map(|r| r.unwrap().seq).collect();
    assert!(rest.ends_with(&[6, 7, 8, 9, 10]), "{rest:?}");
}

#[tokio::test]
async fn full_log_pushes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WalConfig::new(dir.path());
    cfg.max_bytes = 500;
    let (wal, _) = Wal::open(cfg).unwrap();
    let mut full = false;
    for _ in 0..20 {
        if let Err(WalError::Full(_)) = append(&wal, vec![0u8; 100]).await {
            full = true;
            break;
        }
    }
    assert!(full);
}

#[tokio::test]
async fn a_failed_write_heals_and_leaves_no_partial_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::new(dir.path());
    let (wal, _) = Wal::open(cfg.clone()).unwrap();
    assert_eq!(append(&wal, "one").await.unwrap(), 1);
    wal.shared.faults.store(1, Ordering::SeqCst);
    let handed = Arc::new(AtomicU64::new(0));
    let h = handed.clone();
    let cb: OnDurable = Box::new(move |seq| h.store(seq, Ordering::SeqCst));
    let err = wal
        .append(&tenant(), Signal::Traces, Bytes::from("lost"), Some(cb))
        .await
        .unwrap_err();
    assert!(matches!(err, WalError::Io(_)), "{err}");
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_eq!(
        handed.load(Ordering::SeqCst),
        0,
        "a failed record is not handed over"
    );
    assert!(wal.health().is_err(), "readiness tells the truth");
    assert!(wal.durable_below() > 2, "the failed number is burned");
    // The next write succeeds: the log heals without a restart.
    assert_eq!(append(&wal, "three").await.unwrap(), 3);
    assert!(wal.health().is_ok());
    drop(wal);
    let (_, rec) = Wal::open(cfg).unwrap();
    let recs = collect(&rec);
    let got: Vec<(u64, &[u8])> = recs.iter().map(|r| (r.seq, &r.payload[..])).collect();
    assert_eq!(got, vec![(1, &b"one"[..]), (3, &b"three"[..])]);
}

#[tokio::test]
async fn an_idle_unhealthy_log_probes_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    wal.shared.faults.store(1, Ordering::SeqCst);
    assert!(append(&wal, "x").await.is_err());
    assert!(wal.health().is_err());
    // No appends arrive; the probe finds the disk writable again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while wal.health().is_err() {
        assert!(std::time::Instant::now() < deadline, "never healed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn oversized_records_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let huge = Bytes::from(vec![0u8; frame::MAX_BODY_LEN]);
    let err = append(&wal, huge).await.unwrap_err();
    assert!(matches!(err, WalError::TooLarge(_)));
    assert_eq!(append(&wal, "ok").await.unwrap(), 1);
}

#[tokio::test]
async fn sequence_numbers_are_never_reused_after_trim() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::new(dir.path());
    {
        let (wal, _) = Wal::open(cfg.clone()).unwrap();
        for _ in 0..5 {
            append(&wal, "a").await.unwrap();
        }
    }
    {
        // Everything was committed: the old segment is trimmed, the new one stays empty.
        let (wal, rec) = Wal::open(cfg.clone()).unwrap();
        assert_eq!(rec.len(), 5);
        wal.trim_below(u64::MAX);
    }
    for _ in 0..2 {
        let (wal, rec) = Wal::open(cfg.clone()).unwrap();
        assert!(rec.is_empty());
        wal.trim_below(u64::MAX);
    }
    let (wal, _) = Wal::open(cfg).unwrap();
    assert_eq!(append(&wal, "b").await.unwrap(), 6);
}

#[tokio::test]
async fn a_disk_with_room_for_a_probe_but_not_the_write_stays_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    // Room for a small probe, not for this record.
    wal.shared.free_bytes.store(100 * 1024, Ordering::SeqCst);
    let record = Bytes::from(vec![7u8; 300 * 1024]);
    assert!(append(&wal, record.clone()).await.is_err());
    assert!(wal.health().is_err());
    // Several probes run and fail: the record that failed would still not fit.
    tokio::time::sleep(PROBE_INTERVAL * 4).await;
    assert!(wal.health().is_err(), "healthy while the write cannot fit");
    // Space returns: a probe of the failed record's size passes, and the write does too.
    wal.shared.free_bytes.store(u64::MAX, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while wal.health().is_err() {
        assert!(std::time::Instant::now() < deadline, "never healed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(append(&wal, record).await.is_ok());
}
