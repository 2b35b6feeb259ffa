//! The state of one Yamux stream as the session sees it.
//!
//! A stream holds no data: received bytes go to the application at once as events and
//! written bytes go into the session's outbound queue. What remains per stream is
//! flow-control state and which halves are closed.

use std::time::Instant;

use super::flow::{INITIAL_WINDOW, ReceiveWindow};

/// Per-stream state.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// Whether we opened the stream (sent its SYN).
    pub(crate) outbound: bool,
    /// For outbound streams: whether the peer's ACK arrived.
    pub(crate) acked: bool,
    /// Bytes we may still send before the peer grants more credit.
    pub(crate) send_window: u32,
    /// A write was cut short by the send window; report `Writable` when credit comes.
    pub(crate) blocked: bool,
    /// We sent FIN: no more writes.
    pub(crate) local_fin: bool,
    /// The peer sent FIN: no more data will arrive.
    pub(crate) remote_fin: bool,
    /// Receive-side flow control.
    pub(crate) recv: ReceiveWindow,
    /// The most this stream's receive window may grow to, below the session's own
    /// maximum ([`Session::limit_receive_window`](super::Session::limit_receive_window)).
    pub(crate) max_window: Option<u32>,
}

impl Stream {
    /// A stream in its initial state, with the protocol's initial windows.
    pub(crate) fn new(outbound: bool, now: Instant) -> Self {
        Self {
            outbound,
            acked: !outbound,
            send_window: INITIAL_WINDOW,
            blocked: false,
            local_fin: false,
            remote_fin: false,
            recv: ReceiveWindow::new(now),
            max_window: None,
        }
    }

    /// Adds credit from a peer's WindowUpdate; `true` if a blocked writer may resume.
    pub(crate) fn add_send_credit(&mut self, delta: u32) -> bool {
        self.send_window = self.send_window.saturating_add(delta);
        if self.blocked && self.send_window > 0 {
            self.blocked = false;
            return true;
        }
        false
    }

    /// Whether both halves are closed, so the stream can be forgotten.
    pub(crate) fn is_done(&self) -> bool {
        self.local_fin && self.remote_fin
    }
}
