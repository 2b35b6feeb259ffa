//! Two sessions talking: streams, flow control, window tuning, limits, GoAway, pings.

use std::time::Duration;

use super::{Pair, Side, pattern};
use crate::conn::yamux::{Config, Event, INITIAL_WINDOW, Mode, Session, StreamId, YamuxError};

#[test]
fn open_data_fin_both_ways() {
    let mut p = Pair::new();
    let id = p.client.session.open_stream().unwrap();
    assert_eq!(id, StreamId(1));
    p.client.send(id, b"hello".to_vec(), true);
    p.drive();
    assert!(p.server.has(&Event::InboundStream(id)));
    assert!(p.client.has(&Event::OutboundAccepted(id)));
    assert!(p.server.has(&Event::Finished(id)));
    assert_eq!(p.server.received[&id], b"hello");
    // Half-closed: the server can still answer.
    assert_eq!(p.server.session.num_streams(), 1);
    p.server.send(id, b"world".to_vec(), true);
    p.drive();
    assert_eq!(p.client.received[&id], b"world");
    assert!(p.client.has(&Event::Finished(id)));
    assert_eq!(p.client.session.num_streams(), 0);
    assert_eq!(p.server.session.num_streams(), 0);
    assert_eq!(
        p.client.session.write(id, b"x"),
        Err(YamuxError::UnknownStream)
    );

    // And a stream opened by the server gets an even id.
    let sid = p.server.session.open_stream().unwrap();
    assert_eq!(sid, StreamId(2));
    p.server.send(sid, b"ping".to_vec(), true);
    p.drive();
    assert_eq!(p.client.received[&sid], b"ping");
}

#[test]
fn write_after_close_fails() {
    let mut p = Pair::new();
    let id = p.client.session.open_stream().unwrap();
    p.client.session.close(id).unwrap();
    assert_eq!(p.client.session.close(id), Ok(()));
    assert_eq!(
        p.client.session.write(id, b"late"),
        Err(YamuxError::StreamClosed)
    );
}

#[test]
fn reset_is_reported_and_forgets_stream() {
    let mut p = Pair::new();
    let id = p.client.session.open_stream().unwrap();
    p.client.send(id, b"abc".to_vec(), false);
    p.drive();
    p.server.session.reset(id).unwrap();
    assert_eq!(p.server.session.num_streams(), 0);
    // The client keeps writing until the RST lands; those bytes are ignored.
    p.client.session.write(id, b"late").unwrap();
    p.drive();
    assert!(p.client.has(&Event::Reset(id)));
    assert_eq!(p.client.session.num_streams(), 0);
    assert_eq!(p.server.received[&id], b"abc");
    assert_eq!(p.client.session.reset(id), Err(YamuxError::UnknownStream));
}

#[test]
fn writer_blocks_at_initial_window_until_consumed() {
    let mut p = Pair::new();
    p.server.auto_consume = false;
    let id = p.client.session.open_stream().unwrap();
    let total = 3 * INITIAL_WINDOW as usize;
    p.client.send(id, pattern(1, total), true);
    p.drive();
    assert_eq!(p.server.received[&id].len(), INITIAL_WINDOW as usize);
    assert_eq!(p.client.session.send_window(id), Some(0));
    assert!(
        !p.client
            .events
            .iter()
            .any(|e| matches!(e, Event::Writable(_)))
    );

    p.server.consume_all(p.now);
    p.drive();
    assert!(p.client.has(&Event::Writable(id)));
    // Consumption releases the window in steps until everything is through.
    for _ in 0..16 {
        p.server.consume_all(p.now);
        p.drive();
    }
    assert_eq!(p.server.received[&id], pattern(1, total));
    assert!(p.server.has(&Event::Finished(id)));
}

