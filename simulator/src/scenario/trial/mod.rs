//! One trial: a fresh world, the steps in order (`steps.rs`), the event loop every
//! step waits in, and what was measured.

mod auto_relay;
mod steps;

use std::collections::BTreeMap;
use std::time::Duration;

use relay_proto::identity::PeerId;
use relay_proto::multiaddr::Protocol;
use relay_proto::node::{ConnectionId, Event, StreamRef};
use relay_proto::{Multiaddr, Node};

use super::ScenarioError;
use super::plan::{Cell, Plan, Role};
use super::spec::{AwaitName, PathName};
use super::topology::{self, TRANSFER_PROTOCOL};
use crate::net::HostId;
use crate::node::{NodeEvent, NodeSpec, NodeWorld, SimClock};
use crate::time::SimTime;
use steps::step_name;

/// What one trial did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialResult {
    /// Every step succeeded.
    pub completed: bool,
    /// The step that failed and why.
    pub failure: Option<String>,
    /// The hole punch, if the scenario has a `hole_punch` step and it ended.
    pub punch: Option<Punch>,
    /// A direct connection formed between the hole-punching pair.
    pub direct: bool,
    /// From the pair's relayed connection to their direct one.
    pub time_to_direct: Option<Duration>,
    /// Bytes the relays relayed (crashed incarnations included).
    pub relayed_bytes: u64,
    /// Round trips of the pings of `ping` steps.
    pub ping_rtts: Vec<Duration>,
    /// Bytes and durations of `transfer` steps.
    pub transfers: Vec<(u64, Duration)>,
    /// Failures (`crash`, `kill`) of a relay an AutoRelay peer held, one per such peer
    /// (a failure while that peer is still replacing a relay joins that measurement).
    pub relay_failures: u32,
    /// For each that was followed by one, the time from the failure to the next
    /// reservation the peer's AutoRelay added.
    pub failovers: Vec<Duration>,
    /// After such a failure, whether a later `connect` step succeeded; `None` without
    /// one.
    pub redial: Option<bool>,
    /// Hosts `crash` and `kill` steps failed, by name, in order.
    pub failed_hosts: Vec<String>,
    /// At the end, each AutoRelay peer and the relays it held, by name, in the order
    /// they were granted.
    pub auto_relays: Vec<(String, Vec<String>)>,
    /// The first invariant violation, if any (the trial then fails).
    pub violation: Option<String>,
    /// Simulated time at the end.
    pub sim_time: Duration,
    /// World events processed.
    pub events: u64,
}

/// How a hole punch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Punch {
    /// A direct connection formed.
    pub success: bool,
    /// Attempts made (0: the unilateral dial or an existing connection sufficed).
    pub attempts: u32,
}

/// Zeros written by `transfer` steps.
static CHUNK: [u8; 16 * 1024] = [0; 16 * 1024];

/// A trial in progress.
struct Trial<'p, 'o> {
    plan: &'p Plan,
    nw: NodeWorld,
    hosts: Vec<HostId>,
    slots: BTreeMap<HostId, usize>,
    specs: Vec<NodeSpec>,
    attached: Vec<bool>,
    peers: BTreeMap<PeerId, usize>,
    /// Streams of transfers being written: bytes left.
    sends: BTreeMap<(usize, StreamRef), u64>,
    /// Streams of transfers being read: bytes so far.
    receives: BTreeMap<(usize, StreamRef), u64>,
    /// First relayed and first direct connection per side: (host, peer).
    relayed_at: BTreeMap<(usize, usize), SimTime>,
    direct_at: BTreeMap<(usize, usize), SimTime>,
    relay_bytes_gone: u64,
    /// Events `await` steps can wait for, as they happened: (time, host, kind).
    marks: Vec<(SimTime, usize, AwaitName)>,
    /// Marks before this index were consumed by an `await`.
    marks_used: usize,
    /// When the previous step began: an `await` also takes events from then on.
    previous_start: SimTime,
    /// Hole punch outcomes as they happened: (time, host, peer, outcome).
    punches: Vec<(SimTime, usize, usize, Punch)>,
    /// Outcomes before this index were taken by a `hole_punch` step.
    punches_used: usize,
    /// AutoRelay peers replacing a failed relay: since when.
    failover_since: BTreeMap<usize, SimTime>,
    result: TrialResult,
    /// Sees every node event first (tracing).
    observer: Option<&'o mut dyn FnMut(&NodeEvent)>,
}

