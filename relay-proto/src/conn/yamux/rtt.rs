//! Round-trip time measurement with session pings.
//!
//! The session sends a Ping when it starts and then, while data flows, again every
//! [`ROUND_TRIPS_APART`] round trips (at least [`MIN_APART`], at most `interval`), one
//! at a time. Receive windows grow only when they are used up within two round trips,
//! so the sample must follow the path as it is now: a round trip measured on an idle
//! connection is far shorter than one under load, and kept for the 10 s of `interval`
//! it holds a busy stream to its first window. The opaque value is a counter, not a
//! random number, so runs are reproducible. A response that matches no outstanding ping
//! is ignored.

use std::time::{Duration, Instant};

/// While data flows, pings are this many of the last round trips apart ...
const ROUND_TRIPS_APART: u32 = 8;
/// ... and at least this far apart.
const MIN_APART: Duration = Duration::from_millis(100);

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
        let apart = match self.rtt {
            Some(rtt) => rtt
                .saturating_mul(ROUND_TRIPS_APART)
                .max(MIN_APART)
                .min(self.interval),
            None => self.interval,
        };
        self.last_sent.checked_add(apart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the next ping is due after one measured `rtt`, with data flowing.
    fn next_ping_after(rtt: Duration, interval: Duration) -> Duration {
        let t0 = crate::test_now();
        let mut meter = RttMeter::new(interval, t0);
        let value = meter.start(t0);
        assert_eq!(meter.on_pong(t0 + rtt, value), Some(rtt));
        assert_eq!(meter.deadline(), None, "idle: no ping");
        meter.on_activity();
        meter.deadline().unwrap() - t0
    }

    #[test]
    fn pings_follow_the_round_trip_while_data_flows() {
        let ten = Duration::from_secs(10);
        let ms = Duration::from_millis;
        assert_eq!(next_ping_after(ms(60), ten), ms(480));
        assert_eq!(next_ping_after(ms(1), ten), MIN_APART);
        assert_eq!(next_ping_after(ms(2000), ten), ten);
        // The configured interval stays the longest gap.
        assert_eq!(next_ping_after(ms(60), ms(300)), ms(300));
    }
}
