//! Session tests: a pair of sessions wired in memory, with a simulated clock that jumps
//! to the next delivery or timeout, plus raw-frame tests of protocol violations.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proptest::prelude::*;

use super::frame::{Flags, FrameType, GO_AWAY_PROTOCOL_ERROR, HEADER_LEN, Header};
use super::{Config, Event, INITIAL_WINDOW, Mode, Session, StreamId, YamuxError};

/// The one clock read of a test.
fn base() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// Bytes `n` long, distinct per `seed`, so misrouted or reordered data shows.
fn pattern(seed: u32, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7)) as u8
        })
        .collect()
}

/// Data an application side still wants to write on a stream.
#[derive(Default)]
struct Outgoing {
    data: Vec<u8>,
    pos: usize,
    close: bool,
    closed: bool,
}

/// One end: a session plus a tiny application.
struct Side {
    session: Session,
    /// Every event except `Data`, in order.
    events: Vec<Event>,
    received: BTreeMap<StreamId, Vec<u8>>,
    /// Consume data as soon as it arrives; otherwise it piles up in `unconsumed`.
    auto_consume: bool,
    unconsumed: BTreeMap<StreamId, usize>,
    /// Write back whatever arrives, and close when the peer closes.
    echo: bool,
    outgoing: BTreeMap<StreamId, Outgoing>,
    /// Bytes on their way to the other side, with their delivery time.
    in_flight: VecDeque<(Instant, BytesMut)>,
    largest_window: usize,
    /// When the latest data arrived.
    last_data: Option<Instant>,
}

impl Side {
    fn new(mode: Mode, config: Config, now: Instant) -> Self {
        Self {
            session: Session::new(mode, config, now),
            events: Vec::new(),
            received: BTreeMap::new(),
            auto_consume: true,
            unconsumed: BTreeMap::new(),
            echo: false,
            outgoing: BTreeMap::new(),
            in_flight: VecDeque::new(),
            largest_window: 0,
            last_data: None,
        }
    }

    /// Queues `data` for `stream`, optionally followed by FIN.
    fn send(&mut self, stream: StreamId, data: Vec<u8>, close: bool) {
        let out = self.outgoing.entry(stream).or_default();
        out.data.extend_from_slice(&data);
        out.close |= close;
    }

    /// Writes what the windows allow; true if anything happened.
    fn pump_writes(&mut self) -> bool {
        let mut progress = false;
        for (&id, out) in &mut self.outgoing {
            if out.pos < out.data.len() {
                let Ok(n) = self.session.write(id, &out.data[out.pos..]) else {
                    continue;
                };
                out.pos += n;
                progress |= n > 0;
            }
            if out.pos == out.data.len() && out.close && !out.closed {
                out.closed = true;
                let _ = self.session.close(id);
                progress = true;
            }
        }
        progress
    }

    fn drain_events(&mut self, now: Instant) -> bool {
        let mut progress = false;
        while let Some(event) = self.session.poll_event() {
            progress = true;
            match event {
                Event::Data { stream, data } => {
                    self.last_data = Some(now);
                    self.received
                        .entry(stream)
                        .or_default()
                        .extend_from_slice(&data);
                    if self.echo {
                        self.send(stream, data.to_vec(), false);
                    }
                    if self.auto_consume {
                        self.session.consumed(now, stream, data.len());
                    } else {
                        *self.unconsumed.entry(stream).or_default() += data.len();
                    }
                }
                other => {
                    if let (true, Event::Finished(id)) = (self.echo, &other) {
                        self.send(*id, Vec::new(), true);
                    }
                    self.events.push(other);
                }
            }
        }
        for &id in self.received.keys() {
            let w = self.session.receive_window(id).unwrap_or(0);
            self.largest_window = self.largest_window.max(w);
        }
        progress
    }

    fn consume_all(&mut self, now: Instant) {
        for (id, n) in std::mem::take(&mut self.unconsumed) {
            self.session.consumed(now, id, n);
        }
    }

    fn transmit(&mut self, now: Instant, delay: Duration) -> bool {
        let mut buf = BytesMut::new();
        if !self.session.poll_transmit(&mut buf) {
            return false;
        }
        self.in_flight.push_back((now + delay, buf));
        true
    }

