//! LogQL text → [`Query`]: recursive descent over [`super::lexer`] tokens, with Loki's
//! checks (a selector needs a matcher that cannot match the empty value, unwrapped range
//! functions need `| unwrap` and the others refuse it, `topk` needs its k). What LogQL has
//! and Loupe does not evaluate (binary operations, `label_replace`, `vector`, ...) is
//! refused by name.

use super::LogqlError;
use super::ast::*;
use super::lexer::{Spanned, Tok, lex};
use super::template::Template;

/// Largest compiled regular expression a query may hold. The engine runs in time linear in
/// the line, whatever the expression (no backtracking: `(a+)+$` is as fast as `a+$`), so
/// its size is the one thing to bound.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Deepest nesting of parentheses and aggregations.
const MAX_DEPTH: usize = 64;

/// Functions of LogQL that are refused by name.
const UNSUPPORTED: &[&str] = &[
    "label_replace",
    "vector",
    "sort",
    "sort_desc",
    "rate_counter",
    "absent",
    "approx_topk",
    "sum_over_time_by",
];

pub fn parse(q: &str) -> Result<Query, LogqlError> {
    let toks = lex(q)?;
    if toks.is_empty() {
        return Err(LogqlError::parse(
            q,
            0,
            "syntax error: the query is empty".into(),
        ));
    }
    let mut p = Parser {
        q,
        toks,
        i: 0,
        depth: 0,
    };
    let query = if p.peek() == Some(&Tok::LBrace) {
        let (log, unwrap) = p.log_query()?;
        if unwrap.is_some() {
            return Err(LogqlError::parse(
                q,
                0,
                "unwrap is only allowed inside a range aggregation such as sum_over_time".into(),
            ));
        }
        Query::Log(log)
    } else {
        Query::Metric(p.metric()?)
    };
    match p.peek() {
        None => Ok(query),
        Some(Tok::Op(c)) => Err(LogqlError::Unsupported(format!(
            "binary operations ({c}) are not supported"
        ))),
        Some(Tok::EqEq | Tok::Ne | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le) => Err(
            LogqlError::Unsupported("comparisons between queries are not supported".into()),
        ),
        Some(Tok::Ident(w)) if ["and", "or", "unless"].contains(&w.as_str()) => Err(
            LogqlError::Unsupported(format!("binary operations ({w}) are not supported")),
        ),
        Some(_) => Err(p.unexpected("the end of the query")),
    }
}

struct Parser<'a> {
    q: &'a str,
    toks: Vec<Spanned>,
    i: usize,
    depth: usize,
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "end of input".into(),
        Some(Tok::Str(s)) => format!("string {}", quote(s)),
        Some(Tok::Ident(s)) => format!("identifier {s:?}"),
        Some(Tok::Num(s)) => format!("number {s:?}"),
        Some(Tok::Flag(s)) => format!("flag --{s}"),
        Some(t) => format!(
            "{:?}",
            match t {
                Tok::LBrace => "{",
                Tok::RBrace => "}",
                Tok::LParen => "(",
                Tok::RParen => ")",
                Tok::LBracket => "[",
                Tok::RBracket => "]",
                Tok::Comma => ",",
                Tok::Eq => "=",
                Tok::EqEq => "==",
                Tok::Ne => "!=",
                Tok::Re => "=~",
                Tok::Nre => "!~",
                Tok::PipeEq => "|=",
                Tok::PipeRe => "|~",
                Tok::PipePattern => "|>",
                Tok::NotPattern => "!>",
                Tok::Pipe => "|",
                Tok::Gt => ">",
                Tok::Ge => ">=",
                Tok::Lt => "<",
                Tok::Le => "<=",
                _ => "operator",
            }
        ),
    }
}

