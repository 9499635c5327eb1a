//! The local-filesystem object store, made durable.
//!
//! `object_store`'s local backend writes an object to a staging file and renames (or, for
//! create-if-absent, hard-links) it into place, but never calls `fsync`: after a power loss a
//! catalog commit could be missing or empty although the write-ahead log was already trimmed
//! on its strength. [`SyncedLocal`] wraps it: after every successful put (and completed
//! multipart upload, copy and rename) it syncs the object's file and then every directory
//! from the object's parent up to the store's root (a new object may have created several),
//! and only then answers. So on the `file://` store, when a put returns, the object and its
//! name survive power loss; a flush's data file is synced before the commit that names it is
//! written, and that commit is synced before the flush trims the WAL.
//!
//! Deletes are not synced: an object that reappears after a power loss is either garbage
//! (collected again) or an old catalog commit (ignored: versions only grow). The syncs go
//! through a [`Syncer`], so tests can record the order of puts and syncs.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

/// Makes files and directories durable.
pub trait Syncer: Send + Sync + fmt::Debug + 'static {
    fn sync_file(&self, path: &FsPath) -> std::io::Result<()>;
    fn sync_dir(&self, path: &FsPath) -> std::io::Result<()>;
}

/// `fsync` of the file, and of the directory.
#[derive(Debug, Default)]
pub struct FsSyncer;

impl Syncer for FsSyncer {
    fn sync_file(&self, path: &FsPath) -> std::io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }

    fn sync_dir(&self, path: &FsPath) -> std::io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
}

/// The local store whose puts are durable when they return.
#[derive(Debug, Clone)]
pub struct SyncedLocal {
    inner: Arc<LocalFileSystem>,
    root: PathBuf,
    syncer: Arc<dyn Syncer>,
}

impl fmt::Display for SyncedLocal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SyncedLocal({})", self.root.display())
    }
}

impl SyncedLocal {
    /// `root` must exist.
    pub fn new(root: &FsPath, syncer: Arc<dyn Syncer>) -> object_store::Result<Self> {
        let root = std::fs::canonicalize(root).map_err(|e| object_store::Error::Generic {
            store: "SyncedLocal",
            source: Box::new(e),
        })?;
        let inner = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(SyncedLocal {
            inner: Arc::new(inner),
            root,
            syncer,
        })
    }

    /// Syncs the object's file, then each directory from its parent up to the root.
    async fn sync(&self, location: &Path) -> object_store::Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        let (root, syncer) = (self.root.clone(), self.syncer.clone());
        let err = |e: std::io::Error| object_store::Error::Generic {
            store: "SyncedLocal",
            source: Box::new(e),
        };
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            syncer.sync_file(&file)?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                syncer.sync_dir(d)?;
                if d == root {
                    break;
                }
                dir = d.parent().filter(|p| p.starts_with(&root));
            }
            Ok(())
        })
        .await
        .map_err(|e| err(std::io::Error::other(e)))?
        .map_err(err)
    }
}

#[async_trait]
impl ObjectStore for SyncedLocal {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SyncedUpload {
            upload,
            store: self.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        self.sync(to).await
    }
}

/// A multipart upload whose completion is synced like a put.
#[derive(Debug)]
struct SyncedUpload {
    upload: Box<dyn MultipartUpload>,
    store: SyncedLocal,
    location: Path,
}

#[async_trait]
impl MultipartUpload for SyncedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.upload.complete().await?;
        self.store.sync(&self.location).await?;
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutMode};
    use std::sync::Mutex;

    /// Records every sync, then does it.
    #[derive(Debug, Default)]
    pub struct Recorder(pub Mutex<Vec<String>>);

    impl Syncer for Recorder {
        fn sync_file(&self, path: &FsPath) -> std::io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("file {}", path.display()));
            FsSyncer.sync_file(path)
        }
        fn sync_dir(&self, path: &FsPath) -> std::io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("dir {}", path.display()));
            FsSyncer.sync_dir(path)
        }
    }

    #[tokio::test]
    async fn puts_sync_the_file_and_every_directory_up_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Arc::new(Recorder::default());
        let store = SyncedLocal::new(dir.path(), rec.clone()).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        store
            .put(
                &Path::from("t/traces/2024/01/f.parquet"),
                PutPayload::from("x"),
            )
            .await
            .unwrap();
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(
                &Path::from("t/_catalog/traces/commits/1.json"),
                PutPayload::from("{}"),
                create,
            )
            .await
            .unwrap();
        let got = rec.0.lock().unwrap().clone();
        let r = root.display();
        assert_eq!(
            got,
            vec![
                format!("file {r}/t/traces/2024/01/f.parquet"),
                format!("dir {r}/t/traces/2024/01"),
                format!("dir {r}/t/traces/2024"),
                format!("dir {r}/t/traces"),
                format!("dir {r}/t"),
                format!("dir {r}"),
                format!("file {r}/t/_catalog/traces/commits/1.json"),
                format!("dir {r}/t/_catalog/traces/commits"),
                format!("dir {r}/t/_catalog/traces"),
                format!("dir {r}/t/_catalog"),
                format!("dir {r}/t"),
                format!("dir {r}"),
            ]
        );
        // A lost create-if-absent race syncs nothing and reports the conflict.
        let again = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let e = store
            .put_opts(
                &Path::from("t/_catalog/traces/commits/1.json"),
                PutPayload::from("{}"),
                again,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, object_store::Error::AlreadyExists { .. }),
            "{e}"
        );
    }
}
