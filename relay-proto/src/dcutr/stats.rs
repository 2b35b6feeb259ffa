//! Counters of finished hole punches (the seed's `GetHolePunchStats`), kept by the node
//! and merged across connections or nodes.

use std::time::Duration;

use super::outcome::{FailureReason, Outcome};

/// Upper bounds, in milliseconds, of the [`TimeHistogram`] buckets; a last bucket takes
/// everything longer.
pub const TIME_BUCKETS_MS: [u64; 10] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 60_000,
];

/// Counts of finished hole punches and of how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HolePunchStats {
    /// Hole punches that ended, either way.
    pub finished: u64,
    /// CONNECT/SYNC exchanges made across them.
    pub attempts: u64,
    /// Hole punches that ended with a direct connection.
    pub successes: u64,
    /// Successes during or after the first exchange.
    pub first_attempt_successes: u64,
    /// Successes of the unilateral direct dial, before any exchange.
    pub unilateral_successes: u64,
    /// Failures, by reason.
    pub failures: FailureCounts,
    /// Time from relayed connection to direct connection, of every success.
    pub time_to_direct: TimeHistogram,
}

/// Failed hole punches by [`FailureReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCounts {
    /// [`FailureReason::Timeout`].
    pub timeout: u64,
    /// [`FailureReason::DirectDialFailed`].
    pub direct_dial_failed: u64,
    /// [`FailureReason::NatIncompatible`].
    pub nat_incompatible: u64,
    /// [`FailureReason::NotEnabled`].
    pub not_enabled: u64,
    /// [`FailureReason::ProtocolError`].
    pub protocol_error: u64,
}

/// A histogram of durations with the fixed buckets of [`TIME_BUCKETS_MS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeHistogram {
    /// Observations per bucket; the last one counts those above every bound.
    pub buckets: [u64; TIME_BUCKETS_MS.len() + 1],
    /// Sum of all observations.
    pub sum: Duration,
    /// Number of observations.
    pub count: u64,
}

impl TimeHistogram {
    /// Adds one observation.
    pub fn observe(&mut self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let i = TIME_BUCKETS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(TIME_BUCKETS_MS.len());
        self.buckets[i] += 1;
        self.sum = self.sum.saturating_add(d);
        self.count += 1;
    }

    /// The mean observation, if any.
    pub fn mean(&self) -> Option<Duration> {
        let n = u32::try_from(self.count).ok().filter(|&n| n > 0)?;
        Some(self.sum / n)
    }

    /// Adds another histogram's observations.
    pub fn merge(&mut self, other: &TimeHistogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.count += other.count;
    }
}

impl FailureCounts {
    /// The count for `reason`.
    pub fn get(&self, reason: &FailureReason) -> u64 {
        match reason {
            FailureReason::Timeout => self.timeout,
            FailureReason::DirectDialFailed => self.direct_dial_failed,
            FailureReason::NatIncompatible => self.nat_incompatible,
            FailureReason::NotEnabled => self.not_enabled,
            FailureReason::ProtocolError(_) => self.protocol_error,
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.timeout
            + self.direct_dial_failed
            + self.nat_incompatible
            + self.not_enabled
            + self.protocol_error
    }

    fn count(&mut self, reason: &FailureReason) {
        let slot = match reason {
            FailureReason::Timeout => &mut self.timeout,
            FailureReason::DirectDialFailed => &mut self.direct_dial_failed,
            FailureReason::NatIncompatible => &mut self.nat_incompatible,
            FailureReason::NotEnabled => &mut self.not_enabled,
            FailureReason::ProtocolError(_) => &mut self.protocol_error,
        };
        *slot += 1;
    }
}

impl HolePunchStats {
    /// Counts one finished hole punch.
    pub fn record(&mut self, outcome: &Outcome) {
        self.finished += 1;
        match outcome {
            Outcome::Success {
                attempt, elapsed, ..
            } => {
                self.attempts += u64::from(*attempt);
                self.successes += 1;
                match attempt {
                    0 => self.unilateral_successes += 1,
                    1 => self.first_attempt_successes += 1,
                    _ => {}
                }
                self.time_to_direct.observe(*elapsed);
            }
            Outcome::Failure { attempts, reason } => {
                self.attempts += u64::from(*attempts);
                self.failures.count(reason);
            }
        }
    }

    /// Adds another set of counters, e.g. another node's.
    pub fn merge(&mut self, other: &HolePunchStats) {
        self.finished += other.finished;
        self.attempts += other.attempts;
        self.successes += other.successes;
        self.first_attempt_successes += other.first_attempt_successes;
        self.unilateral_successes += other.unilateral_successes;
        let f = &mut self.failures;
        let g = &other.failures;
        f.timeout += g.timeout;
        f.direct_dial_failed += g.direct_dial_failed;
        f.nat_incompatible += g.nat_incompatible;
        f.not_enabled += g.not_enabled;
        f.protocol_error += g.protocol_error;
        self.time_to_direct.merge(&other.time_to_direct);
    }

    /// Share of finished hole punches that succeeded, if any finished.
    pub fn success_rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.successes as f64 / self.finished as f64)
    }

    /// Share of hole-punched successes (unilateral ones aside) made on the first
    /// exchange, if there were any.
    pub fn first_attempt_share(&self) -> Option<f64> {
        let punched = self.successes - self.unilateral_successes;
        (punched > 0).then(|| self.first_attempt_successes as f64 / punched as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(attempt: u32, ms: u64) -> Outcome {
        Outcome::Success {
            attempt,
            rtt: None,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn records_and_merges() {
        let mut a = HolePunchStats::default();
        a.record(&success(1, 300));
        a.record(&success(2, 6_000));
        a.record(&success(0, 40));
        a.record(&Outcome::Failure {
            attempts: 3,
            reason: FailureReason::Timeout,
        });
        assert_eq!(a.finished, 4);
        assert_eq!(a.attempts, 1 + 2 + 3);
        assert_eq!(a.successes, 3);
        assert_eq!(a.first_attempt_successes, 1);
        assert_eq!(a.unilateral_successes, 1);
        assert_eq!(a.failures.get(&FailureReason::Timeout), 1);
        assert_eq!(a.failures.total(), 1);
        assert_eq!(a.success_rate(), Some(0.75));
        assert_eq!(a.first_attempt_share(), Some(0.5));
        assert_eq!(a.time_to_direct.buckets[0], 1); // 40 ms
        assert_eq!(a.time_to_direct.buckets[3], 1); // 300 ms
        assert_eq!(a.time_to_direct.buckets[7], 1); // 6 s
        let mut b = HolePunchStats::default();
        b.record(&Outcome::Failure {
            attempts: 0,
            reason: FailureReason::NotEnabled,
        });
        b.record(&success(1, 100_000));
        b.merge(&a);
        assert_eq!(b.finished, 6);
        assert_eq!(b.failures.not_enabled, 1);
        assert_eq!(b.time_to_direct.count, 4);
        assert_eq!(b.time_to_direct.buckets[TIME_BUCKETS_MS.len()], 1);
        assert_eq!(
            b.time_to_direct.mean(),
            Some(Duration::from_millis((300 + 6_000 + 40 + 100_000) / 4))
        );
        assert_eq!(HolePunchStats::default().success_rate(), None);
    }
}
