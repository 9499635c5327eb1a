//! The CRI log format (containerd, CRI-O): `<RFC 3339 time> <stream> <tags> <message>`, where
//! the first tag is `P` (partial: the record continues in the stream's next line) or `F`
//! (full: it ends here); more tags may follow after `:`. The message is everything after the
//! third space, byte for byte (spaces and all).

use std::borrow::Cow;

use crate::{LineError, RuntimeLine, Stream, rfc3339_nanos};

/// Reads one CRI line (without its trailing newline).
pub fn parse(line: &[u8]) -> Result<RuntimeLine<'_>, LineError> {
    let mut rest = line;
    let mut field = |what: &'static str| -> Result<&[u8], LineError> {
        let end = memchr::memchr(b' ', rest).ok_or(LineError::Cri(what))?;
        let (f, r) = rest.split_at(end);
        rest = &r[1..];
        Ok(f)
    };
    let time = field("no space after the time")?;
    let stream = field("no space after the stream")?;
    // The tags end at the next space; a line of `F` and nothing else is an empty message.
    let (tags, message) = match memchr::memchr(b' ', rest) {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let time_unix_nano = std::str::from_utf8(time)
        .ok()
        .and_then(rfc3339_nanos)
        .ok_or(LineError::Cri("the time is not RFC 3339"))?;
    let stream =
        Stream::parse(stream).ok_or(LineError::Cri("the stream is not stdout or stderr"))?;
    let partial = match tags.split(|&b| b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(LineError::Cri("the first tag is not P or F")),
    };
    Ok(RuntimeLine {
        time_unix_nano,
        stream,
        partial,
        message: Cow::Borrowed(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_message_byte_for_byte() {
        let l = parse(b"2024-05-01T10:00:00.123456789Z stderr F  two  spaces \t\xff").unwrap();
        assert_eq!(l.time_unix_nano, 1_714_557_600_123_456_789);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(&*l.message, b" two  spaces \t\xff");
        let p = parse(b"2024-05-01T10:00:00+02:00 stdout P:x part").unwrap();
        assert!(p.partial);
        assert_eq!(&*p.message, b"part");
        assert_eq!(
            &*parse(b"2024-05-01T10:00:00Z stdout F").unwrap().message,
            b""
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        for (line, why) in [
            (&b"garbage"[..], "no space after the time"),
            (b"yesterday stdout F x", "the time is not RFC 3339"),
            (
                b"2024-05-01T10:00:00Z stdin F x",
                "the stream is not stdout or stderr",
            ),
            (
                b"2024-05-01T10:00:00Z stdout X x",
                "the first tag is not P or F",
            ),
        ] {
            assert_eq!(parse(line), Err(LineError::Cri(why)), "{line:?}");
        }
    }
}
