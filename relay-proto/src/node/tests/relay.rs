//! Circuit relay v2 end to end over the in-memory network: reservations, circuits,
//! limits at their boundaries, refusals, and hostile input.

use std::time::Duration;

use multiaddr::{Multiaddr, Protocol};

use super::Net;
use crate::circuit::HOP_PROTOCOL;
use crate::circuit::message::{self, MessageReader};
use crate::hop::{LimitKind, RateLimits, RelayConfig};
use crate::node::{CircuitEnd, Config, DialError, Event, ReservationLoss};
use crate::wire::proto::{HopMessage, HopType, Peer, Status};

const ECHO: &str = "/echo/1.0.0";
const SECS: Duration = Duration::from_secs(1);

fn relay_config(f: impl FnOnce(&mut RelayConfig)) -> Config {
    let mut relay = RelayConfig {
        rate: RateLimits::off(),
        ..RelayConfig::default()
    };
    f(&mut relay);
    Config {
        relay: Some(relay),
        ..Config::default()
    }
}

/// A relay (node 0) and `clients` plain nodes (1..).
fn net(relay: Config, clients: usize) -> Net {
    let mut net = Net::new(Duration::from_millis(5));
    net.add(1, relay);
    for i in 0..clients {
        let mut config = Config::default();
        config.ping.interval = None;
        net.add(10 + i as u8, config);
    }
    net
}

/// Node `i` reserves on the relay; returns the outcome event.
fn reserve(net: &mut Net, i: usize) -> Event {
    let relay_addr = net.full_addr(0);
    net.nodes[i].reserve(net.now, relay_addr).unwrap();
    net.wait_for(i, 10 * SECS, |e| match e {
        Event::ReservationAccepted { .. }
        | Event::ReservationRefused { .. }
        | Event::ReservationLost { .. } => Some(e.clone()),
        _ => None,
    })
    .expect("reservation answered")
}

fn circuit_addr(net: &Net, target: usize) -> Multiaddr {
    net.full_addr(0)
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(net.peer(target)))
}

/// Node `from` dials node `to` through the relay; returns the relayed connection or
/// the dial error.
fn dial_via_relay(net: &mut Net, from: usize, to: usize) -> Result<crate::ConnectionId, DialError> {
    let addr = circuit_addr(net, to);
    let conn = net.nodes[from].dial(net.now, addr).expect("dial starts");
    let outcome = net.wait_for(from, 60 * SECS, |e| match e {
        Event::ConnectionEstablished {
            conn: c,
            relayed: true,
            ..
        } if *c == conn => Some(Ok(conn)),
        Event::DialFailed { conn: c, error, .. } if *c == conn => Some(Err(error.clone())),
        _ => None,
    });
    outcome.expect("dial finished")
}

#[test]
fn reserve_then_connect_through_the_relay() {
    let mut net = net(relay_config(|_| {}), 2);
    let Event::ReservationAccepted {
        relay,
        addrs,
        limit,
        renewed,
        ..
    } = reserve(&mut net, 1)
    else {
        panic!("reservation refused")
    };
    assert_eq!(relay, net.peer(0));
    assert!(!renewed);
    assert_eq!(addrs, vec![net.full_addr(0).with(Protocol::P2pCircuit)]);
    assert_eq!(
        limit.data,
        Some(1 << 20),
        "the seed's default max_circuit_bytes"
    );
    assert_eq!(net.nodes[1].relayed_addrs(), addrs.as_slice());

    net.nodes[1].register_protocol(ECHO);
    let conn = dial_via_relay(&mut net, 2, 1).expect("circuit");
    let info = net.nodes[2].connection_info(conn).unwrap();
    assert_eq!(info.relay, Some(net.peer(0)));
    assert_eq!(info.peer, Some(net.peer(1)));

    // An application stream over the relayed connection.
    let stream = net.open(2, conn, ECHO).expect("stream over the circuit");
    net.nodes[2]
        .stream_write(net.now, stream, b"through the relay")
        .unwrap();
    net.run_for(SECS);
    let inbound = net.events[1]
        .iter()
        .find_map(|e| match e {
            Event::InboundStream {
                stream, protocol, ..
            } if protocol == ECHO => Some(*stream),
            _ => None,
        })
        .expect("node 1 accepted the stream");
    assert_eq!(net.received(1, inbound), b"through the relay");
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::RelayCircuitOpened { .. }))
    );

    // Ping over the circuit.
    net.nodes[2].ping(net.now, conn, 1).unwrap();
    let rtt = net.wait_for(2, 5 * SECS, |e| match e {
        Event::Ping {
            conn: c,
            result: Ok(rtt),
            ..
        } if *c == conn => Some(*rtt),
        _ => None,
    });
    assert_eq!(
        rtt,
        Some(Duration::from_millis(20)),
        "two hops of 5 ms each way"
    );
}

