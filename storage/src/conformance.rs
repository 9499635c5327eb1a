//! The storage conformance suite: the same checks run against every object-store backend
//! (in memory, local filesystem, S3 on a loopback server). Test-only.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::catalog::{Catalog, Change, FileEntry, FileFormat, WalSource};
use crate::fresh::Chunk;
use crate::lifecycle::lease::Held;
use crate::lifecycle::{
    CompactionPolicy, apply_retention, collect_garbage, compact, sweep_orphans, write_file,
};
use crate::model::{AttrValue, Attrs, Event, Resource, Scope, SpanKind, SpanRecord, StatusCode};
use crate::spans::{SpanFilter, SpanFormat, SpanReader, SpanRows};
use crate::store::{Signal, Storage};
use loupe_core::TenantId;

const TRACES: Signal = Signal::Traces;

/// Commits `entries` to the traces catalog.
pub async fn add(catalog: &Catalog, tenant: &TenantId, entries: Vec<FileEntry>) -> u64 {
    catalog
        .commit(tenant, TRACES, Change::add(entries))
        .await
        .unwrap()
}

/// One compaction pass over the tenant's spans with the default policy, as the sole lifecycle
/// owner. Returns the merges committed.
pub async fn compact_spans(catalog: &Catalog, format: &SpanFormat, tenant: &TenantId) -> usize {
    let lease = Held::exclusive(tenant);
    compact(
        catalog,
        format,
        tenant,
        &CompactionPolicy::default(),
        &lease,
    )
    .await
    .unwrap()
}

/// Spans as one chunk, as a flush receives them.
pub fn chunks(spans: Vec<SpanRecord>) -> Vec<Arc<Chunk<SpanRows>>> {
    let rows = SpanRows::from_records(&spans).expect("span rows from records");
    vec![Arc::new(Chunk::new(rows, 0))]
}

pub fn entry(id: &str) -> FileEntry {
    FileEntry {
        id: id.to_string(),
        signal: Signal::Traces,
        format: FileFormat::Parquet,
        path: format!("t/traces/{id}.parquet"),
        schema_version: 1,
        min_time_unix_nano: 0,
        max_time_unix_nano: 1,
        rows: 1,
        bytes: 1,
        services: vec![],
        level: 0,
        created_unix_ms: 0,
        sources: vec![],
        trace_filter: None,
        index: None,
        series: None,
    }
}

/// Commits, concurrent committers, conflicting removals, reload from the store.
pub async fn catalog_suite(storage: Storage) {
    let tenant = TenantId::new("conformance").unwrap();
    let a = Catalog::new(storage.clone(), "a");
    let b = Catalog::new(storage.clone(), "b");
    let n = 15;
    let ta = {
        let (a, tenant) = (a.clone(), tenant.clone());
        tokio::spawn(async move {
            for i in 0..n {
                add(&a, &tenant, vec![entry(&format!("a{i}"))]).await;
            }
        })
    };
    let tb = {
        let (b, tenant) = (b.clone(), tenant.clone());
        tokio::spawn(async move {
            for i in 0..n {
                add(&b, &tenant, vec![entry(&format!("b{i}"))]).await;
            }
        })
    };
    ta.await.unwrap();
    tb.await.unwrap();
    let fresh = Catalog::new(storage.clone(), "reader");
    let state = fresh.refresh(&tenant, TRACES).await.unwrap();
    assert_eq!(
        state.files.len(),
        2 * n,
        "every commit of both writers is there"
    );
    assert_eq!(state.version, 2 * n as u64);

    // Signals have their own logs: a logs commit does not move the traces version.
    let mut log_entry = entry("log-split");
    log_entry.signal = Signal::Logs;
    let v = a
        .commit(&tenant, Signal::Logs, Change::add(vec![log_entry]))
        .await
        .unwrap();
    assert_eq!(v, 1);
    assert_eq!(
        fresh.refresh(&tenant, TRACES).await.unwrap().version,
        2 * n as u64
    );

    // Two writers removing the same file: exactly one wins.
    let r1 = a.commit(
        &tenant,
        TRACES,
        Change::replace(vec![entry("merged-a")], vec!["a0".into()]),
    );
    let r2 = b.commit(
        &tenant,
        TRACES,
        Change::replace(vec![entry("merged-b")], vec!["a0".into()]),
    );
    let (r1, r2) = tokio::join!(r1, r2);
    assert!(
        r1.is_ok() != r2.is_ok(),
        "exactly one removal may win: {r1:?} {r2:?}"
    );
    let loser = if r1.is_err() { r1 } else { r2 };
    assert!(matches!(loser, Err(crate::StorageError::Conflict(_))));
    let state = fresh.refresh(&tenant, TRACES).await.unwrap();
    assert!(!state.files.contains_key("a0"));
    assert!(
        state.tombstones.contains_key("a0"),
        "a removal leaves a tombstone"
    );
    assert_eq!(state.files.len(), 2 * n);

    // Another tenant sees nothing of this one.
    let other = TenantId::new("conformance-other").unwrap();
    assert!(
        fresh
            .refresh(&other, TRACES)
            .await
            .unwrap()
            .files
            .is_empty()
    );
    let tenants = fresh.list_tenants().await.unwrap();
    assert!(tenants.contains(&tenant));
}

