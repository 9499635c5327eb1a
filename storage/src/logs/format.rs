//! Logs as a [`Format`]: a flush encodes the chunks' records into one object, a Parquet file
//! sorted by (service, time) and its index; compaction reads its inputs whole (a merge is bounded by the compaction
//! policy's rows and bytes) and writes them again, sorted, at the compaction zstd level.

use std::sync::Arc;

use object_store::ObjectStoreExt;

use crate::catalog::{Catalog, FileEntry, FileFormat};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::lifecycle::{EncodedFile, Format};
use crate::logs::decode::{decode_batch, read_file};
use crate::logs::encode::encode_records;
use crate::logs::index::LogIndexReader;
use crate::logs::model::LogRecord;
use crate::logs::schema::SCHEMA_VERSION;
use crate::store::{Signal, Storage};

/// zstd level of files written by flushes and by compaction.
const FLUSH_ZSTD_LEVEL: i32 = 3;
const COMPACTION_ZSTD_LEVEL: i32 = 9;

pub struct LogFormat {
    reader: Arc<LogIndexReader>,
}

impl LogFormat {
    pub fn new(reader: Arc<LogIndexReader>) -> Self {
        LogFormat { reader }
    }

    pub fn reader(&self) -> &Arc<LogIndexReader> {
        &self.reader
    }
}

/// Every record of a log file (its Parquet part, read whole).
pub async fn read_records(
    storage: &Storage,
    f: &FileEntry,
) -> Result<Vec<LogRecord>, StorageError> {
    let path = Catalog::path_of(f);
    let bytes = storage
        .store
        .get_range(&path, 0..f.parquet_len())
        .await
        .map_err(|e| StorageError::store("get", &path, e))?;
    let name = f.path.clone();
    loupe_core::cpu::run(move || {
        let mut out = Vec::new();
        for b in read_file(&name, bytes)? {
            out.extend(decode_batch(&b)?);
        }
        Ok::<_, StorageError>(out)
    })
    .await?
}

impl Format for LogFormat {
    type Rows = Vec<LogRecord>;
    const SIGNAL: Signal = Signal::Logs;
    const FILE_FORMAT: FileFormat = FileFormat::Parquet;
    const EXTENSION: &'static str = "parquet";
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;

    fn encode(&self, chunks: &[Arc<Chunk<Self::Rows>>]) -> Result<EncodedFile, StorageError> {
        let records: Vec<&LogRecord> = chunks.iter().flat_map(|c| c.rows().iter()).collect();
        encode_records(&records, FLUSH_ZSTD_LEVEL)
    }

