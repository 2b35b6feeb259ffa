//! The hole-punching experiment the [`crate::oracle`] predicts, run in a [`World`].
//!
//! A public relay, peer A behind its NAT chain, peer B behind its own. Each peer
//! reaches the relay from its punch port and is told its observed address; then both
//! punch at the same instant (see the oracle's module docs for the exact protocol).
//! The experiment reports whether a direct connection formed and how.
//!
//! Topology, drawn from the seed: the relay and each chain's outermost NAT sit 5-20 ms
//! and 10-40 ms from the Internet, with up to 2 ms jitter; every LAN hop is 1 ms with
//! up to 0.2 ms jitter. So a peer's first packet always leaves its chain before the
//! other peer's arrives, as the oracle assumes. Loss, if any, applies to every link.

mod apps;
mod topology;

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::error::NetError;
use crate::invariant::Violation;
use crate::nat::NatConfig;
use crate::oracle::{DirectPath, Transport};
use crate::world::{World, WorldConfig};
use apps::Apps;

/// Parameters of one punch experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct PunchSetup {
    /// A's NAT chain, innermost first (empty: public).
    pub a: Vec<NatConfig>,
    /// B's NAT chain, innermost first (empty: public).
    pub b: Vec<NatConfig>,
    /// The transport of the direct connection (and of the relay connection).
    pub transport: Transport,
    /// Seed of the topology and the world.
    pub seed: u64,
    /// Loss on every link, in percent.
    pub loss_percent: f64,
    /// Check the world's invariants after every step.
    pub check_invariants: bool,
    /// How long after the punch starts to wait for a direct connection.
    pub deadline: Duration,
}

impl PunchSetup {
    /// An experiment without loss, with invariant checks, and a 30 s deadline.
    pub fn new(a: Vec<NatConfig>, b: Vec<NatConfig>, transport: Transport, seed: u64) -> Self {
        Self {
            a,
            b,
            transport,
            seed,
            loss_percent: 0.0,
            check_invariants: true,
            deadline: Duration::from_secs(30),
        }
    }
}

/// What happened in one experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PunchOutcome {
    /// The direct connection, if one formed and carried data both ways.
    pub direct: Option<DirectPath>,
    /// From the punch start to both sides having received data directly.
    pub time_to_direct: Option<Duration>,
    /// A's address as the relay saw it.
    pub observed_a: SocketAddrV4,
    /// B's address as the relay saw it.
    pub observed_b: SocketAddrV4,
    /// The world's trace hash at the end.
    pub trace_hash: u64,
    /// Events the world processed.
    pub events: u64,
    /// Invariant violations (empty unless something is broken).
    pub violations: Vec<Violation>,
}

/// Why an experiment could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PunchError {
    /// Building the topology failed.
    #[error("building the topology: {0}")]
    Build(#[from] NetError),
    /// A peer never learned its observed address from the relay.
    #[error("a peer never learned its observed address")]
    NoObservedAddress,
}

/// How long the peers have to learn their observed addresses.
const OBSERVE_DEADLINE: Duration = Duration::from_secs(60);

/// Runs one experiment.
pub fn run(setup: &PunchSetup) -> Result<PunchOutcome, PunchError> {
    let config = WorldConfig {
        check_nats: setup.check_invariants,
        ..WorldConfig::default()
    };
    let mut world = World::with_config(setup.seed, config);
    let topo = topology::build(&mut world, setup)?;
    let mut apps = Apps::start(&mut world, &topo, setup.transport)?;
    let mut violations = Vec::new();
    loop {
        if apps.done() {
            break;
        }
        let limit = match apps.punch_start() {
            Some(t0) => t0 + setup.deadline,
            None => crate::time::SimTime::from_duration(OBSERVE_DEADLINE),
        };
        let Some(next) = world.next_event_time() else {
            break;
        };
        if next > limit {
            break;
        }
        world.step();
        if setup.check_invariants
            && violations.is_empty()
            && let Err(v) = world.check_invariants()
        {
            violations.push(v);
        }
        while let Some((host, event)) = world.poll_event() {
            apps.on_event(&mut world, host, event)?;
        }
    }
    let (Some(observed_a), Some(observed_b)) = apps.observed() else {
        return Err(PunchError::NoObservedAddress);
    };
    for v in world.violations() {
        if !violations.contains(v) {
            violations.push(v.clone());
        }
    }
    Ok(PunchOutcome {
        direct: apps.direct(),
        time_to_direct: apps.time_to_direct(),
        observed_a,
        observed_b,
        trace_hash: world.trace_hash(),
        events: world.stats().events,
        violations,
    })
}
