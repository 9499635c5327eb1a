//! How log text becomes search terms, the same at indexing and at query time.
//!
//! A token is a maximal run of ASCII letters and digits and non-ASCII characters, lower-cased
//! (ASCII only): every other byte separates. So an IP `10.0.0.1` is `10 0 0 1`, a path
//! `/api/items/42` is `api items 42`, `user_id=42` is `user id 42`, a UUID is its five hex
//! groups and a trace id one token. A query term matches a line whose tokens contain the
//! term's tokens in a row (`GET /api` matches `get /API/items`); the index answers with the
//! lines that hold every token, and the match is then checked on the line. Nothing is stemmed
//! and no word is dropped: `error` does not find `errors`, as in a log search it should not.
//!
//! The index keeps a token's first [`KEY_BYTES`] bytes only ([`index_key`]): a request or
//! trace id is as selective by its first 12 hex digits (48 bits) as whole, and the term
//! dictionary — which random ids otherwise dominate — holds half as much. Matches are checked
//! on the lines, so a shared prefix costs a candidate, never a wrong answer.
//!
//! Why not tantivy's tokenizers: `simple` splits the same way but cannot cut tokens, and
//! `regex`/`ngram` cost far more per byte; this one is a byte loop with no allocation per
//! token.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// How much of a token the index keeps.
pub const KEY_BYTES: usize = 12;

/// The index's key for a (lower-cased) token: its first [`KEY_BYTES`] bytes, cut at a
/// character boundary.
pub fn index_key(token: &str) -> &str {
    if token.len() <= KEY_BYTES {
        return token;
    }
    let mut end = KEY_BYTES;
    while !token.is_char_boundary(end) {
        end -= 1;
    }
    &token[..end]
}

/// The name the tokenizer is registered under in every log index.
pub const TOKENIZER: &str = "loupe_log";

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Byte ranges of the tokens of `text`, in order.
pub fn token_ranges(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !is_word(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let start = i;
        while i < bytes.len() && is_word(bytes[i]) {
            i += 1;
        }
        Some((start, i))
    })
}

/// The tokens of `text`, lower-cased.
pub fn tokens(text: &str) -> Vec<String> {
    token_ranges(text)
        .map(|(a, b)| text[a..b].to_ascii_lowercase())
        .collect()
}

/// A query term, prepared once per search.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// As written, lower-cased: matched as a substring when it has no token (`/`, `==`).
    pub lowered: String,
    pub tokens: Vec<String>,
}

impl Term {
    pub fn new(text: &str) -> Self {
        Term {
            lowered: text.to_ascii_lowercase(),
            tokens: tokens(text),
        }
    }

    /// The keys the index looks up.
    pub fn index_keys(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(|t| index_key(t))
    }
}

/// Whether every term occurs in `text` (its tokens in a row; a term without tokens as a
/// substring, ignoring ASCII case).
pub fn text_matches(text: &str, terms: &[Term]) -> bool {
    if terms.is_empty() {
        return true;
    }
    let words = tokens(text);
    terms.iter().all(|t| {
        if t.tokens.is_empty() {
            return text.to_ascii_lowercase().contains(&t.lowered);
        }
        words
            .windows(t.tokens.len())
            .any(|w| w.iter().zip(&t.tokens).all(|(a, b)| a == b))
    })
}

/// [`token_ranges`] cut to [`index_key`]s, as a tantivy tokenizer (registered as
/// [`TOKENIZER`]).
#[derive(Clone, Default)]
pub struct LogTokenizer {
    token: Token,
}

pub struct LogTokenStream<'a> {
    text: &'a str,
    at: usize,
    token: &'a mut Token,
}

impl Tokenizer for LogTokenizer {
    type TokenStream<'a> = LogTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> LogTokenStream<'a> {
        self.token.reset();
        self.token.position = usize::MAX;
        LogTokenStream {
            text,
            at: 0,
            token: &mut self.token,
        }
    }
}

impl TokenStream for LogTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() && !is_word(bytes[self.at]) {
            self.at += 1;
        }
        if self.at >= bytes.len() {
            return false;
        }
        let start = self.at;
        while self.at < bytes.len() && is_word(bytes[self.at]) {
            self.at += 1;
        }
        self.token.text.clear();
        self.token
            .text
            .push_str(index_key(&self.text[start..self.at]));
        self.token.text.make_ascii_lowercase();
        self.token.offset_from = start;
        self.token.offset_to = self.at;
        self.token.position = self.token.position.wrapping_add(1);
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(text: &str) -> Vec<String> {
        let mut t = LogTokenizer::default();
        let mut s = t.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn ids_ips_paths_and_pairs_split_into_searchable_tokens() {
        let line = r#"10.0.0.1 - GET /api/items/42 user_id=42 req=7f3a-9C2B trace_id="4bf92f3577b34da6a3ce929d0e0e4736" café"#;
        let want = vec![
            "10",
            "0",
            "0",
            "1",
            "get",
            "api",
            "items",
            "42",
            "user",
            "id",
            "42",
            "req",
            "7f3a",
            "9c2b",
            "trace",
            "id",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "café",
        ];
        assert_eq!(tokens(line), want);
        let keys: Vec<&str> = want.iter().map(|t| index_key(t)).collect();
        assert_eq!(streamed(line), keys, "the index sees the same tokens, cut");
    }

    #[test]
    fn the_index_keeps_a_prefix_of_long_tokens() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            streamed(&format!("x {id} é{}", "ü".repeat(10))),
            [
                "x".to_string(),
                id[..KEY_BYTES].to_string(),
                format!("é{}", "ü".repeat(5)),
            ]
        );
        assert_eq!(
            Term::new(id).index_keys().collect::<Vec<_>>(),
            [&id[..KEY_BYTES]]
        );
        let other = format!("{}ffff", &id[..KEY_BYTES]);
        assert!(!text_matches(&other, &[Term::new(id)]), "the line decides");
    }

    #[test]
    fn terms_match_whole_tokens_in_a_row_ignoring_case() {
        let line = "GET /API/items/42 took 12ms";
        let yes = ["get /api", "ITEMS", "items/42", "12ms", "api items"];
        for t in yes {
            assert!(text_matches(line, &[Term::new(t)]), "{t}");
        }
        let no = ["it", "item", "42 get", "12", "api get"];
        for t in no {
            assert!(!text_matches(line, &[Term::new(t)]), "{t}");
        }
        assert!(text_matches(line, &[Term::new("/")]), "no token: substring");
        assert!(!text_matches(line, &[Term::new("==")]));
        assert!(!text_matches(
            line,
            &[Term::new("get"), Term::new("missing")]
        ));
    }
}
