//! DCUtR through real Linux NATs, measured: for each NAT preset on both routers of the
//! NAT lab, `PUNCH_TRIALS` hole punches (default 50) by our pair of peers and by a pair
//! of rust-libp2p 0.57 peers, side by side in the same lab, and a table of the success
//! rate, the share of successes on the first attempt, and the time from the relayed
//! connection to the direct one, in milliseconds and in relayed round trips (for
//! failures: the reasons, and how long until the first peer reported one).
//!
//! ```text
//! sudo cargo bench -p relay-tests --bench punch_lab
//! PUNCH_TRIALS=10 PUNCH_PRESETS=port-restricted,full-cone PUNCH_PAIRS=ours,rust,mixed \
//!   PUNCH_PARALLEL=1 cargo bench -p relay-tests --bench punch_lab
//! ```
//!
//! Needs root (network namespaces, nftables, NFQUEUE); elsewhere it prints
//! `natlab: skipped: <reason>`. The lab's delays are the issue's: 50 ms on each side of
//! each NAT router and 25 ms at the relay, so the relayed path A-relay-B has a 250 ms
//! round trip and the direct path A-B 200 ms.
//!
//! A trial: a listener behind router B reserves on the relay (our `relay serve
//! --unlimited`), a dialer behind router A dials it through the relay, and DCUtR runs
//! with each stack's defaults (rust-libp2p: 3 attempts, 10 s connection timeout). The
//! trial ends at the dialer's `hole_punch` line, or at a failure either peer reports
//! first (rust-libp2p tells only its listener that it gave up). The time is from the
//! dialer's `connected` line for the relayed connection to its `hole_punch` success line,
//! both timed as the lab reads them; a second line gives the time from the dialer's
//! start (its process spawned) to that success, which also counts how fast each stack
//! connects to the relay and opens the circuit. The attempt is the dialer's count. Each trial has
//! fresh identities and listen ports; the pairs take turns, so both see the same lab.
//!
//! - `PUNCH_TRIALS`: trials per preset and pair (50).
//! - `PUNCH_PRESETS`: which presets, by name (`port-restricted,full-cone,symmetric`).
//! - `PUNCH_PAIRS`: `ours`, `rust`, `mixed` (both directions), any subset (`ours,rust`).
//! - `PUNCH_PARALLEL`: trials run at once in a lab (1). Symmetric trials mostly wait for
//!   timeouts, so running several at once shortens them without changing their outcome;
//!   the cone presets' times are best measured one at a time.
//!
//! Our relay binary is built with `cargo build --release -p relay-cli` into
//! `target/relay-bench/` as the relay benchmarks do (`RELAY_BIN` names another one);
//! `rust-peer` is this crate's binary, built by Cargo for the benchmark.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use relay_tests::bench::{RelayBinaries, env_or, median};
use relay_tests::natlab::{
    Binaries, Lab, LabError, Nat, Outcome, Pair, PunchLab, SLOTS, TrialOptions,
};

/// What the trials of one preset and pair came to.
#[derive(Debug, Default)]
struct Tally {
    trials: u32,
    direct: u32,
    first_attempt: u32,
    /// Relayed connection to direct connection, per success.
    times: Vec<Duration>,
    /// The dialer's start to its direct connection, per success.
    from_start: Vec<Duration>,
    /// Relayed connection to the first failure report, per failure.
    give_up: Vec<Duration>,
    /// Failure reasons (as reported) and how often.
    failures: BTreeMap<String, u32>,
    /// Trials that broke before the hole punch (setup errors).
    errors: BTreeMap<String, u32>,
}

impl Tally {
    fn add(&mut self, result: Result<Outcome, LabError>) {
        self.trials += 1;
        match result {
            Ok(Outcome::Direct {
                attempt,
                after,
                from_start,
                ..
            }) => {
                self.direct += 1;
                if attempt == 1 {
                    self.first_attempt += 1;
                }
                self.times.push(after);
                self.from_start.push(from_start);
            }
            Ok(Outcome::Relayed {
                by, error, after, ..
            }) => {
                self.give_up.push(after);
                *self
                    .failures
                    .entry(format!("{by}: {}", shorten(&error)))
                    .or_default() += 1;
            }
            Err(e) => *self.errors.entry(shorten(&e.to_string())).or_default() += 1,
        }
    }
}

