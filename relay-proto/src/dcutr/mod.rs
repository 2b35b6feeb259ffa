//! DCUtR (`/libp2p/dcutr`): upgrading a relayed connection to a direct one by hole
//! punching, as libp2p/specs `relay/DCUtR.md` describes.
//!
//! So far: the CONNECT/SYNC messages, what a hole punch asks the node for and ends with
//! ([`Action`], [`Outcome`]), and the statistics of finished ones ([`HolePunchStats`]).

mod message;
mod outcome;
mod stats;

pub use message::{DcutrError, Message, MessageReader, encode_connect, encode_sync};
pub use outcome::{Action, FailureReason, Outcome, Role};
pub use stats::{FailureCounts, HolePunchStats, TIME_BUCKETS_MS, TimeHistogram};

/// The DCUtR protocol name.
pub const PROTOCOL: &str = "/libp2p/dcutr";

/// Largest DCUtR message accepted, in bytes, length prefix excluded (the spec's 4 KiB).
pub const MAX_MESSAGE: usize = crate::wire::proto::MAX_RELAY_MESSAGE;
