//! The templates of `line_format` and `label_format`: the part of Go's text/template that
//! log pipelines use. `{{.name}}` (a label; `{{.name}}` of a missing label is empty),
//! `{{__line__}}`, `{{__timestamp__}}` (RFC 3339), string and number literals, and the
//! functions `ToUpper`/`upper`, `ToLower`/`lower`, `Title`/`title`, `TrimSpace`/`trim`,
//! `default`, `replace`, `trunc`, called as `{{ f a b }}` or piped, `{{ .a | f b }}` (the
//! piped value is the last argument). `{{-` and `-}}` trim the space beside them. Anything
//! else (`if`, `range`, other functions) is refused by name when the query is parsed.

/// A value in an action.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Label(String),
    Str(String),
    Num(String),
    Line,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Upper,
    Lower,
    Title,
    Trim,
    Default,
    Replace,
    Trunc,
}

const FUNCS: &[(&str, Func, usize)] = &[
    ("ToUpper", Func::Upper, 1),
    ("upper", Func::Upper, 1),
    ("ToLower", Func::Lower, 1),
    ("lower", Func::Lower, 1),
    ("Title", Func::Title, 1),
    ("title", Func::Title, 1),
    ("TrimSpace", Func::Trim, 1),
    ("trim", Func::Trim, 1),
    ("default", Func::Default, 2),
    ("replace", Func::Replace, 3),
    ("trunc", Func::Trunc, 2),
];

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Value(Arg),
    Call(Func, Vec<Arg>),
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Action(Vec<Command>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub text: String,
    parts: Vec<Part>,
}

/// What a template reads: labels by name, the line and its time.
pub trait Scope {
    fn label(&self, name: &str) -> Option<&str>;
    fn line(&self) -> &str;
    fn time_unix_nano(&self) -> i64;
}

