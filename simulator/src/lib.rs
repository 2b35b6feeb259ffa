//! A deterministic network and NAT simulator.
//!
//! The simulator runs hosts, NAT boxes and links in simulated time, driven by a
//! discrete-event queue. It reads no clock and draws every random number from RNGs
//! seeded from one `u64`, and iterates only ordered maps: the same seed and the same
//! calls give the same run, event for event ([`World::trace_hash`]).
//!
//! Layers:
//! 1. [`time`]: [`SimTime`] and the [`EventQueue`] (ties are FIFO).
//! 2. [`packet`]: IPv4 packets with TCP, UDP or ICMP bodies, as structs.
//! 3. [`net`]: networks, links (latency, jitter, loss, bandwidth, up/down).
//! 4. [`nat`]: NATs with the behaviours of RFC 4787 and RFC 5382.
//! 5. [`tcp`] and [`udp`]: a segment-level TCP and datagram UDP on each host.
//! 6. [`world`]: the [`World`] that ties them together, with a socket API per host.
//! 7. [`oracle`]: predicts from NAT descriptions whether hole punching can succeed;
//!    [`punch`] runs the experiment in a world, so the two can be compared.
//! 8. [`node`]: unmodified relay-proto `Node`s on hosts ([`node::NodeWorld`]), driven
//!    through the socket API as a runtime drives them over real sockets.
//! 9. [`scenario`]: YAML scenario files (topology, steps, trials, matrices, field mix)
//!    run with those nodes, and their reports (table and JSON lines).
//!
//! [`invariant`] holds the checks the world is held to after every step.
//!
//! The network layers (1 to 7) do not know relay-proto: an application on a host sees
//! socket events ([`HostEvent`]) and sends bytes. [`node`] is such an application.

#![warn(missing_docs)]

mod error;
pub mod host;
pub mod invariant;
pub mod nat;
pub mod net;
pub mod node;
pub mod oracle;
pub mod packet;
pub mod punch;
pub mod rng;
pub mod scenario;
pub mod tcp;
pub mod time;
pub mod udp;
pub mod world;

pub use error::NetError;
pub use host::{HostEvent, TimerId};
pub use nat::{NatConfig, NatPreset};
pub use net::{HostId, LinkId, LinkParams, NatId, NetworkId};
pub use tcp::{CloseReason, ConnId, TcpEvent, TcpState};
pub use time::{EventQueue, SimTime};
pub use udp::UdpEvent;
pub use world::{World, WorldConfig};
