//! Rotation, truncation, restart and compression cases of [`super::Files`], each checked
//! for every line exactly once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;

struct Node {
    _dir: tempfile::TempDir,
    pods: PathBuf,
    data: PathBuf,
    container: PathBuf,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let pods = dir.path().join("pods");
    let container = pods.join("shop_web-1_uid1").join("app");
    std::fs::create_dir_all(&container).unwrap();
    Node {
        pods,
        data: dir.path().join("data"),
        container,
        _dir: dir,
    }
}

fn files(n: &Node) -> Files {
    Files::new(
        Settings {
            pods_dir: n.pods.clone(),
            unpack_dir: n.data.join("unpacked"),
            rotate_wait: Duration::ZERO,
            max_record_bytes: 1 << 20,
            multiline_wait: Some(Duration::from_secs(1)),
            checkpoint_interval: Duration::ZERO,
        },
        Store::new(n.data.join("checkpoints")),
        Box::new(|_: &PodFile| Arc::<[u8]>::from(vec![])),
        vec![],
    )
    .unwrap()
}

fn write(p: &Path, from: usize, to: usize) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    for i in from..to {
        writeln!(f, "2024-05-01T10:00:00.{i:09}Z stdout F line {i}").unwrap();
    }
}

/// What logrotate's copytruncate does: the content copied to `to`, `live` emptied.
pub(crate) fn copytruncate(live: &Path, to: &Path) {
    std::fs::copy(live, to).unwrap();
    truncate(live);
}

