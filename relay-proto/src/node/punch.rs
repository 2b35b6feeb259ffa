//! Hole punching in the node: one [`HolePunch`] (DCUtR, `/libp2p/dcutr`) per relayed
//! connection, its streams, its dials and their roles, its timers, and what happens
//! after it ends.
//!
//! # What the node does
//! - The side that accepted a relayed connection (the spec's B) starts a hole punch as
//!   [`Role::Initiator`] as soon as the connection is established, as rust-libp2p does
//!   (go-libp2p first waits for the peer's identify, a round trip over the relay later),
//!   unless a direct connection to the peer exists or `concurrent_limit` hole punches
//!   are [active](HolePunch::is_active): then it waits for a slot. The side that dialed
//!   it (A) keeps a [`Role::Responder`] from the connection's establishment on. A DCUtR
//!   stream from the peer is answered whatever our side (see [`crate::dcutr`]).
//! - The unilateral upgrade (dialing the peer's public identify listen addresses)
//!   comes first where they are known when the hole punch starts (one started by hand,
//!   [`Node::hole_punch`], or waiting for a slot). On a new connection identify arrives
//!   a round trip into the first exchange; if it shows public addresses, the node dials
//!   them directly alongside the exchange (a peer behind a symmetric NAT can be reached
//!   only this way). Not waiting for identify saves that round trip on every
//!   connection behind NATs.
//! - go-libp2p's role swap on the last attempt (see [`crate::dcutr`]) is kept only for
//!   peers whose identify agent is not ours or rust-libp2p's: both take the client role
//!   as A on every attempt, so a swapped attempt could not succeed against them. The
//!   agent arrives with identify, well before a last attempt.
//! - Our address candidates are the addresses peers observed us at (identify, on
//!   direct connections whose local port is one we listen on, so that the NAT mapping
//!   they show is our listener's), then our listen and external addresses; which IP
//!   ranges count is [`HolePunchConfig::scope`](crate::dcutr::HolePunchConfig::scope).
//! - A punch dial ([`Action::Dial`]) is one [`Output::Dial`] per address with
//!   [`DialFrom::HolePunch`]: from our listen port, its upgrade in the role DCUtR gave
//!   (Noise initiator and Yamux client if `as_client`, else responder and server,
//!   whatever the socket says). A connection we accept from one of the addresses an
//!   attempt expects a direct connection from ([`HolePunch::expected_direct`], until
//!   `sync_timeout + attempt_timeout` later) takes the same role: without a NAT the
//!   peer's dial may reach our listener first, and the two dials then share one
//!   address pair, so ours fails and the accepted one stands in for it (a failure of
//!   ours while it is being upgraded is not reported). The runtime may even report our
//!   dial's failure before the accepted socket: the attempt then fails, but the
//!   accepted connection still takes the role, and its success ends the hole punch.
//! - A DCUtR stream the peer opens while a direct connection exists is refused.
//! - Any direct connection to the peer, dialed or accepted, is success. The node then
//!   emits [`Event::HolePunchSucceeded`]; new streams to the peer take the direct
//!   connection ([`Node::connections_to`] lists direct connections first,
//!   [`Node::open_stream_to`] picks the first); the relayed connection closes once
//!   [`HolePunchConfig::relayed_close_grace`](crate::dcutr::HolePunchConfig::relayed_close_grace) has passed and no application stream is
//!   left on it (checked again a grace period later while one is).
//! - Dials that have not made a connection yet are closed when their attempt is over (we
//!   lead: it failed; we answer: no exchange is under way) or the hole punch ended: a
//!   socket left connecting would hold the address pair the next attempt dials from. A
//!   dial still connecting when a later attempt dials the same address in the same
//!   role serves that attempt instead.
//! - On failure the node emits [`Event::HolePunchFailed`] and the relayed connection
//!   stays. Every outcome is counted in [`Node::hole_punch_stats`].
//!
//! # The hole punch service (the seed's `HolePunchService`)
//! [`Node::set_hole_punch_enabled`] (`EnableHolePunch`/`DisableHolePunch`),
//! [`Node::hole_punch`] (`AttemptHolePunch`), [`Node::hole_punch_stats`]
//! (`GetHolePunchStats`), and [`Node::hole_punches_active`].

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use multiaddr::{Multiaddr, Protocol};
use smallvec::SmallVec;

use super::conn::{StreamRole, Transport};
use super::{ConnectionId, DialError, DialFrom, Event, Node, Output, StreamRef, addr};
use crate::conn::connection::{Endpoint, StreamError};
use crate::conn::yamux::StreamId;
use crate::dcutr::{
    self, Action, FailureReason, HolePunch, HolePunchStats, Outcome, Role, candidate_in,
};
use crate::identify;
use crate::identity::PeerId;
use crate::map::Map;

