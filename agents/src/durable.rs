//! Small files replaced whole and durably: written to a temporary file, synced, renamed over
//! the old one, and the directory synced. [`replace`] returns after that last sync, and only
//! then is the new content durable; a crash at any point leaves the old content or the new,
//! never a mix (a temporary file left behind is ignored by readers and overwritten by the
//! next write). The checkpoint store and the buffer's shipped bound are written this way.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Replaces `dir/name` with `bytes` durably (see the module docs).
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&temp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// The content of `dir/name`, or `None` when it was never written.
pub fn read(dir: &Path, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(dir.join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
