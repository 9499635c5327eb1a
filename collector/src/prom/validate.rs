//! Checks of remote-write series, whichever protocol delivered them (OTLP data points are
//! converted to series first): names as Prometheus 2 requires them, label names unique and
//! not reserved, sample times within the accepted window. A bad series or sample is left out
//! and counted; the rest is accepted (the answer says what was left out and why).

use loupe_storage::metrics::{METRIC_NAME, MetricMeta};

use crate::otlp::TimeWindow;
use crate::prom::wire::{MetricMetadata, type_name};

/// Problems quoted in an answer.
const QUOTED: usize = 3;

pub fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

pub fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// What is wrong with a series' labels, if anything.
pub fn labels_problem(pairs: &[(String, String)]) -> Option<String> {
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Some(format!("label name {:?} appears twice", w[0]));
    }
    let Some((_, name)) = pairs.iter().find(|(n, _)| n == METRIC_NAME) else {
        return Some("series has no metric name (__name__ label)".into());
    };
    if !valid_metric_name(name) {
        return Some(format!(
            "invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        ));
    }
    for (n, _) in pairs.iter().filter(|(n, _)| n != METRIC_NAME) {
        if !valid_label_name(n) {
            return Some(format!(
                "invalid label name {n:?} in {name}: must match [a-zA-Z_][a-zA-Z0-9_]*"
            ));
        }
        if n.starts_with("__") {
            return Some(format!(
                "label name {n:?} in {name} is reserved (names starting with __ are internal)"
            ));
        }
    }
    None
}

/// Prometheus's bound on an exemplar's labels: names and values together, in characters.
pub const EXEMPLAR_MAX_LABEL_CHARS: usize = 128;

/// What is wrong with an exemplar's labels, if anything (Prometheus's rules: at most 128
/// characters of names and values together; names as for series labels).
pub fn exemplar_problem(pairs: &[(String, String)]) -> Option<String> {
    if let Some((n, _)) = pairs.iter().find(|(n, _)| !valid_label_name(n)) {
        return Some(format!(
            "invalid exemplar label name {n:?}: must match [a-zA-Z_][a-zA-Z0-9_]*"
        ));
    }
    let chars: usize = pairs
        .iter()
        .map(|(n, v)| n.chars().count() + v.chars().count())
        .sum();
    (chars > EXEMPLAR_MAX_LABEL_CHARS).then(|| {
        format!(
            "exemplar labels have {chars} characters, over Prometheus's limit of {EXEMPLAR_MAX_LABEL_CHARS}"
        )
    })
}

/// Problems of one export, the first few quoted.
#[derive(Default)]
pub struct Problems {
    pub rejected: u64,
    /// Exemplars left out (they are not samples: an answer names them but does not count
    /// them as rejected points, as Prometheus answers a bad exemplar).
    pub exemplars_dropped: u64,
    quoted: Vec<String>,
    more: usize,
}

impl Problems {
    pub fn drop_exemplar(&mut self, why: impl FnOnce() -> String) {
        self.exemplars_dropped += 1;
        self.add(0, why);
    }

    /// Whether anything sent was left out.
    pub fn any(&self) -> bool {
        self.rejected > 0 || self.exemplars_dropped > 0
    }

    pub fn add(&mut self, samples: u64, why: impl FnOnce() -> String) {
        self.rejected += samples;
        if self.quoted.len() < QUOTED {
            self.quoted.push(why());
        } else {
            self.more += 1;
        }
    }

    pub fn message(&self) -> String {
        let mut m = self.quoted.join("; ");
        if self.more > 0 {
            m.push_str(&format!("; and {} more", self.more));
        }
        m
    }
}

/// A sample time outside the accepted window, described.
pub fn outside(labels: &dyn std::fmt::Display, t: i64, window: &TimeWindow) -> Option<String> {
    let oldest = (window.oldest_unix_nano / 1_000_000) as i64;
    let newest = (window.newest_unix_nano / 1_000_000) as i64;
    (t < oldest || t > newest).then(|| {
        format!(
            "sample of {labels} at {t} ms is outside the accepted window [{oldest}, {newest}] ms (retention and allowed clock skew)"
        )
    })
}

/// Metadata entries with valid family names, as stored.
pub fn metadata(m: &[MetricMetadata]) -> Vec<MetricMeta> {
    m.iter()
        .filter(|m| valid_metric_name(&m.metric_family_name))
        .map(|m| MetricMeta {
            metric: m.metric_family_name.clone(),
            kind: type_name(m.r#type).to_string(),
            unit: m.unit.clone(),
            help: m.help.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bad_labels_are_named() {
        let problem = |p: &[(&str, &str)]| labels_problem(&pairs(p)).unwrap_or_default();
        assert_eq!(problem(&[("__name__", "up"), ("job", "a")]), "");
        assert!(problem(&[("__name__", "1up")]).contains("invalid metric name \"1up\""));
        assert!(problem(&[("__name__", "x"), ("a-b", "1")]).contains("invalid label name \"a-b\""));
        assert!(problem(&[("__name__", "x"), ("__x", "1")]).contains("reserved"));
        assert!(problem(&[("job", "x")]).contains("no metric name"));
        assert!(problem(&[("__name__", "x"), ("a", "1"), ("a", "2")]).contains("appears twice"));
        assert!(exemplar_problem(&pairs(&[("trace_id", "4bf9"), ("span_id", "00f0")])).is_none());
        assert!(
            exemplar_problem(&pairs(&[("trace id", "1")]))
                .unwrap()
                .contains("invalid exemplar label name")
        );
        let long = "é".repeat(121);
        assert!(
            exemplar_problem(&pairs(&[("trace_id", &long)]))
                .unwrap()
                .contains("129 characters")
        );
        let w = TimeWindow {
            oldest_unix_nano: 100 * 1_000_000,
            newest_unix_nano: 2000 * 1_000_000,
        };
        assert!(
            outside(&"up", 5, &w)
                .unwrap()
                .contains("outside the accepted window")
        );
        assert!(outside(&"up", 1000, &w).is_none());
        let mut p = Problems::default();
        for i in 0..5 {
            p.add(2, || format!("p{i}"));
        }
        assert_eq!(p.rejected, 10);
        assert_eq!(p.message(), "p0; p1; p2; and 2 more");
    }
}