    async fn merge(&self, files: &[Arc<FileEntry>]) -> Result<EncodedFile, StorageError> {
        let mut records = Vec::new();
        for f in files {
            records.extend(read_records(self.reader.storage(), f).await?);
        }
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&LogRecord> = records.iter().collect();
            encode_records(&refs, COMPACTION_ZSTD_LEVEL)
        })
        .await
        .map_err(|e| StorageError::Internal(format!("compaction task failed: {e}")))?
    }

    fn forget(&self, id: &str) {
        self.reader.forget(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Change;
    use crate::lifecycle::{CompactionPolicy, compact, lease::Held, write_file};
    use crate::logs::filter::LogFilter;
    use crate::logs::search::{LogQuery, Order, search};
    use crate::model::{AttrValue, Attrs, Resource, Scope};
    use loupe_core::TenantId;
    use std::time::Duration;

    const T0: i64 = 1_700_000_000_000_000_000;

    fn record(service: &str, t: i64, body: AttrValue, trace: Option<u8>) -> LogRecord {
        LogRecord {
            time_unix_nano: T0 + t,
            observed_unix_nano: T0 + t + 5,
            severity_number: if t % 2 == 0 { 9 } else { 17 },
            severity_text: if t % 2 == 0 { "INFO" } else { "ERROR" }.into(),
            body,
            attributes: Attrs(vec![
                ("http.status_code".into(), AttrValue::Int(200 + t)),
                ("user".into(), AttrValue::Str(format!("u{t}"))),
            ]),
            trace_id: trace.map(|b| [b; 16]),
            span_id: trace.map(|b| [b; 8]),
            flags: 1,
            event_name: if t == 3 {
                "login".into()
            } else {
                String::new()
            },
            resource: Arc::new(Resource {
                service_name: service.into(),
                attributes: Attrs(vec![
                    ("service.name".into(), AttrValue::Str(service.into())),
                    (
                        "k8s.pod.name".into(),
                        AttrValue::Str(format!("{service}-0")),
                    ),
                ]),
            }),
            scope: Arc::new(Scope {
                name: "app".into(),
                version: "1.0".into(),
            }),
        }
    }

    fn batch(from: i64) -> Vec<LogRecord> {
        (from..from + 10)
            .map(|t| {
                let body = match t % 3 {
                    0 => AttrValue::Str(format!("GET /api/items/{t} took {t}ms")),
                    1 => AttrValue::Map(Attrs(vec![(
                        "msg".into(),
                        AttrValue::Str(format!("structured {t}")),
                    )])),
                    _ => AttrValue::Bytes(vec![0, 159, t as u8]),
                };
                record(
                    if t % 2 == 0 { "web" } else { "db" },
                    t,
                    body,
                    (t % 4 == 0).then_some(t as u8),
                )
            })
            .collect()
    }

    async fn write(
        catalog: &Catalog,
        format: &Arc<LogFormat>,
        tenant: &TenantId,
        recs: Vec<LogRecord>,
    ) {
        let chunks = vec![Arc::new(Chunk::new(recs, 0))];
        let e = write_file(catalog, format, tenant, chunks, vec![])
            .await
            .unwrap();
        catalog
            .commit(tenant, Signal::Logs, Change::add(vec![e]))
            .await
            .unwrap();
    }

    fn all(order: Order) -> LogQuery {
        LogQuery {
            filter: LogFilter {
                start_unix_nano: 0,
                end_unix_nano: i64::MAX,
                ..LogFilter::default()
            },
            limit: 1000,
            order,
        }
    }

    #[tokio::test]
    async fn records_round_trip_through_files_and_compaction_keeps_them_all() {
        let storage = crate::store::Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let format = Arc::new(LogFormat::new(Arc::new(LogIndexReader::new(
            storage.clone(),
        ))));
        let mut sent = Vec::new();
        for i in 0..4 {
            let recs = batch(i * 10);
            sent.extend(recs.clone());
            write(&catalog, &format, &tenant, recs).await;
        }
        let max_age = Duration::ZERO;
        let mut got = search(
            &catalog,
            format.reader(),
            &tenant,
            max_age,
            vec![],
            &all(Order::OldestFirst),
        )
        .await
        .unwrap();
        assert_eq!(got.len(), sent.len());
        let key = |r: &LogRecord| (r.time_unix_nano, r.service_name().to_string());
        got.sort_by_key(key);
        sent.sort_by_key(key);
        assert_eq!(got, sent, "every field survives the file");

        let lease = Held::exclusive(&tenant);
        let merges = compact(
            &catalog,
            &*format,
            &tenant,
            &CompactionPolicy::default(),
            &lease,
        )
        .await
        .unwrap();
        assert_eq!(merges, 1);
        let state = catalog.refresh(&tenant, Signal::Logs).await.unwrap();
        assert_eq!(state.files().count(), 1);
        let mut after = search(
            &catalog,
            format.reader(),
            &tenant,
            max_age,
            vec![],
            &all(Order::OldestFirst),
        )
        .await
        .unwrap();
        after.sort_by_key(key);
        assert_eq!(after, sent);

        // Newest first, limited; filters on service, severity, terms, attributes, trace.
        let newest = search(
            &catalog,
            format.reader(),
            &tenant,
            max_age,
            vec![],
            &LogQuery {
                limit: 3,
                ..all(Order::NewestFirst)
            },
        )
        .await
        .unwrap();
        let times: Vec<i64> = newest.iter().map(|r| r.time_unix_nano - T0).collect();
        assert_eq!(times, vec![39, 38, 37]);
        let mut q = all(Order::OldestFirst);
        q.filter.service = Some("web".into());
        q.filter.terms = vec!["get /API".into()];
        let hits = search(&catalog, format.reader(), &tenant, max_age, vec![], &q)
            .await
            .unwrap();
        let times: Vec<i64> = hits.iter().map(|r| r.time_unix_nano - T0).collect();
        assert_eq!(times, vec![0, 6, 12, 18, 24, 30, 36]);
        let mut q = all(Order::OldestFirst);
        q.filter.min_severity = Some(17);
        q.filter.attributes = vec![("http.status_code".into(), "213".into())];
        let hits = search(&catalog, format.reader(), &tenant, max_age, vec![], &q)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].time_unix_nano, T0 + 13);
        let mut q = all(Order::OldestFirst);
        q.filter.trace_id = Some([8; 16]);
        let hits = search(&catalog, format.reader(), &tenant, max_age, vec![], &q)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].span_id, Some([8; 8]));
    }

    #[tokio::test]
    async fn a_record_both_fresh_and_flushed_is_returned_once() {
        let storage = crate::store::Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let format = Arc::new(LogFormat::new(Arc::new(LogIndexReader::new(
            storage.clone(),
        ))));
        let recs = batch(0);
        write(&catalog, &format, &tenant, recs.clone()).await;
        let fresh = vec![
            Arc::new(Chunk::new(recs.clone(), 0)),
            Arc::new(Chunk::new(batch(100), 0)),
        ];
        let got = search(
            &catalog,
            format.reader(),
            &tenant,
            Duration::ZERO,
            fresh,
            &all(Order::NewestFirst),
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 20);
        assert_eq!(got[0].time_unix_nano, T0 + 109);
    }

    #[tokio::test]
    async fn context_written_in_the_text_is_stored_once_and_read_back() {
        let storage = crate::store::Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let format = Arc::new(LogFormat::new(Arc::new(LogIndexReader::new(
            storage.clone(),
        ))));
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let text = format!("GET / 200 traceparent=00-{id}-00f067aa0ba902b7-01");
        let mut lifted = record("web", 1, AttrValue::Str(text), None);
        let (t, s) = crate::logs::encode::context_in(lifted.body_text().as_ref());
        (lifted.trace_id, lifted.span_id) = (t, s);
        assert!(t.is_some() && s.is_some());
        // The same text on a record of another trace: its own ids are kept.
        let mut other = lifted.clone();
        other.time_unix_nano += 1;
        other.trace_id = Some([0xab; 16]);
        other.observed_unix_nano = other.time_unix_nano - 7;
        let sent = vec![lifted, other];
        write(&catalog, &format, &tenant, sent.clone()).await;
        let got = search(
            &catalog,
            format.reader(),
            &tenant,
            Duration::ZERO,
            vec![],
            &all(Order::OldestFirst),
        )
        .await
        .unwrap();
        assert_eq!(got, sent);
        let state = catalog.refresh(&tenant, Signal::Logs).await.unwrap();
        let f = state.files().next().unwrap();
        let filter = f.trace_filter.as_ref().unwrap();
        assert!(filter.may_contain(&t.unwrap()) && filter.may_contain(&[0xab; 16]));
        let path = Catalog::path_of(f);
        let bytes = storage
            .store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let parquet = bytes.slice(0..f.parquet_len() as usize);
        let batches = crate::logs::decode::read_file(&f.path, parquet).unwrap();
        let ids = batches[0]
            .column_by_name(crate::logs::schema::TRACE_ID)
            .unwrap();
        assert_eq!(
            ids.null_count(),
            1,
            "the lifted line stores no ids of its own"
        );
    }
}