/// Sends `total` bytes over one stream with 50 ms one-way latency; returns the server
/// side and how long the data took.
fn transfer_with_latency(max_stream_window: usize, total: usize) -> (Side, Duration) {
    let server = Config {
        max_stream_window,
        ..Config::default()
    };
    let mut p = Pair::with_configs(Config::default(), server, Duration::from_millis(50));
    let id = p.client.session.open_stream().unwrap();
    p.client.send(id, pattern(2, total), false);
    let start = p.now;
    p.drive();
    assert_eq!(p.server.received[&id], pattern(2, total));
    let elapsed = p.server.last_data.unwrap() - start;
    (p.server, elapsed)
}

#[test]
fn window_grows_with_rtt_up_to_max() {
    let max = 1024 * 1024;
    let total = 8 * 1024 * 1024;
    let (server, tuned) = transfer_with_latency(max, total);
    assert_eq!(server.session.rtt(), Some(Duration::from_millis(100)));
    assert_eq!(server.session.receive_window(StreamId(1)), Some(max));
    assert_eq!(server.largest_window, max);
    // A window that cannot grow needs about 4x as many round trips (32 vs 8 plus ramp).
    let (fixed_server, fixed) = transfer_with_latency(INITIAL_WINDOW as usize, total);
    assert_eq!(fixed_server.largest_window, INITIAL_WINDOW as usize);
    assert!(fixed > tuned * 5 / 2, "tuned {tuned:?}, fixed {fixed:?}");
}

#[test]
fn a_stream_window_limit_stops_growth_exactly() {
    for (limit, expected) in [
        (600 * 1024, 600 * 1024),
        // Below the protocol's initial window, the initial window stays.
        (2048, INITIAL_WINDOW as usize),
    ] {
        let mut p = Pair::with_configs(
            Config::default(),
            Config::default(),
            Duration::from_millis(50),
        );
        let id = p.client.session.open_stream().unwrap();
        p.client.send(id, pattern(6, 1), false);
        p.drive();
        p.server.session.limit_receive_window(id, limit);
        p.client.send(id, pattern(7, 8 * 1024 * 1024), false);
        p.drive();
        assert_eq!(p.server.session.receive_window(id), Some(expected));
        assert_eq!(p.server.largest_window, expected);
        assert_eq!(p.server.received[&id].len(), 1 + 8 * 1024 * 1024);
    }
}

#[test]
fn window_stays_fixed_without_latency() {
    let mut p = Pair::new();
    let id = p.client.session.open_stream().unwrap();
    p.client.send(id, pattern(3, 2 * 1024 * 1024), false);
    p.drive();
    assert_eq!(p.server.session.rtt(), Some(Duration::ZERO));
    assert_eq!(p.server.largest_window, INITIAL_WINDOW as usize);
}

#[test]
fn connection_budget_caps_growth() {
    // Two streams, budget for the two initial windows plus 256 KiB more.
    let budget = 3 * INITIAL_WINDOW as usize;
    let server = Config {
        max_connection_receive_window: Some(budget),
        ..Config::default()
    };
    let mut p = Pair::with_configs(Config::default(), server, Duration::from_millis(20));
    let a = p.client.session.open_stream().unwrap();
    let b = p.client.session.open_stream().unwrap();
    p.client.send(a, pattern(4, 4 * 1024 * 1024), false);
    p.client.send(b, pattern(5, 4 * 1024 * 1024), false);
    p.drive();
    let sum =
        p.server.session.receive_window(a).unwrap() + p.server.session.receive_window(b).unwrap();
    assert!(sum <= budget, "windows {sum} exceed budget {budget}");
    assert!(sum > 2 * INITIAL_WINDOW as usize);
    assert_eq!(p.server.received[&a], pattern(4, 4 * 1024 * 1024));
}

