//! Scenarios: AutoRelay driven through its public API with explicit time, as a node would.

use std::time::{Duration, Instant};

use multiaddr::Multiaddr;

use super::*;
use crate::identity::{PeerId, keypair_from_seed};

const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn peer(n: u8) -> PeerId {
    keypair_from_seed(n).public().to_peer_id()
}

pub(super) fn addr(n: u8) -> Multiaddr {
    format!("/ip4/10.0.0.{n}/tcp/4001/p2p/{}", peer(n))
        .parse()
        .unwrap()
}

fn candidate(n: u8) -> Candidate {
    Candidate {
        peer: peer(n),
        addrs: vec![addr(n)],
    }
}

/// A config that runs at once: always active, static relays `statics`, no dynamic.
fn static_config(statics: &[u8], max: usize) -> AutoRelayConfig {
    AutoRelayConfig {
        enabled: true,
        enable_dynamic: false,
        activation: Activation::Always,
        static_relay_peers: statics.iter().map(|&n| addr(n)).collect(),
        max_relay_peers: max,
        ..AutoRelayConfig::default()
    }
}

fn dynamic_config(max: usize) -> AutoRelayConfig {
    AutoRelayConfig {
        enabled: true,
        activation: Activation::Always,
        max_relay_peers: max,
        ..AutoRelayConfig::default()
    }
}

/// An AutoRelay, the time, and what it emitted since last drained.
struct Harness {
    ar: AutoRelay,
    now: Instant,
    actions: Vec<Action>,
    events: Vec<Event>,
}

impl Harness {
    fn new(config: AutoRelayConfig, seed: u64) -> Self {
        let now = crate::test_now();
        let ar = AutoRelay::new(config, Rng::from_u64(seed), now).unwrap();
        Self {
            ar,
            now,
            actions: Vec::new(),
            events: Vec::new(),
        }
    }

    fn started(config: AutoRelayConfig, seed: u64) -> Self {
        let mut h = Self::new(config, seed);
        h.ar.start(h.now).unwrap();
        h.drain();
        h
    }

    fn drain(&mut self) {
        while let Some(a) = self.ar.poll_action() {
            self.actions.push(a);
        }
        while let Some(e) = self.ar.poll_event() {
            self.events.push(e);
        }
    }

    /// Takes the relays asked for since last called.
    fn take_reserves(&mut self) -> Vec<PeerId> {
        self.drain();
        let reserves = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Reserve { relay, .. } => Some(*relay),
                _ => None,
            })
            .collect();
        self.actions
            .retain(|a| !matches!(a, Action::Reserve { .. }));
        reserves
    }

    fn take_releases(&mut self) -> Vec<PeerId> {
        self.drain();
        let releases = self
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Release { relay } => Some(*relay),
                _ => None,
            })
            .collect();
        self.actions
            .retain(|a| !matches!(a, Action::Release { .. }));
        releases
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    fn errors(&mut self) -> Vec<Error> {
        self.take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Error(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn accept(&mut self, relay: PeerId) {
        self.ar
            .reservation_accepted(self.now, relay, self.now + 24 * HOUR);
        self.drain();
    }

    /// Grants every outstanding request.
    fn accept_all(&mut self) -> Vec<PeerId> {
        let reserves = self.take_reserves();
        for &r in &reserves {
            self.accept(r);
        }
        reserves
    }

    /// Moves time forward by `d`, firing every timer on the way.
    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.ar.poll_timeout() {
            if t > target {
                break;
            }
            assert!(t >= self.now, "timer in the past");
            self.now = t;
            self.ar.handle_timeout(t);
            self.drain();
        }
        self.now = target;
    }

    /// Moves time until the next `Reserve` and returns when it came, if within `limit`.
    fn time_to_reserve(&mut self, limit: Duration) -> Option<(Duration, Vec<PeerId>)> {
        let from = self.now;
        let target = self.now + limit;
        loop {
            let reserves = self.take_reserves();
            if !reserves.is_empty() {
                return Some((self.now - from, reserves));
            }
            let t = self.ar.poll_timeout()?;
            if t > target {
                return None;
            }
            self.now = t;
            self.ar.handle_timeout(t);
        }
    }
}

#[test]
fn start_needs_enabled() {
    let mut h = Harness::new(AutoRelayConfig::default(), 1);
    assert_eq!(h.ar.start(h.now), Err(Error::NotEnabled));
    assert!(!h.ar.is_running());
}