    fn has(&self, event: &Event) -> bool {
        self.events.contains(event)
    }
}

/// Two sessions wired in memory; time jumps to the next delivery or timeout.
struct Pair {
    now: Instant,
    /// One-way latency.
    delay: Duration,
    client: Side,
    server: Side,
}

impl Pair {
    fn new() -> Self {
        Self::with_configs(Config::default(), Config::default(), Duration::ZERO)
    }

    fn with_configs(client: Config, server: Config, delay: Duration) -> Self {
        let now = base();
        Self {
            now,
            delay,
            client: Side::new(Mode::Client, client, now),
            server: Side::new(Mode::Server, server, now),
        }
    }

    /// Does everything possible at the current time; true if anything happened.
    fn step(&mut self) -> bool {
        let (now, delay) = (self.now, self.delay);
        let mut progress = false;
        for side in [&mut self.client, &mut self.server] {
            progress |= side.pump_writes();
            progress |= side.drain_events(now);
            progress |= side.transmit(now, delay);
        }
        progress |= deliver(now, &mut self.client, &mut self.server);
        progress |= deliver(now, &mut self.server, &mut self.client);
        progress
    }

    /// Runs until nothing is in flight and no timer is armed.
    fn drive(&mut self) {
        for _ in 0..1_000_000 {
            while self.step() {}
            let next = [
                self.client.in_flight.front().map(|(t, _)| *t),
                self.server.in_flight.front().map(|(t, _)| *t),
                self.client.session.poll_timeout(),
                self.server.session.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            self.now = self.now.max(next);
            self.client.session.handle_timeout(self.now);
            self.server.session.handle_timeout(self.now);
        }
        panic!("pair did not settle");
    }
}

/// Hands `from`'s due bytes to `to`; a protocol error fails the test.
fn deliver(now: Instant, from: &mut Side, to: &mut Side) -> bool {
    let mut progress = false;
    while from.in_flight.front().is_some_and(|(t, _)| *t <= now) {
        let Some((_, bytes)) = from.in_flight.pop_front() else {
            break;
        };
        to.session
            .handle_input(now, &bytes)
            .expect("no protocol error between our sessions");
        progress = true;
    }
    progress
}

// ---- pair tests ----

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

// ---- raw-frame tests ----

fn frame(ty: FrameType, flags: Flags, stream: u32, length: u32) -> Vec<u8> {
    Header {
        frame_type: ty,
        flags,
        stream: StreamId(stream),
        length,
    }
    .encode()
    .to_vec()
}

fn data_frame(flags: Flags, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = frame(FrameType::Data, flags, stream, payload.len() as u32);
    f.extend_from_slice(payload);
    f
}

/// Decodes every header in `bytes`, skipping Data payloads.
fn headers(bytes: &[u8]) -> Vec<Header> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= HEADER_LEN {
        let mut h = [0; HEADER_LEN];
        h.copy_from_slice(&rest[..HEADER_LEN]);
        let header = Header::decode(&h).unwrap();
        let skip = if header.frame_type == FrameType::Data {
            header.length as usize
        } else {
            0
        };
        rest = &rest[HEADER_LEN + skip..];
        out.push(header);
    }
    out
}

fn transmitted(s: &mut Session) -> Vec<Header> {
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    headers(&out)
}

fn assert_violation(mode: Mode, input: &[u8], expected: YamuxError) {
    let now = base();
    let mut s = Session::new(mode, Config::default(), now);
    transmitted(&mut s);
    assert_eq!(s.handle_input(now, input), Err(expected));
    assert!(s.is_closed());
    let sent = transmitted(&mut s);
    assert_eq!(sent.last(), Some(&Header::go_away(GO_AWAY_PROTOCOL_ERROR)));
    assert_eq!(
        s.handle_input(now, &frame(FrameType::Ping, Flags::SYN, 0, 1)),
        Err(YamuxError::SessionClosed)
    );
}

