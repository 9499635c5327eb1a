//! The storage conformance suite against a real S3-compatible server (moto) started on
//! loopback by this test, through `Storage::open("s3://...")` with the usual AWS settings.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loupe_storage::conformance;
use loupe_storage::store::Storage;

struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    assert!(
        p.exists(),
        "{} is missing: run `tests/setup.sh` (or `make test`) first",
        p.display()
    );
    p
}

fn start_moto() -> Moto {
    let mut child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start moto_server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                let _ = tx.send(port);
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("moto_server did not start");
    Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_conforms_on_s3() {
    let moto = start_moto();
    let resp = reqwest::Client::new()
        .put(format!("{}/loupe-test", moto.endpoint))
        .send()
        .await
        .expect("create bucket");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
    // SAFETY: nextest runs each test in its own process and nothing else reads the
    // environment concurrently at this point.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "loupe-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "loupe-test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ENDPOINT", &moto.endpoint);
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    let storage = Storage::open("s3://loupe-test/cluster-a").expect("open s3 storage");
    conformance::catalog_suite(storage.clone()).await;
    conformance::spans_suite(storage).await;

    // Everything went under the URL's prefix.
    let listing = reqwest::Client::new()
        .get(format!("{}/loupe-test?list-type=2", moto.endpoint))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=loupe-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .collect();
    assert!(!keys.is_empty(), "{listing}");
    assert!(keys.iter().all(|k| k.starts_with("cluster-a/")), "{keys:?}");
}