/// A duration: Prometheus units (`ms s m h d w y`) and Go's (`ns us µs`), combined.
pub fn duration_ns(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return Some(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if n_len == 0 {
            return None;
        }
        let n: f64 = rest[..n_len].parse().ok()?;
        rest = &rest[n_len..];
        let u_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "w" => 7.0 * 86400e9,
            "y" => 365.0 * 86400e9,
            _ => return None,
        };
        total += n * unit;
        rest = &rest[u_len..];
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return None;
    }
    Some(if neg { -(total as i64) } else { total as i64 })
}

/// A byte size as go-humanize reads it (`20KB` = 20000, `1.5KiB` = 1536, `3 B`).
pub fn bytes(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(s.len());
    let n: f64 = s[..split].parse().ok()?;
    let unit = s[split..].trim().to_ascii_lowercase();
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        "pi" | "pib" => 1024f64.powi(5),
        _ => return None,
    };
    Some(n * mult)
}

/// The last line of a regex error (the others repeat the expression with a caret under it).
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .last()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

/// `text` compiled as written (`pattern`), kept with `text` for printing.
fn compile(q: &str, at: usize, text: &str, pattern: &str) -> Result<Re, LogqlError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|re| Re {
            text: text.to_string(),
            re,
        })
        .map_err(|e| {
            let msg = format!(
                "invalid regular expression {}: {}",
                quote(text),
                regex_error(&e)
            );
            LogqlError::parse(q, at, msg)
        })
}

/// A label matcher's expression: it must match the whole value.
fn anchored(q: &str, at: usize, text: &str) -> Result<Re, LogqlError> {
    compile(q, at, text, &format!("^(?s:{text})$"))
}

