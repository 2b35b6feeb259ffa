//! The seed's monitoring thresholds as warnings: open circuits near `max_circuits`,
//! relayed bandwidth near the relay's capacity, and too many refused requests.
//!
//! [`Alerts::check`] is called every `metrics_interval` with the current [`Metrics`]. An
//! alert is logged at WARN when its condition starts to hold and at INFO when it stops,
//! so a relay that stays overloaded logs once, not every interval. Rates (bandwidth,
//! error rate) are measured between two checks; the first check only takes a sample.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Metrics;
use crate::config::FileConfig;

/// Fewest requests in an interval for the error rate to count: one refusal out of two
/// requests is no trend.
pub(crate) const MIN_REQUESTS_FOR_ERROR_RATE: u64 = 20;

/// The seed's alert thresholds, each a share from 0 to 1; an alert fires above it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AlertThresholds {
    /// Open circuits as a share of `max_circuits` (`circuit_limit_threshold`).
    pub(crate) circuit_limit: f64,
    /// Relayed bytes per second as a share of the capacity (`bandwidth_limit_threshold`).
    pub(crate) bandwidth_limit: f64,
    /// Refused requests as a share of all requests in an interval
    /// (`error_rate_threshold`).
    pub(crate) error_rate: f64,
}

/// A threshold crossed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Alert {
    /// Open circuits are above `circuit_limit` of `max`.
    CircuitLimit {
        /// Open circuits.
        active: u64,
        /// `max_circuits`.
        max: u32,
    },
    /// Relayed bandwidth is above `bandwidth_limit` of `capacity`.
    Bandwidth {
        /// Measured over the last interval, both directions.
        bytes_per_second: f64,
        /// `bandwidth_capacity`, bytes per second.
        capacity: u64,
    },
    /// More than `error_rate` of the requests in the last interval were refused.
    ErrorRate {
        /// Refused RESERVE and CONNECT requests.
        refused: u64,
        /// All RESERVE and CONNECT requests answered.
        requests: u64,
    },
}

impl Alert {
    /// Its index in [`KINDS`].
    fn kind(&self) -> usize {
        match self {
            Self::CircuitLimit { .. } => 0,
            Self::Bandwidth { .. } => 1,
            Self::ErrorRate { .. } => 2,
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CircuitLimit { active, max } => {
                write!(f, "{active} of at most {max} circuits are open")
            }
            Self::Bandwidth {
                bytes_per_second,
                capacity,
            } => write!(
                f,
                "relaying {bytes_per_second:.0} bytes/s of a capacity of {capacity} bytes/s"
            ),
            Self::ErrorRate { refused, requests } => {
                write!(f, "{refused} of {requests} relay requests were refused")
            }
        }
    }
}

/// The names of the alerts, for logs.
const KINDS: [&str; 3] = ["circuit limit", "bandwidth", "error rate"];

/// Checks the thresholds against the metrics and logs when one is crossed.
#[derive(Clone, Debug)]
pub(crate) struct Alerts {
    thresholds: AlertThresholds,
    max_circuits: u32,
    bandwidth_capacity: u64,
    last: Option<Sample>,
    firing: [bool; 3],
}

/// The counters an interval's rates are measured from.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    bytes: u64,
    granted: u64,
    refused: u64,
}

impl Alerts {
    /// Alerts with these thresholds for a relay allowing `max_circuits` circuits (0: no
    /// limit, the circuit alert is off) and sized for `bandwidth_capacity` bytes per
    /// second (0: unknown, the bandwidth alert is off).
    pub(crate) fn new(
        thresholds: AlertThresholds,
        max_circuits: u32,
        bandwidth_capacity: u64,
    ) -> Self {
        Self {
            thresholds,
            max_circuits,
            bandwidth_capacity,
            last: None,
            firing: [false; 3],
        }
    }

    /// Alerts as a config says (after its overrides are applied).
    pub(crate) fn from_config(config: &FileConfig) -> Self {
        let relay = &config.node.relay;
        let monitoring = &relay.monitoring;
        Self::new(
            AlertThresholds {
                circuit_limit: monitoring.circuit_limit_threshold,
                bandwidth_limit: monitoring.bandwidth_limit_threshold,
                error_rate: monitoring.error_rate_threshold,
            },
            relay.service.max_circuits,
            monitoring.bandwidth_capacity,
        )
    }

    /// The alerts whose condition holds at `now`. Logs WARN for each that did not hold at
    /// the previous check, and INFO for each that held and no longer does.
    pub(crate) fn check(&mut self, now: Instant, metrics: &Metrics) -> Vec<Alert> {
        let (granted, refused) = metrics.request_outcomes();
        let sample = Sample {
            at: now,
            bytes: metrics.total_relayed_bytes(),
            granted,
            refused,
        };
        let mut alerts = Vec::new();
        let active = metrics.active_circuits();
        if self.max_circuits > 0
            && active as f64 > self.thresholds.circuit_limit * f64::from(self.max_circuits)
        {
            alerts.push(Alert::CircuitLimit {
                active,
                max: self.max_circuits,
            });
        }
        if let Some(last) = self.last {
            let seconds = sample.at.saturating_duration_since(last.at).as_secs_f64();
            let bytes = sample.bytes.saturating_sub(last.bytes);
            if self.bandwidth_capacity > 0 && seconds > 0.0 {
                let bytes_per_second = bytes as f64 / seconds;
                let limit = self.thresholds.bandwidth_limit * self.bandwidth_capacity as f64;
                if bytes_per_second > limit {
                    alerts.push(Alert::Bandwidth {
                        bytes_per_second,
                        capacity: self.bandwidth_capacity,
                    });
                }
            }
            let refused = sample.refused.saturating_sub(last.refused);
            let requests = sample
                .granted
                .saturating_sub(last.granted)
                .saturating_add(refused);
            if requests >= MIN_REQUESTS_FOR_ERROR_RATE
                && refused as f64 > self.thresholds.error_rate * requests as f64
            {
                alerts.push(Alert::ErrorRate { refused, requests });
            }
        }
        self.last = Some(sample);
        let mut now_firing = [false; 3];
        for alert in &alerts {
            now_firing[alert.kind()] = true;
            if !self.firing[alert.kind()] {
                tracing::warn!(alert = KINDS[alert.kind()], "threshold crossed: {alert}");
            }
        }
        for (kind, name) in KINDS.iter().enumerate() {
            if self.firing[kind] && !now_firing[kind] {
                tracing::info!(alert = name, "back under the {name} threshold");
            }
        }
        self.firing = now_firing;
        alerts
    }
}

/// Checks `alerts` every `interval`, forever (at least every 10 ms). Spawn it next to the
/// relay.
pub(crate) async fn run_alerts(mut alerts: Alerts, metrics: Arc<Metrics>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = ticks.tick().await;
        alerts.check(now, &metrics);
    }
}
