//! WAL tests: durability across reopen, torn tails, trimming, back-pressure.

use super::*;

fn tenant() -> TenantId {
    TenantId::new("t").unwrap()
}

#[tokio::test]
async fn appended_records_are_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, recs) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert!(recs.is_empty());
    let mut seqs = Vec::new();
    for i in 0..50u8 {
        seqs.push(
            wal.append(&tenant(), Signal::Traces, Bytes::from(vec![i; 100]))
                .await
                .unwrap(),
        );
    }
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    drop(wal);
    let (wal, recs) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert_eq!(recs.len(), 50);
    assert!(
        recs.iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1 && r.payload[0] == i as u8)
    );
    // New appends continue the sequence in a new segment.
    assert_eq!(
        wal.append(&tenant(), Signal::Traces, Bytes::from_static(b"x"))
            .await
            .unwrap(),
        51
    );
}

#[tokio::test]
async fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let wal = wal.clone();
            tokio::spawn(async move {
                wal.append(&tenant(), Signal::Traces, Bytes::from(format!("r{i}")))
                    .await
            })
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
async fn torn_tail_is_truncated_and_later_records_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(WalConfig::new(dir.path())).unwrap();
        for _ in 0..3 {
            wal.append(&tenant(), Signal::Traces, Bytes::from_static(b"payload"))
                .await
                .unwrap();
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
    let (wal, recs) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert_eq!(recs.len(), 3);
    wal.append(&tenant(), Signal::Traces, Bytes::from_static(b"after"))
        .await
        .unwrap();
    drop(wal);
    let (_, recs) = Wal::open(WalConfig::new(dir.path())).unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(&recs[3].payload[..], b"after");
}

#[tokio::test]
async fn trim_deletes_only_fully_committed_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WalConfig::new(dir.path());
    cfg.segment_bytes = 200;
    let (wal, _) = Wal::open(cfg.clone()).unwrap();
    for _ in 0..20 {
        wal.append(&tenant(), Signal::Traces, Bytes::from(vec![7u8; 100]))
            .await
            .unwrap();
    }
    let before = wal.segments();
    assert!(before > 5, "segments rotate at the size limit: {before}");
    wal.trim_below(11);
    drop(wal);
    let (_, recs) = Wal::open(cfg).unwrap();
    assert_eq!(
        recs.first().map(|r| r.seq),
        Some(11),
        "records from 11 on are kept"
    );
    assert_eq!(recs.len(), 10);
}

#[tokio::test]
async fn full_log_pushes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WalConfig::new(dir.path());
    cfg.max_bytes = 500;
    let (wal, _) = Wal::open(cfg).unwrap();
    let mut full = false;
    for _ in 0..20 {
        if let Err(WalError::Full(_)) = wal
            .append(&tenant(), Signal::Traces, Bytes::from(vec![0u8; 100]))
            .await
        {
            full = true;
            break;
        }
    }
    assert!(full);
}

#[tokio::test]
async fn sequence_numbers_are_never_reused_after_trim() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = WalConfig::new(dir.path());
    {
        let (wal, _) = Wal::open(cfg.clone()).unwrap();
        for _ in 0..5 {
            wal.append(&tenant(), Signal::Traces, Bytes::from_static(b"a"))
                .await
                .unwrap();
        }
    }
    {
        // Everything was committed: the old segment is trimmed, the new one stays empty.
        let (wal, recs) = Wal::open(cfg.clone()).unwrap();
        assert_eq!(recs.len(), 5);
        wal.trim_below(u64::MAX);
    }
    for _ in 0..2 {
        let (wal, recs) = Wal::open(cfg.clone()).unwrap();
        assert!(recs.is_empty());
        wal.trim_below(u64::MAX);
    }
    let (wal, _) = Wal::open(cfg).unwrap();
    assert_eq!(
        wal.append(&tenant(), Signal::Traces, Bytes::from_static(b"b"))
            .await
            .unwrap(),
        6
    );
}