#[test]
fn static_relays_are_reserved_at_start() {
    let mut h = Harness::new(static_config(&[1, 2, 3], 2), 1);
    h.ar.start(h.now).unwrap();
    let chosen = h.accept_all();
    assert_eq!(chosen.len(), 2);
    let events = h.take_events();
    assert_eq!(
        events.last(),
        Some(&Event::RelaysChanged {
            current: chosen.clone()
        })
    );
    assert!(events.contains(&Event::RelayAdded { relay: chosen[0] }));
    assert_eq!(h.ar.current_relays(), chosen);
    // The Reserve carries the configured address.
    let mut h = Harness::new(static_config(&[7], 1), 1);
    h.ar.start(h.now).unwrap();
    assert_eq!(
        h.ar.poll_action(),
        Some(Action::Reserve {
            relay: peer(7),
            addrs: vec![addr(7)]
        })
    );
}

#[test]
fn failover_reserves_the_third_relay_within_one_detection_interval() {
    let mut h = Harness::started(static_config(&[1, 2, 3], 2), 4);
    let held = h.accept_all();
    assert_eq!(held.len(), 2);
    let spare = [peer(1), peer(2), peer(3)]
        .into_iter()
        .find(|p| !held.contains(p))
        .unwrap();
    h.take_events();

    // The relay dies: its connection closes.
    h.ar.relay_disconnected(h.now, held[0]);
    let (took, reserved) = h.time_to_reserve(h.ar.config().detection_interval).unwrap();
    assert!(took <= h.ar.config().detection_interval);
    assert_eq!(reserved, [spare]);
    // The node dropped the reservation itself: no Release needed.
    assert!(h.take_releases().is_empty());
    h.accept(spare);
    let events = h.take_events();
    assert!(events.contains(&Event::RelayRemoved {
        relay: held[0],
        reason: RemovalReason::Failed(FailureReason::ConnectionClosed)
    }));
    assert_eq!(
        events.last(),
        Some(&Event::RelaysChanged {
            current: vec![held[1], spare]
        })
    );
}

#[test]
fn failover_on_heartbeat_timeout() {
    let config = AutoRelayConfig {
        heartbeat_timeout: Some(30 * SEC),
        ..static_config(&[1, 2, 3], 2)
    };
    let mut h = Harness::started(config, 4);
    let held = h.accept_all();
    let spare = [peer(1), peer(2), peer(3)]
        .into_iter()
        .find(|p| !held.contains(p))
        .unwrap();
    // Only held[1] keeps answering pings.
    for _ in 0..3 {
        h.advance(10 * SEC);
        h.ar.relay_rtt(h.now, held[1], Duration::from_millis(40));
    }
    h.advance(SEC);
    assert_eq!(h.take_releases(), [held[0]]);
    assert_eq!(h.take_reserves(), [spare]);
    assert_eq!(h.ar.current_relays(), [held[1]]);
}

#[test]
fn backoff_prevents_immediate_retry_and_grows() {
    let mut h = Harness::started(static_config(&[1], 1), 1);
    assert_eq!(h.take_reserves(), [peer(1)]);
    h.ar.reservation_failed(h.now, peer(1), FailureReason::Refused);
    assert!(h.take_reserves().is_empty());
    let backoff = h.ar.config().backoff.initial;
    h.advance(backoff - SEC);
    assert!(h.take_reserves().is_empty(), "retried during backoff");
    let interval = h.ar.config().detection_interval;
    let (_, again) = h.time_to_reserve(SEC + interval).unwrap();
    assert_eq!(again, [peer(1)]);
    // A second failure waits twice as long.
    h.ar.reservation_failed(h.now, peer(1), FailureReason::Unreachable);
    h.advance(2 * backoff - SEC);
    assert!(h.take_reserves().is_empty());
    assert!(h.time_to_reserve(SEC + interval).is_some());
    // Success resets the backoff.
    h.accept(peer(1));
    h.ar.relay_disconnected(h.now, peer(1));
    let info = h.ar.candidate(h.now, &peer(1)).unwrap();
    assert_eq!(info.backoff_until, Some(h.now + backoff));
}

#[test]
fn slow_attempt_fails_after_discovery_timeout() {
    let mut h = Harness::started(static_config(&[1, 2], 1), 1);
    let first = h.take_reserves();
    assert_eq!(first.len(), 1);
    h.advance(h.ar.config().discovery_timeout);
    assert_eq!(h.take_releases(), first);
    let second = h.take_reserves();
    assert_eq!(second.len(), 1);
    assert_ne!(second, first);
    // A late grant for the released attempt is ignored.
    h.accept(first[0]);
    assert!(h.ar.current_relays().is_empty());
}

