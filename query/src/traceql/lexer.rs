//! TraceQL tokens. Written from the language documentation: attribute references (`.x`,
//! `span.x`, `resource."a b"`, intrinsics such as `duration` or `span:name`), literals
//! (strings in double quotes or backticks, integers, floats, durations such as `1.5s`),
//! keywords, and the operators of filters, spanset expressions and pipelines.

use super::TraceQlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word: an intrinsic, a keyword, an aggregate's name, or a scope before `.`.
    Word(String),
    /// An attribute reference: scope word (possibly empty) and the name after the dot.
    Attr {
        scope: String,
        name: String,
    },
    /// `span:name`, `trace:duration` and the like.
    Colon {
        scope: String,
        name: String,
    },
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    AndAnd,
    OrOr,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Re,
    NotRe,
    Desc,
    Not,
    Other(char),
}

/// A token and the byte offset where it starts.
pub type Spanned = (Tok, usize);

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | '@' | '#' | '$')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub fn lex(src: &str) -> Result<Vec<Spanned>, TraceQlError> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| chars.get(i).map(|(_, c)| *c);
    let pos = |i: usize| chars.get(i).map_or(src.len(), |(p, _)| *p);
    while i < chars.len() {
        let c = chars[i].1;
        let start = pos(i);
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = (c, at(i + 1).unwrap_or('\0'));
        let (tok, len) = match two {
            ('&', '&') => (Tok::AndAnd, 2),
            ('|', '|') => (Tok::OrOr, 2),
            ('!', '=') => (Tok::Ne, 2),
            ('!', '~') => (Tok::NotRe, 2),
            ('=', '~') => (Tok::Re, 2),
            ('>', '=') => (Tok::Ge, 2),
            ('<', '=') => (Tok::Le, 2),
            ('>', '>') => (Tok::Desc, 2),
            ('=', _) => (Tok::Eq, 1),
            ('>', _) => (Tok::Gt, 1),
            ('<', _) => (Tok::Lt, 1),
            ('!', _) => (Tok::Not, 1),
            ('{', _) => (Tok::LBrace, 1),
            ('}', _) => (Tok::RBrace, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('|', _) => (Tok::Pipe, 1),
            ('"', _) | ('`', _) => {
                let (s, next) = string(src, &chars, i)?;
                out.push((Tok::Str(s), start));
                i = next;
                continue;
            }
            ('.', _) => {
                let (name, next) = attr_name(src, &chars, i + 1)?;
                out.push((
                    Tok::Attr {
                        scope: String::new(),
                        name,
                    },
                    start,
                ));
                i = next;
                continue;
            }
            (c, _)
                if c.is_ascii_digit()
                    || (c == '-' && at(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let (tok, next) = number(src, &chars, i)?;
                out.push((tok, start));
                i = next;
                continue;
            }
            (c, _) if is_word_char(c) => {
                let mut j = i;
                while at(j).is_some_and(is_word_char) {
                    j += 1;
                }
                let word = &src[start..pos(j)];
                match at(j) {
                    Some('.') => {
                        let (name, next) = attr_name(src, &chars, j + 1)?;
                        out.push((
                            Tok::Attr {
                                scope: word.to_string(),
                                name,
                            },
                            start,
                        ));
                        i = next;
                    }
                    Some(':') => {
                        let mut k = j + 1;
                        while at(k).is_some_and(is_word_char) {
                            k += 1;
                        }
                        out.push((
                            Tok::Colon {
                                scope: word.to_string(),
                                name: src[pos(j + 1)..pos(k)].to_string(),
                            },
                            start,
                        ));
                        i = k;
                    }
                    _ => {
                        out.push((Tok::Word(word.to_string()), start));
                        i = j;
                    }
                }
                continue;
            }
            (c, _) => (Tok::Other(c), 1),
        };
        out.push((tok, start));
        i += len;
    }
    Ok(out)
}

/// An attribute name after the dot: a quoted string or a run of name characters.
fn attr_name(
    src: &str,
    chars: &[(usize, char)],
    i: usize,
) -> Result<(String, usize), TraceQlError> {
    let pos = |i: usize| chars.get(i).map_or(src.len(), |(p, _)| *p);
    match chars.get(i).map(|(_, c)| *c) {
        Some('"') | Some('`') => string(src, chars, i),
        _ => {
            let mut j = i;
            while chars.get(j).is_some_and(|(_, c)| is_name_char(*c)) {
                j += 1;
            }
            if j == i {
                return Err(TraceQlError::at(
                    pos(i),
                    "expected an attribute name after `.`",
                ));
            }
            Ok((src[pos(i)..pos(j)].to_string(), j))
        }
    }
}

/// A string in double quotes (with escapes) or backticks (raw). Returns the value and the
/// index after the closing quote.
fn string(src: &str, chars: &[(usize, char)], i: usize) -> Result<(String, usize), TraceQlError> {
    let quote = chars[i].1;
    let open = chars[i].0;
    let mut out = String::new();
    let mut j = i + 1;
    while let Some(&(p, c)) = chars.get(j) {
        if c == quote {
            return Ok((out, j + 1));
        }
        if c == '\\' && quote == '"' {
            let esc = chars.get(j + 1).map(|(_, c)| *c);
            j += 2;
            match esc {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('u') => {
                    let hex: String = chars.iter().skip(j).take(4).map(|(_, c)| *c).collect();
                    let ch = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 4)
                        .and_then(char::from_u32)
                        .ok_or_else(|| {
                            TraceQlError::at(p, "invalid \\u escape (want four hex digits)")
                        })?;
                    out.push(ch);
                    j += 4;
                }
                Some(other) => {
                    return Err(TraceQlError::at(
                        p,
                        format!("unknown escape `\\{other}` in a string"),
                    ));
                }
                None => break,
            }
            continue;
        }
        out.push(c);
        j += 1;
    }
    let _ = src;
    Err(TraceQlError::at(open, "unterminated string"))
}

