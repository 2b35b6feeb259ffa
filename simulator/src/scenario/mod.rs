//! Scenario files: topologies, steps and trials run with real relay-proto nodes.
//!
//! A scenario is a YAML file. Each trial builds a fresh [`crate::node::NodeWorld`]
//! from the trial's seed (link latencies drawn from their ranges, keys, RNGs), runs the
//! steps in order, and records what happened; the first failing step ends the trial.
//! Cells group trials: one cell for a plain scenario, one per combination for a
//! `matrix`, one per pair of NAT types for a `field_mix`. The [`Report`] gives per cell
//! the success rate (trials with a direct connection between the hole-punching pair),
//! the first-attempt share, attempts, time to the direct connection, relayed bytes, and
//! what the [`crate::oracle`] predicts; as a table and as JSON lines. Same file, same
//! seed: the same bytes.
//!
//! ```yaml
//! name: cone-to-cone            # default: the file name
//! seed: 1                       # every trial's seed derives from it
//! trials: 20                    # per cell
//! transport: tcp                # the only one relay-proto's Node has so far
//! relays:
//!   relay: {link: {latency_ms: 10}, limits: {max_circuit_bytes: 0}}
//! peers:
//!   a: {nat: port_restricted_cone, link: {latency_ms: [10, 40]}}
//!   b: {nat: [full_cone, symmetric]}             # a chain, innermost first
//!   c: {nat: {mapping: endpoint_independent, filtering: address_dependent}}
//!   d:                                           # AutoRelay: reserves by itself
//!     nat: symmetric
//!     auto_relay: {static_relays: [relay], min_relay_peers: 1, max_relay_peers: 1,
//!                  selection_policy: quality, enable_dynamic: false,
//!                  activation: when_private, backoff_s: 30}
//! steps:
//!   - reserve: {peer: b, relay: relay}           # waits for the answer
//!   - connect: {from: a, to: b, via: relay}      # a relayed connection
//!   - hole_punch: {from: a, to: b}               # DCUtR, by the nodes
//!   - ping: {from: a, to: b, count: 3, path: any}
//!   - transfer: {from: a, to: b, bytes: 100000, path: relayed}
//!   - crash: relay
//!   - wait: 5                                    # seconds
//!   - restart: relay
//!   - await: {host: b, event: reservation_lost}
//!   - leave: c                                   # closes, then switches off
//!   - join: c                                    # a new node, same identity
//!   - await_relays: {peer: d, count: 1}          # d's AutoRelay holds 1 (live)
//!   - connect: {from: a, to: d, via: {relay_of: d, pick: newest}}
//!   - kill: {relay_of: d, pick: oldest}          # a process dies: resets
//!   - crash: {relay_of: d}                       # a machine goes silent
//! matrix:                                        # optional: a grid of cells
//!   nat: {a: [public, full_cone, symmetric], b: [full_cone, symmetric]}
//! options: {check_invariants: true, step_timeout_s: 60, ping_interval_s: 15,
//!           ping_timeout_s: 20}
//! ```
//!
//! AutoRelay: a peer with `auto_relay` runs the node's own AutoRelay with the named
//! relays as static relays; it is started when the node boots (and after a restart or
//! join) and reserves, renews and replaces relays by itself. A failed relay is noticed
//! only as under a real runtime: `kill` (the process dies, its operating system resets
//! the connections and refuses new ones) closes the connection at once; `crash` (the
//! machine goes silent, as power loss, a hang or SIGSTOP) is noticed when a heartbeat
//! ping goes unanswered, within `ping_interval_s + ping_timeout_s` (the detection
//! interval). `{relay_of: PEER, pick: oldest|newest}` names one of the relays the
//! peer's AutoRelay holds when the step runs, for `crash`, `kill` and `connect`'s
//! `via`. `await_relays` waits until the peer holds `count` (default its
//! `max_relay_peers`) reservations on relays that are up.
//!
//! Instead of a matrix, `field_mix: {peers: [a, b], prevalence: {full_cone: 10,
//! symmetric: 3, ...}}` runs every pair of the listed NAT types and weighs each cell's
//! success rate by the product of the two prevalences, projecting a direct-connection
//! rate to compare with `field_rate` (default 0.70, DCUtR's rate over 4.4 million
//! attempts in the field).
//!
//! What the report counts, per cell:
//! - success rate: trials whose `hole_punch` step saw B's hole punch succeed (in a
//!   field mix without such a step: trials in which its two peers got a direct
//!   connection; otherwise not reported);
//! - first-attempt share: successful hole punches that needed one attempt at most
//!   (attempt 0 is B's unilateral dial of a public A, before any DCUtR exchange);
//! - attempts: DCUtR attempts per hole punch, as B (which leads them) counts;
//! - time to direct: from both ends having the relayed connection to both having the
//!   direct one (the `hole_punch` step waits for A's side too);
//! - relayed bytes: what the relays relayed, crashed incarnations included;
//! - relay failover, when a `crash` or `kill` hits a relay an AutoRelay peer holds:
//!   the time from the failure to the next reservation the peer's AutoRelay adds
//!   (p50, p90, max), against the target of two detection intervals, and the share of
//!   such trials whose later `connect` (the re-dial) succeeded;
//! - the oracle: [`crate::oracle::predict_dcutr`] for the `hole_punch` pair and how
//!   many trials agreed, and whether the network has a path at all
//!   ([`crate::oracle::predict`]).
//!
//! Invariants are checked after every event (NAT crossings against the reference
//! model) and after every step (socket mappings, relay limits, reservation expiry); a
//! violation fails the trial and is counted.
//!
//! NATs: `public` (none), a preset (`full_cone`, `restricted_cone`,
//! `port_restricted_cone`, `symmetric`, `linux_default`), a custom NAT (`mapping`,
//! `filtering`, `ports`, `port_range`, `hairpinning`, `inbound_syn`, `timeouts`, over a
//! `preset`), or a list of those, innermost first. Addresses: relays 203.0.113.x,
//! peers (or their outermost NAT) 198.51.100.x, NAT insides 10.x.y.z.

