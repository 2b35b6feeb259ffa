//! The upgrade role override: two sockets that both dialed (a TCP simultaneous open)
//! still make one connection when one side takes the listener's part of the upgrade.

use std::time::{Duration, Instant};

use super::connection::{
    Connection, ConnectionConfig, ConnectionError, ConnectionEvent, Endpoint, Protocols,
};
use crate::identity::keypair_from_seed;
use crate::rng::Rng;

fn connection(seed: u8, endpoint: Endpoint, upgrade: Endpoint, now: Instant) -> Connection {
    let mut rng = Rng::from_seed([seed; 32]);
    Connection::with_upgrade_role(
        endpoint,
        upgrade,
        &keypair_from_seed(seed),
        None,
        &mut rng,
        &ConnectionConfig::default(),
        now,
    )
}

/// Moves bytes both ways until neither side has any; returns each side's events.
fn pump(
    a: &mut Connection,
    b: &mut Connection,
    now: Instant,
) -> (Vec<ConnectionEvent>, Vec<ConnectionEvent>) {
    let mut protocols = Protocols::default();
    protocols.insert("/test/1");
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    loop {
        let to_b = a.poll_transmit();
        let to_a = b.poll_transmit();
        if to_a.is_none() && to_b.is_none() {
            break;
        }
        if let Some(bytes) = to_b {
            b.handle_input(now, &bytes, &protocols);
        }
        if let Some(bytes) = to_a {
            a.handle_input(now, &bytes, &protocols);
        }
        ea.extend(std::iter::from_fn(|| a.poll_event()));
        eb.extend(std::iter::from_fn(|| b.poll_event()));
    }
    (ea, eb)
}

fn established(events: &[ConnectionEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, ConnectionEvent::Established { .. }))
}

#[test]
fn both_dialed_one_upgrades_as_listener() {
    let now = crate::test_now();
    let mut a = connection(1, Endpoint::Dialer, Endpoint::Dialer, now);
    let mut b = connection(2, Endpoint::Dialer, Endpoint::Listener, now);
    assert_eq!(b.endpoint(), Endpoint::Dialer);
    assert_eq!(b.upgrade_role(), Endpoint::Listener);
    assert!(b.poll_transmit().is_none(), "an upgrade listener waits");
    let (ea, eb) = pump(&mut a, &mut b, now);
    assert!(established(&ea) && established(&eb));
    assert_eq!(
        a.remote_peer(),
        Some(keypair_from_seed(2).public().to_peer_id())
    );
    assert_eq!(
        b.remote_peer(),
        Some(keypair_from_seed(1).public().to_peer_id())
    );
    // Yamux ids follow the upgrade role: odd for the client, even for the server.
    let sa = a.open_stream(vec!["/test/1".into()]).unwrap();
    let sb = b.open_stream(vec!["/test/1".into()]).unwrap();
    assert_eq!((sa.0 % 2, sb.0 % 2), (1, 0));
    let (ea, eb) = pump(&mut a, &mut b, now);
    for (events, mine, theirs) in [(&ea, sa, sb), (&eb, sb, sa)] {
        assert!(events.contains(&ConnectionEvent::OutboundStream {
            stream: mine,
            protocol: "/test/1".into()
        }));
        assert!(events.contains(&ConnectionEvent::InboundStream {
            stream: theirs,
            protocol: "/test/1".into()
        }));
    }
}

#[test]
fn an_accepted_socket_can_upgrade_as_dialer() {
    let now = crate::test_now();
    let mut a = connection(3, Endpoint::Listener, Endpoint::Dialer, now);
    let mut b = connection(4, Endpoint::Dialer, Endpoint::Listener, now);
    let (ea, eb) = pump(&mut a, &mut b, now);
    assert!(established(&ea) && established(&eb));
    assert_eq!(a.endpoint(), Endpoint::Listener);
    assert_eq!(a.open_stream(vec!["/test/1".into()]).unwrap().0 % 2, 1);
}

#[test]
fn two_upgrade_listeners_wait_until_the_upgrade_timeout() {
    let now = crate::test_now();
    let mut a = connection(5, Endpoint::Dialer, Endpoint::Listener, now);
    let mut b = connection(6, Endpoint::Dialer, Endpoint::Listener, now);
    let (ea, eb) = pump(&mut a, &mut b, now);
    assert!(ea.is_empty() && eb.is_empty(), "neither speaks first");
    let later = now + ConnectionConfig::default().upgrade_timeout + Duration::from_millis(1);
    assert!(a.poll_timeout().is_some_and(|t| t <= later));
    a.handle_timeout(later);
    assert_eq!(
        a.poll_event(),
        Some(ConnectionEvent::Closed(ConnectionError::UpgradeTimeout))
    );
}