/// The first line of a message, at most 120 characters.
fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(120).collect()
}

fn percent(part: u32, whole: u32) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}%", 100.0 * f64::from(part) / f64::from(whole))
}

/// The `q` quantile (nearest rank) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The names of `all` that the comma-separated list in `var` holds, or `default` when
/// `var` is unset.
fn wanted(var: &str, all: &[&'static str], default: &[&'static str]) -> Vec<&'static str> {
    match std::env::var(var) {
        Ok(list) => all
            .iter()
            .copied()
            .filter(|name| list.split(',').any(|w| w.trim() == *name))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// The pairs `PUNCH_PAIRS` names; ours and rust-libp2p's by default.
fn pairs() -> Vec<Pair> {
    let kinds = wanted("PUNCH_PAIRS", &["ours", "rust", "mixed"], &["ours", "rust"]);
    Pair::ALL
        .into_iter()
        .filter(|pair| kinds.contains(&pair.kind()))
        .collect()
}

/// Runs `trials` trials of each pair in `lab`, `parallel` at a time, pairs taking turns.
fn measure(
    punch: &PunchLab<'_>,
    nat: Nat,
    pairs: &[Pair],
    trials: u32,
    parallel: usize,
) -> Vec<(Pair, Tally)> {
    let options = TrialOptions {
        pings: 1,
        wait_for_pings: false,
        ..TrialOptions::default()
    };
    let jobs: VecDeque<(u32, Pair)> = (0..trials)
        .flat_map(|i| pairs.iter().map(move |pair| (i, *pair)))
        .zip(0..)
        .map(|((_, pair), slot)| (slot, pair))
        .collect();
    let total = jobs.len();
    let jobs = Mutex::new(jobs);
    let tallies: Mutex<Vec<(Pair, Tally)>> =
        Mutex::new(pairs.iter().map(|p| (*p, Tally::default())).collect());
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            scope.spawn(|| {
                loop {
                    let Some((slot, pair)) = jobs.lock().expect("jobs").pop_front() else {
                        return;
                    };
                    let started = Instant::now();
                    let result = punch.trial(slot % SLOTS, pair, &options);
                    let outcome = result.map(|trial| trial.outcome);
                    eprintln!(
                        "punch_lab: {nat} #{}/{total} {pair}: {} ({:.1} s)",
                        slot + 1,
                        match &outcome {
                            Ok(o) => format!("{o:?}"),
                            Err(e) => format!("error: {}", shorten(&e.to_string())),
                        },
                        started.elapsed().as_secs_f64()
                    );
                    let mut tallies = tallies.lock().expect("tallies");
                    if let Some((_, tally)) = tallies.iter_mut().find(|(p, _)| *p == pair) {
                        tally.add(outcome);
                    }
                }
            });
        }
    });
    tallies.into_inner().expect("tallies")
}

