//! A LogQL pipeline run on one record: its labels (`Labels::of_record`) and line go
//! through the stages in order; a filter that fails drops the line. As in Loki, a parser
//! that cannot read the line, or a numeric label filter whose label is not a number, keeps
//! the line and sets `__error__` (and `__error_details__`), which `| __error__=""` drops.

use super::ast::*;
use super::labels::{Cat, Labels};
use super::parser::{bytes, duration_ns};
use super::template::Scope;

/// A line after its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time_unix_nano: i64,
    pub line: String,
    pub labels: Labels,
}

impl Scope for Entry {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name)
    }
    fn line(&self) -> &str {
        &self.line
    }
    fn time_unix_nano(&self) -> i64 {
        self.time_unix_nano
    }
}

fn set_error(e: &mut Entry, kind: &str, details: String) {
    if e.labels.get("__error__").is_none() {
        e.labels.set("__error__".into(), kind.into(), Cat::Parsed);
        e.labels
            .set("__error_details__".into(), details, Cat::Parsed);
    }
}

/// Runs more stages on an entry (the label filters after an unwrap).
pub fn filters(filters: &[LabelFilter], e: &mut Entry) -> bool {
    filters.iter().all(|f| label_filter(f, e))
}

fn line_filter(f: &LineFilter, line: &str) -> bool {
    match f.op {
        LineOp::Contains => f.values.iter().any(|v| line.contains(v.as_str())),
        LineOp::NotContains => !f.values.iter().any(|v| line.contains(v.as_str())),
        LineOp::Match => f.res.iter().any(|r| r.re.is_match(line)),
        LineOp::NotMatch => !f.res.iter().any(|r| r.re.is_match(line)),
    }
}

/// Runs one stage on `e`; `false` when it drops the line.
pub fn apply_stage(s: &Stage, e: &mut Entry) -> bool {
    match s {
        Stage::Line(f) => return line_filter(f, &e.line),
        Stage::Json(params) => json(params, e),
        Stage::Logfmt {
            strict,
            keep_empty,
            params,
        } => logfmt(*strict, *keep_empty, params, e),
        Stage::Regexp(re) => {
            if let Some(c) = re.re.captures(&e.line) {
                let found: Vec<(String, String)> = re
                    .re
                    .capture_names()
                    .flatten()
                    .filter_map(|n| c.name(n).map(|m| (n.to_string(), m.as_str().to_string())))
                    .collect();
                for (k, v) in found {
                    e.labels.set_parsed(k, v);
                }
            }
        }
        Stage::Pattern { parts, .. } => {
            if let Some(found) = match_pattern(parts, &e.line) {
                for (k, v) in found {
                    e.labels.set_parsed(k, v);
                }
            }
        }
        Stage::Labels(f) => return label_filter(f, e),
        Stage::LineFormat(t) => e.line = t.render(e),
        Stage::LabelFormat(fs) => {
            let mut out = Vec::new();
            for f in fs {
                match f {
                    LabelFormat::Rename { dst, src } => {
                        let v = e.labels.get(src).unwrap_or_default().to_string();
                        out.push((dst.clone(), v, Some(src.clone())));
                    }
                    LabelFormat::Template { dst, template } => {
                        out.push((dst.clone(), template.render(e), None));
                    }
                }
            }
            for (dst, v, src) in out {
                if let Some(src) = src
                    && src != dst
                {
                    e.labels.remove(&src);
                }
                e.labels.set(dst, v, Cat::Parsed);
            }
        }
        Stage::Drop(ms) => {
            for m in ms {
                let drop = match e.labels.get(&m.name) {
                    Some(v) => is_name_only(m) || m.matches(v),
                    None => false,
                };
                if drop {
                    e.labels.remove(&m.name);
                }
            }
        }
        Stage::Keep(ms) => {
            let names: Vec<String> = e.labels.0.keys().cloned().collect();
            for n in names {
                let v = e.labels.get(&n).unwrap_or_default().to_string();
                let keep = ms
                    .iter()
                    .any(|m| m.name == n && (is_name_only(m) || m.matches(&v)));
                if !keep {
                    e.labels.remove(&n);
                }
            }
        }
        Stage::Decolorize => e.line = decolorize(&e.line),
    }
    true
}

