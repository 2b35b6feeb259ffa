//! Hole punching (DCUtR) between nodes over the in-memory network: a relay (node 0), a
//! listener behind it (node 1, the spec's B) and a dialer (node 2, A), with the
//! [`Filter`] of each private node standing for its NAT.

use std::time::Duration;

use multiaddr::Protocol;

use super::{DialRecord, Filter, Net};
use crate::ConnectionId;
use crate::conn::connection::Endpoint;
use crate::dcutr::{FailureReason, HolePunchConfig};
use crate::hop::{RateLimits, RelayConfig};
use crate::node::{Config, DialFrom, Event, HolePunchError};

const MS: Duration = Duration::from_millis(1);
const SECS: Duration = Duration::from_secs(1);
const ECHO: &str = "/echo/1.0.0";
const RELAY: usize = 0;
const B: usize = 1;
const A: usize = 2;

/// Test settings: private addresses count (the network is 10.0.0.0/24), short timeouts.
fn punch_config() -> HolePunchConfig {
    HolePunchConfig {
        allow_private_addrs: true,
        attempt_timeout: 2 * SECS,
        sync_timeout: 3 * SECS,
        relayed_close_grace: 10 * SECS,
        ..HolePunchConfig::default()
    }
}

/// A relay and `peers` private nodes (1..), each behind `filter`; `f` adjusts the hole
/// punch settings of node `i`.
fn net(filter: Filter, peers: usize, f: impl Fn(usize, &mut HolePunchConfig)) -> Net {
    let mut net = Net::new(5 * MS);
    let relay = RelayConfig {
        rate: RateLimits::off(),
        ..RelayConfig::default()
    };
    net.add(
        1,
        Config {
            relay: Some(relay),
            ..Config::default()
        },
    );
    for i in 1..=peers {
        let mut config = Config::default();
        config.ping.interval = None;
        config.hole_punch = punch_config();
        f(i, &mut config.hole_punch);
        net.add(9 + i as u8, config);
        net.filters[i] = filter;
        net.nodes[i].register_protocol(ECHO);
    }
    net
}

/// Node `i` reserves on the relay.
fn reserve(net: &mut Net, i: usize) {
    let relay = net.full_addr(RELAY);
    net.nodes[i].reserve(net.now, relay).unwrap();
    net.wait_for(i, 10 * SECS, |e| {
        matches!(e, Event::ReservationAccepted { .. }).then_some(())
    })
    .expect("reservation accepted");
}

/// Node `from` dials node `to` through the relay; returns the relayed connection.
fn dial_relayed(net: &mut Net, from: usize, to: usize) -> ConnectionId {
    let addr = net
        .full_addr(RELAY)
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(net.peer(to)));
    let conn = net.nodes[from].dial(net.now, addr).unwrap();
    net.wait_for(from, 30 * SECS, |e| match e {
        Event::ConnectionEstablished {
            conn: c,
            relayed: true,
            ..
        } if *c == conn => Some(()),
        _ => None,
    })
    .expect("relayed connection");
    conn
}

/// The hole punch outcome node `i` reported, if any.
fn outcome(net: &Net, i: usize) -> Option<Event> {
    net.events[i]
        .iter()
        .find(|e| {
            matches!(
                e,
                Event::HolePunchSucceeded { .. } | Event::HolePunchFailed { .. }
            )
        })
        .cloned()
}

/// Runs until both B and A have an outcome.
fn run_to_outcomes(net: &mut Net, limit: Duration) -> (Event, Event) {
    let end = net.now + limit;
    net.run_until(end, |net| {
        outcome(net, B).is_some() && outcome(net, A).is_some()
    });
    (
        outcome(net, B).expect("B's outcome"),
        outcome(net, A).expect("A's outcome"),
    )
}

fn punch_dials(net: &Net, node: usize) -> Vec<DialRecord> {
    net.dials
        .iter()
        .filter(|d| d.node == node && matches!(d.from, DialFrom::HolePunch(_)))
        .cloned()
        .collect()
}