#[test]
fn protocol_violations_end_the_session() {
    let mut bad_version = frame(FrameType::Ping, Flags::SYN, 0, 1);
    bad_version[0] = 1;
    assert_violation(
        Mode::Server,
        &bad_version,
        YamuxError::UnsupportedVersion(1),
    );
    let mut bad_type = frame(FrameType::Ping, Flags::SYN, 0, 1);
    bad_type[1] = 9;
    assert_violation(Mode::Server, &bad_type, YamuxError::InvalidFrameType(9));
    // Server receiving a SYN with the server's own (even) parity, and vice versa.
    let even = frame(FrameType::WindowUpdate, Flags::SYN, 2, 0);
    assert_violation(Mode::Server, &even, YamuxError::InvalidStreamId);
    let odd = frame(FrameType::WindowUpdate, Flags::SYN, 1, 0);
    assert_violation(Mode::Client, &odd, YamuxError::InvalidStreamId);
    assert_violation(
        Mode::Server,
        &frame(FrameType::Data, Flags::NONE, 0, 0),
        YamuxError::InvalidStreamId,
    );
    assert_violation(
        Mode::Server,
        &frame(FrameType::Ping, Flags::SYN, 3, 0),
        YamuxError::InvalidStreamId,
    );

    // More than the window, announced by a header alone.
    let over = frame(FrameType::Data, Flags::SYN, 1, INITIAL_WINDOW + 1);
    assert_violation(Mode::Server, &over, YamuxError::ReceiveWindowExceeded);
    // More than the window across frames.
    let mut two = data_frame(Flags::SYN, 1, &vec![0; 200 * 1024]);
    two.extend(frame(FrameType::Data, Flags::NONE, 1, 100 * 1024));
    assert_violation(Mode::Server, &two, YamuxError::ReceiveWindowExceeded);
    // Longer than any window could be, even for an unknown stream.
    let huge = frame(FrameType::Data, Flags::NONE, 5, 16 * 1024 * 1024 + 1);
    assert_violation(Mode::Server, &huge, YamuxError::FrameTooLarge);

    let mut reuse = frame(FrameType::WindowUpdate, Flags::SYN, 1, 0);
    reuse.extend(frame(FrameType::WindowUpdate, Flags::RST, 1, 0));
    reuse.extend(frame(FrameType::WindowUpdate, Flags::SYN, 1, 0));
    assert_violation(Mode::Server, &reuse, YamuxError::StreamIdReused);
}

#[test]
fn input_split_anywhere_gives_same_result() {
    let mut input = data_frame(Flags::SYN, 1, &pattern(8, 5000));
    input.extend(frame(FrameType::Ping, Flags::SYN, 0, 42));
    input.extend(data_frame(Flags::FIN, 1, &pattern(9, 3000)));
    for chunk in [1, 5, 11, 12, 13, 4096, input.len()] {
        let now = base();
        let mut s = Session::new(Mode::Server, Config::default(), now);
        for piece in input.chunks(chunk) {
            s.handle_input(now, piece).unwrap();
        }
        let mut got = Vec::new();
        let mut finished = false;
        while let Some(e) = s.poll_event() {
            match e {
                Event::Data { data, .. } => got.extend_from_slice(&data),
                Event::Finished(StreamId(1)) => finished = true,
                _ => {}
            }
        }
        let mut want = pattern(8, 5000);
        want.extend(pattern(9, 3000));
        assert_eq!(got, want, "chunk {chunk}");
        assert!(finished);
    }
}

#[test]
fn pings_are_answered_first_and_stray_pongs_ignored() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    transmitted(&mut s);
    s.handle_input(now, &frame(FrameType::WindowUpdate, Flags::SYN, 1, 0))
        .unwrap();
    transmitted(&mut s);
    assert_eq!(s.write(StreamId(1), b"queued data"), Ok(11));
    s.handle_input(now, &frame(FrameType::Ping, Flags::SYN, 0, 77))
        .unwrap();
    s.handle_input(now, &frame(FrameType::Ping, Flags::ACK, 0, 12345))
        .unwrap();
    let sent = transmitted(&mut s);
    assert_eq!(sent[0], Header::ping(Flags::ACK, 77));
    assert_eq!(sent[1].frame_type, FrameType::Data);
    assert_eq!(s.rtt(), None);
}