fn main() {
    let trials: u32 = env_or("PUNCH_TRIALS", 50);
    let parallel: usize = env_or("PUNCH_PARALLEL", 1);
    let names = ["port-restricted", "full-cone", "symmetric"];
    let presets: Vec<Nat> = wanted("PUNCH_PRESETS", &names, &names)
        .into_iter()
        .filter_map(|name| Nat::ALL.into_iter().find(|n| n.name() == name))
        .collect();
    let pairs = pairs();
    // Probe once that labs can be made here, before building anything.
    match Lab::new(Nat::PortRestricted, Nat::PortRestricted) {
        Err(LabError::Unavailable(reason)) => {
            println!("natlab: skipped: {reason}");
            return;
        }
        Err(e) => panic!("natlab: {e}"),
        Ok(lab) => drop(lab),
    }
    let relay = RelayBinaries::locate(env!("CARGO_BIN_EXE_rust-relay"))
        .unwrap_or_else(|e| panic!("the relay binary: {e}"));
    let binaries = Binaries {
        ours: relay.ours,
        rust: PathBuf::from(env!("CARGO_BIN_EXE_rust-peer")),
    };
    eprintln!(
        "punch_lab: {trials} trials per preset and pair, {parallel} at a time; ours: {}",
        binaries.ours.display()
    );
    let mut rows = Vec::new();
    let mut rtts = None;
    for nat in presets {
        let lab = Lab::new(nat, nat).unwrap_or_else(|e| panic!("natlab: {e}"));
        let punch = PunchLab::start(&lab, binaries.clone())
            .unwrap_or_else(|e| panic!("natlab: the relay: {e}"));
        rtts = Some((punch.relayed_rtt(), punch.direct_rtt()));
        let started = Instant::now();
        for (pair, tally) in measure(&punch, nat, &pairs, trials, parallel) {
            rows.push((nat, pair, tally));
        }
        eprintln!(
            "punch_lab: {nat} took {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    let Some((relayed_rtt, direct_rtt)) = rtts else {
        return;
    };
    print_table(&rows, relayed_rtt, direct_rtt, trials, parallel);
}

fn print_table(
    rows: &[(Nat, Pair, Tally)],
    relayed_rtt: Duration,
    direct_rtt: Duration,
    trials: u32,
    parallel: usize,
) {
    let rtt_ms = relayed_rtt.as_secs_f64() * 1000.0;
    println!();
    println!(
        "DCUtR in the NAT lab: {trials} trials per preset and pair, {parallel} at a time; \
         relayed RTT {rtt_ms:.0} ms, direct RTT {:.0} ms (configured delays)",
        direct_rtt.as_secs_f64() * 1000.0
    );
    println!(
        "{:<16} {:<22} {:>14} {:>16} {:>26} {:>22}",
        "preset", "pair", "success", "first attempt", "relayed->direct ms", "in relayed RTTs"
    );
    println!(
        "{:<16} {:<22} {:>14} {:>16} {:>26} {:>22}",
        "", "", "", "(of successes)", "median / p90 / max", "median / p90"
    );
    for (nat, pair, tally) in rows {
        let mut ms: Vec<f64> = tally
            .times
            .iter()
            .map(|t| t.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let (time, rtts) = if ms.is_empty() {
            ("-".to_owned(), "-".to_owned())
        } else {
            let (med, p90, max) = (median(&ms), quantile(&ms, 0.9), quantile(&ms, 1.0));
            (
                format!("{med:.0} / {p90:.0} / {max:.0}"),
                format!("{:.2} / {:.2}", med / rtt_ms, p90 / rtt_ms),
            )
        };
        println!(
            "{:<16} {:<22} {:>14} {:>16} {:>26} {:>22}",
            nat.name(),
            pair.to_string(),
            format!(
                "{}/{} {}",
                tally.direct,
                tally.trials,
                percent(tally.direct, tally.trials)
            ),
            format!(
                "{}/{} {}",
                tally.first_attempt,
                tally.direct,
                percent(tally.first_attempt, tally.direct)
            ),
            time,
            rtts,
        );
        if !tally.from_start.is_empty() {
            let mut ms: Vec<f64> = tally
                .from_start
                .iter()
                .map(|t| t.as_secs_f64() * 1000.0)
                .collect();
            ms.sort_by(f64::total_cmp);
            println!(
                "{:<40} dialer start->direct ms (relay connection, circuit, hole punch): \
                 median {:.0} / p90 {:.0}",
                "",
                median(&ms),
                quantile(&ms, 0.9)
            );
        }
        for (reason, count) in &tally.failures {
            println!("{:<40} failed x{count}: {reason}", "");
        }
        if !tally.give_up.is_empty() {
            let mut s: Vec<f64> = tally.give_up.iter().map(Duration::as_secs_f64).collect();
            s.sort_by(f64::total_cmp);
            println!(
                "{:<40} failure reported after (s): median {:.1} / max {:.1}",
                "",
                median(&s),
                quantile(&s, 1.0)
            );
        }
        for (error, count) in &tally.errors {
            println!("{:<40} trial error x{count}: {error}", "");
        }
    }
}
