//! The Yamux session: streams, outbound queues and the public API.
//!
//! Inbound frame handling lives in the `input` submodule; this file holds the state and
//! the application-facing methods, sorted as getters, `handle_*`, commands and `poll_*`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::flow::{INITIAL_WINDOW, WindowBudget};
use super::frame::{Flags, GO_AWAY_PROTOCOL_ERROR, HEADER_LEN, Header};
use super::rtt::RttMeter;
use super::stream::Stream;
use super::{Config, Event, Mode, StreamId, YamuxError};
use crate::conn::recycle::Recycler;

mod input;

/// Largest payload of one outbound Data frame, whatever the config says.
const MAX_FRAME_PAYLOAD_CAP: usize = 256 * 1024;
/// How many closed or refused inbound stream ids we remember to detect reuse.
const RECENTLY_CLOSED: usize = 256;
/// While bulk data is written, the outbound queue grows in blocks of this size, reused
/// once the bytes polled from them are gone (sent, or encrypted elsewhere).
const DATA_BLOCK: usize = 256 * 1024;
/// Writes at least this large count as bulk data.
const BULK_WRITE: usize = 16 * 1024;

/// One Yamux session over one secured connection.
///
/// Call order: feed socket bytes with [`handle_input`](Self::handle_input) and timer
/// expiries with [`handle_timeout`](Self::handle_timeout); issue commands
/// ([`open_stream`](Self::open_stream), [`write`](Self::write), ...); then drain
/// [`poll_event`](Self::poll_event) to `None`, flush
/// [`poll_transmit`](Self::poll_transmit), and re-arm the timer from
/// [`poll_timeout`](Self::poll_timeout).
///
/// Streams are kept in a `BTreeMap`: lookups are cheap for a few hundred streams and
/// iteration order is deterministic without choosing a hasher.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    config: Config,
    /// The latest time the caller told us; stamps streams opened by `open_stream`.
    now: Instant,
    streams: BTreeMap<StreamId, Stream>,
    /// The id for our next outbound stream; `None` once ids are exhausted.
    next_id: Option<u32>,
    /// Inbound ids closed or refused lately, oldest first.
    recently_closed: VecDeque<StreamId>,
    decoder: input::Decoder,
    events: VecDeque<Event>,
    /// Frames sent before `data`: pings, window updates, SYN/ACK, GoAway.
    control: BytesMut,
    /// Stream data and the FIN/RST frames that must follow it, in write order.
    data: BytesMut,
    /// Used-up blocks of `data`.
    data_blocks: Recycler,
    /// Ping responses in `control`.
    pending_pongs: usize,
    rtt: RttMeter,
    budget: WindowBudget,
    max_stream_window: u32,
    max_frame_payload: usize,
    local_go_away: bool,
    remote_go_away: bool,
    /// A protocol error ended the session.
    failed: bool,
}

impl Session {
    /// Creates a session and queues the first RTT ping.
    pub fn new(mode: Mode, config: Config, now: Instant) -> Self {
        let max_stream_window = u32::try_from(config.max_stream_window)
            .unwrap_or(u32::MAX)
            .max(INITIAL_WINDOW);
        let max_frame_payload = config.max_frame_payload.clamp(1, MAX_FRAME_PAYLOAD_CAP);
        let mut session = Self {
            mode,
            now,
            streams: BTreeMap::new(),
            next_id: Some(match mode {
                Mode::Client => 1,
                Mode::Server => 2,
            }),
            recently_closed: VecDeque::new(),
            decoder: input::Decoder::default(),
            events: VecDeque::new(),
            control: BytesMut::new(),
            data: BytesMut::new(),
            data_blocks: Recycler::default(),
            pending_pongs: 0,
            rtt: RttMeter::new(config.ping_interval, now),
            budget: WindowBudget::new(config.max_connection_receive_window),
            max_stream_window,
            max_frame_payload,
            local_go_away: false,
            remote_go_away: false,
            failed: false,
            config,
        };
        session.send_ping(now);
        session
    }

    // ---- getters ----

