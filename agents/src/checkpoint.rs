//! Where the agent is in each file it reads: the file's identity and the offset up to which
//! its lines are in the agent's buffer. A checkpoint only ever advances after those lines
//! are durable in the buffer, so after a crash reading resumes at or before the last line
//! buffered (at-least-once).
//!
//! A file is known by its device and inode and by a fingerprint of its first bytes: the
//! kubelet renames a log file on rotation (same inode, new name: the checkpoint follows the
//! inode) and a deleted file's inode may be reused by a new one (same inode, other first
//! bytes: a new file, read from the start).
//!
//! The store is one JSON file, replaced atomically: written to a temporary file, synced,
//! renamed over the old one, and the directory synced; `save` returns after that last sync,
//! and only then is the new store durable. A crash at any point leaves the old store or the
//! new one, never a mix; a temporary file left behind is ignored (the test crashes before
//! the temporary file is whole and after it is, before the rename).
//!
//! The store is a cache: every round's checkpoints are also in the buffer record that holds
//! its lines ([`crate::record`]), synced with them, and applied over the store's at start.
//! So the store is saved at most once per `checkpoint_interval` (and whenever the buffer
//! needs room), and a buffer segment is deleted only once its records' checkpoints are in a
//! saved store ([`crate::buffer`]). `crash_tests.rs` crashes at random points of rounds
//! (some runs never saving the store after start) and loses no line.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bytes at the start of a file that make its fingerprint (fewer while the file is shorter).
pub const FINGERPRINT_BYTES: usize = 256;

/// A file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    /// XXH3 of the file's first `fingerprint_len` bytes.
    pub fingerprint: u64,
    pub fingerprint_len: u32,
}

impl FileId {
    /// The identity of a file with this device and inode whose first bytes are `head`
    /// (at most [`FINGERPRINT_BYTES`] of it count).
    pub fn from_head(dev: u64, ino: u64, head: &[u8]) -> FileId {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        FileId {
            dev,
            ino,
            fingerprint: twox_hash::XxHash3_64::oneshot(head),
            fingerprint_len: head.len() as u32,
        }
    }

    /// Whether a file starting with `head` has the content this identity was taken from
    /// (device and inode aside: a copy of the file matches too).
    pub fn same_start(&self, head: &[u8]) -> bool {
        let n = self.fingerprint_len as usize;
        head.len() >= n && twox_hash::XxHash3_64::oneshot(&head[..n]) == self.fingerprint
    }
}

/// One file's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where the file was when last seen (a deleted file's last name may be taken by a new
    /// file meanwhile: the identity is `id`, the path a hint).
    pub path: PathBuf,
    pub id: FileId,
    /// Bytes of the file whose lines are in the buffer.
    pub offset: u64,
}

/// Every file the agent knows.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    pub files: Vec<Checkpoint>,
}

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint store {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The checkpoint store in a directory.
pub struct Store {
    dir: PathBuf,
}

const FILE: &str = "checkpoints.json";
#[cfg(test)]
const TEMP: &str = "checkpoints.json.tmp";

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    fn io(&self, name: &str) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
        let path = self.dir.join(name);
        move |source| CheckpointError::Io {
            path: path.clone(),
            source,
        }
    }

    /// The last checkpoints saved (none before the first save).
    pub fn load(&self) -> Result<Checkpoints, CheckpointError> {
        let path = self.dir.join(FILE);
        let Some(text) = crate::durable::read(&self.dir, FILE).map_err(self.io(FILE))? else {
            return Ok(Checkpoints::default());
        };
        serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Replaces the store durably ([`crate::durable::replace`]).
    pub fn save(&self, c: &Checkpoints) -> Result<(), CheckpointError> {
        let text = serde_json::to_vec(c).map_err(|e| CheckpointError::Corrupt {
            path: self.dir.join(FILE),
            reason: e.to_string(),
        })?;
        crate::durable::replace(&self.dir, FILE, &text).map_err(self.io(FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn head(p: &Path) -> Vec<u8> {
        let mut b = std::fs::read(p).unwrap();
        b.truncate(FINGERPRINT_BYTES);
        b
    }

    /// The identity of the file at `p` now.
    fn id_of(p: &Path) -> FileId {
        let m = std::fs::metadata(p).unwrap();
        FileId::from_head(m.dev(), m.ino(), &head(p))
    }

    /// Whether the file at `p` is `id` as the agent tells (inode, then first bytes).
    fn still(id: &FileId, p: &Path) -> bool {
        let m = std::fs::metadata(p).unwrap();
        (m.dev(), m.ino()) == (id.dev, id.ino) && id.same_start(&head(p))
    }

    #[test]
    fn a_file_is_known_by_inode_and_first_bytes_across_renames_and_inode_reuse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        std::fs::write(&p, b"first line\n").unwrap();
        let id = id_of(&p);
        assert_eq!(id.fingerprint_len, 11);
        // Rotation by rename: the same file under another name.
        let rotated = dir.path().join("0.log.20240501-100000");
        std::fs::rename(&p, &rotated).unwrap();
        assert!(still(&id, &rotated));
        // Growing does not change it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&rotated)
            .unwrap()
            .write_all(b"second line\n")
            .unwrap();
        assert!(still(&id, &rotated));
        // Copytruncate: the same inode, its first bytes gone.
        std::fs::write(&rotated, b"").unwrap();
        assert!(!still(&id, &rotated));
        std::fs::write(&rotated, b"other first line\n").unwrap();
        assert!(!still(&id, &rotated), "same inode, other first bytes");
        // A new file at the old name is another file.
        std::fs::write(&p, b"a new first line\n").unwrap();
        assert!(!still(&id, &p));
    }

    #[test]
    fn saves_replace_the_store_whole_and_a_crash_leaves_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("state"));
        assert_eq!(store.load().unwrap(), Checkpoints::default());
        let id = FileId {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            fingerprint_len: 4,
        };
        let mut c = Checkpoints::default();
        c.files.push(Checkpoint {
            path: "/var/log/pods/a_b_c/app/0.log".into(),
            id,
            offset: 100,
        });
        store.save(&c).unwrap();
        assert_eq!(store.load().unwrap(), c);
        // A crash while writing the next save: a torn temporary file, never renamed.
        let temp = dir.path().join("state").join(TEMP);
        std::fs::write(&temp, b"{\"files\":{\"/var/lo").unwrap();
        assert_eq!(store.load().unwrap(), c, "the last complete save");
        // A crash after the temporary file was written and synced, before the rename.
        let mut next = c.clone();
        next.files.clear();
        std::fs::write(&temp, serde_json::to_vec(&next).unwrap()).unwrap();
        assert_eq!(store.load().unwrap(), c, "not saved until renamed");
        c.files[0].offset = 250;
        store.save(&c).unwrap();
        assert_eq!(store.load().unwrap(), c);
        // A damaged store is an error naming it, not an empty start (which would re-read
        // every file).
        std::fs::write(dir.path().join("state").join(FILE), b"{oops").unwrap();
        let e = store.load().unwrap_err().to_string();
        assert!(e.contains("checkpoints.json is not valid"), "{e}");
    }
}
