//! Metrics as Prometheus sees them: a series is a sorted set of labels (its metric name under
//! `__name__`) and float samples with millisecond timestamps. OTLP data points become such
//! series at the collector edge (histograms as `_bucket`/`_sum`/`_count`, ...), remote write
//! sends them as they are. Stale markers are Prometheus's special NaN and are kept bit for bit.

use std::sync::Arc;

use crate::fresh::Rows;
use crate::model::TraceId;

/// The label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// The NaN bit pattern Prometheus writes as a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

type Pair = (Arc<str>, Arc<str>);

/// A series' labels, sorted by name, names unique, no empty values. Names and values are
/// shared strings: queries clone and reshape label sets (dropping the name, grouping keys),
/// which then costs reference counts, not a copy of every string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Pair>);

fn pair((k, v): (String, String)) -> Pair {
    (Arc::from(k), Arc::from(v))
}

impl Labels {
    /// Sorts `pairs`, drops empty values and keeps the last of repeated names.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        // Of repeated names the later pair wins (stable sort keeps sending order).
        let mut out: Vec<Pair> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if *last.0 == *p.0 => *last = pair(p),
                _ => out.push(pair(p)),
            }
        }
        Labels(out)
    }

    /// Labels already sorted with unique names (checked in debug builds).
    pub fn from_sorted(pairs: Vec<(String, String)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        Labels(pairs.into_iter().map(pair).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The metric name ("" when there is none).
    pub fn name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Sets (or with an empty value removes) one label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| (**k).cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = Arc::from(value),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (Arc::from(name), Arc::from(value))),
        }
    }

    /// Only the labels named in `names` (shared, not copied).
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| **n == **k))
                .cloned()
                .collect(),
        )
    }

    /// Without the labels named in `names` (shared, not copied).
    pub fn drop_all(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| **n == **k))
                .cloned()
                .collect(),
        )
    }

    pub fn without(&self, name: &str) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| &**k != name)
                .cloned()
                .collect(),
        )
    }

    /// A 64-bit hash of the label set (XXH3 over names and values), the same in every
    /// process: merges of series read from several places key on it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = twox_hash::XxHash3_64::new();
        for (k, v) in &self.0 {
            std::hash::Hasher::write(&mut h, k.as_bytes());
            std::hash::Hasher::write(&mut h, &[0xff]);
            std::hash::Hasher::write(&mut h, v.as_bytes());
            std::hash::Hasher::write(&mut h, &[0xfe]);
        }
        std::hash::Hasher::finish(&h)
    }

    /// The labels other than the metric name as one canonical text (JSON object, sorted
    /// keys): the `labels` column of metric files.
    pub fn key_without_name(&self) -> String {
        let mut out = String::with_capacity(16 * self.0.len());
        out.push('{');
        let mut first = true;
        for (k, v) in self.0.iter().filter(|(k, _)| &**k != METRIC_NAME) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&serde_json::Value::String(k.to_string()).to_string());
            out.push(':');
            out.push_str(&serde_json::Value::String(v.to_string()).to_string());
        }
        out.push('}');
        out
    }

    /// The inverse of [`Labels::key_without_name`], with the metric name added back.
    pub fn from_key(name: &str, key: &str) -> Result<Labels, String> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(key).map_err(|e| format!("bad labels column value: {e}"))?;
        let mut pairs: Vec<(String, String)> = map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
            .collect();
        if !name.is_empty() {
            pairs.push((METRIC_NAME.to_string(), name.to_string()));
        }
        Ok(Labels::new(pairs))
    }
}

impl std::fmt::Display for Labels {
    /// Prometheus's text form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())?;
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One sample: milliseconds since the epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

/// A series with samples, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Arc<Labels>,
    pub samples: Vec<Sample>,
}

/// What Prometheus's metadata says about a metric family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MetricMeta {
    pub metric: String,
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or
    /// `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    pub unit: String,
    pub help: String,
}

/// One sample of a chunk: an index into the chunk's series, time (ms) and value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub series: u32,
    pub t: i64,
    pub v: f64,
}

/// An exemplar: one measurement behind a series' samples, with labels naming where it was
/// taken (`trace_id`, `span_id`, ...), so a chart's point leads to the trace that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Arc<Labels>,
    pub t: i64,
    pub v: f64,
}

/// One exemplar of a chunk: an index into the chunk's series and the exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct ExemplarPoint {
    pub series: u32,
    pub exemplar: Exemplar,
}

/// A series' exemplars, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesExemplars {
    pub labels: Arc<Labels>,
    pub exemplars: Vec<Exemplar>,
}

/// The samples of one export, as the metrics lane buffers them: flat points referring to
/// the export's series (labels shared with the collector's series cache, so a sample costs
/// no allocation), and the exemplars sent with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricRows {
    pub series: Vec<Arc<Labels>>,
    pub points: Vec<Point>,
    pub exemplars: Vec<ExemplarPoint>,
    pub metadata: Vec<MetricMeta>,
}

impl MetricRows {
    /// Builds rows from whole series (tests, tools).
    pub fn from_series(series: Vec<Series>, metadata: Vec<MetricMeta>) -> Self {
        let mut rows = MetricRows {
            metadata,
            ..MetricRows::default()
        };
        for s in series {
            let i = rows.series.len() as u32;
            rows.series.push(s.labels);
            rows.points.extend(s.samples.iter().map(|x| Point {
                series: i,
                t: x.t,
                v: x.v,
            }));
        }
        rows
    }

    /// The rows as whole series (in the chunk's order; a series named twice appears twice).
    pub fn to_series(&self) -> Vec<Series> {
        let mut out: Vec<Series> = self
            .series
            .iter()
            .map(|l| Series {
                labels: l.clone(),
                samples: Vec::new(),
            })
            .collect();
        for p in &self.points {
            if let Some(s) = out.get_mut(p.series as usize) {
                s.samples.push(Sample { t: p.t, v: p.v });
            }
        }
        out.retain(|s| !s.samples.is_empty());
        out
    }
}

impl Rows for MetricRows {
    /// Samples and exemplars: an export of exemplars only still makes a chunk.
    fn len(&self) -> usize {
        self.points.len() + self.exemplars.len()
    }
    fn trace_ids(&self) -> Vec<TraceId> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sort_drop_empty_and_round_trip_through_the_column_key() {
        let l = Labels::new(vec![
            ("job".into(), "api".into()),
            ("__name__".into(), "up".into()),
            ("empty".into(), String::new()),
            ("a\"b".into(), "x\ny".into()),
            ("job".into(), "web".into()),
        ]);
        assert_eq!(l.name(), "up");
        assert_eq!(l.get("job"), Some("web"));
        assert_eq!(l.get("empty"), None);
        let key = l.key_without_name();
        assert_eq!(key, r#"{"a\"b":"x\ny","job":"web"}"#);
        assert_eq!(Labels::from_key("up", &key).unwrap(), l);
        assert_eq!(l.to_string(), "up{a\"b=\"x\\ny\", job=\"web\"}");
        let mut m = l.clone();
        m.set("job", "");
        m.set("zone", "eu");
        assert_eq!(m.get("job"), None);
        assert_eq!(m.get("zone"), Some("eu"));
    }

    #[test]
    fn stale_markers_are_one_nan_among_many() {
        assert!(is_stale(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale(f64::NAN));
    }
}