fn events(c: &mut Connection) -> Vec<ConnectionEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// The upgrade dialer pipelines: its first Noise message goes with its `/noise`
/// proposal, and Yamux (here with a stream it opens) with its `/yamux/1.0.0` proposal.
/// So it is established after one round trip of its own and the listener after one and
/// a half, where waiting for each answer would take two and a half and three.
#[test]
fn the_upgrade_dialer_pipelines_its_proposals() {
    let now = crate::test_now();
    let mut protocols = Protocols::default();
    protocols.insert("/test/1");
    let mut d = connection(1, Endpoint::Dialer, Endpoint::Dialer, now);
    let mut l = connection(2, Endpoint::Listener, Endpoint::Listener, now);

    // Flight 1: header, `/noise` and Noise message 1. The listener answers with its
    // header, `/noise` and message 2 at once.
    let flight1 = d.poll_transmit().expect("the dialer speaks first");
    l.handle_input(now, &flight1, &protocols);
    let flight2 = l.poll_transmit().expect("header, /noise and message 2");
    assert!(d.poll_transmit().is_none(), "nothing before message 2");

    // Flight 2 completes the dialer: established, it opens a stream.
    d.handle_input(now, &flight2, &protocols);
    assert!(
        established(&events(&mut d)),
        "the dialer after one round trip"
    );
    let stream = d.open_stream(vec!["/test/1".to_owned()]).unwrap();

    // Flight 3: message 3, the muxer proposal, Yamux frames: the listener is
    // established and has the stream.
    let flight3 = d.poll_transmit().expect("message 3 and what follows");
    l.handle_input(now, &flight3, &protocols);
    let got = events(&mut l);
    assert!(established(&got), "the listener after flight 3");
    assert!(
        got.iter().any(|e| matches!(
            e,
            ConnectionEvent::InboundStream { protocol, .. } if protocol == "/test/1"
        )),
        "the stream opened behind the proposal: {got:?}"
    );

    // The listener's answer (muxer confirmation, Yamux, stream confirmation) settles
    // the dialer's side.
    let (ed, _) = pump(&mut d, &mut l, now);
    assert!(
        ed.iter().any(
            |e| matches!(e, ConnectionEvent::OutboundStream { stream: s, .. } if *s == stream)
        ),
        "{ed:?}"
    );
    assert!(d.is_open() && l.is_open());
}

mod split_delivery {
    use proptest::prelude::*;

    use super::*;

    /// Moves bytes both ways in pieces of the given sizes (cycling) until neither side
    /// has any left; returns whether both sides are established.
    fn pump_in_pieces(d: &mut Connection, l: &mut Connection, pieces: &[usize]) -> bool {
        let now = crate::test_now();
        let mut protocols = Protocols::default();
        protocols.insert("/test/1");
        let (mut to_l, mut to_d): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
        let (mut ed, mut el) = (false, false);
        for k in 0..10_000 {
            while let Some(b) = d.poll_transmit() {
                to_l.extend_from_slice(&b);
            }
            while let Some(b) = l.poll_transmit() {
                to_d.extend_from_slice(&b);
            }
            if to_l.is_empty() && to_d.is_empty() {
                break;
            }
            let n = pieces[k % pieces.len()].min(to_l.len());
            let chunk: Vec<u8> = to_l.drain(..n).collect();
            l.handle_input(now, &chunk, &protocols);
            let n = pieces[(k + 1) % pieces.len()].min(to_d.len());
            let chunk: Vec<u8> = to_d.drain(..n).collect();
            d.handle_input(now, &chunk, &protocols);
            ed |= established(&events(d));
            el |= established(&events(l));
        }
        ed && el && d.is_open() && l.is_open()
    }

    proptest! {
        /// However the pipelined flights are cut, both sides come up.
        #[test]
        fn pipelined_upgrades_survive_any_split(
            pieces in proptest::collection::vec(1usize..300, 1..8),
        ) {
            let now = crate::test_now();
            let mut d = connection(1, Endpoint::Dialer, Endpoint::Dialer, now);
            let mut l = connection(2, Endpoint::Listener, Endpoint::Listener, now);
            d.open_stream(vec!["/test/1".to_owned()]).ok();
            prop_assert!(pump_in_pieces(&mut d, &mut l, &pieces));
        }
    }
}