/// A line filter's or parser's expression: it may match anywhere.
fn unanchored(q: &str, at: usize, text: &str) -> Result<Re, LogqlError> {
    compile(q, at, text, text)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.i + n).map(|(t, _)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.q.len(), |(_, p)| *p)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|(t, _)| t.clone());
        self.i += 1;
        t
    }

    fn unexpected(&self, expecting: &str) -> LogqlError {
        LogqlError::parse(
            self.q,
            self.pos(),
            format!(
                "syntax error: unexpected {}, expecting {expecting}",
                describe(self.peek())
            ),
        )
    }

    fn expect(&mut self, t: Tok, what: &str) -> Result<(), LogqlError> {
        if self.peek() == Some(&t) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, LogqlError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, LogqlError> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn deeper(&mut self) -> Result<(), LogqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(LogqlError::parse(
                self.q,
                self.pos(),
                format!("the query is nested deeper than {MAX_DEPTH}"),
            ));
        }
        Ok(())
    }

    fn matcher(&mut self) -> Result<Matcher, LogqlError> {
        let name = self.ident("a label name")?;
        let op = match self.next() {
            Some(Tok::Eq) => MatchOp::Eq,
            Some(Tok::Ne) => MatchOp::Ne,
            Some(Tok::Re) => MatchOp::Re,
            Some(Tok::Nre) => MatchOp::Nre,
            _ => {
                self.i -= 1;
                return Err(self.unexpected("=, !=, =~ or !~"));
            }
        };
        let at = self.pos();
        let value = self.string("a quoted value")?;
        let re = match op {
            MatchOp::Re | MatchOp::Nre => Some(anchored(self.q, at, &value)?),
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    fn selector(&mut self) -> Result<Vec<Matcher>, LogqlError> {
        let start = self.pos();
        self.expect(Tok::LBrace, "{")?;
        let mut ms = Vec::new();
        while self.peek() != Some(&Tok::RBrace) {
            ms.push(self.matcher()?);
            if self.peek() == Some(&Tok::Comma) {
                self.i += 1;
            } else if self.peek() != Some(&Tok::RBrace) {
                return Err(self.unexpected(", or }"));
            }
        }
        self.i += 1;
        let selective = ms.iter().any(|m| match (m.op, &m.re) {
            (MatchOp::Eq, _) => !m.value.is_empty(),
            (MatchOp::Re, Some(r)) => !r.re.is_match(""),
            _ => false,
        });
        if !selective {
            return Err(LogqlError::parse(
                self.q,
                start,
                "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into(),
            ));
        }
        Ok(ms)
    }

    /// A selector and its stages; an unwrap (and the filters after it) when there is one.
    fn log_query(&mut self) -> Result<(LogQuery, Option<Unwrap>), LogqlError> {
        let selector = self.selector()?;
        let mut log = LogQuery {
            selector,
            stages: Vec::new(),
        };
        let unwrap = self.stages(&mut log)?;
        Ok((log, unwrap))
    }

    fn stages(&mut self, log: &mut LogQuery) -> Result<Option<Unwrap>, LogqlError> {
        let mut unwrap: Option<Unwrap> = None;
        loop {
            let op = match self.peek() {
                Some(Tok::PipeEq) => LineOp::Contains,
                Some(Tok::Ne) => LineOp::NotContains,
                Some(Tok::PipeRe) => LineOp::Match,
                Some(Tok::Nre) => LineOp::NotMatch,
                Some(Tok::PipePattern | Tok::NotPattern) => {
                    return Err(LogqlError::Unsupported(
                        "pattern line filters (|> and !>) are not supported".into(),
                    ));
                }
                Some(Tok::Pipe) => {
                    self.i += 1;
                    if let Some(u) = unwrap.as_mut() {
                        u.filters.push(self.label_or()?);
                        continue;
                    }
                    match self.pipe_stage()? {
                        Piped::Stage(s) => log.stages.push(s),
                        Piped::Unwrap(u) => unwrap = Some(u),
                    }
                    continue;
                }
                _ => return Ok(unwrap),
            };
            if unwrap.is_some() {
                return Err(self.unexpected("a label filter after unwrap"));
            }
            self.i += 1;
            let mut values = Vec::new();
            let mut res = Vec::new();
            loop {
                let at = self.pos();
                if let Some(Tok::Ident(f)) = self.peek()
                    && self.peek_at(1) == Some(&Tok::LParen)
                {
                    return Err(LogqlError::Unsupported(format!(
                        "line filter functions such as {f}() are not supported"
                    )));
                }
                let v = self.string("a quoted line filter")?;
                if matches!(op, LineOp::Match | LineOp::NotMatch) {
                    res.push(unanchored(self.q, at, &v)?);
                }
                values.push(v);
                if self.peek() == Some(&Tok::Ident("or".into())) {
                    self.i += 1;
                    continue;
                }
                break;
            }
            log.stages.push(Stage::Line(LineFilter { op, values, res }));
        }
    }

    fn params(&mut self) -> Result<Vec<(String, String)>, LogqlError> {
        let mut out = Vec::new();
        while let Some(Tok::Ident(name)) = self.peek() {
            let name = name.clone();
            self.i += 1;
            if self.peek() == Some(&Tok::Eq) {
                self.i += 1;
                out.push((name, self.string("a quoted expression")?));
            } else {
                out.push((name.clone(), name));
            }
            if self.peek() != Some(&Tok::Comma) {
                break;
            }
            self.i += 1;
        }
        Ok(out)
    }

    fn label_names(&mut self) -> Result<Vec<Matcher>, LogqlError> {
        let mut out = Vec::new();
        loop {
            if matches!(
                self.peek_at(1),
                Some(Tok::Eq | Tok::Ne | Tok::Re | Tok::Nre)
            ) {
                out.push(self.matcher()?);
            } else {
                out.push(Matcher {
                    name: self.ident("a label name")?,
                    op: MatchOp::Eq,
                    value: String::new(),
                    re: None,
                });
            }
            if self.peek() != Some(&Tok::Comma) {
                return Ok(out);
            }
            self.i += 1;
        }
    }

    fn pipe_stage(&mut self) -> Result<Piped, LogqlError> {
        let at = self.pos();
        let word = match self.peek() {
            Some(Tok::Ident(w)) => w.clone(),
            Some(Tok::LParen) => return Ok(Piped::Stage(Stage::Labels(self.label_or()?))),
            _ => return Err(self.unexpected("a parser, a formatter or a label filter")),
        };
        // A name followed by an operator is a label filter, even `json = "x"`.
        if matches!(
            self.peek_at(1),
            Some(
                Tok::Eq
                    | Tok::EqEq
                    | Tok::Ne
                    | Tok::Re
                    | Tok::Nre
                    | Tok::Gt
                    | Tok::Ge
                    | Tok::Lt
                    | Tok::Le
            )
        ) {
            return Ok(Piped::Stage(Stage::Labels(self.label_or()?)));
        }
        self.i += 1;
        let stage = match word.as_str() {
            "json" => Stage::Json(self.params()?),
            "logfmt" => {
                let (mut strict, mut keep_empty) = (false, false);
                while let Some(Tok::Flag(f)) = self.peek() {
                    match f.as_str() {
                        "strict" => strict = true,
                        "keep-empty" => keep_empty = true,
                        other => {
                            return Err(LogqlError::parse(
                                self.q,
                                self.pos(),
                                format!(
                                    "unknown logfmt flag --{other}: expected --strict or --keep-empty"
                                ),
                            ));
                        }
                    }
                    self.i += 1;
                }
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    params: self.params()?,
                }
            }
            "regexp" => {
                let at = self.pos();
                let text = self.string("a quoted regular expression")?;
                let re = unanchored(self.q, at, &text)?;
                if !re.re.capture_names().any(|n| n.is_some()) {
                    return Err(LogqlError::parse(
                        self.q,
                        at,
                        "the regexp parser needs at least one named capture, (?P<name>...)".into(),
                    ));
                }
                Stage::Regexp(re)
            }
            "pattern" => {
                let at = self.pos();
                let text = self.string("a quoted pattern")?;
                let parts = pattern(&text).map_err(|m| LogqlError::parse(self.q, at, m))?;
                Stage::Pattern { text, parts }
            }
            "line_format" => {
                let at = self.pos();
                let text = self.string("a quoted template")?;
                Stage::LineFormat(
                    Template::parse(&text).map_err(|m| LogqlError::parse(self.q, at, m))?,
                )
            }
            "label_format" => {
                let mut fs = Vec::new();
                loop {
                    let dst = self.ident("a label name")?;
                    self.expect(Tok::Eq, "=")?;
                    let at = self.pos();
                    match self.next() {
                        Some(Tok::Ident(src)) => fs.push(LabelFormat::Rename { dst, src }),
                        Some(Tok::Str(t)) => fs.push(LabelFormat::Template {
                            dst,
                            template: Template::parse(&t)
                                .map_err(|m| LogqlError::parse(self.q, at, m))?,
                        }),
                        _ => {
                            self.i -= 1;
                            return Err(self.unexpected("a label name or a quoted template"));
                        }
                    }
                    if self.peek() != Some(&Tok::Comma) {
                        break;
                    }
                    self.i += 1;
                }
                Stage::LabelFormat(fs)
            }
            "drop" => Stage::Drop(self.label_names()?),
            "keep" => Stage::Keep(self.label_names()?),
            "decolorize" => Stage::Decolorize,
            "unwrap" => {
                let first = self.ident("a label name")?;
                let (label, conversion) = if self.peek() == Some(&Tok::LParen) {
                    let conversion = match first.as_str() {
                        "duration" | "duration_seconds" => Conversion::Duration,
                        "bytes" => Conversion::Bytes,
                        other => {
                            return Err(LogqlError::parse(
                                self.q,
                                at,
                                format!(
                                    "unknown unwrap conversion {other}: expected duration, duration_seconds or bytes"
                                ),
                            ));
                        }
                    };
                    self.i += 1;
                    let label = self.ident("a label name")?;
                    self.expect(Tok::RParen, ")")?;
                    (label, conversion)
                } else {
                    (first, Conversion::None)
                };
                return Ok(Piped::Unwrap(Unwrap {
                    label,
                    conversion,
                    filters: Vec::new(),
                }));
            }
            "unpack" | "distinct" | "limit" => {
                return Err(LogqlError::Unsupported(format!(
                    "the {word} stage is not supported"
                )));
            }
            _ => {
                self.i -= 1;
                return Err(self.unexpected("a parser, a formatter or a label filter"));
            }
        };
        Ok(Piped::Stage(stage))
    }

    fn label_or(&mut self) -> Result<LabelFilter, LogqlError> {
        let mut l = self.label_and()?;
        while self.peek() == Some(&Tok::Ident("or".into())) {
            self.i += 1;
            l = LabelFilter::Or(Box::new(l), Box::new(self.label_and()?));
        }
        Ok(l)
    }

    fn label_and(&mut self) -> Result<LabelFilter, LogqlError> {
        let mut l = self.label_primary()?;
        loop {
            match self.peek() {
                Some(Tok::Ident(w)) if w == "and" => self.i += 1,
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::Ident(w)) if w != "or" && w != "offset" => {}
                Some(Tok::LParen) => {}
                _ => return Ok(l),
            }
            l = LabelFilter::And(Box::new(l), Box::new(self.label_primary()?));
        }
    }

    fn label_primary(&mut self) -> Result<LabelFilter, LogqlError> {
        if self.peek() == Some(&Tok::LParen) {
            self.deeper()?;
            self.i += 1;
            let l = self.label_or()?;
            self.expect(Tok::RParen, ")")?;
            self.depth -= 1;
            return Ok(l);
        }
        let name = self.ident("a label name")?;
        let op_at = self.pos();
        let op = self.next();
        let at = self.pos();
        match (op, self.next()) {
            (
                Some(op @ (Tok::Eq | Tok::EqEq | Tok::Ne | Tok::Re | Tok::Nre)),
                Some(Tok::Str(value)),
            ) => {
                let op = match op {
                    Tok::Eq | Tok::EqEq => MatchOp::Eq,
                    Tok::Ne => MatchOp::Ne,
                    Tok::Re => MatchOp::Re,
                    _ => MatchOp::Nre,
                };
                let re = match op {
                    MatchOp::Re | MatchOp::Nre => Some(anchored(self.q, at, &value)?),
                    _ => None,
                };
                Ok(LabelFilter::Str(Matcher {
                    name,
                    op,
                    value,
                    re,
                }))
            }
            (
                Some(op @ (Tok::Eq | Tok::EqEq | Tok::Ne | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le)),
                Some(Tok::Num(text)),
            ) => {
                let cmp = match op {
                    Tok::Eq | Tok::EqEq => Cmp::Eq,
                    Tok::Ne => Cmp::Ne,
                    Tok::Gt => Cmp::Gt,
                    Tok::Ge => Cmp::Ge,
                    Tok::Lt => Cmp::Lt,
                    _ => Cmp::Le,
                };
                let (unit, value) = if let Ok(n) = text.parse::<f64>() {
                    (Unit::Number, n)
                } else if let Some(ns) = duration_ns(&text) {
                    (Unit::Duration, ns as f64 / 1e9)
                } else if let Some(b) = bytes(&text) {
                    (Unit::Bytes, b)
                } else {
                    return Err(LogqlError::parse(
                        self.q,
                        at,
                        format!(
                            "invalid value {text:?}: expected a number, a duration (10s) or a byte size (20KB)"
                        ),
                    ));
                };
                Ok(LabelFilter::Num {
                    name,
                    cmp,
                    unit,
                    value,
                    text,
                })
            }
            (Some(Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le), Some(Tok::Str(_))) => {
                Err(LogqlError::parse(
                    self.q,
                    at,
                    format!(
                        "invalid label filter on {name}: >, >=, < and <= compare numbers, durations or byte sizes, not strings"
                    ),
                ))
            }
            _ => {
                self.i = self
                    .toks
                    .iter()
                    .position(|(_, p)| *p == op_at)
                    .unwrap_or(self.i);
                Err(self.unexpected("a comparison and a value"))
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<Grouping>, LogqlError> {
        let by = match self.peek() {
            Some(Tok::Ident(w)) if w == "by" => true,
            Some(Tok::Ident(w)) if w == "without" => false,
            _ => return Ok(None),
        };
        self.i += 1;
        self.expect(Tok::LParen, "(")?;
        let mut labels = Vec::new();
        while self.peek() != Some(&Tok::RParen) {
            labels.push(self.ident("a label name")?);
            if self.peek() == Some(&Tok::Comma) {
                self.i += 1;
            } else if self.peek() != Some(&Tok::RParen) {
                return Err(self.unexpected(", or )"));
            }
        }
        self.i += 1;
        Ok(Some(if by {
            Grouping::By(labels)
        } else {
            Grouping::Without(labels)
        }))
    }

    fn number(&mut self, what: &str) -> Result<f64, LogqlError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let v = n.parse::<f64>().map_err(|_| self.unexpected(what))?;
                self.i += 1;
                Ok(v)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn duration(&mut self, what: &str) -> Result<i64, LogqlError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                let v = duration_ns(n).filter(|v| *v >= 0).ok_or_else(|| {
                    LogqlError::parse(
                        self.q,
                        self.pos(),
                        format!("invalid duration {n:?}: expected e.g. 30s, 5m or 1h"),
                    )
                })?;
                self.i += 1;
                Ok(v)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn range(&mut self) -> Result<i64, LogqlError> {
        self.expect(Tok::LBracket, "[")?;
        let r = self.duration("a range such as 5m")?;
        self.expect(Tok::RBracket, "]")?;
        if r == 0 {
            return Err(LogqlError::parse(
                self.q,
                self.pos(),
                "a range must be longer than zero".into(),
            ));
        }
        Ok(r)
    }

    fn metric(&mut self) -> Result<Metric, LogqlError> {
        self.deeper()?;
        let m = match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.i += 1;
                let m = self.metric()?;
                self.expect(Tok::RParen, ")")?;
                m
            }
            Some(Tok::Ident(name)) => {
                if let Some(&(_, f)) = RANGE_FNS.iter().find(|(n, _)| *n == name) {
                    self.i += 1;
                    self.range_agg(f)?
                } else if let Some(&(_, op)) = VEC_OPS.iter().find(|(n, _)| *n == name) {
                    self.i += 1;
                    self.vector_agg(op)?
                } else if UNSUPPORTED.contains(&name.as_str())
                    || self.peek_at(1) == Some(&Tok::LParen)
                {
                    return Err(LogqlError::Unsupported(format!(
                        "the function {name} is not supported"
                    )));
                } else {
                    return Err(self.unexpected("a metric function or a {stream selector}"));
                }
            }
            Some(Tok::Num(_)) => {
                return Err(LogqlError::Unsupported(
                    "number literals as queries are not supported".into(),
                ));
            }
            _ => return Err(self.unexpected("a metric function or a {stream selector}")),
        };
        self.depth -= 1;
        Ok(m)
    }

    fn range_agg(&mut self, func: RangeFn) -> Result<Metric, LogqlError> {
        let name_at = self.pos();
        self.expect(Tok::LParen, "(")?;
        let param = if func == RangeFn::QuantileOverTime {
            let p = self.number("the quantile, a number")?;
            self.expect(Tok::Comma, ",")?;
            Some(p)
        } else {
            None
        };
        let (log, unwrap, range_ns) = if self.peek() == Some(&Tok::LParen) {
            self.i += 1;
            let (log, unwrap) = self.log_query()?;
            self.expect(Tok::RParen, ")")?;
            (log, unwrap, self.range()?)
        } else {
            let selector = self.selector()?;
            let mut log = LogQuery {
                selector,
                stages: Vec::new(),
            };
            if self.peek() == Some(&Tok::LBracket) {
                let r = self.range()?;
                let unwrap = self.stages(&mut log)?;
                (log, unwrap, r)
            } else {
                let unwrap = self.stages(&mut log)?;
                (log, unwrap, self.range()?)
            }
        };
        let offset_ns = if self.peek() == Some(&Tok::Ident("offset".into())) {
            self.i += 1;
            self.duration("an offset such as 5m")?
        } else {
            0
        };
        self.expect(Tok::RParen, ")")?;
        let grouping = self.grouping()?;
        match (func.needs_unwrap(), &unwrap) {
            (true, None) => {
                return Err(LogqlError::parse(
                    self.q,
                    name_at,
                    format!("invalid aggregation {} without unwrap", func.name()),
                ));
            }
            (false, Some(_)) => {
                return Err(LogqlError::parse(
                    self.q,
                    name_at,
                    format!("invalid aggregation {} with unwrap", func.name()),
                ));
            }
            _ => {}
        }
        if grouping.is_some() && !func.needs_unwrap() {
            return Err(LogqlError::parse(
                self.q,
                name_at,
                format!("grouping not allowed for {} aggregation", func.name()),
            ));
        }
        Ok(Metric::Range(RangeAgg {
            func,
            param,
            log,
            unwrap,
            range_ns,
            offset_ns,
            grouping,
        }))
    }

    fn vector_agg(&mut self, op: VecOp) -> Result<Metric, LogqlError> {
        let before = self.grouping()?;
        self.expect(Tok::LParen, "(")?;
        let k = if matches!(op, VecOp::Topk | VecOp::Bottomk) {
            let k = self.number("k, a number")?;
            if k < 1.0 || k.fract() != 0.0 {
                return Err(LogqlError::parse(
                    self.q,
                    self.pos(),
                    format!(
                        "invalid parameter for {}: k must be a positive whole number",
                        op.name()
                    ),
                ));
            }
            self.expect(Tok::Comma, ",")?;
            Some(k as usize)
        } else {
            None
        };
        let inner = self.metric()?;
        self.expect(Tok::RParen, ")")?;
        let after = self.grouping()?;
        if before.is_some() && after.is_some() {
            return Err(self.unexpected("one by or without, not two"));
        }
        Ok(Metric::Vector {
            op,
            k,
            grouping: before.or(after),
            inner: Box::new(inner),
        })
    }
}

