//! Relay candidates: where each came from, what state it is in, its backoff and quality.

use std::time::{Duration, Instant};

use multiaddr::Multiaddr;

use super::config::{AutoRelayConfig, BackoffConfig};
use super::score::Quality;
use crate::identity::PeerId;

/// Most addresses remembered per candidate; further ones are ignored.
pub const MAX_ADDRS: usize = 8;

/// A peer that may serve as a relay, as a peer source reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The relay.
    pub peer: PeerId,
    /// Addresses to reach it; may be empty if the node is connected to it already.
    pub addrs: Vec<Multiaddr>,
}

/// How AutoRelay learned about a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Configured, or added with [`AutoRelay::add_static_relay`](super::AutoRelay): never
    /// forgotten.
    Static,
    /// Returned by the peer source.
    PeerSource,
    /// Seen to support the hop protocol (through identify).
    Hop,
}

/// What AutoRelay is doing with a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandidateState {
    /// Not in use; it may be chosen unless it is backing off.
    Idle,
    /// A reservation was requested with [`Action::Reserve`](super::Action).
    Reserving {
        /// When the attempt counts as failed.
        deadline: Instant,
    },
    /// A reservation is held.
    Held {
        /// When it was granted.
        since: Instant,
        /// When it ends unless renewed.
        expires_at: Instant,
    },
}

/// A candidate as [`AutoRelay::candidates`](super::AutoRelay::candidates) reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateInfo {
    /// The relay.
    pub peer: PeerId,
    /// Its addresses.
    pub addrs: Vec<Multiaddr>,
    /// How it became known.
    pub source: Source,
    /// What AutoRelay does with it.
    pub state: CandidateState,
    /// Its quality score now, in `[0, 1]`.
    pub score: f64,
    /// Its smoothed RTT, if measured.
    pub rtt: Option<Duration>,
    /// Until when it may not be chosen, after a failure.
    pub backoff_until: Option<Instant>,
    /// Whether it was in use when AutoRelay last stopped or deactivated, which makes it
    /// preferred when choosing again.
    pub sticky: bool,
}

/// Exponential backoff of one candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    consecutive_failures: u32,
    until: Option<Instant>,
}

impl Backoff {
    /// Whether the candidate may not be chosen at `now`.
    pub(crate) fn active(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// When the backoff ends, if one was set and not yet [`expire`](Self::expire)d.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Forgets the end of a backoff that is over at `now`, so that it is no deadline any
    /// more; the count of consecutive failures stays.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.until.is_some_and(|u| u <= now) {
            self.until = None;
        }
    }

    /// Records a failure at `now` and returns the wait it imposes.
    pub(crate) fn fail(&mut self, now: Instant, config: &BackoffConfig) -> Duration {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let doublings = (self.consecutive_failures - 1).min(31);
        let wait = config
            .initial
            .checked_mul(1 << doublings)
            .map_or(config.max, |w| w.min(config.max));
        self.until = Some(super::after(now, wait));
        wait
    }

    /// Forgets past failures after a granted reservation.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// One candidate and everything AutoRelay knows about it.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) peer: PeerId,
    pub(crate) addrs: Vec<Multiaddr>,
    pub(crate) source: Source,
    /// Order in which candidates became known; round robin follows it.
    pub(crate) seq: u64,
    /// When a source last reported it; dynamic candidates age from here.
    pub(crate) last_seen: Instant,
    /// Last sign of life while held: the grant or an RTT sample.
    pub(crate) last_alive: Instant,
    pub(crate) state: CandidateState,
    pub(crate) backoff: Backoff,
    pub(crate) quality: Quality,
    /// This candidate's offset in `[0, 1)` for breaking near-ties under `quality`.
    pub(crate) jitter: f64,
    pub(crate) sticky: bool,
}

