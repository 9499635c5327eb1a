//! Stack traces joined into one record, per stream: a program prints an exception over
//! many lines, and a person debugging wants it as one log record.
//!
//! An event is held only when its first line starts a trace, so ordinary lines pass with
//! no delay:
//! - **Java / Node.js**: a line whose first word (before `:`) is a class-like name ending in
//!   `Exception`, `Error` or `Throwable` (`java.lang.IllegalStateException: boom`,
//!   `TypeError: x is undefined`), or `Exception in thread "…"`. It goes on over indented
//!   lines (`\tat …`, `    at …`, `\t... 3 more`) and `Caused by:` / `Suppressed:`.
//! - **Python**: `Traceback (most recent call last):`, then indented frame lines, the
//!   exception line that ends it, and chained tracebacks (`During handling of the above
//!   exception…`, `The above exception was the direct cause…`, with their blank lines).
//! - **Go**: `panic: …` or `fatal error: …`, then blank lines, `goroutine N [state]:`,
//!   function lines (`main.main()`), indented file lines, `created by …` and
//!   `exit status N`.
//!
//! Any other line ends the event in progress. An event also ends when its stream has
//! been quiet for the wait (the trace's last line may be the last line for a while), when
//! it reaches the size bound, or when the file ends. Lines are joined with `\n`, byte for
//! byte. JSON lines are never joined (they carry their own structure).

use std::time::{Duration, Instant};

use crate::partial::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Java and Node.js exceptions.
    Stack,
    /// A Python traceback; `ended` once its exception line was seen.
    Python {
        ended: bool,
    },
    Go,
}

fn indented(l: &[u8]) -> bool {
    matches!(l.first(), Some(b' ' | b'\t'))
}

fn trim_start(l: &[u8]) -> &[u8] {
    let n = l.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &l[n..]
}

/// The first word (up to `:` or the end) is a class-like exception name.
fn exception_head(l: &[u8]) -> bool {
    let end = memchr::memchr(b':', &l[..l.len().min(256)]).unwrap_or(l.len());
    let head = &l[..end];
    if head.is_empty() || head.len() > 200 || head.iter().any(|b| b.is_ascii_whitespace()) {
        return false;
    }
    if !(end == l.len() || l.get(end + 1) == Some(&b' ')) {
        return false;
    }
    let word_ok = head
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'$' | b'_'));
    word_ok
        && [&b"Exception"[..], b"Error", b"Throwable"]
            .iter()
            .any(|s| head.ends_with(s))
}

fn starts(l: &[u8]) -> Option<Kind> {
    if l.first() == Some(&b'{') || indented(l) {
        return None;
    }
    if l.starts_with(b"Traceback (most recent call last):") {
        return Some(Kind::Python { ended: false });
    }
    if l.starts_with(b"panic: ") || l.starts_with(b"fatal error: ") {
        return Some(Kind::Go);
    }
    if l.starts_with(b"Exception in thread \"") || exception_head(l) {
        return Some(Kind::Stack);
    }
    None
}

/// Whether `l` goes on the event of `kind`; the kind after it.
fn continues(kind: Kind, l: &[u8]) -> Option<Kind> {
    match kind {
        Kind::Stack => {
            let t = trim_start(l);
            (indented(l) && !t.is_empty()
                || t.starts_with(b"Caused by: ")
                || t.starts_with(b"Suppressed: "))
            .then_some(kind)
        }
        Kind::Python { ended } => {
            if l.is_empty() {
                Some(kind)
            } else if l.starts_with(b"During handling of the above exception")
                || l.starts_with(b"The above exception was the direct cause")
                || l.starts_with(b"Traceback (most recent call last):")
            {
                Some(Kind::Python { ended: false })
            } else if ended {
                None
            } else if indented(l) {
                Some(kind)
            } else {
                // The exception line ends the traceback (a chained one may follow).
                Some(Kind::Python { ended: true })
            }
        }
        Kind::Go => {
            // `main.handler({0x4b6f40, 0xc000012345})`: a name with no space, then a call.
            let function = !indented(l)
                && l.ends_with(b")")
                && memchr::memchr(b'(', l)
                    .is_some_and(|i| i > 0 && !l[..i].iter().any(u8::is_ascii_whitespace));
            (l.is_empty()
                || indented(l)
                || l.starts_with(b"goroutine ")
                || l.starts_with(b"created by ")
                || l.starts_with(b"exit status ")
                || l.starts_with(b"[signal ")
                || function)
                .then_some(kind)
        }
    }
}

struct Event {
    record: Record,
    kind: Kind,
    /// Offset of the event's first line: a reader resumes there while it is held.
    start: u64,
    last: Instant,
}

/// Joins the records of one stream.
pub struct Joiner {
    held: Option<Event>,
    max_bytes: usize,
}

impl Joiner {
    pub fn new(max_bytes: usize) -> Self {
        Joiner {
            held: None,
            max_bytes,
        }
    }

    /// Offset of the event held, if any.
    pub fn held_start(&self) -> Option<u64> {
        self.held.as_ref().map(|e| e.start)
    }

