//! DCUtR (`/libp2p/dcutr`): upgrading a relayed connection to a direct one by hole
//! punching, as libp2p/specs `relay/DCUtR.md` describes.
//!
//! This module owns the decisions of one hole punch: which addresses to offer and to
//! dial, the CONNECT/SYNC exchange and its RTT measurement, when each side dials and in
//! which security role, retries, timeouts and the outcome. [`HolePunch`] is a pure state
//! machine per relayed connection; it opens no stream and dials nothing itself but asks
//! the node to through [`Action`]s, and reads no clock. It does not decide what happens
//! after the outcome (moving streams to the direct connection, closing the relayed one
//! after a grace period, telling the application): that is the node's.
//!
//! # Roles and timing
//!
//! The side that accepted the relayed connection (the spec's B, behind the relay with a
//! reservation) is the [`Role::Initiator`]; the side that dialed it (A) the
//! [`Role::Responder`].
//!
//! 1. Unilateral upgrade: if A's identify listen addresses include public ones (see
//!    Addresses below), B first dials them, once, as an ordinary dial (client
//!    role), and waits `attempt_timeout` for a direct connection. If it fails, B goes on
//!    with the exchange. Only B does this, as in the spec and go-libp2p: A reached B
//!    through a relay because B had no public address.
//! 2. Each attempt is a fresh exchange on a fresh stream (the spec's current text,
//!    go-libp2p and rust-libp2p; the first revision reused one stream):
//!    - B opens the stream; once it is negotiated B sends CONNECT with its candidates
//!      and starts the RTT clock, so stream negotiation does not count in the RTT.
//!    - A answers with CONNECT and its candidates.
//!    - B takes the RTT (CONNECT out to CONNECT in), sends SYNC, closes the stream, and
//!      dials A's addresses RTT/2 later, as the server of the security handshake.
//!    - A dials B's addresses as soon as SYNC arrives, as the client, and closes the
//!      stream. With symmetric relay delays both dials leave at the same instant, so the
//!      SYNs cross and the NATs see a TCP simultaneous open.
//!    - The attempt succeeds when any direct connection to the peer appears, and fails
//!      when every address dialed has failed or `attempt_timeout` has passed since the
//!      dial. B then starts the next attempt at once, re-measuring the RTT, up to
//!      `max_attempts`.
//! 3. The exchange itself may take `sync_timeout` (B: from asking for the stream to A's
//!    CONNECT; A: from the stream's arrival to SYNC); beyond it the attempt fails with
//!    [`FailureReason::Timeout`] and B tries again. A responder whose attempt failed
//!    waits as long for the next one before it gives up.
//!
//! Failures: a missing address on either side ends the hole punch with
//! [`FailureReason::NatIncompatible`]; a protocol violation ends B's hole punch (as in
//! go-libp2p and rust-libp2p) and A's attempt. Disabled punching ends it at once with
//! [`FailureReason::NotEnabled`].
//!
//! # Security roles and go-libp2p's swap
//!
//! A TCP simultaneous open leaves both sides with an outbound socket, so the DCUtR role
//! sets the security role: A is the client (Noise initiator), B the server
//! ([`Action::Dial::as_client`](Action::Dial)). go-libp2p before v0.41 took these the
//! other way round. Current go-libp2p, as B, dials as client on its third (last)
//! attempt, so that an older A (a server) still meets a client once; against a current
//! A (a client) that attempt cannot complete a simultaneous open. We do the same as B
//! when `swap_roles_on_last_attempt` is on (the default) and `max_attempts` is at least
//! two. As A we are always the client, as go-libp2p and rust-libp2p are.
//!
//! # A CONNECT from the side we expected to be A
//!
//! Whatever our role, a DCUtR stream the peer opens is accepted and its CONNECT answered
//! as A: reply with CONNECT, dial as client on SYNC
//! ([`HolePunch::inbound_stream`]). If we were leading (we expected the peer to be A), we
//! drop our own exchange in favour of the peer's and let the peer lead the remaining
//! attempts; an exchange that had not reached its SYNC is replaced under the same
//! attempt number. go-libp2p and rust-libp2p refuse such streams instead; accepting
//! them costs nothing and turns a peer with swapped roles into a working pair.
//!
//! # Addresses
//!
//! Candidates are TCP addresses with a routable IP and no `/p2p/` suffix, at most
//! [`MAX_CANDIDATES`]: ours from identify-observed addresses first, then listen addresses
//! ([`local_candidates`]); the peer's from its CONNECT, filtered the same way. Private
//! ranges count only with `allow_private_addrs`, loopback only with
//! `allow_loopback_addrs` ([`HolePunchConfig::scope`]). Each attempt dials at most
//! `direct_dial_attempts` of the peer's addresses.
//!
//! # Integration
//!
//! Per relayed connection the node keeps one [`HolePunch`]:
//! - Initiator: create it when the relayed connection is established (or once the
//!   peer's identify has arrived, to have its listen addresses for the unilateral
//!   upgrade, a round trip later), with [`local_candidates`] from our observed and
//!   listen addresses and the peer's listen addresses if known, unless `concurrent_limit` machines are [active](HolePunch::is_active).
//!   Responder: create it when the relayed connection is established.
//! - [`Action::OpenStream`]: open `/libp2p/dcutr` on the relayed connection, then call
//!   [`HolePunch::stream_opened`] (or [`HolePunch::stream_closed`] if it fails).
//!   An inbound `/libp2p/dcutr` stream on the relayed connection:
//!   [`HolePunch::inbound_stream`]; reset it on `Err`.
//! - Bytes of the current stream: [`HolePunch::handle_message`]; its end or reset:
//!   [`HolePunch::stream_closed`]. `Send`, `CloseStream`, `ResetStream` act on it.
//! - [`Action::Dial`]: dial each address from the listen port (`SO_REUSEPORT`), running
//!   the security handshake in the role given; report [`HolePunch::direct_dial_failed`]
//!   per address with the dial's attempt number, and [`HolePunch::direct_connected`] for any direct connection to the
//!   peer, dialed or accepted.
//! - [`Action::Done`]: record it in [`HolePunchStats`]; on success move new streams to
//!   the direct connection, cancel other dials and close the relayed connection after a
//!   grace period; on failure keep the relayed connection. Drop the machine then, or
//!   when the relayed connection closes.

mod addrs;
mod config;
mod message;
mod outcome;
mod punch;
mod stats;

#[cfg(test)]
mod pair;
#[cfg(test)]
mod pair_tests;

pub use addrs::{
    AddrScope, MAX_CANDIDATES, candidate, candidate_in, filter_candidates, filter_candidates_in,
    local_candidates, reachable, reachable_in,
};
pub use config::HolePunchConfig;
pub use message::{DcutrError, Message, MessageReader, encode_connect, encode_sync};
pub use outcome::{Action, FailureReason, Outcome, Role};
pub use punch::HolePunch;
pub use stats::{FailureCounts, HolePunchStats, TIME_BUCKETS_MS, TimeHistogram};

/// The DCUtR protocol name.
pub const PROTOCOL: &str = "/libp2p/dcutr";

/// Largest DCUtR message accepted, in bytes, length prefix excluded (the spec's 4 KiB).
pub const MAX_MESSAGE: usize = crate::wire::proto::MAX_RELAY_MESSAGE;
