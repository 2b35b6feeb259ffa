//! AutoRelay: choosing relays, keeping reservations on them, and replacing lost ones.
//!
//! This module owns the decisions of a node that needs relays (the seed's
//! `node.relay.auto_relay`, the Tier 1 and Tier 2 deployments): which candidates exist
//! (static relays, a peer source, peers seen to speak the hop protocol), how good each is
//! ([`score`]), which ones to hold reservations on ([`select`]), and what to do when one
//! fails (backoff, replacement). It does not dial, reserve or ping: it asks the node to
//! with [`Action`]s and learns the outcomes through its input methods. It knows nothing
//! of [`Node`](crate::Node), so it can be driven by any relay client.
//!
//! Like the rest of relay-proto it reads no clock and draws randomness only from the
//! [`Rng`] it is given. Methods come in four groups, as in quinn-proto's `Connection`:
//! - getters: [`current_relays`](AutoRelay::current_relays),
//!   [`candidates`](AutoRelay::candidates), [`is_active`](AutoRelay::is_active), ...;
//! - service commands: [`start`](AutoRelay::start), [`stop`](AutoRelay::stop),
//!   [`add_static_relay`](AutoRelay::add_static_relay),
//!   [`set_reachability`](AutoRelay::set_reachability);
//! - inputs from the node and the application:
//!   [`reservation_accepted`](AutoRelay::reservation_accepted),
//!   [`reservation_failed`](AutoRelay::reservation_failed),
//!   [`relay_disconnected`](AutoRelay::relay_disconnected),
//!   [`relay_rtt`](AutoRelay::relay_rtt), [`peer_supports_hop`](AutoRelay::peer_supports_hop),
//!   [`peer_source_result`](AutoRelay::peer_source_result), and
//!   [`handle_timeout`](AutoRelay::handle_timeout) when the timer fires;
//! - `poll_*`: after every call, drain [`poll_action`](AutoRelay::poll_action) and
//!   [`poll_event`](AutoRelay::poll_event) until `None`, then re-arm the timer from
//!   [`poll_timeout`](AutoRelay::poll_timeout).
//!
//! Invariants: at most `max_relay_peers` reservations are held or requested at once; no
//! relay is requested twice; no relay is requested while it backs off after a failure.
//!
//! Files: [`config`] (settings), [`candidate`] (candidates, backoff), [`score`] (the
//! quality formula), [`select`] (policies), [`event`] (actions, events, errors), and
//! `maintain` (filling, refreshing and expiring, behind the methods here).

pub mod candidate;
pub mod config;
pub mod event;
mod maintain;
pub mod score;
pub mod select;

#[cfg(test)]
mod prop;
#[cfg(test)]
mod tests;

pub use candidate::{Candidate, CandidateInfo, CandidateState, Source};
pub use config::{
    Activation, AutoRelayConfig, BackoffConfig, ConfigError, Reachability, ScoreConfig,
    SelectionPolicy,
};
pub use event::{Action, Error, Event, FailureReason, RemovalReason};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use multiaddr::Multiaddr;

use crate::identity::PeerId;
use crate::rng::Rng;
use candidate::Entry;
use select::Selector;