    /// Takes a record that began at `start`; returns the records done (0 to 2).
    pub fn push(&mut self, rec: Record, start: u64, now: Instant) -> Vec<Record> {
        let mut out = Vec::new();
        if let Some(e) = self.held.as_mut() {
            let fits = e.record.message.len() + 1 + rec.message.len() <= self.max_bytes;
            match continues(e.kind, &rec.message) {
                Some(kind) if fits && rec.complete => {
                    e.record.message.push(b'\n');
                    e.record.message.extend_from_slice(&rec.message);
                    e.record.parts += rec.parts;
                    e.kind = kind;
                    e.last = now;
                    return out;
                }
                _ => out.extend(self.held.take().map(|e| e.record)),
            }
        }
        match starts(&rec.message) {
            Some(kind) if rec.complete => {
                self.held = Some(Event {
                    record: rec,
                    kind,
                    start,
                    last: now,
                })
            }
            _ => out.push(rec),
        }
        out
    }

    /// The event held, once its stream has been quiet for `wait` (or at once with `None`).
    pub fn flush(&mut self, now: Instant, wait: Option<Duration>) -> Option<Record> {
        let due = self
            .held
            .as_ref()
            .is_some_and(|e| wait.is_none_or(|w| now.duration_since(e.last) >= w));
        if due {
            self.held.take().map(|e| e.record)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream;

    fn rec(m: &str) -> Record {
        Record {
            time_unix_nano: 0,
            stream: Stream::Stdout,
            message: m.as_bytes().to_vec(),
            parts: 1,
            complete: true,
        }
    }

    fn join(text: &str) -> Vec<String> {
        let mut j = Joiner::new(1 << 20);
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, l) in text.split('\n').enumerate() {
            out.extend(j.push(rec(l), i as u64, now));
        }
        out.extend(j.flush(now, None));
        out.into_iter()
            .map(|r| String::from_utf8(r.message).unwrap())
            .collect()
    }

    const JAVA: &str = "Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:10)\n\tat com.example.App.main(App.java:5)\nCaused by: java.io.IOException: disk full\n\tat com.example.Disk.write(Disk.java:3)\n\t... 2 more";
    const PYTHON: &str = "Traceback (most recent call last):\n  File \"/app/x.py\", line 3, in <module>\n    handle()\n  File \"/app/x.py\", line 2, in handle\n    1 / 0\nZeroDivisionError: division by zero\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"/app/x.py\", line 5, in <module>\n    raise ValueError(\"bad\")\nValueError: bad";
    const GO: &str = "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.handler({0x4b6f40, 0xc000012345})\n\t/app/main.go:12 +0x1d\nmain.main()\n\t/app/main.go:20 +0x25\nexit status 2";
    const NODE: &str = "TypeError: Cannot read properties of undefined (reading 'id')\n    at handler (/app/server.js:10:15)\n    at Layer.handle (/app/node_modules/express/lib/router/layer.js:95:5)";

    #[test]
    fn stack_traces_of_four_languages_become_one_record_each() {
        for trace in [JAVA, PYTHON, GO, NODE] {
            let text = format!("before\n{trace}\nafter");
            assert_eq!(join(&text), vec!["before", trace, "after"], "{trace}");
        }
        // A blank line after a traceback, then an ordinary line.
        let text = format!("{PYTHON}\n\nINFO next request");
        assert_eq!(
            join(&text),
            vec![format!("{PYTHON}\n"), "INFO next request".into()]
        );
        // Back to back, and a logger line ending an exception event.
        let text = format!("{JAVA}\n{NODE}\n2024-05-01 INFO ok");
        assert_eq!(join(&text), vec![JAVA, NODE, "2024-05-01 INFO ok"]);
    }

    #[test]
    fn ordinary_lines_are_never_held_or_joined() {
        let text = "GET /a 200\n  indented but no trace\nERROR: failed to connect\n{\"level\":\"error\",\"msg\":\"x\"}\n\tat looks like a frame";
        assert_eq!(join(text), text.split('\n').collect::<Vec<_>>());
        let mut j = Joiner::new(1 << 20);
        let now = Instant::now();
        assert_eq!(j.push(rec("plain"), 0, now).len(), 1, "passed on at once");
        assert!(
            j.push(rec("java.lang.Error: x"), 10, now).is_empty(),
            "held"
        );
        assert_eq!(j.held_start(), Some(10));
        assert!(
            j.flush(now, Some(Duration::from_secs(1))).is_none(),
            "not yet quiet"
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            j.flush(later, Some(Duration::from_secs(1)))
                .unwrap()
                .message,
            b"java.lang.Error: x"
        );
    }

    #[test]
    fn the_size_bound_ends_an_event() {
        let mut j = Joiner::new(40);
        let now = Instant::now();
        assert!(j.push(rec("java.lang.Error: x"), 0, now).is_empty());
        assert!(j.push(rec("\tat a.b(C.java:1)"), 1, now).is_empty());
        let out = j.push(rec("\tat a.b(C.java:2) and more text"), 2, now);
        assert_eq!(out.len(), 2, "the event at its bound, then the line alone");
    }
}
