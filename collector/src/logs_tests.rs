//! Logs through the ingest core: validation and partial success, times filled in at the
//! edge, trace context lifted from plain lines, and a crash after the ack that replay
//! recovers exactly once with the same records.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use loupe_core::{Signal, TenantId};
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::Fresh;
use loupe_storage::logs::{LogFilter, LogFormat, LogQuery, LogRecord, Order, search};
use loupe_storage::model::AttrValue;
use loupe_storage::spans::{SpanFormat, SpanReader};
use loupe_storage::store::Storage;
use loupe_wal::{Recovery, Wal, WalConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLog, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::ingest::{IngestLimits, Ingester};
use crate::logs;
use crate::otlp::Encoding;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn open(dir: &std::path::Path, storage: &Storage) -> (Arc<Ingester>, Arc<Recovery>) {
    let (wal, recovery) = Wal::open(WalConfig::new(dir)).unwrap();
    let catalog = Catalog::new(storage.clone(), "collector-test");
    let spans = Arc::new(SpanFormat::new(Arc::new(SpanReader::new(storage.clone()))));
    let limits = IngestLimits {
        max_log_line_bytes: 1000,
        ..IngestLimits::default()
    };
    let logs = Arc::new(LogFormat::new(Arc::new(
        loupe_storage::logs::index::LogIndexReader::new(storage.clone()),
    )));
    let metrics = crate::ingest::tests::metric_format(storage);
    let ing = Ingester::new(wal, catalog, spans, logs, metrics, limits);
    (Arc::new(ing), Arc::new(recovery))
}

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn request() -> Bytes {
    let t = now() - 60_000_000_000;
    let records = vec![
        // A plain stdout line carrying a traceparent and its level, no time or severity at
        // all (observed = receipt).
        OtlpLog {
            body: text(&format!(
                "GET /cart 200 level=info traceparent=00-{TRACE}-{SPAN}-01"
            )),
            ..Default::default()
        },
        // A JSON line with trace_id, a structured attribute.
        OtlpLog {
            time_unix_nano: t,
            body: text(&format!(
                r#"{{"msg":"charged","level":"debug","trace_id":"{TRACE}"}}"#
            )),
            severity_number: 17,
            attributes: vec![KeyValue {
                key_strindex: 0,
                key: "http.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(500)),
                }),
            }],
            ..Default::default()
        },
        // A structured body.
        OtlpLog {
            time_unix_nano: t + 1,
            body: Some(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key_strindex: 0,
                        key: "event".into(),
                        value: text("checkout"),
                    }],
                })),
            }),
            ..Default::default()
        },
        // Refused: a line over the limit, and a trace id of the wrong width.
        OtlpLog {
            time_unix_nano: t + 2,
            body: text(&"x".repeat(1001)),
            ..Default::default()
        },
        OtlpLog {
            time_unix_nano: t + 3,
            body: text("bad id"),
            trace_id: vec![1; 5],
            ..Default::default()
        },
    ];
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key_strindex: 0,
                    key: "service.name".into(),
                    value: text("shop"),
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Bytes::from(req.encode_to_vec())
}

async fn all(ing: &Ingester, t: &TenantId) -> Vec<LogRecord> {
    let q = LogQuery {
        filter: LogFilter {
            start_unix_nano: 0,
            end_unix_nano: i64::MAX,
            ..LogFilter::default()
        },
        limit: 100,
        order: Order::OldestFirst,
    };
    let fresh = ing.logs().batcher().chunks(t);
    let reader = loupe_storage::logs::index::LogIndexReader::new(ing.catalog().storage().clone());
    search(ing.catalog(), &reader, t, Duration::ZERO, fresh, &q)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_validated_lifted_and_replayed_once_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::in_memory();
    let t = TenantId::new("t").unwrap();
    let (ing, recovery) = open(dir.path(), &storage);
    ing.replay(recovery).await;
    let before = now();
    let d = logs::decode_request(request(), Encoding::Protobuf, ing.time_window(), 1000).unwrap();
    let v = logs::export(&ing, &t, d, "test").await.unwrap();
    assert_eq!((v.accepted, v.rejected), (3, 2));
    assert!(
        v.message.contains("exceeds the limit of 1000 bytes"),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("trace_id must be empty or 16 bytes"),
        "{}",
        v.message
    );

    let fresh = all(&ing, &t).await;
    assert_eq!(fresh.len(), 3);
    let plain = fresh
        .iter()
        .find(|r| r.body_text().starts_with("GET /cart"))
        .unwrap();
    assert!(
        plain.observed_unix_nano as u64 >= before,
        "receipt time filled in"
    );
    assert_eq!(plain.time_unix_nano, plain.observed_unix_nano);
    assert_eq!(plain.severity_number, 9, "from the level in the text");
    assert_eq!(hex::encode(plain.trace_id.unwrap()), TRACE);
    assert_eq!(hex::encode(plain.span_id.unwrap()), SPAN);
    // A severity the sender gave wins over the level in the text.
    let json = fresh.iter().find(|r| r.severity_number == 17).unwrap();
    assert_eq!(hex::encode(json.trace_id.unwrap()), TRACE);
    assert_eq!(json.span_id, None);
    assert_eq!(
        json.attribute("http.status_code"),
        Some(&AttrValue::Int(500))
    );
    assert_eq!(json.service_name(), "shop");
    assert!(matches!(
        fresh
            .iter()
            .find(|r| r.body_text().contains("checkout"))
            .unwrap()
            .body,
        AttrValue::Map(_)
    ));

    // Crash before any flush: replay rebuilds the same records (times included), once.
    drop(ing);
    let (ing, recovery) = open(dir.path(), &storage);
    let report = ing.replay(recovery).await;
    assert_eq!(report.replayed, 1, "{report:?}");
    assert_eq!(ing.flush().await, 1);
    assert!(ing.logs().batcher().chunks(&t).is_empty());
    let stored = all(&ing, &t).await;
    assert_eq!(stored.len(), 3);
    let key = |r: &LogRecord| (r.time_unix_nano, r.body_text().into_owned());
    let (mut a, mut b) = (fresh.clone(), stored.clone());
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b, "the same records, times included");
    let state = ing.catalog().refresh(&t, Signal::Logs).await.unwrap();
    assert_eq!(state.totals().0, 3);

    // And again: nothing replayed twice.
    drop(ing);
    let (ing, recovery) = open(dir.path(), &storage);
    let report = ing.replay(recovery).await;
    assert_eq!(report.replayed, 0, "{report:?}");
    assert_eq!(all(&ing, &t).await.len(), 3);
}