#[test]
fn connect_without_reservation_is_refused() {
    let mut net = net(relay_config(|_| {}), 2);
    let error = dial_via_relay(&mut net, 2, 1).unwrap_err();
    assert_eq!(error, DialError::CircuitFailed(Status::NoReservation));
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        Event::RelayCircuitRefused {
            status: Status::NoReservation,
            ..
        }
    )));
}

#[test]
fn max_reservations_admits_exactly_n() {
    let mut net = net(relay_config(|r| r.max_reservations = 2), 3);
    assert!(matches!(
        reserve(&mut net, 1),
        Event::ReservationAccepted { .. }
    ));
    assert!(matches!(
        reserve(&mut net, 2),
        Event::ReservationAccepted { .. }
    ));
    match reserve(&mut net, 3) {
        Event::ReservationRefused { status, .. } => assert_eq!(status, Status::ReservationRefused),
        other => panic!("third reservation: {other:?}"),
    }
    // Renewing a held reservation is not counted twice.
    assert!(matches!(
        reserve(&mut net, 1),
        Event::ReservationAccepted { renewed: true, .. }
    ));
}

#[test]
fn max_circuits_admits_exactly_n() {
    let mut net = net(relay_config(|r| r.max_circuits = 1), 3);
    reserve(&mut net, 1);
    assert!(dial_via_relay(&mut net, 2, 1).is_ok());
    let error = dial_via_relay(&mut net, 3, 1).unwrap_err();
    assert_eq!(
        error,
        DialError::CircuitFailed(Status::ResourceLimitExceeded)
    );
}

#[test]
fn data_limit_resets_the_circuit_per_direction() {
    let mut net = net(relay_config(|r| r.max_circuit_bytes = 64 * 1024), 2);
    reserve(&mut net, 1);
    net.nodes[1].register_protocol(ECHO);
    let conn = dial_via_relay(&mut net, 2, 1).unwrap();
    let stream = net.open(2, conn, ECHO).unwrap();
    // Far more than the limit one way: the relay cuts the circuit.
    let chunk = vec![7u8; 16 * 1024];
    for _ in 0..8 {
        let _ = net.nodes[2].stream_write(net.now, stream, &chunk);
        net.run_for(SECS / 10);
    }
    net.run_for(SECS);
    let closed = net.events[0].iter().find_map(|e| match e {
        Event::RelayCircuitClosed {
            reason,
            bytes_src_to_dst,
            ..
        } => Some((*reason, *bytes_src_to_dst)),
        _ => None,
    });
    let (reason, bytes) = closed.expect("circuit closed");
    assert!(
        matches!(reason, CircuitEnd::Limit(LimitKind::Data(_))),
        "{reason:?}"
    );
    assert_eq!(bytes, 64 * 1024, "exactly the limit is relayed");
    // The receiving side got exactly the limit before the reset, so it can say why.
    assert!(net.events[1].iter().any(|e| matches!(
        e,
        Event::RelayedLimitReached {
            kind: LimitKind::Data(_),
            ..
        }
    )));
    assert!(
        net.events[2]
            .iter()
            .any(|e| matches!(e, Event::ConnectionClosed { conn: c, .. } if *c == conn))
    );
}

#[test]
fn duration_limit_ends_the_circuit() {
    let mut net = net(relay_config(|r| r.max_circuit_duration = 30 * SECS), 2);
    reserve(&mut net, 1);
    let conn = dial_via_relay(&mut net, 2, 1).unwrap();
    let opened = net.now;
    let closed = net.wait_for(0, 60 * SECS, |e| match e {
        Event::RelayCircuitClosed {
            reason: CircuitEnd::Limit(LimitKind::Duration),
            ..
        } => Some(()),
        _ => None,
    });
    assert!(closed.is_some());
    let elapsed = net.now - opened;
    assert!(
        elapsed >= 29 * SECS && elapsed <= 31 * SECS,
        "closed after {elapsed:?}"
    );
    let limited = net.wait_for(2, 5 * SECS, |e| match e {
        Event::RelayedLimitReached { conn: c, kind, .. } if *c == conn => Some(*kind),
        _ => None,
    });
    assert_eq!(limited, Some(LimitKind::Duration));
}

