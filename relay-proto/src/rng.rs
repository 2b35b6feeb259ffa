//! The node's only source of randomness: a ChaCha20 stream seeded at construction.
//!
//! relay-proto never asks the OS for entropy. Runtimes seed [`Rng`] from the OS; the
//! simulator and tests seed it from a number, which makes every run reproducible.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};

/// A deterministic, cryptographically strong random number generator.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha20Rng);

impl Rng {
    /// Creates a generator from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }

    /// Creates a generator from a number, for tests and simulations.
    pub fn from_u64(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }

    /// Derives an independent generator, e.g. for one connection's handshake.
    pub fn fork(&mut self) -> Self {
        let mut seed = [0u8; 32];
        self.0.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// A uniformly random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Fills `dest` with random bytes.
    pub fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }

    /// A uniformly random value in `0..n`; `n` must not be zero.
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Lemire's multiply-shift; the bias for n << 2^64 is negligible for our uses
        // (jitter, sampling), and the method is branch-free.
        ((self.0.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
}

impl CryptoRng for Rng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_u64(7);
        let mut b = Rng::from_u64(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.next_u64(), fb.next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::from_u64(1);
        for n in 1..200 {
            assert!(r.below(n) < n);
        }
    }
}