/// Runs trial `seed` of `cell`.
pub(crate) fn run(
    plan: &Plan,
    cell: &Cell,
    seed: u64,
    clock: SimClock,
    observer: Option<&mut dyn FnMut(&NodeEvent)>,
) -> Result<TrialResult, ScenarioError> {
    let built = topology::build(plan, cell, seed, clock)?;
    let peers = built
        .specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.keypair.public().to_peer_id(), i))
        .collect();
    let slots = built
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (*h, i))
        .collect();
    let mut t = Trial {
        plan,
        nw: built.nw,
        hosts: built.hosts,
        slots,
        specs: built.specs,
        attached: built.attached,
        peers,
        sends: BTreeMap::new(),
        receives: BTreeMap::new(),
        relayed_at: BTreeMap::new(),
        direct_at: BTreeMap::new(),
        relay_bytes_gone: 0,
        marks: Vec::new(),
        marks_used: 0,
        previous_start: SimTime::ZERO,
        punches: Vec::new(),
        punches_used: 0,
        failover_since: BTreeMap::new(),
        result: empty_result(),
        observer,
    };
    let mut failure = None;
    for (i, step) in plan.steps.iter().enumerate() {
        let started = t.nw.now();
        let outcome = t
            .step(step)
            .and_then(|()| t.nw.check())
            .and_then(|()| t.check_relays());
        t.previous_start = started;
        if let Err(e) = outcome {
            failure = Some(format!("step {} ({}): {e}", i + 1, step_name(step)));
            break;
        }
    }
    // Events of the last step not looked at yet still count (connections, bytes).
    while let Some(e) = t.nw.poll_event() {
        t.background(&e);
    }
    Ok(t.finish(failure))
}

impl Trial<'_, '_> {
    // ----- the event loop -----

    /// Runs until `goal` decides on an event, or fails after `timeout`.
    fn wait(
        &mut self,
        timeout: Duration,
        mut goal: impl FnMut(&mut Self, &NodeEvent) -> Option<Result<(), String>>,
    ) -> Result<(), String> {
        let deadline = self.nw.now() + timeout;
        loop {
            while let Some(e) = self.nw.poll_event() {
                self.background(&e);
                if let Some(outcome) = goal(self, &e) {
                    return outcome;
                }
            }
            if let Some(v) = self.nw.violation() {
                return Err(format!("invariant violated: {v}"));
            }
            match self.nw.next_event_time() {
                Some(t) if t <= deadline => {
                    self.nw.step();
                }
                _ => {
                    self.nw.run_until(deadline);
                    return Err(format!("timed out after {} s", timeout.as_secs_f64()));
                }
            }
        }
    }

    /// Lets time pass, handling events.
    fn run_for(&mut self, d: Duration) {
        let _ = self.wait(d, |_, _| None);
    }

