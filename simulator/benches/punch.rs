//! Speed of the punch experiment on one core: experiments per second over the full
//! preset matrix (public and five presets on each side, TCP and QUIC), with and
//! without the per-step invariant checks. Prints numbers; asserts nothing.
//!
//! `cargo bench -p simulator --bench punch`

#![allow(clippy::disallowed_methods)] // wall-clock timing is the point of a benchmark

use std::time::Instant;

use simulator::nat::{NatConfig, NatPreset};
use simulator::oracle::Transport;
use simulator::punch::{PunchSetup, run};

fn matrix(check_invariants: bool, seeds: u64) -> Vec<PunchSetup> {
    let mut sides: Vec<Vec<NatConfig>> = vec![vec![]];
    sides.extend(NatPreset::ALL.iter().map(|p| vec![p.config()]));
    let mut setups = Vec::new();
    for seed in 0..seeds {
        for a in &sides {
            for b in &sides {
                for transport in [Transport::Tcp, Transport::Quic] {
                    let mut s = PunchSetup::new(a.clone(), b.clone(), transport, seed);
                    s.check_invariants = check_invariants;
                    setups.push(s);
                }
            }
        }
    }
    setups
}

/// Runs every setup; returns (experiments per second, events per second, direct share).
fn measure(setups: &[PunchSetup]) -> (f64, f64, f64) {
    let start = Instant::now();
    let (mut events, mut direct) = (0u64, 0usize);
    for s in setups {
        let o = run(s).expect("experiment runs");
        events += o.events;
        direct += usize::from(o.direct.is_some());
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    (
        setups.len() as f64 / secs,
        events as f64 / secs,
        direct as f64 / setups.len() as f64,
    )
}

fn main() {
    let seeds = std::env::var("PUNCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let checked = matrix(true, seeds);
    let unchecked = matrix(false, seeds);
    // Warm up.
    measure(&checked[..checked.len().min(200)]);
    let (base_rate, base_events, share) = measure(&unchecked);
    let (rate, events, _) = measure(&checked);
    eprintln!(
        "punch experiments: {} per run ({} seeds x 6 x 6 sides x 2 transports)",
        checked.len(),
        seeds
    );
    eprintln!("  direct share: {:.1}%", share * 100.0);
    eprintln!(
        "  without invariant checks: {base_rate:>9.0} experiments/s, {base_events:>10.0} events/s"
    );
    eprintln!("  with invariant checks:    {rate:>9.0} experiments/s, {events:>10.0} events/s");
    eprintln!("  checked / unchecked:      {:.2}", rate / base_rate);
    eprintln!("  per minute (checked):     {:.0}", rate * 60.0);
}