mod auto_relay;
mod nat_spec;
mod plan;
mod report;
pub mod spec;
mod topology;
mod trial;

pub use nat_spec::{Chain, resolve as resolve_nat};
pub use plan::{MAX_CHAIN, MAX_HOSTS, MAX_TRIALS};
pub use report::{CellReport, MixReport, Report, verdict_name};
pub use spec::ScenarioSpec;
pub use trial::{Punch, TrialResult};

use std::path::Path;

use crate::NetError;
use crate::node::{NodeError, NodeEvent, SimClock};
use crate::world::mix;
use plan::Plan;

/// Why a scenario cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("reading {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The system's words.
        error: String,
    },
    /// The file is not a scenario in YAML.
    #[error("parsing the scenario: {0}")]
    Yaml(String),
    /// The scenario contradicts itself or names what does not exist.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// The scenario asks for something the simulator cannot do yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Building a trial's world failed.
    #[error("building the world: {0}")]
    Build(#[from] NodeError),
}

impl From<NetError> for ScenarioError {
    fn from(e: NetError) -> Self {
        ScenarioError::Build(NodeError::Net(e))
    }
}

/// A checked scenario, ready to run.
#[derive(Debug, Clone)]
pub struct Scenario {
    plan: Plan,
}

/// Salt of trial seeds.
const TRIAL_SALT: u64 = 0x7472_6961_6c00_0000;

impl Scenario {
    /// Parses and checks a scenario; `name` names it if the text has no `name`.
    pub fn from_yaml(text: &str, name: &str) -> Result<Self, ScenarioError> {
        let spec: ScenarioSpec =
            serde_yaml::from_str(text).map_err(|e| ScenarioError::Yaml(e.to_string()))?;
        Ok(Self {
            plan: Plan::new(spec, name)?,
        })
    }

    /// Reads, parses and checks a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
        Self::from_yaml(&text, &name)
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// Its seed.
    pub fn seed(&self) -> u64 {
        self.plan.seed
    }

