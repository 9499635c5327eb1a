//! Metric values as decimals: the fewest digits that hold a float exactly, its mantissa at a
//! given number of digits (only when dividing it back gives the very same bits), zigzag
//! coding of differences and the common step of a series' differences. See `file.rs` for
//! how the columns use them.

/// The most decimal digits a mantissa takes (10^15 is exact in a float, and every
/// mantissa stays below 2^53).
pub const MAX_DIGITS: i32 = 15;

pub static POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

pub fn zigzag(v: i64) -> i64 {
    (v << 1) ^ (v >> 63)
}

pub fn unzigzag(v: i64) -> i64 {
    ((v as u64 >> 1) as i64) ^ -(v & 1)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The greatest common divisor of the differences between consecutive mantissas of each
/// run (1 when there is none).
pub fn common_step(mantissas: impl Iterator<Item = Option<i64>>) -> i64 {
    let mut g = 0u64;
    let mut prev: Option<i64> = None;
    for m in mantissas {
        if let (Some(p), Some(m)) = (prev, m) {
            g = gcd(g, m.wrapping_sub(p).unsigned_abs());
        }
        prev = m;
    }
    i64::try_from(g).ok().filter(|&g| g > 0).unwrap_or(1)
}

/// The fewest decimal digits that hold `v` exactly, if any.
pub fn digits(v: f64) -> Option<i32> {
    if !v.is_finite() || (v == 0.0 && v.is_sign_negative()) {
        return None;
    }
    (0..=MAX_DIGITS).find(|&d| decimal(v, d).is_some())
}

/// `v` as a mantissa at `d` digits, when that gives back the same bits.
pub fn decimal(v: f64, d: i32) -> Option<i64> {
    let p = POW10[d as usize];
    let m = (v * p).round();
    // (NaN fails the comparison too.)
    if m.abs().partial_cmp(&9.007_199_254_740_992e15) != Some(std::cmp::Ordering::Less) {
        return None;
    }
    // Checked as it will be read: the integer divided back (so -0.0 is not taken for 0).
    let m = m as i64;
    ((m as f64 / p).to_bits() == v.to_bits()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_and_steps() {
        for v in [0, 1, -1, 63, -64, i64::MAX / 2, i64::MIN / 2] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        let m = |v: &[i64]| common_step(v.iter().map(|&x| Some(x)));
        assert_eq!(m(&[4096, 8192, 20480, 20480]), 4096);
        assert_eq!(m(&[7, 7, 7]), 1);
        assert_eq!(m(&[5]), 1);
        assert_eq!(
            common_step([Some(0), None, Some(1_000_000), Some(3_000_000)].into_iter()),
            2_000_000
        );
    }
}
