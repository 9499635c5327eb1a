//! One object per log file: the Parquet documents, then the tantivy index's files, then a
//! footer. The footer is a `u32` (little-endian) length, a JSON table (each index file's byte
//! range in the object, and the hot ranges), then the hot bytes: every range of the index
//! files that opening the index reads (file footers, the term dictionaries' block indexes,
//! the fast-field headers), recorded when the file is written. The catalog entry says where
//! the footer is ([`IndexLocation`]), so one ranged read opens an index; a search then reads
//! only the term dictionary blocks and posting lists it needs.
//!
//! Durability is the file's: the index is built before the upload and written in the same
//! object, by the same put (synced on the local store before it returns), before the catalog
//! commit that names the file. A committed log file always has its index; a crash before the
//! commit leaves an orphan that the sweep deletes, as for any file.
//!
//! [`SplitDirectory`] is tantivy's view of such an object: read-only, every read served
//! from the hot bytes or else from a [`Ranges`] source (memory, or the object store with a
//! cache: `index::reader`).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tantivy::HasLen;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};

use crate::catalog::IndexLocation;
use crate::error::StorageError;

/// Bytes of one object, by range.
pub trait Ranges: Send + Sync + fmt::Debug + 'static {
    fn read(&self, range: Range<u64>) -> io::Result<OwnedBytes>;
}

/// An object held in memory (while it is written, and in tests).
#[derive(Debug)]
pub struct InMemory(pub OwnedBytes);

impl Ranges for InMemory {
    fn read(&self, range: Range<u64>) -> io::Result<OwnedBytes> {
        let (a, b) = (range.start as usize, range.end as usize);
        if b > self.0.len() || a > b {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("range {a}..{b} beyond {} bytes", self.0.len()),
            ));
        }
        Ok(self.0.slice(a..b))
    }
}

/// The footer's table. Offsets are in the object; hot ranges are in their file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Table {
    pub files: Vec<(String, u64, u64)>,
    pub hot: Vec<(String, u64, u64)>,
}

/// Appends the index `files` (name, bytes) and the footer to `object` (the Parquet part).
pub fn pack(
    mut object: Vec<u8>,
    files: &[(String, OwnedBytes)],
    hot: &[(String, Range<u64>)],
) -> Result<(Vec<u8>, IndexLocation), StorageError> {
    let parquet_len = object.len() as u64;
    let mut table = Table::default();
    for (name, bytes) in files {
        let start = object.len() as u64;
        object.extend_from_slice(bytes.as_slice());
        table.files.push((name.clone(), start, object.len() as u64));
    }
    let mut hot_bytes = Vec::new();
    for (name, r) in hot {
        let Some((_, bytes)) = files.iter().find(|(n, _)| n == name) else {
            continue;
        };
        hot_bytes.extend_from_slice(&bytes.as_slice()[r.start as usize..r.end as usize]);
        table.hot.push((name.clone(), r.start, r.end));
    }
    let json = serde_json::to_vec(&table)
        .map_err(|e| StorageError::Internal(format!("log index footer: {e}")))?;
    let footer_offset = object.len() as u64;
    object.extend_from_slice(&(json.len() as u32).to_le_bytes());
    object.extend_from_slice(&json);
    object.extend_from_slice(&hot_bytes);
    let location = IndexLocation {
        parquet_len,
        footer_offset,
        footer_len: object.len() as u64 - footer_offset,
    };
    Ok((object, location))
}

/// A parsed footer: where each index file is, and the hot bytes by file.
#[derive(Debug)]
pub struct Footer {
    files: HashMap<PathBuf, Range<u64>>,
    hot: HashMap<PathBuf, Vec<(Range<usize>, OwnedBytes)>>,
    /// Bytes the footer holds (for cache weights).
    pub len: usize,
}

impl Footer {
    pub fn parse(bytes: OwnedBytes) -> Result<Footer, StorageError> {
        let bad = |what: &str| StorageError::Internal(format!("log index footer: {what}"));
        let b = bytes.as_slice();
        if b.len() < 4 {
            return Err(bad("too short"));
        }
        let json_len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let json = b
            .get(4..4 + json_len)
            .ok_or_else(|| bad("table cut short"))?;
        let table: Table = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
        let mut at = 4 + json_len;
        let mut hot: HashMap<PathBuf, Vec<(Range<usize>, OwnedBytes)>> = HashMap::new();
        for (name, start, end) in table.hot {
            let n = (end - start) as usize;
            if at + n > b.len() {
                return Err(bad("hot bytes cut short"));
            }
            hot.entry(PathBuf::from(name))
                .or_default()
                .push((start as usize..end as usize, bytes.slice(at..at + n)));
            at += n;
        }
        let files = table
            .files
            .into_iter()
            .map(|(name, a, b)| (PathBuf::from(name), a..b))
            .collect();
        Ok(Footer {
            files,
            hot,
            len: bytes.len(),
        })
    }
}

