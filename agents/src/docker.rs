//! Docker's json-file format: one JSON object per line, `{"log": "...", "stream":
//! "stdout", "time": "<RFC 3339>"}`. A log line longer than 16 KiB is split into several
//! objects; every part but the last lacks the trailing `\n`, which is how a part is told
//! from a whole line. The message is `log` without that newline.

use std::borrow::Cow;

use serde::Deserialize;

use crate::{LineError, RuntimeLine, Stream, rfc3339_nanos};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Reads one json-file line (without its trailing newline).
pub fn parse(line: &[u8]) -> Result<RuntimeLine<'_>, LineError> {
    let l: Line<'_> = serde_json::from_slice(line).map_err(|e| LineError::Docker(e.to_string()))?;
    let stream = Stream::parse(l.stream.as_bytes()).ok_or_else(|| {
        LineError::Docker(format!("stream {:?} is not stdout or stderr", l.stream))
    })?;
    let time_unix_nano = rfc3339_nanos(&l.time)
        .ok_or_else(|| LineError::Docker(format!("time {:?} is not RFC 3339", l.time)))?;
    let partial = !l.log.ends_with('\n');
    let message = match l.log {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('\n').unwrap_or(s).as_bytes()),
        Cow::Owned(mut s) => {
            if s.ends_with('\n') {
                s.pop();
            }
            Cow::Owned(s.into_bytes())
        }
    };
    Ok(RuntimeLine {
        time_unix_nano,
        stream,
        partial,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_lose_their_newline_and_parts_have_none() {
        let l = parse(
            br#"{"log":"a \"quoted\" \u00e9\n","stream":"stdout","time":"2024-05-01T10:00:00.5Z"}"#,
        )
        .unwrap();
        assert!(!l.partial);
        assert_eq!(&*l.message, "a \"quoted\" é".as_bytes());
        assert_eq!(l.time_unix_nano, 1_714_557_600_500_000_000);
        let p =
            parse(br#"{"log":"part","stream":"stderr","time":"2024-05-01T10:00:00Z"}"#).unwrap();
        assert!(p.partial);
        assert_eq!(p.stream, Stream::Stderr);
        assert_eq!(&*p.message, b"part");
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let e = |l: &[u8]| parse(l).unwrap_err().to_string();
        assert!(e(b"{").contains("not a Docker json-file log line"));
        assert!(
            e(br#"{"log":"x\n","stream":"stdin","time":"2024-05-01T10:00:00Z"}"#).contains("stdin")
        );
        assert!(e(br#"{"log":"x\n","stream":"stdout","time":"now"}"#).contains("RFC 3339"));
    }
}
