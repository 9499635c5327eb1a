//! Metrics as a [`Format`]: a flush merges the chunks' series (one sample per timestamp)
//! into one Parquet file; compaction reads its inputs whole (bounded by the compaction
//! policy) and writes them again at a higher zstd level.

use std::collections::HashMap;
use std::sync::Arc;

use object_store::ObjectStoreExt;

use crate::catalog::{Catalog, FileEntry, FileFormat};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::lifecycle::{EncodedFile, Format};
use crate::metrics::exemplars::{merge_exemplars, rows_exemplars};
use crate::metrics::file::{SCHEMA_VERSION, encode_series, merge_metadata, merge_series, read_all};
use crate::metrics::model::{Labels, MetricRows, Sample, Series};
use crate::metrics::select::MetricReader;
use crate::store::Signal;

const FLUSH_ZSTD_LEVEL: i32 = 3;

/// The chunks' samples as series sorted by labels, each in time order with one sample per
/// timestamp (the first written wins). Series are told apart by their label pointers first
/// (the collector's series cache shares them), by value only once per distinct pointer, so
/// a sample costs a vector push and its share of one sort.
pub fn merge_rows(chunks: &[&MetricRows]) -> Vec<Series> {
    type Fast = foldhash::fast::RandomState;
    let mut by_ptr: HashMap<*const Labels, u32, Fast> = HashMap::default();
    let mut by_value: HashMap<Arc<Labels>, u32, Fast> = HashMap::default();
    let mut labels: Vec<Arc<Labels>> = Vec::new();
    let total: usize = chunks.iter().map(|c| c.points.len()).sum();
    let mut points: Vec<(u32, i64, f64)> = Vec::with_capacity(total);
    for c in chunks {
        let ids: Vec<u32> = c
            .series
            .iter()
            .map(|l| {
                *by_ptr.entry(Arc::as_ptr(l)).or_insert_with(|| {
                    *by_value.entry(l.clone()).or_insert_with(|| {
                        labels.push(l.clone());
                        (labels.len() - 1) as u32
                    })
                })
            })
            .collect();
        points.extend(
            c.points
                .iter()
                .filter_map(|p| ids.get(p.series as usize).map(|&g| (g, p.t, p.v))),
        );
    }
    let mut order: Vec<u32> = (0..labels.len() as u32).collect();
    order.sort_unstable_by(|a, b| labels[*a as usize].cmp(&labels[*b as usize]));
    let mut rank = vec![0u32; labels.len()];
    for (r, &g) in order.iter().enumerate() {
        rank[g as usize] = r as u32;
    }
    // Points grouped by series rank (a counting sort: stable, so of equal timestamps the
    // first written stays first), then each series in time order: chunks come in WAL order,
    // so a series' points are nearly always sorted already and only a check is paid.
    let mut counts = vec![0usize; labels.len()];
    for p in &points {
        counts[rank[p.0 as usize] as usize] += 1;
    }
    let mut out: Vec<Series> = order
        .iter()
        .zip(&counts)
        .map(|(&g, &n)| Series {
            labels: labels[g as usize].clone(),
            samples: Vec::with_capacity(n),
        })
        .collect();
    for (g, t, v) in points {
        out[rank[g as usize] as usize].samples.push(Sample { t, v });
    }
    for s in &mut out {
        if !s.samples.is_sorted_by_key(|x| x.t) {
            s.samples.sort_by_key(|x| x.t);
        }
        s.samples.dedup_by_key(|x| x.t);
    }
    out
}
const COMPACTION_ZSTD_LEVEL: i32 = 9;

pub struct MetricFormat {
    reader: Arc<MetricReader>,
}

impl MetricFormat {
    pub fn new(reader: Arc<MetricReader>) -> Self {
        MetricFormat { reader }
    }

    pub fn reader(&self) -> &Arc<MetricReader> {
        &self.reader
    }
}

impl Format for MetricFormat {
    type Rows = MetricRows;
    const SIGNAL: Signal = Signal::Metrics;
    const FILE_FORMAT: FileFormat = FileFormat::Parquet;
    const EXTENSION: &'static str = "parquet";
    const SCHEMA_VERSION: u32 = SCHEMA_VERSION;
    /// A sample is 12 bytes stored against a span's hundreds: batches and merges of 32× the
    /// rows (4M samples, about 100 MB while merging) make files of an hour's worth of a few
    /// thousand series, where the span bound would leave them at 128k samples.
    const ROW_SCALE: u64 = 32;

    fn encode(&self, chunks: &[Arc<Chunk<Self::Rows>>]) -> Result<EncodedFile, StorageError> {
        let rows: Vec<&MetricRows> = chunks.iter().map(|c| c.rows()).collect();
        let series = merge_rows(&rows);
        let exemplars = rows_exemplars(&rows);
        let meta = merge_metadata(
            chunks
                .iter()
                .flat_map(|c| c.rows().metadata.iter().cloned()),
        );
        encode_series(&series, &exemplars, &meta, FLUSH_ZSTD_LEVEL)
    }

