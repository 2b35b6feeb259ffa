//! What [`AutoRelay`] does after every input: expire deadlines, age candidates, refresh,
//! fill free reservation slots, query the peer source, and report errors.
//!
//! One pass ([`AutoRelay::run`]) in this order:
//! 1. expire: a reservation attempt past `discovery_timeout` fails with `Timeout`; a held
//!    reservation past its expiry fails with `NotRenewed`, one silent past
//!    `heartbeat_timeout` with `HeartbeatTimeout`; a peer source query past
//!    `peer_source_timeout` is reported as `PeerSourceTimeout`; backoffs over by now are
//!    cleared (a backoff's end is a deadline of [`poll_timeout`](AutoRelay::poll_timeout),
//!    so a relay free again is chosen at once, not at the next detection tick);
//! 2. every `detection_interval`: forget stale dynamic candidates;
//! 3. fill: request reservations on chosen candidates until `max_relay_peers` are held
//!    or requested;
//! 4. every `refresh_interval`, if no slot is free: swap held relays for candidates
//!    better by `swap_margin` (a free slot is filled instead, so that a relay released
//!    by a swap is never requested again in the same pass);
//! 5. query the peer source if spare eligible candidates are fewer than `min_candidates`
//!    or than the free slots;
//! 6. report `AllRelaysFailed` or `RelaySelectionFailed` if fewer than
//!    `min_relay_peers` are held or requested (the latter not while the boot delay or a
//!    peer source query may still bring candidates);
//! 7. announce the held set with `RelaysChanged` if it changed.

use std::time::Instant;

use multiaddr::Multiaddr;

use super::candidate::{CandidateState, Entry, Source};
use super::event::{Action, Error, Event, FailureReason, RemovalReason};
use super::select::{eligible, unit};
use super::{AutoRelay, after};
use crate::identity::PeerId;

impl AutoRelay {
    /// Learns about a candidate, or refreshes what is known. Returns whether it is known
    /// afterwards (a new dynamic one is dropped when `max_candidates` are known).
    pub(super) fn add_candidate(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        source: Source,
    ) -> bool {
        if let Some(i) = self.find(&peer) {
            let e = &mut self.entries[i];
            e.merge_addrs(addrs);
            e.last_seen = e.last_seen.max(now);
            if source == Source::Static {
                e.source = Source::Static;
            }
            return true;
        }
        if source != Source::Static {
            let dynamic = self
                .entries
                .iter()
                .filter(|e| e.source != Source::Static)
                .count();
            if dynamic >= self.config.max_candidates {
                tracing::debug!(%peer, "auto relay: candidate dropped, table full");
                return false;
            }
        }
        tracing::debug!(%peer, ?source, "auto relay: new candidate");
        let jitter = unit(&mut self.rng);
        let mut entry = Entry::new(now, peer, source, self.next_seq, jitter);
        entry.merge_addrs(addrs);
        self.next_seq += 1;
        self.entries.push(entry);
        true
    }

    /// AutoRelay begins wanting reservations.
    pub(super) fn activate(&mut self, now: Instant) {
        self.boot_until = Some(after(now, self.config.boot_delay));
        self.next_tick = Some(now);
        self.next_refresh = Some(after(now, self.config.refresh_interval));
        self.next_query = None;
        self.reported = None;
    }

    /// AutoRelay stops wanting reservations: the node became publicly reachable.
    pub(super) fn deactivate(&mut self, now: Instant) {
        tracing::info!("auto relay deactivated: node is reachable");
        self.release_all(now, RemovalReason::Deactivated);
        self.boot_until = None;
    }

    /// Releases every relay held or requested; they become sticky.
    pub(super) fn release_all(&mut self, now: Instant, reason: RemovalReason) {
        for i in 0..self.entries.len() {
            if !self.entries[i].is_idle() {
                self.release(now, i, reason);
            }
        }
        self.next_tick = None;
        self.next_refresh = None;
        self.query_deadline = None;
        self.next_query = None;
    }

    /// Releases the relay at `i` by our own choice.
    fn release(&mut self, now: Instant, i: usize, reason: RemovalReason) {
        let e = &mut self.entries[i];
        let relay = e.peer;
        if e.is_held() {
            e.quality.end_session(now, false, &self.config.score);
            self.events.push_back(Event::RelayRemoved { relay, reason });
        }
        e.state = CandidateState::Idle;
        e.sticky = reason != RemovalReason::Swapped;
        tracing::info!(%relay, ?reason, "auto relay: releasing relay");
        self.actions.push_back(Action::Release { relay });
    }

