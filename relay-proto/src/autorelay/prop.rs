//! Property test: random sequences of node reports, peer source answers, reachability
//! changes, service commands and time keep AutoRelay's invariants:
//! - never more than `max_relay_peers` reservations held or requested;
//! - no `Reserve` for a relay already held or requested, or backing off;
//! - no free slot while an eligible candidate waits (so at least `min_relay_peers` are
//!   kept whenever candidates allow);
//! - the last `RelaysChanged` is the held set; the timer never points at the past.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{addr, peer};
use super::*;
use crate::rng::Rng;

const PEERS: u8 = 8;
const MAX: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    /// Grants the request of the `n`th relay being reserved, if any.
    AcceptPending(usize, u64),
    /// Renews the reservation on the `n`th held relay, if any.
    Renew(usize, u64),
    /// Fails the `n`th relay in use, if any.
    FailInUse(usize, u8),
    Accept(u8, u64),
    Fail(u8, u8),
    Disconnect(u8),
    Rtt(u8, u64),
    Hop(u8),
    SourceAnswer(Vec<u8>),
    Reachability(u8),
    Start,
    Stop,
    AddStatic(u8),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 1..=PEERS;
    prop_oneof![
        8 => (0usize..MAX, 30u64..900).prop_map(|(n, ttl)| Op::AcceptPending(n, ttl)),
        4 => (0usize..MAX, 30u64..900).prop_map(|(n, ttl)| Op::Renew(n, ttl)),
        2 => (0usize..MAX, 0u8..6).prop_map(|(n, r)| Op::FailInUse(n, r)),
        2 => (p.clone(), 1u64..600).prop_map(|(p, ttl)| Op::Accept(p, ttl)),
        3 => (p.clone(), 0u8..6).prop_map(|(p, r)| Op::Fail(p, r)),
        2 => p.clone().prop_map(Op::Disconnect),
        4 => (p.clone(), 0u64..2000).prop_map(|(p, ms)| Op::Rtt(p, ms)),
        1 => p.clone().prop_map(Op::Hop),
        1 => proptest::collection::vec(p.clone(), 0..5).prop_map(Op::SourceAnswer),
        1 => (0u8..3).prop_map(Op::Reachability),
        1 => Just(Op::Start),
        1 => Just(Op::Stop),
        1 => p.prop_map(Op::AddStatic),
        3 => (0u64..30).prop_map(Op::Wait),
        1 => (0u64..400).prop_map(Op::Wait),
    ]
}

pub(super) fn config(policy: u8, activation: bool, threshold: f64) -> AutoRelayConfig {
    AutoRelayConfig {
        enabled: true,
        static_relay_peers: vec![addr(1), addr(2)],
        max_relay_peers: MAX,
        min_relay_peers: 1,
        selection_policy: [
            SelectionPolicy::Quality,
            SelectionPolicy::Random,
            SelectionPolicy::RoundRobin,
        ][usize::from(policy % 3)],
        quality_threshold: threshold,
        refresh_interval: Duration::from_secs(60),
        discovery_timeout: Duration::from_secs(20),
        peer_source_timeout: Duration::from_secs(15),
        activation: if activation {
            Activation::Always
        } else {
            Activation::WhenPrivate
        },
        min_candidates: 2,
        max_candidates: 4,
        max_candidate_age: Duration::from_secs(300),
        backoff: BackoffConfig {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(80),
        },
        detection_interval: Duration::from_secs(5),
        heartbeat_timeout: Some(Duration::from_secs(90)),
        boot_delay: Duration::ZERO,
        peer_source_min_interval: Duration::from_secs(10),
        ..AutoRelayConfig::default()
    }
}

const REASONS: [FailureReason; 6] = [
    FailureReason::Refused,
    FailureReason::Unreachable,
    FailureReason::ConnectionClosed,
    FailureReason::NotRenewed,
    FailureReason::HeartbeatTimeout,
    FailureReason::Timeout,
];

struct Checker {
    announced: Vec<PeerId>,
}

