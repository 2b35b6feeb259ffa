//! Invariants the world is held to, and the reference model that checks NATs.
//!
//! Every packet a NAT translates is also shown to a reference model: a second, simpler
//! account of RFC 4787/5382 that knows only what crossed the NAT and when. It flags
//! an inbound packet that crosses a filter it should not, or a mapping used after its
//! lifetime without traffic, or mappings that break the configured mapping behaviour.
//! Its timeouts are bounds (it does not track FIN and RST), so it never flags a packet
//! the NAT rightly forwards.

mod nat_model;

pub(crate) use nat_model::NatModel;

use std::net::SocketAddrV4;

use crate::nat::{FilteringBehavior, MappingBehavior};
use crate::net::NatId;
use crate::packet::Protocol;
use crate::time::SimTime;

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// An inbound packet crossed a NAT with no mapping alive for its destination.
    #[error("{nat} at {at}: {protocol} from {remote} crossed to {external} without a live mapping")]
    NoLiveMapping {
        /// The NAT.
        nat: NatId,
        /// When.
        at: SimTime,
        /// Transport protocol.
        protocol: Protocol,
        /// The packet's source.
        remote: SocketAddrV4,
        /// The external endpoint it targeted.
        external: SocketAddrV4,
    },
    /// An inbound packet crossed a filter that should have stopped it.
    #[error("{nat} at {at}: {protocol} from {remote} to {external} crossed a {filtering:?} filter")]
    Unfiltered {
        /// The NAT.
        nat: NatId,
        /// When.
        at: SimTime,
        /// Transport protocol.
        protocol: Protocol,
        /// The packet's source.
        remote: SocketAddrV4,
        /// The external endpoint it targeted.
        external: SocketAddrV4,
        /// The NAT's filtering behaviour.
        filtering: FilteringBehavior,
    },
    /// An inbound packet was delivered to another internal endpoint than the mapping's.
    #[error("{nat} at {at}: {external} forwarded to {actual}, mapped for {expected}")]
    WrongInternal {
        /// The NAT.
        nat: NatId,
        /// When.
        at: SimTime,
        /// The external endpoint.
        external: SocketAddrV4,
        /// The internal endpoint of the mapping.
        expected: SocketAddrV4,
        /// Where the packet went.
        actual: SocketAddrV4,
    },
    /// One live external endpoint serves two internal endpoints.
    #[error("{nat} at {at}: {external} serves both {internal} and {other}")]
    ExternalPortShared {
        /// The NAT.
        nat: NatId,
        /// When.
        at: SimTime,
        /// The external endpoint.
        external: SocketAddrV4,
        /// The endpoint it served first.
        internal: SocketAddrV4,
        /// The endpoint that now uses it.
        other: SocketAddrV4,
    },
    /// A new external endpoint was used where the mapping behaviour requires an
    /// existing one.
    #[error(
        "{nat} at {at}: {internal} to {remote} used {external}, but {mapping:?} requires live {existing}"
    )]
    MappingBehavior {
        /// The NAT.
        nat: NatId,
        /// When.
        at: SimTime,
        /// The NAT's mapping behaviour.
        mapping: MappingBehavior,
        /// The internal endpoint.
        internal: SocketAddrV4,
        /// The destination.
        remote: SocketAddrV4,
        /// The external endpoint used.
        external: SocketAddrV4,
        /// The live external endpoint that should have been used.
        existing: SocketAddrV4,
    },
    /// A NAT's table is internally inconsistent.
    #[error("{nat} at {at}: table inconsistent: {detail}")]
    Table {
        /// The NAT.
        nat: NatId,
        /// When.
        at: SimTime,
        /// What is wrong.
        detail: String,
    },
}