impl Entry {
    pub(crate) fn new(now: Instant, peer: PeerId, source: Source, seq: u64, jitter: f64) -> Self {
        Self {
            peer,
            addrs: Vec::new(),
            source,
            seq,
            last_seen: now,
            last_alive: now,
            state: CandidateState::Idle,
            backoff: Backoff::default(),
            quality: Quality::default(),
            jitter,
            sticky: false,
        }
    }

    /// Adds addresses not yet known, up to [`MAX_ADDRS`].
    pub(crate) fn merge_addrs(&mut self, addrs: impl IntoIterator<Item = Multiaddr>) {
        for addr in addrs {
            if self.addrs.len() >= MAX_ADDRS {
                break;
            }
            if !self.addrs.contains(&addr) {
                self.addrs.push(addr);
            }
        }
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.state == CandidateState::Idle
    }

    pub(crate) fn is_held(&self) -> bool {
        matches!(self.state, CandidateState::Held { .. })
    }

    pub(crate) fn is_reserving(&self) -> bool {
        matches!(self.state, CandidateState::Reserving { .. })
    }

    /// Whether a dynamic candidate is old, unused and free of backoff, so it may go.
    pub(crate) fn is_stale(&self, now: Instant, config: &AutoRelayConfig) -> bool {
        self.source != Source::Static
            && self.is_idle()
            && !self.backoff.active(now)
            && !self.sticky
            && now.saturating_duration_since(self.last_seen) >= config.max_candidate_age
    }

    /// The earliest deadline of this candidate's state at which AutoRelay must act. For an
    /// idle candidate that is the end of its backoff: it may be chosen again from then on,
    /// and must be at once if a slot is free, not at the next detection tick.
    pub(crate) fn deadline(&self, config: &AutoRelayConfig) -> Option<Instant> {
        match self.state {
            CandidateState::Idle => self.backoff.until(),
            CandidateState::Reserving { deadline } => Some(deadline),
            CandidateState::Held { expires_at, .. } => {
                let heartbeat = config
                    .heartbeat_timeout
                    .map(|t| super::after(self.last_alive, t));
                Some(heartbeat.map_or(expires_at, |h| h.min(expires_at)))
            }
        }
    }

    pub(crate) fn info(&self, now: Instant, config: &AutoRelayConfig) -> CandidateInfo {
        CandidateInfo {
            peer: self.peer,
            addrs: self.addrs.clone(),
            source: self.source,
            state: self.state,
            score: self.quality.score(now, &config.score),
            rtt: self.quality.rtt(),
            backoff_until: self.backoff.until().filter(|&u| now < u),
            sticky: self.sticky,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let now = crate::test_now();
        let config = BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(60),
        };
        let mut b = Backoff::default();
        assert!(!b.active(now));
        let waits: Vec<u64> = (0..6).map(|_| b.fail(now, &config).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60, 60]);
        assert!(b.active(now + Duration::from_secs(59)));
        assert!(!b.active(now + Duration::from_secs(60)));
        b.reset();
        assert_eq!(b.fail(now, &config), Duration::from_secs(10));
    }

    #[test]
    fn backoff_survives_many_failures() {
        let now = crate::test_now();
        let config = BackoffConfig::default();
        let mut b = Backoff::default();
        for _ in 0..100 {
            assert!(b.fail(now, &config) <= config.max);
        }
    }

    #[test]
    fn addresses_are_merged_and_bounded() {
        let now = crate::test_now();
        let peer = crate::identity::keypair_from_seed(1).public().to_peer_id();
        let mut e = Entry::new(now, peer, Source::Hop, 0, 0.0);
        let addr = |p: u16| -> Multiaddr { format!("/ip4/10.0.0.1/tcp/{p}").parse().unwrap() };
        e.merge_addrs([addr(1), addr(2), addr(1)]);
        assert_eq!(e.addrs, vec![addr(1), addr(2)]);
        e.merge_addrs((0..20).map(addr));
        assert_eq!(e.addrs.len(), MAX_ADDRS);
    }
}
