//! What a relay holds for a circuit's receiver: the seed's `buffer_size` and
//! `max_buffer_time` (`node.relay.service`).
//!
//! Bytes a circuit's sender sends wait at the relay only while the receiver's send
//! window is shut, and the sender gets window credit back only as they are forwarded:
//! the relay's buffer for one direction is its receive window on the sender's stream.
//! - `buffer_size` caps that window. Yamux grants every stream 256 KiB from the start,
//!   so that is the least it can be; above it, the window's auto-tuning stops at
//!   `buffer_size`. `0` leaves the connection's own maximum.
//! - `max_buffer_time`: a direction whose bytes wait that long without the receiver
//!   taking a single one of them is stalled, and its circuit is reset
//!   ([`CircuitEnd::BufferTimeout`]). A slow receiver that keeps taking bytes is not.
//!   `0` means no limit.

use std::time::Instant;

use super::super::conn::StreamRole;
use super::super::events::CircuitEnd;
use super::super::{Node, StreamRef};

impl Node {
    /// Caps the relay's receive windows on a circuit's two streams at `buffer_size`.
    pub(super) fn relay_limit_buffers(&mut self, streams: [StreamRef; 2]) {
        let Some(size) = self.relay.as_ref().map(|r| r.policy.config().buffer_size) else {
            return;
        };
        if size == 0 {
            return;
        }
        for s in streams {
            if let Some(c) = self.conns.get_mut(&s.conn) {
                c.conn.limit_receive_window(s.stream, size);
            }
        }
    }

    /// Notes whether the direction arriving on `from` holds bytes for its receiver, and
    /// whether the receiver took any just now (`forwarded`): (re)starts or stops its
    /// `max_buffer_time` clock.
    pub(super) fn relay_track_buffer(&mut self, now: Instant, from: StreamRef, forwarded: usize) {
        let Some(limit) = self
            .relay
            .as_ref()
            .map(|r| r.policy.config().max_buffer_time)
            .filter(|t| !t.is_zero())
        else {
            return;
        };
        let Some(StreamRole::Splice(splice)) = self.role_mut(from) else {
            return;
        };
        let before = splice.stalled_since;
        let after = match (splice.pending.is_empty(), before) {
            (true, _) => None,
            (false, Some(since)) if forwarded == 0 => Some(since),
            (false, _) => Some(now),
        };
        if before == after {
            return;
        }
        splice.stalled_since = after;
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        if let Some(since) = before {
            relay.stalls.remove(&(since + limit, from));
        }
        if let Some(since) = after {
            relay.stalls.insert((since + limit, from));
        }
    }

    /// Forgets the `max_buffer_time` clock of a stream whose splice ends.
    pub(super) fn relay_forget_buffer(&mut self, from: StreamRef) {
        let Some(StreamRole::Splice(splice)) = self.role_mut(from) else {
            return;
        };
        let Some(since) = splice.stalled_since.take() else {
            return;
        };
        if let Some(relay) = self.relay.as_mut() {
            let limit = relay.policy.config().max_buffer_time;
            relay.stalls.remove(&(since + limit, from));
        }
    }

    /// Resets the circuits of directions stalled for `max_buffer_time` by `now`.
    pub(super) fn relay_expire_buffers(&mut self, now: Instant) {
        loop {
            let Some(relay) = self.relay.as_mut() else {
                return;
            };
            let Some(&(at, from)) = relay.stalls.first() else {
                return;
            };
            if at > now {
                return;
            }
            relay.stalls.pop_first();
            let limit = relay.policy.config().max_buffer_time;
            let Some(StreamRole::Splice(splice)) = self.role_mut(from) else {
                continue;
            };
            if splice.stalled_since.map(|since| since + limit) != Some(at) {
                continue;
            }
            splice.stalled_since = None;
            let (circuit, direction) = (splice.circuit, splice.direction);
            tracing::info!(%circuit, ?direction, "relayed bytes not taken in max_buffer_time");
            self.end_circuit(now, circuit, CircuitEnd::BufferTimeout(direction));
        }
    }
}
