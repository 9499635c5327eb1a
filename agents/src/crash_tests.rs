//! Property test of the whole read → buffer → checkpoint → ship path: random writes,
//! rotations (rename and copytruncate) and shipping, with crashes at random points of a round (before the append,
//! between the append and the checkpoint save, after it), torn records at the buffer's
//! tail and half-written checkpoint files left behind. Every line written must be shipped,
//! and none twice: a round's checkpoints travel in its buffer record, and the test saves
//! the shipped bound right after each read (the agent's one window for duplicates is a
//! crash between the collector's answer and that save).
//!
//! A second, deterministic test crashes at every point of a round that finds a
//! copytruncate between two of its reads (the property test's writes fall between rounds).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::buffer::{Buffer, BufferLimits, Reader};
use crate::checkpoint::Store;
use crate::collect::{CollectSettings, Round, append, commit, gather};
use crate::files::{Files, Settings};
use crate::pod_path::PodFile;

struct Agent {
    files: Files,
    buffer: Arc<Buffer>,
    reader: Reader,
}

fn start(pods: &Path, data: &Path, checkpoint_interval: Duration) -> Agent {
    let buffer = Buffer::open(
        &data.join("buffer"),
        BufferLimits {
            max_bytes: 1 << 22,
            segment_bytes: 4096,
        },
    )
    .unwrap();
    let files = Files::new(
        Settings {
            pods_dir: pods.to_path_buf(),
            unpack_dir: data.join("unpacked"),
            rotate_wait: Duration::ZERO,
            max_record_bytes: 1 << 20,
            multiline_wait: Some(Duration::from_secs(1)),
            checkpoint_interval,
        },
        Store::new(data.join("checkpoints")),
        Box::new(|_: &PodFile| Arc::<[u8]>::from(vec![])),
        buffer.checkpoints().unwrap(),
    )
    .unwrap();
    let reader = buffer.reader();
    let mut files = files;
    files.scan().unwrap();
    files.save_now().unwrap();
    buffer.checkpointed(buffer.durable_below());
    Agent {
        files,
        buffer,
        reader,
    }
}

/// The process dies: memory is gone; a record being written is torn, a checkpoint save
/// may leave its temporary file half written.
fn crash(a: Agent, data: &Path, rng: &mut StdRng) {
    drop(a);
    std::thread::sleep(Duration::from_millis(5));
    let log = data.join("buffer").join("log");
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    if let Some(last) = segs.last()
        && rng.random_bool(0.7)
    {
        let torn: Vec<u8> = (0..rng.random_range(1..40)).map(|_| rng.random()).collect();
        let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
        f.write_all(&(300u32).to_le_bytes()).unwrap();
        f.write_all(&torn).unwrap();
    }
    if rng.random_bool(0.5) {
        std::fs::create_dir_all(data.join("checkpoints")).unwrap();
        std::fs::write(
            data.join("checkpoints").join("checkpoints.json.tmp"),
            b"{\"files\":[{\"pa",
        )
        .unwrap();
    }
}

fn ship(a: &mut Agent, shipped: &mut Vec<usize>, max: usize) {
    let got = a.reader.next(a.buffer.durable_below(), max).unwrap();
    for r in got {
        let req = ExportLogsServiceRequest::decode(crate::record::otlp(&r.payload)).unwrap();
        for rl in req.resource_logs {
            for sl in rl.scope_logs {
                for l in sl.log_records {
                    let Some(Av::StringValue(s)) = l.body.and_then(|b| b.value) else {
                        panic!("body")
                    };
                    shipped.push(s.trim_start_matches("line ").parse().unwrap());
                }
            }
        }
    }
    a.buffer.shipped(a.reader.cursor()).unwrap();
}

