//! AutoRelay inside the node: the [`AutoRelay`] state machine driven by what the node
//! sees, its choices carried out with the node's relay client.
//!
//! The machine ([`crate::autorelay`]) decides; this file only translates, both ways:
//! - node facts to machine inputs: a reservation accepted, renewed, refused or lost (its
//!   [`ReservationLoss`] mapped to a [`FailureReason`]); the last direct connection to a
//!   relay closed; a ping RTT on a direct connection to a relay (quality, and a sign of
//!   life); a ping to a relay timing out (a heartbeat failure: the connection is closed
//!   too); a peer whose identify lists the hop protocol, reached directly (a dynamic
//!   candidate);
//! - machine [`Action`]s to node operations: `Reserve` is [`Node::reserve`] (which dials
//!   the relay if needed and keeps the reservation renewed), `Release` is
//!   [`Node::cancel_reservation`] (which withdraws our `/p2p-circuit` addresses through
//!   it and pushes identify), `QueryPeerSource` is [`Event::AutoRelayPeerSourceQuery`]
//!   for the application, answered with [`Node::auto_relay_peer_source_result`];
//! - machine events to [`Event::AutoRelay`]; its timer to [`Node::poll_timeout`].
//!
//! The node learns facts from its own events: [`observe`] sees every event the node
//! emits and keeps the few AutoRelay needs; they are handed to the machine at the end
//! of the node's current pass, after the relay client has updated its state. So the
//! hooks elsewhere are two lines: one in `Shared::emit`, one at the end of `Node::run`.
//!
//! # Reachability
//! Under [`Activation::WhenPrivate`](crate::autorelay::Activation) the machine holds
//! reservations only while the node believes itself unreachable. Without AutoNAT the
//! node guesses: it believes itself **public** when a configured external address or a
//! listen address has a public IP (not private, loopback, link-local, shared (CGNAT),
//! documentation or unspecified), and **private** otherwise; so a node listening only on
//! `0.0.0.0` counts as private, as it cannot tell which interfaces it has. Once the
//! application calls [`Node::set_reachability`] (from AutoNAT, or because it knows),
//! the guess is no longer made.
//!
//! # Detection of a failed relay
//! A relay whose process dies is noticed when its connection closes (at once on a
//! reset or end of file). A relay that goes silent is noticed when a ping to it times
//! out: within `ping.interval + ping.timeout` of its last answer. Either is acted upon
//! at once: the relay backs off and another candidate is asked for a reservation.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use multiaddr::{Multiaddr, Protocol};

use super::{ConnectionId, Event, Node, ReservationLoss, addr};
use crate::autorelay::{
    Action, AutoRelay, AutoRelayConfig, Candidate, CandidateState, ConfigError, Error,
    FailureReason, Reachability,
};
use crate::circuit::HOP_PROTOCOL;
use crate::identity::PeerId;
use crate::ping::PingError;
use crate::rng::Rng;

/// A node event AutoRelay learns from, kept until the end of the node's pass.
#[derive(Debug)]
pub(super) enum Fact {
    /// A reservation was granted or renewed.
    Accepted { relay: PeerId, expire_unix: u64 },
    /// A reservation attempt was refused, failed, or a held one was lost.
    Failed {
        relay: PeerId,
        reason: FailureReason,
    },
    /// A connection to `peer` closed.
    Disconnected { peer: PeerId },
    /// `peer` said through identify that it speaks the hop protocol.
    Hop {
        conn: ConnectionId,
        peer: PeerId,
        listen_addrs: Vec<Multiaddr>,
    },
    /// A ping on `conn` came back after `rtt`.
    Rtt {
        conn: ConnectionId,
        peer: PeerId,
        rtt: Duration,
    },
    /// A ping on `conn` was not answered in time.
    PingTimeout { conn: ConnectionId, peer: PeerId },
}

/// Keeps what AutoRelay needs to know of `event`.
pub(super) fn observe(facts: &mut VecDeque<Fact>, event: &Event) {
    let fact = match event {
        Event::ReservationAccepted {
            relay, expire_unix, ..
        } => Fact::Accepted {
            relay: *relay,
            expire_unix: *expire_unix,
        },
        Event::ReservationRefused { relay, .. } => Fact::Failed {
            relay: *relay,
            reason: FailureReason::Refused,
        },
        Event::ReservationLost { relay, reason } => Fact::Failed {
            relay: *relay,
            reason: failure_reason(reason),
        },
        Event::ConnectionClosed {
            peer,
            relayed: false,
            ..
        } => Fact::Disconnected { peer: *peer },
        Event::Identified { conn, peer, info }
            if info.protocols.iter().any(|p| p == HOP_PROTOCOL) =>
        {
            Fact::Hop {
                conn: *conn,
                peer: *peer,
                listen_addrs: info.listen_addrs.clone(),
            }
        }
        Event::Ping {
            conn,
            peer,
            result: Ok(rtt),
        } => Fact::Rtt {
            conn: *conn,
            peer: *peer,
            rtt: *rtt,
        },
        Event::Ping {
            conn,
            peer,
            result: Err(PingError::Timeout),
        } => Fact::PingTimeout {
            conn: *conn,
            peer: *peer,
        },
        _ => return,
    };
    facts.push_back(fact);
}

