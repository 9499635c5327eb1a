//! OpenTelemetry → Prometheus names, as the OpenTelemetry specification's Prometheus
//! compatibility section says: characters Prometheus does not allow become `_` (runs of
//! them one `_`), the unit is appended as a word (`s` → `_seconds`, `By` → `_bytes`,
//! `{requests}` annotations dropped, `1` → `_ratio` for gauges, `x/y` → `_x_per_y`),
//! monotonic sums end in `_total`; label names are sanitized the same way, with `key_`
//! before a leading digit and `key` before a leading `__` (reserved in Prometheus).

/// Replaces characters outside `[a-zA-Z0-9_:]` (`[a-zA-Z0-9_]` for labels) with `_`,
/// collapsing runs.
fn sanitize(s: &str, colon: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        if ok {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out
}

fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "B" => "bytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The unit as name words (`""` when it adds none).
pub fn unit_suffix(unit: &str, gauge: bool) -> String {
    // Annotations in braces say nothing Prometheus names carry.
    let unit: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in unit.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth > 0 => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out.trim().to_string()
    };
    if unit == "1" {
        return if gauge { "ratio".into() } else { String::new() };
    }
    let word = |u: &str, per: bool| -> String {
        if u == "1" {
            return String::new();
        }
        let w = if per { per_unit_word(u) } else { unit_word(u) };
        w.map(str::to_string)
            .unwrap_or_else(|| sanitize(u, false).trim_matches('_').to_string())
    };
    match unit.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (word(a, false), word(b, true));
            match (a.is_empty(), b.is_empty()) {
                (_, true) => a,
                (true, false) => format!("per_{b}"),
                (false, false) => format!("{a}_per_{b}"),
            }
        }
        None => word(&unit, false),
    }
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut out = sanitize(name, true);
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    let suffix = unit_suffix(unit, kind == Kind::Gauge);
    if !suffix.is_empty() {
        let has = out == suffix || out.ends_with(&format!("_{suffix}"));
        let counter_has = kind == Kind::Counter && out.ends_with(&format!("_{suffix}_total"));
        if !has && !counter_has {
            // A counter's `_total` goes after the unit.
            if kind == Kind::Counter && out.ends_with("_total") {
                out.truncate(out.len() - "_total".len());
            }
            if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
            out.push_str(&suffix);
        }
    }
    if kind == Kind::Counter && !out.ends_with("_total") {
        if !out.ends_with('_') {
            out.push('_');
        }
        out.push_str("total");
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// What a name is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Other,
}

/// The Prometheus label name of an attribute key.
pub fn label_name(key: &str) -> String {
    let mut out = sanitize(key, false);
    if out.is_empty() {
        return "key_".into();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

/// A float as Prometheus writes `le` and `quantile` values (Go's shortest form, `+Inf`).
pub fn float_label(f: f64) -> String {
    if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else if f.is_nan() {
        "NaN".into()
    } else {
        let s = format!("{f}");
        // Go switches to exponents at 1e21; Rust prints the digits: both parse the same.
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_specification() {
        assert_eq!(
            metric_name("http.server.request.duration", "s", Kind::Other),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("requests", "{request}", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("bytes.sent", "By", Kind::Counter),
            "bytes_sent_bytes_total"
        );
        assert_eq!(
            metric_name("io_bytes_total", "By", Kind::Counter),
            "io_bytes_total"
        );
        assert_eq!(
            metric_name("cpu.utilization", "1", Kind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("cpu.time", "1", Kind::Counter),
            "cpu_time_total"
        );
        assert_eq!(
            metric_name("speed", "m/s", Kind::Gauge),
            "speed_meters_per_second"
        );
        assert_eq!(metric_name("rate", "1/s", Kind::Gauge), "rate_per_second");
        assert_eq!(metric_name("2xx--count", "", Kind::Gauge), "_2xx_count");
        assert_eq!(
            label_name("http.response.status_code"),
            "http_response_status_code"
        );
        assert_eq!(label_name("0zone"), "key_0zone");
        assert_eq!(label_name("__secret"), "key__secret");
        assert_eq!(float_label(0.005), "0.005");
        assert_eq!(float_label(1.0), "1");
        assert_eq!(float_label(f64::INFINITY), "+Inf");
    }
}