fn words(action: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' || c == '`' {
            chars.next();
            w.push('"');
            let mut closed = false;
            while let Some(n) = chars.next() {
                if n == c {
                    closed = true;
                    break;
                }
                if n == '\\' && c == '"' {
                    match chars.next() {
                        Some('n') => w.push('\n'),
                        Some('t') => w.push('\t'),
                        Some(e) => w.push(e),
                        None => {}
                    }
                    continue;
                }
                w.push(n);
            }
            if !closed {
                return Err("a string in the template is not closed".into());
            }
        } else if c == '|' {
            chars.next();
            w.push('|');
        } else {
            while let Some(&n) = chars.peek() {
                if n.is_whitespace() || n == '|' {
                    break;
                }
                w.push(n);
                chars.next();
            }
        }
        out.push(w);
    }
    Ok(out)
}

fn arg(w: &str) -> Result<Arg, String> {
    if let Some(s) = w.strip_prefix('"') {
        return Ok(Arg::Str(s.to_string()));
    }
    if let Some(name) = w.strip_prefix('.') {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label reference {w:?} in the template"));
        }
        return Ok(Arg::Label(name.to_string()));
    }
    match w {
        "__line__" => Ok(Arg::Line),
        "__timestamp__" => Ok(Arg::Timestamp),
        w if w.parse::<f64>().is_ok() => Ok(Arg::Num(w.to_string())),
        w => Err(format!("unsupported template action {w:?}")),
    }
}

fn command(ws: &[String]) -> Result<Command, String> {
    let Some(first) = ws.first() else {
        return Err("an empty command in the template".into());
    };
    if let Some(&(_, f, n)) = FUNCS.iter().find(|(name, _, _)| name == first) {
        let args = ws[1..]
            .iter()
            .map(|w| arg(w))
            .collect::<Result<Vec<_>, _>>()?;
        if args.len() > n {
            return Err(format!("{first} takes {n} arguments in the template"));
        }
        return Ok(Command::Call(f, args));
    }
    if ws.len() > 1 {
        return Err(format!("unsupported template function {first:?}"));
    }
    arg(first).map(Command::Value)
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next = false;
        while let Some(open) = rest.find("{{") {
            let mut lit = &rest[..open];
            if trim_next {
                lit = lit.trim_start();
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or("an action in the template is not closed")?;
            let mut action = &after[..close];
            if let Some(a) = action.strip_prefix('-') {
                lit = lit.trim_end();
                action = a;
            }
            trim_next = false;
            if let Some(a) = action.strip_suffix('-') {
                trim_next = true;
                action = a;
            }
            if !lit.is_empty() {
                parts.push(Part::Text(lit.to_string()));
            }
            let ws = words(action)?;
            let mut cmds = Vec::new();
            for piece in ws.split(|w| w == "|") {
                cmds.push(command(piece)?);
            }
            parts.push(Part::Action(cmds));
            rest = &after[close + 2..];
        }
        let lit = if trim_next { rest.trim_start() } else { rest };
        if !lit.is_empty() {
            parts.push(Part::Text(lit.to_string()));
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    pub fn render(&self, s: &dyn Scope) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Action(cmds) => {
                    let mut v: Option<String> = None;
                    for c in cmds {
                        v = Some(run(c, s, v));
                    }
                    out.push_str(&v.unwrap_or_default());
                }
            }
        }
        out
    }
}

fn value(a: &Arg, s: &dyn Scope) -> String {
    match a {
        Arg::Label(n) => s.label(n).unwrap_or_default().to_string(),
        Arg::Str(v) | Arg::Num(v) => v.clone(),
        Arg::Line => s.line().to_string(),
        Arg::Timestamp => chrono::DateTime::from_timestamp_nanos(s.time_unix_nano()).to_rfc3339(),
    }
}

fn run(c: &Command, s: &dyn Scope, piped: Option<String>) -> String {
    match c {
        Command::Value(a) => value(a, s),
        Command::Call(f, args) => {
            let mut vs: Vec<String> = args.iter().map(|a| value(a, s)).collect();
            vs.extend(piped);
            let last = vs.last().cloned().unwrap_or_default();
            match f {
                Func::Upper => last.to_uppercase(),
                Func::Lower => last.to_lowercase(),
                Func::Title => {
                    let mut out = String::new();
                    let mut start = true;
                    for ch in last.chars() {
                        if start {
                            out.extend(ch.to_uppercase());
                        } else {
                            out.push(ch);
                        }
                        start = !ch.is_alphanumeric();
                    }
                    out
                }
                Func::Trim => last.trim().to_string(),
                Func::Default => match vs.as_slice() {
                    [d, v] if v.is_empty() => d.clone(),
                    [_, v] => v.clone(),
                    _ => last,
                },
                Func::Replace => match vs.as_slice() {
                    [old, new, src] => src.replace(old.as_str(), new),
                    _ => last,
                },
                Func::Trunc => match vs.as_slice() {
                    [n, src] => {
                        let n: i64 = n.parse().unwrap_or(0);
                        let len = src.chars().count() as i64;
                        if n >= 0 {
                            src.chars().take(n as usize).collect()
                        } else {
                            src.chars().skip((len + n).max(0) as usize).collect()
                        }
                    }
                    _ => last,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S;
    impl Scope for S {
        fn label(&self, n: &str) -> Option<&str> {
            match n {
                "a" => Some("Hello world"),
                "e" => Some(""),
                _ => None,
            }
        }
        fn line(&self) -> &str {
            "the line"
        }
        fn time_unix_nano(&self) -> i64 {
            1_700_000_000_000_000_000
        }
    }

    fn r(t: &str) -> String {
        Template::parse(t).unwrap().render(&S)
    }

    #[test]
    fn renders_labels_functions_and_pipes() {
        assert_eq!(r("{{.a}} | {{ .missing }}!"), "Hello world | !");
        assert_eq!(r("{{ .a | ToUpper }}"), "HELLO WORLD");
        assert_eq!(r("{{ lower .a }}"), "hello world");
        assert_eq!(
            r(r#"{{ default "none" .e }}/{{ .e | default "x" }}"#),
            "none/x"
        );
        assert_eq!(r(r#"{{ replace "world" "there" .a }}"#), "Hello there");
        assert_eq!(r("{{ trunc 5 .a }}|{{ .a | trunc -5 }}"), "Hello|world");
        assert_eq!(r("[ {{- __line__ -}} ]"), "[the line]");
        assert_eq!(r("{{ __timestamp__ }}"), "2023-11-14T22:13:20+00:00");
        assert_eq!(r("{{ title \"a b\" }}"), "A B");
        for (bad, want) in [
            ("{{ if .a }}x{{ end }}", "unsupported template"),
            ("{{ .a", "not closed"),
            ("{{ sprig .a }}", "unsupported template function"),
            ("{{ .a-b }}", "invalid label reference"),
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