fn truncate(p: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// The live file with lines 0..10, read by a new [`Files`]: the file, the reader and the
/// lines it gave.
fn reading(n: &Node) -> (PathBuf, Files, Vec<usize>) {
    let live = n.container.join("0.log");
    write(&live, 0, 10);
    let mut f = files(n);
    let got = drain(&mut f);
    (live, f, got)
}

/// Rounds until nothing more comes: scan, read, commit (as the collector does).
fn drain(f: &mut Files) -> Vec<usize> {
    let mut out = Vec::new();
    for _ in 0..20 {
        f.scan().unwrap();
        let got = f.read(1 << 20);
        let mut offsets = HashMap::new();
        for fr in &got {
            for (r, resume) in &fr.records {
                let text = String::from_utf8(r.message.clone()).unwrap();
                out.push(text.trim_start_matches("line ").parse().unwrap());
                let e = offsets.entry(fr.key).or_insert(*resume);
                *e = (*e).max(*resume);
            }
        }
        f.committed(&offsets).unwrap();
    }
    out
}

fn assert_once(mut got: Vec<usize>, n: usize) {
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}

#[test]
fn rename_rotation_reads_the_rotated_file_to_its_end_and_the_new_one() {
    let n = node();
    let (live, mut f, mut got) = reading(&n);
    write(&live, 10, 15);
    let rotated = n.container.join("0.log.20240501-100000");
    std::fs::rename(&live, &rotated).unwrap();
    write(&rotated, 15, 17); // a late write to the renamed file
    write(&live, 17, 25);
    got.extend(drain(&mut f));
    assert_once(got, 25);
    assert_eq!(
        f.open_files(),
        1,
        "the rotated file was finished and closed"
    );
}

#[test]
fn a_restart_finishes_files_rotated_and_compressed_while_down() {
    let n = node();
    let live = n.container.join("0.log");
    write(&live, 0, 10);
    let mut got = drain(&mut files(&n));
    // Down: the file grows, is renamed, a new one starts, and is renamed in its turn and
    // compressed (the original deleted).
    write(&live, 10, 20);
    let r1 = n.container.join("0.log.20240501-100000");
    std::fs::rename(&live, &r1).unwrap();
    write(&live, 20, 30);
    let mut again = files(&n);
    got.extend(drain(&mut again));
    assert_once(got.clone(), 30);
    write(&live, 30, 40);
    drop(again);
    // Down again: the live file is rotated and compressed before it was read to its end.
    let r2 = n.container.join("0.log.20240501-110000");
    std::fs::rename(&live, &r2).unwrap();
    let gz = n.container.join("0.log.20240501-110000.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&r2).unwrap()).unwrap();
    enc.finish().unwrap();
    std::fs::remove_file(&r2).unwrap();
    write(&live, 40, 45);
    let mut third = files(&n);
    got.extend(drain(&mut third));
    assert_once(got.clone(), 45);
    // And once more: nothing is read twice (the .gz is known, the rest finished).
    drop(third);
    let mut fourth = files(&n);
    assert_eq!(drain(&mut fourth), Vec::<usize>::new());
    assert!(
        !n.data.join("unpacked").exists()
            || std::fs::read_dir(n.data.join("unpacked")).unwrap().count() == 0,
        "unpacked copies are deleted once finished"
    );
}

#[test]
fn copytruncate_reads_the_copy_from_the_checkpoint_and_the_file_again() {
    let n = node();
    let (live, mut f, mut got) = reading(&n);
    write(&live, 10, 20);
    // copy, then truncate, then the program writes on
    copytruncate(&live, &n.container.join("0.log.1"));
    write(&live, 20, 23);
    got.extend(drain(&mut f));
    assert_once(got.clone(), 23);
    // The truncated file refilled past the old offset before the agent looked: told by its
    // first bytes.
    write(&live, 23, 30);
    got.extend(drain(&mut f));
    copytruncate(&live, &n.container.join("0.log.2"));
    write(&live, 30, 60);
    got.extend(drain(&mut f));
    assert_once(got, 60);
}

#[test]
fn a_reused_inode_with_other_content_is_a_new_file() {
    let n = node();
    let live = n.container.join("0.log");
    write(&live, 0, 5);
    let meta = std::fs::metadata(&live).unwrap();
    // A checkpoint of another file that had this inode: other first bytes.
    let store = Store::new(n.data.join("checkpoints"));
    store
        .save(&Checkpoints {
            files: vec![Checkpoint {
                path: live.clone(),
                id: FileId::from_head(
                    meta.dev(),
                    meta.ino(),
                    b"2023-01-01T00:00:00Z stdout F old\n",
                ),
                offset: 60,
            }],
        })
        .unwrap();
    let got = drain(&mut files(&n));
    assert_once(got, 5);
}

#[test]
fn a_deleted_file_is_read_to_its_end_and_then_released() {
    let n = node();
    let live = n.container.join("0.log");
    write(&live, 0, 5);
    let mut f = files(&n);
    f.scan().unwrap();
    // Deleted before its lines were read: the open file still has them.
    write(&live, 5, 8);
    std::fs::remove_dir_all(n.pods.join("shop_web-1_uid1")).unwrap();
    let got = drain(&mut f);
    assert_once(got, 8);
    assert_eq!(f.open_files(), 0);
}

#[test]
fn the_inode_of_a_closed_deleted_file_reused_by_a_new_one_is_read() {
    let n = node();
    let live = n.container.join("0.log");
    write(&live, 0, 5);
    let mut f = files(&n);
    let mut got = drain(&mut f);
    let rotated = n.container.join("0.log.20240501-100000");
    std::fs::rename(&live, &rotated).unwrap();
    got.extend(drain(&mut f));
    assert_eq!(f.open_files(), 0, "read to its end and closed");
    let old = std::fs::metadata(&rotated).unwrap().ino();
    // Deleted and, before the next scan, a new file takes the inode (ext4 hands a freed
    // inode out again at once).
    std::fs::remove_file(&rotated).unwrap();
    write(&live, 5, 12);
    let reused = std::fs::metadata(&live).unwrap().ino() == old;
    got.extend(drain(&mut f));
    assert_once(got, 12);
    eprintln!("inode reused: {reused}");
}

#[test]
fn a_copy_found_before_its_file_is_truncated_repeats_nothing() {
    let n = node();
    let (live, mut f, mut got) = reading(&n);
    write(&live, 10, 20);
    // copytruncate's copy is made, and the agent scans and reads before the truncation.
    let copy = n.container.join("0.log.1");
    std::fs::copy(&live, &copy).unwrap();
    got.extend(drain(&mut f));
    assert_once(got.clone(), 20);
    // Then the truncation, and the program writes on.
    truncate(&live);
    write(&live, 20, 25);
    got.extend(drain(&mut f));
    assert_once(got.clone(), 25);
    // A file truncated and not written again: its copy is read all the same.
    write(&live, 25, 30);
    std::fs::copy(&live, n.container.join("0.log.2")).unwrap();
    got.extend(drain(&mut f));
    truncate(&live);
    got.extend(drain(&mut f));
    assert_once(got, 30);
}

#[test]
fn a_copy_made_while_nothing_was_read_is_read_once_its_file_is_emptied() {
    let n = node();
    let live = n.container.join("0.log");
    write(&live, 0, 10);
    let mut f = files(&n);
    // The copy and the truncation come between the agent's scan and its first read.
    f.scan().unwrap();
    copytruncate(&live, &n.container.join("0.log.1"));
    assert_once(drain(&mut f), 10);
}

#[test]
fn a_copytruncate_while_down_resumes_the_copy_from_the_checkpoint() {
    let n = node();
    let live = n.container.join("0.log");
    write(&live, 0, 10);
    let mut got = drain(&mut files(&n));
    // Down: the file grows, is copied and truncated, and is written again; a plain copy of
    // another file's content is not involved.
    write(&live, 10, 20);
    copytruncate(&live, &n.container.join("0.log.1"));
    write(&live, 20, 25);
    let mut again = files(&n);
    got.extend(drain(&mut again));
    assert_once(got.clone(), 25);
    // Down again, and the file copied but not (yet) truncated: the copy repeats nothing.
    drop(again);
    write(&live, 25, 30);
    std::fs::copy(&live, n.container.join("0.log.2")).unwrap();
    write(&live, 30, 35);
    let mut third = files(&n);
    got.extend(drain(&mut third));
    assert_once(got, 35);
}

#[test]
fn lines_read_in_the_round_that_finds_a_truncation_are_not_read_again_from_the_copy() {
    let n = node();
    let (live, mut f, mut got) = reading(&n);
    write(&live, 10, 20);
    // One round of two reads, as the collector's gather makes: the first reads 10..20, then
    // the file is copied and truncated, and the second finds the truncation.
    f.scan().unwrap();
    let line = |r: &crate::partial::Record| -> usize {
        let text = String::from_utf8(r.message.clone()).unwrap();
        text.trim_start_matches("line ").parse().unwrap()
    };
    let mut offsets = HashMap::new();
    let first = f.read(1 << 20);
    assert_eq!(first.len(), 1);
    for fr in first {
        got.extend(fr.records.iter().map(|(r, _)| line(r)));
        offsets.insert(fr.key, fr.records.iter().map(|r| r.1).max().unwrap());
    }
    assert_once(got.clone(), 20);
    copytruncate(&live, &n.container.join("0.log.1"));
    write(&live, 20, 25);
    let second = f.read(1 << 20);
    assert_eq!(second.len(), 1, "the truncation found");
    for fr in second {
        assert!(fr.truncated);
        offsets.remove(&fr.key); // the old content's offsets, as gather drops them
        got.extend(fr.records.iter().map(|(r, _)| line(r)));
        offsets.insert(fr.key, fr.records.iter().map(|r| r.1).max().unwrap());
    }
    f.committed(&offsets).unwrap();
    // The next scan finds the copy: it holds 10..20, already read and committed.
    got.extend(drain(&mut f));
    assert_once(got, 25);
}
