//! Pair tests of the timing, retries, limits, role swaps and address filtering, and
//! properties of random inputs and random networks. The harness is in `pair.rs`.

use std::time::{Duration, Instant};

use multiaddr::Multiaddr;
use proptest::prelude::*;

use super::pair::{MS, Network, Pair, Side, a_addrs, b_addrs, is_sync, ma, no_swap};
use super::*;

#[test]
fn b_dials_at_half_rtt_after_sync_and_a_on_sync() {
    let mut pair = Pair::new(
        HolePunchConfig::default(),
        Network::default(),
        vec![100 * MS],
    );
    pair.run(Duration::from_secs(60));
    // B opens at 0 and may write at 200; A's CONNECT is back at 400: RTT 200.
    assert_eq!(pair.times(Side::B, is_sync), [400 * MS]);
    assert_eq!(pair.dials(Side::B), [(500 * MS, false, 1)]);
    // SYNC reaches A one way (100) later, when B's timer fires: the dials coincide.
    assert_eq!(pair.dials(Side::A), [(500 * MS, true, 1)]);
    for side in [Side::A, Side::B] {
        assert_eq!(
            *pair.outcome(side),
            Outcome::Success {
                attempt: 1,
                rtt: Some(200 * MS),
                elapsed: 510 * MS,
            }
        );
    }
    // Each side dialed the other's candidates.
    let dialed = |side| {
        pair.peer(side).log.iter().find_map(|(_, a)| match a {
            Action::Dial { addrs, .. } => Some(addrs.clone()),
            _ => None,
        })
    };
    assert_eq!(dialed(Side::A), Some(b_addrs()));
    assert_eq!(dialed(Side::B), Some(a_addrs()));
}

#[test]
fn success_on_the_first_attempt_stops_everything() {
    let mut pair = Pair::new(
        HolePunchConfig::default(),
        Network::default(),
        vec![30 * MS],
    );
    pair.run(Duration::from_secs(60));
    for side in [Side::A, Side::B] {
        let p = pair.peer(side);
        assert!(p.hp.is_done() && !p.hp.is_active());
        assert_eq!(p.hp.poll_timeout(), None);
        assert_eq!(pair.dials(side).len(), 1);
        assert!(matches!(p.log.last(), Some((_, Action::Done(_)))));
    }
    assert_eq!(pair.times(Side::B, |a| *a == Action::OpenStream).len(), 1);
    // Late inputs change nothing.
    let later = pair.now + Duration::from_secs(100);
    let b = &mut pair.peers[Side::B as usize].hp;
    b.handle_timeout(later);
    b.direct_dial_failed(later, 1, &a_addrs()[0], "late");
    b.stream_closed(later);
    assert_eq!(b.inbound_stream(later), Err(DcutrError::Finished));
    assert_eq!(
        b.handle_message(later, &encode_sync()),
        Err(DcutrError::Finished)
    );
    assert_eq!(b.poll_action(), None);
}

#[test]
fn retries_remeasure_the_rtt() {
    let net = Network {
        failing_pairs: 2,
        ..Default::default()
    };
    let relay = vec![100 * MS, 30 * MS, 60 * MS];
    let mut pair = Pair::new(no_swap(), net, relay.clone());
    pair.run(Duration::from_secs(60));
    let syncs = pair.times(Side::B, is_sync);
    let b_dials = pair.dials(Side::B);
    let a_dials = pair.dials(Side::A);
    assert_eq!(syncs.len(), 3);
    assert_eq!(b_dials.len(), 3);
    for (i, one_way) in relay.iter().enumerate() {
        let rtt = 2 * *one_way;
        assert_eq!(b_dials[i].0, syncs[i] + rtt / 2, "attempt {}", i + 1);
        assert_eq!(a_dials[i].0, b_dials[i].0, "attempt {}", i + 1);
        assert_eq!(b_dials[i].2, i as u32 + 1);
    }
    // Each failed attempt ends when its dials are refused; B starts the next at once.
    let opens = pair.times(Side::B, |a| *a == Action::OpenStream);
    assert_eq!(opens[1], b_dials[0].0 + 300 * MS);
    assert_eq!(opens[2], b_dials[1].0 + 300 * MS);
    let Outcome::Success { attempt, rtt, .. } = pair.outcome(Side::B) else {
        panic!("B failed: {:?}", pair.outcome(Side::B));
    };
    assert_eq!((*attempt, *rtt), (3, Some(120 * MS)));
    assert!(pair.outcome(Side::A).is_success());
}