    async fn merge(&self, files: &[Arc<FileEntry>]) -> Result<EncodedFile, StorageError> {
        // Oldest first, so of duplicate samples the one written first stays.
        let mut files = files.to_vec();
        files.sort_by(|a, b| a.id.cmp(&b.id));
        let mut parts = Vec::new();
        let mut exemplars = Vec::new();
        let mut metas = Vec::new();
        for f in &files {
            let path = Catalog::path_of(f);
            let bytes = self
                .reader
                .storage()
                .store
                .get(&path)
                .await
                .map_err(|e| StorageError::store("get", &path, e))?
                .bytes()
                .await
                .map_err(|e| StorageError::store("get", &path, e))?;
            let name = f.path.clone();
            let all = loupe_core::cpu::run(move || read_all(&name, bytes)).await??;
            parts.extend(all.series);
            exemplars.extend(all.exemplars);
            metas.extend(all.metadata);
        }
        tokio::task::spawn_blocking(move || {
            encode_series(
                &merge_series(parts),
                &merge_exemplars(exemplars),
                &merge_metadata(metas),
                COMPACTION_ZSTD_LEVEL,
            )
        })
        .await
        .map_err(|e| StorageError::Internal(format!("compaction task failed: {e}")))?
    }

    /// Version 1 files (no exemplars) merge with version 2 ones: the columns they lack are
    /// read as absent.
    fn compactable(&self, f: &FileEntry) -> bool {
        (1..=SCHEMA_VERSION).contains(&f.schema_version)
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
    use crate::metrics::index::LabelMatcher;
    use crate::metrics::model::{Labels, Sample, Series};
    use crate::metrics::select::Selector;
    use loupe_core::TenantId;
    use std::time::Duration;

    fn rows(job: &str, from: i64) -> MetricRows {
        let labels = |name: &str| {
            Arc::new(Labels::new(vec![
                ("__name__".into(), name.into()),
                ("job".into(), job.into()),
            ]))
        };
        let mut rows = MetricRows::from_series(
            vec![
                Series {
                    labels: labels("up"),
                    samples: (0..10)
                        .map(|i| Sample {
                            t: from + i * 15_000,
                            v: 1.0,
                        })
                        .collect(),
                },
                Series {
                    labels: labels("requests_total"),
                    samples: (0..10)
                        .map(|i| Sample {
                            t: from + i * 15_000,
                            v: (from / 1000 + i) as f64,
                        })
                        .collect(),
                },
            ],
            vec![],
        );
        rows.exemplars.push(crate::metrics::ExemplarPoint {
            series: 1,
            exemplar: crate::metrics::Exemplar {
                labels: Arc::new(Labels::new(vec![(
                    "trace_id".into(),
                    format!("{job}-{from}"),
                )])),
                t: from + 5,
                v: 1.0,
            },
        });
        rows
    }

    #[tokio::test]
    async fn selection_prunes_files_reads_fresh_and_survives_compaction() {
        let storage = crate::store::Storage::in_memory();
        let tenant = TenantId::new("t").unwrap();
        let catalog = Catalog::new(storage.clone(), "w");
        let reader = Arc::new(MetricReader::new(storage.clone()));
        let format = Arc::new(MetricFormat::new(reader.clone()));
        const T0: i64 = 1_700_000_000_000;
        for (i, job) in ["api", "web", "api"].iter().enumerate() {
            let chunks = vec![Arc::new(Chunk::new(rows(job, T0 + i as i64 * 150_000), 0))];
            let e = write_file(&catalog, &format, &tenant, chunks, vec![])
                .await
                .unwrap();
            catalog
                .commit(&tenant, Signal::Metrics, Change::add(vec![e]))
                .await
                .unwrap();
        }
        let sel = |job: &str| Selector {
            matchers: vec![
                LabelMatcher::equal("__name__", "requests_total"),
                LabelMatcher::equal("job", job),
            ],
            start_ms: T0,
            end_ms: T0 + 3_600_000,
        };
        let files = MetricReader::candidates(&catalog, &tenant, Duration::ZERO, &sel("web"))
            .await
            .unwrap();
        assert_eq!(files.len(), 1, "the series index prunes the api files");
        let fresh = vec![Arc::new(Chunk::new(rows("api", T0 + 450_000), 0))];
        let got = reader
            .select(
                &catalog,
                &tenant,
                Duration::ZERO,
                fresh.clone(),
                &sel("api"),
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].samples.len(), 30);
        let exemplars = |fresh| {
            let (reader, catalog, tenant) = (&reader, &catalog, &tenant);
            async move {
                let found = reader
                    .exemplars(catalog, tenant, Duration::ZERO, fresh, &[sel("api")])
                    .await
                    .unwrap();
                assert_eq!(found.len(), 1);
                found[0]
                    .exemplars
                    .iter()
                    .map(|e| e.labels.get("trace_id").unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            }
        };
        let want = vec![
            format!("api-{T0}"),
            format!("api-{}", T0 + 300_000),
            format!("api-{}", T0 + 450_000),
        ];
        assert_eq!(exemplars(fresh.clone()).await, want);
        let lease = Held::exclusive(&tenant);
        let policy = CompactionPolicy {
            min_files: 2,
            ..CompactionPolicy::default()
        };
        let merges = compact(&catalog, &*format, &tenant, &policy, &lease)
            .await
            .unwrap();
        assert_eq!(merges, 1);
        let after = reader
            .select(
                &catalog,
                &tenant,
                Duration::ZERO,
                fresh.clone(),
                &sel("api"),
            )
            .await
            .unwrap();
        assert_eq!(after, got);
        assert_eq!(exemplars(fresh).await, want, "exemplars survive compaction");
    }
}