pub fn span(
    trace: u8,
    span: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    start: i64,
    dur: i64,
) -> SpanRecord {
    let resource = Arc::new(Resource {
        service_name: service.to_string(),
        attributes: Attrs(vec![
            ("service.name".into(), AttrValue::Str(service.into())),
            (
                "k8s.pod.name".into(),
                AttrValue::Str(format!("{service}-7d9f")),
            ),
            ("custom.res".into(), AttrValue::Int(7)),
        ]),
    });
    SpanRecord {
        trace_id: [trace; 16],
        span_id: [span; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        trace_state: String::new(),
        name: name.to_string(),
        kind: SpanKind::Server,
        start_unix_nano: start,
        duration_nano: dur,
        status_code: if span % 5 == 4 {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        status_message: String::new(),
        resource,
        scope: Arc::new(Scope {
            name: "test".into(),
            version: "1".into(),
        }),
        attributes: Attrs(vec![
            ("http.route".into(), AttrValue::Str(format!("/r/{span}"))),
            (
                "http.response.status_code".into(),
                AttrValue::Int(200 + span as i64),
            ),
            (
                "custom.flag".into(),
                AttrValue::Bool(span.is_multiple_of(2)),
            ),
        ]),
        events: vec![Event {
            time_unix_nano: start + 1,
            name: "exception".into(),
            attributes: Attrs(vec![(
                "exception.message".into(),
                AttrValue::Str("boom".into()),
            )]),
        }],
        links: vec![],
    }
}

const T0: i64 = 1_700_000_000_000_000_000;

/// Span files: upload, lookup by trace id, search, compaction, retention, garbage collection.
pub async fn spans_suite(storage: Storage) {
    let tenant = TenantId::new("spans").unwrap();
    let catalog = Catalog::new(storage.clone(), "w");
    let reader = Arc::new(SpanReader::new(storage.clone()));
    let format = Arc::new(SpanFormat::new(reader.clone()));
    let lease = Held::exclusive(&tenant);
    // Four flushes, each holding spans of traces 1..=4 (traces span files).
    for f in 0..4u8 {
        let spans: Vec<SpanRecord> = (1..=4u8)
            .flat_map(|t| {
                let base = T0 + t as i64 * 1_000_000;
                vec![
                    span(
                        t,
                        f * 10 + 1,
                        None,
                        "frontend",
                        "GET /",
                        base + f as i64,
                        5_000_000,
                    ),
                    span(
                        t,
                        f * 10 + 2,
                        Some(f * 10 + 1),
                        "checkout",
                        "charge",
                        base + 10 + f as i64,
                        1_000_000,
                    ),
                ]
            })
            .collect();
        let source = vec![WalSource {
            writer: "w".into(),
            max_seq: f as u64 + 1,
        }];
        let e = write_file(&catalog, &format, &tenant, chunks(spans), source)
            .await
            .unwrap();
        assert_eq!(e.rows, 8);
        assert_eq!(
            e.services,
            vec!["checkout".to_string(), "frontend".to_string()]
        );
        add(&catalog, &tenant, vec![e]).await;
    }
    let state = catalog.refresh(&tenant, TRACES).await.unwrap();
    assert_eq!(state.committed_seq("w"), Some(4));

    let lookup = |ids: Vec<u8>| {
        let (catalog, reader, tenant) = (&catalog, &reader, &tenant);
        async move {
            let ids: HashSet<[u8; 16]> = ids.into_iter().map(|i| [i; 16]).collect();
            let state = catalog.refresh(tenant, TRACES).await.unwrap();
            let mut out = Vec::new();
            for f in state.files() {
                if ids
                    .iter()
                    .any(|id| f.trace_filter.as_ref().is_none_or(|tf| tf.may_contain(id)))
                {
                    out.extend(reader.read_traces(f, &ids).await.unwrap());
                }
            }
            out
        }
    };
    let got = lookup(vec![2]).await;
    assert_eq!(got.len(), 8, "trace 2 has two spans in each of four files");
    let s = got.iter().find(|s| s.span_id == [2; 8]).unwrap();
    let original = span(
        2,
        2,
        Some(1),
        "checkout",
        "charge",
        T0 + 2_000_000 + 10,
        1_000_000,
    );
    assert_eq!(s.trace_id, original.trace_id);
    assert_eq!(s.parent_span_id, original.parent_span_id);
    assert_eq!(
        s.attributes.get("http.route"),
        original.attributes.get("http.route")
    );
    assert_eq!(
        s.attributes.get("custom.flag"),
        original.attributes.get("custom.flag")
    );
    assert_eq!(
        s.attributes.get("http.response.status_code"),
        Some(&AttrValue::Int(202))
    );
    assert_eq!(
        s.resource.attributes.get("k8s.pod.name"),
        original.resource.attributes.get("k8s.pod.name")
    );
    assert_eq!(
        s.resource.attributes.get("custom.res"),
        Some(&AttrValue::Int(7))
    );
    assert_eq!(s.events, original.events);
    assert!(lookup(vec![9]).await.is_empty());

    // Search: service + tag + duration over a time range.
    let filter = SpanFilter {
        start_unix_nano: T0,
        end_unix_nano: T0 + 10_000_000,
        service: Some("checkout".into()),
        tags: vec![
            ("custom.flag".into(), "true".into()),
            ("k8s.pod.name".into(), "checkout-7d9f".into()),
        ],
        min_duration_nano: Some(500_000),
        ..Default::default()
    };
    let mut hits = HashSet::new();
    for f in catalog.refresh(&tenant, TRACES).await.unwrap().files() {
        hits.extend(
            reader
                .scan(f, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|(t, _)| t),
        );
    }
    assert_eq!(hits.len(), 4);
    let f0 = catalog
        .refresh(&tenant, TRACES)
        .await
        .unwrap()
        .files()
        .next()
        .unwrap()
        .clone();
    let keys = reader
        .json_keys(&f0)
        .await
        .unwrap()
        .expect("json keys recorded");
    assert!(
        keys.contains("custom.flag") && keys.contains("custom.res"),
        "{keys:?}"
    );
    assert!(
        !keys.contains("http.route"),
        "promoted keys are not in the JSON columns"
    );
    let absent = SpanFilter {
        tags: vec![("no.such.key".into(), "1".into())],
        ..filter.clone()
    };
    assert_eq!(
        absent.columns(Some(&keys)),
        None,
        "a file without the key is skipped"
    );
    assert!(reader.scan(&f0, &absent).await.unwrap().is_empty());
    let none = SpanFilter {
        min_duration_nano: Some(2_000_000),
        ..filter.clone()
    };
    for f in catalog.refresh(&tenant, TRACES).await.unwrap().files() {
        assert!(reader.scan(f, &none).await.unwrap().is_empty());
    }

    // Compaction: four small files become one, same data.
    let before: Vec<Arc<FileEntry>> = catalog
        .refresh(&tenant, TRACES)
        .await
        .unwrap()
        .files()
        .cloned()
        .collect();
    assert_eq!(compact_spans(&catalog, &format, &tenant).await, 1);
    let state = catalog.refresh(&tenant, TRACES).await.unwrap();
    assert_eq!(state.files.len(), 1);
    let f = state.files.values().next().unwrap().clone();
    assert_eq!((f.rows, f.level), (32, 1));
    assert!(
        f.path.starts_with("spans/traces/2023/11/14/22/"),
        "the merged file lives in its data's hour: {}",
        f.path
    );
    assert_eq!(
        (f.min_time_unix_nano, f.max_time_unix_nano),
        (
            before.iter().map(|b| b.min_time_unix_nano).min().unwrap(),
            before.iter().map(|b| b.max_time_unix_nano).max().unwrap()
        ),
        "the merged file spans its inputs' time range"
    );
    assert_eq!(state.committed_seq("w"), Some(4));
    assert_eq!(lookup(vec![2]).await.len(), 8);
    let ops = reader.operations(&f).await.unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(state.tombstones.len(), 4, "the inputs became tombstones");

    // Garbage: the grace counts from the removal, so the inputs stay readable for now...
    let hour = Duration::from_secs(3600);
    assert_eq!(
        collect_garbage(&catalog, &tenant, TRACES, hour, &lease)
            .await
            .unwrap(),
        0
    );
    for old in &before {
        assert_eq!(reader.read_all(old).await.unwrap().len(), 1, "{}", old.path);
    }
    // ...and are deleted once it has passed, and their tombstones purged.
    assert_eq!(
        collect_garbage(&catalog, &tenant, TRACES, Duration::ZERO, &lease)
            .await
            .unwrap(),
        4
    );
    let state = catalog.refresh(&tenant, TRACES).await.unwrap();
    assert!(state.tombstones.is_empty());
    for old in &before {
        let gone = storage.store.head(&Path::from(old.path.as_str())).await;
        assert!(
            matches!(gone, Err(object_store::Error::NotFound { .. })),
            "{}",
            old.path
        );
    }
    assert_eq!(lookup(vec![3]).await.len(), 8);

    // An upload no commit names is an orphan: swept once old enough, live files never.
    let orphan = Path::from("spans/traces/2023/11/14/22/orphan.parquet");
    storage
        .store
        .put(&orphan, PutPayload::from("x"))
        .await
        .unwrap();
    assert_eq!(
        sweep_orphans(&catalog, &tenant, TRACES, hour, &lease)
            .await
            .unwrap(),
        0,
        "too young"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        sweep_orphans(&catalog, &tenant, TRACES, Duration::from_secs(1), &lease)
            .await
            .unwrap(),
        1
    );
    assert_eq!(lookup(vec![3]).await.len(), 8);

    // Retention: everything is from 2023, so a day's retention drops it.
    assert_eq!(
        apply_retention(
            &catalog,
            &tenant,
            TRACES,
            Duration::from_secs(86400),
            &lease
        )
        .await
        .unwrap(),
        1
    );
    assert!(
        catalog
            .refresh(&tenant, TRACES)
            .await
            .unwrap()
            .files
            .is_empty()
    );
    assert_eq!(
        collect_garbage(&catalog, &tenant, TRACES, Duration::ZERO, &lease)
            .await
            .unwrap(),
        1
    );
}