#[test]
fn unrenewed_reservation_is_lost_and_renewal_extends() {
    let mut h = Harness::started(static_config(&[1, 2], 1), 1);
    let r = h.take_reserves()[0];
    h.ar.reservation_accepted(h.now, r, h.now + 60 * SEC);
    h.advance(50 * SEC);
    h.ar.reservation_accepted(h.now, r, h.now + 60 * SEC);
    h.advance(50 * SEC);
    assert_eq!(h.ar.current_relays(), [r]);
    h.advance(10 * SEC);
    assert!(h.take_events().contains(&Event::RelayRemoved {
        relay: r,
        reason: RemovalReason::Failed(FailureReason::NotRenewed)
    }));
    assert_eq!(h.take_releases(), [r]);
    assert_eq!(h.take_reserves().len(), 1);
}

#[test]
fn refresh_keeps_the_current_relay_unless_another_is_better_by_the_margin() {
    let config = AutoRelayConfig {
        refresh_interval: 30 * 60 * SEC,
        ..static_config(&[1, 2, 3], 1)
    };
    let mut h = Harness::started(config, 2);
    let current = h.accept_all()[0];
    let other = [peer(1), peer(2), peer(3)]
        .into_iter()
        .find(|&p| p != current)
        .unwrap();
    h.ar.relay_rtt(h.now, current, Duration::from_millis(100));
    // Another relay is faster, but not by the margin.
    h.ar.relay_rtt(h.now, other, Duration::from_millis(1));
    h.advance(30 * 60 * SEC);
    assert!(h.take_releases().is_empty());
    assert_eq!(h.ar.current_relays(), [current]);
    let margin = h.ar.config().swap_margin;
    let score = |h: &Harness, p| h.ar.candidate(h.now, &p).unwrap().score;
    assert!(score(&h, other) > score(&h, current));
    assert!(score(&h, other) < score(&h, current) + margin);

    // The current relay slows down a lot: at the next refresh, and not before, it goes.
    for _ in 0..20 {
        h.ar.relay_rtt(h.now, current, Duration::from_millis(900));
    }
    assert!(score(&h, other) >= score(&h, current) + margin);
    h.advance(29 * 60 * SEC);
    assert!(h.take_releases().is_empty(), "swapped before the refresh");
    h.advance(60 * SEC);
    assert_eq!(h.take_releases(), [current]);
    assert_eq!(h.take_reserves(), [other]);
    assert!(h.take_events().contains(&Event::RelayRemoved {
        relay: current,
        reason: RemovalReason::Swapped
    }));
}

#[test]
fn quality_policy_prefers_measured_fast_relays() {
    let mut h = Harness::new(static_config(&[1, 2, 3, 4], 2), 3);
    for (n, ms) in [(1, 300), (2, 20), (3, 250), (4, 40)] {
        h.ar.relay_rtt(h.now, peer(n), Duration::from_millis(ms));
    }
    h.ar.start(h.now).unwrap();
    let mut chosen = h.take_reserves();
    chosen.sort();
    let mut best = vec![peer(2), peer(4)];
    best.sort();
    assert_eq!(chosen, best);
}

#[test]
fn round_robin_rotates_through_failures() {
    let config = AutoRelayConfig {
        selection_policy: SelectionPolicy::RoundRobin,
        ..static_config(&[1, 2, 3], 1)
    };
    let mut h = Harness::started(config, 1);
    let mut order = h.take_reserves();
    for _ in 0..2 {
        let last = *order.last().unwrap();
        h.ar.reservation_failed(h.now, last, FailureReason::Refused);
        order.extend(h.take_reserves());
    }
    assert_eq!(order, [peer(1), peer(2), peer(3)]);
}

#[test]
fn the_same_seed_chooses_the_same_relays() {
    let run = |seed, policy| {
        let config = AutoRelayConfig {
            selection_policy: policy,
            ..dynamic_config(3)
        };
        let mut h = Harness::started(config, seed);
        h.ar.peer_source_result(h.now, (1..=12).map(candidate).collect());
        let mut chosen = h.take_reserves();
        h.ar.reservation_failed(h.now, chosen[0], FailureReason::Refused);
        chosen.extend(h.take_reserves());
        chosen
    };
    for policy in [SelectionPolicy::Quality, SelectionPolicy::Random] {
        assert_eq!(run(7, policy), run(7, policy));
        let distinct: std::collections::BTreeSet<_> =
            (0..8).map(|s| format!("{:?}", run(s, policy))).collect();
        assert!(distinct.len() > 1, "{policy:?} ignores the seed");
    }
}

