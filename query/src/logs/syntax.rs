//! The native log search syntax (Lucene-like, as Quickwit's and Kibana's): conditions
//! separated by spaces must all hold.
//!
//! - `word` or `"a phrase"`: its tokens occur in a row in the line's body, ignoring case (a
//!   token is a run of letters and digits: `GET /api` finds `get /API/items`, `error` does
//!   not find `errors`; see `loupe_storage::logs::index::tokens`);
//! - `time*`, `?0s`: a word with `*` (any run) or `?` (one character) matches a line with a
//!   token that fits it;
//! - `service:checkout` (`service:check*` too); `trace_id:<32 hex>`;
//! - `severity:warn` (that level: WARN..WARN4), `severity>=warn`, `severity<error`,
//!   `severity:[info TO error]` (`level` is a synonym; levels are trace, debug, info, warn,
//!   error, fatal, or a number 1–24);
//! - `key:value` / `attributes.key:value`: an attribute of the record or of its resource
//!   (`resource.key:value` too) equal to the value, or fitting it when unquoted with `*`/`?`;
//!   `key>=500`, `key<1.5`, `key:[200 TO 299]`, `key:{a TO *}`: in a range (`[ ]` inclusive,
//!   `{ }` exclusive, `*` open; numbers compare as numbers);
//! - `a OR b`, `a AND b`, `NOT a` or `-a`, and parentheses; AND binds tighter than OR.
//!
//! Anything else (an empty field, a value missing its closing quote, an unknown severity, an
//! unclosed parenthesis) is an error naming it.

use std::ops::Bound;

use loupe_storage::logs::index::tokens::Term;
use loupe_storage::logs::{Cond, Glob, LogExpr, LogFilter, Scalar, ValueTest, severity_from_text};
use loupe_storage::model::parse_trace_id;

use crate::error::QueryError;

fn bad(msg: String) -> QueryError {
    QueryError::BadRequest(msg)
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text { text: String, quoted: bool },
    Range(Bound<String>, Bound<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Text {
        text: String,
        quoted: bool,
    },
    Field {
        key: String,
        op: &'static str,
        value: Value,
    },
}

/// A field name: letters, digits and `_ . @ -`, not starting with `-`.
fn is_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('-')
        && k.chars().all(|c| c.is_alphanumeric() || "_.@-".contains(c))
}

