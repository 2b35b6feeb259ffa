//! Yamux stream multiplexing as a sans-IO state machine.
//!
//! This module owns one Yamux session over an already secured connection: framing,
//! stream opening and closing, per-stream flow control with auto-tuned receive windows,
//! pings for round-trip measurement, and GoAway. It performs no I/O and reads no clock:
//! decrypted bytes come in through [`Session::handle_input`], bytes to encrypt go out
//! through [`Session::poll_transmit`], and time is an [`Instant`](std::time::Instant) argument.
//!
//! Specification: hashicorp/yamux `spec.md`; flow-control tuning follows the behaviour
//! of rust-yamux 0.13 (see [`Session::consumed`]).
//!
//! # Driving a session
//! After every `handle_*` call or command (`open_stream`, `write`, `close`, `reset`,
//! `consumed`, `go_away`), drain [`Session::poll_event`] to `None`, flush
//! [`Session::poll_transmit`], and re-arm the timer from [`Session::poll_timeout`].

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

pub mod frame;

mod flow;
mod rtt;
mod session;
mod stream;
#[cfg(test)]
mod tests;

pub use flow::INITIAL_WINDOW;
pub use session::Session;

/// Which end of the connection this session is; decides stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The dialer of the connection; opens odd stream ids.
    Client,
    /// The listener of the connection; opens even stream ids.
    Server,
}

/// A Yamux stream id. Id 0 is the session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Limits and tuning of a session.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most streams open at once, inbound and outbound together. An inbound stream
    /// beyond it is refused with RST; `open_stream` beyond it fails. Default 512.
    pub max_streams: usize,
    /// Most bytes of receive window granted across all streams, `None` for no limit.
    /// Windows only grow within it; each stream's initial 256 KiB is always granted.
    /// Default 1 GiB.
    pub max_connection_receive_window: Option<usize>,
    /// Largest receive window one stream may grow to. Values below 256 KiB act as
    /// 256 KiB; values above `u32::MAX` act as `u32::MAX`. Default 16 MiB.
    pub max_stream_window: usize,
    /// Largest payload of one outbound Data frame; writes are split at this size.
    /// Clamped to 1 byte ..= 256 KiB. Default 64 KiB.
    pub max_frame_payload: usize,
    /// The longest time between pings for RTT while data flows; on short round trips
    /// they come every 8 round trips, at least 100 ms apart, so that window tuning
    /// follows the path's delay under load. Default 10 s.
    pub ping_interval: Duration,
    /// Most ping responses queued and not yet transmitted; pings beyond it are
    /// ignored. Default 64.
    pub max_pending_pongs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_streams: 512,
            max_connection_receive_window: Some(1024 * 1024 * 1024),
            max_stream_window: 16 * 1024 * 1024,
            max_frame_payload: 64 * 1024,
            ping_interval: Duration::from_secs(10),
            max_pending_pongs: 64,
        }
    }
}

/// Why a Yamux operation failed. Errors from [`Session::handle_input`] are protocol
/// violations by the peer and end the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamuxError {
    /// A frame header carried a version other than 0.
    #[error("unsupported yamux version {0}")]
    UnsupportedVersion(u8),
    /// A frame header carried an unknown frame type.
    #[error("invalid yamux frame type {0}")]
    InvalidFrameType(u8),
    /// A stream id was 0 where a stream was meant, non-zero on a session frame, or a
    /// stream was opened with the wrong parity.
    #[error("invalid stream id")]
    InvalidStreamId,
    /// The peer opened a stream whose id is in use or was recently used.
    #[error("stream id reused")]
    StreamIdReused,
    /// `open_stream` with `max_streams` streams already open.
    #[error("too many streams")]
    TooManyStreams,
    /// All stream ids of our parity have been used.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
    /// The peer sent more data than the receive window allowed.
    #[error("receive window exceeded")]
    ReceiveWindowExceeded,
    /// A Data frame announced more bytes than any stream window can ever hold.
    #[error("frame too large")]
    FrameTooLarge,
    /// The stream does not exist (never opened, reset, or fully closed).
    #[error("unknown stream")]
    UnknownStream,
    /// The stream's sending half is already closed.
    #[error("stream closed")]
    StreamClosed,
    /// The session ended after a protocol error, or was told to go away by us.
    #[error("session closed")]
    SessionClosed,
    /// The peer sent GoAway: no new streams.
    #[error("peer sent go-away")]
    GoAwayReceived,
}

/// Something the application learns from the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The remote opened a stream (SYN).
    InboundStream(StreamId),
    /// The remote acknowledged a stream we opened (informational).
    OutboundAccepted(StreamId),
    /// Stream data, in order. Report it with [`Session::consumed`] once used.
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// The remote sent FIN: no more data from it on this stream.
    Finished(StreamId),
    /// The stream was reset, by the remote's RST or locally after the remote misused
    /// it. It is forgotten.
    Reset(StreamId),
    /// The send window became non-zero after a `write` accepted less than asked.
    Writable(StreamId),
    /// The remote sent GoAway with this code (see [`frame::GO_AWAY_NORMAL`] and
    /// siblings); existing streams continue.
    GoAway {
        /// The GoAway error code.
        code: u32,
    },
    /// A ping round trip measured by this session.
    Rtt(Duration),
}