/// Rounds as the agent runs them: scan, gather, append, commit.
fn rounds(a: &mut Agent, n: usize, settings: &CollectSettings, rt: &tokio::runtime::Runtime) {
    let stop = AtomicBool::new(false);
    for _ in 0..n {
        a.files.scan().unwrap();
        let g = gather(&mut a.files, settings);
        let seq = append(&a.buffer, &g, rt.handle(), &stop, &mut || {}).unwrap();
        commit(&mut a.files, &a.buffer, &g, seq);
    }
}

/// Ships what is left; the count of lines shipped in all, and each line once, in order.
fn ship_rest(a: &mut Agent, mut shipped: Vec<usize>) -> (usize, Vec<usize>) {
    ship(a, &mut shipped, usize::MAX);
    let total = shipped.len();
    shipped.sort_unstable();
    shipped.dedup();
    (total, shipped)
}

fn write_lines(live: &Path, from: usize, to: usize, rng: &mut StdRng) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(live)
        .unwrap();
    let mut text = String::new();
    for i in from..to {
        if rng.random_bool(0.2) {
            // A long line the runtime split in two.
            text += &format!("2024-05-01T10:00:00.{i:09}Z stdout P line \n");
            text += &format!("2024-05-01T10:00:00.{i:09}Z stdout F {i}\n");
        } else {
            text += &format!("2024-05-01T10:00:00.{i:09}Z stdout F line {i}\n");
        }
    }
    f.write_all(text.as_bytes()).unwrap();
}

fn run_seed(seed: u64) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let container = pods.join("ns_pod_uid").join("c");
    std::fs::create_dir_all(&container).unwrap();
    let live = container.join("0.log");
    let data = dir.path().join("data");
    let mut rng = StdRng::seed_from_u64(seed);
    // Odd seeds never save the checkpoint store after start: every checkpoint comes back
    // from the buffer's records.
    let interval = if seed.is_multiple_of(2) {
        Duration::ZERO
    } else {
        Duration::from_secs(3600)
    };
    let settings = CollectSettings {
        batch_bytes: 2048,
        batch_interval: Duration::ZERO,
        poll_interval: Duration::ZERO,
        scan_interval: Duration::ZERO,
        read_bytes: 700,
    };
    let stop = AtomicBool::new(false);
    let mut a = start(&pods, &data, interval);
    let (mut written, mut shipped) = (0usize, Vec::new());
    for step in 0..160 {
        match rng.random_range(0..10) {
            0..=2 => {
                let n = rng.random_range(1..30);
                write_lines(&live, written, written + n, &mut rng);
                written += n;
            }
            3 => {
                if live.exists() {
                    let to = container.join(format!("0.log.{step:04}"));
                    if rng.random_bool(0.5) {
                        std::fs::rename(&live, to).unwrap();
                    } else {
                        // copytruncate, with no write in between (so the tool loses nothing)
                        crate::files::tests::copytruncate(&live, &to);
                    }
                }
            }
            4 => ship(&mut a, &mut shipped, rng.random_range(100..5000)),
            5..=8 => {
                a.files.scan().unwrap();
                let g = gather(&mut a.files, &settings);
                let point = rng.random_range(0..4);
                if point == 0 {
                    crash(a, &data, &mut rng);
                    a = start(&pods, &data, interval);
                    continue;
                }
                let seq = append(&a.buffer, &g, rt.handle(), &stop, &mut || {}).unwrap();
                if point == 1 {
                    crash(a, &data, &mut rng);
                    a = start(&pods, &data, interval);
                    continue;
                }
                commit(&mut a.files, &a.buffer, &g, seq);
                if point == 3 {
                    crash(a, &data, &mut rng);
                    a = start(&pods, &data, interval);
                }
            }
            _ => {
                crash(a, &data, &mut rng);
                a = start(&pods, &data, interval);
            }
        }
    }
    rounds(&mut a, 50, &settings, &rt);
    let (total, shipped) = ship_rest(&mut a, shipped);
    assert_eq!(
        shipped,
        (0..written).collect::<Vec<_>>(),
        "seed {seed}: every line written is shipped"
    );
    // A copy is found by the scan that starts the round after the copytruncate, before the
    // truncation is read, and starts at the file's committed offset: nothing repeats.
    assert_eq!(
        total, written,
        "seed {seed}: no line twice (checkpoints travel with the lines; the shipped bound is saved before the next read)"
    );
    total
}