fn is_name_only(m: &Matcher) -> bool {
    m.op == MatchOp::Eq && m.value.is_empty() && m.re.is_none()
}

fn decolorize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of a numeric label filter's label (`Err`: present but not of the unit).
fn numeric(unit: Unit, v: &str) -> Result<f64, String> {
    let v = v.trim();
    let n = match unit {
        Unit::Number => v.parse::<f64>().ok(),
        Unit::Duration => duration_ns(v).map(|ns| ns as f64 / 1e9),
        Unit::Bytes => bytes(v),
    };
    n.ok_or_else(|| {
        let what = match unit {
            Unit::Number => "a number",
            Unit::Duration => "a duration",
            Unit::Bytes => "a byte size",
        };
        format!("{v:?} is not {what}")
    })
}

fn label_filter(f: &LabelFilter, e: &mut Entry) -> bool {
    match f {
        LabelFilter::And(a, b) => label_filter(a, e) && label_filter(b, e),
        LabelFilter::Or(a, b) => label_filter(a, e) || label_filter(b, e),
        LabelFilter::Str(m) => m.matches(e.labels.get(&m.name).unwrap_or_default()),
        LabelFilter::Num {
            name,
            cmp,
            unit,
            value,
            ..
        } => {
            let Some(v) = e.labels.get(name) else {
                return *cmp == Cmp::Ne;
            };
            match numeric(*unit, v) {
                Ok(x) => cmp.holds(x, *value),
                Err(msg) => {
                    set_error(e, "LabelFilterErr", format!("label {name}: {msg}"));
                    true
                }
            }
        }
    }
}

/// Unwraps a label as a sample value (`Err`: why not).
pub fn unwrap_value(u: &Unwrap, e: &Entry) -> Result<f64, String> {
    let v = e
        .labels
        .get(&u.label)
        .ok_or_else(|| format!("label {} is missing", u.label))?;
    let unit = match u.conversion {
        Conversion::None => Unit::Number,
        Conversion::Duration => Unit::Duration,
        Conversion::Bytes => Unit::Bytes,
    };
    numeric(unit, v)
}

fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null => Some(String::new()),
        _ => None,
    }
}

pub(crate) fn flatten(
    prefix: &str,
    v: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    for (k, v) in v {
        let name = super::labels::label_name(k);
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}_{name}")
        };
        match v {
            serde_json::Value::Object(m) => flatten(&name, m, out),
            serde_json::Value::Array(_) => {}
            v => out.extend(scalar_text(v).map(|t| (name, t))),
        }
    }
}

/// A path of a `json` parameter: `a.b[0]`, `a["b c"]`.
fn json_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let close = r.find(']')?;
            let key = &r[..close];
            rest = &r[close + 1..];
            cur = if let Some(q) = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                cur.get(q)?
            } else {
                cur.get(key.trim().parse::<usize>().ok()?)?
            };
            continue;
        }
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        cur = cur.get(&rest[..end])?;
        rest = &rest[end..];
    }
    Some(cur)
}

fn json(params: &[(String, String)], e: &mut Entry) {
    let v: serde_json::Value = match serde_json::from_str(&e.line) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            set_error(e, "JSONParserErr", "the line is not a JSON object".into());
            return;
        }
        Err(err) => {
            set_error(e, "JSONParserErr", err.to_string());
            return;
        }
    };
    let mut found = Vec::new();
    if params.is_empty() {
        if let serde_json::Value::Object(m) = &v {
            flatten("", m, &mut found);
        }
    } else {
        for (label, path) in params {
            if let Some(x) = json_path(&v, path) {
                let t = scalar_text(x).unwrap_or_else(|| x.to_string());
                found.push((label.clone(), t));
            }
        }
    }
    for (k, v) in found {
        e.labels.set_parsed(k, v);
    }
}

