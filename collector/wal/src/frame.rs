//! Record framing of WAL segments.
//!
//! ```text
//! record := len:u32le crc:u32le body[len]
//! body   := seq:u64le signal:u8 tenant_len:u8 tenant[tenant_len] payload
//! ```
//! `crc` is CRC-32C of `body`. A record whose length runs past the end of the file or whose
//! checksum does not match is torn (the process died mid-write, or a failed write left part
//! of a record): reading stops there. A record whose checksum matches but whose signal code is
//! unknown (written by a newer version) or whose tenant is invalid is skipped, never treated
//! as a torn tail: the records after it are intact and must not be cut off.

use std::io::{self, Read};

use bytes::Bytes;
use loupe_core::{Signal, TenantId};

pub const HEADER_LEN: usize = 8;
/// Records larger than this are corrupt by definition (requests are limited far below; the
/// server refuses a request limit above it at start).
pub const MAX_BODY_LEN: usize = 256 * 1024 * 1024;
/// Bytes of a record's body besides its tenant and payload.
const FIXED_BODY: usize = 10;

/// The largest payload a record can carry for `tenant_len`.
pub fn max_payload(tenant_len: usize) -> usize {
    MAX_BODY_LEN - FIXED_BODY - tenant_len
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub signal: Signal,
    pub tenant: TenantId,
    pub payload: Bytes,
}

/// The framed length of a record of `payload` for `tenant`.
pub fn encoded_len(tenant: &TenantId, payload: &[u8]) -> usize {
    HEADER_LEN + FIXED_BODY + tenant.as_str().len() + payload.len()
}

/// Appends the framed record to `out`; returns the framed length.
pub fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    signal_code: u8,
    tenant: &TenantId,
    payload: &[u8],
) -> usize {
    let start = out.len();
    let body_len = encoded_len(tenant, payload) - HEADER_LEN;
    let tenant = tenant.as_str().as_bytes();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let body_start = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(signal_code);
    out.push(tenant.len() as u8);
    out.extend_from_slice(tenant);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[body_start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// What reading the next frame found.
#[derive(Debug, PartialEq)]
pub enum Next {
    Record(Record),
    /// A whole, checksummed record we cannot use (unknown signal, invalid tenant).
    Skipped {
        seq: u64,
        reason: String,
    },
    /// Clean end of data.
    End,
    /// A partial or corrupt record starts at this offset; nothing after it is read.
    Torn {
        offset: u64,
        reason: String,
    },
}

/// Reads frames one at a time from a segment of known length, so recovery holds one record
/// in memory, never a whole segment.
pub struct FrameReader<R> {
    inner: R,
    offset: u64,
    len: u64,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, len: u64) -> Self {
        FrameReader {
            inner,
            offset: 0,
            len,
        }
    }

    /// Offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn next_frame(&mut self) -> io::Result<Next> {
        let start = self.offset;
        let torn = |reason: &str| Next::Torn {
            offset: start,
            reason: reason.to_string(),
        };
        let remaining = self.len - self.offset;
        if remaining == 0 {
            return Ok(Next::End);
        }
        if remaining < HEADER_LEN as u64 {
            return Ok(torn("short header"));
        }
        let mut header = [0u8; HEADER_LEN];
        self.inner.read_exact(&mut header)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if !(FIXED_BODY..=MAX_BODY_LEN).contains(&len)
            || remaining - (HEADER_LEN as u64) < len as u64
        {
            return Ok(torn("record length past end of segment"));
        }
        let mut body = vec![0u8; len];
        self.inner.read_exact(&mut body)?;
        self.offset += (HEADER_LEN + len) as u64;
        if crc32c::crc32c(&body) != crc {
            return Ok(torn("checksum mismatch"));
        }
        Ok(parse_body(Bytes::from(body)))
    }
}

fn parse_body(body: Bytes) -> Next {
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&body[0..8]);
    let seq = u64::from_le_bytes(seq_bytes);
    let tlen = body[9] as usize;
    if body.len() < FIXED_BODY + tlen {
        return Next::Skipped {
            seq,
            reason: "tenant past end of record".into(),
        };
    }
    let Some(signal) = Signal::from_code(body[8]) else {
        return Next::Skipped {
            seq,
            reason: format!("unknown signal code {}", body[8]),
        };
    };
    let tenant = std::str::from_utf8(&body[FIXED_BODY..FIXED_BODY + tlen])
        .ok()
        .and_then(|s| TenantId::new(s).ok());
    let Some(tenant) = tenant else {
        return Next::Skipped {
            seq,
            reason: "invalid tenant name".into(),
        };
    };
    Next::Record(Record {
        seq,
        signal,
        tenant,
        payload: body.slice(FIXED_BODY + tlen..),
    })
}

/// Decodes every frame of an in-memory buffer (tests and tools).
pub fn decode_all(buf: &[u8]) -> (Vec<Next>, Next) {
    let mut r = FrameReader::new(buf, buf.len() as u64);
    let mut out = Vec::new();
    loop {
        match r.next_frame() {
            Ok(n @ (Next::Record(_) | Next::Skipped { .. })) => out.push(n),
            Ok(stop) => return (out, stop),
            Err(e) => {
                return (
                    out,
                    Next::Torn {
                        offset: r.offset(),
                        reason: e.to_string(),
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TenantId {
        TenantId::new(name).unwrap()
    }

    fn records(v: &[Next]) -> Vec<&Record> {
        v.iter()
            .filter_map(|n| match n {
                Next::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn round_trips_and_stops_at_torn_tails() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, Signal::Traces.code(), &t("a"), b"one");
        encode(&mut buf, 2, Signal::Logs.code(), &t("bb"), b"");
        let whole = buf.len();
        encode(&mut buf, 3, Signal::Traces.code(), &t("a"), b"three");
        let (recs, stop) = decode_all(&buf);
        assert_eq!(stop, Next::End);
        let recs = records(&recs);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].tenant.as_str(), "bb");
        assert_eq!(&recs[2].payload[..], b"three");
        // Every truncation inside the third record keeps exactly the first two.
        for cut in whole + 1..buf.len() {
            let (recs, stop) = decode_all(&buf[..cut]);
            assert_eq!(records(&recs).len(), 2, "cut at {cut}");
            assert!(
                matches!(stop, Next::Torn { offset, .. } if offset == whole as u64),
                "cut at {cut}"
            );
        }
        // A flipped bit in the payload is caught by the checksum.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (recs, stop) = decode_all(&bad);
        assert_eq!(records(&recs).len(), 2);
        assert!(matches!(stop, Next::Torn { reason, .. } if reason == "checksum mismatch"));
    }

    #[test]
    fn unknown_signal_codes_are_skipped_not_torn() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, Signal::Traces.code(), &t("a"), b"one");
        encode(&mut buf, 2, 77, &t("a"), b"from a newer version");
        encode(&mut buf, 3, Signal::Traces.code(), &t("a"), b"three");
        let (frames, stop) = decode_all(&buf);
        assert_eq!(
            stop,
            Next::End,
            "the records after an unknown signal are read"
        );
        assert!(matches!(&frames[1], Next::Skipped { seq: 2, reason } if reason.contains("77")));
        let recs = records(&frames);
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 3]);
    }
}
