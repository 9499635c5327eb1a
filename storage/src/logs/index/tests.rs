//! The log index against the records it was built from: candidates are a superset of the
//! matches and small for selective queries, opening an index reads only its footer, and a
//! warm search reads nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use loupe_core::TenantId;

use crate::catalog::{Catalog, Change, FileEntry};
use crate::fresh::Chunk;
use crate::lifecycle::write_file;
use crate::logs::LogFormat;
use crate::logs::filter::LogFilter;
use crate::logs::index::LogIndexReader;
use crate::logs::index::build::GRANULE_ROWS;
use crate::logs::index::query::candidates_query;
use crate::logs::index::split::{Footer, Ranges, SplitDirectory};
use crate::logs::index::tokens::Term;
use crate::logs::model::LogRecord;
use crate::logs::search::{LogQuery, Order, search};
use crate::model::{AttrValue, Attrs, Resource, Scope};
use crate::store::{Signal, Storage};

const T0: i64 = 1_700_000_000_000_000_000;
const LINES: i64 = 6000;

/// A trace id as random as real ones (ids that share their first 12 hex digits share an
/// index key).
fn tid(n: i64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    id[8..].copy_from_slice(&(n as u64).to_be_bytes());
    id
}

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service_name: service.into(),
        attributes: Attrs(vec![
            ("service.name".into(), AttrValue::Str(service.into())),
            (
                "k8s.pod.name".into(),
                AttrValue::Str(format!("{service}-7d9f")),
            ),
        ]),
    })
}

fn lines() -> Vec<LogRecord> {
    let services = [resource("checkout"), resource("cart"), resource("web")];
    let scope = Arc::new(Scope::default());
    (0..LINES)
        .map(|i| {
            let body = if i % 3 == 2 {
                format!(
                    r#"{{"msg":"served","trace_id":"{}","ip":"10.0.{}.{}"}}"#,
                    hex::encode(tid(i + 1)),
                    i % 7,
                    i % 5
                )
            } else {
                format!(
                    "GET /api/items/{} 200 req=r{:08x} took {}ms",
                    i % 50,
                    i * 7919,
                    i % 97
                )
            };
            LogRecord {
                time_unix_nano: T0 + i * 1_000_000,
                observed_unix_nano: T0 + i * 1_000_000,
                severity_number: if i % 10 == 0 { 17 } else { 9 },
                severity_text: String::new(),
                body: AttrValue::Str(body),
                attributes: Attrs(vec![(
                    "http.status_code".into(),
                    AttrValue::Int(if i % 10 == 0 { 500 } else { 200 }),
                )]),
                trace_id: (i % 3 == 1).then(|| tid(i)),
                span_id: None,
                flags: 0,
                event_name: String::new(),
                resource: services[(i % 3) as usize].clone(),
                scope: scope.clone(),
            }
        })
        .map(|mut r| {
            if r.trace_id.is_none() {
                (r.trace_id, r.span_id) = crate::logs::encode::context_in(r.body_text().as_ref());
            }
            r
        })
        .collect()
}

async fn stored() -> (Storage, Catalog, Arc<LogFormat>, TenantId, FileEntry) {
    let storage = Storage::in_memory();
    let tenant = TenantId::new("t").unwrap();
    let catalog = Catalog::new(storage.clone(), "w");
    let format = Arc::new(LogFormat::new(Arc::new(LogIndexReader::new(
        storage.clone(),
    ))));
    let chunks = vec![Arc::new(Chunk::new(lines(), 0))];
    let e = write_file(&catalog, &format, &tenant, chunks, vec![])
        .await
        .unwrap();
    catalog
        .commit(&tenant, Signal::Logs, Change::add(vec![e.clone()]))
        .await
        .unwrap();
    (storage, catalog, format, tenant, e)
}

fn filter() -> LogFilter {
    LogFilter {
        start_unix_nano: 0,
        end_unix_nano: i64::MAX,
        ..LogFilter::default()
    }
}

