//! NAT boxes with the behaviours catalogued by RFC 4787 (UDP) and RFC 5382 (TCP).
//!
//! A [`NatConfig`] fixes each dimension the RFCs name: how mappings are chosen
//! ([`MappingBehavior`]), which inbound packets a mapping lets through
//! ([`FilteringBehavior`]), how external ports are picked ([`PortAllocation`]),
//! hairpinning, mapping lifetimes ([`Timeouts`]) and what an unsolicited inbound SYN
//! gets ([`InboundSynPolicy`]). A [`NatTable`] applies a configuration to packets; it is
//! a pure state machine that the world feeds with time and packets, and that can be
//! tested alone.
//!
//! Every NAT has exactly one external address. NATs chain: a NAT's outside can sit on
//! another NAT's inside network.

mod config;
mod port;
mod session;
mod table;

pub use config::{
    FilteringBehavior, InboundSynPolicy, MappingBehavior, NatConfig, NatPreset, PortAllocation,
    PortRange, Timeouts,
};
pub use table::{MappingInfo, NatAction, NatDrop, NatTable};

#[cfg(test)]
mod tests;
