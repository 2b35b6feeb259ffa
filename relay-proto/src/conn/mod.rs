//! One connection as a state machine: security (Noise), multiplexing (Yamux) and
//! per-stream protocol negotiation.

pub mod connection;
pub mod noise;
pub mod recycle;
pub mod yamux;

pub use connection::{Connection, ConnectionConfig, ConnectionError, ConnectionEvent, Endpoint};

#[cfg(test)]
mod role_tests;
