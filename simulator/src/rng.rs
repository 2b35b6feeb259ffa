//! The simulator's only source of randomness: ChaCha8 streams seeded from numbers.
//!
//! Every random choice (loss, jitter, NAT ports, TCP initial sequence numbers) draws
//! from a [`SimRng`] derived from the world's seed, so a seed fixes the whole run.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A deterministic random number generator seeded from a `u64`.
#[derive(Debug, Clone)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// An independent generator derived from this one's stream.
    pub fn fork(&mut self) -> Self {
        Self::new(self.0.next_u64())
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniformly random `u32`.
    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A uniformly random value in `0..n`, or 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        // Multiply-shift: the bias is negligible for the small ranges used here.
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniformly random value in `lo..=hi`, or `lo` when `hi < lo`.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `ppm` parts per million (0 never, 1 000 000 or more always).
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (SimRng::new(9), SimRng::new(9));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(a.fork().next_u64(), b.fork().next_u64());
    }

    #[test]
    fn ranges_hold() {
        let mut r = SimRng::new(1);
        for _ in 0..1000 {
            let v = r.range_inclusive(10, 20);
            assert!((10..=20).contains(&v));
        }
        assert_eq!(r.range_inclusive(5, 3), 5);
        assert_eq!(r.below(0), 0);
        assert!(!r.chance_ppm(0));
        assert!(r.chance_ppm(1_000_000));
        let _ = r.range_inclusive(0, u64::MAX);
    }
}
