//! A recursive-descent TraceQL parser with static type checks. Precedence, loosest first:
//! `|` (pipeline), `||`, `&&`, then the structural `>` and `>>`; inside a filter `||`, `&&`,
//! then comparisons. What the language has but we do not evaluate yet (sibling and parent
//! operators, `by()`, arithmetic, metrics functions, …) is refused with a message naming it.

use loupe_storage::model::{SpanKind, StatusCode};

use super::TraceQlError;
use super::ast::{
    AggFunc, CmpOp, Comparison, Cond, Field, Intrinsic, Scope, SpansetExpr, Stage, Static,
};
use super::check::{check_aggregate, check_comparison};
use super::lexer::{Spanned, Tok, lex};

pub fn parse(src: &str) -> Result<SpansetExpr, TraceQlError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        end: src.len(),
        nodes: 0,
        depth: 0,
    };
    let expr = p.pipeline()?;
    if let Some((tok, at)) = p.toks.get(p.i) {
        return Err(TraceQlError::at(
            *at,
            format!("unexpected {} after the query", describe(tok)),
        ));
    }
    Ok(expr)
}

/// One attribute or intrinsic reference, as a tag name of the autocomplete API
/// (`resource.service.name`, `.http.method`, `span:status`, `duration`).
pub fn parse_field(src: &str) -> Result<Field, TraceQlError> {
    let mut p = Parser {
        toks: lex(src)?,
        i: 0,
        end: src.len(),
        nodes: 0,
        depth: 0,
    };
    let field = p.field()?;
    if let Some((tok, at)) = p.toks.get(p.i) {
        return Err(TraceQlError::at(
            *at,
            format!("unexpected {} after the tag name", describe(tok)),
        ));
    }
    Ok(field)
}

struct Parser {
    toks: Vec<Spanned>,
    i: usize,
    end: usize,
    /// Operators, filters, comparisons and parentheses seen (see [`MAX_NODES`]).
    nodes: usize,
    /// Parentheses open now (see [`MAX_DEPTH`]).
    depth: usize,
}

/// The deepest nesting of parentheses one query may have.
pub const MAX_DEPTH: usize = 32;

/// The most operators, filters, comparisons and parentheses one query may have. Parsing,
/// printing and evaluation recurse along the tree, so this also bounds their stack depth.
pub const MAX_NODES: usize = 512;

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Attr { scope, name } => format!("`{scope}.{name}`"),
        Tok::Colon { scope, name } => format!("`{scope}:{name}`"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("`{i}`"),
        Tok::Float(f) => format!("`{f}`"),
        Tok::Duration(d) => format!("duration `{d}ns`"),
        Tok::LBrace => "`{`".into(),
        Tok::RBrace => "`}`".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Pipe => "`|`".into(),
        Tok::AndAnd => "`&&`".into(),
        Tok::OrOr => "`||`".into(),
        Tok::Eq => "`=`".into(),
        Tok::Ne => "`!=`".into(),
        Tok::Gt => "`>`".into(),
        Tok::Ge => "`>=`".into(),
        Tok::Lt => "`<`".into(),
        Tok::Le => "`<=`".into(),
        Tok::Re => "`=~`".into(),
        Tok::NotRe => "`!~`".into(),
        Tok::Desc => "`>>`".into(),
        Tok::Not => "`!`".into(),
        Tok::Other(c) => format!("`{c}`"),
    }
}

