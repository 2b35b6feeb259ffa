//! Complete scenarios per minute on one core: a relay and two peers behind NATs, with
//! real relay-proto nodes; B reserves, A connects through the relay, the nodes upgrade
//! the connection by DCUtR (Noise and Yamux handshakes on every connection), A pings
//! B directly. Prints numbers, asserts nothing. Baseline in the same run: the
//! network-only `punch` experiment (no nodes, no handshakes) over the same NATs.
//!
//! The rates are per minute of the benchmark thread's CPU time
//! (`/proc/thread-self/schedstat`), so other work on a shared machine does not skew
//! them; the wall-clock rate is printed too. Without that file, wall-clock time is
//! used for both.
//!
//! `cargo bench -p simulator --bench scenarios` (`SCENARIO_TRIALS=N` to change the
//! number of trials per measurement, default 1000).

#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

use std::time::{Duration, Instant};

use simulator::nat::NatPreset;
use simulator::node::SimClock;
use simulator::oracle::Transport;
use simulator::punch::{PunchSetup, run};
use simulator::scenario::Scenario;

const SCENARIO: &str = "
name: bench
relays: {relay: {}}
peers:
  a: {nat: port_restricted_cone}
  b: {nat: linux_default}
steps:
  - reserve: {peer: b, relay: relay}
  - connect: {from: a, to: b, via: relay}
  - hole_punch: {from: a, to: b}
  - ping: {from: a, to: b, path: direct}
";

/// CPU time of this thread, if the kernel reports it.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    (nanos > 0).then(|| Duration::from_nanos(nanos))
}

/// Elapsed CPU time since `cpu0` (wall time since `wall0` without it).
fn elapsed(cpu0: Option<Duration>, wall0: Instant) -> f64 {
    match (cpu0, cpu_time()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => wall0.elapsed().as_secs_f64(),
    }
    .max(1e-9)
}

/// Runs `trials` trials; returns (scenarios per CPU minute, per wall minute, completed
/// share, direct share, world events per trial).
fn measure(s: &Scenario, trials: u32, clock: SimClock) -> (f64, f64, f64, f64, f64) {
    let (cpu0, start) = (cpu_time(), Instant::now());
    let (mut completed, mut direct, mut events) = (0u32, 0u32, 0u64);
    for t in 0..trials {
        let r = s.run_trial(0, t, clock).expect("the scenario runs");
        completed += u32::from(r.completed);
        direct += u32::from(r.direct);
        events += r.events;
    }
    let secs = elapsed(cpu0, start);
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let n = f64::from(trials);
    (
        n / secs * 60.0,
        n / wall * 60.0,
        f64::from(completed) / n,
        f64::from(direct) / n,
        events as f64 / n,
    )
}

/// The network-only punch experiment over the same NATs, per minute.
fn baseline(trials: u32) -> f64 {
    let (cpu0, start) = (cpu_time(), Instant::now());
    for seed in 0..u64::from(trials) {
        let setup = PunchSetup::new(
            vec![NatPreset::PortRestrictedCone.config()],
            vec![NatPreset::LinuxDefault.config()],
            Transport::Tcp,
            seed,
        );
        run(&setup).expect("experiment runs");
    }
    f64::from(trials) / elapsed(cpu0, start) * 60.0
}

fn main() {
    let trials = std::env::var("SCENARIO_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let clock = SimClock::start();
    let checked = Scenario::from_yaml(SCENARIO, "bench").expect("valid");
    let unchecked = checked.clone().with_invariant_checks(false);
    // Warm up.
    measure(&checked, trials.min(50), clock);
    let (rate, wall, completed, direct, events) = measure(&checked, trials, clock);
    let (fast, ..) = measure(&unchecked, trials, clock);
    let base = baseline(trials);
    eprintln!(
        "complete scenarios (reserve, relayed connection, DCUtR, direct ping), {trials} trials, one core:"
    );
    eprintln!(
        "  completed {:.1}%, direct {:.1}%, {events:.0} world events per scenario",
        completed * 100.0,
        direct * 100.0
    );
    let unit = if cpu_time().is_some() {
        "per CPU minute"
    } else {
        "per minute (wall clock)"
    };
    eprintln!("  with invariant checks:    {rate:>9.0} scenarios {unit}");
    eprintln!("  without invariant checks: {fast:>9.0} scenarios {unit}");
    eprintln!("  with invariant checks, wall clock: {wall:>9.0} per minute");
    eprintln!("  network-only punch experiment (baseline): {base:>9.0} {unit}");
    eprintln!(
        "  nodes cost: the scenario takes {:.1}x the baseline's time",
        base / rate
    );
    eprintln!(
        "  target 10000 per minute: {}",
        if rate >= 10_000.0 { "met" } else { "NOT met" }
    );
}
