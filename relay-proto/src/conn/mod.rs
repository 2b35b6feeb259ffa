//! One connection as a state machine: security (Noise), multiplexing (Yamux) and
//! per-stream protocol negotiation.

pub mod noise;
pub mod yamux;