#[test]
fn the_attempt_limit_holds_and_dials_time_out() {
    let net = Network {
        failing_pairs: usize::MAX,
        refuse_after: None,
        ..Default::default()
    };
    let mut pair = Pair::new(HolePunchConfig::default(), net, vec![100 * MS]);
    pair.run(Duration::from_secs(600));
    let failure = Outcome::Failure {
        attempts: 3,
        reason: FailureReason::Timeout,
    };
    assert_eq!(*pair.outcome(Side::B), failure);
    assert_eq!(*pair.outcome(Side::A), failure);
    assert_eq!(pair.times(Side::B, |a| *a == Action::OpenStream).len(), 3);
    let b_dials = pair.dials(Side::B);
    assert_eq!(b_dials.len(), 3);
    assert_eq!(pair.dials(Side::A).len(), 3);
    // Each attempt ends attempt_timeout after B's dial; the next starts then.
    let opens = pair.times(Side::B, |a| *a == Action::OpenStream);
    assert_eq!(opens[1], b_dials[0].0 + Duration::from_secs(5));
    let (b_done, _) = pair.peer(Side::B).outcome.clone().unwrap();
    assert_eq!(b_done - pair.start, b_dials[2].0 + Duration::from_secs(5));
    assert!(pair.quiet());
}

#[test]
fn the_last_attempt_swaps_bs_security_role() {
    let net = Network {
        failing_pairs: 2,
        ..Default::default()
    };
    let mut pair = Pair::new(HolePunchConfig::default(), net, vec![50 * MS]);
    pair.run(Duration::from_secs(60));
    let roles = |side| -> Vec<bool> { pair.dials(side).iter().map(|d| d.1).collect() };
    assert_eq!(roles(Side::B), [false, false, true]);
    assert_eq!(roles(Side::A), [true, true, true]);
    // Two clients cannot complete one simultaneous open: as with go-libp2p against a
    // current peer, the third attempt is spent on older peers.
    assert_eq!(
        *pair.outcome(Side::B),
        Outcome::Failure {
            attempts: 3,
            reason: FailureReason::DirectDialFailed
        }
    );
}

#[test]
fn exchange_times_out_when_the_relay_loses_messages() {
    let mut pair = Pair::new(
        HolePunchConfig::default(),
        Network::default(),
        vec![100 * MS],
    );
    pair.relay_lossy = true;
    pair.run(Duration::from_secs(600));
    assert_eq!(
        *pair.outcome(Side::B),
        Outcome::Failure {
            attempts: 3,
            reason: FailureReason::Timeout
        }
    );
    let opens = pair.times(Side::B, |a| *a == Action::OpenStream);
    assert_eq!(opens, [Duration::ZERO, 15_000 * MS, 30_000 * MS]);
    assert!(pair.dials(Side::A).is_empty() && pair.dials(Side::B).is_empty());
    assert!(!pair.outcome(Side::A).is_success());
}

#[test]
fn a_peer_that_swapped_dcutr_roles_is_answered_as_a() {
    // We accepted the relayed connection, so we lead; the peer dialed it but leads too,
    // and refuses our stream as go-libp2p and rust-libp2p initiators do.
    let start = crate::test_now();
    let us = HolePunch::new(
        Role::Initiator,
        HolePunchConfig::default(),
        a_addrs(),
        &[],
        start,
    );
    let swapped = HolePunch::new(
        Role::Initiator,
        HolePunchConfig::default(),
        b_addrs(),
        &[],
        start,
    );
    let mut pair = Pair::from_machines(start, us, swapped, Network::default(), vec![100 * MS]);
    pair.peers[Side::B as usize].denies_inbound = true;
    pair.run(Duration::from_secs(60));
    let us = pair.peer(Side::A);
    assert!(!us.hp.leads());
    assert_eq!(us.hp.role(), Role::Initiator);
    assert_eq!(pair.dials(Side::A), [(500 * MS, true, 1)]);
    assert_eq!(pair.dials(Side::B), [(500 * MS, false, 1)]);
    assert!(pair.outcome(Side::A).is_success());
    assert!(pair.outcome(Side::B).is_success());
}