enum Piped {
    Stage(Stage),
    Unwrap(Unwrap),
}

/// The parts of a `pattern` expression: literals and `<name>` / `<_>` captures.
fn pattern(text: &str) -> Result<Vec<PatternPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('<') {
            Some(i) => {
                let close = rest[i..].find('>').map(|j| i + j);
                let name = close.map(|c| &rest[i + 1..c]);
                match name {
                    Some(n)
                        if !n.is_empty()
                            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                    {
                        if i > 0 {
                            parts.push(PatternPart::Literal(rest[..i].to_string()));
                        }
                        if matches!(parts.last(), Some(PatternPart::Capture(_))) {
                            return Err(format!(
                                "invalid pattern {}: two captures in a row need text between them",
                                quote(text)
                            ));
                        }
                        parts.push(PatternPart::Capture((n != "_").then(|| n.to_string())));
                        rest = &rest[close.unwrap_or(i) + 1..];
                    }
                    _ => {
                        parts.push(PatternPart::Literal(rest[..=i].to_string()));
                        rest = &rest[i + 1..];
                    }
                }
            }
            None => {
                parts.push(PatternPart::Literal(rest.to_string()));
                rest = "";
            }
        }
    }
    // Merge neighbouring literals.
    let mut merged: Vec<PatternPart> = Vec::new();
    for p in parts {
        match (merged.last_mut(), p) {
            (Some(PatternPart::Literal(a)), PatternPart::Literal(b)) => a.push_str(&b),
            (_, p) => merged.push(p),
        }
    }
    if !merged
        .iter()
        .any(|p| matches!(p, PatternPart::Capture(Some(_))))
    {
        return Err(format!(
            "invalid pattern {}: it needs at least one named capture, <name>",
            quote(text)
        ));
    }
    Ok(merged)
}