impl Parser {
    fn node(&mut self) -> Result<(), TraceQlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(TraceQlError::at(
                self.pos(),
                format!(
                    "the query is too complex (more than {MAX_NODES} operators, filters and parentheses)"
                ),
            ));
        }
        Ok(())
    }

    /// Enters a parenthesis; [`Parser::leave`] leaves it.
    fn enter(&mut self) -> Result<(), TraceQlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(TraceQlError::at(
                self.pos(),
                format!("the query nests parentheses more than {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.i + n).map(|(t, _)| t)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |(_, p)| *p)
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.i).map(|(t, _)| t.clone());
        self.i += 1;
        t
    }
    fn eat(&mut self, want: &Tok) -> bool {
        if self.peek() == Some(want) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, want: &Tok, what: &str) -> Result<(), TraceQlError> {
        if self.eat(want) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }
    fn unexpected(&self, what: &str) -> TraceQlError {
        match self.peek() {
            Some(t) => TraceQlError::at(
                self.pos(),
                format!("expected {what}, found {}", describe(t)),
            ),
            None => TraceQlError::at(
                self.end,
                format!("expected {what}, found the end of the query"),
            ),
        }
    }

    fn pipeline(&mut self) -> Result<SpansetExpr, TraceQlError> {
        let input = self.or_expr()?;
        let mut stages = Vec::new();
        while self.eat(&Tok::Pipe) {
            stages.push(self.stage()?);
        }
        Ok(if stages.is_empty() {
            input
        } else {
            SpansetExpr::Pipeline(Box::new(input), stages)
        })
    }

    fn or_expr(&mut self) -> Result<SpansetExpr, TraceQlError> {
        let mut left = self.and_expr()?;
        while self.eat(&Tok::OrOr) {
            self.node()?;
            let right = self.and_expr()?;
            left = SpansetExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<SpansetExpr, TraceQlError> {
        let mut left = self.structural()?;
        while self.eat(&Tok::AndAnd) {
            self.node()?;
            let right = self.structural()?;
            left = SpansetExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn structural(&mut self) -> Result<SpansetExpr, TraceQlError> {
        let mut left = self.primary()?;
        loop {
            let at = self.pos();
            self.node()?;
            match self.peek() {
                Some(Tok::Gt) => {
                    self.i += 1;
                    let right = self.primary()?;
                    left = SpansetExpr::Child(Box::new(left), Box::new(right));
                }
                Some(Tok::Desc) => {
                    self.i += 1;
                    let right = self.primary()?;
                    left = SpansetExpr::Descendant(Box::new(left), Box::new(right));
                }
                Some(Tok::Lt) | Some(Tok::Le) => {
                    return Err(TraceQlError::unsupported(
                        at,
                        "the parent operators `<` and `<<`",
                    ));
                }
                Some(Tok::Other('~')) | Some(Tok::Re) => {
                    return Err(TraceQlError::unsupported(at, "the sibling operator `~`"));
                }
                Some(Tok::Not) | Some(Tok::Ne) | Some(Tok::NotRe) => {
                    return Err(TraceQlError::unsupported(
                        at,
                        "negated structural operators (`!>`, `!>>`, `!~`, …)",
                    ));
                }
                Some(Tok::Other('&')) => {
                    return Err(TraceQlError::unsupported(
                        at,
                        "union structural operators (`&>`, `&>>`, …)",
                    ));
                }
                _ => return Ok(left),
            }
        }
    }

    fn primary(&mut self) -> Result<SpansetExpr, TraceQlError> {
        self.node()?;
        match self.peek() {
            Some(Tok::LBrace) => Ok(SpansetExpr::Filter(self.braced()?)),
            Some(Tok::LParen) => {
                self.i += 1;
                self.enter()?;
                let inner = self.pipeline()?;
                self.expect(&Tok::RParen, "`)`")?;
                self.leave();
                Ok(inner)
            }
            Some(Tok::Word(w)) if is_function(w) => Err(TraceQlError::unsupported(
                self.pos(),
                &format!("`{w}()` outside a pipeline (write `{{ … }} | {w}(…)`)"),
            )),
            _ => Err(self.unexpected("a spanset filter `{ … }`")),
        }
    }

    /// `{ cond }` or `{}`.
    fn braced(&mut self) -> Result<Cond, TraceQlError> {
        self.expect(&Tok::LBrace, "`{`")?;
        if self.eat(&Tok::RBrace) {
            return Ok(Cond::True);
        }
        let cond = self.cond()?;
        self.expect(&Tok::RBrace, "`}` or `&&`/`||`")?;
        Ok(cond)
    }

    fn stage(&mut self) -> Result<Stage, TraceQlError> {
        self.node()?;
        let at = self.pos();
        match self.peek().cloned() {
            Some(Tok::LBrace) => Ok(Stage::Filter(self.braced()?)),
            Some(Tok::Word(w)) => {
                self.i += 1;
                let func = match w.as_str() {
                    "count" => AggFunc::Count,
                    "avg" => AggFunc::Avg,
                    "min" => AggFunc::Min,
                    "max" => AggFunc::Max,
                    "sum" => AggFunc::Sum,
                    "select" => return self.select(),
                    "by"
                    | "coalesce"
                    | "rate"
                    | "count_over_time"
                    | "min_over_time"
                    | "max_over_time"
                    | "avg_over_time"
                    | "sum_over_time"
                    | "quantile_over_time"
                    | "histogram_over_time"
                    | "compare"
                    | "topk"
                    | "bottomk" => {
                        return Err(TraceQlError::unsupported(at, &format!("`{w}()`")));
                    }
                    _ => {
                        return Err(TraceQlError::at(
                            at,
                            format!(
                                "unknown pipeline stage `{w}` (supported: `{{ … }}`, count(), avg(), min(), max(), sum(), select())"
                            ),
                        ));
                    }
                };
                self.expect(&Tok::LParen, "`(`")?;
                let field = if func == AggFunc::Count {
                    None
                } else {
                    Some(self.field()?)
                };
                self.expect(&Tok::RParen, "`)`")?;
                let op_at = self.pos();
                let op = self.cmp_op()?;
                let value = self.literal()?;
                check_aggregate(func, field.as_ref(), op, &value, op_at)?;
                Ok(Stage::Aggregate {
                    func,
                    field,
                    op,
                    value,
                })
            }
            _ => Err(self.unexpected("a pipeline stage (`{ … }`, count(), avg(), select(), …)")),
        }
    }

    fn select(&mut self) -> Result<Stage, TraceQlError> {
        self.expect(&Tok::LParen, "`(`")?;
        let mut fields = vec![self.field()?];
        while self.eat(&Tok::Comma) {
            fields.push(self.field()?);
        }
        self.expect(&Tok::RParen, "`)` or `,`")?;
        Ok(Stage::Select(fields))
    }

    fn cond(&mut self) -> Result<Cond, TraceQlError> {
        let mut left = self.cond_and()?;
        while self.eat(&Tok::OrOr) {
            self.node()?;
            let right = self.cond_and()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn cond_and(&mut self) -> Result<Cond, TraceQlError> {
        let mut left = self.cond_atom()?;
        while self.eat(&Tok::AndAnd) {
            self.node()?;
            let right = self.cond_atom()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn cond_atom(&mut self) -> Result<Cond, TraceQlError> {
        self.node()?;
        let at = self.pos();
        match self.peek() {
            Some(Tok::LParen) => {
                self.i += 1;
                self.enter()?;
                let c = self.cond()?;
                self.expect(&Tok::RParen, "`)`")?;
                self.leave();
                Ok(c)
            }
            Some(Tok::Word(w)) if w == "true" && self.peek_at(1) == Some(&Tok::RBrace) => {
                self.i += 1;
                Ok(Cond::True)
            }
            Some(Tok::Not) => Err(TraceQlError::unsupported(at, "negation with `!`")),
            _ => {
                let field = self.field()?;
                if matches!(
                    self.peek(),
                    Some(Tok::Other('+' | '-' | '*' | '/' | '%' | '^'))
                ) {
                    return Err(TraceQlError::unsupported(
                        self.pos(),
                        "arithmetic in filters",
                    ));
                }
                if matches!(
                    self.peek(),
                    Some(Tok::RBrace | Tok::AndAnd | Tok::OrOr | Tok::RParen)
                ) {
                    return Err(TraceQlError::unsupported(
                        self.pos(),
                        &format!(
                            "a bare attribute as a condition (write `{field} = true` or `{field} != nil`)"
                        ),
                    ));
                }
                let op_at = self.pos();
                let op = self.cmp_op()?;
                let value = self.literal()?;
                let regex = check_comparison(&field, op, &value, op_at)?;
                Ok(Cond::Cmp(Comparison {
                    field,
                    op,
                    value,
                    regex,
                }))
            }
        }
    }

    fn cmp_op(&mut self) -> Result<CmpOp, TraceQlError> {
        let op = match self.peek() {
            Some(Tok::Eq) => CmpOp::Eq,
            Some(Tok::Ne) => CmpOp::Ne,
            Some(Tok::Gt) => CmpOp::Gt,
            Some(Tok::Ge) => CmpOp::Ge,
            Some(Tok::Lt) => CmpOp::Lt,
            Some(Tok::Le) => CmpOp::Le,
            Some(Tok::Re) => CmpOp::Re,
            Some(Tok::NotRe) => CmpOp::NotRe,
            _ => {
                return Err(
                    self.unexpected("a comparison (`=`, `!=`, `>`, `>=`, `<`, `<=`, `=~`, `!~`)")
                );
            }
        };
        self.i += 1;
        Ok(op)
    }

    fn field(&mut self) -> Result<Field, TraceQlError> {
        let at = self.pos();
        match self.bump() {
            Some(Tok::Attr { scope, name }) => {
                let scope = match scope.as_str() {
                    "" => Scope::Any,
                    "span" => Scope::Span,
                    "resource" => Scope::Resource,
                    "event" => Scope::Event,
                    "link" => Scope::Link,
                    "instrumentation" => {
                        return Err(TraceQlError::unsupported(at, "the `instrumentation` scope"));
                    }
                    other => {
                        return Err(TraceQlError::at(
                            at,
                            format!(
                                "unknown attribute scope `{other}` (use span, resource, event or link)"
                            ),
                        ));
                    }
                };
                Ok(Field::Attr { scope, name })
            }
            Some(Tok::Word(w)) => {
                let i = match w.as_str() {
                    "name" => Intrinsic::Name,
                    "status" => Intrinsic::Status,
                    "statusMessage" => Intrinsic::StatusMessage,
                    "kind" => Intrinsic::Kind,
                    "duration" => Intrinsic::Duration,
                    "rootName" => Intrinsic::RootName,
                    "rootServiceName" => Intrinsic::RootServiceName,
                    "traceDuration" => Intrinsic::TraceDuration,
                    "childCount" | "parent" | "nestedSetLeft" | "nestedSetRight"
                    | "nestedSetParent" => {
                        return Err(TraceQlError::unsupported(
                            at,
                            &format!("the intrinsic `{w}`"),
                        ));
                    }
                    _ => {
                        return Err(TraceQlError::at(
                            at,
                            format!(
                                "unknown intrinsic `{w}` (attributes start with `.`, `span.` or `resource.`)"
                            ),
                        ));
                    }
                };
                Ok(Field::Intrinsic(i))
            }
            Some(Tok::Colon { scope, name }) => {
                let i = match (scope.as_str(), name.as_str()) {
                    ("span", "name") => Intrinsic::Name,
                    ("span", "status") => Intrinsic::Status,
                    ("span", "statusMessage") => Intrinsic::StatusMessage,
                    ("span", "kind") => Intrinsic::Kind,
                    ("span", "duration") => Intrinsic::Duration,
                    ("trace", "rootName") => Intrinsic::RootName,
                    ("trace", "rootService") => Intrinsic::RootServiceName,
                    ("trace", "duration") => Intrinsic::TraceDuration,
                    _ => {
                        return Err(TraceQlError::unsupported(
                            at,
                            &format!("the intrinsic `{scope}:{name}`"),
                        ));
                    }
                };
                Ok(Field::Intrinsic(i))
            }
            Some(t) => {
                self.i -= 1;
                Err(TraceQlError::at(
                    at,
                    format!("expected an attribute or intrinsic, found {}", describe(&t)),
                ))
            }
            None => Err(TraceQlError::at(
                self.end,
                "expected an attribute or intrinsic, found the end of the query",
            )),
        }
    }

    fn literal(&mut self) -> Result<Static, TraceQlError> {
        let at = self.pos();
        let v = match self.bump() {
            Some(Tok::Str(s)) => Static::Str(s),
            Some(Tok::Int(i)) => Static::Int(i),
            Some(Tok::Float(f)) => Static::Float(f),
            Some(Tok::Duration(d)) => Static::Duration(d),
            Some(Tok::Word(w)) => match w.as_str() {
                "true" => Static::Bool(true),
                "false" => Static::Bool(false),
                "nil" => Static::Nil,
                "error" => Static::Status(StatusCode::Error),
                "ok" => Static::Status(StatusCode::Ok),
                "unset" => Static::Status(StatusCode::Unset),
                "unspecified" => Static::Kind(SpanKind::Unspecified),
                "internal" => Static::Kind(SpanKind::Internal),
                "server" => Static::Kind(SpanKind::Server),
                "client" => Static::Kind(SpanKind::Client),
                "producer" => Static::Kind(SpanKind::Producer),
                "consumer" => Static::Kind(SpanKind::Consumer),
                _ => {
                    return Err(TraceQlError::at(
                        at,
                        format!("expected a value, found `{w}` (quote strings: \"{w}\")"),
                    ));
                }
            },
            Some(Tok::Attr { .. }) | Some(Tok::Colon { .. }) => {
                return Err(TraceQlError::unsupported(at, "comparing two attributes"));
            }
            Some(t) => {
                return Err(TraceQlError::at(
                    at,
                    format!("expected a value, found {}", describe(&t)),
                ));
            }
            None => {
                return Err(TraceQlError::at(
                    self.end,
                    "expected a value, found the end of the query",
                ));
            }
        };
        Ok(v)
    }
}

fn is_function(w: &str) -> bool {
    matches!(
        w,
        "count" | "avg" | "min" | "max" | "sum" | "select" | "by" | "rate"
    )
}
