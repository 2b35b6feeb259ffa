//! Circuit Relay v2 pieces shared by the relay server (`hop`) and the client: protocol
//! names, message reading with the 4096-byte cap, limits, and reservation vouchers.

pub mod limit;
pub mod message;
pub mod voucher;

/// The hop protocol: clients talk to the relay.
pub const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";
/// The stop protocol: the relay talks to the reserving peer.
pub const STOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/stop";