#[test]
fn unilateral_dial_first_when_a_is_public() {
    let listen = [
        ma("/ip4/198.51.100.10/tcp/4001"),
        ma("/ip4/10.0.0.2/tcp/4001"),
    ];
    let net = Network {
        a_reachable: true,
        ..Default::default()
    };
    let mut pair =
        Pair::with_listen_addrs(HolePunchConfig::default(), net, vec![100 * MS], &listen);
    pair.run(Duration::from_secs(60));
    assert_eq!(pair.dials(Side::B), [(Duration::ZERO, true, 0)]);
    assert!(pair.times(Side::B, |a| *a == Action::OpenStream).is_empty());
    for side in [Side::A, Side::B] {
        assert!(matches!(
            pair.outcome(side),
            Outcome::Success {
                attempt: 0,
                rtt: None,
                ..
            }
        ));
    }

    // A public address that does not answer: the exchange follows the refusal.
    let mut pair = Pair::with_listen_addrs(
        HolePunchConfig::default(),
        Network::default(),
        vec![100 * MS],
        &listen,
    );
    pair.run(Duration::from_secs(60));
    assert_eq!(
        pair.dials(Side::B),
        [(Duration::ZERO, true, 0), (800 * MS, false, 1)]
    );
    assert_eq!(pair.dials(Side::A), [(800 * MS, true, 1)]);
    assert!(pair.outcome(Side::B).is_success());
}

#[test]
fn only_routable_tcp_candidates_cross_and_get_dialed() {
    let start = crate::test_now();
    let relay_peer = crate::identity::keypair_from_seed(5).public().to_peer_id();
    let b_mixed = vec![
        ma("/ip4/127.0.0.1/tcp/4001"),
        ma("/ip4/192.168.1.20/tcp/4001"),
        ma(&format!(
            "/ip4/203.0.113.1/tcp/4001/p2p/{relay_peer}/p2p-circuit"
        )),
        ma("/ip4/203.0.113.20/udp/4001/quic-v1"),
        ma("/ip4/203.0.113.20/tcp/4001"),
    ];
    let a = HolePunch::new(
        Role::Responder,
        HolePunchConfig::default(),
        a_addrs(),
        &[],
        start,
    );
    let b = HolePunch::new(
        Role::Initiator,
        HolePunchConfig::default(),
        b_mixed,
        &[],
        start,
    );
    assert_eq!(b.our_addrs(), b_addrs());
    let mut pair = Pair::from_machines(start, a, b, Network::default(), vec![100 * MS]);
    pair.run(Duration::from_secs(60));
    let connect = pair.peer(Side::B).log.iter().find_map(|(_, a)| match a {
        Action::Send(bytes) if *bytes != encode_sync() => Some(bytes.clone()),
        _ => None,
    });
    assert_eq!(connect, Some(encode_connect(&b_addrs())));
    assert!(pair.outcome(Side::A).is_success());

    // A with only private addresses: nothing to punch to.
    let a = HolePunch::new(
        Role::Responder,
        HolePunchConfig::default(),
        vec![ma("/ip4/10.0.0.2/tcp/4001")],
        &[],
        start,
    );
    let b = HolePunch::new(
        Role::Initiator,
        HolePunchConfig::default(),
        b_addrs(),
        &[],
        start,
    );
    let mut pair = Pair::from_machines(start, a, b, Network::default(), vec![100 * MS]);
    pair.run(Duration::from_secs(60));
    assert_eq!(
        *pair.outcome(Side::A),
        Outcome::Failure {
            attempts: 1,
            reason: FailureReason::NatIncompatible
        }
    );
    assert_eq!(
        *pair.outcome(Side::B),
        Outcome::Failure {
            attempts: 1,
            reason: FailureReason::ProtocolError(DcutrError::StreamClosed)
        }
    );

    // Allowed private addresses make the same pair work, as on one private network.
    let config = HolePunchConfig {
        allow_private_addrs: true,
        ..Default::default()
    };
    let a = HolePunch::new(
        Role::Responder,
        config.clone(),
        vec![ma("/ip4/10.0.0.2/tcp/4001")],
        &[],
        start,
    );
    let b = HolePunch::new(Role::Initiator, config, b_addrs(), &[], start);
    let mut pair = Pair::from_machines(start, a, b, Network::default(), vec![100 * MS]);
    pair.run(Duration::from_secs(60));
    assert!(pair.outcome(Side::B).is_success());
}

