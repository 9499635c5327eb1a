//! The storage conformance suite against a real S3-compatible server (moto) started on
//! loopback by this test, through `Storage::open("s3://...")` with the usual AWS settings.

use loupe_storage::conformance;
use loupe_storage::store::Storage;
use loupe_storage::testing::Moto;

#[tokio::test(flavor = "multi_thread")]
async fn storage_conforms_on_s3() {
    let moto = Moto::start("loupe-test");
    // SAFETY: nextest runs each test in its own process and nothing else reads the
    // environment concurrently at this point.
    unsafe {
        for (k, v) in moto.env() {
            std::env::set_var(k, v);
        }
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