#[test]
fn random_crashes_lose_no_line() {
    let lines: usize = (0..16).map(run_seed).sum();
    assert!(lines > 1000, "{lines} lines");
}

/// Crash points of the round below, in the order its steps run.
const MID_ROUND_POINTS: [&str; 5] = [
    "before the append",
    "while the buffer refuses the append, after a scan found the copy and the store was saved",
    "after the append, before the checkpoints advance",
    "after the checkpoints advance, before the scan that finds the copy",
    "after that scan, before the store is saved",
];

#[test]
fn a_truncation_found_mid_round_loses_nothing_at_any_crash_point() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut rng = StdRng::seed_from_u64(7);
    let stop = AtomicBool::new(false);
    // One read per round, of everything there is.
    let settings = CollectSettings {
        batch_bytes: 1 << 20,
        batch_interval: Duration::ZERO,
        poll_interval: Duration::ZERO,
        scan_interval: Duration::ZERO,
        read_bytes: 1 << 20,
    };
    for crash_at in (0..MID_ROUND_POINTS.len()).map(Some).chain([None]) {
        let what = crash_at.map_or("no crash", |i| MID_ROUND_POINTS[i]);
        let dir = tempfile::tempdir().unwrap();
        let pods = dir.path().join("pods");
        let container = pods.join("ns_pod_uid").join("c");
        std::fs::create_dir_all(&container).unwrap();
        let (live, data) = (container.join("0.log"), dir.path().join("data"));
        let mut a = start(&pods, &data, Duration::ZERO);
        write_lines(&live, 0, 10, &mut rng);
        rounds(&mut a, 1, &settings, &rt);
        // One round, two reads: 10..20 of the old content, then (after the copy, the
        // truncation and new lines) the truncation is found and 20..25 read.
        write_lines(&live, 10, 20, &mut rng);
        a.files.scan().unwrap();
        let mut r = Round::default();
        assert!(r.add(&a.files.read(1 << 20)), "10..20 read");
        crate::files::tests::copytruncate(&live, &container.join("0.log.1"));
        write_lines(&live, 20, 25, &mut rng);
        assert!(r.add(&a.files.read(1 << 20)), "the truncation found");
        let g = r.finish(&a.files);
        let mut seq = None;
        for step in 0..MID_ROUND_POINTS.len() {
            if crash_at == Some(step) {
                break;
            }
            match step {
                0 if crash_at == Some(1) => {
                    // What the agent does while the buffer refuses (see `collect::run`).
                    a.files.scan().unwrap();
                    a.files.save_now().unwrap();
                }
                0 => {}
                1 => seq = append(&a.buffer, &g, rt.handle(), &stop, &mut || {}).unwrap(),
                2 => commit(&mut a.files, &a.buffer, &g, seq),
                3 => a.files.scan().unwrap(),
                _ => a.files.save_now().unwrap(),
            }
        }
        if crash_at.is_some() {
            crash(a, &data, &mut rng);
            a = start(&pods, &data, Duration::ZERO);
        }
        rounds(&mut a, 5, &settings, &rt);
        let (total, shipped) = ship_rest(&mut a, Vec::new());
        assert_eq!(
            shipped,
            (0..25).collect::<Vec<_>>(),
            "crash {what}: a line lost"
        );
        // Without a crash, and with one before anything of the round was buffered, each
        // line once; in between, the copy may repeat the round's lines.
        if crash_at.is_none_or(|i| i == 0) {
            assert_eq!(total, 25, "crash {what}: lines twice");
        }
    }
}
