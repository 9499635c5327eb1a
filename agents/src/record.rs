//! A buffer record: one round's OTLP request with what it holds and where its lines end.
//!
//! ```text
//! record := count:u32le checkpoints_len:u32le checkpoints[checkpoints_len] otlp
//! ```
//! `count` is the number of log records (or metric points) in `otlp`, for the shipped
//! counters; `checkpoints` (JSON) are the checkpoints the round advances. They travel with
//! the lines: the append that makes the lines durable makes their checkpoints durable in
//! the same fsync, so a crash between the append and the checkpoint store's save reads
//! nothing twice — at start, the checkpoints of the records still in the buffer are applied
//! over the store's (see [`crate::buffer::Buffer::checkpoints`]).

use bytes::Bytes;

use crate::checkpoint::Checkpoint;

const FIXED: usize = 8;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn encode(count: u32, checkpoints: &[Checkpoint], otlp: &[u8]) -> Bytes {
    encode_with(count, checkpoints, otlp.len(), |out| {
        out.extend_from_slice(otlp)
    })
}

/// [`encode`] with the OTLP request written by `write` straight after the header (no copy
/// of a request built elsewhere); `len` is a capacity hint.
pub fn encode_with(
    count: u32,
    checkpoints: &[Checkpoint],
    len: usize,
    write: impl FnOnce(&mut Vec<u8>),
) -> Bytes {
    let ckpt = if checkpoints.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(checkpoints).unwrap_or_default()
    };
    let mut out = Vec::with_capacity(FIXED + ckpt.len() + len);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(ckpt.len() as u32).to_le_bytes());
    out.extend_from_slice(&ckpt);
    write(&mut out);
    Bytes::from(out)
}

/// Log records or points in the record.
pub fn count(record: &[u8]) -> u64 {
    u32_at(record, 0).map_or(0, u64::from)
}

fn ckpt_end(record: &[u8]) -> usize {
    (FIXED + u32_at(record, 4).unwrap_or(0) as usize).min(record.len())
}

/// The OTLP request.
pub fn otlp(record: &[u8]) -> &[u8] {
    &record[ckpt_end(record)..]
}

/// The checkpoints the record's round advanced.
pub fn checkpoints(record: &[u8]) -> Result<Vec<Checkpoint>, String> {
    let json = record.get(FIXED..ckpt_end(record)).unwrap_or_default();
    if json.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(json).map_err(|e| format!("checkpoints of a buffer record: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::FileId;

    #[test]
    fn records_carry_count_checkpoints_and_the_request() {
        let c = Checkpoint {
            path: "/p/0.log".into(),
            id: FileId::from_head(1, 2, b"x"),
            offset: 42,
        };
        let r = encode(7, std::slice::from_ref(&c), b"otlp bytes");
        assert_eq!(count(&r), 7);
        assert_eq!(otlp(&r), b"otlp bytes");
        assert_eq!(checkpoints(&r).unwrap(), vec![c]);
        let bare = encode(1, &[], b"m");
        assert_eq!(
            (otlp(&bare), checkpoints(&bare).unwrap()),
            (&b"m"[..], vec![])
        );
    }
}
