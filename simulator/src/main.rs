//! `simulator FILE [--seed N] [--trials N] [--no-invariant-checks] [--trace CELL:TRIAL]`:
//! runs a scenario file with real relay-proto nodes. The table goes to stderr, one JSON
//! object per line to stdout. `--trace` instead runs one trial (cells and trials count
//! from 0) and prints every node event on stderr. Exit status 1 on a bad file or
//! argument, 2 when an invariant was violated.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use simulator::node::{NodeEvent, SimClock};
use simulator::scenario::{Overrides, Scenario, run_file};

const USAGE: &str =
    "usage: simulator FILE [--seed N] [--trials N] [--no-invariant-checks] [--trace CELL:TRIAL]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, overrides, trace) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("simulator: {e}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((cell, trial)) = trace {
        return run_trace(&path, overrides, cell, trial);
    }
    match run_file(&path, overrides) {
        Ok(report) => {
            eprint!("{}", report.table());
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(report.json_lines().as_bytes());
            let _ = out.flush();
            if report.violations() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("simulator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one trial and prints its events and result.
fn run_trace(path: &Path, o: Overrides, cell: usize, trial: u32) -> ExitCode {
    let mut scenario = match Scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("simulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(seed) = o.seed {
        scenario = scenario.with_seed(seed);
    }
    scenario = scenario.with_invariant_checks(!o.no_invariant_checks);
    let mut print = |e: &NodeEvent| eprintln!("{} {} {:?}", e.at, e.host, e.event);
    match scenario.trace_trial(cell, trial, SimClock::start(), &mut print) {
        Ok(result) => {
            eprintln!("{result:#?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("simulator: {e}");
            ExitCode::FAILURE
        }
    }
}

type Parsed = (PathBuf, Overrides, Option<(usize, u32)>);

fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut path = None;
    let mut trace = None;
    let mut o = Overrides::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match a.as_str() {
            "--seed" => {
                let v = value("--seed")?;
                o.seed = Some(v.parse().map_err(|_| format!("--seed {v}: not a number"))?);
            }
            "--trials" => {
                let v = value("--trials")?;
                o.trials = Some(
                    v.parse()
                        .map_err(|_| format!("--trials {v}: not a number"))?,
                );
            }
            "--no-invariant-checks" => o.no_invariant_checks = true,
            "--trace" => {
                let v = value("--trace")?;
                let bad = || format!("--trace {v}: expected CELL:TRIAL, e.g. 0:0");
                let (c, t) = v.split_once(':').ok_or_else(bad)?;
                trace = Some((c.parse().map_err(|_| bad())?, t.parse().map_err(|_| bad())?));
            }
            "-h" | "--help" => return Err("help".into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if path.is_none() => path = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    Ok((path.ok_or("no scenario file given")?, o, trace))
}
