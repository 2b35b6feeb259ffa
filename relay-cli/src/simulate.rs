//! `relay simulate SCENARIO`: runs a simulator scenario file with relay-proto nodes on
//! simulated hosts and NATs. The table goes to stderr, one JSON object per line to
//! stdout (`cell`, `field_mix`, `simulation` events).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use simulator::scenario::{Overrides, ScenarioError, run_file};

#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// The scenario file (YAML; see scenarios/ and the simulator crate's docs).
    scenario: PathBuf,
    /// Another seed than the file's.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Another number of trials per cell than the file's.
    #[arg(long, value_name = "N")]
    trials: Option<u32>,
    /// Skip the invariant checks after every event (faster).
    #[arg(long)]
    no_invariant_checks: bool,
}

/// Why a simulation did not produce a clean report.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimulateError {
    /// The scenario could not run.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// It ran, but the network broke one of its invariants.
    #[error("{0} trial(s) violated an invariant (see the failures above)")]
    Violations(u64),
}

pub(crate) fn simulate(args: SimulateArgs) -> Result<(), SimulateError> {
    let overrides = Overrides {
        seed: args.seed,
        trials: args.trials,
        no_invariant_checks: args.no_invariant_checks,
    };
    let report = run_file(&args.scenario, overrides)?;
    eprint!("{}", report.table());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.json_lines().as_bytes());
    let _ = out.flush();
    match report.violations() {
        0 => Ok(()),
        n => Err(SimulateError::Violations(n)),
    }
}
