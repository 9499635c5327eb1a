//! Finding files: new ones, renamed ones, deleted ones, a closed file's inode reused, a
//! copy made by copytruncate, and (at start) files compressed while the agent was down.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Entry, Files, Key, Open, dev_ino, read_head, snapshot};
use crate::checkpoint::{Checkpoint, FINGERPRINT_BYTES, FileId};
use crate::pod_path::{self, PodFile};

impl Files {
    /// Pod log files under the pods directory: `(path, identity)`.
    fn candidates(&self) -> Vec<(PathBuf, PodFile)> {
        let mut out = Vec::new();
        let dirs = |p: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        for pod in dirs(&self.settings.pods_dir) {
            for container in dirs(&pod) {
                for file in dirs(&container) {
                    if let Some(p) = pod_path::parse(&self.settings.pods_dir, &file) {
                        out.push((file, p));
                    }
                }
            }
        }
        // Live files first: a copy (under a rotated name) is then discovered after the file
        // it was copied from is known.
        out.sort_by_key(|(_, p)| p.rotated);
        out
    }

    /// Finds new files, follows renamed ones and notes deleted ones. Call between rounds
    /// (after [`Files::committed`]).
    pub fn scan(&mut self) -> anyhow::Result<()> {
        for e in self.files.values_mut() {
            e.seen = false;
        }
        let mut gz = Vec::new();
        for (path, pod) in self.candidates() {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let key = dev_ino(&meta);
            if let Some(e) = self.files.get(&key)
                && e.open.is_none()
                && e.closed.is_some_and(|c| c != snapshot(&meta))
                && (pod.compressed || !read_head(&path).is_ok_and(|h| e.id.same_start(&h)))
            {
                // A closed file's inode, reused by a new file.
                self.files.remove(&key);
                self.dirty = true;
            }
            if let Some(e) = self.files.get_mut(&key) {
                e.seen = true;
                if let Some(o) = e.open.as_mut() {
                    o.live = o.live && !pod.rotated;
                }
                if e.path != path {
                    e.path = path;
                    self.dirty = true;
                }
                continue;
            }
            if pod.compressed {
                gz.push((path, pod, key));
                continue;
            }
            if meta.len() == 0 {
                continue; // identified once it has content
            }
            // Files come and go while the directory is read: a file that cannot be read
            // now is looked at again by the next scan.
            let found = self.discover(path.clone(), pod, key, meta.len());
            if let Err(e) = found {
                tracing::debug!(path = %path.display(), error = %e, "cannot open log file yet");
            }
        }
        if self.first_scan {
            self.first_scan = false;
            self.resume_compressed(gz)?;
        }
        // Files gone from every directory: an open one is read to its end (it is held
        // open); a finished one's checkpoint is dropped.
        let before = self.files.len();
        self.files.retain(|_, e| {
            if let Some(o) = e.open.as_mut() {
                o.live &= e.seen || o.unpacked.is_some();
                true
            } else {
                e.seen
            }
        });
        self.dirty |= self.files.len() != before;
        Ok(())
    }

    /// A file not known by its inode: a checkpointed file (after a restart), a copy of a
    /// known file, or a new one. A copy of a live file that still holds all of the copy
    /// (copytruncate copies, then truncates) is left for a later scan: until the truncation,
    /// the file itself is read on, and the copy then starts where that reading stopped.
    /// Started at once, it would repeat what the file gives between the copy and the
    /// truncation.
    fn discover(&mut self, path: PathBuf, pod: PodFile, key: Key, len: u64) -> std::io::Result<()> {
        // Identity, first bytes and reader from one open file: a rotation between the
        // directory listing and the open must not file one file's reader under another's
        // identity. Replaced meanwhile: looked at again by the next scan.
        let file = std::fs::File::open(&path)?;
        if dev_ino(&file.metadata()?) != key {
            return Ok(());
        }
        let head = &crate::tail::head_of(&file, FINGERPRINT_BYTES)?;
        let id = FileId::from_head(key.0, key.1, head);
        let is_it = |c: &Checkpoint| (c.id.dev, c.id.ino) == key && c.id.same_start(head);
        let restored = self.unmatched.iter().find(|c| is_it(c)).cloned();
        let resumed = restored.is_some();
        let (id, offset) = if let Some(c) = restored {
            self.unmatched.retain(|c| !is_it(c));
            (c.id, c.offset)
        } else {
            let dir = path.parent();
            let copied = self.files.values().find_map(|e| {
                if e.path.parent() != dir {
                    return None;
                }
                if e.id.same_start(head) {
                    let holds_copy = e.open.as_ref().is_some_and(|o| {
                        o.live
                            && o.tail.file_len().is_ok_and(|l| l >= len)
                            && o.tail
                                .head(e.id.fingerprint_len as usize)
                                .is_ok_and(|h| e.id.same_start(&h))
                    });
                    return Some((!holds_copy).then_some(e.checkpoint));
                }
                let (before, at) = e.open.as_ref()?.before_truncation?;
                before.same_start(head).then_some(Some(at))
            });
            let copied = match copied {
                Some(None) => {
                    tracing::debug!(path = %path.display(), "a copy of a live file not yet truncated: looked at again later");
                    return Ok(());
                }
                Some(Some(at)) => Some(at),
                None => self.copied_while_down(&path, head),
            };
            if let Some(at) = copied {
                tracing::info!(path = %path.display(), offset = at, "a copy of a known file (copytruncate): read from its checkpoint");
            }
            (id, copied.unwrap_or(0))
        };
        tracing::info!(path = %path.display(), offset, resumed, "following log file");
        let tail = self.settings.tail(&path, file, offset);
        let live = !pod.rotated;
        let resource = (self.resource)(&pod);
        self.dirty = true;
        self.files.insert(
            key,
            Entry {
                path,
                id,
                pod,
                resource,
                checkpoint: offset,
                open: Some(Box::new(Open {
                    tail,
                    live,
                    last_growth: Instant::now(),
                    before_truncation: None,
                    handed: None,
                    handed_before_truncation: None,
                    unpacked: None,
                })),
                closed: None,
                seen: true,
            },
        );
        Ok(())
    }