// ----- properties -----

/// One input to a lone machine, for the event-order property.
#[derive(Debug, Clone)]
enum Input {
    /// What the exchange expects next, judged from the last action: keeps random runs
    /// going deep into later attempts.
    Expected,
    StreamOpened,
    InboundStream,
    Connect(bool),
    Sync,
    Garbage(Vec<u8>),
    StreamClosed,
    DialFailed(bool),
    Connected,
    Advance(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        16 => Just(Input::Expected),
        1 => Just(Input::StreamOpened),
        1 => Just(Input::InboundStream),
        1 => any::<bool>().prop_map(Input::Connect),
        1 => Just(Input::Sync),
        1 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(Input::Garbage),
        1 => Just(Input::StreamClosed),
        2 => any::<bool>().prop_map(Input::DialFailed),
        1 => Just(Input::Connected),
        3 => (0u64..20_000).prop_map(Input::Advance),
    ]
}

/// A lone machine fed random inputs, checking after each that it keeps its limits.
struct Driven {
    hp: HolePunch,
    now: Instant,
    max_attempts: u32,
    last: Option<Action>,
    dialed: Vec<(u32, Vec<Multiaddr>)>,
    done: bool,
}

impl Driven {
    fn check(&mut self) -> Result<(), TestCaseError> {
        while let Some(action) = self.hp.poll_action() {
            prop_assert!(!self.done, "{:?} after Done", action);
            match &action {
                Action::Dial { addrs, attempt, .. } => {
                    prop_assert!(!addrs.is_empty());
                    prop_assert!(*attempt <= self.max_attempts);
                    prop_assert!(
                        self.dialed.iter().all(|(a, _)| a != attempt),
                        "two dials in attempt {}",
                        attempt
                    );
                    self.dialed.push((*attempt, addrs.clone()));
                }
                Action::Done(_) => self.done = true,
                _ => {}
            }
            self.last = Some(action);
        }
        prop_assert!(self.hp.attempts() <= self.max_attempts);
        prop_assert_eq!(self.done, self.hp.is_done());
        Ok(())
    }

    fn fail_dial(&mut self, known: bool) {
        let attempt = self.hp.attempts();
        let addrs = match (known, self.dialed.last()) {
            (true, Some((_, addrs))) => addrs.clone(),
            _ => vec![ma("/ip4/192.0.2.1/tcp/9")],
        };
        for addr in &addrs {
            self.hp
                .direct_dial_failed(self.now, attempt, addr, "refused");
        }
    }