/// An integer, float or duration (`300ms`, `1.5s`, `2h`, `10us`, `10µs`, `5ns`, `1m`).
fn number(src: &str, chars: &[(usize, char)], i: usize) -> Result<(Tok, usize), TraceQlError> {
    let pos = |i: usize| chars.get(i).map_or(src.len(), |(p, _)| *p);
    let at = |i: usize| chars.get(i).map(|(_, c)| *c);
    let mut j = i;
    if at(j) == Some('-') {
        j += 1;
    }
    while at(j).is_some_and(|c| c.is_ascii_digit()) {
        j += 1;
    }
    let mut float = false;
    if at(j) == Some('.') && at(j + 1).is_some_and(|c| c.is_ascii_digit()) {
        float = true;
        j += 1;
        while at(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
    }
    if matches!(at(j), Some('e') | Some('E'))
        && (at(j + 1).is_some_and(|c| c.is_ascii_digit())
            || (matches!(at(j + 1), Some('+') | Some('-'))
                && at(j + 2).is_some_and(|c| c.is_ascii_digit())))
    {
        float = true;
        j += 2;
        while at(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
    }
    let text = &src[pos(i)..pos(j)];
    let mut k = j;
    while at(k).is_some_and(|c| c.is_alphabetic()) {
        k += 1;
    }
    let unit = &src[pos(j)..pos(k)];
    if !unit.is_empty() {
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(TraceQlError::at(
                    pos(j),
                    format!("unknown duration unit `{unit}` (use ns, us, ms, s, m or h)"),
                ));
            }
        };
        let v: f64 = text
            .parse()
            .map_err(|_| TraceQlError::at(pos(i), format!("invalid number `{text}`")))?;
        let ns = v * scale;
        if !ns.is_finite() || ns.abs() > i64::MAX as f64 {
            return Err(TraceQlError::at(
                pos(i),
                format!("duration `{text}{unit}` is out of range"),
            ));
        }
        return Ok((Tok::Duration(ns.round() as i64), k));
    }
    let tok =
        if float {
            Tok::Float(
                text.parse()
                    .map_err(|_| TraceQlError::at(pos(i), format!("invalid number `{text}`")))?,
            )
        } else {
            Tok::Int(text.parse().map_err(|_| {
                TraceQlError::at(pos(i), format!("integer `{text}` is out of range"))
            })?)
        };
    Ok((tok, j))
}