    /// At start: a checkpoint of this directory whose file started as `head` but is no
    /// longer there as it was (copytruncate while the agent was down) is this file's: the
    /// copy is read from it. Its file, still whole, would have claimed it first (live files
    /// are discovered first), or will claim it later: then this is a plain copy.
    fn copied_while_down(&mut self, path: &Path, head: &[u8]) -> Option<u64> {
        let intact = |c: &Checkpoint| {
            std::fs::metadata(&c.path).is_ok_and(|m| dev_ino(&m) == (c.id.dev, c.id.ino))
                && read_head(&c.path).is_ok_and(|h| c.id.same_start(&h))
        };
        let i = self.unmatched.iter().position(|c| {
            c.path.parent() == path.parent() && c.id.same_start(head) && !intact(c)
        })?;
        let c = self.unmatched.remove(i);
        tracing::info!(path = %path.display(), from = %c.path.display(), offset = c.offset, "a copy of a file truncated while the agent was down: read from its checkpoint");
        Some(c.offset)
    }

    /// At start: checkpoints whose file is gone, looked for among compressed files.
    fn resume_compressed(&mut self, gz: Vec<(PathBuf, PodFile, Key)>) -> anyhow::Result<()> {
        for c in std::mem::take(&mut self.unmatched) {
            let found = gz.iter().find_map(|(path, pod, key)| {
                if path.parent() != c.path.parent() {
                    return None;
                }
                let head = gz_head(path).ok()?;
                c.id.same_start(&head)
                    .then(|| (path.clone(), pod.clone(), *key))
            });
            tracing::debug!(checkpoint = ?c, found = ?found.as_ref().map(|f| &f.0), "looking for a compressed copy");
            let Some((path, pod, key)) = found else {
                tracing::warn!(path = %c.path.display(), offset = c.offset, "a checkpointed file is gone and no compressed copy of it was found");
                continue;
            };
            if self.files.contains_key(&key) {
                continue; // a further copy of a checkpoint already resumed (furthest first)
            }
            std::fs::create_dir_all(&self.settings.unpack_dir)?;
            let unpacked = self
                .settings
                .unpack_dir
                .join(format!("{}-{}.log", key.0, key.1));
            let mut out = std::fs::File::create(&unpacked)?;
            let mut dec = flate2::read::MultiGzDecoder::new(std::fs::File::open(&path)?);
            let len = std::io::copy(&mut dec, &mut out)?;
            drop(out);
            let mut open = None;
            if c.offset < len {
                tracing::info!(path = %path.display(), offset = c.offset, "finishing a file compressed while the agent was down");
                open = Some(Box::new(Open {
                    tail: self
                        .settings
                        .tail(&unpacked, std::fs::File::open(&unpacked)?, c.offset),
                    live: false,
                    last_growth: Instant::now(),
                    before_truncation: None,
                    handed: None,
                    handed_before_truncation: None,
                    unpacked: Some(unpacked),
                }));
            } else {
                let _ = std::fs::remove_file(&unpacked);
            }
            let resource = (self.resource)(&pod);
            let closed = open
                .is_none()
                .then(|| std::fs::metadata(&path).ok())
                .flatten();
            self.dirty = true;
            self.files.insert(
                key,
                Entry {
                    path,
                    id: c.id,
                    pod,
                    resource,
                    checkpoint: c.offset,
                    open,
                    closed: closed.as_ref().map(snapshot),
                    seen: true,
                },
            );
        }
        Ok(())
    }
}

fn gz_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(FINGERPRINT_BYTES);
    flate2::read::MultiGzDecoder::new(std::fs::File::open(path)?)
        .take(FINGERPRINT_BYTES as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}
