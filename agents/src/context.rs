//! Trace context lifted from a log line into the OTLP record's `trace_id`, `span_id` and
//! `flags`, so a line links to its trace in any OTLP backend, not only ours.
//!
//! Found wherever the line carries it, as a key at a word boundary followed by `:`, `=`,
//! quotes or spaces, then hex digits:
//! - a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), in JSON or logfmt;
//! - JSON fields and logfmt pairs named as the common loggers name them: `trace_id`,
//!   `traceId`, `traceID`, `trace.id`, `traceid` and the same for spans (`span_id`, …).
//!   A 16-digit trace id (Jaeger and Zipkin's 64-bit ids) is padded to 128 bits as OTLP
//!   says. All-zero ids are not ids.
//!
//! Keys that merely end in one of these (`parent_span_id`) do not count. A line without
//! `race` in it costs one vectorised search.

use memchr::memmem;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: Option<[u8; 16]>,
    pub span_id: Option<[u8; 8]>,
    pub flags: Option<u8>,
}

const TRACE_KEYS: [&[u8]; 7] = [
    b"trace_id",
    b"traceId",
    b"traceID",
    b"trace.id",
    b"traceid",
    b"TraceId",
    b"TraceID",
];
const SPAN_KEYS: [&[u8]; 7] = [
    b"span_id", b"spanId", b"spanID", b"span.id", b"spanid", b"SpanId", b"SpanID",
];

fn boundary_before(line: &[u8], at: usize) -> bool {
    at == 0
        || matches!(
            line[at - 1],
            b'"' | b'\'' | b' ' | b'\t' | b'{' | b',' | b';' | b'[' | b'|' | b'('
        )
}

/// The value after the key at `at`: separators skipped, then the run of hex digits and
/// dashes.
fn value_after(line: &[u8], at: usize) -> &[u8] {
    let rest = &line[at..];
    let skip = rest
        .iter()
        .take(8)
        .take_while(|b| matches!(b, b'"' | b'\'' | b':' | b'=' | b' '))
        .count();
    if skip == 0 {
        return &[];
    }
    let v = &rest[skip..];
    let n = v
        .iter()
        .take_while(|b| b.is_ascii_hexdigit() || **b == b'-')
        .count();
    &v[..n]
}

/// Searchers built once: `race` and `pan` find every candidate key (`trace…`, `Trace…`,
/// `span…`, `Span…`) in one vectorised pass each.
static RACE: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"race"));
static PAN: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b"pan"));

/// The value of the first key of `keys` (each starting with `first` + the needle) at a
/// word boundary, found from the needle's hits.
fn find<'a>(line: &'a [u8], finder: &memmem::Finder, keys: &[&[u8]]) -> Option<&'a [u8]> {
    finder.find_iter(line).find_map(|hit| {
        let at = hit.checked_sub(1)?;
        let rest = &line[at..];
        let key = keys.iter().find(|k| rest.starts_with(k))?;
        let v = value_after(line, at + key.len());
        (boundary_before(line, at) && !v.is_empty()).then_some(v)
    })
}

fn hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    (out != [0u8; N]).then_some(out)
}

fn trace_id(s: &[u8]) -> Option<[u8; 16]> {
    match s.len() {
        32 => hex::<16>(s),
        16 => {
            let low = hex::<8>(s)?;
            let mut out = [0u8; 16];
            out[8..].copy_from_slice(&low);
            Some(out)
        }
        _ => None,
    }
}

/// The trace context a line carries, if any.
pub fn lift(line: &[u8]) -> TraceContext {
    let mut ctx = TraceContext::default();
    if RACE.find(line).is_none() {
        return ctx;
    }
    if let Some(tp) = find(line, &RACE, &[b"traceparent"]) {
        let mut parts = tp.split(|b| *b == b'-');
        if let (Some(b"00"), Some(t), Some(s), Some(f)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && let (Some(t), Some(s), Some([f])) =
                (hex::<16>(t), hex::<8>(s), hex::<1>(f).or(Some([0])))
        {
            return TraceContext {
                trace_id: Some(t),
                span_id: Some(s),
                flags: Some(f),
            };
        }
    }
    ctx.trace_id = find(line, &RACE, &TRACE_KEYS).and_then(trace_id);
    if ctx.trace_id.is_some() {
        ctx.span_id = find(line, &PAN, &SPAN_KEYS).and_then(hex::<8>);
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const S: &str = "00f067aa0ba902b7";

    fn ids(line: &str) -> (Option<String>, Option<String>, Option<u8>) {
        let c = lift(line.as_bytes());
        let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        (c.trace_id.map(|t| h(&t)), c.span_id.map(|s| h(&s)), c.flags)
    }

    #[test]
    fn json_logfmt_and_traceparent_carry_trace_context() {
        let want = (Some(T.to_string()), Some(S.to_string()), None);
        for line in [
            format!(r#"{{"level":"info","msg":"ok","trace_id":"{T}","span_id":"{S}"}}"#),
            format!(r#"{{"traceId": "{T}", "spanId": "{S}", "message": "x"}}"#),
            format!("ts=2024 level=info trace_id={T} span_id={S} msg=\"done\""),
            format!("INFO [traceID={T} spanID={S}] handled"),
            format!(r#"{{"trace.id":"{T}","span.id":"{S}"}}"#),
        ] {
            assert_eq!(ids(&line), want, "{line}");
        }
        assert_eq!(
            ids(&format!("GET / traceparent=00-{T}-{S}-01 200")),
            (Some(T.into()), Some(S.into()), Some(1))
        );
        assert_eq!(
            ids(&format!(r#"{{"traceparent":"00-{T}-{S}-00"}}"#)),
            (Some(T.into()), Some(S.into()), Some(0))
        );
    }

    #[test]
    fn short_ids_are_padded_and_lookalikes_are_not_ids() {
        assert_eq!(
            ids("trace_id=a3ce929d0e0e4736 span_id=00f067aa0ba902b7").0,
            Some("0000000000000000a3ce929d0e0e4736".into())
        );
        let none = (None, None, None);
        for line in [
            "no context here".to_string(),
            format!("parent_trace_id={T}"),
            format!("trace_id={}", "0".repeat(32)),
            "trace_id=xyz".into(),
            format!("trace_id={}", &T[..20]),
            format!("span_id={S} alone"),
        ] {
            assert_eq!(ids(&line), none, "{line}");
        }
        // A parent span id is not the line's span.
        assert_eq!(ids(&format!("trace_id={T} parent_span_id={S}")).1, None);
    }
}
