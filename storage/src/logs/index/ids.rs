//! Ids in a log index: Bloom filters per block of granules instead of terms.
//!
//! A token that looks like an id ([`is_id_token`]: 12 or more ASCII letters and digits, with a
//! digit — request and trace ids, UUID groups, hashes, epoch milliseconds) is nearly always
//! unique to its line. As a term it cost a dictionary entry and a posting list each: four
//! fifths of the terms and two thirds of the index's bytes. Here every block of
//! [`BLOCK_GRANULES`] granules (1,024 rows) has a Bloom filter of its id tokens, about
//! [`BITS_PER_KEY`] bits each (≈0.15% false positives per block; a false block costs reading
//! its rows, which are then checked, never a wrong answer). A lookup gives the granules of
//! the blocks that may hold the token ([`IdFilter::granules`]), as a tantivy query
//! ([`GranuleSet`]) so it combines with the index's terms under AND, OR and NOT.
//!
//! The filter is one more file of the split (`ids.bloom`), read whole when a file's index is
//! first opened for a search. Prefix searches cannot ask a Bloom filter, so the index also
//! keeps the first [`PREFIX_BYTES`] bytes of every id token as a term (`id_prefix`): a
//! wildcard `4bf9*` looks there and checks the rows.
//!
//! Layout (little-endian): `LIDS`, version `u8`, probes `u8`, granules per block `u16`,
//! blocks `u32`, then `blocks + 1` word offsets (`u32`), then the words (`u64`). Hashes are
//! XXH3 (stable across versions and platforms) of the lower-cased token, double-hashed.

use std::fmt;
use std::sync::Arc;

use tantivy::query::{BitSetDocSet, ConstScorer, EnableScoring, Explanation, Query, Weight};
use tantivy::{BitSet, DocId, Score, SegmentReader, TantivyError};
use twox_hash::XxHash3_64;

use crate::error::StorageError;

/// The name of the filter's file in a split.
pub const FILE: &str = "ids.bloom";
/// Granules per filter.
pub const BLOCK_GRANULES: u32 = 16;
/// How much of an id token the `id_prefix` field keeps.
pub const PREFIX_BYTES: usize = 1;
const BITS_PER_KEY: usize = 14;
const PROBES: u8 = 7;
const MAGIC: &[u8; 4] = b"LIDS";
const VERSION: u8 = 1;

/// Whether the index keeps `token` (lower-cased or not) in the filter rather than as a term.
pub fn is_id_token(token: &[u8]) -> bool {
    token.len() >= 12
        && token.iter().all(u8::is_ascii_alphanumeric)
        && token.iter().any(u8::is_ascii_digit)
}

/// The hash of an id token, lower-cased.
pub fn hash(token: &[u8]) -> u64 {
    if token.iter().any(u8::is_ascii_uppercase) {
        XxHash3_64::oneshot(&token.to_ascii_lowercase())
    } else {
        XxHash3_64::oneshot(token)
    }
}