#[test]
fn clients_spread_over_equal_relays() {
    // Many clients, each with its own seed, see the same three unmeasured relays.
    let mut counts = [0u32; 3];
    for seed in 0..300 {
        let mut h = Harness::started(static_config(&[1, 2, 3], 1), seed);
        let first = h.take_reserves()[0];
        let i = [peer(1), peer(2), peer(3)]
            .iter()
            .position(|&p| p == first)
            .unwrap();
        counts[i] += 1;
    }
    assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
}

#[test]
fn activation_follows_reachability_and_keeps_relays_sticky() {
    let config = AutoRelayConfig {
        activation: Activation::WhenPrivate,
        ..static_config(&[1, 2, 3, 4, 5], 2)
    };
    let mut h = Harness::started(config, 5);
    assert!(h.take_reserves().is_empty());
    assert_eq!(h.ar.poll_timeout(), None);
    h.ar.set_reachability(h.now, Reachability::Private);
    let held = h.accept_all();
    assert_eq!(held.len(), 2);
    h.take_events();

    h.ar.set_reachability(h.now, Reachability::Public);
    let mut released = h.take_releases();
    released.sort();
    let mut expected = held.clone();
    expected.sort();
    assert_eq!(released, expected);
    assert!(
        h.take_events()
            .contains(&Event::RelaysChanged { current: vec![] })
    );
    assert_eq!(h.ar.poll_timeout(), None);

    // Private again: the same relays come back, whatever the policy would say.
    h.advance(HOUR);
    h.ar.set_reachability(h.now, Reachability::Private);
    let mut again = h.take_reserves();
    again.sort();
    assert_eq!(again, expected);
}

#[test]
fn stop_releases_everything_and_start_resumes_with_the_same_relays() {
    let mut h = Harness::started(static_config(&[1, 2, 3, 4], 2), 8);
    let held = h.accept_all();
    h.take_events();
    h.ar.stop(h.now);
    assert_eq!(h.take_releases().len(), 2);
    let events = h.take_events();
    assert!(events.contains(&Event::RelayRemoved {
        relay: held[0],
        reason: RemovalReason::Stopped
    }));
    assert_eq!(
        events.last(),
        Some(&Event::RelaysChanged { current: vec![] })
    );
    assert!(!h.ar.is_running() && h.ar.poll_timeout().is_none());
    // Late reports are ignored.
    h.accept(held[0]);
    assert!(h.ar.current_relays().is_empty());
    h.ar.start(h.now).unwrap();
    let mut again = h.take_reserves();
    let mut held = held;
    again.sort();
    held.sort();
    assert_eq!(again, held);
}

#[test]
fn add_static_relay_is_used_at_once() {
    let mut h = Harness::started(static_config(&[], 2), 1);
    assert_eq!(h.errors(), [Error::NoStaticRelays]);
    h.ar.add_static_relay(h.now, peer(9), vec![addr(9)]);
    assert_eq!(h.take_reserves(), [peer(9)]);
    let info = h.ar.candidate(h.now, &peer(9)).unwrap();
    assert_eq!(info.source, Source::Static);
    assert!(matches!(info.state, CandidateState::Reserving { .. }));
}

#[test]
fn no_static_relays_is_reported_at_start() {
    let mut h = Harness::new(static_config(&[], 2), 1);
    h.ar.start(h.now).unwrap();
    assert_eq!(h.errors(), [Error::NoStaticRelays]);
    h.advance(HOUR);
    assert_eq!(h.errors(), []);
}

#[test]
fn peer_source_is_queried_and_its_candidates_used() {
    let mut h = Harness::new(dynamic_config(3), 1);
    h.ar.start(h.now).unwrap();
    h.drain();
    assert_eq!(h.actions, [Action::QueryPeerSource { limit: 20 }]);
    h.actions.clear();
    h.ar.peer_source_result(h.now, (1..=5).map(candidate).collect());
    assert_eq!(h.take_reserves().len(), 3);
    assert_eq!(h.ar.candidates(h.now).len(), 5);
    assert!(h.errors().is_empty());
}

