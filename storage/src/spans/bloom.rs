//! A per-file Bloom filter of trace ids, held in the catalog entry so that trace-by-id opens
//! only the files that may hold the trace. Written by hand rather than with a crate: the filter
//! is ~15 lines, needs a stable serialized form for the catalog, and the keys are 128-bit ids
//! that only need a cheap mix (splitmix64 of each half) to give two independent hashes for
//! double hashing. About 10 bits per trace and 7 probes give ≈1% false positives.

use base64::Engine;

use crate::model::TraceId;

const PROBES: u64 = 7;
const BITS_PER_KEY: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceIdFilter {
    words: Vec<u64>,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hashes(id: &TraceId) -> (u64, u64) {
    let (lo, hi) = id.split_at(8);
    let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
    let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default());
    (mix(lo ^ mix(hi)), mix(hi) | 1)
}

impl TraceIdFilter {
    /// A filter sized for `keys` distinct trace ids.
    pub fn with_capacity(keys: usize) -> Self {
        let bits = (keys.max(64) * BITS_PER_KEY).next_multiple_of(64);
        TraceIdFilter {
            words: vec![0; bits / 64],
        }
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn insert(&mut self, id: &TraceId) {
        let (h1, h2) = hashes(id);
        let m = self.bits();
        for i in 0..PROBES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    pub fn may_contain(&self, id: &TraceId) -> bool {
        let (h1, h2) = hashes(id);
        let m = self.bits();
        if m == 0 {
            return true;
        }
        (0..PROBES).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    pub fn to_base64(&self) -> String {
        let bytes: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
    }

    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s)
            .ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        let words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        Some(TraceIdFilter { words })
    }
}

impl serde::Serialize for TraceIdFilter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> serde::Deserialize<'de> for TraceIdFilter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        TraceIdFilter::from_base64(&s)
            .ok_or_else(|| serde::de::Error::custom("invalid trace id filter"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut rng = rand::rng();
        let ids: Vec<TraceId> = (0..5000).map(|_| rng.random()).collect();
        let mut f = TraceIdFilter::with_capacity(ids.len());
        ids.iter().for_each(|id| f.insert(id));
        let f = TraceIdFilter::from_base64(&f.to_base64()).unwrap();
        assert!(ids.iter().all(|id| f.may_contain(id)));
        let fp = (0..20000)
            .filter(|_| f.may_contain(&rng.random::<TraceId>()))
            .count();
        assert!(fp < 600, "false positive rate too high: {fp}/20000");
    }

    #[test]
    fn sequential_ids_spread_too() {
        let mut f = TraceIdFilter::with_capacity(1000);
        for i in 0u128..1000 {
            f.insert(&i.to_be_bytes());
        }
        let fp = (1000u128..21000)
            .filter(|i| f.may_contain(&i.to_be_bytes()))
            .count();
        assert!(fp < 600, "false positive rate too high: {fp}/20000");
    }
}
