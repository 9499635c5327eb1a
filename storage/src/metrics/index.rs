//! What a metric file's catalog entry says about its series, so a selector opens only the
//! files that can hold them: the metric names it holds (exact, sorted) and a Bloom filter of
//! its `name=value` label pairs. An equality matcher on a label other than the name must find
//! its pair in the filter; matchers on the name must match one of the names. Everything else
//! (regular expressions, negations) is decided on the rows.

use serde::{Deserialize, Serialize};
use twox_hash::XxHash3_64;

use crate::metrics::model::{Labels, METRIC_NAME};
use crate::spans::TraceIdFilter;

/// How a label matcher compares (regular expressions anchored by the caller).
#[derive(Debug, Clone)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Re(regex::Regex),
    NotRe(regex::Regex),
}

/// One label matcher of a selector. A series without the label matches as if its value
/// were empty, as in Prometheus.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl LabelMatcher {
    pub fn equal(name: &str, value: &str) -> Self {
        LabelMatcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
        }
    }

    pub fn matches(&self, v: &str) -> bool {
        match &self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Re(r) => r.is_match(v),
            MatchOp::NotRe(r) => !r.is_match(v),
        }
    }

    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get(&self.name).unwrap_or(""))
    }
}

/// Whether `l` satisfies every matcher.
pub fn matches_all(matchers: &[LabelMatcher], l: &Labels) -> bool {
    matchers.iter().all(|m| m.matches_labels(l))
}

/// The series index of one metric file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesIndex {
    /// Metric names in the file, sorted.
    pub metrics: Vec<String>,
    /// Label pairs (other than the name) in the file.
    pub labels: TraceIdFilter,
}

/// The 128-bit key of one label pair in the filter (two seeded XXH3 hashes).
fn pair_key(name: &str, value: &str) -> [u8; 16] {
    let mut buf = Vec::with_capacity(name.len() + value.len() + 1);
    buf.extend_from_slice(name.as_bytes());
    buf.push(0xff);
    buf.extend_from_slice(value.as_bytes());
    let a = XxHash3_64::oneshot_with_seed(0x6c6f_7570_6531, &buf);
    let b = XxHash3_64::oneshot_with_seed(0x7365_7269_6573, &buf);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.to_le_bytes());
    k[8..].copy_from_slice(&b.to_le_bytes());
    k
}

impl SeriesIndex {
    /// The index of a file holding `series`.
    pub fn build<'a>(series: impl Iterator<Item = &'a Labels> + Clone) -> Self {
        let mut metrics: Vec<String> = series.clone().map(|l| l.name().to_string()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        let mut pairs: Vec<[u8; 16]> = series
            .flat_map(|l| {
                l.iter()
                    .filter(|(k, _)| *k != METRIC_NAME)
                    .map(|(k, v)| pair_key(k, v))
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut labels = TraceIdFilter::with_capacity(pairs.len().max(1));
        for p in &pairs {
            labels.insert(p);
        }
        SeriesIndex { metrics, labels }
    }

    /// Whether the file may hold a series matching every matcher.
    pub fn may_match(&self, matchers: &[LabelMatcher]) -> bool {
        let names: Vec<&LabelMatcher> = matchers.iter().filter(|m| m.name == METRIC_NAME).collect();
        if !names.is_empty()
            && !self
                .metrics
                .iter()
                .any(|n| names.iter().all(|m| m.matches(n)))
        {
            return false;
        }
        matchers
            .iter()
            .filter(|m| m.name != METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .filter(|m| !m.value.is_empty())
            .all(|m| self.labels.may_contain(&pair_key(&m.name, &m.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn prunes_by_name_and_equal_pairs_only() {
        let series = [
            l(&[("__name__", "up"), ("job", "api")]),
            l(&[("__name__", "http_requests_total"), ("job", "web")]),
        ];
        let ix = SeriesIndex::build(series.iter());
        let json = serde_json::to_string(&ix).unwrap();
        let ix: SeriesIndex = serde_json::from_str(&json).unwrap();
        assert_eq!(ix.metrics, vec!["http_requests_total", "up"]);
        let eq = LabelMatcher::equal;
        assert!(ix.may_match(&[eq("__name__", "up"), eq("job", "api")]));
        assert!(!ix.may_match(&[eq("__name__", "down")]));
        assert!(!ix.may_match(&[eq("job", "db")]));
        let re = |n: &str, r: &str| LabelMatcher {
            name: n.into(),
            op: MatchOp::Re(regex::Regex::new(&format!("^(?:{r})$")).unwrap()),
            value: r.into(),
        };
        assert!(ix.may_match(&[re("__name__", "http_.*")]));
        assert!(!ix.may_match(&[re("__name__", "node_.*")]));
        // Regular expressions and empty values on other labels are left to the rows.
        assert!(ix.may_match(&[re("job", "nope")]));
        assert!(ix.may_match(&[eq("zone", "")]));
    }
}
