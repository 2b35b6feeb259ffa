//! Session tests: a pair of sessions wired in memory, with a simulated clock that jumps
//! to the next delivery or timeout, plus raw-frame tests of protocol violations.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::frame::{Flags, FrameType, HEADER_LEN, Header};
use super::{Config, Event, Mode, Session, StreamId};

mod pair;
mod properties;
mod raw;

/// The one clock read of a test.
fn base() -> Instant {
    crate::test_now()
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

// ---- raw frames ----

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