/// Most observed addresses of ours kept as candidates.
const MAX_OBSERVED: usize = 8;

/// Why a hole punch could not be started by hand ([`Node::hole_punch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolePunchError {
    /// Hole punching is disabled (the seed's `ErrHolePunchNotEnabled`).
    #[error("hole punching not enabled")]
    NotEnabled,
    /// There is no established relayed connection to the peer to upgrade.
    #[error("no relayed connection to {0}")]
    NoRelayedConnection(PeerId),
    /// A direct connection to the peer exists already.
    #[error("already connected directly to {0}")]
    AlreadyDirect(PeerId),
    /// A hole punch with the peer is in progress.
    #[error("a hole punch with {0} is in progress")]
    InProgress(PeerId),
}

/// The node's hole punching state.
#[derive(Debug, Default)]
pub(super) struct Punches {
    /// The hole punch of each relayed connection that has one.
    machines: Map<ConnectionId, Machine>,
    /// Relayed connections whose initiator waits for a `concurrent_limit` slot.
    waiting: VecDeque<ConnectionId>,
    /// The peer's identify listen addresses, per relayed connection we accepted.
    listen_addrs: Map<ConnectionId, Vec<Multiaddr>>,
    /// Direct connections dialed for a hole punch, until established or failed.
    dials: Map<ConnectionId, PunchDial>,
    /// Direct connections accepted from a peer we hole punch with, until established
    /// or failed.
    accepted: Map<ConnectionId, PunchDial>,
    /// The addresses attempts expect a direct connection from, and how to accept one.
    expected: Map<Multiaddr, Expected>,
    /// Relayed connections to close once their grace period has passed.
    graces: BTreeSet<(Instant, ConnectionId)>,
    /// Addresses peers observed us at, most recent first.
    observed: Vec<Multiaddr>,
    stats: HolePunchStats,
}

impl Punches {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let machines = self
            .machines
            .values()
            .filter_map(|m| m.hp.poll_timeout())
            .min();
        let grace = self.graces.first().map(|(at, _)| *at);
        match (machines, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn active(&self) -> usize {
        self.machines.values().filter(|m| m.hp.is_active()).count()
    }
}

/// One relayed connection's hole punch.
#[derive(Debug)]
struct Machine {
    peer: PeerId,
    hp: HolePunch,
    /// The DCUtR stream the machine's stream actions apply to.
    stream: Option<StreamId>,
    /// The last attempt announced with [`Event::HolePunchStarted`].
    announced: Option<u32>,
    /// The direct connection that ended it, once one did.
    direct: Option<ConnectionId>,
}

/// A direct connection made for a hole punch.
#[derive(Debug, Clone)]
struct PunchDial {
    relayed: ConnectionId,
    attempt: u32,
    /// The peer's address, `/ip4|ip6/.../tcp/PORT`.
    addr: Multiaddr,
    /// Our side of the connection's upgrade.
    upgrade: Endpoint,
}

/// How to accept a connection from an address an attempt expects.
#[derive(Debug, Clone)]
struct Expected {
    relayed: ConnectionId,
    peer: PeerId,
    as_client: bool,
    attempt: u32,
    /// Until when; `None` for never (durations too large for an `Instant`).
    until: Option<Instant>,
}

/// A connection being accepted from a peer we are hole punching with.
#[derive(Debug, Clone)]
pub(super) struct PunchInbound {
    pub(super) peer: PeerId,
    pub(super) upgrade: Endpoint,
    dial: PunchDial,
}

impl Node {
    // ----- the hole punch service -----

    /// Whether hole punching is enabled.
    pub fn hole_punch_enabled(&self) -> bool {
        self.shared.config.hole_punch.enabled
    }

