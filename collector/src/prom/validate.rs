//! Checks of remote-write series, whichever protocol delivered them (OTLP data points are
//! converted to series first): names as Prometheus 2 requires them, label names unique and
//! not reserved, sample times within the accepted window. A bad series or sample is left out
//! and counted; the rest is accepted (the answer says what was left out and why).

use std::sync::Arc;

use loupe_storage::metrics::{Labels, METRIC_NAME, MetricMeta, MetricRows, Sample, Series};

use crate::otlp::{TimeWindow, Validated};
use crate::prom::wire::{TimeSeries, WriteRequest, type_name};

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

fn series_problem(ts: &TimeSeries) -> Option<String> {
    let mut names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Some(format!("label name {:?} appears twice", w[0]));
    }
    let Some(name) = ts.labels.iter().find(|l| l.name == METRIC_NAME) else {
        return Some("series has no metric name (__name__ label)".into());
    };
    if !valid_metric_name(&name.value) {
        return Some(format!(
            "invalid metric name {:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*",
            name.value
        ));
    }
    for l in ts.labels.iter().filter(|l| l.name != METRIC_NAME) {
        if !valid_label_name(&l.name) {
            return Some(format!(
                "invalid label name {:?} in {}: must match [a-zA-Z_][a-zA-Z0-9_]*",
                l.name, name.value
            ));
        }
        if l.name.starts_with("__") {
            return Some(format!(
                "label name {:?} in {} is reserved (names starting with __ are internal)",
                l.name, name.value
            ));
        }
    }
    None
}

fn labels_of(ts: &TimeSeries) -> Labels {
    Labels::new(
        ts.labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect(),
    )
}

/// Leaves out of `req` what is invalid; returns the outcome, the rows of what is left, and
/// whether anything was left out (then the payload must be re-encoded).
pub fn validate(req: &mut WriteRequest, window: &TimeWindow) -> (Validated, MetricRows, bool) {
    let oldest = (window.oldest_unix_nano / 1_000_000) as i64;
    let newest = (window.newest_unix_nano / 1_000_000) as i64;
    let mut v = Validated::default();
    let mut problems: Vec<String> = Vec::new();
    let mut changed = false;
    let mut series = Vec::with_capacity(req.timeseries.len());
    req.timeseries.retain_mut(|ts| {
        if let Some(p) = series_problem(ts) {
            v.rejected += ts.samples.len() as u64;
            problems.push(p);
            changed = true;
            return false;
        }
        let before = ts.samples.len();
        let labels = labels_of(ts);
        ts.samples.retain(|s| {
            let ok = s.timestamp >= oldest && s.timestamp <= newest;
            if !ok && problems.len() < QUOTED {
                problems.push(format!(
                    "sample of {labels} at {} ms is outside the accepted window [{oldest}, {newest}] ms (retention and allowed clock skew)",
                    s.timestamp
                ));
            }
            ok
        });
        let dropped = (before - ts.samples.len()) as u64;
        if dropped > 0 {
            v.rejected += dropped;
            changed = true;
        }
        if ts.samples.is_empty() {
            return false;
        }
        v.accepted += ts.samples.len() as u64;
        series.push(Series {
            labels: Arc::new(labels),
            samples: ts
                .samples
                .iter()
                .map(|s| Sample {
                    t: s.timestamp,
                    v: s.value,
                })
                .collect(),
        });
        true
    });
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(QUOTED);
        problems.truncate(QUOTED);
        v.message = problems.join("; ");
        if more > 0 {
            v.message.push_str(&format!("; and {more} more"));
        }
    }
    let metadata = req
        .metadata
        .iter()
        .filter(|m| valid_metric_name(&m.metric_family_name))
        .map(|m| MetricMeta {
            metric: m.metric_family_name.clone(),
            kind: type_name(m.r#type).to_string(),
            unit: m.unit.clone(),
            help: m.help.clone(),
        })
        .collect();
    (v, MetricRows { series, metadata }, changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::wire::{Label, Sample as WSample};

    fn ts(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| WSample { value, timestamp })
                .collect(),
            exemplars: vec![],
        }
    }

    #[test]
    fn bad_series_and_samples_are_left_out_with_reasons() {
        let mut req = WriteRequest {
            timeseries: vec![
                ts(
                    &[("__name__", "up"), ("job", "a")],
                    &[(1000, 1.0), (5, 1.0)],
                ),
                ts(&[("__name__", "1up")], &[(1000, 1.0)]),
                ts(&[("__name__", "x"), ("a-b", "1")], &[(1000, 1.0)]),
                ts(&[("__name__", "x"), ("__x", "1")], &[(1000, 1.0)]),
                ts(&[("job", "x")], &[(1000, 1.0)]),
                ts(&[("__name__", "x"), ("a", "1"), ("a", "2")], &[(1000, 1.0)]),
                ts(&[("__name__", "nan"), ("k", "")], &[(1000, f64::NAN)]),
            ],
            metadata: vec![],
        };
        let window = TimeWindow {
            oldest_unix_nano: 100 * 1_000_000,
            newest_unix_nano: 2000 * 1_000_000,
        };
        let (v, rows, changed) = validate(&mut req, &window);
        assert!(changed);
        assert_eq!((v.accepted, v.rejected), (2, 6));
        assert!(
            v.message.contains("outside the accepted window"),
            "{}",
            v.message
        );
        assert!(
            v.message.contains("invalid metric name \"1up\""),
            "{}",
            v.message
        );
        assert!(v.message.contains("and 3 more"), "{}", v.message);
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(rows.series.len(), 2);
        assert_eq!(rows.series[1].labels.to_string(), "nan{}");
        assert!(rows.series[1].samples[0].v.is_nan());
    }
}
