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
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
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