    /// The latest round-trip time measured with a session ping.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.rtt()
    }

    /// How many streams are open (not yet reset or closed in both directions).
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// How many bytes `write` would accept on `stream` now; `None` for an unknown stream.
    pub fn send_window(&self, stream: StreamId) -> Option<usize> {
        self.streams.get(&stream).map(|s| s.send_window as usize)
    }

    /// The current (possibly auto-tuned) receive window of `stream`.
    pub fn receive_window(&self, stream: StreamId) -> Option<usize> {
        self.streams.get(&stream).map(|s| s.recv.window() as usize)
    }

    /// Whether the session is over: after a protocol error, or after a GoAway in either
    /// direction once no stream is left. The caller still flushes `poll_transmit`, then
    /// closes the connection.
    pub fn is_closed(&self) -> bool {
        self.failed || ((self.local_go_away || self.remote_go_away) && self.streams.is_empty())
    }

    // ---- handle_* ----

    /// Handles the timer armed from [`poll_timeout`](Self::poll_timeout): sends the
    /// periodic RTT ping when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.failed {
            return;
        }
        if self.rtt.deadline().is_some_and(|due| due <= now) {
            self.send_ping(now);
        }
    }

    // `handle_input` is in `input.rs`.

    // ---- commands ----

    /// Opens an outbound stream. Its SYN is queued at once as a WindowUpdate frame.
    pub fn open_stream(&mut self) -> Result<StreamId, YamuxError> {
        if self.failed || self.local_go_away {
            return Err(YamuxError::SessionClosed);
        }
        if self.remote_go_away {
            return Err(YamuxError::GoAwayReceived);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(YamuxError::TooManyStreams);
        }
        let id = self.next_id.ok_or(YamuxError::StreamIdsExhausted)?;
        self.next_id = id.checked_add(2);
        let id = StreamId(id);
        self.streams.insert(id, Stream::new(true, self.now));
        self.budget.open();
        push(&mut self.control, Header::window_update(id, Flags::SYN, 0));
        tracing::trace!(stream = %id, "yamux: open stream");
        Ok(id)
    }

    /// Queues up to the stream's send window from `data`; returns the bytes accepted.
    ///
    /// Returns 0 if the window is exhausted. After a short write, an [`Event::Writable`]
    /// follows when the peer grants credit.
    pub fn write(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, YamuxError> {
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(YamuxError::UnknownStream)?;
        if s.local_fin {
            return Err(YamuxError::StreamClosed);
        }
        let n = data.len().min(s.send_window as usize);
        if n < data.len() {
            s.blocked = true;
        }
        if n == 0 {
            return Ok(0);
        }
        // `n` fits: it is at most the send window, a u32.
        s.send_window = s
            .send_window
            .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
        let accepted = &data[..n];
        let frames = n.div_ceil(self.max_frame_payload);
        let needed = n.saturating_add(frames.saturating_mul(HEADER_LEN));
        if needed >= BULK_WRITE {
            // Polled bytes often outlive the poll (a runtime encrypts them on another
            // task): reuse their blocks rather than allocate (and fault in) new ones.
            self.data_blocks.reserve(&mut self.data, needed, DATA_BLOCK);
        } else {
            self.data.reserve(needed);
        }
        for chunk in accepted.chunks(self.max_frame_payload) {
            let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            push(&mut self.data, Header::data(stream, Flags::NONE, len));
            self.data.extend_from_slice(chunk);
        }
        self.rtt.on_activity();
        Ok(n)
    }

    /// Half-closes the stream: queues FIN after the data already written. Closing a
    /// stream twice is a no-op.
    pub fn close(&mut self, stream: StreamId) -> Result<(), YamuxError> {
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(YamuxError::UnknownStream)?;
        if s.local_fin {
            return Ok(());
        }
        s.local_fin = true;
        let done = s.is_done();
        push(&mut self.data, Header::window_update(stream, Flags::FIN, 0));
        if done {
            self.remove_stream(stream);
        }
        Ok(())
    }

    /// Resets the stream: queues RST and forgets the stream. No event follows.
    pub fn reset(&mut self, stream: StreamId) -> Result<(), YamuxError> {
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        if !self.streams.contains_key(&stream) {
            return Err(YamuxError::UnknownStream);
        }
        self.remove_stream(stream);
        push(&mut self.data, Header::window_update(stream, Flags::RST, 0));
        Ok(())
    }

    /// The application consumed `n` bytes previously delivered as [`Event::Data`].
    ///
    /// Once at least half of the stream's receive window has been consumed, the credit
    /// goes back to the peer in a WindowUpdate. If the previous update was less than
    /// two RTTs ago, the window is the bottleneck and doubles first, up to
    /// `max_stream_window` and within `max_connection_receive_window` (the auto-tuning
    /// of rust-yamux 0.13). Unknown streams are ignored.
    pub fn consumed(&mut self, now: Instant, stream: StreamId, n: usize) {
        self.now = now;
        if self.failed {
            return;
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.remote_fin {
            return; // The peer sends nothing more: no credit needed.
        }
        s.recv.consume(n);
        let rtt = self.rtt.rtt();
        let max_window = s
            .max_window
            .map_or(self.max_stream_window, |m| m.min(self.max_stream_window));
        if let Some(delta) = s.recv.poll_update(now, rtt, max_window, &mut self.budget) {
            push(
                &mut self.control,
                Header::window_update(stream, Flags::NONE, delta),
            );
        }
    }

    /// Keeps the receive window of `stream` from growing beyond `max` bytes (it never
    /// shrinks below the protocol's initial 256 KiB, nor below what it already is).
    /// This bounds what the peer may have in flight to us on the stream, and so what
    /// we may have to hold for it. Unknown streams are ignored.
    pub fn limit_receive_window(&mut self, stream: StreamId, max: usize) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.max_window = Some(u32::try_from(max).unwrap_or(u32::MAX).max(INITIAL_WINDOW));
        }
    }

    /// Queues a GoAway with `code` (see [`super::frame::GO_AWAY_NORMAL`]): the peer
    /// should open no new streams, and we refuse any it opens. Sent at most once.
    pub fn go_away(&mut self, code: u32) {
        if self.failed || self.local_go_away {
            return;
        }
        self.local_go_away = true;
        push(&mut self.control, Header::go_away(code));
    }

    // ---- poll_* ----

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends pending frames (headers and data) to `out`; returns whether anything was
    /// written. Control frames (ping responses, window updates) go before queued data.
    /// If `out` is empty, the queued bytes move into it without copying.
    pub fn poll_transmit(&mut self, out: &mut BytesMut) -> bool {
        let mut wrote = false;
        if !self.control.is_empty() {
            self.pending_pongs = 0;
            out.unsplit(self.control.split());
            wrote = true;
        }
        if !self.data.is_empty() {
            let data = self.data.split();
            if data.len() < BULK_WRITE {
                // Light traffic: hold no bulk block for an idle session.
                self.data = BytesMut::new();
                self.data_blocks.clear();
            }
            out.unsplit(data);
            wrote = true;
        }
        wrote
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        self.rtt.deadline()
    }

    // ---- internals ----

    fn send_ping(&mut self, now: Instant) {
        let value = self.rtt.start(now);
        push(&mut self.control, Header::ping(Flags::SYN, value));
    }

    /// Forgets a stream and returns its window to the budget.
    fn remove_stream(&mut self, stream: StreamId) {
        if let Some(s) = self.streams.remove(&stream) {
            self.budget.release(s.recv.window());
            if !s.outbound {
                self.remember_closed(stream);
            }
        }
    }

    fn remember_closed(&mut self, stream: StreamId) {
        if self.recently_closed.len() >= RECENTLY_CLOSED {
            self.recently_closed.pop_front();
        }
        self.recently_closed.push_back(stream);
    }

    /// Ends the session after a protocol violation: drops queued data and queues a
    /// protocol-error GoAway for the caller to flush.
    fn fail(&mut self, error: YamuxError) -> YamuxError {
        tracing::debug!(%error, "yamux: protocol violation by peer");
        self.failed = true;
        self.data.clear();
        push(&mut self.control, Header::go_away(GO_AWAY_PROTOCOL_ERROR));
        self.local_go_away = true;
        error
    }
}

/// Appends an encoded header.
fn push(buf: &mut BytesMut, header: Header) {
    buf.extend_from_slice(&header.encode());
}
