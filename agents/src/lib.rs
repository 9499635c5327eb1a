//! `loupe-agent`, the node agent: tails the pod log files under `/var/log/pods`, collects
//! host metrics and scrapes Prometheus targets, buffers everything on disk and ships it over
//! OTLP/HTTP. `agents/README.md` follows a line through the modules and says what is durable
//! when; the modules a line meets first:
//!
//! - [`pod_path`]: a pod log file's Kubernetes identity from its path.
//! - [`cri`] and [`docker`]: one line of the CRI format and of Docker's json-file format,
//!   detected per file ([`LogFormat::detect`]).
//! - [`partial`]: partial lines (CRI's `P` … `F`, Docker's 16 KiB splits) put back together
//!   byte for byte, per stream.
//! - [`checkpoint`]: each file's identity (inode and first bytes) and read offset, saved
//!   atomically.
//! - [`tail`]: a file read from an offset into records, whole lines only, each record with
//!   the offset a reader may resume from once it is buffered.

pub mod buffer;
pub mod checkpoint;
pub mod collect;
#[cfg(test)]
mod crash_tests;
pub mod cri;
pub mod docker;
pub mod durable;
pub mod endpoints;
pub mod files;
pub mod host_metrics;
pub mod kube;
pub mod multiline;
pub mod otlp_logs;
pub mod otlp_metrics;
pub mod partial;
pub mod pod_path;
pub mod record;
pub mod resource;
pub mod scrape;
pub mod ship;
pub mod tail;

/// Which stream of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn parse(s: &[u8]) -> Option<Stream> {
        match s {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line as the runtime wrote it: time, stream, whether more of the same record follows,
/// and the message bytes (without the runtime's framing or the line's newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeLine<'a> {
    pub time_unix_nano: u64,
    pub stream: Stream,
    /// `true` when the record continues in the stream's next line.
    pub partial: bool,
    pub message: std::borrow::Cow<'a, [u8]>,
}

/// A line the runtime's format does not describe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a CRI log line: {0}")]
    Cri(&'static str),
    #[error("not a Docker json-file log line: {0}")]
    Docker(String),
    #[error("line longer than {0} bytes without a newline: handed on in pieces")]
    TooLong(usize),
}

/// The two formats of files under `/var/log/pods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Cri,
    Docker,
}

impl LogFormat {
    /// The format of a file from its first line: Docker's lines are JSON objects, CRI's start
    /// with a timestamp.
    pub fn detect(first_line: &[u8]) -> LogFormat {
        if first_line.first() == Some(&b'{') {
            LogFormat::Docker
        } else {
            LogFormat::Cri
        }
    }

    /// Reads one line (without its trailing newline) of this format.
    pub fn parse(self, line: &[u8]) -> Result<RuntimeLine<'_>, LineError> {
        match self {
            LogFormat::Cri => cri::parse(line),
            LogFormat::Docker => docker::parse(line),
        }
    }
}

/// An RFC 3339 time (nanoseconds allowed) as nanoseconds since the epoch.
pub(crate) fn rfc3339_nanos(s: &str) -> Option<u64> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    u64::try_from(t.timestamp_nanos_opt()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_first_byte() {
        assert_eq!(
            LogFormat::detect(br#"{"log":"x\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}"#),
            LogFormat::Docker
        );
        assert_eq!(
            LogFormat::detect(b"2024-01-01T00:00:00.000000001Z stdout F x"),
            LogFormat::Cri
        );
        assert_eq!(rfc3339_nanos("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
    }
}
