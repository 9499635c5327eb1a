//! Reading series: a selector (label matchers and a time range) against a tenant's metric
//! files and the collector's fresh chunks. The catalog prunes files by time and by their
//! series index; a file's row groups by the `metric` column's statistics when the selector
//! names its metric; then the series runs of the rows are matched once per series. Series
//! found in several places are merged (one sample per timestamp). Exemplars are selected
//! the same way from the exemplar row groups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use loupe_core::TenantId;
use parquet::file::statistics::Statistics;

use crate::catalog::{Catalog, FileEntry};
use crate::error::StorageError;
use crate::fresh::Chunk;
use crate::metrics::exemplars::{batch_exemplars, first_exemplar_group, merge_exemplars};
use crate::metrics::file::{
    METRIC, Run, SAMPLE_COLUMNS, batch_series, file_metadata, merge_metadata, merge_unordered,
};
use crate::metrics::index::{LabelMatcher, MatchOp, matches_all};
use crate::metrics::model::{METRIC_NAME, MetricMeta, MetricRows, Sample, Series, SeriesExemplars};
use crate::parquet_files::{ParquetFiles, column_index};
use crate::store::{Signal, Storage};

/// Files read at once by one selection.
const FILES_AT_ONCE: usize = 4;

/// Bytes of decoded row groups kept (16 bytes a sample plus labels).
const DECODED_CACHE_BYTES: u64 = 256 << 20;

/// Row groups a file may have for [`MetricReader::forget`] to drop (a file holds at most a
/// few million samples, 128k per row group).
const MAX_ROW_GROUPS: usize = 256;

#[derive(Clone)]
struct BySamples;

impl quick_cache::Weighter<(String, usize), Arc<Group>> for BySamples {
    fn weight(&self, _: &(String, usize), v: &Arc<Group>) -> u64 {
        v.series
            .iter()
            .map(|s| s.samples.len() as u64 * 16 + 160)
            .sum::<u64>()
            .max(1)
    }
}

/// A decoded row group: its series, and which of them each metric name has (a selector
/// naming its metric looks at those only, not at every series of the group).
pub struct Group {
    series: Vec<Series>,
    /// Each series' [`Labels::fingerprint`](crate::metrics::Labels::fingerprint).
    fingerprints: Vec<u64>,
    by_metric: HashMap<String, Vec<u32>, foldhash::fast::RandomState>,
}

impl Group {
    fn new(series: Vec<Series>) -> Self {
        let mut by_metric: HashMap<String, Vec<u32>, foldhash::fast::RandomState> =
            HashMap::default();
        for (i, s) in series.iter().enumerate() {
            match by_metric.get_mut(s.labels.name()) {
                Some(v) => v.push(i as u32),
                None => {
                    by_metric.insert(s.labels.name().to_string(), vec![i as u32]);
                }
            }
        }
        let fingerprints = series.iter().map(|s| s.labels.fingerprint()).collect();
        Group {
            series,
            fingerprints,
            by_metric,
        }
    }

    /// The series that may match `names` (the selector's `__name__="..."` values; every
    /// series when it has none).
    fn candidates<'a>(
        &'a self,
        names: &[&str],
    ) -> Box<dyn Iterator<Item = (u64, &'a Series)> + 'a> {
        let at = move |i: usize| Some((*self.fingerprints.get(i)?, self.series.get(i)?));
        match names.first() {
            None => Box::new((0..self.series.len()).filter_map(at)),
            Some(n) => Box::new(
                self.by_metric
                    .get(*n)
                    .into_iter()
                    .flatten()
                    .filter_map(move |&i| at(i as usize)),
            ),
        }
    }
}

/// Reads metric files: footers cached per file, and decoded row groups (every series with
/// every sample) by weight, so a warm query over immutable files does no Parquet decoding.
pub struct MetricReader {
    files: ParquetFiles,
    decoded: quick_cache::sync::Cache<(String, usize), Arc<Group>, BySamples>,
}