#[test]
fn peer_source_timeout_is_reported_and_retried() {
    let mut h = Harness::started(dynamic_config(2), 1);
    h.actions.clear();
    let timeout = h.ar.config().peer_source_timeout;
    h.advance(timeout - SEC);
    assert!(h.errors().is_empty());
    h.advance(SEC);
    assert_eq!(h.errors(), [Error::PeerSourceTimeout]);
    h.advance(h.ar.config().peer_source_min_interval - timeout);
    assert_eq!(h.actions, [Action::QueryPeerSource { limit: 20 }]);
}

#[test]
fn boot_delay_waits_for_enough_dynamic_candidates() {
    let mut h = Harness::started(dynamic_config(2), 1);
    h.ar.peer_source_result(h.now, vec![candidate(1), candidate(2)]);
    assert!(h.take_reserves().is_empty(), "chose before min_candidates");
    assert!(h.errors().is_empty(), "waiting is not an error");
    h.ar.peer_supports_hop(h.now, peer(3), vec![addr(3)]);
    assert!(h.take_reserves().is_empty());
    h.ar.peer_supports_hop(h.now, peer(4), vec![addr(4)]);
    assert_eq!(h.take_reserves().len(), 2);

    // With too few candidates, the boot delay ends the wait.
    let mut h = Harness::started(dynamic_config(2), 1);
    h.ar.peer_source_result(h.now, vec![candidate(1)]);
    let boot = h.ar.config().boot_delay;
    let (took, chosen) = h.time_to_reserve(boot + SEC).unwrap();
    assert_eq!(took, boot);
    assert_eq!(chosen, [peer(1)]);
}

#[test]
fn relay_selection_failed_when_no_candidate_passes_the_threshold() {
    // Unmeasured relays score 0.9: below this threshold.
    let config = AutoRelayConfig {
        quality_threshold: 0.92,
        boot_delay: Duration::ZERO,
        ..dynamic_config(2)
    };
    let mut h = Harness::started(config, 1);
    assert_eq!(h.errors(), [], "the peer source may still answer");
    h.ar.peer_source_result(h.now, vec![candidate(1), candidate(2)]);
    assert_eq!(h.errors(), [Error::RelaySelectionFailed]);
    assert!(h.take_reserves().is_empty());
    // Not repeated while nothing changes (the unanswered peer source queries time out).
    h.advance(20 * 60 * SEC);
    assert!(h.errors().iter().all(|&e| e == Error::PeerSourceTimeout));
    // A measured fast relay passes (0.4 * 0.998 + 0.3 * 0.9 + 0.3 * 0.9 = 0.94).
    h.ar.relay_rtt(h.now, peer(2), Duration::from_millis(1));
    assert_eq!(h.take_reserves(), [peer(2)]);
}

#[test]
fn static_relays_ignore_the_threshold() {
    let config = AutoRelayConfig {
        quality_threshold: 1.0,
        ..static_config(&[1], 1)
    };
    let mut h = Harness::started(config, 1);
    assert_eq!(h.take_reserves(), [peer(1)]);
    assert_eq!(h.errors(), []);
}

#[test]
fn all_relays_failed_when_every_candidate_backs_off() {
    let mut h = Harness::started(static_config(&[1, 2], 2), 1);
    let chosen = h.take_reserves();
    h.ar.reservation_failed(h.now, chosen[0], FailureReason::Refused);
    assert_eq!(h.errors(), [], "one relay still requested");
    h.ar.reservation_failed(h.now, chosen[1], FailureReason::Unreachable);
    assert_eq!(h.errors(), [Error::AllRelaysFailed]);
    h.advance(10 * SEC);
    assert_eq!(h.errors(), []);
    // After the backoff both are retried; the error may come again only after new
    // failures.
    h.advance(h.ar.config().backoff.initial);
    assert_eq!(h.take_reserves().len(), 2);
}

#[test]
fn errors_only_below_min_relay_peers() {
    let config = AutoRelayConfig {
        min_relay_peers: 2,
        ..static_config(&[1, 2], 3)
    };
    let mut h = Harness::started(config, 1);
    h.accept_all();
    assert_eq!(h.errors(), [], "two held, min is two");
    h.ar.relay_disconnected(h.now, peer(1));
    assert_eq!(h.errors(), [Error::RelaySelectionFailed]);
}