impl Checker {
    /// Applies `step` and checks what it emitted against the state before it.
    fn step(
        &mut self,
        ar: &mut AutoRelay,
        now: Instant,
        step: impl FnOnce(&mut AutoRelay),
    ) -> Result<(), TestCaseError> {
        let before = ar.candidates(now);
        step(ar);
        let mut reserved = Vec::new();
        while let Some(action) = ar.poll_action() {
            let Action::Reserve { relay, .. } = action else {
                continue;
            };
            prop_assert!(
                !reserved.contains(&relay),
                "{relay} reserved twice in one step"
            );
            reserved.push(relay);
            if let Some(info) = before.iter().find(|c| c.peer == relay) {
                prop_assert!(
                    info.backoff_until.is_none(),
                    "{relay} reserved while backing off"
                );
                prop_assert!(
                    info.state == CandidateState::Idle,
                    "{relay} reserved while in use: {:?}",
                    info.state
                );
            }
            prop_assert!(ar.reserving_relays().contains(&relay));
        }
        while let Some(event) = ar.poll_event() {
            if let Event::RelaysChanged { current } = event {
                self.announced = current;
            }
        }
        self.check(ar, now)
    }

    fn check(&self, ar: &AutoRelay, now: Instant) -> Result<(), TestCaseError> {
        let infos = ar.candidates(now);
        let in_use = infos
            .iter()
            .filter(|c| c.state != CandidateState::Idle)
            .count();
        prop_assert!(in_use <= MAX, "{in_use} relays in use");
        prop_assert_eq!(&self.announced, &ar.current_relays());
        for c in &infos {
            if matches!(
                c.state,
                CandidateState::Reserving { .. } | CandidateState::Held { .. }
            ) {
                prop_assert!(ar.is_active(), "relay in use while inactive");
                prop_assert!(
                    c.backoff_until.is_none(),
                    "{} in use while backing off",
                    c.peer
                );
            }
        }
        if ar.is_active() && in_use < MAX {
            let waiting = infos.iter().find(|c| {
                c.state == CandidateState::Idle
                    && c.backoff_until.is_none()
                    && (c.source == Source::Static || c.score >= ar.config().quality_threshold)
            });
            prop_assert!(waiting.is_none(), "free slot while {waiting:?} waits");
        }
        if let Some(t) = ar.poll_timeout() {
            prop_assert!(t > now, "timer at {t:?} not after now {now:?}");
        }
        Ok(())
    }
}

