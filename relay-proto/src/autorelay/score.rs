//! The quality score of a relay candidate: a number in `[0, 1]` from what was measured.
//!
//! ```text
//! score = 0.4·L + 0.3·R + 0.3·U
//!
//! L = r₀ / (r₀ + rtt)               latency; rtt is the EWMA (weight 1/4) of RTT samples,
//!                                   r₀ = score.rtt_reference (500ms); no sample: L = 0.9
//! R = (s + 0.9·2) / (s + f + 2)     reliability; s and f count granted and failed
//!                                   reservation attempts, with a prior of 2 attempts at 0.9
//! U = (H + 0.9·τ) / (H + τ + n·τ)   uptime; H is the time reservations on the relay were
//!                                   held (the current one included), n the number lost
//!                                   (connection closed, not renewed, heartbeat timeout),
//!                                   τ = score.uptime_reference (10m)
//! ```
//!
//! Each term is in `[0, 1]`, so the score is. A relay nothing is known about scores 0.9,
//! above the default `quality_threshold` of 0.8. Lower RTT, more granted reservations and
//! longer uptime raise the score; failed attempts and lost reservations lower it. The
//! counts s, f, n and the finished part of H lose half their weight every
//! `score.history_half_life` (1h), so a relay that failed long ago can recover.

use std::time::{Duration, Instant};

use super::config::ScoreConfig;

/// What a term is worth before any measurement.
pub const PRIOR: f64 = 0.9;
/// Weight of the latency term L.
pub const LATENCY_WEIGHT: f64 = 0.4;
/// Weight of the reliability term R.
pub const RELIABILITY_WEIGHT: f64 = 0.3;
/// Weight of the uptime term U.
pub const UPTIME_WEIGHT: f64 = 0.3;
/// Weight of a new RTT sample in the moving average.
pub const RTT_EWMA_WEIGHT: f64 = 0.25;
/// How many reservation attempts the reliability prior counts for.
const PRIOR_ATTEMPTS: f64 = 2.0;

/// The measurements behind one candidate's score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    /// Smoothed RTT in seconds.
    rtt: Option<f64>,
    successes: Decaying,
    failures: Decaying,
    losses: Decaying,
    /// Seconds held in finished reservations.
    held: Decaying,
    /// When the reservation held now was granted.
    session: Option<Instant>,
}

/// A count that halves every half-life, updated lazily.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Decaying {
    value: f64,
    at: Option<Instant>,
}

impl Decaying {
    fn get(&self, now: Instant, half_life: Duration) -> f64 {
        let Some(at) = self.at else {
            return self.value;
        };
        let age = now.saturating_duration_since(at).as_secs_f64();
        self.value * (-age / half_life.as_secs_f64()).exp2()
    }

    fn add(&mut self, now: Instant, amount: f64, half_life: Duration) {
        self.value = self.get(now, half_life) + amount;
        // Inputs out of order never move the reference time backwards.
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }
}

impl Quality {
    /// The smoothed RTT, if any sample was recorded.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
            .map(|secs| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }

    /// Granted reservation attempts, decayed to `now`.
    pub fn successes(&self, now: Instant, config: &ScoreConfig) -> f64 {
        self.successes.get(now, config.history_half_life)
    }

    /// Failed reservation attempts, decayed to `now`.
    pub fn failures(&self, now: Instant, config: &ScoreConfig) -> f64 {
        self.failures.get(now, config.history_half_life)
    }

    /// Lost reservations, decayed to `now`.
    pub fn losses(&self, now: Instant, config: &ScoreConfig) -> f64 {
        self.losses.get(now, config.history_half_life)
    }