#[test]
fn ping_floods_are_bounded() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    transmitted(&mut s);
    let flood: Vec<u8> = (0..10_000)
        .flat_map(|i| frame(FrameType::Ping, Flags::SYN, 0, i))
        .collect();
    s.handle_input(now, &flood).unwrap();
    assert_eq!(
        transmitted(&mut s).len(),
        Config::default().max_pending_pongs
    );
}

#[test]
fn late_frames_for_unknown_streams_are_ignored() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    let mut input = data_frame(Flags::NONE, 7, b"late");
    input.extend(frame(FrameType::WindowUpdate, Flags::NONE, 9, 1000));
    input.extend(frame(FrameType::WindowUpdate, Flags::RST, 11, 0));
    s.handle_input(now, &input).unwrap();
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.num_streams(), 0);
}

#[test]
fn data_after_fin_resets_only_that_stream() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    let mut input = data_frame(Flags::SYN | Flags::FIN, 1, b"a");
    input.extend(data_frame(Flags::NONE, 1, b"b"));
    s.handle_input(now, &input).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events.last(), Some(&Event::Reset(StreamId(1))));
    assert!(!s.is_closed());
    assert!(transmitted(&mut s).contains(&Header::window_update(StreamId(1), Flags::RST, 0)));
}

// ---- property tests ----

/// A frame that is mostly well formed, to reach deep into the state machine.
fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    (0u8..5, 0u16..16, 0u32..8, 0u32..300, any::<bool>()).prop_map(|(ty, flags, id, len, big)| {
        let length = if big { len.wrapping_mul(4099) } else { len };
        let mut f = vec![0, ty];
        f.extend(flags.to_be_bytes());
        f.extend(id.to_be_bytes());
        f.extend(length.to_be_bytes());
        if ty == 0 {
            f.extend(std::iter::repeat_n(0xAB, length.min(300) as usize));
        }
        f
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), split in 1usize..64) {
        let now = base();
        for mode in [Mode::Client, Mode::Server] {
            let mut s = Session::new(mode, Config::default(), now);
            for piece in bytes.chunks(split) {
                if s.handle_input(now, piece).is_err() {
                    break;
                }
            }
            while s.poll_event().is_some() {}
            s.poll_transmit(&mut BytesMut::new());
        }
    }

    #[test]
    fn random_frames_never_panic_and_keep_limits(
        frames in proptest::collection::vec(arb_frame(), 0..64),
        split in 1usize..40,
    ) {
        let now = base();
        let config = Config { max_streams: 3, ..Config::default() };
        let mut s = Session::new(Mode::Server, config, now);
        let input: Vec<u8> = frames.concat();
        let mut open = BTreeSet::new();
        for (i, piece) in input.chunks(split).enumerate() {
            let t = now + Duration::from_millis(i as u64);
            let result = s.handle_input(t, piece);
            while let Some(e) = s.poll_event() {
                match e {
                    Event::InboundStream(id) => { open.insert(id); }
                    Event::Data { stream, data } => s.consumed(t, stream, data.len()),
                    _ => {}
                }
            }
            for &id in &open {
                let _ = s.write(id, b"reply");
                prop_assert!(s.receive_window(id).is_none_or(|w| w <= 16 * 1024 * 1024));
            }
            prop_assert!(s.num_streams() <= 3);
            s.poll_transmit(&mut BytesMut::new());
            if result.is_err() {
                prop_assert!(s.is_closed());
                break;
            }
        }
    }
}

#[test]
fn writes_split_into_capped_frames() {
    let now = base();
    let huge = Config {
        max_frame_payload: usize::MAX,
        ..Config::default()
    };
    for (config, sizes) in [
        (Config::default(), vec![65536; 4]),
        (huge, vec![INITIAL_WINDOW]),
    ] {
        let mut s = Session::new(Mode::Client, config, now);
        let id = s.open_stream().unwrap();
        transmitted(&mut s);
        let n = s.write(id, &vec![1; 300 * 1024]).unwrap();
        assert_eq!(n, INITIAL_WINDOW as usize);
        let lengths: Vec<u32> = transmitted(&mut s).iter().map(|h| h.length).collect();
        assert_eq!(lengths, sizes);
        assert_eq!(s.write(id, b"more"), Ok(0));
    }
}