/// The granules the index offers for `f`, and those that hold a match (rows in file order:
/// by service, then time).
async fn offered_and_ideal(
    reader: &LogIndexReader,
    e: &FileEntry,
    f: &LogFilter,
) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let terms = f.prepared_terms();
    let top = reader
        .candidates(
            e,
            |ids: Option<&_>| candidates_query(f, &terms, e, ids),
            Order::NewestFirst,
            100_000,
        )
        .await
        .unwrap();
    let offered: BTreeSet<u32> = top.iter().map(|&(g, _)| g).collect();
    let mut rows = lines();
    rows.sort_by(|a, b| {
        (a.service_name(), a.time_unix_nano).cmp(&(b.service_name(), b.time_unix_nano))
    });
    let ideal = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| f.matches(r, &terms))
        .map(|(i, _)| (i / GRANULE_ROWS) as u32)
        .collect();
    let read = reader
        .read_granules(e, &offered.iter().copied().collect::<Vec<_>>())
        .await
        .unwrap();
    let passed = read.iter().filter(|r| f.matches(r, &terms)).count();
    let truth = rows.iter().filter(|r| f.matches(r, &terms)).count();
    assert_eq!(passed, truth, "every match is in an offered granule: {f:?}");
    (offered, ideal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_hold_every_match_and_selective_queries_offer_few() {
    let (_s, _c, format, _t, e) = stored().await;
    let reader = format.reader();
    let needle = format!("r{:08x}", 4000 * 7919);
    let cases: Vec<LogFilter> = vec![
        // A request id: exactly its line's granule.
        LogFilter {
            terms: vec![needle],
            ..filter()
        },
        // A lifted trace id (found through the body) and a record's own one.
        LogFilter {
            trace_id: Some(tid(6)),
            ..filter()
        },
        LogFilter {
            trace_id: Some(tid(7)),
            ..filter()
        },
        LogFilter {
            attributes: vec![("http.status_code".into(), "500".into())],
            ..filter()
        },
        LogFilter {
            service: Some("cart".into()),
            min_severity: Some(17),
            ..filter()
        },
        LogFilter {
            max_severity: Some(9),
            ..filter()
        },
        LogFilter {
            start_unix_nano: T0 + 1000 * 1_000_000,
            end_unix_nano: T0 + 1099 * 1_000_000,
            ..filter()
        },
        LogFilter {
            attributes: vec![("k8s.pod.name".into(), "web-7d9f".into())],
            ..filter()
        },
    ];
    for f in cases {
        let (offered, ideal) = offered_and_ideal(reader, &e, &f).await;
        assert!(!ideal.is_empty(), "{f:?}");
        assert!(offered.is_superset(&ideal), "{f:?}");
        // A granule that spans two services spans their time ranges too. A trace id written
        // in a line is found through the id filter: its block of granules (and rarely a
        // false one).
        let slack = if f.trace_id.is_some() {
            2 * crate::logs::index::ids::BLOCK_GRANULES as usize
        } else {
            2
        };
        assert!(
            offered.len() <= ideal.len() + slack,
            "{f:?}: {offered:?} for {ideal:?}"
        );
    }
    let needle = LogFilter {
        terms: vec![format!("r{:08x}", 4000 * 7919)],
        ..filter()
    };
    assert_eq!(offered_and_ideal(reader, &e, &needle).await.0.len(), 1);
    // An IP is its tokens: the index offers granules with all of them, the check keeps the
    // lines that have them in a row.
    let ip = LogFilter {
        terms: vec!["10.0.3.1".into()],
        ..filter()
    };
    let (offered, ideal) = offered_and_ideal(reader, &e, &ip).await;
    assert!(offered.is_superset(&ideal) && !ideal.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expressions_narrow_where_they_can_and_never_lose_a_match() {
    use crate::logs::expr::{Cond, Glob, LogExpr, Scalar, ValueTest};
    use std::ops::Bound;
    let (_s, _c, format, _t, e) = stored().await;
    let reader = format.reader();
    let words = |t: String| LogExpr::Cond(Cond::Words(Term::new(&t)));
    let needle = |i: i64| format!("r{:08x}", i * 7919);
    let glob = |p: &str| Glob::new(p).unwrap();
    let with = |x: LogExpr| LogFilter {
        expr: Some(x),
        ..filter()
    };
    // (expression, most granules it may offer; None: no narrowing expected)
    let cases: Vec<(LogExpr, Option<usize>)> = vec![
        (
            LogExpr::Any(vec![words(needle(4000)), words(needle(9))]),
            Some(2),
        ),
        // A prefix of one line's request id, short and as long as a key.
        (
            LogExpr::Cond(Cond::TokenGlob(glob(&format!("{}*", &needle(4000)[..7])))),
            Some(8),
        ),
        (
            LogExpr::Cond(Cond::TokenGlob(glob(&format!("{}*", needle(4000))))),
            Some(1),
        ),
        (LogExpr::Cond(Cond::TokenGlob(glob("*ms"))), None),
        // A trace id written in a line is an id token: its block of granules from the id
        // filter (and rarely a false one), and its prefixes through `id_prefix`.
        (words(hex::encode(tid(4002))), Some(3 * 16)),
        (
            LogExpr::Cond(Cond::TokenGlob(glob(&format!(
                "{}*",
                &hex::encode(tid(4002))[..6]
            )))),
            None,
        ),
        (
            LogExpr::Cond(Cond::Contains(format!(
                "\"trace_id\":\"{}",
                &hex::encode(tid(4002))[..10]
            ))),
            None,
        ),
        // A substring: its inner tokens are whole words of the line, its last a prefix.
        (
            LogExpr::Cond(Cond::Contains(format!("q={} to", needle(4000)))),
            Some(1),
        ),
        (LogExpr::Cond(Cond::Contains("200 req=r".into())), None),
        (
            LogExpr::Cond(Cond::Contains("GET /api/items/7 2".into())),
            None,
        ),
        (LogExpr::Not(Box::new(words("served".into()))), None),
        (
            LogExpr::All(vec![
                words(needle(4000)),
                LogExpr::Not(Box::new(words("served".into()))),
            ]),
            Some(1),
        ),
        (
            LogExpr::Cond(Cond::Attribute(
                "http.status_code".into(),
                ValueTest::Range(Bound::Included(Scalar::Num(400.0)), Bound::Unbounded),
            )),
            None,
        ),
        (
            LogExpr::Any(vec![
                LogExpr::Cond(Cond::Severity(17, 20)),
                LogExpr::Cond(Cond::Service(ValueTest::Glob(glob("ca*")))),
            ]),
            None,
        ),
        (
            LogExpr::All(vec![
                LogExpr::Cond(Cond::Severity(17, 20)),
                LogExpr::Cond(Cond::Service(ValueTest::Eq("cart".into()))),
            ]),
            None,
        ),
    ];
    for (x, most) in cases {
        let f = with(x);
        let (offered, ideal) = offered_and_ideal(reader, &e, &f).await;
        assert!(!ideal.is_empty(), "{f:?}");
        assert!(offered.is_superset(&ideal), "{f:?}");
        if let Some(most) = most {
            assert!(offered.len() <= most, "{f:?}: {offered:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_needle_costs_a_few_ranged_reads_cold_and_none_warm() {
    let (storage, catalog, format, tenant, e) = stored().await;
    let q = |needle: String| LogQuery {
        filter: LogFilter {
            terms: vec![needle],
            ..filter()
        },
        limit: 100,
        order: Order::NewestFirst,
    };
    let before = storage.get_requests();
    let hits = search(
        &catalog,
        format.reader(),
        &tenant,
        Duration::ZERO,
        vec![],
        &q(format!("r{:08x}", 300 * 7919)),
    )
    .await
    .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].time_unix_nano, T0 + 300 * 1_000_000);
    let cold = storage.get_requests() - before;
    // The index footer and id filter; the term's dictionary block (two reads) and posting
    // list; the time column to order the hits; the Parquet footer (tail, metadata, page
    // index) and the granule's pages (here one coalesced read).
    assert!(cold <= 10, "{cold} GETs for a needle in a cold file");
    let before = storage.get_requests();
    search(
        &catalog,
        format.reader(),
        &tenant,
        Duration::ZERO,
        vec![],
        &q(format!("r{:08x}", 300 * 7919)),
    )
    .await
    .unwrap();
    let warm = storage.get_requests() - before;
    // The term and postings are cached; only the row's pages are read again.
    assert!(warm < cold, "warm {warm} cold {cold}");
    let loc = e.index.unwrap();
    assert!(
        loc.footer_len < e.bytes / 4,
        "the footer is a small part of the object"
    );
}

#[derive(Debug)]
struct Refuses;

impl Ranges for Refuses {
    fn read(&self, range: std::ops::Range<u64>) -> std::io::Result<tantivy::directory::OwnedBytes> {
        Err(std::io::Error::other(format!(
            "read {range:?} outside the hot cache"
        )))
    }
}

#[tokio::test]
async fn opening_an_index_needs_only_its_footer() {
    let (storage, _c, _f, _t, e) = stored().await;
    let loc = e.index.unwrap();
    let path = Catalog::path_of(&e);
    use object_store::ObjectStoreExt;
    let bytes = storage
        .store
        .get_range(&path, loc.footer_offset..loc.footer_offset + loc.footer_len)
        .await
        .unwrap();
    let footer = Footer::parse(tantivy::directory::OwnedBytes::new(bytes.to_vec())).unwrap();
    let dir = SplitDirectory::new(Arc::new(footer), Arc::new(Refuses));
    let searcher = crate::logs::index::build::open(&dir).unwrap();
    assert_eq!(
        searcher.num_docs(),
        (LINES as u64).div_ceil(GRANULE_ROWS as u64)
    );
}

/// Counts per level of the records of `lines()` that `f` matches.
fn truth(f: &LogFilter) -> [u64; 7] {
    let terms = f.prepared_terms();
    let mut out = [0; 7];
    for r in lines().iter().filter(|r| f.matches(r, &terms)) {
        out[crate::logs::histogram::level_of(r.severity_number)] += 1;
    }
    out
}

fn summed(h: &crate::logs::Histogram) -> [u64; 7] {
    let mut out = [0; 7];
    for b in &h.counts {
        for (o, c) in out.iter_mut().zip(b) {
            *o += c;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_count_every_match_once_by_level() {
    let (_s, catalog, format, tenant, _e) = stored().await;
    let window = LogFilter {
        start_unix_nano: T0,
        end_unix_nano: T0 + LINES * 1_000_000 - 1,
        ..LogFilter::default()
    };
    let cases = vec![
        window.clone(),
        LogFilter {
            service: Some("cart".into()),
            min_severity: Some(17),
            ..window.clone()
        },
        LogFilter {
            terms: vec!["served".into()],
            ..window.clone()
        },
        LogFilter {
            terms: vec![format!("r{:08x}", 4000 * 7919)],
            ..window.clone()
        },
        LogFilter {
            attributes: vec![("http.status_code".into(), "500".into())],
            ..window.clone()
        },
    ];
    let step = 1_000_000_000; // one second: 6000 lines 1 ms apart make six buckets
    for f in cases {
        for fresh in [
            vec![],
            vec![Arc::new(Chunk::new(lines()[..300].to_vec(), 0))],
        ] {
            let h = crate::logs::histogram(
                crate::logs::scan::ScanSource {
                    catalog: &catalog,
                    reader: format.reader(),
                    tenant: &tenant,
                    max_age: Duration::ZERO,
                    fresh,
                },
                &f,
                step,
            )
            .await
            .unwrap();
            assert_eq!(h.counts.len(), 6);
            assert_eq!(summed(&h), truth(&f), "{f:?}");
        }
    }
    // Per bucket: the first second holds the first 1000 lines.
    let h = crate::logs::histogram(
        crate::logs::scan::ScanSource {
            catalog: &catalog,
            reader: format.reader(),
            tenant: &tenant,
            max_age: Duration::ZERO,
            fresh: vec![],
        },
        &window,
        step,
    )
    .await
    .unwrap();
    assert_eq!(h.counts[0].iter().sum::<u64>(), 1000);
    assert_eq!(h.counts[0][5], 100, "every tenth line is an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_count_every_line_once_by_resource_and_bucket() {
    use crate::logs::scan::{ScanSource, scan};
    use crate::logs::streams::{Buckets, Streams};
    let (_s, catalog, format, tenant, _e) = stored().await;
    let all = lines();
    let bytes: u64 = all.iter().map(|r| r.body_text().len() as u64).sum();
    let buckets = Buckets {
        start: T0,
        step: 1_000_000_000,
        n: 6,
    };
    for fresh in [vec![], vec![Arc::new(Chunk::new(all[..300].to_vec(), 0))]] {
        for (with_bytes, b) in [(false, None), (true, None), (true, Some(buckets))] {
            let src = ScanSource {
                catalog: &catalog,
                reader: format.reader(),
                tenant: &tenant,
                max_age: Duration::ZERO,
                fresh: fresh.clone(),
            };
            let s = scan(src, &filter(), || Streams::new(with_bytes, b))
                .await
                .unwrap();
            let resources = s.resources();
            assert_eq!(resources.len(), 3, "one stream per service");
            let lines: u64 = resources.iter().flat_map(|(_, v)| v).map(|x| x.lines).sum();
            let got_bytes: u64 = resources.iter().flat_map(|(_, v)| v).map(|x| x.bytes).sum();
            assert_eq!(lines, all.len() as u64);
            assert_eq!(got_bytes, if with_bytes { bytes } else { 0 });
            if let Some(b) = b {
                // 6000 lines 1 ms apart: a thousand a second.
                for i in 0..b.n {
                    let n: u64 = resources.iter().map(|(_, v)| v[i].lines).sum();
                    assert_eq!(n, 1000, "bucket {i}");
                }
            }
        }
    }
}