/// What one selection asks for: series matching every matcher, samples in
/// `[start_ms, end_ms]`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub matchers: Vec<LabelMatcher>,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl MetricReader {
    pub fn new(storage: Storage) -> Self {
        MetricReader {
            files: ParquetFiles::new(storage),
            decoded: quick_cache::sync::Cache::with_weighter(4096, DECODED_CACHE_BYTES, BySamples),
        }
    }

    pub fn storage(&self) -> &Storage {
        self.files.storage()
    }

    pub fn forget(&self, id: &str) {
        self.files.forget(id);
        for g in 0..MAX_ROW_GROUPS {
            self.decoded.remove(&(id.to_string(), g));
        }
    }

    /// One row group, decoded whole (through the cache).
    async fn row_group(
        &self,
        entry: &FileEntry,
        meta: &parquet::arrow::arrow_reader::ArrowReaderMetadata,
        g: usize,
    ) -> Result<Arc<Group>, StorageError> {
        let key = (entry.id.clone(), g);
        if let Some(v) = self.decoded.get(&key) {
            return Ok(v);
        }
        let batches = self
            .files
            .read(
                entry,
                meta.clone(),
                vec![g],
                None,
                Some(&SAMPLE_COLUMNS),
                None,
            )
            .await?;
        let path = entry.path.clone();
        let series = loupe_core::cpu::run(move || {
            let mut out = Vec::new();
            let mut run = Run::default();
            for b in &batches {
                batch_series(
                    &path,
                    &mut run,
                    b,
                    i64::MIN,
                    i64::MAX,
                    &mut |_| true,
                    &mut out,
                )?;
            }
            Ok::<_, StorageError>(Arc::new(Group::new(out)))
        })
        .await??;
        self.decoded.insert(key, series.clone());
        Ok(series)
    }

    /// The catalog's files that may hold series of `sel`.
    pub async fn candidates(
        catalog: &Catalog,
        tenant: &TenantId,
        max_age: Duration,
        sel: &Selector,
    ) -> Result<Vec<Arc<FileEntry>>, StorageError> {
        let state = catalog.snapshot(tenant, Signal::Metrics, max_age).await?;
        let (start, end) = (
            sel.start_ms.saturating_mul(1_000_000),
            sel.end_ms.saturating_mul(1_000_000),
        );
        Ok(state
            .files()
            .filter(|f| f.overlaps(start, end))
            .filter(|f| {
                f.series
                    .as_ref()
                    .is_none_or(|ix| ix.may_match(&sel.matchers))
            })
            .cloned()
            .collect())
    }

    /// The series of one file that match `sel`, each with its labels' fingerprint.
    pub async fn read_file(
        &self,
        entry: &FileEntry,
        sel: &Selector,
    ) -> Result<Vec<(u64, Series)>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let names: Vec<&str> = sel
            .matchers
            .iter()
            .filter(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.as_str())
            .collect();
        let metric_col = column_index(&meta, METRIC);
        let samples_end =
            first_exemplar_group(meta.metadata().file_metadata().key_value_metadata())
                .unwrap_or(usize::MAX);
        let groups: Vec<usize> = meta
            .metadata()
            .row_groups()
            .iter()
            .enumerate()
            .take(samples_end)
            .filter(|(_, rg)| {
                let Some(stats) = metric_col.and_then(|c| rg.column(c).statistics()) else {
                    return true;
                };
                let Statistics::ByteArray(s) = stats else {
                    return true;
                };
                let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt()) else {
                    return true;
                };
                names
                    .iter()
                    .all(|n| lo.data() <= n.as_bytes() && n.as_bytes() <= hi.data())
            })
            .map(|(i, _)| i)
            .collect();
        let mut out = Vec::new();
        for g in groups {
            let decoded = self.row_group(entry, &meta, g).await?;
            for (f, s) in decoded
                .candidates(&names)
                .filter(|(_, s)| matches_all(&sel.matchers, &s.labels))
            {
                let lo = s.samples.partition_point(|x| x.t < sel.start_ms);
                let hi = s.samples.partition_point(|x| x.t <= sel.end_ms);
                if lo < hi {
                    out.push((
                        f,
                        Series {
                            labels: s.labels.clone(),
                            samples: s.samples[lo..hi].to_vec(),
                        },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The series matching `sel` in files and `fresh`, merged.
    pub async fn select(
        &self,
        catalog: &Catalog,
        tenant: &TenantId,
        max_age: Duration,
        fresh: Vec<Arc<Chunk<MetricRows>>>,
        sel: &Selector,
    ) -> Result<Vec<Series>, StorageError> {
        let mut files = Self::candidates(catalog, tenant, max_age, sel).await?;
        // In time order, kept in order: a series found in several files then comes out of
        // the merge already sorted, with nothing to sort.
        files.sort_by_key(|f| (f.min_time_unix_nano, f.max_time_unix_nano));
        let mut parts: Vec<(u64, Series)> = futures::stream::iter(files)
            .map(|f| async move { self.read_file(&f, sel).await })
            .buffered(FILES_AT_ONCE)
            .try_concat()
            .await?;
        parts.extend(
            fresh_series(&fresh, sel)
                .into_iter()
                .map(|s| (s.labels.fingerprint(), s)),
        );
        let mut merged = merge_unordered(parts);
        merged.retain(|s| !s.samples.is_empty());
        Ok(merged)
    }

    /// The exemplars of series matching any of `selectors` (each with its time range), from
    /// files and `fresh`, merged by series. Exemplar row groups are small and read only
    /// here, so they are not cached.
    pub async fn exemplars(
        &self,
        catalog: &Catalog,
        tenant: &TenantId,
        max_age: Duration,
        fresh: Vec<Arc<Chunk<MetricRows>>>,
        selectors: &[Selector],
    ) -> Result<Vec<SeriesExemplars>, StorageError> {
        let mut parts = Vec::new();
        for sel in selectors {
            for f in Self::candidates(catalog, tenant, max_age, sel).await? {
                parts.extend(self.file_exemplars(&f, sel).await?);
            }
            for c in &fresh {
                let rows = c.rows();
                parts.extend(rows.exemplars.iter().filter_map(|e| {
                    let labels = rows.series.get(e.series as usize)?;
                    let x = &e.exemplar;
                    (x.t >= sel.start_ms && x.t <= sel.end_ms && matches_all(&sel.matchers, labels))
                        .then(|| SeriesExemplars {
                            labels: labels.clone(),
                            exemplars: vec![x.clone()],
                        })
                }));
            }
        }
        let mut merged = merge_exemplars(parts);
        merged.retain(|s| !s.exemplars.is_empty());
        Ok(merged)
    }

    /// The exemplars of one file that `sel` selects.
    async fn file_exemplars(
        &self,
        entry: &FileEntry,
        sel: &Selector,
    ) -> Result<Vec<SeriesExemplars>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let groups = meta.metadata().num_row_groups();
        let Some(first) =
            first_exemplar_group(meta.metadata().file_metadata().key_value_metadata())
        else {
            return Ok(Vec::new());
        };
        let batches = self
            .files
            .read(entry, meta, (first..groups).collect(), None, None, None)
            .await?;
        let path = entry.path.clone();
        let sel = sel.clone();
        loupe_core::cpu::run(move || {
            let mut out = Vec::new();
            for b in &batches {
                batch_exemplars(
                    &path,
                    b,
                    sel.start_ms,
                    sel.end_ms,
                    &mut |l| matches_all(&sel.matchers, l),
                    &mut out,
                )?;
            }
            Ok::<_, StorageError>(out)
        })
        .await?
    }

    /// The metadata of the metric families in files overlapping the time range and in fresh
    /// chunks (the newest wins).
    pub async fn metadata(
        &self,
        catalog: &Catalog,
        tenant: &TenantId,
        max_age: Duration,
        fresh: Vec<Arc<Chunk<MetricRows>>>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<MetricMeta>, StorageError> {
        let sel = Selector {
            matchers: Vec::new(),
            start_ms,
            end_ms,
        };
        let mut files = Self::candidates(catalog, tenant, max_age, &sel).await?;
        files.sort_by_key(|f| f.max_time_unix_nano);
        let mut all = Vec::new();
        for f in files {
            let meta = self.files.metadata(&f).await?;
            all.extend(file_metadata(
                &f.path,
                meta.metadata().file_metadata().key_value_metadata(),
            )?);
        }
        all.extend(fresh.iter().flat_map(|c| c.rows().metadata.iter().cloned()));
        Ok(merge_metadata(all))
    }
}

/// The fresh series matching `sel` (samples in its range).
pub fn fresh_series(fresh: &[Arc<Chunk<MetricRows>>], sel: &Selector) -> Vec<Series> {
    let mut out = Vec::new();
    for c in fresh {
        let rows = c.rows();
        let mut own: Vec<Option<Series>> = rows
            .series
            .iter()
            .map(|l| {
                matches_all(&sel.matchers, l).then(|| Series {
                    labels: l.clone(),
                    samples: Vec::new(),
                })
            })
            .collect();
        for p in &rows.points {
            if p.t >= sel.start_ms
                && p.t <= sel.end_ms
                && let Some(Some(s)) = own.get_mut(p.series as usize)
            {
                s.samples.push(Sample { t: p.t, v: p.v });
            }
        }
        out.extend(own.into_iter().flatten().filter(|s| !s.samples.is_empty()));
    }
    out
}