/// How the machine should read a lost or failed reservation.
fn failure_reason(loss: &ReservationLoss) -> FailureReason {
    match loss {
        ReservationLoss::ConnectionClosed => FailureReason::ConnectionClosed,
        ReservationLoss::ConnectFailed(_) => FailureReason::Unreachable,
        // Lost with a refusal: a renewal was refused (a first refusal is
        // `ReservationRefused`).
        ReservationLoss::Refused(_) | ReservationLoss::Expired => FailureReason::NotRenewed,
        ReservationLoss::Protocol(_) => FailureReason::Refused,
        ReservationLoss::Timeout => FailureReason::Timeout,
        // Our own release is ignored by the machine (it forgot the relay first); a
        // reservation the application cancelled is no longer renewed.
        ReservationLoss::Cancelled => FailureReason::NotRenewed,
    }
}

/// The node's AutoRelay: the machine and what the node keeps beside it.
#[derive(Debug)]
pub(super) struct Attached {
    machine: AutoRelay,
    /// A pass is under way: nested passes (the node's operations run `Node::run`) leave
    /// their facts and actions to it.
    busy: bool,
    /// The machine was called outside a pass; the next pass must drain it.
    touched: bool,
    /// The machine's next deadline, as of the end of the last pass.
    next_timeout: Option<Instant>,
    /// The application set the reachability: the node's guess is no longer made.
    reachability_set: bool,
    /// The reachability last given to the machine.
    reachability: Reachability,
    /// Listen and external addresses counted at the last guess.
    addrs_seen: usize,
}

impl Attached {
    /// The machine for `config`, with a fork of the node's randomness.
    pub(super) fn new(
        config: AutoRelayConfig,
        rng: &mut Rng,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let machine = AutoRelay::new(config, rng.fork(), now)?;
        Ok(Self {
            machine,
            busy: false,
            touched: false,
            next_timeout: None,
            reachability_set: false,
            reachability: Reachability::Unknown,
            addrs_seen: usize::MAX,
        })
    }

    /// When the node must call `handle_timeout` for AutoRelay.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }
}

impl Node {
    // ----- getters -----

    /// The AutoRelay state machine, if [`Config::auto_relay`](super::Config) is set: its
    /// candidates with their scores, the relays held and being reserved.
    pub fn auto_relay(&self) -> Option<&AutoRelay> {
        self.auto_relay.as_deref().map(|a| &a.machine)
    }

    /// The relays AutoRelay holds a reservation on, in the order they were granted (the
    /// seed's `GetRelayPeers`); empty without AutoRelay.
    pub fn auto_relay_current_relays(&self) -> Vec<PeerId> {
        self.auto_relay()
            .map(AutoRelay::current_relays)
            .unwrap_or_default()
    }

    /// What the node believes about its reachability: set by the application with
    /// [`set_reachability`](Self::set_reachability), or guessed from its addresses (see
    /// the module documentation). `Unknown` without AutoRelay.
    pub fn reachability(&self) -> Reachability {
        self.auto_relay
            .as_deref()
            .map_or(Reachability::Unknown, |a| a.reachability)
    }

    // ----- service commands -----

    /// Starts AutoRelay (the seed's `Start`): from now on it chooses relays and keeps
    /// reservations on them while the node is unreachable, or always under
    /// [`Activation::Always`](crate::autorelay::Activation). Does nothing if running.
    /// Fails with [`Error::NotEnabled`] when [`Config::auto_relay`](super::Config) is
    /// unset or not `enabled`.
    pub fn auto_relay_start(&mut self, now: Instant) -> Result<(), Error> {
        let Some(a) = self.auto_relay.as_deref_mut() else {
            return Err(Error::NotEnabled);
        };
        a.machine.start(now)?;
        a.touched = true;
        self.run(now);
        Ok(())
    }

    /// Stops AutoRelay (the seed's `Stop`): the reservations it holds or requested are
    /// cancelled and our addresses through those relays withdrawn.
    pub fn auto_relay_stop(&mut self, now: Instant) {
        if let Some(a) = self.auto_relay.as_deref_mut() {
            a.machine.stop(now);
            a.touched = true;
        }
        self.run(now);
    }