struct Lexer<'a> {
    q: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl Lexer<'_> {
    fn quoted(&mut self) -> Result<String, QueryError> {
        let mut out = String::new();
        while let Some((_, c)) = self.chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => {
                    if let Some((_, n)) = self.chars.next() {
                        out.push(n);
                    }
                }
                c => out.push(c),
            }
        }
        Err(bad(format!(
            "invalid query {:?}: a quoted phrase is not closed",
            self.q
        )))
    }

    fn bare(&mut self) -> String {
        let mut out = String::new();
        while let Some(&(_, c)) = self.chars.peek() {
            if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                break;
            }
            out.push(c);
            self.chars.next();
        }
        out
    }

    /// The rest of a range after its `[` or `{`: `a TO b]` or `a TO b}`.
    fn range(&mut self, key: &str, open: char) -> Result<Value, QueryError> {
        let mut body = String::new();
        let close = loop {
            match self.chars.next() {
                Some((_, c @ (']' | '}'))) => break c,
                Some((_, c)) => body.push(c),
                None => {
                    return Err(bad(format!(
                        "invalid range for {key}: expected {open}a TO b] or {open}a TO b}}"
                    )));
                }
            }
        };
        let parts: Vec<&str> = body.split_whitespace().collect();
        let [lo, "TO", hi] = parts[..] else {
            return Err(bad(format!(
                "invalid range {open}{body}{close} for {key}: expected {open}a TO b{close}"
            )));
        };
        let bound = |v: &str, inclusive: bool| match v {
            "*" => Bound::Unbounded,
            v if inclusive => Bound::Included(v.trim_matches('"').to_string()),
            v => Bound::Excluded(v.trim_matches('"').to_string()),
        };
        Ok(Value::Range(
            bound(lo, open == '['),
            bound(hi, close == ']'),
        ))
    }

    fn tokens(mut self) -> Result<Vec<Tok>, QueryError> {
        let mut out = Vec::new();
        while let Some(&(_, c)) = self.chars.peek() {
            match c {
                c if c.is_whitespace() => {
                    self.chars.next();
                }
                '(' => {
                    self.chars.next();
                    out.push(Tok::Open);
                }
                ')' => {
                    self.chars.next();
                    out.push(Tok::Close);
                }
                '"' => {
                    self.chars.next();
                    let text = self.quoted()?;
                    out.push(Tok::Text { text, quoted: true });
                }
                _ => {
                    let word = self.bare();
                    if let Some(rest) = word.strip_prefix('-')
                        && !rest.is_empty()
                    {
                        out.push(Tok::Not);
                        self.word(rest.to_string(), &mut out)?;
                    } else if word == "-" && matches!(self.chars.peek(), Some((_, '"' | '('))) {
                        out.push(Tok::Not);
                    } else {
                        self.word(word, &mut out)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// One unquoted word (and the quoted value or range that may follow its `key:`).
    fn word(&mut self, word: String, out: &mut Vec<Tok>) -> Result<(), QueryError> {
        let keyword = match word.as_str() {
            "AND" => Some(Tok::And),
            "OR" => Some(Tok::Or),
            "NOT" => Some(Tok::Not),
            _ => None,
        };
        if let Some(k) = keyword {
            out.push(k);
            return Ok(());
        }
        let field = [">=", "<=", ":", ">", "<"].iter().find_map(|op| {
            let (k, v) = word.split_once(op)?;
            // `https://…` is a word, not a field `https` (a value never starts with `//`).
            (is_key(k) && !(op == &":" && v.starts_with("//"))).then_some((k, *op, v))
        });
        let Some((key, op, v)) = field else {
            out.push(Tok::Text {
                text: word,
                quoted: false,
            });
            return Ok(());
        };
        let key = key.to_string();
        let value = if !v.is_empty() {
            let mut v = v.chars();
            match v.next() {
                Some(open @ ('[' | '{')) if op == ":" => {
                    // The range continues past this word: read on to its closing bracket.
                    let mut body: String = v.collect();
                    if !body.contains([']', '}']) {
                        for (_, c) in self.chars.by_ref() {
                            body.push(c);
                            if c == ']' || c == '}' {
                                break;
                            }
                        }
                    }
                    let mut sub = Lexer {
                        q: self.q,
                        chars: body.char_indices().peekable(),
                    };
                    let value = sub.range(&key, open)?;
                    if sub.chars.next().is_some() {
                        return Err(bad(format!(
                            "invalid range for {key}: nothing may follow its closing bracket"
                        )));
                    }
                    value
                }
                _ => Value::Text {
                    text: word[key.len() + op.len()..].to_string(),
                    quoted: false,
                },
            }
        } else if matches!(self.chars.peek(), Some((_, '"'))) {
            self.chars.next();
            Value::Text {
                text: self.quoted()?,
                quoted: true,
            }
        } else {
            return Err(bad(format!(
                "invalid condition {word:?}: no value after {key}{op}"
            )));
        };
        out.push(Tok::Field { key, op, value });
        Ok(())
    }
}

/// The severity range of a level name or number.
fn level(v: &str) -> Result<(i32, i32), QueryError> {
    if let Ok(n) = v.parse::<i32>() {
        if (1..=24).contains(&n) {
            return Ok((n, n));
        }
    } else {
        let n = severity_from_text(v);
        if n > 0 && (n - 1) % 4 == 0 {
            return Ok((n, n + 3));
        }
    }
    Err(bad(format!(
        "unknown severity {v:?}: expected trace, debug, info, warn, error, fatal or 1 to 24"
    )))
}

fn severity(op: &str, value: &Value) -> Result<Cond, QueryError> {
    let (lo, hi) = match (op, value) {
        (":", Value::Text { text, .. }) => level(text)?,
        (":", Value::Range(a, b)) => {
            let lo = match a {
                Bound::Included(v) => level(v)?.0,
                Bound::Excluded(v) => level(v)?.1 + 1,
                Bound::Unbounded => 0,
            };
            let hi = match b {
                Bound::Included(v) => level(v)?.1,
                Bound::Excluded(v) => level(v)?.0 - 1,
                Bound::Unbounded => 24,
            };
            (lo, hi)
        }
        (op, Value::Text { text, .. }) => {
            let (lo, hi) = level(text)?;
            match op {
                ">=" => (lo, 24),
                ">" => (hi + 1, 24),
                "<=" => (0, hi),
                _ => (0, lo - 1),
            }
        }
        _ => unreachable!("only `:` takes a range"),
    };
    Ok(Cond::Severity(lo, hi))
}

fn value_test(op: &str, value: &Value) -> ValueTest {
    match (op, value) {
        (":", Value::Text { text, quoted }) => match (*quoted, Glob::new(text)) {
            (false, Some(g)) => ValueTest::Glob(g),
            _ => ValueTest::Eq(text.clone()),
        },
        (":", Value::Range(a, b)) => {
            let s = |b: &Bound<String>| match b {
                Bound::Included(v) => Bound::Included(Scalar::parse(v)),
                Bound::Excluded(v) => Bound::Excluded(Scalar::parse(v)),
                Bound::Unbounded => Bound::Unbounded,
            };
            ValueTest::Range(s(a), s(b))
        }
        (op, Value::Text { text, .. }) => {
            let v = Scalar::parse(text);
            match op {
                ">=" => ValueTest::Range(Bound::Included(v), Bound::Unbounded),
                ">" => ValueTest::Range(Bound::Excluded(v), Bound::Unbounded),
                "<=" => ValueTest::Range(Bound::Unbounded, Bound::Included(v)),
                _ => ValueTest::Range(Bound::Unbounded, Bound::Excluded(v)),
            }
        }
        _ => unreachable!("only `:` takes a range"),
    }
}

fn condition(t: Tok) -> Result<Cond, QueryError> {
    match t {
        Tok::Text { text, quoted: true } => Ok(Cond::Words(Term::new(&text))),
        Tok::Text { text, .. } => match Glob::new(&text.to_ascii_lowercase()) {
            None => Ok(Cond::Words(Term::new(&text))),
            Some(g) => {
                if !text
                    .chars()
                    .all(|c| c == '*' || c == '?' || c.is_ascii_alphanumeric() || !c.is_ascii())
                {
                    return Err(bad(format!(
                        "invalid word {text:?}: a wildcard applies to one word of letters and digits"
                    )));
                }
                Ok(Cond::TokenGlob(g))
            }
        },
        Tok::Field { key, op, value } => match key.as_str() {
            "severity" | "level" => severity(op, &value),
            "service" | "service.name" | "service_name" => {
                Ok(Cond::Service(value_test(op, &value)))
            }
            "trace_id" | "traceId" | "traceID" => match (op, &value) {
                (":", Value::Text { text, .. }) => {
                    Ok(Cond::TraceId(parse_trace_id(text).ok_or_else(|| {
                        bad(format!("invalid trace_id {text:?}: expected 32 hex digits"))
                    })?))
                }
                _ => Err(bad(format!(
                    "invalid condition on {key}: a trace id is only compared with :"
                ))),
            },
            _ => {
                let k = key
                    .strip_prefix("attributes.")
                    .or_else(|| key.strip_prefix("resource."))
                    .unwrap_or(&key);
                Ok(Cond::Attribute(k.to_string(), value_test(op, &value)))
            }
        },
        other => unreachable!("not a condition: {other:?}"),
    }
}

/// Deepest nesting of parentheses and NOTs a query may have.
const MAX_DEPTH: usize = 64;

struct Parser {
    toks: std::iter::Peekable<std::vec::IntoIter<Tok>>,
    q: String,
    depth: usize,
}

impl Parser {
    fn or(&mut self) -> Result<LogExpr, QueryError> {
        let mut alts = vec![self.and()?];
        while self.toks.next_if_eq(&Tok::Or).is_some() {
            alts.push(self.and()?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            LogExpr::Any(alts)
        })
    }

    fn and(&mut self) -> Result<LogExpr, QueryError> {
        let mut all = Vec::new();
        loop {
            match self.toks.peek() {
                None | Some(Tok::Close) | Some(Tok::Or) => break,
                Some(Tok::And) => {
                    self.toks.next();
                    if all.is_empty() {
                        return Err(self.dangling("AND"));
                    }
                }
                _ => {}
            }
            all.push(self.unary()?);
        }
        if all.is_empty() {
            return Err(self.dangling("OR"));
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            LogExpr::All(all)
        })
    }

    fn dangling(&self, op: &str) -> QueryError {
        bad(format!(
            "invalid query {:?}: {op} needs a condition on each side",
            self.q
        ))
    }

    fn unary(&mut self) -> Result<LogExpr, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(bad(format!(
                "invalid query: nested deeper than {MAX_DEPTH} parentheses or NOTs"
            )));
        }
        let e = self.unary_inner();
        self.depth -= 1;
        e
    }

    fn unary_inner(&mut self) -> Result<LogExpr, QueryError> {
        match self.toks.next() {
            Some(Tok::Not) => match self.toks.peek() {
                None | Some(Tok::Close | Tok::Or | Tok::And) => Err(bad(format!(
                    "invalid query {:?}: NOT needs a condition after it",
                    self.q
                ))),
                _ => Ok(LogExpr::Not(Box::new(self.unary()?))),
            },
            Some(Tok::Open) => {
                let inner = self.or()?;
                if self.toks.next() != Some(Tok::Close) {
                    return Err(bad(format!(
                        "invalid query {:?}: a parenthesis is not closed",
                        self.q
                    )));
                }
                Ok(inner)
            }
            Some(t @ (Tok::Text { .. } | Tok::Field { .. })) => Ok(LogExpr::Cond(condition(t)?)),
            Some(Tok::And | Tok::Or) => Err(self.dangling("AND or OR")),
            Some(Tok::Close) | None => Err(bad(format!(
                "invalid query {:?}: a closing parenthesis has no opening one",
                self.q
            ))),
        }
    }
}

/// The query `q` as one expression (`All([])` when empty).
pub fn parse(q: &str) -> Result<LogExpr, QueryError> {
    let toks = Lexer {
        q,
        chars: q.char_indices().peekable(),
    }
    .tokens()?;
    if toks.is_empty() {
        return Ok(LogExpr::All(Vec::new()));
    }
    let mut p = Parser {
        toks: toks.into_iter().peekable(),
        q: q.to_string(),
        depth: 0,
    };
    let e = p.or()?;
    if p.toks.next().is_some() {
        return Err(bad(format!(
            "invalid query {q:?}: a closing parenthesis has no opening one"
        )));
    }
    Ok(e)
}

/// Adds the conditions of query `q` to `f`: the plain ones (words, service, severity, trace
/// id, attribute equal to a value) into its own fields, which the catalog and index use
/// directly, the rest into its expression.
pub fn apply(q: &str, f: &mut LogFilter) -> Result<(), QueryError> {
    let conds = match parse(q)? {
        LogExpr::All(xs) => xs,
        one => vec![one],
    };
    let mut rest = Vec::new();
    for c in conds {
        match c {
            LogExpr::Cond(Cond::Words(t)) => f.terms.push(t.lowered),
            LogExpr::Cond(Cond::Service(ValueTest::Eq(s))) if f.service.is_none() => {
                f.service = Some(s)
            }
            LogExpr::Cond(Cond::TraceId(id)) if f.trace_id.is_none() => f.trace_id = Some(id),
            LogExpr::Cond(Cond::Attribute(k, ValueTest::Eq(v))) => f.attributes.push((k, v)),
            LogExpr::Cond(Cond::Severity(lo, hi)) => {
                if lo > 0 {
                    f.min_severity = Some(f.min_severity.map_or(lo, |m| m.max(lo)));
                }
                if hi < 24 {
                    f.max_severity = Some(f.max_severity.map_or(hi, |m| m.min(hi)));
                }
            }
            other => rest.push(other),
        }
    }
    if let Some(e) = f.expr.take() {
        rest.insert(0, e);
    }
    f.expr = match rest.len() {
        0 => None,
        1 => rest.pop(),
        _ => Some(LogExpr::All(rest)),
    };
    Ok(())
}

#[cfg(test)]
#[path = "syntax_tests.rs"]
mod tests;