    /// Time held: finished reservations decayed to `now`, plus the current one.
    pub fn held(&self, now: Instant, config: &ScoreConfig) -> Duration {
        let current = self
            .session
            .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64());
        let secs = self.held.get(now, config.history_half_life) + current;
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }

    /// Records one RTT sample.
    pub fn record_rtt(&mut self, rtt: Duration) {
        let sample = rtt.as_secs_f64();
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(avg) => avg + RTT_EWMA_WEIGHT * (sample - avg),
        });
    }

    /// Records a granted reservation attempt; a held reservation starts now.
    pub fn record_success(&mut self, now: Instant, config: &ScoreConfig) {
        self.successes.add(now, 1.0, config.history_half_life);
        self.session.get_or_insert(now);
    }

    /// Records a failed reservation attempt.
    pub fn record_failure(&mut self, now: Instant, config: &ScoreConfig) {
        self.failures.add(now, 1.0, config.history_half_life);
    }

    /// Ends the held reservation, if any; `lost` when it ended by failure rather than by
    /// our choice.
    pub fn end_session(&mut self, now: Instant, lost: bool, config: &ScoreConfig) {
        if let Some(start) = self.session.take() {
            let secs = now.saturating_duration_since(start).as_secs_f64();
            self.held.add(now, secs, config.history_half_life);
        }
        if lost {
            self.losses.add(now, 1.0, config.history_half_life);
        }
    }

    /// The quality score at `now`, in `[0, 1]`; see the module documentation.
    pub fn score(&self, now: Instant, config: &ScoreConfig) -> f64 {
        let latency = match self.rtt {
            None => PRIOR,
            Some(rtt) => {
                let r0 = config.rtt_reference.as_secs_f64();
                r0 / (r0 + rtt)
            }
        };
        let s = self.successes(now, config);
        let f = self.failures(now, config);
        let reliability = (s + PRIOR * PRIOR_ATTEMPTS) / (s + f + PRIOR_ATTEMPTS);
        let tau = config.uptime_reference.as_secs_f64();
        let held = self.held(now, config).as_secs_f64();
        let n = self.losses(now, config);
        let uptime = (held + PRIOR * tau) / (held + tau + n * tau);
        let score =
            LATENCY_WEIGHT * latency + RELIABILITY_WEIGHT * reliability + UPTIME_WEIGHT * uptime;
        if score.is_nan() {
            0.0
        } else {
            score.clamp(0.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const MIN: Duration = Duration::from_secs(60);

    fn cfg() -> ScoreConfig {
        ScoreConfig::default()
    }

    #[test]
    fn unknown_relay_scores_the_prior() {
        let now = crate::test_now();
        assert!((Quality::default().score(now, &cfg()) - PRIOR).abs() < 1e-12);
    }

    #[test]
    fn lower_rtt_scores_higher() {
        let now = crate::test_now();
        let mut last = f64::INFINITY;
        for ms in [1, 10, 50, 100, 250, 500, 1000, 5000] {
            let mut q = Quality::default();
            q.record_rtt(MS * ms);
            let s = q.score(now, &cfg());
            assert!(s < last, "{ms}ms scored {s}, not below {last}");
            last = s;
        }
    }

    #[test]
    fn rtt_is_smoothed() {
        let mut q = Quality::default();
        q.record_rtt(MS * 100);
        assert_eq!(q.rtt(), Some(MS * 100));
        q.record_rtt(MS * 500);
        let rtt = q.rtt().unwrap().as_secs_f64();
        assert!((rtt - 0.2).abs() < 1e-9, "{rtt}");
    }

    #[test]
    fn extreme_rtts_are_safe() {
        let now = crate::test_now();
        let mut q = Quality::default();
        q.record_rtt(Duration::MAX);
        assert_eq!(q.rtt(), Some(Duration::MAX));
        assert!(q.score(now, &cfg()) >= 0.0);
        q.record_rtt(Duration::ZERO);
        assert!(q.rtt().is_some());
    }

    #[test]
    fn more_successes_score_higher_and_failures_lower() {
        let now = crate::test_now();
        let mut q = Quality::default();
        q.record_failure(now, &cfg());
        let mut last = q.score(now, &cfg());
        for _ in 0..10 {
            q.record_success(now, &cfg());
            let s = q.score(now, &cfg());
            assert!(s > last);
            last = s;
        }
        for _ in 0..10 {
            q.record_failure(now, &cfg());
            let s = q.score(now, &cfg());
            assert!(s < last);
            last = s;
        }
    }

    #[test]
    fn uptime_raises_and_losses_lower_the_score() {
        let t0 = crate::test_now();
        let mut q = Quality::default();
        q.record_success(t0, &cfg());
        let mut last = q.score(t0, &cfg());
        for m in 1..10 {
            let s = q.score(t0 + MIN * m, &cfg());
            assert!(s > last, "held {m}m");
            last = s;
        }
        q.end_session(t0 + MIN * 10, true, &cfg());
        assert!(q.score(t0 + MIN * 10, &cfg()) < last);
        assert_eq!(q.held(t0 + MIN * 10, &cfg()), MIN * 10);
    }

    #[test]
    fn released_is_not_lost() {
        let t0 = crate::test_now();
        let (mut kept, mut lost) = (Quality::default(), Quality::default());
        for q in [&mut kept, &mut lost] {
            q.record_success(t0, &cfg());
        }
        kept.end_session(t0 + MIN, false, &cfg());
        lost.end_session(t0 + MIN, true, &cfg());
        assert!(kept.score(t0 + MIN, &cfg()) > lost.score(t0 + MIN, &cfg()));
    }

    #[test]
    fn history_fades() {
        let t0 = crate::test_now();
        let mut q = Quality::default();
        for _ in 0..4 {
            q.record_failure(t0, &cfg());
        }
        let hl = cfg().history_half_life;
        assert!((q.failures(t0 + hl, &cfg()) - 2.0).abs() < 1e-9);
        assert!(q.score(t0 + hl * 10, &cfg()) > q.score(t0, &cfg()));
        assert!(q.score(t0 + hl * 40, &cfg()) > 0.89);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Rtt(u64),
        Success,
        Failure,
        End(bool),
        Wait(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..u64::MAX).prop_map(Step::Rtt),
            Just(Step::Success),
            Just(Step::Failure),
            any::<bool>().prop_map(Step::End),
            (0u64..10_000_000).prop_map(Step::Wait),
        ]
    }

    proptest! {
        #[test]
        fn score_stays_in_unit_interval(steps in proptest::collection::vec(step(), 0..60)) {
            let mut now = crate::test_now();
            let mut q = Quality::default();
            for s in steps {
                match s {
                    Step::Rtt(ns) => q.record_rtt(Duration::from_nanos(ns)),
                    Step::Success => q.record_success(now, &cfg()),
                    Step::Failure => q.record_failure(now, &cfg()),
                    Step::End(lost) => q.end_session(now, lost, &cfg()),
                    Step::Wait(s) => now += Duration::from_secs(s),
                }
                let score = q.score(now, &cfg());
                prop_assert!((0.0..=1.0).contains(&score), "{score}");
            }
        }
    }
}