    /// What every event does whatever the step: transfers move, connections are noted.
    fn background(&mut self, e: &NodeEvent) {
        if let Some(observe) = self.observer.as_mut() {
            observe(e);
        }
        let Some(&at) = self.slots.get(&e.host) else {
            return;
        };
        if let Some(kind) = await_kind(&e.event) {
            self.marks.push((e.at, at, kind));
        }
        self.observe_auto_relay(at, e);
        match &e.event {
            Event::StreamOpened { stream, .. } | Event::StreamWritable { stream }
                if self.sends.contains_key(&(at, *stream)) =>
            {
                self.write_more(at, *stream);
            }
            Event::InboundStream {
                stream, protocol, ..
            } if protocol == TRANSFER_PROTOCOL => {
                self.receives.insert((at, *stream), 0);
            }
            Event::StreamFinished { stream } if self.receives.contains_key(&(at, *stream)) => {
                let s = *stream;
                let _ = self.command(at, |node, now| node.stream_close(now, s));
            }
            Event::StreamData { stream, data } => {
                if let Some(got) = self.receives.get_mut(&(at, *stream)) {
                    *got += data.len() as u64;
                    let (s, n) = (*stream, data.len());
                    let _ = self.command(at, |node, now| node.stream_consumed(now, s, n));
                }
            }
            Event::HolePunchSucceeded { peer, attempt, .. } => {
                if let Some(&other) = self.peers.get(peer) {
                    let punch = Punch {
                        success: true,
                        attempts: *attempt,
                    };
                    self.punches.push((e.at, at, other, punch));
                }
            }
            Event::HolePunchFailed { peer, attempts, .. } => {
                if let Some(&other) = self.peers.get(peer) {
                    let punch = Punch {
                        success: false,
                        attempts: *attempts,
                    };
                    self.punches.push((e.at, at, other, punch));
                }
            }
            Event::ConnectionEstablished { peer, relayed, .. } => {
                if let Some(&other) = self.peers.get(peer)
                    && matches!(self.plan.hosts[other].role, Role::Peer)
                    && matches!(self.plan.hosts[at].role, Role::Peer)
                {
                    let first = if *relayed {
                        &mut self.relayed_at
                    } else {
                        &mut self.direct_at
                    };
                    first.entry((at, other)).or_insert(e.at);
                }
            }
            _ => {}
        }
    }