    /// Enables or disables hole punching (the seed's `EnableHolePunch` and
    /// `DisableHolePunch`).
    ///
    /// Disabling ends every hole punch at once: those that had begun an attempt end
    /// with [`FailureReason::NotEnabled`] (an event and a count each), and peers' DCUtR
    /// streams are refused from then on. Enabling starts hole punches for the established
    /// relayed connections we accepted.
    pub fn set_hole_punch_enabled(&mut self, now: Instant, enabled: bool) {
        let config = &mut self.shared.config.hole_punch;
        if config.enabled == enabled {
            return;
        }
        config.enabled = enabled;
        if enabled {
            if config.exchange_enabled() {
                self.shared.protocols.insert(dcutr::PROTOCOL);
            }
            let ready: SmallVec<[ConnectionId; 8]> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    c.transport.is_relayed()
                        && c.endpoint == Endpoint::Listener
                        && c.peer.is_some()
                        && c.conn.is_open()
                })
                .map(|(id, _)| *id)
                .collect();
            for relayed in ready {
                self.start_initiator(now, relayed);
            }
        } else {
            self.shared.protocols.remove(dcutr::PROTOCOL);
            self.punch.waiting.clear();
            let all: SmallVec<[ConnectionId; 8]> = self.punch.machines.keys().copied().collect();
            for relayed in all {
                let Some(m) = self.punch.machines.remove(&relayed) else {
                    continue;
                };
                if let Some(stream) = m.stream {
                    self.reset_stream(StreamRef {
                        conn: relayed,
                        stream,
                    });
                }
                if m.hp.attempts() > 0 || m.hp.is_active() {
                    let outcome = Outcome::Failure {
                        attempts: m.hp.attempts(),
                        reason: FailureReason::NotEnabled,
                    };
                    self.punch_over(now, relayed, m, outcome);
                }
                self.abandon_dials(relayed, |_| false);
            }
        }
        self.run(now);
    }

    /// Starts a hole punch of the relayed connection to `peer` by hand (the seed's
    /// `AttemptHolePunch`), as [`Role::Initiator`] whichever side of the relayed
    /// connection we are: we open the DCUtR stream. (A go-libp2p or rust-libp2p peer
    /// refuses it when it accepted the relayed connection; ours answer.) Returns the
    /// relayed connection; the outcome arrives as an event. Beyond `concurrent_limit` it
    /// waits for a slot.
    pub fn hole_punch(
        &mut self,
        now: Instant,
        peer: PeerId,
    ) -> Result<ConnectionId, HolePunchError> {
        if !self.shared.config.hole_punch.enabled {
            return Err(HolePunchError::NotEnabled);
        }
        if self.has_direct(&peer) {
            return Err(HolePunchError::AlreadyDirect(peer));
        }
        let relayed = self
            .connections_to(&peer)
            .iter()
            .copied()
            .find(|id| self.conns.get(id).is_some_and(|c| c.transport.is_relayed()))
            .ok_or(HolePunchError::NoRelayedConnection(peer))?;
        if let Some(m) = self.punch.machines.get(&relayed) {
            // A responder whose peer never began gives way.
            if m.hp.role() == Role::Initiator || m.hp.attempts() > 0 || m.hp.is_active() {
                return Err(HolePunchError::InProgress(peer));
            }
            self.punch.machines.remove(&relayed);
        }
        if self.punch.waiting.contains(&relayed) {
            return Err(HolePunchError::InProgress(peer));
        }
        self.punch.listen_addrs.entry(relayed).or_default();
        self.start_initiator(now, relayed);
        self.run(now);
        Ok(relayed)
    }

    /// Counts of finished hole punches (the seed's `GetHolePunchStats`).
    pub fn hole_punch_stats(&self) -> &HolePunchStats {
        &self.punch.stats
    }

    /// How many hole punches have an exchange or a dial in progress (what
    /// `concurrent_limit` bounds).
    pub fn hole_punches_active(&self) -> usize {
        self.punch.active()
    }

    /// The addresses peers observed us at on connections from our listen port, most
    /// recent first: our best hole punch candidates.
    pub fn observed_addrs(&self) -> &[Multiaddr] {
        &self.punch.observed
    }

    /// The connection new streams to `peer` should take: the first established direct
    /// one, else a relayed one.
    pub fn preferred_connection(&self, peer: &PeerId) -> Option<ConnectionId> {
        self.connections_to(peer).first().copied()
    }

    /// Opens a stream to `peer` on its [preferred connection](Node::preferred_connection)
    /// proposing `protocol`; after a hole punch that is the direct connection.
    pub fn open_stream_to(
        &mut self,
        now: Instant,
        peer: &PeerId,
        protocol: &str,
    ) -> Result<StreamRef, StreamError> {
        let conn = self
            .preferred_connection(peer)
            .ok_or(StreamError::ConnectionNotOpen)?;
        self.open_stream(now, conn, protocol)
    }

    // ----- hooks of the rest of the node -----

    /// A peer identified itself on `conn`: keep what it observed of us; on a relayed
    /// connection we accepted, let its hole punch know the peer's agent and addresses.
    pub(super) fn punch_identified(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        info: &identify::Info,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.transport.is_relayed() {
            if c.endpoint == Endpoint::Listener {
                self.punch
                    .listen_addrs
                    .insert(conn, info.listen_addrs.clone());
                // The agent is known now: the role swap follows it from here on.
                let swap = self.punch_config(conn).swap_roles_on_last_attempt;
                if let Some(m) = self.punch.machines.get_mut(&conn) {
                    m.hp.set_swap_roles_on_last_attempt(swap);
                }
                self.punch_unilateral(now, conn, &info.listen_addrs);
            }
            return;
        }
        let from_listen_port = c
            .local_addr
            .as_ref()
            .and_then(|a| addr::parse_tcp(a).ok())
            .is_some_and(|(local, _)| self.listens_on_port(local.port()));
        if let Some(observed) = info.observed_addr.as_ref().filter(|_| from_listen_port)
            && let Some(observed) = candidate_in(observed, dcutr::AddrScope::Loopback)
        {
            let list = &mut self.punch.observed;
            list.retain(|a| *a != observed);
            list.insert(0, observed);
            list.truncate(MAX_OBSERVED);
        }
    }

    /// The unilateral upgrade, once the peer's identify shows public listen addresses
    /// while the first exchange of the hole punch of `relayed` (which started without
    /// waiting for identify) is under way: a plain direct dial to them alongside it, as
    /// a connection reversal. A peer that is reachable this way may not be reachable by
    /// the exchange: behind a symmetric NAT our punch dial to its listener comes from an
    /// unannounced port and would meet its listener in the same (server) role. Any
    /// direct connection to the peer ends the hole punch in success.
    fn punch_unilateral(&mut self, now: Instant, relayed: ConnectionId, listen: &[Multiaddr]) {
        let Some(m) = self.punch.machines.get(&relayed) else {
            return;
        };
        if m.hp.role() != Role::Initiator
            || !m.hp.is_active()
            || m.hp.attempts() > 1
            || !self.shared.config.hole_punch.unilateral_first
            || self.has_direct(&m.peer)
        {
            return;
        }
        let peer = m.peer;
        let mut public = dcutr::filter_candidates_in(listen, dcutr::AddrScope::Public);
        public.truncate(self.shared.config.hole_punch.dial_limit());
        for target in public {
            tracing::debug!(conn = %relayed, %target, "dcutr: the peer listens publicly: dialing it directly");
            if let Err(error) = self.dial_tcp(now, target.with(Protocol::P2p(peer))) {
                tracing::debug!(conn = %relayed, %error, "dcutr: direct dial refused");
            }
        }
    }

    /// A connection was established: a relayed one we accepted starts its initiator, one
    /// we dialed gets a responder; a direct one ends the hole punches with its peer.
    pub(super) fn punch_established(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        peer: PeerId,
        relayed: bool,
    ) {
        self.punch.dials.remove(&conn);
        self.punch.accepted.remove(&conn);
        if relayed {
            let config = &self.shared.config.hole_punch;
            let dialed = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.endpoint == Endpoint::Dialer);
            if !dialed {
                self.start_initiator(now, conn);
            } else if config.enabled && config.exchange_enabled() {
                let hp = HolePunch::new(
                    Role::Responder,
                    self.punch_config(conn),
                    self.our_candidates(),
                    &[],
                    now,
                );
                self.punch.machines.insert(conn, Machine::new(peer, hp));
                self.drive(now, conn);
            }
            return;
        }
        let punching: SmallVec<[ConnectionId; 2]> = self
            .punch
            .machines
            .iter()
            .filter(|(_, m)| m.peer == peer)
            .map(|(id, _)| *id)
            .collect();
        for relayed in punching {
            if let Some(m) = self.punch.machines.get_mut(&relayed) {
                m.direct = Some(conn);
                m.hp.direct_connected(now);
            }
            self.drive(now, relayed);
        }
        self.punch
            .waiting
            .retain(|relayed| self.conns.get(relayed).is_none_or(|c| c.peer != Some(peer)));
    }

    /// A connection is gone: a hole punch dial of it failed (`peer` is `None`), or a
    /// relayed connection with a hole punch closed.
    pub(super) fn punch_retired(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        peer: Option<PeerId>,
        relayed: bool,
        error: &str,
    ) {
        if let Some(dial) = self.punch.dials.remove(&conn)
            && peer.is_none()
        {
            // A connection accepted between the same two ports stands in.
            let standing_in = self
                .punch
                .accepted
                .values()
                .any(|d| d.relayed == dial.relayed && d.addr == dial.addr);
            if !standing_in && let Some(m) = self.punch.machines.get_mut(&dial.relayed) {
                m.hp.direct_dial_failed(now, dial.attempt, &dial.addr, error);
                self.drive(now, dial.relayed);
            }
        }
        self.punch.accepted.remove(&conn);
        if !relayed {
            return;
        }
        self.punch.listen_addrs.remove(&conn);
        self.punch.expected.retain(|_, e| e.relayed != conn);
        self.punch.waiting.retain(|c| *c != conn);
        self.punch.graces.retain(|(_, c)| *c != conn);
        let Some(m) = self.punch.machines.get_mut(&conn) else {
            return;
        };
        m.stream = None;
        if m.hp.role() == Role::Responder && m.hp.attempts() == 0 && !m.hp.is_active() {
            // The peer never began: nothing to report.
            self.punch.machines.remove(&conn);
            self.start_waiting(now);
            return;
        }
        m.hp.relayed_closed(now);
        self.drive(now, conn);
    }

    /// How to accept a connection from `remote`, if it comes from a peer we are hole
    /// punching with: an address the current attempt expects a direct connection from.
    pub(super) fn punch_inbound(&self, now: Instant, remote: &Multiaddr) -> Option<PunchInbound> {
        let e = self.punch.expected.get(remote)?;
        if e.until.is_some_and(|until| until <= now) {
            return None;
        }
        Some(PunchInbound {
            peer: e.peer,
            upgrade: if e.as_client {
                Endpoint::Dialer
            } else {
                Endpoint::Listener
            },
            dial: PunchDial {
                relayed: e.relayed,
                attempt: e.attempt,
                addr: remote.clone(),
                upgrade: if e.as_client {
                    Endpoint::Dialer
                } else {
                    Endpoint::Listener
                },
            },
        })
    }

    /// A connection from `punch_inbound`'s peer was accepted as `conn`.
    pub(super) fn punch_accepted(&mut self, conn: ConnectionId, inbound: PunchInbound) {
        tracing::debug!(%conn, peer = %inbound.peer, upgrade = ?inbound.upgrade, "dcutr: accepted the peer's punch");
        self.punch.accepted.insert(conn, inbound.dial);
    }

    /// Runs due hole punch timers and closes relayed connections whose grace is over.
    pub(super) fn punch_timeout(&mut self, now: Instant) {
        let due: SmallVec<[ConnectionId; 4]> = self
            .punch
            .machines
            .iter()
            .filter(|(_, m)| m.hp.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for relayed in due {
            if let Some(m) = self.punch.machines.get_mut(&relayed) {
                m.hp.handle_timeout(now);
            }
            self.drive(now, relayed);
        }
        while let Some(&(at, relayed)) = self.punch.graces.first() {
            if at > now {
                break;
            }
            self.punch.graces.pop_first();
            let Some(c) = self.conns.get_mut(&relayed) else {
                continue;
            };
            if c.streams.values().any(|r| matches!(r, StreamRole::App)) {
                let grace = self.shared.config.hole_punch.relayed_close_grace;
                if let Some(later) = now.checked_add(grace) {
                    self.punch.graces.insert((later, relayed));
                }
                continue;
            }
            tracing::debug!(conn = %relayed, "dcutr: closing the relayed connection after its grace period");
            c.conn.close();
            self.mark(relayed);
        }
    }

    // ----- streams -----

    /// The peer opened a DCUtR stream on `s.conn`; its role is [`StreamRole::Dcutr`].
    pub(super) fn punch_inbound_stream(&mut self, now: Instant, s: StreamRef) {
        let relayed = s.conn;
        let Some(c) = self.conns.get(&relayed) else {
            return;
        };
        let (Some(peer), true) = (c.peer, c.transport.is_relayed()) else {
            tracing::debug!(conn = %relayed, "dcutr: stream on a direct connection refused");
            self.reset_stream(s);
            return;
        };
        if self.has_direct(&peer) && !self.punch.machines.contains_key(&relayed) {
            tracing::debug!(conn = %relayed, "dcutr: stream refused: connected directly");
            self.reset_stream(s);
            return;
        }
        if !self.punch.machines.contains_key(&relayed) {
            // We had not begun (or were done): the peer leads.
            self.punch.waiting.retain(|c| *c != relayed);
            let hp = HolePunch::new(
                Role::Responder,
                self.punch_config(relayed),
                self.our_candidates(),
                &[],
                now,
            );
            self.punch.machines.insert(relayed, Machine::new(peer, hp));
            self.drive(now, relayed);
        }
        let candidates = self.our_candidates();
        let Some(m) = self.punch.machines.get_mut(&relayed) else {
            self.reset_stream(s);
            return;
        };
        m.hp.set_our_addrs(&candidates);
        match m.hp.inbound_stream(now) {
            Ok(()) => {
                let previous = m.stream.replace(s.stream);
                if let Some(old) = previous.filter(|old| *old != s.stream) {
                    self.reset_stream(StreamRef {
                        conn: relayed,
                        stream: old,
                    });
                }
            }
            Err(error) => {
                tracing::debug!(conn = %relayed, %error, "dcutr: stream refused");
                self.reset_stream(s);
            }
        }
        self.drive(now, relayed);
    }

    /// A DCUtR stream we asked for is negotiated.
    pub(super) fn punch_stream_opened(&mut self, now: Instant, s: StreamRef) {
        if let Some(m) = self.current(s) {
            m.hp.stream_opened(now);
            self.drive(now, s.conn);
        }
    }

    /// Bytes arrived on a DCUtR stream.
    pub(super) fn punch_stream_data(&mut self, now: Instant, s: StreamRef, data: &[u8]) {
        self.consume(now, s, data.len());
        let Some(m) = self.current(s) else {
            return;
        };
        if let Err(error) = m.hp.handle_message(now, data) {
            tracing::debug!(stream = ?s, %error, "dcutr: message refused");
        }
        self.drive(now, s.conn);
    }

    /// A DCUtR stream ended: finished or reset by the peer, or it failed to open.
    pub(super) fn punch_stream_ended(&mut self, now: Instant, s: StreamRef) {
        let Some(m) = self.current(s) else {
            return;
        };
        m.stream = None;
        m.hp.stream_closed(now);
        self.drive(now, s.conn);
    }

    // ----- internals -----

    /// The machine whose current stream is `s`.
    fn current(&mut self, s: StreamRef) -> Option<&mut Machine> {
        self.punch
            .machines
            .get_mut(&s.conn)
            .filter(|m| m.stream == Some(s.stream))
    }

    fn has_direct(&self, peer: &PeerId) -> bool {
        self.connections_to(peer).iter().any(|id| {
            self.conns
                .get(id)
                .is_some_and(|c| !c.transport.is_relayed())
        })
    }

    fn listens_on_port(&self, port: u16) -> bool {
        self.shared
            .listen_addrs
            .iter()
            .filter_map(|a| addr::parse_tcp(a).ok())
            .any(|(s, _)| s.port() == port)
    }

    /// Our candidates: observed addresses first, then listen and external ones. The
    /// machine filters them by its scope.
    fn our_candidates(&self) -> Vec<Multiaddr> {
        self.punch
            .observed
            .iter()
            .chain(&self.shared.listen_addrs)
            .chain(&self.shared.config.external_addrs)
            .cloned()
            .collect()
    }

    /// The settings of a hole punch of `relayed`: the node's, without go-libp2p's role
    /// swap on the last attempt when the peer is known to take the client role as A
    /// (ours and rust-libp2p); against such a peer that attempt could not succeed.
    fn punch_config(&self, relayed: ConnectionId) -> dcutr::HolePunchConfig {
        let mut config = self.shared.config.hole_punch.clone();
        let agent = self.conns.get(&relayed).and_then(|c| c.agent.as_deref());
        if agent.is_some_and(|a| a.starts_with("relay-rs/") || a.starts_with("rust-libp2p/")) {
            config.swap_roles_on_last_attempt = false;
        }
        config
    }

    /// Starts the initiator of `relayed` if it may start now, or queues it for a slot.
    fn start_initiator(&mut self, now: Instant, relayed: ConnectionId) {
        let config = &self.shared.config.hole_punch;
        if !config.enabled || self.punch.machines.contains_key(&relayed) {
            return;
        }
        let Some(peer) = self.conns.get(&relayed).and_then(|c| c.peer) else {
            return;
        };
        if self.has_direct(&peer) {
            return;
        }
        let limit = usize::try_from(config.concurrent_limit).unwrap_or(usize::MAX);
        if self.punch.active() >= limit {
            if !self.punch.waiting.contains(&relayed) {
                tracing::debug!(conn = %relayed, "dcutr: waiting for a hole punch slot");
                self.punch.waiting.push_back(relayed);
            }
            return;
        }
        self.punch.waiting.retain(|c| *c != relayed);
        let listen = self
            .punch
            .listen_addrs
            .get(&relayed)
            .cloned()
            .unwrap_or_default();
        let hp = HolePunch::new(
            Role::Initiator,
            self.punch_config(relayed),
            self.our_candidates(),
            &listen,
            now,
        );
        self.punch.machines.insert(relayed, Machine::new(peer, hp));
        self.drive(now, relayed);
    }

    /// Starts waiting initiators while slots are free.
    fn start_waiting(&mut self, now: Instant) {
        let limit =
            usize::try_from(self.shared.config.hole_punch.concurrent_limit).unwrap_or(usize::MAX);
        while self.punch.active() < limit {
            let Some(relayed) = self.punch.waiting.pop_front() else {
                return;
            };
            self.start_initiator(now, relayed);
        }
    }

    /// Carries out a machine's actions, then abandons the dials of attempts that are
    /// over.
    fn drive(&mut self, now: Instant, relayed: ConnectionId) {
        self.run_actions(now, relayed);
        match self.punch.machines.get(&relayed) {
            // Over: every dial goes.
            None => self.abandon_dials(relayed, |_| false),
            // Leading: a dial goes with its attempt.
            Some(m) if m.hp.leads() => {
                let current = m.hp.expected_direct().map(|_| m.hp.attempts());
                self.abandon_dials(relayed, |attempt| Some(attempt) == current);
            }
            // Answering: the peer may start its next exchange while our dial of the last
            // one is still out (its own dial failed early), and that dial may yet
            // connect; it goes only once no exchange is under way.
            Some(m) if !m.hp.is_active() => self.abandon_dials(relayed, |_| false),
            Some(_) => {}
        }
        self.expect_direct(now, relayed);
    }

    /// Records the addresses `relayed`'s current attempt expects a direct connection
    /// from; forgets them all once its hole punch is over.
    fn expect_direct(&mut self, now: Instant, relayed: ConnectionId) {
        let Some(m) = self.punch.machines.get(&relayed) else {
            self.punch.expected.retain(|_, e| e.relayed != relayed);
            return;
        };
        let Some((addrs, as_client)) = m.hp.expected_direct() else {
            return;
        };
        let config = &self.shared.config.hole_punch;
        let until = config
            .sync_timeout
            .checked_add(config.attempt_timeout)
            .and_then(|d| now.checked_add(d));
        let (peer, attempt) = (m.peer, m.hp.attempts());
        let expected: SmallVec<[Multiaddr; 4]> = addrs.iter().cloned().collect();
        self.punch
            .expected
            .retain(|_, e| e.until.is_none_or(|until| until > now));
        for addr in expected {
            self.punch.expected.insert(
                addr,
                Expected {
                    relayed,
                    peer,
                    as_client,
                    attempt,
                    until,
                },
            );
        }
    }

    /// Closes the hole punch dials of `relayed` that have not made a connection yet,
    /// except those whose attempt `keep` holds: their attempt is over, and a socket left
    /// connecting would hold the address pair the next attempt dials from.
    fn abandon_dials(&mut self, relayed: ConnectionId, keep: impl Fn(u32) -> bool) {
        let stale: SmallVec<[ConnectionId; 4]> = self
            .punch
            .dials
            .iter()
            .filter(|(_, d)| d.relayed == relayed && !keep(d.attempt))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.punch.dials.remove(&id);
            if let Some(c) = self.conns.get_mut(&id) {
                tracing::debug!(conn = %id, "dcutr: abandoning a punch dial");
                c.conn.close();
                self.mark(id);
            }
        }
    }

    fn run_actions(&mut self, now: Instant, relayed: ConnectionId) {
        loop {
            let Some(m) = self.punch.machines.get_mut(&relayed) else {
                return;
            };
            let attempts = m.hp.attempts();
            if attempts > 0 && m.announced < Some(attempts) {
                m.announced = Some(attempts);
                let peer = m.peer;
                self.shared.emit(Event::HolePunchStarted {
                    relayed,
                    peer,
                    attempt: attempts,
                });
            }
            let Some(m) = self.punch.machines.get_mut(&relayed) else {
                return;
            };
            let Some(action) = m.hp.poll_action() else {
                return;
            };
            let stream = m.stream.map(|stream| StreamRef {
                conn: relayed,
                stream,
            });
            match action {
                Action::OpenStream => self.punch_open_stream(now, relayed),
                Action::Send(bytes) => {
                    if let Some(s) = stream {
                        self.write_stream(s, &bytes);
                    }
                }
                Action::CloseStream => {
                    if let Some(s) = stream {
                        self.finish_stream(s);
                    }
                }
                Action::ResetStream => {
                    if let Some(s) = stream {
                        self.reset_stream(s);
                    }
                    if let Some(m) = self.punch.machines.get_mut(&relayed) {
                        m.stream = None;
                    }
                }
                Action::Dial {
                    addrs,
                    as_client,
                    attempt,
                } => self.punch_dial(now, relayed, &addrs, as_client, attempt),
                Action::Done(outcome) => {
                    let Some(m) = self.punch.machines.remove(&relayed) else {
                        return;
                    };
                    if let Some(stream) = m.stream {
                        // Our side is done; the peer's end of the stream is of no use.
                        self.finish_stream(StreamRef {
                            conn: relayed,
                            stream,
                        });
                    }
                    self.punch_over(now, relayed, m, outcome);
                    self.start_waiting(now);
                    return;
                }
            }
        }
    }

    /// Opens the DCUtR stream a machine asked for.
    fn punch_open_stream(&mut self, now: Instant, relayed: ConnectionId) {
        let opened = self.conns.get_mut(&relayed).map(|c| {
            let opened = c.conn.open_stream(vec![dcutr::PROTOCOL.to_owned()]);
            if let Ok(stream) = opened {
                c.streams.insert(stream, StreamRole::Dcutr);
            }
            opened
        });
        let Some(m) = self.punch.machines.get_mut(&relayed) else {
            return;
        };
        match opened {
            Some(Ok(stream)) => {
                m.stream = Some(stream);
                self.mark(relayed);
            }
            _ => {
                tracing::debug!(conn = %relayed, "dcutr: cannot open a stream");
                m.stream = None;
                m.hp.stream_closed(now);
            }
        }
    }

    /// Dials every address of an attempt from our listen port, in the role DCUtR gave.
    fn punch_dial(
        &mut self,
        now: Instant,
        relayed: ConnectionId,
        addrs: &[Multiaddr],
        as_client: bool,
        attempt: u32,
    ) {
        let Some(peer) = self.punch.machines.get(&relayed).map(|m| m.peer) else {
            return;
        };
        if attempt == 0 {
            // The direct dial to the peer's public addresses, before any exchange.
            self.shared.emit(Event::HolePunchStarted {
                relayed,
                peer,
                attempt,
            });
        }
        let upgrade = if as_client {
            Endpoint::Dialer
        } else {
            Endpoint::Listener
        };
        for target in addrs {
            // The peer's dial may have reached our listener already, from that address.
            let accepted = self
                .punch
                .accepted
                .values()
                .any(|d| d.relayed == relayed && d.addr == *target);
            if accepted {
                continue;
            }
            // A dial of an earlier attempt that is still connecting holds the address
            // pair: it serves this attempt if its role is this attempt's.
            let earlier = self
                .punch
                .dials
                .iter_mut()
                .find(|(_, d)| d.relayed == relayed && d.addr == *target);
            if let Some((id, d)) = earlier {
                if d.upgrade == upgrade {
                    tracing::debug!(conn = %id, attempt, "dcutr: an earlier punch dial serves");
                    d.attempt = attempt;
                    continue;
                }
                let id = *id;
                self.punch.dials.remove(&id);
                if let Some(c) = self.conns.get_mut(&id) {
                    c.conn.close();
                    self.mark(id);
                }
            }
            let result = self.punch_dial_one(now, relayed, peer, target, upgrade, attempt);
            if let Err(error) = result
                && let Some(m) = self.punch.machines.get_mut(&relayed)
            {
                m.hp.direct_dial_failed(now, attempt, target, &error.to_string());
            }
        }
    }

    fn punch_dial_one(
        &mut self,
        now: Instant,
        relayed: ConnectionId,
        peer: PeerId,
        target: &Multiaddr,
        upgrade: Endpoint,
        attempt: u32,
    ) -> Result<ConnectionId, DialError> {
        let (socket, _) = addr::parse_tcp(target)?;
        let from = self
            .listen_port_for(socket)
            .map_or(DialFrom::Ephemeral, DialFrom::HolePunch);
        let id = self.new_connection_as(
            now,
            Endpoint::Dialer,
            upgrade,
            target.clone().with(Protocol::P2p(peer)),
            Some(peer),
            Transport::Tcp { connected: false },
        )?;
        tracing::debug!(conn = %id, %target, ?from, ?upgrade, attempt, "dcutr: punch dial");
        self.punch.dials.insert(
            id,
            PunchDial {
                relayed,
                attempt,
                addr: target.clone(),
                upgrade,
            },
        );
        self.shared.outputs.push_back(Output::Dial {
            conn: id,
            addr: socket,
            from,
        });
        Ok(id)
    }

    /// A hole punch ended: count it, tell the application, and schedule the relayed
    /// connection's close after a success.
    fn punch_over(&mut self, now: Instant, relayed: ConnectionId, m: Machine, outcome: Outcome) {
        self.punch.stats.record(&outcome);
        let peer = m.peer;
        match outcome {
            Outcome::Success {
                attempt,
                rtt,
                elapsed,
            } => {
                let Some(direct) = m.direct else {
                    return;
                };
                let addr = self
                    .conns
                    .get(&direct)
                    .and_then(|c| candidate_in(&c.remote_addr, dcutr::AddrScope::Loopback))
                    .unwrap_or_else(Multiaddr::empty);
                tracing::info!(%peer, attempt, ?elapsed, %addr, "hole punch succeeded");
                let grace = self.shared.config.hole_punch.relayed_close_grace;
                if let Some(at) = now.checked_add(grace) {
                    self.punch.graces.insert((at, relayed));
                }
                self.shared.emit(Event::HolePunchSucceeded {
                    relayed,
                    peer,
                    attempt,
                    elapsed,
                    rtt,
                    direct,
                    addr,
                });
            }
            Outcome::Failure { attempts, reason } => {
                tracing::info!(%peer, attempts, %reason, "hole punch failed");
                self.shared.emit(Event::HolePunchFailed {
                    relayed,
                    peer,
                    attempts,
                    reason,
                });
            }
        }
    }
}

impl Machine {
    fn new(peer: PeerId, hp: HolePunch) -> Self {
        Machine {
            peer,
            hp,
            stream: None,
            announced: None,
            direct: None,
        }
    }
}
