//! What a run measured, per cell and in all: a table for people, JSON lines for
//! programs. Both are functions of the results only, so the same seed gives the same
//! bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::spec::TransportName;
use super::trial::TrialResult;
use crate::oracle::Verdict;

/// The results of one cell's trials.
#[derive(Debug, Clone, PartialEq)]
pub struct CellReport {
    /// `a=full_cone b=symmetric`, or `all`.
    pub label: String,
    /// Every peer's NAT in this cell: (peer, NAT label).
    pub nats: Vec<(String, String)>,
    /// The transport.
    pub transport: TransportName,
    /// The field-mix weight, if the cell is part of one.
    pub weight: Option<f64>,
    /// The oracle's prediction for the hole punch of DCUtR as the node runs it, if the
    /// scenario punches ([`crate::oracle::predict_dcutr`]).
    pub oracle: Option<Verdict>,
    /// Whether a direct path exists at all for a TCP or QUIC punch
    /// ([`crate::oracle::predict`]).
    pub oracle_path: Option<Verdict>,
    /// Whether a pair is measured (a `hole_punch` step or a field mix); without one the
    /// direct-connection figures are meaningless and reported as absent.
    pub measured: bool,
    /// Trials run.
    pub trials: u32,
    /// Trials whose every step succeeded.
    pub completed: u32,
    /// Trials in which the hole-punching pair got a direct connection.
    pub direct: u32,
    /// Trials whose hole punch ended with an outcome.
    pub punches: u32,
    /// Successful hole punches that needed one attempt at most.
    pub first_attempt: u32,
    /// Attempts over all hole punches.
    pub attempts: u64,
    /// Times to a direct connection, sorted.
    pub time_to_direct: Vec<Duration>,
    /// Bytes relayed over all trials.
    pub relayed_bytes: u64,
    /// Sum and count of ping round trips.
    pub ping: (Duration, u64),
    /// Bytes and time of all transfers.
    pub transfer: (u64, Duration),
    /// Failures of relays AutoRelay peers held (see [`TrialResult::relay_failures`]).
    pub relay_failures: u32,
    /// Times from such a failure to the next reservation the peer's AutoRelay added,
    /// sorted.
    pub failovers: Vec<Duration>,
    /// The heartbeat's detection interval, `ping.interval + ping.timeout` of the
    /// nodes, if they ping; the failover target is twice this.
    pub detection: Option<Duration>,
    /// Trials with a relay failure, and of those the trials whose later `connect`
    /// succeeded.
    pub redials: (u32, u32),
    /// Failure reasons and how often each occurred.
    pub failures: BTreeMap<String, u32>,
    /// Trials with an invariant violation.
    pub violations: u32,
    /// Trials whose direct outcome the oracle predicted (when it predicted one).
    pub agreeing: u32,
    /// Simulated time and world events over all trials.
    pub sim_time: Duration,
    /// World events processed over all trials.
    pub events: u64,
}

impl CellReport {
    /// An empty report for a cell.
    pub(crate) fn new(
        label: String,
        nats: Vec<(String, String)>,
        transport: TransportName,
        weight: Option<f64>,
        oracle: Option<(Verdict, Verdict)>,
        measured: bool,
    ) -> Self {
        Self {
            measured,
            label,
            nats,
            transport,
            weight,
            oracle: oracle.map(|(dcutr, _)| dcutr),
            oracle_path: oracle.map(|(_, path)| path),
            trials: 0,
            completed: 0,
            direct: 0,
            punches: 0,
            first_attempt: 0,
            attempts: 0,
            time_to_direct: Vec::new(),
            relayed_bytes: 0,
            ping: (Duration::ZERO, 0),
            transfer: (0, Duration::ZERO),
            relay_failures: 0,
            failovers: Vec::new(),
            detection: None,
            redials: (0, 0),
            failures: BTreeMap::new(),
            violations: 0,
            agreeing: 0,
            sim_time: Duration::ZERO,
            events: 0,
        }
    }