    /// Writes what the stream's window takes; closes it when all is written.
    fn write_more(&mut self, at: usize, stream: StreamRef) {
        while let Some(&left) = self.sends.get(&(at, stream)) {
            if left == 0 {
                break;
            }
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK.len());
            let wrote = self.command(at, |node, now| node.stream_write(now, stream, &CHUNK[..n]));
            match wrote {
                Ok(Ok(w)) if w > 0 => {
                    if let Some(l) = self.sends.get_mut(&(at, stream)) {
                        *l -= w as u64;
                    }
                }
                // A full window (StreamWritable follows) or a dead stream (reset follows).
                _ => return,
            }
        }
        if self.sends.get(&(at, stream)) == Some(&0) {
            let _ = self.command(at, |node, now| node.stream_close(now, stream));
        }
    }

    // ----- helpers -----

    fn slot(&self, name: &str) -> usize {
        // Names were checked when the plan was made.
        self.plan.index[name]
    }

    fn peer_id(&self, i: usize) -> PeerId {
        self.specs[i].keypair.public().to_peer_id()
    }

    /// `/ip4/<addr>/tcp/<port>/p2p/<peer>` of a host's node.
    fn p2p_addr(&self, i: usize) -> Result<Multiaddr, String> {
        let addr = self
            .nw
            .listen_addr(self.hosts[i])
            .map_err(|e| e.to_string())?;
        Ok(addr.with(Protocol::P2p(self.peer_id(i))))
    }

    fn command<T>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Node, std::time::Instant) -> T,
    ) -> Result<T, String> {
        self.nw.command(self.hosts[i], f).map_err(|e| e.to_string())
    }

    /// A connection from `from` to `to` of the kind asked for: direct before relayed,
    /// then the newest (a relayed connection through a crashed relay lingers until
    /// TCP gives up on it).
    fn connection(&self, from: usize, to: usize, path: PathName) -> Result<ConnectionId, String> {
        let node = self
            .nw
            .node(self.hosts[from])
            .ok_or_else(|| format!("{} is down", self.plan.hosts[from].name))?;
        let target = self.peer_id(to);
        node.connections_to(&target)
            .iter()
            .filter_map(|c| {
                let relayed = node.connection_info(*c)?.relay.is_some();
                let wanted = match path {
                    PathName::Any => true,
                    PathName::Direct => !relayed,
                    PathName::Relayed => relayed,
                };
                wanted.then_some((!relayed, *c))
            })
            .max()
            .map(|(_, c)| c)
            .ok_or_else(|| {
                let kind = match path {
                    PathName::Any => "",
                    PathName::Direct => "direct ",
                    PathName::Relayed => "relayed ",
                };
                format!(
                    "no {kind}connection from {} to {}",
                    self.plan.hosts[from].name, self.plan.hosts[to].name
                )
            })
    }

    /// The relays' invariants: limits hold and no reservation outlives its expiry.
    fn check_relays(&self) -> Result<(), String> {
        let now = self.nw.instant();
        for (i, h) in self.hosts.iter().enumerate() {
            let Some(policy) = self.nw.node(*h).and_then(|n| n.relay_policy()) else {
                continue;
            };
            let name = &self.plan.hosts[i].name;
            let usage = policy.usage();
            if usage.reservations > usage.max_reservations as usize
                || usage.circuits > usage.max_circuits as usize
            {
                return Err(format!("invariant violated: {name} is over its limits"));
            }
            if policy.reservations().any(|r| r.expires_at < now) {
                return Err(format!(
                    "invariant violated: {name} keeps a reservation past its expiry"
                ));
            }
        }
        Ok(())
    }

    fn relayed_bytes_of(&self, i: usize) -> u64 {
        self.nw
            .node(self.hosts[i])
            .and_then(|n| n.relay_policy())
            .map_or(0, |p| p.usage().bytes_relayed)
    }

    fn finish(mut self, failure: Option<String>) -> TrialResult {
        let mut r = std::mem::replace(&mut self.result, empty_result());
        r.relayed_bytes = self.relay_bytes_gone
            + (0..self.hosts.len())
                .map(|i| self.relayed_bytes_of(i))
                .sum::<u64>();
        if let Some((a, b)) = self.plan.punch_pair {
            let relayed = both(&self.relayed_at, a, b);
            let direct = both(&self.direct_at, a, b);
            r.direct = match r.punch {
                Some(p) => p.success,
                None => direct.is_some(),
            };
            r.time_to_direct = match (relayed, direct) {
                (Some(relayed), Some(direct)) => Some(direct.saturating_since(relayed)),
                _ => None,
            };
        }
        r.auto_relays = self.auto_relay_summary();
        r.violation = self.nw.violation().map(|v| v.to_string());
        r.completed = failure.is_none() && r.violation.is_none();
        r.failure = failure.or_else(|| r.violation.clone());
        r.sim_time = self.nw.now().as_duration();
        r.events = self.nw.world().stats().events;
        r
    }
}

/// When both `a` and `b` had seen a connection to each other.
fn both(seen: &BTreeMap<(usize, usize), SimTime>, a: usize, b: usize) -> Option<SimTime> {
    Some((*seen.get(&(a, b))?).max(*seen.get(&(b, a))?))
}

fn empty_result() -> TrialResult {
    TrialResult {
        completed: false,
        failure: None,
        punch: None,
        direct: false,
        time_to_direct: None,
        relayed_bytes: 0,
        ping_rtts: Vec::new(),
        transfers: Vec::new(),
        relay_failures: 0,
        failovers: Vec::new(),
        redial: None,
        failed_hosts: Vec::new(),
        auto_relays: Vec::new(),
        violation: None,
        sim_time: Duration::ZERO,
        events: 0,
    }
}

/// The kind of event an `await` step can wait for, if it is one.
fn await_kind(e: &Event) -> Option<AwaitName> {
    Some(match e {
        Event::ReservationAccepted { .. } => AwaitName::ReservationAccepted,
        Event::ReservationLost { .. } => AwaitName::ReservationLost,
        Event::ConnectionClosed { .. } => AwaitName::ConnectionClosed,
        Event::ConnectionEstablished { relayed: true, .. } => AwaitName::RelayedConnection,
        Event::ConnectionEstablished { relayed: false, .. } => AwaitName::DirectConnection,
        _ => return None,
    })
}
