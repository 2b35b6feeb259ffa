//! A deterministic network and NAT simulator.
//!
//! The simulator runs hosts, NAT boxes and links in simulated time, driven by a
//! discrete-event queue. It reads no clock and draws every random number from RNGs
//! seeded from one `u64`.

#![warn(missing_docs)]

mod error;
pub mod host;
pub mod invariant;
pub mod nat;
pub mod net;
pub mod packet;
pub mod rng;
pub mod tcp;
pub mod time;
pub mod udp;
pub use error::NetError;