    /// Adds a trial.
    pub(crate) fn add(&mut self, r: &TrialResult) {
        self.trials += 1;
        self.completed += u32::from(r.completed);
        self.direct += u32::from(r.direct);
        if let Some(p) = r.punch {
            self.punches += 1;
            self.attempts += u64::from(p.attempts);
            self.first_attempt += u32::from(p.success && p.attempts <= 1);
        }
        if let Some(t) = r.time_to_direct {
            let at = self.time_to_direct.partition_point(|x| *x <= t);
            self.time_to_direct.insert(at, t);
        }
        self.relay_failures += r.relay_failures;
        for &t in &r.failovers {
            let at = self.failovers.partition_point(|x| *x <= t);
            self.failovers.insert(at, t);
        }
        if let Some(ok) = r.redial {
            self.redials.0 += 1;
            self.redials.1 += u32::from(ok);
        }
        self.relayed_bytes += r.relayed_bytes;
        for rtt in &r.ping_rtts {
            self.ping.0 += *rtt;
            self.ping.1 += 1;
        }
        for (bytes, took) in &r.transfers {
            self.transfer.0 += bytes;
            self.transfer.1 += *took;
        }
        if let Some(f) = &r.failure {
            *self.failures.entry(f.clone()).or_default() += 1;
        }
        self.violations += u32::from(r.violation.is_some());
        if self.oracle.and_then(Verdict::is_direct) == Some(r.direct) {
            self.agreeing += 1;
        }
        self.sim_time += r.sim_time;
        self.events += r.events;
    }

    /// Whether the network has a direct path (or may) that DCUtR cannot use, or the
    /// other way round.
    pub fn path_differs(&self) -> bool {
        match (self.oracle, self.oracle_path) {
            (Some(dcutr), Some(path)) => dcutr.is_direct() != path.is_direct(),
            _ => false,
        }
    }

    /// Direct connections per trial, if a pair is measured.
    pub fn success_rate(&self) -> Option<f64> {
        self.measured
            .then(|| ratio(self.direct.into(), self.trials.into()))
    }

    /// Completed trials per trial.
    pub fn completion_rate(&self) -> f64 {
        ratio(self.completed.into(), self.trials.into())
    }

    /// Share of successful hole punches that needed one attempt at most.
    pub fn first_attempt_share(&self) -> Option<f64> {
        let successes = self.direct.min(self.punches);
        (successes > 0).then(|| ratio(self.first_attempt.into(), successes.into()))
    }

    /// Mean attempts per hole punch.
    pub fn attempts_mean(&self) -> Option<f64> {
        (self.punches > 0).then(|| ratio(self.attempts as f64, self.punches.into()))
    }

    /// The `q`-quantile (0 to 1) of the time to a direct connection.
    pub fn time_to_direct_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.time_to_direct, q)
    }

    /// The `q`-quantile (0 to 1) of the time from a relay's failure to the next
    /// reservation.
    pub fn failover_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.failovers, q)
    }

    /// The failover target: two detection intervals.
    pub fn failover_target(&self) -> Option<Duration> {
        self.detection.map(|d| 2 * d)
    }

    /// Failovers within the target.
    pub fn failovers_within_target(&self) -> Option<usize> {
        let target = self.failover_target()?;
        Some(self.failovers.iter().filter(|t| **t <= target).count())
    }

    /// Trials whose re-dial after a relay failure succeeded, per trial with a failure.
    pub fn redial_success_rate(&self) -> Option<f64> {
        let (trials, ok) = self.redials;
        (trials > 0).then(|| ratio(ok.into(), trials.into()))
    }

    /// The failover figures as JSON, `null` without relay failures.
    fn failover_json(&self) -> Value {
        if self.relay_failures == 0 {
            return Value::Null;
        }
        let q = |q| self.failover_quantile(q).map(ms);
        json!({
            "relay_failures": self.relay_failures,
            "replaced": self.failovers.len(),
            "p50_ms": q(0.5),
            "p90_ms": q(0.9),
            "max_ms": q(1.0),
            "detection_interval_ms": self.detection.map(ms),
            "target_ms": self.failover_target().map(ms),
            "within_target": self.failovers_within_target(),
        })
    }

    /// Mean bytes relayed per trial.
    pub fn relayed_bytes_mean(&self) -> f64 {
        ratio(self.relayed_bytes as f64, self.trials.into())
    }

    fn json(&self, scenario: &str) -> Value {
        let nat: serde_json::Map<String, Value> = self
            .nats
            .iter()
            .map(|(p, n)| (p.clone(), Value::from(n.as_str())))
            .collect();
        let ttd = match (
            self.time_to_direct_quantile(0.5),
            self.time_to_direct_quantile(0.9),
        ) {
            (Some(p50), Some(p90)) => json!({"p50": ms(p50), "p90": ms(p90)}),
            _ => Value::Null,
        };
        json!({
            "event": "cell",
            "scenario": scenario,
            "cell": self.label,
            "nat": nat,
            "transport": self.transport.name(),
            "weight": self.weight.map(round6),
            "trials": self.trials,
            "completed": self.completed,
            "direct": self.direct,
            "success_rate": self.success_rate().map(round6),
            "first_attempt_share": self.first_attempt_share().map(round6),
            "attempts_mean": self.attempts_mean().map(round6),
            "time_to_direct_ms": ttd,
            "relayed_bytes_mean": round6(self.relayed_bytes_mean()),
            "relayed_bytes_total": self.relayed_bytes,
            "ping_rtt_ms_mean": (self.ping.1 > 0)
                .then(|| round6(ms(self.ping.0) / self.ping.1 as f64)),
            "oracle": self.oracle.map(verdict_name),
            "oracle_path": self.oracle_path.map(verdict_name),
            "oracle_agreement": self.oracle.and_then(Verdict::is_direct).map(|_| {
                round6(ratio(self.agreeing.into(), self.trials.into()))
            }),
            "relay_failover": self.failover_json(),
            "redial_success_rate": self.redial_success_rate().map(round6),
            "failures": self.failures,
            "violations": self.violations,
            "sim_seconds": round6(self.sim_time.as_secs_f64()),
            "events": self.events,
        })
    }
}