#[test]
fn sixteen_mib_both_ways_arrive_intact() {
    let mut p = Pair::with_configs(
        Config::default(),
        Config::default(),
        Duration::from_millis(5),
    );
    let id = p.client.session.open_stream().unwrap();
    let n = 16 * 1024 * 1024;
    p.client.send(id, pattern(6, n), true);
    p.drive();
    p.server.send(id, pattern(7, n), true);
    p.drive();
    assert!(p.server.received[&id] == pattern(6, n));
    assert!(p.client.received[&id] == pattern(7, n));
    assert_eq!(p.client.session.num_streams(), 0);
    assert_eq!(p.server.session.num_streams(), 0);
}

#[test]
fn hundred_concurrent_streams_echo() {
    let mut p = Pair::new();
    p.server.echo = true;
    let ids: Vec<StreamId> = (0..100)
        .map(|_| p.client.session.open_stream().unwrap())
        .collect();
    for &id in &ids {
        p.client.send(id, pattern(id.0, 20_000), true);
    }
    p.drive();
    for &id in &ids {
        assert_eq!(p.server.received[&id], pattern(id.0, 20_000));
        assert_eq!(p.client.received[&id], pattern(id.0, 20_000), "stream {id}");
        assert!(p.client.has(&Event::Finished(id)));
    }
    assert_eq!(p.client.session.num_streams(), 0);
    assert_eq!(p.server.session.num_streams(), 0);
}

#[test]
fn inbound_streams_beyond_cap_are_reset() {
    let server = Config {
        max_streams: 4,
        ..Config::default()
    };
    let mut p = Pair::with_configs(Config::default(), server, Duration::ZERO);
    let ids: Vec<StreamId> = (0..6)
        .map(|_| p.client.session.open_stream().unwrap())
        .collect();
    p.drive();
    let inbound = p
        .server
        .events
        .iter()
        .filter(|e| matches!(e, Event::InboundStream(_)))
        .count();
    assert_eq!(inbound, 4);
    assert_eq!(p.server.session.num_streams(), 4);
    assert!(p.client.has(&Event::Reset(ids[4])));
    assert!(p.client.has(&Event::Reset(ids[5])));
    assert_eq!(p.client.session.num_streams(), 4);
    // Our own opens are capped by our own config.
    let own = Config {
        max_streams: 1,
        ..Config::default()
    };
    let mut s = Session::new(Mode::Client, own, p.now);
    s.open_stream().unwrap();
    assert_eq!(s.open_stream(), Err(YamuxError::TooManyStreams));
}

#[test]
fn go_away_stops_new_streams_only() {
    let mut p = Pair::new();
    let id = p.client.session.open_stream().unwrap();
    p.drive();
    p.client.session.go_away(0);
    p.drive();
    assert!(p.server.has(&Event::GoAway { code: 0 }));
    assert_eq!(
        p.server.session.open_stream(),
        Err(YamuxError::GoAwayReceived)
    );
    assert_eq!(
        p.client.session.open_stream(),
        Err(YamuxError::SessionClosed)
    );
    p.server.send(id, b"still here".to_vec(), true);
    p.client.send(id, Vec::new(), true);
    p.drive();
    assert_eq!(p.client.received[&id], b"still here");
    assert!(p.client.session.is_closed());
    assert!(p.server.session.is_closed());
}

#[test]
fn rtt_is_measured_and_pings_repeat_while_data_flows() {
    let mut p = Pair::with_configs(
        Config::default(),
        Config::default(),
        Duration::from_millis(30),
    );
    p.drive();
    assert_eq!(p.client.session.rtt(), Some(Duration::from_millis(60)));
    assert!(p.client.has(&Event::Rtt(Duration::from_millis(60))));
    // Idle: no timer.
    assert_eq!(p.client.session.poll_timeout(), None);
    let id = p.client.session.open_stream().unwrap();
    p.client.send(id, b"x".to_vec(), false);
    p.step();
    assert!(p.client.session.poll_timeout().is_some());
    p.drive();
    let pings = p
        .client
        .events
        .iter()
        .filter(|e| matches!(e, Event::Rtt(_)))
        .count();
    assert_eq!(pings, 2);
}