/// Ranges read, by file.
type Reads = Vec<(PathBuf, Range<u64>)>;

struct Inner {
    footer: Arc<Footer>,
    source: Arc<dyn Ranges>,
    /// While recording (at write time): the ranges read, by file.
    recorded: Option<Mutex<Reads>>,
}

/// A read-only tantivy directory over one packed object.
#[derive(Clone)]
pub struct SplitDirectory {
    inner: Arc<Inner>,
}

impl fmt::Debug for SplitDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SplitDirectory({:?})", self.inner.source)
    }
}

impl SplitDirectory {
    pub fn new(footer: Arc<Footer>, source: Arc<dyn Ranges>) -> Self {
        SplitDirectory {
            inner: Arc::new(Inner {
                footer,
                source,
                recorded: None,
            }),
        }
    }

    /// A directory that remembers every range read through it (see [`Self::recorded`]).
    pub fn recording(footer: Arc<Footer>, source: Arc<dyn Ranges>) -> Self {
        SplitDirectory {
            inner: Arc::new(Inner {
                footer,
                source,
                recorded: Some(Mutex::new(Vec::new())),
            }),
        }
    }

    /// The ranges read so far, merged per file where they touch.
    pub fn recorded(&self) -> Vec<(String, Range<u64>)> {
        let Some(rec) = &self.inner.recorded else {
            return Vec::new();
        };
        let mut all = rec.lock().unwrap_or_else(|e| e.into_inner()).clone();
        all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.start.cmp(&b.1.start)));
        let mut out: Vec<(String, Range<u64>)> = Vec::new();
        for (path, r) in all {
            let name = path.to_string_lossy().into_owned();
            match out.last_mut() {
                Some((n, last)) if *n == name && r.start <= last.end => {
                    last.end = last.end.max(r.end)
                }
                _ => out.push((name, r)),
            }
        }
        out
    }
}

#[derive(Clone)]
struct SplitFile {
    inner: Arc<Inner>,
    path: PathBuf,
    range: Range<u64>,
}

impl fmt::Debug for SplitFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SplitFile({})", self.path.display())
    }
}

impl HasLen for SplitFile {
    fn len(&self) -> usize {
        (self.range.end - self.range.start) as usize
    }
}

impl FileHandle for SplitFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if let Some(rec) = &self.inner.recorded {
            rec.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.path.clone(), range.start as u64..range.end as u64));
        }
        if let Some(slices) = self.inner.footer.hot.get(&self.path) {
            for (r, bytes) in slices {
                if r.start <= range.start && range.end <= r.end {
                    return Ok(bytes.slice(range.start - r.start..range.end - r.start));
                }
            }
        }
        let start = self.range.start + range.start as u64;
        let end = self.range.start + range.end as u64;
        if end > self.range.end {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: range beyond the file", self.path.display()),
            ));
        }
        self.inner.source.read(start..end)
    }
}

fn read_only(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{}: a stored log index is read-only", path.display()),
    )
}

impl Directory for SplitDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let range = self
            .inner
            .footer
            .files
            .get(path)
            .ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_path_buf()))?;
        Ok(Arc::new(SplitFile {
            inner: self.inner.clone(),
            path: path.to_path_buf(),
            range: range.clone(),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.inner.footer.files.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::IoError {
            io_error: Arc::new(read_only(path)),
            filepath: path.to_path_buf(),
        })
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let file = self.get_file_handle(path)?;
        let bytes = file
            .read_bytes(0..file.len())
            .map_err(|e| OpenReadError::IoError {
                io_error: Arc::new(e),
                filepath: path.to_path_buf(),
            })?;
        Ok(bytes.as_slice().to_vec())
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> io::Result<()> {
        Err(read_only(path))
    }

    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        // Nothing writes here, so readers need no lock.
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn sync_directory(&self) -> io::Result<()> {
        Ok(())
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}
