//! The primitives snow runs on: randomness from the handshake's seeded [`Rng`], and
//! X25519, SHA-256 and ChaCha20-Poly1305 from snow's own pure-Rust resolver.
//!
//! snow is built without `getrandom`, so it has no randomness unless given some here.

use std::cell::Cell;

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::NoiseError;
use crate::rng::Rng;

/// A resolver whose randomness is `rng`, for building one handshake.
pub(super) fn resolver(rng: Rng) -> BoxedCryptoResolver {
    Box::new(SeededResolver {
        rng: Cell::new(Some(rng)),
    })
}

/// The X25519 public key of `secret`.
pub(super) fn x25519_public_key(secret: &[u8; 32]) -> Result<[u8; 32], NoiseError> {
    let mut dh = DefaultResolver
        .resolve_dh(&DHChoice::Curve25519)
        .ok_or_else(|| NoiseError::Snow("X25519 is not available".into()))?;
    dh.set(secret);
    <[u8; 32]>::try_from(dh.pubkey())
        .map_err(|_| NoiseError::Snow("X25519 public key is not 32 bytes".into()))
}

/// Resolves snow's primitives for one handshake.
///
/// snow asks for a random source once, when it builds the handshake state, and draws
/// the ephemeral key from it; the generator is handed over then.
struct SeededResolver {
    rng: Cell<Option<Rng>>,
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.rng
            .take()
            .map(|rng| Box::new(SeededRandom(rng)) as Box<dyn Random>)
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(hash) = snow::resolvers::RingResolver.resolve_hash(choice) {
            return Some(hash);
        }
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(cipher) = snow::resolvers::RingResolver.resolve_cipher(choice) {
            return Some(cipher);
        }
        DefaultResolver.resolve_cipher(choice)
    }
}

/// snow's view of a [`Rng`].
struct SeededRandom(Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// ring on native targets and snow's pure-Rust code on wasm must agree byte for
    /// byte, or a native peer and a browser peer could not talk.
    #[test]
    fn ring_and_pure_rust_primitives_agree() {
        let key = [0x42; 32];
        let plaintext: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut ring = snow::resolvers::RingResolver
            .resolve_cipher(&CipherChoice::ChaChaPoly)
            .unwrap();
        let mut pure = DefaultResolver
            .resolve_cipher(&CipherChoice::ChaChaPoly)
            .unwrap();
        ring.set(&key);
        pure.set(&key);
        let (mut a, mut b) = (vec![0; 1016], vec![0; 1016]);
        assert_eq!(ring.encrypt(9, b"ad", &plaintext, &mut a), 1016);
        assert_eq!(pure.encrypt(9, b"ad", &plaintext, &mut b), 1016);
        assert_eq!(a, b);
        let mut opened = vec![0; 1016];
        assert_eq!(pure.decrypt(9, b"ad", &a, &mut opened), Ok(1000));
        assert_eq!(&opened[..1000], &plaintext[..]);

        let mut ring = snow::resolvers::RingResolver
            .resolve_hash(&HashChoice::SHA256)
            .unwrap();
        let mut pure = DefaultResolver.resolve_hash(&HashChoice::SHA256).unwrap();
        let (mut a, mut b) = ([0; 32], [0; 32]);
        ring.input(&plaintext);
        ring.result(&mut a);
        pure.input(&plaintext);
        pure.result(&mut b);
        assert_eq!(a, b);
    }
}