/// 512 random cases a run, or `PROPTEST_CASES` if set (CI sets more). The cases are
/// random every run; proptest records each failure's seed in
/// `relay-proto/proptest-regressions/autorelay/prop.txt` and replays it first on later
/// runs (commit that file with the fix), and CI prints the file when this test fails.
fn cases() -> ProptestConfig {
    let default = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        default
    } else {
        ProptestConfig {
            cases: 512,
            ..default
        }
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn invariants_hold(
        seed in any::<u64>(),
        policy in 0u8..3,
        always in prop_oneof![3 => Just(true), 1 => Just(false)],
        threshold in prop_oneof![Just(0.8), Just(0.0), Just(0.9)],
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut now = crate::test_now();
        let mut ar = AutoRelay::new(config(policy, always, threshold), Rng::from_u64(seed), now)
            .unwrap();
        let mut checker = Checker { announced: Vec::new() };
        checker.step(&mut ar, now, |ar| ar.start(now).unwrap())?;
        for op in ops {
            match op {
                Op::Wait(secs) => {
                    let target = now + Duration::from_secs(secs);
                    while let Some(t) = ar.poll_timeout() {
                        if t > target {
                            break;
                        }
                        now = t;
                        checker.step(&mut ar, now, |ar| ar.handle_timeout(now))?;
                    }
                    now = target;
                }
                Op::AcceptPending(n, ttl) => {
                    let expires = now + Duration::from_secs(ttl);
                    if let Some(&relay) = ar.reserving_relays().get(n) {
                        checker.step(&mut ar, now, |ar| ar.reservation_accepted(now, relay, expires))?;
                    }
                }
                Op::Renew(n, ttl) => {
                    let expires = now + Duration::from_secs(ttl);
                    if let Some(&relay) = ar.current_relays().get(n) {
                        checker.step(&mut ar, now, |ar| ar.reservation_accepted(now, relay, expires))?;
                    }
                }
                Op::FailInUse(n, r) => {
                    let mut in_use = ar.current_relays();
                    in_use.extend(ar.reserving_relays());
                    if let Some(&relay) = in_use.get(n) {
                        let reason = REASONS[usize::from(r)];
                        checker.step(&mut ar, now, |ar| ar.reservation_failed(now, relay, reason))?;
                    }
                }
                Op::Accept(p, ttl) => {
                    let expires = now + Duration::from_secs(ttl);
                    checker.step(&mut ar, now, |ar| ar.reservation_accepted(now, peer(p), expires))?;
                }
                Op::Fail(p, r) => {
                    let reason = REASONS[usize::from(r)];
                    checker.step(&mut ar, now, |ar| ar.reservation_failed(now, peer(p), reason))?;
                }
                Op::Disconnect(p) => {
                    checker.step(&mut ar, now, |ar| ar.relay_disconnected(now, peer(p)))?;
                }
                Op::Rtt(p, ms) => {
                    let rtt = Duration::from_millis(ms);
                    checker.step(&mut ar, now, |ar| ar.relay_rtt(now, peer(p), rtt))?;
                }
                Op::Hop(p) => {
                    checker.step(&mut ar, now, |ar| ar.peer_supports_hop(now, peer(p), vec![addr(p)]))?;
                }
                Op::SourceAnswer(ps) => {
                    let cands = ps
                        .into_iter()
                        .map(|p| Candidate { peer: peer(p), addrs: vec![addr(p)] })
                        .collect();
                    checker.step(&mut ar, now, |ar| ar.peer_source_result(now, cands))?;
                }
                Op::Reachability(r) => {
                    let r = [Reachability::Unknown, Reachability::Public, Reachability::Private]
                        [usize::from(r)];
                    checker.step(&mut ar, now, |ar| ar.set_reachability(now, r))?;
                }
                Op::Start => checker.step(&mut ar, now, |ar| ar.start(now).unwrap())?,
                Op::Stop => checker.step(&mut ar, now, |ar| ar.stop(now))?,
                Op::AddStatic(p) => {
                    checker.step(&mut ar, now, |ar| ar.add_static_relay(now, peer(p), vec![addr(p)]))?;
                }
            }
        }
    }

    #[test]
    fn same_seed_same_outputs(
        seed in any::<u64>(),
        policy in 0u8..3,
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let run = || {
            let mut now = crate::test_now();
            let base = now;
            let mut ar = AutoRelay::new(config(policy, true, 0.8), Rng::from_u64(seed), now).unwrap();
            ar.start(now).unwrap();
            let mut log = Vec::new();
            for op in &ops {
                match *op {
                    Op::Wait(secs) => {
                        now += Duration::from_secs(secs);
                        ar.handle_timeout(now);
                    }
                    Op::Accept(p, ttl) => ar.reservation_accepted(now, peer(p), now + Duration::from_secs(ttl)),
                    Op::AcceptPending(n, ttl) => {
                        if let Some(&relay) = ar.reserving_relays().get(n) {
                            ar.reservation_accepted(now, relay, now + Duration::from_secs(ttl));
                        }
                    }
                    Op::Fail(p, r) => ar.reservation_failed(now, peer(p), REASONS[usize::from(r)]),
                    Op::Disconnect(p) => ar.relay_disconnected(now, peer(p)),
                    Op::Rtt(p, ms) => ar.relay_rtt(now, peer(p), Duration::from_millis(ms)),
                    Op::Hop(p) => ar.peer_supports_hop(now, peer(p), vec![addr(p)]),
                    _ => {}
                }
                while let Some(a) = ar.poll_action() {
                    log.push(format!("{a:?}"));
                }
                while let Some(e) = ar.poll_event() {
                    log.push(format!("{e:?}"));
                }
                log.push(format!("{:?}", ar.poll_timeout().map(|t| t - base)));
            }
            log
        };
        prop_assert_eq!(run(), run());
    }
}