    /// Another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.plan.seed = seed;
        self
    }

    /// Another number of trials in every cell (at least 1).
    pub fn with_trials(mut self, trials: u32) -> Result<Self, ScenarioError> {
        let cells = self.plan.cells.len() as u64;
        if trials == 0 || cells.saturating_mul(trials.into()) > MAX_TRIALS {
            return Err(ScenarioError::Invalid(format!(
                "trials must be at least 1 and at most {MAX_TRIALS} in all"
            )));
        }
        for c in &mut self.plan.cells {
            c.trials = trials;
        }
        Ok(self)
    }

    /// Checks the world's invariants after every event, or not (faster).
    pub fn with_invariant_checks(mut self, on: bool) -> Self {
        self.plan.check_invariants = on;
        self
    }

    /// The cells' labels, in order.
    pub fn cells(&self) -> Vec<&str> {
        self.plan.cells.iter().map(|c| c.label.as_str()).collect()
    }

    /// Trials over all cells.
    pub fn trials(&self) -> u64 {
        self.plan.cells.iter().map(|c| u64::from(c.trials)).sum()
    }

    /// The seed of trial `trial` of cell `cell`.
    pub fn trial_seed(&self, cell: usize, trial: u32) -> u64 {
        mix(
            self.plan.seed ^ TRIAL_SALT,
            cell as u64 + 1,
            u64::from(trial),
        )
    }

    /// Runs one trial of one cell.
    pub fn run_trial(
        &self,
        cell: usize,
        trial: u32,
        clock: SimClock,
    ) -> Result<TrialResult, ScenarioError> {
        let c = self
            .plan
            .cells
            .get(cell)
            .ok_or_else(|| ScenarioError::Invalid(format!("no cell {cell}")))?;
        trial::run(&self.plan, c, self.trial_seed(cell, trial), clock, None)
    }

    /// Runs one trial of one cell, showing `observe` every node event as it happens.
    pub fn trace_trial(
        &self,
        cell: usize,
        trial: u32,
        clock: SimClock,
        observe: &mut dyn FnMut(&NodeEvent),
    ) -> Result<TrialResult, ScenarioError> {
        let c = self
            .plan
            .cells
            .get(cell)
            .ok_or_else(|| ScenarioError::Invalid(format!("no cell {cell}")))?;
        trial::run(
            &self.plan,
            c,
            self.trial_seed(cell, trial),
            clock,
            Some(observe),
        )
    }

    /// Runs every trial of every cell.
    pub fn run(&self, clock: SimClock) -> Result<Report, ScenarioError> {
        self.run_with(clock, |_, _| {})
    }

    /// Runs every trial, calling `progress` after each cell with its index and report.
    pub fn run_with(
        &self,
        clock: SimClock,
        mut progress: impl FnMut(usize, &CellReport),
    ) -> Result<Report, ScenarioError> {
        let plan = &self.plan;
        let mut cells = Vec::new();
        for (i, cell) in plan.cells.iter().enumerate() {
            let nats = plan
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| matches!(h.role, plan::Role::Peer))
                .map(|(h, host)| (host.name.clone(), plan.chain(cell, h).label.clone()))
                .collect();
            let mut report = report::CellReport::new(
                cell.label.clone(),
                nats,
                cell.transport,
                cell.weight,
                plan.oracle(cell),
                plan.punch_pair.is_some(),
            );
            report.detection = plan.detection();
            for t in 0..cell.trials {
                let r = trial::run(plan, cell, self.trial_seed(i, t), clock, None)?;
                report.add(&r);
            }
            progress(i, &report);
            cells.push(report);
        }
        let mix = plan.mix.as_ref().map(|m| report::mix(&cells, m.field_rate));
        Ok(Report {
            scenario: plan.name.clone(),
            seed: plan.seed,
            cells,
            mix,
        })
    }
}

/// Overrides of a scenario file, as the command lines take them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Another seed.
    pub seed: Option<u64>,
    /// Another number of trials per cell.
    pub trials: Option<u32>,
    /// Skip the per-event invariant checks (faster).
    pub no_invariant_checks: bool,
}

/// Loads a scenario file, applies the overrides and runs it: what
/// `cargo run -p simulator -- FILE` and `relay simulate FILE` do.
pub fn run_file(path: &Path, overrides: Overrides) -> Result<Report, ScenarioError> {
    let mut scenario = Scenario::load(path)?;
    if let Some(seed) = overrides.seed {
        scenario = scenario.with_seed(seed);
    }
    if let Some(trials) = overrides.trials {
        scenario = scenario.with_trials(trials)?;
    }
    if overrides.no_invariant_checks {
        scenario = scenario.with_invariant_checks(false);
    }
    scenario.run(SimClock::start())
}
