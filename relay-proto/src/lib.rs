//! The sans-IO core of a libp2p relay stack.
//!
//! `relay-proto` holds every protocol decision of the project, from byte codecs up to
//! relay admission, as deterministic state machines. It performs no I/O, reads no clock
//! and asks the OS for no randomness: time arrives as an [`std::time::Instant`] argument,
//! randomness from an [`rng::Rng`] seeded at construction. The same inputs and seed
//! give the same outputs, byte for byte. It builds for `wasm32-unknown-unknown`.
//!
//! Layers, each depending only on those above it:
//! 1. [`wire`]: uvarint framing, protobuf messages, multistream-select.
//! 2. [`conn`]: one connection: Noise XX, Yamux, stream protocol negotiation.
//! 3. Protocols over streams: [`identify`], [`ping`].
//! 4. [`node`]: one local peer composing all of the above.

pub mod autorelay;
pub mod circuit;
pub mod conn;
pub mod dcutr;
pub mod hop;
pub mod identify;
pub mod identity;
mod map;
pub mod node;
pub mod peer_record;
pub mod ping;
pub mod rng;
pub mod wire;

pub use multiaddr::{self, Multiaddr};
pub use node::{ConnectionId, Event, Input, Node, Output, StreamRef};

/// The base instant of a unit test; tests offset every other instant from it.
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the one clock read, in tests only
pub(crate) fn test_now() -> std::time::Instant {
    std::time::Instant::now()
}