    fn apply(&mut self, input: Input) {
        let now = self.now;
        let connect = |usable: bool| {
            let addrs = if usable {
                b_addrs()
            } else {
                vec![ma("/ip4/127.0.0.1/tcp/1")]
            };
            encode_connect(&addrs)
        };
        match input {
            Input::Expected => match (self.hp.leads(), &self.last) {
                (true, Some(Action::OpenStream)) => self.hp.stream_opened(now),
                (true, Some(Action::Send(_))) => {
                    let _ = self.hp.handle_message(now, &connect(true));
                }
                (false, Some(Action::Send(_))) => {
                    let _ = self.hp.handle_message(now, &encode_sync());
                }
                (_, Some(Action::Dial { .. })) => self.fail_dial(true),
                (true, _) => {
                    if let Some(t) = self.hp.poll_timeout() {
                        self.now = self.now.max(t);
                        self.hp.handle_timeout(self.now);
                    }
                }
                (false, _) => {
                    if self.hp.inbound_stream(now).is_ok() {
                        let _ = self.hp.handle_message(now, &connect(true));
                    }
                }
            },
            Input::StreamOpened => self.hp.stream_opened(now),
            Input::InboundStream => {
                let _ = self.hp.inbound_stream(now);
            }
            Input::Connect(usable) => {
                let _ = self.hp.handle_message(now, &connect(usable));
            }
            Input::Sync => {
                let _ = self.hp.handle_message(now, &encode_sync());
            }
            Input::Garbage(bytes) => {
                let _ = self.hp.handle_message(now, &bytes);
            }
            Input::StreamClosed => self.hp.stream_closed(now),
            Input::DialFailed(known) => self.fail_dial(known),
            Input::Connected => self.hp.direct_connected(now),
            Input::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.hp.handle_timeout(self.now);
            }
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(
        initiator in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
    ) {
        let t0 = crate::test_now();
        let role = if initiator { Role::Initiator } else { Role::Responder };
        let mut hp = HolePunch::new(role, HolePunchConfig::default(), a_addrs(), &[], t0);
        if initiator {
            hp.stream_opened(t0);
        } else {
            hp.inbound_stream(t0).unwrap();
        }
        for chunk in &chunks {
            let _ = hp.handle_message(t0, chunk);
            while hp.poll_action().is_some() {}
        }
        prop_assert!(hp.attempts() <= 3);
    }

    #[test]
    fn random_event_orders_respect_the_limits(
        initiator in any::<bool>(),
        max_attempts in 0u32..5,
        unilateral in any::<bool>(),
        swap in any::<bool>(),
        inputs in proptest::collection::vec(input(), 0..80),
    ) {
        let t0 = crate::test_now();
        let config = HolePunchConfig {
            max_attempts,
            swap_roles_on_last_attempt: swap,
            ..Default::default()
        };
        let role = if initiator { Role::Initiator } else { Role::Responder };
        let listen = if unilateral { b_addrs() } else { Vec::new() };
        let mut driven = Driven {
            hp: HolePunch::new(role, config, a_addrs(), &listen, t0),
            now: t0,
            max_attempts,
            last: None,
            dialed: Vec::new(),
            done: false,
        };
        driven.check()?;
        for input in inputs {
            driven.apply(input);
            driven.check()?;
        }
    }

    #[test]
    fn random_pairs_end_within_the_limits(
        failing_pairs in 0usize..5,
        refuse in proptest::option::of(1u64..6_000),
        window_ms in 0u64..50,
        delays in proptest::collection::vec(1u64..400, 1..4),
        max_attempts in 1u32..5,
        swap in any::<bool>(),
    ) {
        let config = HolePunchConfig {
            max_attempts,
            swap_roles_on_last_attempt: swap,
            ..Default::default()
        };
        let net = Network {
            failing_pairs,
            refuse_after: refuse.map(Duration::from_millis),
            window: Duration::from_millis(window_ms),
            ..Default::default()
        };
        let relay = delays.into_iter().map(Duration::from_millis).collect();
        let mut pair = Pair::new(config, net, relay);
        pair.run(Duration::from_secs(3_600));
        for side in [Side::A, Side::B] {
            prop_assert!(pair.peer(side).outcome.is_some(), "{:?} never ended", side);
            prop_assert!(pair.dials(side).len() <= max_attempts as usize);
            prop_assert!(pair.peer(side).hp.attempts() <= max_attempts);
        }
        // With ideal timing the punch works as soon as the network lets it, unless the
        // role swap of the last attempt makes two clients.
        let b = pair.outcome(Side::B);
        let first_working = failing_pairs as u32 + 1;
        let swapped_last = swap && max_attempts > 1 && first_working == max_attempts;
        if first_working <= max_attempts && !swapped_last {
            prop_assert!(b.is_success(), "{:?}", b);
            if let Outcome::Success { attempt, .. } = b {
                prop_assert_eq!(*attempt, first_working);
            }
        } else {
            prop_assert!(!b.is_success(), "{:?}", b);
        }
    }
}