fn started(net: &Net, i: usize) -> Vec<u32> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::HolePunchStarted { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

fn closed_relayed(net: &Net, i: usize, conn: ConnectionId) -> bool {
    net.events[i]
        .iter()
        .any(|e| matches!(e, Event::ConnectionClosed { conn: c, relayed: true, .. } if *c == conn))
}

/// Both sides dial at the same instant, from their listen ports, the SYNs cross, and
/// the NATs see a TCP simultaneous open; the roles of the upgrade come from DCUtR.
#[test]
fn cone_nats_punch_at_the_same_instant() {
    let mut net = net(Filter::Cone, 2, |_, _| {});
    // Asymmetric access links: the relay path is 12 + 24 ms one way.
    net.access[B] = 7 * MS;
    net.access[A] = 19 * MS;
    reserve(&mut net, B);
    let relayed_a = dial_relayed(&mut net, A, B);
    let (b, a) = run_to_outcomes(&mut net, 30 * SECS);

    let Event::HolePunchSucceeded {
        attempt,
        rtt,
        direct: direct_b,
        addr,
        ..
    } = b
    else {
        panic!("B: {b:?}")
    };
    assert_eq!(attempt, 1);
    assert_eq!(rtt, Some(72 * MS), "B measured the relay round trip");
    assert_eq!(addr, net.addr(A));
    let Event::HolePunchSucceeded {
        attempt,
        rtt,
        direct: direct_a,
        relayed,
        ..
    } = a
    else {
        panic!("A: {a:?}")
    };
    assert_eq!((attempt, relayed), (1, relayed_a));
    assert_eq!(rtt, Some(72 * MS), "A's CONNECT to SYNC");

    // One dial each, from the listen port, at the same instant: A on SYNC, B RTT/2
    // after sending it (36 ms, the relay path's one-way delay).
    let (db, da) = (punch_dials(&net, B), punch_dials(&net, A));
    assert_eq!((db.len(), da.len()), (1, 1));
    assert_eq!(db[0].at, da[0].at);
    assert_eq!((db[0].local, db[0].remote), (net.socket(B), net.socket(A)));
    assert_eq!((da[0].local, da[0].remote), (net.socket(A), net.socket(B)));
    assert_eq!(db[0].from, DialFrom::HolePunch(net.socket(B)));

    // Both sockets dialed; A is the client of the upgrade, B the server.
    for (i, direct) in [(A, direct_a), (B, direct_b)] {
        let info = net.nodes[i].connection_info(direct).unwrap();
        assert_eq!((info.endpoint, info.relay), (Endpoint::Dialer, None));
        assert_eq!(
            net.nodes[i].preferred_connection(&net.peer(3 - i)),
            Some(direct)
        );
    }
    let now = net.now;
    let sa = {
        let peer = net.peer(B);
        net.nodes[A].open_stream_to(now, &peer, ECHO)
    }
    .unwrap();
    let sb = {
        let peer = net.peer(A);
        net.nodes[B].open_stream_to(now, &peer, ECHO)
    }
    .unwrap();
    assert_eq!((sa.conn, sb.conn), (direct_a, direct_b));
    assert_eq!(
        (sa.stream.0 % 2, sb.stream.0 % 2),
        (1, 0),
        "yamux client, server"
    );
    let arrived = net.wait_for(B, 5 * SECS, |e| match e {
        Event::InboundStream { stream, .. } if stream.conn == direct_b => Some(()),
        _ => None,
    });
    assert!(arrived.is_some());

    let stats = net.nodes[B].hole_punch_stats();
    assert_eq!((stats.successes, stats.first_attempt_successes), (1, 1));
    assert_eq!(net.nodes[A].hole_punch_stats().successes, 1);
    assert_eq!(started(&net, B), [1]);
    assert_eq!(started(&net, A), [1]);
}

/// Without NATs one side's SYN may reach the other's listener before that side dials:
/// the accepted connection takes the role DCUtR gave, and the late dial, whose address
/// pair is taken, does not fail the attempt.
#[test]
fn a_dial_reaching_the_listener_first_keeps_the_roles() {
    for slow in [A, B] {
        let mut net = net(Filter::Open, 2, |_, _| {});
        net.punch_hold[slow] = 30 * MS;
        reserve(&mut net, B);
        dial_relayed(&mut net, A, B);
        let (b, a) = run_to_outcomes(&mut net, 30 * SECS);
        let (
            Event::HolePunchSucceeded {
                attempt: 1,
                direct: direct_b,
                ..
            },
            Event::HolePunchSucceeded {
                attempt: 1,
                direct: direct_a,
                ..
            },
        ) = (&b, &a)
        else {
            panic!("slow {slow}: {b:?} {a:?}")
        };
        let fast = 3 - slow;
        let direct = |i: usize| if i == A { *direct_a } else { *direct_b };
        let endpoint = |i: usize| net.nodes[i].connection_info(direct(i)).unwrap().endpoint;
        assert_eq!(endpoint(slow), Endpoint::Listener, "slow {slow} accepted");
        assert_eq!(endpoint(fast), Endpoint::Dialer);
        let now = net.now;
        let sa = {
            let peer = net.peer(B);
            net.nodes[A].open_stream_to(now, &peer, ECHO)
        }
        .unwrap();
        assert_eq!(sa.stream.0 % 2, 1, "A is the yamux client either way");
        let sb = {
            let peer = net.peer(A);
            net.nodes[B].open_stream_to(now, &peer, ECHO)
        }
        .unwrap();
        assert_eq!(sb.stream.0 % 2, 0);
        assert!(
            net.wait_for(B, 5 * SECS, |e| match e {
                Event::InboundStream { stream, .. } if stream.conn == direct(B) => Some(()),
                _ => None,
            })
            .is_some()
        );
        // The slow side's own dial found the address pair taken.
        let slow_dial = punch_dials(&net, slow)[0].conn;
        assert!(
            net.events[slow]
                .iter()
                .any(|e| matches!(e, Event::DialFailed { conn, .. } if *conn == slow_dial))
        );
    }
}

/// The runtime may hand over the socket the peer's dial made on our listener only
/// after our own dial (on the same address pair) has failed, and the attempt with it:
/// the accepted connection still takes the role DCUtR gave, and ends the hole punch.
#[test]
fn an_accepted_punch_after_our_dial_failed_still_counts() {
    let mut net = net(Filter::Open, 2, |_, _| {});
    net.punch_hold[B] = 30 * MS;
    net.accept_delay[B] = 60 * MS;
    reserve(&mut net, B);
    dial_relayed(&mut net, A, B);
    let (b, a) = run_to_outcomes(&mut net, 30 * SECS);
    let Event::HolePunchSucceeded {
        attempt, direct, ..
    } = b
    else {
        panic!("B: {b:?}")
    };
    assert_eq!(attempt, 2, "B's first attempt failed with its dial");
    // A answered B's second exchange; its dial of the first served it.
    assert!(
        matches!(a, Event::HolePunchSucceeded { attempt: 2, .. }),
        "{a:?}"
    );
    assert_eq!(punch_dials(&net, A).len(), 1);
    let info = net.nodes[B].connection_info(direct).unwrap();
    assert_eq!(info.endpoint, Endpoint::Listener);
    let dial = punch_dials(&net, B)[0].conn;
    assert!(
        net.events[B]
            .iter()
            .any(|e| matches!(e, Event::DialFailed { conn, .. } if *conn == dial))
    );
    let now = net.now;
    let peer = net.peer(A);
    let sb = net.nodes[B].open_stream_to(now, &peer, ECHO).unwrap();
    assert_eq!(
        (sb.conn, sb.stream.0 % 2),
        (direct, 0),
        "B is the yamux server"
    );
    assert!(
        net.wait_for(A, 5 * SECS, |e| match e {
            Event::InboundStream { stream, .. } if stream.stream == sb.stream => Some(()),
            _ => None,
        })
        .is_some()
    );
}

/// With every SYN lost each attempt times out; B makes a fresh exchange each time,
/// measuring the RTT again (the relay path slows down between attempts, and the dials
/// still meet), up to `max_attempts`. Then both fall back: the relayed connection stays.
#[test]
fn closed_nats_retry_then_fall_back_to_the_relay() {
    let mut net = net(Filter::Closed, 2, |_, _| {});
    reserve(&mut net, B);
    let relayed_a = dial_relayed(&mut net, A, B);
    let (b, a) = run_to_outcomes(&mut net, 60 * SECS);
    assert_eq!(
        b,
        Event::HolePunchFailed {
            relayed: match &b {
                Event::HolePunchFailed { relayed, .. } => *relayed,
                _ => unreachable!(),
            },
            peer: net.peer(A),
            attempts: 3,
            reason: FailureReason::Timeout,
        }
    );
    assert!(matches!(
        a,
        Event::HolePunchFailed {
            attempts: 3,
            reason: FailureReason::Timeout,
            ..
        }
    ));
    assert_eq!(started(&net, B), [1, 2, 3]);
    assert_eq!(started(&net, A), [1, 2, 3]);
    let (db, da) = (punch_dials(&net, B), punch_dials(&net, A));
    assert_eq!((db.len(), da.len()), (3, 3));
    for (b, a) in db.iter().zip(&da) {
        assert_eq!(b.at, a.at);
    }
    // The relayed connection stays, and carries streams and pings.
    assert!(!closed_relayed(&net, A, relayed_a));
    assert_eq!(
        net.nodes[A].preferred_connection(&net.peer(B)),
        Some(relayed_a)
    );
    let now = net.now;
    net.nodes[A].ping(now, relayed_a, 1).unwrap();
    let ping = net.wait_for(A, 5 * SECS, |e| match e {
        Event::Ping { conn, result, .. } if *conn == relayed_a => Some(*result),
        _ => None,
    });
    assert!(matches!(ping, Some(Ok(_))));
    let stats = net.nodes[B].hole_punch_stats();
    assert_eq!((stats.finished, stats.attempts), (1, 3));
    assert_eq!(stats.failures.timeout, 1);
}

/// Each attempt measures the RTT afresh: the relay path slows down between attempts
/// and the two sides' dials still leave together, and an attempt after the NATs
/// opened succeeds.
#[test]
fn retries_measure_again_and_can_succeed() {
    let mut net = net(Filter::Closed, 2, |_, _| {});
    reserve(&mut net, B);
    dial_relayed(&mut net, A, B);
    for attempt in 1..=2 {
        net.run_until(net.now + 30 * SECS, |net| {
            punch_dials(net, A).len() == attempt
        });
        // Slower from now on (never faster, so bytes keep their order).
        net.access[A] += 40 * MS;
    }
    // The NATs open up once the third attempt has begun.
    net.run_until(net.now + 30 * SECS, |net| started(net, B).len() == 3);
    net.filters[A] = Filter::Cone;
    net.filters[B] = Filter::Cone;
    let (b, a) = run_to_outcomes(&mut net, 30 * SECS);
    let Event::HolePunchSucceeded { attempt, rtt, .. } = b else {
        panic!("{b:?}")
    };
    assert_eq!(attempt, 3);
    assert_eq!(
        rtt,
        Some(2 * (5 + 5 + 80) * MS),
        "measured on the third attempt"
    );
    assert!(matches!(a, Event::HolePunchSucceeded { attempt: 3, .. }));
    let (db, da) = (punch_dials(&net, B), punch_dials(&net, A));
    assert_eq!((db.len(), da.len()), (3, 3));
    for (b, a) in db.iter().zip(&da) {
        assert_eq!(b.at, a.at, "attempt dials meet");
    }
    assert_eq!(net.nodes[B].hole_punch_stats().first_attempt_successes, 0);
}

/// After a success the relayed connection closes once the grace period has passed
/// and no application stream is left on it.
#[test]
fn relayed_connection_closes_after_the_grace_period() {
    let mut net = net(Filter::Cone, 2, |_, _| {});
    reserve(&mut net, B);
    let relayed_a = dial_relayed(&mut net, A, B);
    // An application stream on the relayed connection, opened before the punch ends.
    let stream = net.open(A, relayed_a, ECHO).unwrap();
    let (b, _) = run_to_outcomes(&mut net, 30 * SECS);
    let Event::HolePunchSucceeded {
        relayed: relayed_b, ..
    } = b
    else {
        panic!("{b:?}")
    };
    let success = net.now;
    net.run_until(success + 15 * SECS, |_| false);
    assert!(!closed_relayed(&net, A, relayed_a), "kept for its stream");
    net.nodes[A].stream_reset(net.now, stream).unwrap();
    net.run_until(success + 31 * SECS, |net| {
        closed_relayed(net, A, relayed_a) && closed_relayed(net, B, relayed_b)
    });
    assert!(closed_relayed(&net, A, relayed_a) && closed_relayed(&net, B, relayed_b));
    assert!(net.now >= success + 20 * SECS, "at the next check");

    // Without streams on it, at the end of the grace period.
    let mut net = net_for_grace();
    let relayed_a = dial_relayed(&mut net, A, B);
    // From A's success (as the upgrade dialer, A has its direct connection half a
    // round trip before B).
    let end = net.now + 30 * SECS;
    net.run_until(end, |net| outcome(net, A).is_some());
    assert!(matches!(
        outcome(&net, A),
        Some(Event::HolePunchSucceeded { .. })
    ));
    let success = net.now;
    net.run_until(success + 11 * SECS, |net| closed_relayed(net, A, relayed_a));
    assert!(closed_relayed(&net, A, relayed_a));
    assert!(net.now >= success + 10 * SECS);
    assert_eq!(net.nodes[A].connections_to(&net.peer(B)).len(), 1);
}

/// A cone network with B reserved, for the grace test.
fn net_for_grace() -> Net {
    let mut net = net(Filter::Cone, 2, |_, _| {});
    reserve(&mut net, B);
    net
}

/// `concurrent_limit` bounds the hole punches in progress; the others wait their turn.
#[test]
fn concurrent_limit_holds() {
    let mut net = net(Filter::Closed, 3, |_, c| {
        c.concurrent_limit = 1;
        c.max_attempts = 1;
    });
    reserve(&mut net, B);
    dial_relayed(&mut net, A, B);
    dial_relayed(&mut net, 3, B);
    let end = net.now + 60 * SECS;
    let mut most = 0;
    net.run_until(end, |net| {
        most = most.max(net.nodes[B].hole_punches_active());
        net.events[B]
            .iter()
            .filter(|e| matches!(e, Event::HolePunchFailed { .. }))
            .count()
            == 2
    });
    assert_eq!(most, 1);
    let order: Vec<&'static str> = net.events[B]
        .iter()
        .filter_map(|e| match e {
            Event::HolePunchStarted { .. } => Some("started"),
            Event::HolePunchFailed { .. } => Some("failed"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["started", "failed", "started", "failed"]);
}

/// The hole punch service: disabled, nothing happens and a manual attempt is refused;
/// enabled at runtime, it punches; a manual attempt then finds the direct connection.
#[test]
fn enable_disable_and_attempt_by_hand() {
    let mut net = net(Filter::Cone, 2, |i, c| c.enabled = i != B);
    assert!(
        !net.nodes[B]
            .protocols()
            .any(|p| p == crate::dcutr::PROTOCOL)
    );
    reserve(&mut net, B);
    dial_relayed(&mut net, A, B);
    net.run_for(10 * SECS);
    assert_eq!(outcome(&net, B), None);
    assert_eq!(outcome(&net, A), None);
    let now = net.now;
    let peer_a = net.peer(A);
    assert_eq!(
        net.nodes[B].hole_punch(now, peer_a),
        Err(HolePunchError::NotEnabled)
    );
    net.nodes[B].set_hole_punch_enabled(now, true);
    assert!(
        net.nodes[B]
            .protocols()
            .any(|p| p == crate::dcutr::PROTOCOL)
    );
    let (b, a) = run_to_outcomes(&mut net, 30 * SECS);
    assert!(
        matches!(b, Event::HolePunchSucceeded { attempt: 1, .. }),
        "{b:?}"
    );
    assert!(matches!(a, Event::HolePunchSucceeded { .. }), "{a:?}");
    let now = net.now;
    assert_eq!(
        net.nodes[B].hole_punch(now, peer_a),
        Err(HolePunchError::AlreadyDirect(peer_a))
    );
    let stranger = crate::identity::keypair_from_seed(99).public().to_peer_id();
    assert_eq!(
        net.nodes[B].hole_punch(now, stranger),
        Err(HolePunchError::NoRelayedConnection(stranger))
    );
}

/// A hole punch started by hand from the side that dialed the relayed connection: our
/// peer answers whichever side leads. Disabling ends it as not enabled.
#[test]
fn attempt_by_hand_from_the_dialer_and_disable_midway() {
    // B starts nothing by itself: disabled first, then without a slot.
    let mut net = net(Filter::Closed, 2, |i, c| {
        if i == B {
            c.enabled = false;
            c.concurrent_limit = 0;
        }
    });
    reserve(&mut net, B);
    dial_relayed(&mut net, A, B);
    net.run_for(2 * SECS);
    let peer_b = net.peer(B);
    let now = net.now;
    // B refuses the DCUtR stream while disabled: A's attempt fails at once.
    net.nodes[A].hole_punch(now, peer_b).unwrap();
    assert_eq!(
        net.nodes[A].hole_punch(now, peer_b),
        Err(HolePunchError::InProgress(peer_b))
    );
    let failed = net.wait_for(A, 10 * SECS, |e| match e {
        Event::HolePunchFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(
        matches!(failed, Some(FailureReason::ProtocolError(_))),
        "{failed:?}"
    );
    assert_eq!(outcome(&net, B), None);

    // Enabled, B answers A's exchange; every SYN is lost, so A is still dialing when
    // it is disabled, which ends its hole punch as not enabled.
    net.nodes[B].set_hole_punch_enabled(net.now, true);
    assert_eq!(started(&net, B), Vec::<u32>::new(), "no slot for B's own");
    let now = net.now;
    net.nodes[A].hole_punch(now, peer_b).unwrap();
    net.run_until(net.now + 10 * SECS, |net| punch_dials(net, A).len() == 1);
    assert_eq!(punch_dials(&net, B).len(), 1, "B dialed as A does");
    assert_eq!(started(&net, B), [1]);
    assert_eq!(net.nodes[A].hole_punches_active(), 1);
    let now = net.now;
    net.nodes[A].set_hole_punch_enabled(now, false);
    net.drain(A);
    assert_eq!(net.nodes[A].hole_punches_active(), 0);
    assert_eq!(
        net.events[A]
            .iter()
            .filter_map(|e| match e {
                Event::HolePunchFailed {
                    reason, attempts, ..
                } => Some((reason.clone(), *attempts)),
                _ => None,
            })
            .last(),
        Some((FailureReason::NotEnabled, 1))
    );
    // Its dial is abandoned.
    let dial = punch_dials(&net, A)[0].conn;
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::DialFailed { conn, .. } if *conn == dial))
    );
    assert_eq!(net.nodes[A].hole_punch_stats().failures.not_enabled, 1);
    assert_eq!(net.nodes[A].hole_punch_stats().failures.protocol_error, 1);
}
