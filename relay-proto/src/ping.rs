//! The libp2p ping protocol (`/ipfs/ping/1.0.0`): 32 random bytes out, the same 32 back.
//!
//! [`Pinger`] is the outbound side of one connection: it decides when to ping and
//! measures round trips. [`Echo`] answers inbound pings. Both only transform bytes; the
//! node moves them over streams.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::rng::Rng;

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/ping/1.0.0";

/// The size of one ping payload.
pub const PAYLOAD_LEN: usize = 32;

/// Why a ping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    /// No answer within the timeout.
    #[error("ping timed out")]
    Timeout,
    /// The answer differed from what we sent.
    #[error("ping answer does not match the request")]
    Mismatch,
    /// The peer does not speak ping, or the stream failed.
    #[error("ping stream unavailable")]
    Unavailable,
}

/// Settings of the ping protocol.
#[derive(Debug, Clone)]
pub struct PingConfig {
    /// Time between automatic pings; `None` pings only on request.
    pub interval: Option<Duration>,
    /// How long to wait for an answer.
    pub timeout: Duration,
}

impl Default for PingConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(15)),
            timeout: Duration::from_secs(20),
        }
    }
}

/// The outbound ping side of one connection.
#[derive(Debug)]
pub struct Pinger {
    outstanding: Option<([u8; PAYLOAD_LEN], Instant)>,
    received: BytesMut,
    next_ping: Option<Instant>,
    requested: usize,
}

/// The outcome of feeding answer bytes to a [`Pinger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingOutcome {
    /// Not a whole answer yet.
    Pending,
    /// A round trip completed.
    Rtt(Duration),
    /// The answer was wrong.
    Failed(PingError),
}

impl Pinger {
    /// A pinger whose first automatic ping is due at `now` (if automatic pings are on).
    pub fn new(now: Instant, config: &PingConfig) -> Self {
        Self {
            outstanding: None,
            received: BytesMut::new(),
            next_ping: config.interval.map(|_| now),
            requested: 0,
        }
    }

    /// Asks for `n` more pings as soon as possible, on top of automatic ones.
    pub fn request(&mut self, n: usize, now: Instant) {
        self.requested += n;
        if self.outstanding.is_none() {
            self.next_ping = Some(now);
        }
    }

    /// If a ping is due, returns its payload to write; the caller writes all 32 bytes.
    pub fn poll_send(&mut self, now: Instant, rng: &mut Rng) -> Option<Bytes> {
        if self.outstanding.is_some() || self.next_ping.is_none_or(|t| t > now) {
            return None;
        }
        let mut payload = [0u8; PAYLOAD_LEN];
        rng.fill(&mut payload);
        self.outstanding = Some((payload, now));
        self.next_ping = None;
        self.requested = self.requested.saturating_sub(1);
        Some(Bytes::copy_from_slice(&payload))
    }

    /// Feeds bytes read from the ping stream.
    pub fn handle_answer(&mut self, now: Instant, data: &[u8], config: &PingConfig) -> PingOutcome {
        self.received.extend_from_slice(data);
        if self.received.len() < PAYLOAD_LEN {
            return PingOutcome::Pending;
        }
        let answer = self.received.split_to(PAYLOAD_LEN);
        let Some((payload, sent)) = self.outstanding.take() else {
            return PingOutcome::Failed(PingError::Mismatch);
        };
        if answer[..] != payload {
            return PingOutcome::Failed(PingError::Mismatch);
        }
        self.schedule_next(now, config);
        PingOutcome::Rtt(now.saturating_duration_since(sent))
    }

    /// Checks the outstanding ping against the timeout.
    pub fn handle_timeout(&mut self, now: Instant, config: &PingConfig) -> Option<PingError> {
        let (_, sent) = self.outstanding?;
        if now < sent + config.timeout {
            return None;
        }
        self.outstanding = None;
        self.received.clear();
        self.schedule_next(now, config);
        Some(PingError::Timeout)
    }

    /// When this pinger next needs attention.
    pub fn poll_timeout(&self, config: &PingConfig) -> Option<Instant> {
        match self.outstanding {
            Some((_, sent)) => Some(sent + config.timeout),
            None => self.next_ping,
        }
    }

    /// Whether a ping is in flight.
    pub fn is_outstanding(&self) -> bool {
        self.outstanding.is_some()
    }

    fn schedule_next(&mut self, now: Instant, config: &PingConfig) {
        self.next_ping = if self.requested > 0 {
            Some(now)
        } else {
            config.interval.map(|i| now + i)
        };
    }
}

/// Answers inbound pings: returns whole 32-byte payloads to echo, keeping partial ones.
#[derive(Debug, Default)]
pub struct Echo {
    buffer: BytesMut,
}

impl Echo {
    /// Feeds bytes read from an inbound ping stream; returns the bytes to write back.
    pub fn handle(&mut self, data: &[u8]) -> Option<Bytes> {
        self.buffer.extend_from_slice(data);
        let whole = self.buffer.len() / PAYLOAD_LEN * PAYLOAD_LEN;
        (whole > 0).then(|| self.buffer.split_to(whole).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_measures_rtt() {
        let t0 = crate::test_now();
        let config = PingConfig::default();
        let mut rng = Rng::from_u64(1);
        let mut pinger = Pinger::new(t0, &config);
        let payload = pinger.poll_send(t0, &mut rng).unwrap();
        assert!(
            pinger.poll_send(t0, &mut rng).is_none(),
            "one ping at a time"
        );
        let mut echo = Echo::default();
        assert_eq!(echo.handle(&payload[..10]), None);
        let back = echo.handle(&payload[10..]).unwrap();
        let t1 = t0 + Duration::from_millis(30);
        assert_eq!(
            pinger.handle_answer(t1, &back, &config),
            PingOutcome::Rtt(Duration::from_millis(30))
        );
        assert_eq!(
            pinger.poll_timeout(&config),
            Some(t1 + config.interval.unwrap())
        );
    }

    #[test]
    fn wrong_answer_and_timeout_fail() {
        let t0 = crate::test_now();
        let config = PingConfig {
            interval: None,
            timeout: Duration::from_secs(5),
        };
        let mut rng = Rng::from_u64(2);
        let mut pinger = Pinger::new(t0, &config);
        assert!(
            pinger.poll_send(t0, &mut rng).is_none(),
            "no automatic pings"
        );
        pinger.request(2, t0);
        let _ = pinger.poll_send(t0, &mut rng).unwrap();
        assert_eq!(
            pinger.handle_answer(t0, &[0u8; PAYLOAD_LEN], &config),
            PingOutcome::Failed(PingError::Mismatch)
        );
        pinger.request(1, t0);
        let _ = pinger.poll_send(t0, &mut rng).unwrap();
        assert_eq!(
            pinger.handle_timeout(t0 + Duration::from_secs(4), &config),
            None
        );
        assert_eq!(
            pinger.handle_timeout(t0 + Duration::from_secs(5), &config),
            Some(PingError::Timeout)
        );
    }
}