    /// The relay at `i` granted or renewed a reservation.
    pub(super) fn accepted(&mut self, now: Instant, i: usize, expires_at: Instant) {
        let e = &mut self.entries[i];
        match e.state {
            CandidateState::Idle => {}
            CandidateState::Held { since, .. } => {
                e.state = CandidateState::Held { since, expires_at };
                e.last_alive = e.last_alive.max(now);
            }
            CandidateState::Reserving { .. } => {
                e.state = CandidateState::Held {
                    since: now,
                    expires_at,
                };
                e.last_alive = now;
                e.backoff.reset();
                e.quality.record_success(now, &self.config.score);
                let relay = e.peer;
                tracing::info!(%relay, "auto relay: reservation held");
                self.events.push_back(Event::RelayAdded { relay });
                self.reported = None;
            }
        }
    }

    /// The relay at `i` failed; if it was in use, it backs off.
    pub(super) fn fail(&mut self, now: Instant, i: usize, reason: FailureReason) {
        let e = &mut self.entries[i];
        let relay = e.peer;
        match e.state {
            CandidateState::Idle => return,
            CandidateState::Held { .. } => {
                e.quality.end_session(now, true, &self.config.score);
                self.events.push_back(Event::RelayRemoved {
                    relay,
                    reason: RemovalReason::Failed(reason),
                });
            }
            CandidateState::Reserving { .. } => e.quality.record_failure(now, &self.config.score),
        }
        e.state = CandidateState::Idle;
        e.sticky = false;
        let wait = e.backoff.fail(now, &self.config.backoff);
        tracing::warn!(%relay, ?reason, backoff = ?wait, "auto relay: relay failed");
        if !reason.node_dropped_it() {
            self.actions.push_back(Action::Release { relay });
        }
    }

    /// One pass over everything due at `now`; see the module documentation.
    pub(super) fn run(&mut self, now: Instant) {
        if self.is_active() {
            self.expire(now);
            // Backoffs over by now are no deadline any more (see `Entry::deadline`).
            for e in &mut self.entries {
                e.backoff.expire(now);
            }
            if self.next_tick.is_none_or(|t| t <= now) {
                self.entries.retain(|e| !e.is_stale(now, &self.config));
                self.next_tick = Some(after(now, self.config.detection_interval));
            }
            if self.boot_until.is_some_and(|t| t <= now) {
                self.boot_until = None;
            }
            self.fill(now);
            if self.next_refresh.is_some_and(|t| t <= now) {
                self.next_refresh = Some(after(now, self.config.refresh_interval));
                self.refresh(now);
            }
            self.query_peer_source(now);
            self.check_errors(now);
        }
        self.flush_changes();
    }