#[test]
fn dynamic_candidates_are_bounded_and_age_out() {
    let mut h = Harness::started(dynamic_config(1), 1);
    h.ar.peer_source_result(h.now, (1..=30).map(candidate).collect());
    assert_eq!(h.ar.candidates(h.now).len(), 20);
    let used = h.accept_all();
    let age = h.ar.config().max_candidate_age;
    h.advance(age + h.ar.config().detection_interval);
    // Only the relay in use is left; the source is asked again.
    let left: Vec<PeerId> = h.ar.candidates(h.now).iter().map(|c| c.peer).collect();
    assert_eq!(left, used);
    assert!(
        h.actions
            .iter()
            .any(|a| matches!(a, Action::QueryPeerSource { limit: 19 }))
    );
}

#[test]
fn rtt_and_history_show_in_candidate_scores() {
    let mut h = Harness::started(static_config(&[1, 2, 3], 3), 1);
    h.accept_all();
    h.ar.relay_rtt(h.now, peer(1), Duration::from_millis(20));
    h.ar.relay_rtt(h.now, peer(2), Duration::from_millis(400));
    let score = |h: &Harness, p| h.ar.candidate(h.now, &p).unwrap().score;
    assert!(score(&h, peer(1)) > score(&h, peer(2)));
    // Uptime raises the score; losing the reservation lowers it.
    let before = score(&h, peer(3));
    h.advance(10 * 60 * SEC);
    let held = score(&h, peer(3));
    assert!(held > before);
    h.ar.relay_disconnected(h.now, peer(3));
    assert!(score(&h, peer(3)) < held);
    let infos = h.ar.candidates(h.now);
    assert_eq!(infos[0].rtt, Some(Duration::from_millis(20)));
    assert!(infos[2].backoff_until.is_some());
}

#[test]
fn identify_candidates_are_ignored_when_dynamic_is_off() {
    let mut h = Harness::started(static_config(&[1], 1), 1);
    h.ar.peer_supports_hop(h.now, peer(5), vec![addr(5)]);
    h.ar.peer_source_result(h.now, vec![candidate(6)]);
    assert_eq!(h.ar.candidates(h.now).len(), 1);
}

#[test]
fn a_free_slot_at_refresh_is_filled_rather_than_swapping_in_and_out() {
    let config = AutoRelayConfig {
        refresh_interval: 30 * 60 * SEC,
        ..static_config(&[1, 2, 3], 2)
    };
    let mut h = Harness::started(config, 6);
    let held = h.accept_all();
    let spare = [peer(1), peer(2), peer(3)]
        .into_iter()
        .find(|p| !held.contains(p))
        .unwrap();
    for _ in 0..20 {
        h.ar.relay_rtt(h.now, held[0], Duration::from_millis(900));
    }
    h.advance(30 * 60 * SEC - SEC);
    h.take_events();
    // The other relay fails at the very moment the refresh is due.
    h.now += SEC;
    h.ar.relay_disconnected(h.now, held[1]);
    assert_eq!(h.take_reserves(), [spare]);
    assert!(
        h.take_releases().is_empty(),
        "the slow relay was released and re-requested"
    );
    assert_eq!(h.ar.current_relays(), [held[0]]);
}

/// Regression (found by `prop::invariants_hold`): a static relay whose backoff ended
/// between two detection ticks waited for the next tick while a slot was free, because
/// the end of a backoff was no deadline in `poll_timeout`. Minimal input: seed 0, policy
/// quality, always active, threshold 0.8, ops `[Wait(171), Wait(260),
/// AcceptPending(0, 30), Disconnect(1), Wait(3), Wait(7), Start]`.
#[test]
fn a_relay_is_requested_again_as_soon_as_its_backoff_ends() {
    let mut h = Harness::started(super::prop::config(0, true, 0.8), 0);
    h.advance(171 * SEC);
    h.advance(260 * SEC);
    let pending = h.ar.reserving_relays()[0];
    let expires = h.now + 30 * SEC;
    h.ar.reservation_accepted(h.now, pending, expires);
    h.ar.relay_disconnected(h.now, peer(1));
    h.drain();
    h.advance(3 * SEC);
    h.advance(7 * SEC);
    h.ar.start(h.now).unwrap();
    h.drain();
    let infos = h.ar.candidates(h.now);
    let in_use = infos
        .iter()
        .filter(|c| c.state != CandidateState::Idle)
        .count();
    let waiting: Vec<_> = infos
        .iter()
        .filter(|c| c.state == CandidateState::Idle && c.backoff_until.is_none())
        .collect();
    assert!(
        in_use == h.ar.config().max_relay_peers || waiting.is_empty(),
        "free slot while {waiting:?} waits"
    );
}
