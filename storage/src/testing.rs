//! Test support (feature `test-suite`): an object store whose operations on chosen prefixes
//! fail on demand, to test outages of one tenant or of the whole store; and a real
//! S3-compatible server on loopback (moto) for the conformance suite and end-to-end tests.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::store::Storage;

/// Wraps a store; every operation on a path under a failing prefix returns an error.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    failing: Mutex<Vec<String>>,
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

impl FaultStore {
    /// A faulty in-memory store and the storage handle over it.
    pub fn in_memory() -> (Arc<FaultStore>, Storage) {
        let store = Arc::new(FaultStore {
            inner: Arc::new(object_store::memory::InMemory::new()),
            failing: Mutex::new(Vec::new()),
        });
        let storage = Storage::new(store.clone(), "memory://faulty");
        (store, storage)
    }

    /// Operations on paths starting with `prefix` fail from now on ("" fails everything).
    pub fn fail(&self, prefix: &str) {
        self.failing.lock().unwrap().push(prefix.to_string());
    }

    /// Every operation succeeds again.
    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }

    fn check(&self, path: Option<&Path>) -> object_store::Result<()> {
        let p = path.map(|p| p.as_ref()).unwrap_or("");
        let failing = self.failing.lock().unwrap();
        if failing
            .iter()
            .any(|f| p.starts_with(f.as_str()) || f.is_empty())
        {
            return Err(object_store::Error::Generic {
                store: "FaultStore",
                source: format!("injected outage for {p:?}").into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check(Some(location))?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check(Some(location))?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(Some(location))?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(Some(location))?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check(prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.check(prefix) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.check(prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check(Some(to))?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.check(Some(to))?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// An S3-compatible server (moto, from the test virtualenv `.venv` at the workspace root) on
/// loopback with one bucket. It can be frozen (SIGSTOP) to make an outage in which requests
/// hang rather than fail. Killed when dropped.
pub struct Moto {
    child: std::process::Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub fn start(bucket: &str) -> Moto {
        use std::io::{BufRead, BufReader, Read, Write};
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run `tests/setup.sh` (or `make test`) first",
            bin.display()
        );
        let mut child = std::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("moto_server did not start");
        // Create the bucket with a plain HTTP request (moto accepts unsigned requests).
        let mut conn = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).expect("connect");
        write!(
            conn,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("create bucket");
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The `AWS_*` settings that point `s3://bucket/...` at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "loupe-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "loupe-test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Stops the server process: requests hang until [`Moto::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let _ = std::process::Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status();
    }
}
