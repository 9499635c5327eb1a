//! LogQL tokens. Strings are Go-quoted (`"…"` with escapes) or raw (`` `…` ``); a number
//! token keeps its unit (`5m`, `1.5`, `20KB`, `-3`) and is read as a number, duration or
//! byte size by the parser, where the place says which.

use super::LogqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `|=`
    PipeEq,
    /// `|~`
    PipeRe,
    /// `|>` (a line filter by pattern)
    PipePattern,
    /// `!>`
    NotPattern,
    Pipe,
    Gt,
    Ge,
    Lt,
    Le,
    /// `+ - * / % ^`: binary operators, which are refused by name.
    Op(char),
    Str(String),
    Ident(String),
    Num(String),
    /// `--strict`, `--keep-empty`
    Flag(String),
}

/// A token and the byte offset where it starts.
pub type Spanned = (Tok, usize);

fn string(q: &str, start: usize) -> Result<(String, usize), LogqlError> {
    let bytes = q.as_bytes();
    let quote = bytes[start];
    let mut out = String::new();
    let mut chars = q[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        let at = start + 1 + i;
        if c as u32 == quote as u32 {
            return Ok((out, at + 1));
        }
        if c == '\\' && quote == b'"' {
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                'u' | 'x' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
                    let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                    match ch {
                        Some(ch) if hex.len() == n => out.push(ch),
                        _ => {
                            return Err(LogqlError::parse(
                                q,
                                at,
                                format!("invalid escape \\{e}{hex} in a string"),
                            ));
                        }
                    }
                }
                other => {
                    return Err(LogqlError::parse(
                        q,
                        at,
                        format!("invalid escape \\{other} in a string"),
                    ));
                }
            }
            continue;
        }
        out.push(c);
    }
    Err(LogqlError::parse(q, start, "a string is not closed".into()))
}

pub fn lex(q: &str) -> Result<Vec<Spanned>, LogqlError> {
    let bytes = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let two = |s: &str| q[i..].starts_with(s);
        let (tok, len) = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                // A comment runs to the end of the line.
                i = q[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'|' if two("|=") => (Tok::PipeEq, 2),
            b'|' if two("|~") => (Tok::PipeRe, 2),
            b'|' if two("|>") => (Tok::PipePattern, 2),
            b'|' => (Tok::Pipe, 1),
            b'!' if two("!=") => (Tok::Ne, 2),
            b'!' if two("!~") => (Tok::Nre, 2),
            b'!' if two("!>") => (Tok::NotPattern, 2),
            b'=' if two("==") => (Tok::EqEq, 2),
            b'=' if two("=~") => (Tok::Re, 2),
            b'=' => (Tok::Eq, 1),
            b'>' if two(">=") => (Tok::Ge, 2),
            b'>' => (Tok::Gt, 1),
            b'<' if two("<=") => (Tok::Le, 2),
            b'<' => (Tok::Lt, 1),
            b'"' | b'`' => {
                let (s, end) = string(q, i)?;
                out.push((Tok::Str(s), i));
                i = end;
                continue;
            }
            b'-' if two("--") => {
                let end = q[i + 2..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .map_or(bytes.len(), |n| i + 2 + n);
                out.push((Tok::Flag(q[i + 2..end].to_string()), i));
                i = end;
                continue;
            }
            b'-' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !matches!(
                    out.last(),
                    Some((Tok::Num(_) | Tok::Ident(_) | Tok::RParen | Tok::RBracket, _))
                ) =>
            {
                let end = number_end(q, i + 1);
                out.push((Tok::Num(q[i..end].to_string()), i));
                i = end;
                continue;
            }
            b'0'..=b'9' | b'.' if c != b'.' || bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let end = number_end(q, i);
                out.push((Tok::Num(q[i..end].to_string()), i));
                i = end;
                continue;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => (Tok::Op(c as char), 1),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = q[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(bytes.len(), |n| i + n);
                out.push((Tok::Ident(q[i..end].to_string()), i));
                i = end;
                continue;
            }
            _ => {
                let ch = q[i..].chars().next().unwrap_or('?');
                return Err(LogqlError::parse(
                    q,
                    i,
                    format!("unexpected character {ch:?}"),
                ));
            }
        };
        out.push((tok, i));
        i += len;
    }
    Ok(out)
}

/// Where a number (with its unit letters: `1h30m`, `20KiB`, `1e3`) ends.
fn number_end(q: &str, from: usize) -> usize {
    q[from..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == 'µ'))
        .map_or(q.len(), |n| from + n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(q: &str) -> Vec<Tok> {
        lex(q).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn lexes_selectors_filters_numbers_and_strings() {
        use Tok::*;
        assert_eq!(
            toks(r#"{a="x\"y", b=~`\d+`} |= "e" != "f" | n >= -1.5 | d > 1h30m"#),
            vec![
                LBrace,
                Ident("a".into()),
                Eq,
                Str("x\"y".into()),
                Comma,
                Ident("b".into()),
                Re,
                Str("\\d+".into()),
                RBrace,
                PipeEq,
                Str("e".into()),
                Ne,
                Str("f".into()),
                Pipe,
                Ident("n".into()),
                Ge,
                Num("-1.5".into()),
                Pipe,
                Ident("d".into()),
                Gt,
                Num("1h30m".into()),
            ]
        );
        assert_eq!(
            toks("logfmt --strict # a comment\n[5m]"),
            vec![
                Ident("logfmt".into()),
                Flag("strict".into()),
                LBracket,
                Num("5m".into()),
                RBracket
            ]
        );
        assert!(
            lex(r#"{a="open}"#)
                .unwrap_err()
                .to_string()
                .contains("not closed")
        );
        assert!(
            lex("{a=\"\\q\"}")
                .unwrap_err()
                .to_string()
                .contains("invalid escape")
        );
        assert!(lex("{a=$}").unwrap_err().to_string().contains("col 4"));
    }
}
