//! Simulated time as the `Instant`s relay-proto's `Node` takes.
//!
//! A [`SimClock`] maps a [`SimTime`] onto `base + time since the start`, for one base
//! `Instant` fixed when the run starts. Nothing the simulator reports depends on the
//! base: only differences between instants leave this module.

use std::time::Instant;

use crate::time::SimTime;

/// The mapping between simulated time and `Instant`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimClock {
    base: Instant,
}

impl SimClock {
    /// A clock whose [`SimTime::ZERO`] is `base`.
    pub fn new(base: Instant) -> Self {
        Self { base }
    }

    /// A clock based on the process's monotonic clock, read once here.
    ///
    /// This is the simulator's only clock read: `Instant` has no constructor that
    /// does not read a clock. Results never depend on the value read.
    #[allow(clippy::disallowed_methods)] // the one read of the base instant
    pub fn start() -> Self {
        Self::new(Instant::now())
    }

    /// The base instant.
    pub fn base(self) -> Instant {
        self.base
    }

    /// The instant of a simulated time.
    ///
    /// Saturates at the largest instant the platform can represent past the base, which
    /// no run reaches (a `SimTime` itself ends after 584 years).
    pub fn instant(self, at: SimTime) -> Instant {
        let d = at.as_duration();
        self.base.checked_add(d).unwrap_or_else(|| {
            // Halve until representable: a far-future deadline stays far in the future.
            let mut d = d;
            loop {
                d /= 2;
                if let Some(i) = self.base.checked_add(d) {
                    return i;
                }
            }
        })
    }

    /// The simulated time of an instant; instants before the base map to the start.
    pub fn sim_time(self, at: Instant) -> SimTime {
        SimTime::from_duration(at.saturating_duration_since(self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trips_exactly() {
        let clock = SimClock::start();
        for nanos in [0, 1, 999, 1_000_000_007, 86_400_000_000_123] {
            let t = SimTime::from_nanos(nanos);
            assert_eq!(clock.sim_time(clock.instant(t)), t);
        }
        assert_eq!(
            clock.sim_time(clock.base() + Duration::from_millis(5)),
            SimTime::from_millis(5)
        );
        // Far-future times do not panic.
        let _ = clock.instant(SimTime::MAX);
    }
}