    fn expire(&mut self, now: Instant) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            let reason = match e.state {
                CandidateState::Idle => None,
                CandidateState::Reserving { deadline } => {
                    (deadline <= now).then_some(FailureReason::Timeout)
                }
                CandidateState::Held { expires_at, .. } => {
                    let silent = self
                        .config
                        .heartbeat_timeout
                        .is_some_and(|t| after(e.last_alive, t) <= now);
                    if expires_at <= now {
                        Some(FailureReason::NotRenewed)
                    } else if silent {
                        Some(FailureReason::HeartbeatTimeout)
                    } else {
                        None
                    }
                }
            };
            if let Some(reason) = reason {
                self.fail(now, i, reason);
            }
        }
        if self.query_deadline.is_some_and(|t| t <= now) {
            tracing::warn!("auto relay: peer source timed out");
            self.query_deadline = None;
            self.events
                .push_back(Event::Error(Error::PeerSourceTimeout));
        }
    }

    /// Swaps held relays for candidates better by `swap_margin`, worst held first, when
    /// every slot is taken.
    fn refresh(&mut self, now: Instant) {
        if self.in_use() < self.config.max_relay_peers {
            return;
        }
        let mut held: Vec<(usize, f64)> = (0..self.entries.len())
            .filter(|&i| self.entries[i].is_held())
            .map(|i| (i, self.score(now, i)))
            .collect();
        held.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (h, held_score) in held {
            let better: Vec<usize> = (0..self.entries.len())
                .filter(|&i| {
                    let e = &self.entries[i];
                    eligible(e, now, &self.config, false)
                        && self.score(now, i) >= held_score + self.config.swap_margin
                })
                .collect();
            let pick =
                self.selector
                    .choose(&self.entries, &better, 1, now, &self.config, &mut self.rng);
            let Some(&new) = pick.first() else {
                continue;
            };
            tracing::info!(
                old = %self.entries[h].peer,
                new = %self.entries[new].peer,
                "auto relay: swapping for a better relay"
            );
            self.release(now, h, RemovalReason::Swapped);
            self.reserve(now, new);
        }
    }

    fn score(&self, now: Instant, i: usize) -> f64 {
        self.entries[i].quality.score(now, &self.config.score)
    }

    /// Whether only static relays may be chosen: with dynamic discovery on, during the
    /// boot delay, with no relay held and fewer than `min_candidates` eligible.
    fn booting(&self, now: Instant) -> bool {
        self.config.enable_dynamic
            && self.boot_until.is_some_and(|t| now < t)
            && !self.entries.iter().any(Entry::is_held)
            && self.count_eligible(now) < self.config.min_candidates
    }

    fn count_eligible(&self, now: Instant) -> usize {
        self.entries
            .iter()
            .filter(|e| eligible(e, now, &self.config, false))
            .count()
    }

    fn in_use(&self) -> usize {
        self.entries.iter().filter(|e| !e.is_idle()).count()
    }

    /// Requests reservations on chosen candidates for every free slot.
    fn fill(&mut self, now: Instant) {
        let free = self.config.max_relay_peers.saturating_sub(self.in_use());
        if free == 0 {
            return;
        }
        let static_only = self.booting(now);
        let candidates: Vec<usize> = (0..self.entries.len())
            .filter(|&i| eligible(&self.entries[i], now, &self.config, static_only))
            .collect();
        let chosen = self.selector.choose(
            &self.entries,
            &candidates,
            free,
            now,
            &self.config,
            &mut self.rng,
        );
        for i in chosen {
            self.reserve(now, i);
        }
    }

    fn reserve(&mut self, now: Instant, i: usize) {
        let e = &mut self.entries[i];
        e.state = CandidateState::Reserving {
            deadline: after(now, self.config.discovery_timeout),
        };
        e.sticky = false;
        tracing::debug!(relay = %e.peer, "auto relay: requesting reservation");
        self.actions.push_back(Action::Reserve {
            relay: e.peer,
            addrs: e.addrs.clone(),
        });
        self.reported = None;
    }

    fn query_peer_source(&mut self, now: Instant) {
        if self.next_query.is_some_and(|t| t <= now) {
            self.next_query = None;
        }
        if !self.config.enable_dynamic || self.query_deadline.is_some() || self.next_query.is_some()
        {
            return;
        }
        let spare = self.count_eligible(now);
        let free = self.config.max_relay_peers.saturating_sub(self.in_use());
        if spare >= self.config.min_candidates && spare >= free {
            return;
        }
        let dynamic = self
            .entries
            .iter()
            .filter(|e| e.source != Source::Static)
            .count();
        let limit = self.config.max_candidates.saturating_sub(dynamic);
        if limit == 0 {
            return;
        }
        tracing::debug!(limit, "auto relay: querying the peer source");
        self.actions.push_back(Action::QueryPeerSource { limit });
        self.query_deadline = Some(after(now, self.config.peer_source_timeout));
        self.next_query = Some(after(now, self.config.peer_source_min_interval));
    }

    fn check_errors(&mut self, now: Instant) {
        let in_use = self.in_use();
        if in_use >= self.config.min_relay_peers {
            return;
        }
        // During the boot delay, candidates held back or not found yet are no failure.
        let waiting = self.booting(now) || self.query_deadline.is_some();
        let mut idle = self.entries.iter().filter(|e| e.is_idle()).peekable();
        let has_idle = idle.peek().is_some();
        let all_backing_off = idle.all(|e| e.backoff.active(now));
        let error = if in_use == 0 && has_idle && all_backing_off {
            Error::AllRelaysFailed
        } else if waiting {
            return;
        } else if !all_backing_off {
            // Some idle candidate is free to choose, yet fill chose none: it fails the
            // threshold.
            Error::RelaySelectionFailed
        } else if self.entries.is_empty() && !self.config.enable_dynamic {
            // Reported as NoStaticRelays at start.
            return;
        } else {
            Error::RelaySelectionFailed
        };
        if self.reported != Some(error) {
            tracing::warn!(%error, "auto relay");
            self.reported = Some(error);
            self.events.push_back(Event::Error(error));
        }
    }

    /// Announces the held set if it changed since last announced.
    pub(super) fn flush_changes(&mut self) {
        let current = self.current_relays();
        if current != self.announced {
            self.announced.clone_from(&current);
            self.events.push_back(Event::RelaysChanged { current });
        }
    }
}
