//! Records put back together from partial lines, per stream: a runtime splits a long log
//! line (CRI at its buffer size, marking every part but the last `P`; Docker every 16 KiB,
//! without the newline), and stdout and stderr parts may interleave. The record is the
//! parts' messages joined byte for byte, timed by its first part.
//!
//! A record that would outgrow `max_bytes` (a runtime writing partial lines forever) is
//! handed on at that size marked incomplete, and the rest gathers into the next record:
//! memory stays bounded and no byte is dropped.

use crate::{RuntimeLine, Stream};

/// A whole log record of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time_unix_nano: u64,
    pub stream: Stream,
    pub message: Vec<u8>,
    /// Lines it was made of.
    pub parts: usize,
    /// `false` when handed on at the size bound (or at [`Reassembler::finish`]) before its
    /// last part.
    pub complete: bool,
}

/// Gathers partial lines per stream.
#[derive(Debug)]
pub struct Reassembler {
    max_bytes: usize,
    pending: [Option<Record>; 2],
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl Reassembler {
    pub fn new(max_bytes: usize) -> Self {
        Reassembler {
            max_bytes: max_bytes.max(1),
            pending: [None, None],
        }
    }

    /// Takes one line; returns the records it completes (at most two: one handed on at the
    /// size bound, one ended by this line).
    pub fn push(&mut self, line: RuntimeLine<'_>) -> Vec<Record> {
        let mut out = Vec::new();
        let p = &mut self.pending[slot(line.stream)];
        let rec = p.get_or_insert_with(|| Record {
            time_unix_nano: line.time_unix_nano,
            stream: line.stream,
            message: Vec::new(),
            parts: 0,
            complete: false,
        });
        let mut msg: &[u8] = &line.message;
        while rec.message.len() + msg.len() > self.max_bytes {
            let room = self.max_bytes - rec.message.len();
            rec.message.extend_from_slice(&msg[..room]);
            msg = &msg[room..];
            rec.parts += 1;
            out.push(std::mem::replace(
                rec,
                Record {
                    time_unix_nano: line.time_unix_nano,
                    stream: line.stream,
                    message: Vec::new(),
                    parts: 0,
                    complete: false,
                },
            ));
        }
        rec.message.extend_from_slice(msg);
        rec.parts += 1;
        if !line.partial
            && let Some(mut done) = p.take()
        {
            done.complete = true;
            out.push(done);
        }
        out
    }

    /// Bytes waiting for the rest of their record.
    pub fn pending_bytes(&self) -> usize {
        self.pending.iter().flatten().map(|r| r.message.len()).sum()
    }

    /// Hands on what is still waiting, incomplete (the end of a file that will not grow).
    pub fn finish(&mut self) -> Vec<Record> {
        self.pending.iter_mut().filter_map(Option::take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogFormat;

    fn lines(format: LogFormat, text: &str) -> Vec<RuntimeLine<'_>> {
        text.lines()
            .map(|l| format.parse(l.as_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn cri_parts_join_per_stream_byte_for_byte() {
        let mut r = Reassembler::new(1 << 20);
        let got: Vec<Record> = lines(
            LogFormat::Cri,
            "2024-05-01T10:00:00Z stdout P first half \n\
             2024-05-01T10:00:01Z stderr F an error\n\
             2024-05-01T10:00:02Z stdout P  and \n\
             2024-05-01T10:00:03Z stdout F second half\n",
        )
        .into_iter()
        .flat_map(|l| r.push(l))
        .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].stream, Stream::Stderr);
        assert_eq!(got[1].message, b"first half  and second half");
        assert_eq!(got[1].parts, 3);
        assert_eq!(
            got[1].time_unix_nano, 1_714_557_600_000_000_000,
            "the first part's time"
        );
        assert!(got[1].complete);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn docker_16k_splits_join_and_a_line_ends_at_its_newline() {
        let part = "x".repeat(16 * 1024);
        let text = format!(
            "{{\"log\":\"{part}\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00Z\"}}\n\
             {{\"log\":\"{part}\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00Z\"}}\n\
             {{\"log\":\"end\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00Z\"}}\n"
        );
        let mut r = Reassembler::new(1 << 20);
        let got: Vec<Record> = lines(LogFormat::Docker, &text)
            .into_iter()
            .flat_map(|l| r.push(l))
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message.len(), 2 * 16 * 1024 + 3);
        assert!(got[0].message.ends_with(b"xend"));
    }

    #[test]
    fn the_size_bound_hands_on_parts_without_losing_a_byte() {
        let mut r = Reassembler::new(10);
        let mut got = Vec::new();
        for l in lines(
            LogFormat::Cri,
            "2024-05-01T10:00:00Z stdout P 0123456\n\
             2024-05-01T10:00:01Z stdout P 789abcdefghijklmnopq\n\
             2024-05-01T10:00:02Z stdout P rs\n",
        ) {
            got.extend(r.push(l));
        }
        got.extend(r.finish());
        let joined: Vec<u8> = got.iter().flat_map(|g| g.message.clone()).collect();
        assert_eq!(joined, b"0123456789abcdefghijklmnopqrs");
        assert!(got.iter().all(|g| g.message.len() <= 10 && !g.complete));
        assert_eq!(got.len(), 3);
    }
}
