//! The level a log line states in its text, for records that arrive without a severity
//! (stdout logs of services without a log SDK): a JSON field `"level"`, `"severity"` or
//! `"lvl"` with a string value, or the same keys in logfmt (`level=warn`). Shared by the
//! collector and the node agent, as [`crate::trace_context`] is.
//!
//! A scan of the bytes for the key (with `memchr`'s substring search), not a parse of the line:
//! the key must start a JSON key or a logfmt pair, and its value must be a word of letters.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// The keys, with their searchers built once (building one costs more than a short scan).
static KEYS: LazyLock<[Finder<'static>; 3]> = LazyLock::new(|| {
    [
        Finder::new(b"level"),
        Finder::new(b"severity"),
        Finder::new(b"lvl"),
    ]
});

/// The level word `line` states, as written (`INFO`, `warn`, `Error`).
pub fn find(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    for key in KEYS.iter() {
        for at in key.find_iter(b) {
            if let Some(v) = value_after(b, at, key.needle().len()) {
                return Some(&line[v.0..v.1]);
            }
        }
    }
    None
}

/// The value of the key at `at..at + len`, when it is one: `"key": "word"` or `key=word`.
fn value_after(b: &[u8], at: usize, len: usize) -> Option<(usize, usize)> {
    let before = at.checked_sub(1).map(|i| b[i]);
    let mut i = at + len;
    let quoted_key = before == Some(b'"');
    if quoted_key {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
    } else {
        // A logfmt key starts the line or follows a space.
        if !matches!(before, None | Some(b' ' | b'\t')) || b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        if b.get(i) == Some(&b'"') {
            i += 1;
        }
    }
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_alphabetic) {
        i += 1;
    }
    let end_ok = matches!(b.get(i), None | Some(b'"' | b' ' | b'\t' | b',' | b'}'));
    (i > start && end_ok).then_some((start, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_json_and_logfmt_levels_only_as_keys() {
        assert_eq!(find(r#"{"msg":"x","level":"warn"}"#), Some("warn"));
        assert_eq!(find(r#"{"severity" : "ERROR", "a":1}"#), Some("ERROR"));
        assert_eq!(find("ts=1 level=info msg=\"a b\""), Some("info"));
        assert_eq!(find("lvl=\"debug\" x=1"), Some("debug"));
        assert_eq!(find("level=info"), Some("info"));
        for none in [
            "no level here",
            "loglevel=info",
            r#"{"level":3}"#,
            r#"{"xlevel":"info"}"#,
            "level=",
            "the level of water",
            r#"{"level":"info2"}"#,
        ] {
            assert_eq!(find(none), None, "{none}");
        }
    }
}