/// The AutoRelay state machine of one node. See the [module documentation](self).
#[derive(Debug)]
pub struct AutoRelay {
    config: AutoRelayConfig,
    rng: Rng,
    /// Every known candidate, in the order it became known (`seq`).
    entries: Vec<Entry>,
    next_seq: u64,
    selector: Selector,
    running: bool,
    reachability: Reachability,
    /// While running and active: until when only static relays may be chosen if too few
    /// candidates are known.
    boot_until: Option<Instant>,
    next_tick: Option<Instant>,
    next_refresh: Option<Instant>,
    /// Deadline of the outstanding peer source query.
    query_deadline: Option<Instant>,
    /// Earliest time of the next peer source query.
    next_query: Option<Instant>,
    /// The selection error reported last, so that it is not repeated while it persists.
    reported: Option<Error>,
    /// The held relays as last announced with [`Event::RelaysChanged`].
    announced: Vec<PeerId>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl AutoRelay {
    /// Creates a stopped AutoRelay with the configured static relays as candidates.
    ///
    /// `rng` is its only source of randomness: a node passes a fork of its own.
    pub fn new(config: AutoRelayConfig, rng: Rng, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let statics = config.static_relays()?;
        let mut relay = Self {
            config,
            rng,
            entries: Vec::new(),
            next_seq: 0,
            selector: Selector::default(),
            running: false,
            reachability: Reachability::Unknown,
            boot_until: None,
            next_tick: None,
            next_refresh: None,
            query_deadline: None,
            next_query: None,
            reported: None,
            announced: Vec::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        for (peer, addrs) in statics {
            relay.add_candidate(now, peer, addrs, Source::Static);
        }
        Ok(relay)
    }

    // ----- getters -----

    /// The settings.
    pub fn config(&self) -> &AutoRelayConfig {
        &self.config
    }

    /// Whether [`start`](Self::start) was called and [`stop`](Self::stop) not since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Whether AutoRelay is running and, per [`Activation`], wants reservations now.
    pub fn is_active(&self) -> bool {
        self.running
            && (self.config.activation == Activation::Always
                || self.reachability == Reachability::Private)
    }

    /// The reachability last set.
    pub fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// The relays on which a reservation is held, in the order they were granted (the
    /// seed's `GetRelayPeers`).
    pub fn current_relays(&self) -> Vec<PeerId> {
        let mut held: Vec<&Entry> = self.entries.iter().filter(|e| e.is_held()).collect();
        held.sort_by_key(|e| match e.state {
            CandidateState::Held { since, .. } => (Some(since), e.seq),
            _ => (None, e.seq),
        });
        held.into_iter().map(|e| e.peer).collect()
    }

    /// The relays asked for a reservation that has not been granted yet.
    pub fn reserving_relays(&self) -> Vec<PeerId> {
        self.entries
            .iter()
            .filter(|e| e.is_reserving())
            .map(|e| e.peer)
            .collect()
    }

    /// Every known candidate with its state and score at `now`, in the order they became
    /// known.
    pub fn candidates(&self, now: Instant) -> Vec<CandidateInfo> {
        self.entries
            .iter()
            .map(|e| e.info(now, &self.config))
            .collect()
    }

    /// One candidate with its state and score at `now`.
    pub fn candidate(&self, now: Instant, peer: &PeerId) -> Option<CandidateInfo> {
        self.find(peer)
            .map(|i| self.entries[i].info(now, &self.config))
    }

    // ----- service commands -----

    /// Starts choosing relays and keeping reservations (the seed's `Start`). Does nothing
    /// if running. Reports [`Error::NoStaticRelays`] as an event when dynamic discovery is
    /// disabled and no static relay is known.
    pub fn start(&mut self, now: Instant) -> Result<(), Error> {
        if !self.config.enabled {
            return Err(Error::NotEnabled);
        }
        if self.running {
            return Ok(());
        }
        tracing::info!(
            policy = self.config.selection_policy.name(),
            "auto relay started"
        );
        self.running = true;
        if !self.config.enable_dynamic && !self.entries.iter().any(|e| e.source == Source::Static) {
            tracing::warn!("auto relay: no static relays and dynamic discovery disabled");
            self.events.push_back(Event::Error(Error::NoStaticRelays));
        }
        if self.is_active() {
            self.activate(now);
        }
        self.run(now);
        Ok(())
    }

    /// Stops: releases every reservation held or requested (the seed's `Stop`). The
    /// candidates and their history are kept; relays in use now are preferred on the next
    /// start.
    pub fn stop(&mut self, now: Instant) {
        if !self.running {
            return;
        }
        tracing::info!("auto relay stopped");
        self.release_all(now, RemovalReason::Stopped);
        self.running = false;
        self.flush_changes();
    }

    /// Adds a trusted relay, or its addresses if known (the seed's `AddStaticRelay`).
    /// A static relay is never forgotten; a dynamic candidate with the same id becomes
    /// static.
    pub fn add_static_relay(&mut self, now: Instant, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.add_candidate(now, peer, addrs, Source::Static);
        self.run(now);
    }

    /// Sets what the node believes about its reachability. Under
    /// [`Activation::WhenPrivate`], becoming [`Reachability::Private`] activates AutoRelay
    /// and anything else releases its reservations.
    pub fn set_reachability(&mut self, now: Instant, reachability: Reachability) {
        let was_active = self.is_active();
        self.reachability = reachability;
        match (was_active, self.is_active()) {
            (false, true) => self.activate(now),
            (true, false) => self.deactivate(now),
            _ => {}
        }
        self.run(now);
    }

    // ----- inputs -----

    /// The peer source answered [`Action::QueryPeerSource`]. Candidates beyond
    /// `max_candidates` are dropped; with `enable_dynamic` off, all are. A late answer
    /// is still used.
    pub fn peer_source_result(&mut self, now: Instant, candidates: Vec<Candidate>) {
        self.query_deadline = None;
        if self.config.enable_dynamic {
            for c in candidates {
                self.add_candidate(now, c.peer, c.addrs, Source::PeerSource);
            }
        }
        self.run(now);
    }

    /// `peer` announced the circuit relay v2 hop protocol (through identify) and is
    /// reachable at `addrs`. Report only peers reached directly, not through a relay.
    pub fn peer_supports_hop(&mut self, now: Instant, peer: PeerId, addrs: Vec<Multiaddr>) {
        if self.config.enable_dynamic {
            self.add_candidate(now, peer, addrs, Source::Hop);
        }
        self.run(now);
    }

    /// `relay` granted or renewed the reservation AutoRelay asked for, until `expires_at`
    /// (the node's `expire_unix` converted to an `Instant`). Reports about relays
    /// AutoRelay did not ask, or released, are ignored.
    pub fn reservation_accepted(&mut self, now: Instant, relay: PeerId, expires_at: Instant) {
        if let Some(i) = self.find(&relay) {
            self.accepted(now, i, expires_at);
        }
        self.run(now);
    }

    /// The reservation attempt on `relay` failed, or the held reservation was lost. The
    /// relay backs off and another candidate replaces it.
    pub fn reservation_failed(&mut self, now: Instant, relay: PeerId, reason: FailureReason) {
        if let Some(i) = self.find(&relay) {
            self.fail(now, i, reason);
        }
        self.run(now);
    }

    /// The last connection to `relay` closed: its reservation, held or requested, is lost.
    pub fn relay_disconnected(&mut self, now: Instant, relay: PeerId) {
        self.reservation_failed(now, relay, FailureReason::ConnectionClosed);
    }

    /// A round trip to `relay` took `rtt` (a ping). Feeds its score, and for a held relay
    /// counts as a heartbeat.
    pub fn relay_rtt(&mut self, now: Instant, relay: PeerId, rtt: Duration) {
        if let Some(i) = self.find(&relay) {
            let e = &mut self.entries[i];
            e.quality.record_rtt(rtt);
            if e.is_held() {
                e.last_alive = e.last_alive.max(now);
            }
        }
        self.run(now);
    }

    /// The timer set from [`poll_timeout`](Self::poll_timeout) fired. Also harmless at
    /// any other time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.run(now);
    }

    // ----- poll -----

    /// The next thing the node must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout); `None` while nothing is
    /// scheduled (stopped, or inactive).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_active() {
            return None;
        }
        let entry_deadlines = self.entries.iter().filter_map(|e| e.deadline(&self.config));
        [
            self.next_tick,
            self.next_refresh,
            self.query_deadline,
            self.next_query,
            self.boot_until,
        ]
        .into_iter()
        .flatten()
        .chain(entry_deadlines)
        .min()
    }

    // ----- helpers shared with `maintain` -----

    fn find(&self, peer: &PeerId) -> Option<usize> {
        self.entries.iter().position(|e| e.peer == *peer)
    }
}

/// `now + d`, or `now` in the unrepresentable case (settings are bounded by a year, so
/// only an absurd `now` gets there).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}