    /// Adds a trusted relay reachable at `addrs` (the seed's `AddStaticRelay`); it may
    /// be chosen at once if a slot is free. Fails with [`Error::NotEnabled`] without
    /// AutoRelay.
    pub fn auto_relay_add_static_relay(
        &mut self,
        now: Instant,
        relay: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<(), Error> {
        let Some(a) = self.auto_relay.as_deref_mut() else {
            return Err(Error::NotEnabled);
        };
        a.machine.add_static_relay(now, relay, addrs);
        a.touched = true;
        self.run(now);
        Ok(())
    }

    /// The application's peer source answered [`Event::AutoRelayPeerSourceQuery`]. An
    /// answer after `peer_source_timeout` (reported as [`Error::PeerSourceTimeout`]) is
    /// still used. Ignored without AutoRelay.
    pub fn auto_relay_peer_source_result(&mut self, now: Instant, candidates: Vec<Candidate>) {
        if let Some(a) = self.auto_relay.as_deref_mut() {
            a.machine.peer_source_result(now, candidates);
            a.touched = true;
        }
        self.run(now);
    }

    /// Sets what the node believes about its reachability (from AutoNAT, or because the
    /// application knows); from now on the node's own guess is not made. Under
    /// `WhenPrivate`, becoming private activates AutoRelay and becoming public releases
    /// its reservations. Ignored without AutoRelay.
    pub fn set_reachability(&mut self, now: Instant, reachability: Reachability) {
        if let Some(a) = self.auto_relay.as_deref_mut() {
            a.reachability_set = true;
            a.reachability = reachability;
            a.machine.set_reachability(now, reachability);
            a.touched = true;
        }
        self.run(now);
    }

    // ----- the pass -----

    /// Hands the facts gathered since the last pass to the machine, carries out its
    /// actions and emits its events, until neither side has anything left. Called at the
    /// end of every [`Node::run`].
    pub(super) fn auto_relay_pass(&mut self, now: Instant) {
        let Some(a) = self.auto_relay.as_deref_mut() else {
            return;
        };
        if a.busy {
            return;
        }
        let facts_waiting = self
            .shared
            .auto_relay_facts
            .as_ref()
            .is_some_and(|f| !f.is_empty());
        let addrs_now = self.shared.listen_addrs.len() + self.shared.config.external_addrs.len();
        let due = a.next_timeout.is_some_and(|t| t <= now);
        if !facts_waiting && !due && !a.touched && addrs_now == a.addrs_seen {
            return;
        }
        a.busy = true;
        a.touched = false;
        if addrs_now != a.addrs_seen {
            a.addrs_seen = addrs_now;
            self.guess_reachability(now);
        }
        loop {
            while let Some(fact) = self
                .shared
                .auto_relay_facts
                .as_mut()
                .and_then(VecDeque::pop_front)
            {
                self.learn(now, fact);
            }
            let a = self.auto_relay.as_deref_mut().expect("checked above");
            if a.machine.poll_timeout().is_some_and(|t| t <= now) {
                a.machine.handle_timeout(now);
            }
            let mut acted = false;
            while let Some(event) = self
                .auto_relay
                .as_deref_mut()
                .and_then(|a| a.machine.poll_event())
            {
                self.shared.emit(Event::AutoRelay(event));
            }
            while let Some(action) = self
                .auto_relay
                .as_deref_mut()
                .and_then(|a| a.machine.poll_action())
            {
                acted = true;
                self.perform(now, action);
            }
            let facts_left = self
                .shared
                .auto_relay_facts
                .as_ref()
                .is_some_and(|f| !f.is_empty());
            if !acted && !facts_left {
                break;
            }
        }
        let a = self.auto_relay.as_deref_mut().expect("checked above");
        a.next_timeout = a.machine.poll_timeout();
        a.busy = false;
    }

    /// The node's guess at its reachability, given to the machine when it changes.
    fn guess_reachability(&mut self, now: Instant) {
        let public = self
            .shared
            .listen_addrs
            .iter()
            .chain(&self.shared.config.external_addrs)
            .filter_map(addr::ip_of)
            .any(is_public_ip);
        let guess = if public {
            Reachability::Public
        } else {
            Reachability::Private
        };
        let Some(a) = self.auto_relay.as_deref_mut() else {
            return;
        };
        if a.reachability_set || a.reachability == guess {
            return;
        }
        tracing::debug!(
            ?guess,
            "auto relay: reachability guessed from our addresses"
        );
        a.reachability = guess;
        a.machine.set_reachability(now, guess);
    }

    /// Gives one fact to the machine.
    fn learn(&mut self, now: Instant, fact: Fact) {
        match fact {
            Fact::Accepted { relay, expire_unix } => {
                let left = expire_unix.saturating_sub(self.unix_time(now));
                let expires_at = now.checked_add(Duration::from_secs(left)).unwrap_or(now);
                self.machine().reservation_accepted(now, relay, expires_at);
            }
            Fact::Failed { relay, reason } => self.machine().reservation_failed(now, relay, reason),
            Fact::Disconnected { peer } => {
                if self.direct_connections(&peer).next().is_none() {
                    self.machine().relay_disconnected(now, peer);
                }
            }
            Fact::Hop {
                conn,
                peer,
                listen_addrs,
            } => {
                let Some(info) = self.connection_info(conn) else {
                    return;
                };
                if info.relay.is_some() {
                    // Reached through a relay: not a relay we could reserve on directly.
                    return;
                }
                let dialed = (info.endpoint == crate::conn::connection::Endpoint::Dialer)
                    .then_some(info.remote_addr);
                let mut addrs: Vec<Multiaddr> = Vec::new();
                for a in dialed.into_iter().chain(listen_addrs) {
                    if addr::is_dialable_direct(&a) && addr::parse_tcp(&a).is_ok() {
                        let a = with_peer(a, peer);
                        if !addrs.contains(&a) {
                            addrs.push(a);
                        }
                    }
                }
                self.machine().peer_supports_hop(now, peer, addrs);
            }
            Fact::Rtt { conn, peer, rtt } => {
                if self.is_direct(conn) {
                    self.machine().relay_rtt(now, peer, rtt);
                }
            }
            Fact::PingTimeout { conn, peer } => {
                let in_use = self
                    .auto_relay()
                    .and_then(|m| m.candidate(now, &peer))
                    .is_some_and(|c| c.state != CandidateState::Idle);
                if !in_use || !self.is_direct(conn) {
                    return;
                }
                tracing::info!(relay = %peer, conn = %conn, "auto relay: relay missed a heartbeat");
                self.machine()
                    .reservation_failed(now, peer, FailureReason::HeartbeatTimeout);
                // A relay that stopped answering will not carry circuits either.
                self.close(now, conn);
            }
        }
    }

    /// Carries out one of the machine's actions.
    fn perform(&mut self, now: Instant, action: Action) {
        match action {
            Action::Reserve { relay, addrs } => {
                let target = addrs
                    .into_iter()
                    .find(|a| addr::parse_tcp(a).is_ok_and(|(_, p)| p.is_none_or(|p| p == relay)))
                    .map(|a| with_peer(a, relay))
                    // Without an address, only a connection we hold reaches it.
                    .unwrap_or_else(|| Multiaddr::empty().with(Protocol::P2p(relay)));
                tracing::debug!(%relay, addr = %target, "auto relay: reserving");
                if let Err(error) = self.reserve(now, target) {
                    tracing::info!(%relay, %error, "auto relay: cannot reserve");
                    self.machine()
                        .reservation_failed(now, relay, FailureReason::Unreachable);
                }
            }
            Action::Release { relay } => self.cancel_reservation(now, relay),
            Action::QueryPeerSource { limit } => {
                self.shared.emit(Event::AutoRelayPeerSourceQuery { limit })
            }
        }
    }

    fn machine(&mut self) -> &mut AutoRelay {
        &mut self
            .auto_relay
            .as_deref_mut()
            .expect("only called with AutoRelay")
            .machine
    }

    fn is_direct(&self, conn: ConnectionId) -> bool {
        self.connection_info(conn)
            .is_some_and(|info| info.relay.is_none())
    }

    fn direct_connections<'a>(&'a self, peer: &PeerId) -> impl Iterator<Item = ConnectionId> + 'a {
        self.connections_to(peer)
            .iter()
            .copied()
            .filter(|c| self.is_direct(*c))
    }
}

/// `addr` ending in `/p2p/peer`.
fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(_)) => addr,
        _ => addr.with(Protocol::P2p(peer)),
    }
}

/// Whether other hosts on the internet can reach `ip`, as far as its address tells.
fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_broadcast()
                || ip.is_documentation()
                || ip.is_multicast()
                // 100.64.0.0/10, shared address space (carrier-grade NAT).
                || (a == 100 && (64..128).contains(&b))
                // 0.0.0.0/8 and 240.0.0.0/4.
                || a == 0
                || a >= 240)
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_multicast()
                // fc00::/7 unique local, fe80::/10 link local, 2001:db8::/32 documentation.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && ip.segments()[1] == 0x0db8)
                || ip.to_ipv4_mapped().is_some_and(|v4| !is_public_ip(IpAddr::V4(v4))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ips_are_told_apart() {
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "192.0.2.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip}");
        }
    }
}
