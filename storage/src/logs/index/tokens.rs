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
//! Why not tantivy's tokenizers: `simple` splits the same way but has no length cap and
//! `regex`/`ngram` cost far more per byte; this one is a byte loop with no allocation per
//! token.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Tokens longer than this (base64 blobs, minified payloads) are not indexed; a query for one
/// is answered by checking the lines its other tokens select.
pub const MAX_INDEXED_TOKEN: usize = 96;

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

    /// The tokens the index can look up.
    pub fn indexed_tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens
            .iter()
            .filter(|t| t.len() <= MAX_INDEXED_TOKEN)
            .map(String::as_str)
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

/// [`token_ranges`] as a tantivy tokenizer (registered as [`TOKENIZER`]).
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
        loop {
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
            if self.at - start > MAX_INDEXED_TOKEN {
                continue;
            }
            self.token.text.clear();
            self.token.text.push_str(&self.text[start..self.at]);
            self.token.text.make_ascii_lowercase();
            self.token.offset_from = start;
            self.token.offset_to = self.at;
            self.token.position = self.token.position.wrapping_add(1);
            return true;
        }
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
        let want = [
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
        assert_eq!(streamed(line), want, "the index sees the same tokens");
    }

    #[test]
    fn over_long_tokens_are_not_indexed_but_still_match() {
        let blob = "a".repeat(MAX_INDEXED_TOKEN + 1);
        let line = format!("payload {blob} end");
        assert_eq!(streamed(&line), ["payload", "end"]);
        let term = Term::new(&blob);
        assert_eq!(term.indexed_tokens().count(), 0);
        assert!(text_matches(&line, &[term]));
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
