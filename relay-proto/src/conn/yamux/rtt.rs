//! Round-trip time measurement with session pings.
//!
//! The session sends a Ping when it starts and then every `interval` while data flows,
//! one at a time. The opaque value is a counter, not a random number, so runs are
//! reproducible. A response that matches no outstanding ping is ignored.

use std::time::{Duration, Instant};

/// Ping scheduling and the latest RTT sample.
#[derive(Debug, Clone)]
pub(crate) struct RttMeter {
    interval: Duration,
    next_value: u32,
    /// The ping in flight: its value and when it was queued.
    outstanding: Option<(u32, Instant)>,
    last_sent: Instant,
    /// Data moved since the last ping was sent.
    activity: bool,
    rtt: Option<Duration>,
}

impl RttMeter {
    /// A meter that has sent nothing yet.
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            next_value: 1,
            outstanding: None,
            last_sent: now,
            activity: false,
            rtt: None,
        }
    }

    /// Starts a ping now; returns the value to put in the Ping SYN frame.
    pub(crate) fn start(&mut self, now: Instant) -> u32 {
        let value = self.next_value;
        self.next_value = self.next_value.wrapping_add(1);
        self.outstanding = Some((value, now));
        self.last_sent = now;
        self.activity = false;
        value
    }

    /// Handles a Ping ACK; returns the new RTT sample if it answers our ping.
    pub(crate) fn on_pong(&mut self, now: Instant, value: u32) -> Option<Duration> {
        let (expected, sent) = self.outstanding?;
        if expected != value {
            return None;
        }
        self.outstanding = None;
        let rtt = now.saturating_duration_since(sent);
        self.rtt = Some(rtt);
        Some(rtt)
    }

    /// Notes that stream data moved, which keeps periodic pings going.
    pub(crate) fn on_activity(&mut self) {
        self.activity = true;
    }

    /// The latest RTT sample.
    pub(crate) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// When the next ping is due, if one will be.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.outstanding.is_some() || !self.activity {
            return None;
        }
        self.last_sent.checked_add(self.interval)
    }
}
