//! A line's text stored as a template and the ids cut out of it.
//!
//! Request, trace and span ids, hashes and the like are random lower-case hex: zstd codes
//! their text at about 4.7 bits a digit, and they were most of the stored bytes of a line.
//! A token of such digits ([`is_hex_id`]: even length, 12 to 254 digits) is stored as its
//! bytes in the `body_ids` column (4 bits a digit, nothing to compress) and, in the body's
//! text, as a marker ([`MARK`]) followed by one byte, its length in bytes. What is left of
//! the line repeats from line to line and compresses far better. On the benchmark's lines:
//! body 2.84 MB → template 1.00 MB + ids 1.40 MB (zstd -3 of the lines: 3.04 MB).
//!
//! A line that holds the marker byte itself, or no id, is stored as it is, with `body_ids`
//! null: the column says which rows are templates. Reading joins them back byte for byte
//! ([`join`]); the tokens and the search match are those of the joined text.

use crate::logs::index::tokens::token_ranges;

/// Stands for one id in a template; the next byte is the id's length in bytes.
pub const MARK: u8 = 0x01;

/// Longest id cut out, in hex digits (its length in bytes must be one ASCII byte).
const MAX_DIGITS: usize = 254;
const MIN_DIGITS: usize = 12;

/// Whether `token` is stored as an id: lower-case hex, an even number of 12 to 254 digits.
pub fn is_hex_id(token: &[u8]) -> bool {
    (MIN_DIGITS..=MAX_DIGITS).contains(&token.len())
        && token.len().is_multiple_of(2)
        && token
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn nibble(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

/// Cuts the ids out of `body`: the template, with the ids' bytes appended to `ids`; `None`
/// (and `ids` untouched) when the line is stored as it is.
pub fn split(body: &str, ids: &mut Vec<u8>) -> Option<String> {
    let bytes = body.as_bytes();
    if memchr::memchr(MARK, bytes).is_some() {
        return None;
    }
    let mut template: Option<String> = None;
    let mut copied = 0;
    for (a, b) in token_ranges(body) {
        let token = &bytes[a..b];
        if !is_hex_id(token) {
            continue;
        }
        let t = template.get_or_insert_with(|| String::with_capacity(body.len()));
        t.push_str(&body[copied..a]);
        t.push(MARK as char);
        t.push(((b - a) / 2) as u8 as char);
        for pair in token.chunks_exact(2) {
            ids.push(nibble(pair[0]) << 4 | nibble(pair[1]));
        }
        copied = b;
    }
    let mut t = template?;
    t.push_str(&body[copied..]);
    Some(t)
}

/// The line a template and its ids stand for; `None` when they do not fit together (a
/// damaged file).
pub fn join(template: &str, ids: &[u8]) -> Option<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let t = template.as_bytes();
    let mut out = Vec::with_capacity(t.len() + 2 * ids.len());
    let (mut at, mut used) = (0, 0);
    while let Some(i) = memchr::memchr(MARK, &t[at..]) {
        out.extend_from_slice(&t[at..at + i]);
        let len = usize::from(*t.get(at + i + 1)?);
        for &b in ids.get(used..used + len)? {
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 15)]);
        }
        used += len;
        at += i + 2;
    }
    out.extend_from_slice(&t[at..]);
    if used != ids.len() {
        return None;
    }
    String::from_utf8(out).ok()
}

/// The length in bytes of the line [`join`] gives.
pub fn joined_len(template: &str, ids: &[u8]) -> usize {
    let marks = memchr::memchr_iter(MARK, template.as_bytes()).count();
    template.len() + 2 * ids.len() - 2 * marks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(body: &str) -> Option<String> {
        let mut ids = Vec::new();
        let t = split(body, &mut ids)?;
        assert_eq!(join(&t, &ids).as_deref(), Some(body), "{body:?}");
        assert_eq!(joined_len(&t, &ids), body.len());
        Some(t)
    }

    #[test]
    fn ids_are_cut_out_and_joined_back_byte_for_byte() {
        let line = r#"{"msg":"GET /api","request_id":"e44817fce88f","trace_id":"3c049bc366a48dbe55681c70e4131d6f","span_id":"45c5070565769fb8"}"#;
        let t = round_trip(line).unwrap();
        assert_eq!(
            t,
            "{\"msg\":\"GET /api\",\"request_id\":\"\x01\x06\",\"trace_id\":\"\x01\x10\",\"span_id\":\"\x01\x08\"}"
        );
        let mut ids = Vec::new();
        split(line, &mut ids);
        assert_eq!(ids.len(), 6 + 16 + 8);
        // At the very start and end of a line, and side by side.
        round_trip("0123456789ab");
        round_trip("0123456789ab-0123456789abcd x");
        round_trip("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    }

    #[test]
    fn lines_without_ids_or_with_the_marker_are_kept_as_they_are() {
        let mut ids = Vec::new();
        for line in [
            "plain text, no id",
            "upper case 4BF92F3577B34DA6A3CE929D0E0E4736 is not cut",
            "odd length 0123456789abc is not cut",
            "too short 0123456789 is not cut",
            "joined to a word g0123456789ab or 0123456789abé is not cut",
            "the marker \u{1} 0123456789ab makes the line stay as is",
        ] {
            assert_eq!(split(line, &mut ids), None, "{line}");
        }
        assert!(ids.is_empty());
        let long = "a".repeat(256);
        assert_eq!(split(&long, &mut ids), None);
        round_trip(&"ab".repeat(127)).unwrap();
    }

    #[test]
    fn damaged_pairs_are_refused() {
        assert_eq!(join("\x01\x06", &[1, 2, 3]), None);
        assert_eq!(join("abc", &[1]), None);
        assert_eq!(join("abc\x01", &[]), None);
    }

    #[test]
    fn arbitrary_text_round_trips() {
        use rand::Rng;
        const HEX: &[u8] = b"0123456789abcdef";
        let mut rng = rand::rng();
        let alphabet: Vec<char> = "0123456789abcdefABX -_=\"/:é\n".chars().collect();
        for _ in 0..2000 {
            let n = rng.random_range(0..80);
            let mut line = String::new();
            for _ in 0..n {
                if rng.random_range(0..20) == 0 {
                    // An id, whole or joined to what is around it.
                    let digits = 2 * rng.random_range(5..18);
                    line.extend((0..digits).map(|_| HEX[rng.random_range(0..16)] as char));
                } else {
                    line.push(alphabet[rng.random_range(0..alphabet.len())]);
                }
            }
            let mut ids = Vec::new();
            if let Some(t) = split(&line, &mut ids) {
                assert_eq!(join(&t, &ids).as_deref(), Some(line.as_str()));
            }
        }
    }
}
