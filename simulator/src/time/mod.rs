//! Simulated time and the discrete-event queue.
//!
//! Time in the simulator is a count of nanoseconds since the start of the run. Nothing
//! here reads a clock: a [`SimTime`] only moves when the world processes the next event.

mod queue;

pub use queue::EventQueue;

use std::fmt;
use std::ops::Add;
use std::time::Duration;

/// A point in simulated time: nanoseconds since the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SimTime(u64);

impl SimTime {
    /// The start of the run.
    pub const ZERO: SimTime = SimTime(0);
    /// The latest representable time (about 584 years); arithmetic saturates here.
    pub const MAX: SimTime = SimTime(u64::MAX);

    /// A time `nanos` nanoseconds after the start.
    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    /// A time `millis` milliseconds after the start (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000_000))
    }

    /// A time `secs` seconds after the start (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1_000_000_000))
    }

    /// A time `since_start` after the start (saturating at [`SimTime::MAX`]).
    pub fn from_duration(since_start: Duration) -> Self {
        Self(u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the start.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time elapsed since the start.
    pub const fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self + d`, saturating at [`SimTime::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(d))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for SimTime {
    type Output = SimTime;

    /// Saturating addition: never overflows.
    fn add(self, d: Duration) -> SimTime {
        self.saturating_add(d)
    }
}

impl fmt::Display for SimTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(SimTime::MAX + Duration::from_secs(1), SimTime::MAX);
        assert_eq!(
            SimTime::ZERO.saturating_since(SimTime::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            SimTime::from_millis(1500).saturating_since(SimTime::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(SimTime::from_duration(Duration::MAX), SimTime::MAX);
    }

    #[test]
    fn displays_seconds() {
        assert_eq!(SimTime::from_millis(1500).to_string(), "1.500000000s");
    }
}
