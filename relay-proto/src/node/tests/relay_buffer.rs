//! The relay's buffer per circuit direction: `buffer_size` at its boundary, and
//! `max_buffer_time` for a receiver that stops taking bytes.
//!
//! A relay holds bytes for a receiver only when the receiver's node does not read its
//! connection (its application not reading only stops the end-to-end window, upstream
//! of the relay), so the stalled receiver here is a frozen node.

use std::time::{Duration, Instant};

use super::Net;
use super::relay::{ECHO, SECS, dial_via_relay, net, relay_config, reserve};
use crate::hop::{Direction, RelayConfig};
use crate::node::conn::StreamRole;
use crate::node::{CircuitEnd, Event, StreamRef};

/// A relay (0) configured by `f` with data and duration limits off, a listener (1)
/// serving ECHO and a dialer (2) with a stream to it through the relay.
fn circuit(f: impl FnOnce(&mut RelayConfig)) -> (Net, StreamRef) {
    let mut net = net(
        relay_config(|r| {
            r.max_circuit_bytes = 0;
            r.max_circuit_duration = Duration::ZERO;
            f(r);
        }),
        2,
    );
    reserve(&mut net, 1);
    net.nodes[1].register_protocol(ECHO);
    let conn = dial_via_relay(&mut net, 2, 1).expect("circuit");
    let stream = net.open(2, conn, ECHO).expect("stream");
    (net, stream)
}

/// The relay's stream on which the dialer's bytes arrive; the bytes it holds for the
/// listener; since when they wait without progress.
fn relay_side(net: &Net) -> (StreamRef, usize, Option<Instant>) {
    for (id, c) in &net.nodes[0].conns {
        for (stream, role) in &c.streams {
            if let StreamRole::Splice(splice) = role
                && splice.direction == Direction::SrcToDst
            {
                let held = splice.pending.iter().map(|b| b.len()).sum();
                let s = StreamRef {
                    conn: *id,
                    stream: *stream,
                };
                return (s, held, splice.stalled_since);
            }
        }
    }
    panic!("no spliced stream");
}

/// The relay's receive window on the dialer's side of the circuit.
fn window(net: &Net) -> usize {
    let (s, _, _) = relay_side(net);
    net.nodes[0].conns[&s.conn]
        .conn
        .receive_window(s.stream)
        .unwrap()
}

/// Keeps the dialer's send window full for `time`.
fn push(net: &mut Net, stream: StreamRef, time: Duration) {
    let chunk = vec![5u8; 1 << 20];
    let end = net.now + time;
    while net.now < end {
        let _ = net.nodes[2].stream_write(net.now, stream, &chunk);
        net.run_for(Duration::from_millis(5));
    }
}

/// With the relay holding bytes for a stalled listener: one millisecond short of
/// `limit` after the stall began the circuit stands, and at the limit it is reset.
fn reset_exactly_at_the_limit(net: &mut Net, limit: Duration) {
    let (_, held, since) = relay_side(net);
    assert!(held > 0);
    let since = since.expect("the direction is stalled");
    net.run_until(since + limit - Duration::from_millis(1), |_| false);
    assert_eq!(closed(net), None);
    net.run_until(since + limit, |_| false);
    assert_eq!(
        closed(net),
        Some(CircuitEnd::BufferTimeout(Direction::SrcToDst))
    );
}

fn closed(net: &Net) -> Option<CircuitEnd> {
    net.events[0].iter().find_map(|e| match e {
        Event::RelayCircuitClosed { reason, .. } => Some(*reason),
        _ => None,
    })
}

#[test]
fn buffer_size_caps_the_relays_window_per_direction() {
    for (buffer_size, expected) in [
        (600 * 1024, Some(600 * 1024)),
        // Yamux grants 256 KiB from the start: that is the least the buffer can be.
        (2048, Some(256 * 1024)),
        // No cap of its own: the window grows past any of the above.
        (0, None),
    ] {
        let (mut net, stream) = circuit(|r| r.buffer_size = buffer_size);
        push(&mut net, stream, 3 * SECS);
        let window = window(&net);
        match expected {
            Some(expected) => assert_eq!(window, expected, "buffer_size {buffer_size}"),
            None => assert!(window > 600 * 1024, "uncapped window {window}"),
        }
    }
}

#[test]
fn a_stalled_receiver_costs_the_relay_at_most_the_buffer() {
    let (mut net, stream) = circuit(|r| {
        r.buffer_size = 300 * 1024;
        r.max_buffer_time = Duration::ZERO;
    });
    // The window grows to its cap while the listener reads; then the listener sticks.
    push(&mut net, stream, 3 * SECS);
    assert_eq!(window(&net), 300 * 1024);
    net.stall(1);
    push(&mut net, stream, 5 * SECS);
    let (_, held, _) = relay_side(&net);
    assert!(held > 0, "the relay holds bytes for the stuck listener");
    assert!(held <= 300 * 1024, "held {held}");
    assert_eq!(closed(&net), None, "max_buffer_time 0: no limit");
    // Once the listener runs again, everything arrives.
    net.resume(1);
    net.run_for(SECS);
    assert_eq!(relay_side(&net).1, 0);
}

#[test]
fn max_buffer_time_resets_a_circuit_whose_receiver_takes_nothing() {
    let limit = 10 * SECS;
    let (mut net, stream) = circuit(|r| r.max_buffer_time = limit);
    net.stall(1);
    push(&mut net, stream, 2 * SECS);
    reset_exactly_at_the_limit(&mut net, limit);
    net.run_for(SECS);
    assert!(
        net.events[2]
            .iter()
            .any(|e| matches!(e, Event::ConnectionClosed { .. })),
        "the dialer's relayed connection ends with the circuit"
    );
}

#[test]
fn a_slow_receiver_that_keeps_taking_bytes_is_not_cut_off() {
    let limit = 10 * SECS;
    let (mut net, first) = circuit(|r| r.max_buffer_time = limit);
    // Several streams: their end-to-end windows together exceed what the stuck
    // listener's connection lets the relay pass on, so the relay holds bytes.
    let conn = first.conn;
    let mut streams = vec![first];
    for _ in 0..3 {
        streams.push(net.open(2, conn, ECHO).expect("stream"));
    }
    let fill = |net: &mut Net, time: Duration| {
        for &s in &streams {
            push(net, s, time / 4);
        }
    };
    net.stall(1);
    fill(&mut net, 2 * SECS);
    assert!(relay_side(&net).1 > 0);
    // Every 8 s (under the limit) the listener runs for a moment and takes what waits;
    // the dialer fills the buffer again. Each time the clock starts over.
    for _ in 0..4 {
        net.run_for(8 * SECS);
        net.resume(1);
        net.run_for(Duration::from_millis(30));
        net.stall(1);
        fill(&mut net, SECS);
    }
    assert_eq!(closed(&net), None, "a receiver making progress is kept");
    // Then it stops for good: the limit after the last progress, the circuit goes.
    // (From a settled state, so that the dialer has window to fill the relay's buffer
    // with whatever the moments of progress above left it.)
    net.resume(1);
    net.run_for(SECS);
    net.stall(1);
    fill(&mut net, 2 * SECS);
    reset_exactly_at_the_limit(&mut net, limit);
}
