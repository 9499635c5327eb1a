//! Record framing of WAL segments.
//!
//! ```text
//! record := len:u32le crc:u32le body[len]
//! body   := seq:u64le signal:u8 tenant_len:u8 tenant[tenant_len] payload
//! ```
//! `crc` is CRC-32C of `body`. A record whose length runs past the end of the file or whose
//! checksum does not match is torn (the process died mid-write): reading stops there.

use loupe_storage::TenantId;
use loupe_storage::store::Signal;

pub const HEADER_LEN: usize = 8;
/// Records larger than this are corrupt by definition (requests are limited far below).
pub const MAX_BODY_LEN: usize = 256 * 1024 * 1024;

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub signal: Signal,
    pub tenant: TenantId,
    pub payload: bytes::Bytes,
}

fn signal_code(s: Signal) -> u8 {
    match s {
        Signal::Traces => 1,
        Signal::Logs => 2,
        Signal::Metrics => 3,
    }
}

fn signal_from(code: u8) -> Option<Signal> {
    match code {
        1 => Some(Signal::Traces),
        2 => Some(Signal::Logs),
        3 => Some(Signal::Metrics),
        _ => None,
    }
}

/// Appends the framed record to `out`; returns the framed length.
pub fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    signal: Signal,
    tenant: &TenantId,
    payload: &[u8],
) -> usize {
    let start = out.len();
    let tenant = tenant.as_str().as_bytes();
    let body_len = 8 + 1 + 1 + tenant.len() + payload.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let body_start = out.len();
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(signal_code(signal));
    out.push(tenant.len() as u8);
    out.extend_from_slice(tenant);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[body_start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Why reading stopped before the end of a buffer.
#[derive(Debug, PartialEq)]
pub enum Stop {
    /// Clean end of data.
    End,
    /// A partial or corrupt record starts at this offset.
    Torn { offset: usize, reason: String },
}

/// Decodes records from `buf` until the end or the first torn record.
pub fn decode_all(buf: &bytes::Bytes) -> (Vec<Record>, Stop) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        if pos == buf.len() {
            return (out, Stop::End);
        }
        let torn = |reason: &str| Stop::Torn {
            offset: pos,
            reason: reason.to_string(),
        };
        if buf.len() - pos < HEADER_LEN {
            return (out, torn("short header"));
        }
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len > MAX_BODY_LEN || buf.len() - pos - HEADER_LEN < len || len < 10 {
            return (out, torn("record length past end of segment"));
        }
        let body = buf.slice(pos + HEADER_LEN..pos + HEADER_LEN + len);
        if crc32c::crc32c(&body) != crc {
            return (out, torn("checksum mismatch"));
        }
        let seq = u64::from_le_bytes(body[0..8].try_into().unwrap_or_default());
        let Some(signal) = signal_from(body[8]) else {
            return (out, torn("unknown signal"));
        };
        let tlen = body[9] as usize;
        if body.len() < 10 + tlen {
            return (out, torn("tenant past end of record"));
        }
        let tenant = std::str::from_utf8(&body[10..10 + tlen])
            .ok()
            .and_then(|s| TenantId::new(s).ok());
        let Some(tenant) = tenant else {
            return (out, torn("invalid tenant"));
        };
        out.push(Record {
            seq,
            signal,
            tenant,
            payload: body.slice(10 + tlen..),
        });
        pos += HEADER_LEN + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TenantId {
        TenantId::new(name).unwrap()
    }

    #[test]
    fn round_trips_and_stops_at_torn_tails() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, Signal::Traces, &t("a"), b"one");
        encode(&mut buf, 2, Signal::Logs, &t("bb"), b"");
        let whole = buf.len();
        encode(&mut buf, 3, Signal::Traces, &t("a"), b"three");
        let (recs, stop) = decode_all(&bytes::Bytes::from(buf.clone()));
        assert_eq!(stop, Stop::End);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].tenant.as_str(), "bb");
        assert_eq!(&recs[2].payload[..], b"three");
        // Every truncation inside the third record keeps exactly the first two.
        for cut in whole + 1..buf.len() {
            let (recs, stop) = decode_all(&bytes::Bytes::from(buf[..cut].to_vec()));
            assert_eq!(recs.len(), 2, "cut at {cut}");
            assert!(
                matches!(stop, Stop::Torn { offset, .. } if offset == whole),
                "cut at {cut}"
            );
        }
        // A flipped bit in the payload is caught by the checksum.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (recs, stop) = decode_all(&bytes::Bytes::from(bad));
        assert_eq!(recs.len(), 2);
        assert!(matches!(stop, Stop::Torn { reason, .. } if reason == "checksum mismatch"));
    }
}
