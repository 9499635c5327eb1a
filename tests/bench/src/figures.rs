//! Figures: the JSON line per figure on stdout, the readable summary on stderr, percentiles.

use serde_json::{Value, json};

pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    /// e.g. ">= 100000"; `None` where no goal is set.
    pub goal: Option<&'static str>,
    pub data: Value,
    pub baseline: Option<f64>,
    /// Value over baseline, when the value itself is not in the baseline's unit.
    pub ratio: Option<f64>,
}

impl Figure {
    pub fn new(
        name: &'static str,
        value: f64,
        unit: &'static str,
        goal: Option<&'static str>,
        data: Value,
    ) -> Self {
        Figure {
            name,
            value,
            unit,
            goal,
            data,
            baseline: None,
            ratio: None,
        }
    }

    pub fn with_baseline(mut self, baseline: f64) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// A baseline in other units than the value, with the ratio given explicitly.
    pub fn with_baseline_ratio(mut self, baseline: f64, ratio: f64) -> Self {
        self.baseline = Some(baseline);
        self.ratio = Some(ratio);
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.ratio.or_else(|| {
            self.baseline
                .map(|b| if b > 0.0 { self.value / b } else { 0.0 })
        })
    }

    fn meets(&self) -> Option<bool> {
        let goal = self.goal?;
        let (op, v) = goal.split_once(' ')?;
        let v: f64 = v.parse().ok()?;
        Some(match op {
            ">=" => self.value >= v,
            "<=" => self.value <= v,
            _ => return None,
        })
    }

    pub fn emit(&self) {
        let mut line = json!({
            "name": self.name,
            "value": round(self.value),
            "unit": self.unit,
            "goal": self.goal,
            "data": self.data,
        });
        if let (Some(b), Some(r)) = (self.baseline, self.ratio()) {
            line["baseline"] = json!(round(b));
            line["ratio"] = json!(round(r));
        }
        println!("{line}");
        let verdict = match self.meets() {
            Some(true) => "meets goal",
            Some(false) => "MISSES goal",
            None => "",
        };
        let base = match (self.baseline, self.ratio()) {
            (Some(b), Some(r)) => format!("  (baseline {b:.3}, ratio {r:.2})"),
            _ => String::new(),
        };
        eprintln!(
            "{:<30} {:>14.3} {:<14} goal {:<10} {verdict}{base}",
            self.name,
            self.value,
            self.unit,
            self.goal.unwrap_or("-")
        );
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The `p`-quantile (0..=1) of `samples` (nearest rank).
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(|v| v as f64).collect();
        assert_eq!(percentile(&s, 0.5), 50.0);
        assert_eq!(percentile(&s, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }

    #[test]
    fn goals() {
        assert_eq!(
            Figure::new("x", 5.0, "ms", Some("<= 50"), json!({})).meets(),
            Some(true)
        );
        assert_eq!(
            Figure::new("x", 5.0, "n", Some(">= 50"), json!({})).meets(),
            Some(false)
        );
    }
}