#[test]
fn reservations_are_renewed_before_expiry() {
    let mut net = net(relay_config(|r| r.reservation_ttl = 120 * SECS), 1);
    let Event::ReservationAccepted { expire_unix, .. } = reserve(&mut net, 1) else {
        panic!()
    };
    let renewed = net.wait_for(1, 200 * SECS, |e| match e {
        Event::ReservationAccepted {
            renewed: true,
            expire_unix: e2,
            ..
        } => Some(*e2),
        _ => None,
    });
    assert!(
        renewed.is_some_and(|e| e > expire_unix),
        "renewed with a later expiry"
    );
    assert!(
        !net.events[1]
            .iter()
            .any(|e| matches!(e, Event::ReservationLost { .. }))
    );
}

#[test]
fn losing_the_relay_connection_loses_the_reservation() {
    let mut net = net(relay_config(|_| {}), 1);
    reserve(&mut net, 1);
    let conn = net.conn_to(0, net.peer(1)).unwrap();
    net.nodes[0].close(net.now, conn);
    let lost = net.wait_for(1, 10 * SECS, |e| match e {
        Event::ReservationLost { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(lost, Some(ReservationLoss::ConnectionClosed));
    assert!(net.nodes[1].relayed_addrs().is_empty());
    assert!(
        net.events[0]
            .iter()
            .any(|e| matches!(e, Event::RelayReservationEnded { .. }))
    );
}

/// Sends raw bytes on a hop stream from node 1 and returns the relay's answer.
fn raw_hop(net: &mut Net, bytes: &[u8]) -> Option<Status> {
    let relay = net.peer(0);
    if net.conn_to(1, relay).is_none() {
        let addr = net.full_addr(0);
        net.nodes[1].dial(net.now, addr).unwrap();
        net.wait_for(1, 5 * SECS, |e| {
            matches!(e, Event::ConnectionEstablished { .. }).then_some(())
        });
    }
    let conn = net.conn_to(1, relay)?;
    let stream = net.open(1, conn, HOP_PROTOCOL)?;
    net.nodes[1].stream_write(net.now, stream, bytes).ok()?;
    net.run_for(SECS);
    let answer = net.received(1, stream);
    let mut reader = MessageReader::default();
    let body = reader.push(&answer).ok()??;
    let (_, msg) = message::decode_hop(&body).ok()?;
    message::status_of(msg.status).ok()
}

#[test]
fn malformed_unexpected_and_oversized_messages_are_refused() {
    let mut net = net(relay_config(|_| {}), 2);
    // Not a protobuf at all.
    let mut garbage = Vec::new();
    crate::wire::frame::encode_frame(&[0xff, 0xff, 0xff], &mut garbage);
    assert_eq!(raw_hop(&mut net, &garbage), Some(Status::MalformedMessage));
    // A message without its type.
    let untyped = message::framed(&HopMessage::default());
    assert_eq!(raw_hop(&mut net, &untyped), Some(Status::MalformedMessage));
    // CONNECT without a peer.
    let connect = message::framed(&HopMessage {
        r#type: Some(HopType::Connect as i32),
        ..Default::default()
    });
    assert_eq!(raw_hop(&mut net, &connect), Some(Status::MalformedMessage));
    // STATUS is not a request.
    assert_eq!(
        raw_hop(&mut net, &message::hop_status(Status::Ok)),
        Some(Status::UnexpectedMessage)
    );
    // Over 4096 bytes.
    let big = message::framed(&HopMessage {
        r#type: Some(HopType::Connect as i32),
        peer: Some(Peer {
            id: Some(vec![0; 16]),
            addrs: vec![vec![1; 5000]],
        }),
        ..Default::default()
    });
    assert_eq!(raw_hop(&mut net, &big), Some(Status::MalformedMessage));
    // The relay still serves others.
    assert!(matches!(
        reserve(&mut net, 2),
        Event::ReservationAccepted { .. }
    ));
}

#[test]
fn hop_requests_over_relayed_connections_are_refused() {
    // Node 1 is a relay too and holds a reservation on node 0; node 2 reaches node 1
    // through node 0 and asks node 1, over that relayed connection, for a reservation.
    let mut net = Net::new(Duration::from_millis(5));
    net.add(1, relay_config(|_| {}));
    net.add(2, relay_config(|_| {}));
    net.add(3, Config::default());
    reserve(&mut net, 1);
    let conn = dial_via_relay(&mut net, 2, 1).unwrap();
    let stream = net.open(2, conn, HOP_PROTOCOL).expect("node 1 serves hop");
    let request = message::framed(&HopMessage {
        r#type: Some(HopType::Reserve as i32),
        ..Default::default()
    });
    net.nodes[2]
        .stream_write(net.now, stream, &request)
        .unwrap();
    net.run_for(SECS);
    let body = MessageReader::default()
        .push(&net.received(2, stream))
        .unwrap()
        .unwrap();
    let (_, answer) = message::decode_hop(&body).unwrap();
    assert_eq!(
        message::status_of(answer.status),
        Ok(Status::PermissionDenied)
    );
}

#[test]
fn relay_answers_match_the_spec_bytes() {
    // A RESERVE answer carries expire, addrs, a voucher the client verified, and a limit.
    let mut net = net(relay_config(|r| r.max_circuit_duration = 120 * SECS), 1);
    let Event::ReservationAccepted {
        expire_unix, limit, ..
    } = reserve(&mut net, 1)
    else {
        panic!()
    };
    assert_eq!(expire_unix, 1_800_000_000 + 3600);
    assert_eq!(limit.duration, Some(120 * SECS));
}

#[test]
fn a_silent_relay_times_out_reservations_and_circuits() {
    // Node 0 accepts hop streams but never answers.
    let mut net = Net::new(Duration::from_millis(5));
    net.add(1, Config::default());
    net.add(10, Config::default());
    net.add(11, Config::default());
    net.nodes[0].register_protocol(HOP_PROTOCOL);
    let relay_addr = net.full_addr(0);
    net.nodes[1].reserve(net.now, relay_addr).unwrap();
    let lost = net.wait_for(1, 60 * SECS, |e| match e {
        Event::ReservationLost { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert_eq!(lost, Some(ReservationLoss::Timeout));
    let error = dial_via_relay(&mut net, 2, 1).unwrap_err();
    assert_eq!(error, DialError::HopTimeout);
}

#[test]
fn a_silent_target_fails_the_circuit_after_the_hop_timeout() {
    let mut net = net(relay_config(|r| r.hop_timeout = 5 * SECS), 2);
    // Node 1 reserves by hand, then lets stop requests hang as an application stream.
    net.nodes[1].set_relay_transport(false);
    net.nodes[1].register_protocol(crate::circuit::STOP_PROTOCOL);
    let reserve = message::framed(&HopMessage {
        r#type: Some(HopType::Reserve as i32),
        ..Default::default()
    });
    assert_eq!(raw_hop(&mut net, &reserve), Some(Status::Ok));
    let started = net.now;
    let error = dial_via_relay(&mut net, 2, 1).unwrap_err();
    assert_eq!(error, DialError::CircuitFailed(Status::ConnectionFailed));
    assert!(net.now - started >= 5 * SECS);
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        Event::RelayCircuitRefused {
            status: Status::ConnectionFailed,
            ..
        }
    )));
}

#[test]
fn the_decision_hook_answers_reservations() {
    use crate::hop::{AclConfig, HookMode, HookQuery};
    let mut net = net(
        relay_config(|r| {
            r.acl = AclConfig {
                hook: HookMode::Reservations,
                ..AclConfig::default()
            }
        }),
        2,
    );
    for (client, allow) in [(1, true), (2, false)] {
        let relay_addr = net.full_addr(0);
        net.nodes[client].reserve(net.now, relay_addr).unwrap();
        let request = net
            .wait_for(0, 10 * SECS, |e| match e {
                Event::RelayAsk { request } => Some(*request),
                _ => None,
            })
            .expect("the relay asks its hook");
        assert!(
            matches!(request.query, HookQuery::Reserve { peer, .. } if peer == net.peer(client))
        );
        // The client waits for the answer meanwhile.
        net.run_for(SECS);
        assert!(net.nodes[client].reservations().next().is_none());
        let now = net.now;
        net.nodes[0].relay_answer(now, request.ticket, allow);
        let outcome = net
            .wait_for(client, 10 * SECS, |e| match e {
                Event::ReservationAccepted { .. } => Some(Ok(())),
                Event::ReservationRefused { status, .. } => Some(Err(*status)),
                Event::ReservationLost { reason, .. } => panic!("lost: {reason:?}"),
                _ => None,
            })
            .expect("the client hears the answer");
        if allow {
            assert_eq!(outcome, Ok(()));
        } else {
            assert_eq!(outcome, Err(Status::PermissionDenied));
        }
    }
}

#[test]
fn a_peer_without_relay_service_is_named_as_such() {
    let mut net = net(Config::default(), 2);
    match reserve(&mut net, 1) {
        Event::ReservationLost {
            reason: ReservationLoss::Protocol(why),
            ..
        } => assert!(why.contains("no relay service"), "{why}"),
        other => panic!("{other:?}"),
    }
    let error = dial_via_relay(&mut net, 2, 1).expect_err("no relay, no circuit");
    assert!(
        matches!(&error, DialError::RelayProtocol(why) if why.contains("no relay service")),
        "{error:?}"
    );
}