/// The field-mix projection.
#[derive(Debug, Clone, PartialEq)]
pub struct MixReport {
    /// Σ weight × success rate over the cells.
    pub projected: f64,
    /// The same with the oracle's predictions, undetermined counted as failures.
    pub oracle_low: f64,
    /// The same, undetermined counted as successes.
    pub oracle_high: f64,
    /// Σ weight × whether the network has a direct path at all
    /// ([`crate::oracle::predict`], undetermined counted as successes).
    pub path_high: f64,
    /// The field figure to compare with.
    pub field_rate: f64,
}

/// The results of a whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// One report per cell, in the order of the grid.
    pub cells: Vec<CellReport>,
    /// The field-mix projection, for a `field_mix` scenario.
    pub mix: Option<MixReport>,
}

impl Report {
    /// Trials over all cells.
    pub fn trials(&self) -> u64 {
        self.cells.iter().map(|c| u64::from(c.trials)).sum()
    }

    /// Completed trials over all cells.
    pub fn completed(&self) -> u64 {
        self.cells.iter().map(|c| u64::from(c.completed)).sum()
    }

    /// Trials with an invariant violation.
    pub fn violations(&self) -> u64 {
        self.cells.iter().map(|c| u64::from(c.violations)).sum()
    }

    /// The readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "scenario {} (seed {}): {} cell(s), {} trial(s), {} completed",
            self.scenario,
            self.seed,
            self.cells.len(),
            self.trials(),
            self.completed()
        );
        let width = self
            .cells
            .iter()
            .map(|c| c.label.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            s,
            "{:<width$}  {:>6}  {:>6}  {:>7}  {:>7}  {:>8}  {:>17}  {:>12}  {:<12}",
            "cell",
            "trials",
            "done",
            "direct",
            "1st-try",
            "attempts",
            "t-direct p50/p90",
            "relayed B",
            "oracle"
        );
        for c in &self.cells {
            let ttd = match (
                c.time_to_direct_quantile(0.5),
                c.time_to_direct_quantile(0.9),
            ) {
                (Some(a), Some(b)) => format!("{:.0}/{:.0} ms", ms(a), ms(b)),
                _ => "-".into(),
            };
            let mut oracle = match (c.oracle, c.oracle.and_then(Verdict::is_direct)) {
                (Some(v), Some(_)) => format!(
                    "{} {:.0}%",
                    verdict_name(v),
                    100.0 * ratio(c.agreeing.into(), c.trials.into())
                ),
                (Some(v), None) => verdict_name(v).to_owned(),
                (None, _) => "-".into(),
            };
            if let Some(path) = c.oracle_path.filter(|_| c.path_differs()) {
                let _ = write!(oracle, " (path: {})", verdict_name(path));
            }
            let _ = writeln!(
                s,
                "{:<width$}  {:>6}  {:>5.0}%  {:>7}  {:>7}  {:>8}  {:>17}  {:>12.0}  {:<12}",
                c.label,
                c.trials,
                100.0 * c.completion_rate(),
                c.success_rate()
                    .map_or("-".into(), |x| format!("{:.1}%", 100.0 * x)),
                c.first_attempt_share()
                    .map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
                c.attempts_mean().map_or("-".into(), |x| format!("{x:.2}")),
                ttd,
                c.relayed_bytes_mean(),
                oracle,
            );
        }
        if self.cells.iter().any(CellReport::path_differs) {
            let _ = writeln!(
                s,
                "(path: ...) where a direct path exists for the network but DCUtR's fixed \
                 security roles cannot use it (see oracle::predict_dcutr)"
            );
        }
        for c in self.cells.iter().filter(|c| c.relay_failures > 0) {
            let q = |q| {
                c.failover_quantile(q)
                    .map_or("-".into(), |d| format!("{:.0}", ms(d)))
            };
            let _ = write!(
                s,
                "relay failover {}: {} of {} failed relays replaced, failure to new \
                 reservation p50/p90/max {}/{}/{} ms",
                c.label,
                c.failovers.len(),
                c.relay_failures,
                q(0.5),
                q(0.9),
                q(1.0),
            );
            if let (Some(d), Some(n)) = (c.detection, c.failovers_within_target()) {
                let _ = write!(
                    s,
                    "; target 2 x {:.0} ms detection interval (ping interval + timeout): \
                     {n} within",
                    ms(d)
                );
            }
            if let Some(rate) = c.redial_success_rate() {
                let _ = write!(
                    s,
                    "; re-dial {}/{} ({:.1}%)",
                    c.redials.1,
                    c.redials.0,
                    100.0 * rate
                );
            }
            s.push('\n');
        }
        if let Some(m) = &self.mix {
            let _ = writeln!(
                s,
                "field mix: projected direct-connection rate {:.1}% (oracle {:.1}%..{:.1}%, \
                 network paths {:.1}%), field {:.1}% (DCUtR, 4.4 million attempts): {:+.1} points",
                100.0 * m.projected,
                100.0 * m.oracle_low,
                100.0 * m.oracle_high,
                100.0 * m.path_high,
                100.0 * m.field_rate,
                100.0 * (m.projected - m.field_rate)
            );
        }
        let failing: Vec<&CellReport> = self
            .cells
            .iter()
            .filter(|c| !c.failures.is_empty())
            .collect();
        if !failing.is_empty() {
            let _ = writeln!(s, "failures:");
            for c in failing {
                for (reason, n) in &c.failures {
                    let _ = writeln!(s, "  {}: {n} x {reason}", c.label);
                }
            }
        }
        // The last column is padded: no line ends in spaces.
        s.lines().map(|l| format!("{}\n", l.trim_end())).collect()
    }

    /// One JSON object per line: a `cell` per cell, a `field_mix` for a field-mix
    /// scenario, and a closing `simulation` summary.
    pub fn json_lines(&self) -> String {
        let mut s = String::new();
        for c in &self.cells {
            s.push_str(&c.json(&self.scenario).to_string());
            s.push('\n');
        }
        if let Some(m) = &self.mix {
            let v = json!({
                "event": "field_mix",
                "scenario": self.scenario,
                "projected_direct_rate": round6(m.projected),
                "oracle_direct_rate": {"low": round6(m.oracle_low), "high": round6(m.oracle_high)},
                "network_path_rate": round6(m.path_high),
                "field_rate": round6(m.field_rate),
                "difference": round6(m.projected - m.field_rate),
            });
            s.push_str(&v.to_string());
            s.push('\n');
        }
        let (trials, direct) = self.cells.iter().fold((0u64, 0u64), |(t, d), c| {
            (t + u64::from(c.trials), d + u64::from(c.direct))
        });
        let v = json!({
            "event": "simulation",
            "scenario": self.scenario,
            "seed": self.seed,
            "cells": self.cells.len(),
            "trials": trials,
            "completed": self.completed(),
            "direct": direct,
            "violations": self.violations(),
        });
        s.push_str(&v.to_string());
        s.push('\n');
        s
    }
}

/// Builds the field-mix projection from weighted cells.
pub(crate) fn mix(cells: &[CellReport], field_rate: f64) -> MixReport {
    let (mut projected, mut low, mut high, mut path) = (0.0, 0.0, 0.0, 0.0);
    for c in cells {
        let w = c.weight.unwrap_or(0.0);
        projected += w * c.success_rate().unwrap_or(0.0);
        if c.oracle_path.is_some_and(|p| p.is_direct() != Some(false)) {
            path += w;
        }
        match c.oracle {
            Some(Verdict::Direct(_)) => {
                low += w;
                high += w;
            }
            Some(Verdict::Undetermined) => high += w,
            _ => {}
        }
    }
    MixReport {
        projected,
        oracle_low: low,
        oracle_high: high,
        path_high: path,
        field_rate,
    }
}

/// `direct`, `none`, `race`.
pub fn verdict_name(v: Verdict) -> &'static str {
    match v {
        Verdict::Direct(_) => "direct",
        Verdict::NoDirect => "none",
        Verdict::Undetermined => "race",
    }
}

/// The `q`-quantile (0 to 1) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let i = ((n - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i).copied()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}