/// The `key=value` pairs of a logfmt line (`Err`: where it is malformed).
pub(crate) fn logfmt_pairs(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            if c == '"' {
                return Err(format!("unexpected '\"' at position {i}"));
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return Err(format!("unexpected '=' at position {i}"));
        }
        if chars.peek().map(|&(_, c)| c) != Some('=') {
            out.push((key, None));
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek().map(|&(_, c)| c) == Some('"') {
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, e)) => value.push(e),
                        None => {}
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated quoted value of {key}"));
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, Some(value)));
    }
    Ok(out)
}

fn logfmt(strict: bool, keep_empty: bool, params: &[(String, String)], e: &mut Entry) {
    let pairs = match logfmt_pairs(&e.line) {
        Ok(p) => p,
        Err(msg) => {
            if strict {
                set_error(e, "LogfmtParserErr", msg);
                return;
            }
            // Not strict: take the pairs before the fault.
            lenient_pairs(&e.line)
        }
    };
    let mut found = Vec::new();
    for (k, v) in pairs {
        let v = match v {
            Some(v) => v,
            None if keep_empty => String::new(),
            None => continue,
        };
        let name = super::labels::label_name(&k);
        if params.is_empty() {
            found.push((name, v));
        } else {
            for (label, key) in params {
                if *key == k {
                    found.push((label.clone(), v.clone()));
                }
            }
        }
    }
    for (k, v) in found {
        e.labels.set_parsed(k, v);
    }
}

/// The well-formed pairs of a line, word by word.
fn lenient_pairs(line: &str) -> Vec<(String, Option<String>)> {
    line.split_whitespace()
        .filter_map(|w| logfmt_pairs(w).ok())
        .flatten()
        .collect()
}

fn match_pattern(parts: &[PatternPart], line: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = line;
    let mut i = 0;
    while i < parts.len() {
        match &parts[i] {
            PatternPart::Literal(l) => {
                rest = rest.strip_prefix(l.as_str())?;
                i += 1;
            }
            PatternPart::Capture(name) => {
                let (value, after) = match parts.get(i + 1) {
                    Some(PatternPart::Literal(l)) => {
                        let at = rest.find(l.as_str())?;
                        (&rest[..at], &rest[at..])
                    }
                    _ => (rest, ""),
                };
                if let Some(n) = name {
                    out.push((n.clone(), value.to_string()));
                }
                rest = after;
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_reads_quoted_bare_and_standalone_keys() {
        assert_eq!(
            logfmt_pairs(r#"a=1 b="x \"y\"" c d="""#).unwrap(),
            vec![
                ("a".into(), Some("1".into())),
                ("b".into(), Some("x \"y\"".into())),
                ("c".into(), None),
                ("d".into(), Some(String::new())),
            ]
        );
        assert!(logfmt_pairs(r#"a="open"#).is_err());
        assert!(logfmt_pairs("=x").is_err());
    }

    #[test]
    fn json_paths_reach_nested_values() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a":{"b":[10,{"c":"x"}]},"d e":1}"#).unwrap();
        assert_eq!(json_path(&v, "a.b[0]"), Some(&serde_json::json!(10)));
        assert_eq!(json_path(&v, "a.b[1].c"), Some(&serde_json::json!("x")));
        assert_eq!(json_path(&v, r#"["d e"]"#), Some(&serde_json::json!(1)));
        assert_eq!(json_path(&v, "a.z"), None);
    }

    #[test]
    fn patterns_capture_between_literals() {
        let parts = super::super::parser::parse(
            r#"{a="b"} | pattern "<ip> - <_> [<ts>] \"<method> <path> <_>\" <status>""#,
        );
        let Ok(Query::Log(LogQuery { stages, .. })) = parts else {
            panic!("{parts:?}")
        };
        let Stage::Pattern { parts, .. } = &stages[0] else {
            panic!()
        };
        let got = match_pattern(
            parts,
            r#"10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" 200"#,
        )
        .unwrap();
        let want: Vec<(String, String)> = [
            ("ip", "10.0.0.1"),
            ("ts", "24/Nov/2026:10:00:00 +0000"),
            ("method", "GET"),
            ("path", "/x"),
            ("status", "200"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(match_pattern(parts, "nothing like it").is_none());
    }
}