/// The bits of a filter of `bits` bits that `probes` probes of hash `h` set or test.
fn probes(h: u64, probes: u8, bits: u64) -> impl Iterator<Item = u64> {
    let (h1, h2) = (h, h.rotate_left(32) | 1);
    (0..u64::from(probes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// Collects the id hashes of each block while an index is built.
#[derive(Default)]
pub struct IdFilterBuilder {
    blocks: Vec<Vec<u64>>,
}

impl IdFilterBuilder {
    pub fn add(&mut self, granule: u32, hash: u64) {
        let block = (granule / BLOCK_GRANULES) as usize;
        if self.blocks.len() <= block {
            self.blocks.resize_with(block + 1, Vec::new);
        }
        self.blocks[block].push(hash);
    }

    /// The filter's file, for `granules` granules.
    pub fn finish(mut self, granules: u32) -> Vec<u8> {
        let blocks = granules.div_ceil(BLOCK_GRANULES) as usize;
        self.blocks
            .resize_with(blocks.max(self.blocks.len()), Vec::new);
        let mut offsets = vec![0u32];
        let mut words: Vec<u64> = Vec::new();
        for hashes in &mut self.blocks {
            hashes.sort_unstable();
            hashes.dedup();
            let n = if hashes.is_empty() {
                0
            } else {
                (hashes.len() * BITS_PER_KEY).div_ceil(64).max(1)
            };
            let at = words.len();
            words.resize(at + n, 0);
            let bits = n as u64 * 64;
            for &h in hashes.iter() {
                for b in probes(h, PROBES, bits) {
                    words[at + (b / 64) as usize] |= 1 << (b % 64);
                }
            }
            offsets.push(words.len() as u32);
        }
        let mut out = Vec::with_capacity(12 + 4 * offsets.len() + 8 * words.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(PROBES);
        out.extend_from_slice(&(BLOCK_GRANULES as u16).to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        offsets
            .iter()
            .for_each(|o| out.extend_from_slice(&o.to_le_bytes()));
        words
            .iter()
            .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
        out
    }
}

/// A file's id filter, read.
pub struct IdFilter {
    block_granules: u32,
    probes: u8,
    offsets: Vec<u32>,
    words: Vec<u64>,
}

impl fmt::Debug for IdFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdFilter({} blocks)", self.offsets.len() - 1)
    }
}

impl IdFilter {
    pub fn parse(b: &[u8]) -> Result<IdFilter, StorageError> {
        let bad = |what: &str| StorageError::Internal(format!("log id filter: {what}"));
        if b.len() < 12 || &b[..4] != MAGIC {
            return Err(bad("not an id filter"));
        }
        if b[4] != VERSION {
            return Err(bad(&format!("version {} is not known", b[4])));
        }
        let probes = b[5];
        let block_granules = u32::from(u16::from_le_bytes([b[6], b[7]]));
        let blocks = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let words_at = 12 + 4 * (blocks + 1);
        if b.len() < words_at || block_granules == 0 {
            return Err(bad("cut short"));
        }
        let offsets: Vec<u32> = b[12..words_at]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let words: Vec<u64> = b[words_at..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        if offsets.windows(2).any(|w| w[0] > w[1])
            || offsets.last().is_some_and(|&o| o as usize != words.len())
        {
            return Err(bad("offsets do not fit the words"));
        }
        Ok(IdFilter {
            block_granules,
            probes,
            offsets,
            words,
        })
    }

    fn block_may_hold(&self, block: usize, h: u64) -> bool {
        let (a, b) = (
            self.offsets[block] as usize,
            self.offsets[block + 1] as usize,
        );
        let words = &self.words[a..b];
        if words.is_empty() {
            return false;
        }
        probes(h, self.probes, words.len() as u64 * 64)
            .all(|bit| words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// The granules (of `granules` in the file) that may hold the id token `token`.
    pub fn granules(&self, token: &str, granules: u32) -> BitSet {
        let h = hash(token.as_bytes());
        let mut set = BitSet::with_max_value(granules);
        for block in 0..self.offsets.len() - 1 {
            if self.block_may_hold(block, h) {
                let first = block as u32 * self.block_granules;
                for g in first..(first + self.block_granules).min(granules) {
                    set.insert(g);
                }
            }
        }
        set
    }

    /// Bytes held (for cache weights).
    pub fn weight(&self) -> usize {
        self.words.len() * 8 + self.offsets.len() * 4
    }
}

/// A fixed set of granules as a tantivy query.
#[derive(Clone)]
pub struct GranuleSet(pub Arc<BitSet>);

impl fmt::Debug for GranuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GranuleSet({})", self.0.len())
    }
}

impl Query for GranuleSet {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(GranuleSetWeight(self.0.clone())))
    }
}

struct GranuleSetWeight(Arc<BitSet>);

impl Weight for GranuleSetWeight {
    fn scorer(
        &self,
        _reader: &SegmentReader,
        boost: Score,
    ) -> tantivy::Result<Box<dyn tantivy::query::Scorer>> {
        Ok(Box::new(ConstScorer::new(
            BitSetDocSet::from((*self.0).clone()),
            boost,
        )))
    }

    fn explain(&self, _reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        Err(TantivyError::InvalidArgument(format!(
            "granule {doc}: a granule set is not scored"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_are_long_with_a_digit() {
        for t in [
            "4bf92f3577b34da6",
            "e44817fce88f",
            "1796409769341",
            "Order12345678",
        ] {
            assert!(is_id_token(t.as_bytes()), "{t}");
        }
        for t in [
            "authentication",
            "e44817fce88",
            "abc_123456789",
            "café12345678",
        ] {
            assert!(!is_id_token(t.as_bytes()), "{t}");
        }
        assert_eq!(hash(b"ABCDEF123456"), hash(b"abcdef123456"));
    }

    #[test]
    fn a_block_holding_a_token_is_always_found_and_few_others_are() {
        let granules = 1000u32;
        let mut b = IdFilterBuilder::default();
        let token =
            |g: u32, i: u32| format!("{:016x}", (u64::from(g) << 20 | u64::from(i)) * 0x9e37_79b9);
        for g in 0..granules {
            for i in 0..128 {
                b.add(g, hash(token(g, i).as_bytes()));
            }
        }
        let f = IdFilter::parse(&b.finish(granules)).unwrap();
        for g in (0..granules).step_by(37) {
            let set = f.granules(&token(g, 5), granules);
            assert!(set.contains(g));
            // Its whole block, and seldom more.
            assert!(set.len() as u32 <= 5 * BLOCK_GRANULES, "{}", set.len());
        }
        let false_blocks: usize = (0..2000)
            .map(|i| f.granules(&format!("absent{i:08}"), granules).len() / BLOCK_GRANULES as usize)
            .sum();
        // 63 blocks × 2,000 lookups at ≈1% each.
        assert!(false_blocks < 63 * 2000 / 50, "{false_blocks}");
    }

    #[test]
    fn empty_and_damaged_filters() {
        let f = IdFilter::parse(&IdFilterBuilder::default().finish(5)).unwrap();
        assert_eq!(f.granules("e44817fce88f", 5).len(), 0);
        assert!(IdFilter::parse(b"LIDS").is_err());
        let mut bytes = IdFilterBuilder::default().finish(40);
        bytes[4] = 9;
        assert!(IdFilter::parse(&bytes).is_err());
    }
}
