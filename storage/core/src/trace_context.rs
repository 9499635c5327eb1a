//! Trace context carried in the text of a log line, for records that arrive without one
//! (stdout logs of services without a log SDK): a JSON field `trace_id` / `traceId` /
//! `traceID` (with `span_id` / `spanId` / `spanID`), the same keys in logfmt
//! (`trace_id=...`), or a W3C `traceparent` value (`00-<trace>-<span>-<flags>`). Shared by
//! the collector and the node agent, so either can lift it.
//!
//! A scan of the bytes, no parsing of the line as a whole: ids are 32 (trace) and 16 (span)
//! hex digits bounded by non-hex characters; all-zero ids are not ids. It runs on every line
//! at ingest and again when a stored line is read, so it jumps between candidates with
//! `memchr` (`trace`, `span`, `-`) instead of trying every position.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Trace and span id found in a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: Option<[u8; 8]>,
}

/// The key stems and the suffixes that complete them (`trace_id`, `traceId`, `traceID`).
const TRACE: &[u8] = b"trace";
const SPAN: &[u8] = b"span";
const SUFFIXES: [&[u8]; 3] = [b"_id", b"Id", b"ID"];

/// Searchers for the stems, built once (building one costs more than scanning a line).
static FINDERS: LazyLock<[Finder<'static>; 2]> =
    LazyLock::new(|| [Finder::new(TRACE), Finder::new(SPAN)]);

/// The trace context in `line`, if it carries one.
pub fn find(line: &str) -> Option<TraceContext> {
    let b = line.as_bytes();
    if let Some(trace_id) = keyed::<16>(b, &FINDERS[0]) {
        let span_id = keyed::<8>(b, &FINDERS[1]);
        return Some(TraceContext { trace_id, span_id });
    }
    traceparent(b)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `N` bytes from exactly `2N` hex digits at `b[at..]`, not followed by another hex digit.
fn hex_id<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    let digits = b.get(at..at + 2 * N)?;
    if b.get(at + 2 * N).is_some_and(|c| hex_val(*c).is_some()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks(2).enumerate() {
        out[i] = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    (out != [0u8; N]).then_some(out)
}

/// The id after `stem` + one of [`SUFFIXES`] as a JSON member (`"key": "…"`) or a logfmt
/// pair (`key=…`).
fn keyed<const N: usize>(b: &[u8], finder: &Finder<'static>) -> Option<[u8; N]> {
    let stem = finder.needle();
    for pos in finder.find_iter(b) {
        let after = &b[pos + stem.len()..];
        let Some(suffix) = SUFFIXES.iter().find(|s| after.starts_with(s)) else {
            continue;
        };
        let before = pos.checked_sub(1).map(|i| b[i]);
        let mut i = pos + stem.len() + suffix.len();
        let id_at = if before == Some(b'"') && b.get(i) == Some(&b'"') {
            // JSON: "key" <ws> : <ws> "value"
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            if b.get(i) != Some(&b':') {
                continue;
            }
            i += 1;
            while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            if b.get(i) != Some(&b'"') {
                continue;
            }
            i + 1
        } else if before.is_none_or(|c| c.is_ascii_whitespace() || c == b',' || c == b'{')
            && b.get(i) == Some(&b'=')
        {
            // logfmt: key=value or key="value"
            i += 1;
            if b.get(i) == Some(&b'"') {
                i += 1;
            }
            i
        } else {
            continue;
        };
        if let Some(id) = hex_id::<N>(b, id_at) {
            return Some(id);
        }
    }
    None
}

/// A W3C traceparent: `vv-<32 hex>-<16 hex>-ff`, version not `ff`.
fn traceparent(b: &[u8]) -> Option<TraceContext> {
    const LEN: usize = 55;
    // Candidates start two bytes before a dash.
    for dash in memchr::memchr_iter(b'-', b) {
        let Some(i) = dash.checked_sub(2) else {
            continue;
        };
        if i + LEN > b.len() {
            break;
        }
        let w = &b[i..i + LEN];
        let shaped = w[2] == b'-' && w[35] == b'-' && w[52] == b'-';
        let bounded = i.checked_sub(1).is_none_or(|p| hex_val(b[p]).is_none())
            && b.get(i + LEN).is_none_or(|c| hex_val(*c).is_none());
        if shaped
            && bounded
            && hex_val(w[0]).is_some()
            && hex_val(w[1]).is_some()
            && &w[..2] != b"ff"
            && hex_val(w[53]).is_some()
            && hex_val(w[54]).is_some()
            && let (Some(trace_id), Some(span_id)) = (hex_id::<16>(w, 3), hex_id::<8>(w, 36))
        {
            return Some(TraceContext {
                trace_id,
                span_id: Some(span_id),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const S: &str = "00f067aa0ba902b7";

    fn ids() -> ([u8; 16], [u8; 8]) {
        let mut t = [0u8; 16];
        let mut s = [0u8; 8];
        for i in 0..16 {
            t[i] = u8::from_str_radix(&T[2 * i..2 * i + 2], 16).unwrap();
        }
        for i in 0..8 {
            s[i] = u8::from_str_radix(&S[2 * i..2 * i + 2], 16).unwrap();
        }
        (t, s)
    }

    #[test]
    fn finds_json_logfmt_and_traceparent_context() {
        let (t, s) = ids();
        let both = Some(TraceContext {
            trace_id: t,
            span_id: Some(s),
        });
        let only = Some(TraceContext {
            trace_id: t,
            span_id: None,
        });
        for (line, want) in [
            (
                format!(r#"{{"level":"info","trace_id":"{T}","span_id":"{S}","msg":"ok"}}"#),
                both,
            ),
            (format!(r#"{{"traceId": "{T}", "spanId" : "{S}"}}"#), both),
            (
                format!(r#"{{"msg":"x","traceID":"{}"}}"#, T.to_uppercase()),
                only,
            ),
            (
                format!("level=info trace_id={T} span_id={S} msg=\"done\""),
                both,
            ),
            (format!("ts=1 traceID=\"{T}\" msg=hi"), only),
            (format!("GET /x traceparent: 00-{T}-{S}-01 200"), both),
            (format!("[00-{T}-{S}-00]"), both),
        ] {
            assert_eq!(find(&line), want, "{line}");
        }
    }

    #[test]
    fn ignores_what_is_not_a_trace_context() {
        for line in [
            "plain line without ids".to_string(),
            format!("trace_id={}", &T[..31]),            // too short
            format!("trace_id={T}0"),                    // too long
            format!("my_trace_id={T}"),                  // another key
            format!(r#"{{"trace_id": 5, "x": "{T}"}}"#), // not a string id
            "trace_id=00000000000000000000000000000000".to_string(),
            format!("ff-{T}-{S}-01"),  // invalid version
            format!("00-{T}-{S}-01f"), // not bounded
        ] {
            assert_eq!(find(&line), None, "{line}");
        }
    }
}
