//! What the operating system says of a filesystem: `statvfs(3)`, for the node agent's
//! filesystem metrics and the write-ahead log's disk probe. (libc directly: the one call is
//! all either needs.)

use std::path::Path;

/// `statvfs(3)` of the filesystem holding `path`; `None` when the call fails.
pub fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid C string and `s` a buffer of the right type; statvfs fills it
    // when it returns 0.
    let rc = unsafe { libc::statvfs(c.as_ptr(), s.as_mut_ptr()) };
    // SAFETY: initialised by the successful call.
    (rc == 0).then(|| unsafe { s.assume_init() })
}

/// Bytes an unprivileged writer may still write to the filesystem holding `path`.
pub fn available_bytes(path: &Path) -> Option<u64> {
    statvfs(path).map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_has_some_room_and_a_missing_path_none() {
        let dir = std::env::temp_dir();
        assert!(super::available_bytes(&dir).is_some_and(|b| b > 0));
        assert!(super::available_bytes(&dir.join("no/such/dir")).is_none());
    }
}
