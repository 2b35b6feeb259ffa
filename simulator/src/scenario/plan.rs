//! A scenario file checked and resolved: hosts, cells, steps.

use std::collections::BTreeMap;
use std::time::Duration;

use relay_proto::hop::RelayConfig;

use super::ScenarioError;
use super::auto_relay::{self, AutoRelayPlan};
use super::nat_spec::{self, Chain, PUBLIC};
use super::spec::{
    HostRef, LinkSpec, MatrixSpec, NatSpec, RelaySpec, ScenarioSpec, Span, Step, TransportName,
};
use crate::net::LinkParams;
use crate::oracle::{self, Transport, Verdict};
use crate::rng::SimRng;

/// The most trials one run may ask for (cells times trials).
pub const MAX_TRIALS: u64 = 10_000_000;
/// The most hosts (relays and peers) of a scenario.
pub const MAX_HOSTS: usize = 200;
/// The most NATs in one chain.
pub const MAX_CHAIN: usize = 8;

/// What a host is.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// A public relay with this service configuration.
    Relay(Box<RelayConfig>),
    /// A peer.
    Peer,
}

/// A host of every trial.
#[derive(Debug, Clone)]
pub(crate) struct HostPlan {
    pub(crate) name: String,
    pub(crate) role: Role,
    pub(crate) link: LinkPlan,
    pub(crate) lan: LinkPlan,
    pub(crate) port: u16,
    pub(crate) port_reuse: bool,
    pub(crate) present: bool,
    /// Its NAT chain unless a cell says otherwise.
    pub(crate) chain: Chain,
    /// Its AutoRelay, for a peer that runs one.
    pub(crate) auto_relay: Option<AutoRelayPlan>,
}

/// A link's properties with its latency range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LinkPlan {
    latency_ms: (f64, f64),
    jitter_ms: f64,
    loss_percent: f64,
    bandwidth_bps: u64,
    queue_bytes: u64,
}

impl LinkPlan {
    fn resolve(spec: &LinkSpec, default_ms: (f64, f64), what: &str) -> Result<Self, String> {
        let latency_ms = match spec.latency_ms {
            None => default_ms,
            Some(Span::Fixed(x)) => (x, x),
            Some(Span::Range([lo, hi])) => (lo.min(hi), lo.max(hi)),
        };
        let ok = |x: f64| x.is_finite() && (0.0..=1e7).contains(&x);
        if !ok(latency_ms.0) || !ok(latency_ms.1) {
            return Err(format!("{what}.latency_ms must be between 0 and 1e7"));
        }
        let jitter_ms = spec.jitter_ms.unwrap_or(0.0);
        if !ok(jitter_ms) {
            return Err(format!("{what}.jitter_ms must be between 0 and 1e7"));
        }
        let loss_percent = spec.loss_percent.unwrap_or(0.0);
        if !(loss_percent.is_finite() && (0.0..=100.0).contains(&loss_percent)) {
            return Err(format!("{what}.loss_percent must be between 0 and 100"));
        }
        let bandwidth_bps = match spec.bandwidth_mbps {
            None => 0,
            Some(m) if m.is_finite() && m > 0.0 && m <= 1e6 => (m * 1e6) as u64,
            Some(_) => return Err(format!("{what}.bandwidth_mbps must be in (0, 1e6]")),
        };
        let queue_bytes = spec.queue_kb.unwrap_or(256).saturating_mul(1024);
        Ok(Self {
            latency_ms,
            jitter_ms,
            loss_percent,
            bandwidth_bps,
            queue_bytes,
        })
    }

    /// The link of one trial: the latency drawn from its range.
    pub(crate) fn draw(&self, rng: &mut SimRng) -> LinkParams {
        let (lo, hi) = self.latency_ms;
        let micros = rng.range_inclusive((lo * 1000.0) as u64, (hi * 1000.0) as u64);
        LinkParams::new(Duration::from_micros(micros))
            .with_jitter(Duration::from_secs_f64(self.jitter_ms / 1000.0))
            .with_loss_percent(self.loss_percent)
            .with_bandwidth(self.bandwidth_bps, self.queue_bytes)
    }
}

/// One combination of NATs and transport, run `trials` times.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    /// `a=full_cone b=symmetric`, or `all` for a scenario without a grid.
    pub(crate) label: String,
    /// The NATs this cell gives to some peers (host index, chain).
    pub(crate) nats: Vec<(usize, Chain)>,
    pub(crate) transport: TransportName,
    pub(crate) trials: u32,
    /// The field-mix weight (normalised), if this cell is part of one.
    pub(crate) weight: Option<f64>,
}

/// The field-mix settings.
#[derive(Debug, Clone)]
pub(crate) struct Mix {
    pub(crate) field_rate: f64,
}

/// A checked, resolved scenario.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) hosts: Vec<HostPlan>,
    pub(crate) index: BTreeMap<String, usize>,
    pub(crate) steps: Vec<Step>,
    pub(crate) step_timeout: Duration,
    pub(crate) cells: Vec<Cell>,
    pub(crate) mix: Option<Mix>,
    pub(crate) check_invariants: bool,
    pub(crate) tcp_data_retries: Option<u32>,
    pub(crate) ping_interval: Option<Option<Duration>>,
    /// The nodes' ping timeout, if the scenario sets one.
    pub(crate) ping_timeout: Option<Duration>,
    /// The pair whose direct connection is measured and the oracle asked about: (A, B)
    /// of the first hole punch step, else the field mix's peers.
    pub(crate) punch_pair: Option<(usize, usize)>,
}

impl Plan {
    /// Checks a parsed file; `fallback_name` names it if it has no `name`.
    pub(crate) fn new(spec: ScenarioSpec, fallback_name: &str) -> Result<Self, ScenarioError> {
        let invalid = ScenarioError::Invalid;
        if spec.trials == 0 {
            return Err(invalid("trials must be at least 1".into()));
        }
        refuse_quic(spec.transport)?;
        let mut hosts = Vec::new();
        for (name, relay) in &spec.relays {
            hosts.push(relay_plan(name, relay).map_err(invalid)?);
        }
        for (name, peer) in &spec.peers {
            if spec.relays.contains_key(name) {
                return Err(invalid(format!("`{name}` is both a relay and a peer")));
            }
            let what = format!("peers.{name}");
            let chain = resolve_chain(&peer.nat, &format!("{what}.nat"))?;
            hosts.push(HostPlan {
                name: name.clone(),
                role: Role::Peer,
                link: LinkPlan::resolve(&peer.link, (10.0, 40.0), &format!("{what}.link"))
                    .map_err(invalid)?,
                lan: LinkPlan::resolve(&peer.lan, (1.0, 1.0), &format!("{what}.lan"))
                    .map_err(invalid)?,
                port: nonzero_port(peer.port, &what)?,
                port_reuse: peer.port_reuse.unwrap_or(true),
                present: peer.present.unwrap_or(true),
                chain,
                auto_relay: None,
            });
        }
        if hosts.is_empty() || hosts.len() > MAX_HOSTS {
            return Err(invalid(format!(
                "a scenario needs 1 to {MAX_HOSTS} relays and peers"
            )));
        }
        let index: BTreeMap<String, usize> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), i))
            .collect();
        for (name, peer) in &spec.peers {
            if let Some(ar) = &peer.auto_relay {
                let planned = auto_relay::plan(ar, &format!("peers.{name}.auto_relay"), |r| {
                    Lookup {
                        hosts: &hosts,
                        index: &index,
                    }
                    .relay(r)
                })
                .map_err(invalid)?;
                hosts[index[name]].auto_relay = Some(planned);
            }
        }
        let lookup = Lookup {
            hosts: &hosts,
            index: &index,
        };
        let mut punch_pair = None;
        for (i, step) in spec.steps.iter().enumerate() {
            lookup
                .check_step(step)
                .map_err(|e| invalid(format!("step {}: {e}", i + 1)))?;
            if let Step::HolePunch { from, to, .. } = step {
                punch_pair.get_or_insert((index[from], index[to]));
            }
        }
        let step_timeout = match spec.options.step_timeout_s {
            Some(s) => nat_spec::seconds(s, "options.step_timeout_s").map_err(invalid)?,
            None => Duration::from_secs(60),
        };
        let ping_interval = match spec.options.ping_interval_s {
            None => None,
            Some(0.0) => Some(None),
            Some(s) => Some(Some(
                nat_spec::seconds(s, "options.ping_interval_s").map_err(invalid)?,
            )),
        };
        let ping_timeout = match spec.options.ping_timeout_s {
            None => None,
            Some(s) if s > 0.0 => {
                Some(nat_spec::seconds(s, "options.ping_timeout_s").map_err(invalid)?)
            }
            Some(_) => return Err(invalid("options.ping_timeout_s must be above 0".into())),
        };
        let (cells, mix) = match (&spec.matrix, &spec.field_mix) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "a scenario has a matrix or a field_mix, not both".into(),
                ));
            }
            (Some(m), None) => (matrix_cells(m, &spec, &lookup)?, None),
            (None, Some(f)) => {
                let peers = [
                    lookup.peer(&f.peers[0]).map_err(invalid)?,
                    lookup.peer(&f.peers[1]).map_err(invalid)?,
                ];
                if peers[0] == peers[1] {
                    return Err(invalid("field_mix.peers must be two peers".into()));
                }
                let trials = f.trials.unwrap_or(spec.trials);
                let cells = mix_cells(&f.prevalence, peers, &hosts, spec.transport, trials)?;
                let field_rate = f.field_rate.unwrap_or(0.70);
                if !(0.0..=1.0).contains(&field_rate) {
                    return Err(invalid("field_mix.field_rate must be in [0, 1]".into()));
                }
                // Without a hole_punch step the mix still measures the two peers.
                punch_pair.get_or_insert((peers[0], peers[1]));
                (cells, Some(Mix { field_rate }))
            }
            (None, None) => (
                vec![Cell {
                    label: "all".into(),
                    nats: Vec::new(),
                    transport: spec.transport,
                    trials: spec.trials,
                    weight: None,
                }],
                None,
            ),
        };
        let total: u64 = cells.iter().map(|c| u64::from(c.trials)).sum();
        if total == 0 || total > MAX_TRIALS || cells.iter().any(|c| c.trials == 0) {
            return Err(invalid(format!(
                "trials must be at least 1 per cell and at most {MAX_TRIALS} in all"
            )));
        }
        Ok(Plan {
            name: spec
                .name
                .clone()
                .unwrap_or_else(|| fallback_name.to_owned()),
            seed: spec.seed,
            hosts,
            index,
            steps: spec.steps,
            step_timeout,
            cells,
            mix,
            check_invariants: spec.options.check_invariants.unwrap_or(true),
            tcp_data_retries: spec.options.tcp_data_retries,
            ping_interval,
            ping_timeout,
            punch_pair,
        })
    }

    /// The nodes' heartbeat detection interval: a silent peer is noticed within
    /// `ping.interval + ping.timeout` of its last answer; `None` if they do not ping.
    pub(crate) fn detection(&self) -> Option<Duration> {
        let defaults = relay_proto::ping::PingConfig::default();
        let interval = self.ping_interval.unwrap_or(defaults.interval)?;
        Some(interval + self.ping_timeout.unwrap_or(defaults.timeout))
    }

    /// The NAT chain of host `i` in `cell`.
    pub(crate) fn chain<'a>(&'a self, cell: &'a Cell, i: usize) -> &'a Chain {
        cell.nats
            .iter()
            .find(|(h, _)| *h == i)
            .map(|(_, c)| c)
            .unwrap_or(&self.hosts[i].chain)
    }

    /// What the oracle predicts for the hole punch of `cell`, if the scenario punches:
    /// DCUtR as the node runs it ([`oracle::predict_dcutr`]), and whether a direct path
    /// exists at all ([`oracle::predict`]).
    pub(crate) fn oracle(&self, cell: &Cell) -> Option<(Verdict, Verdict)> {
        let (a, b) = self.punch_pair?;
        let transport = match cell.transport {
            TransportName::Tcp => Transport::Tcp,
            TransportName::Quic => Transport::Quic,
        };
        let (a, b) = (&self.chain(cell, a).nats, &self.chain(cell, b).nats);
        Some((
            oracle::predict_dcutr(a, b, transport),
            oracle::predict(a, b, transport),
        ))
    }
}

fn refuse_quic(t: TransportName) -> Result<(), ScenarioError> {
    match t {
        TransportName::Tcp => Ok(()),
        TransportName::Quic => Err(ScenarioError::Unsupported(
            "transport quic: relay-proto's Node has no QUIC transport yet (only the \
             network-level `punch` experiment models QUIC)"
                .into(),
        )),
    }
}

fn nonzero_port(port: Option<u16>, what: &str) -> Result<u16, ScenarioError> {
    match port {
        None => Ok(4001),
        Some(0) => Err(ScenarioError::Invalid(format!("{what}.port must not be 0"))),
        Some(p) => Ok(p),
    }
}

fn resolve_chain(spec: &NatSpec, what: &str) -> Result<Chain, ScenarioError> {
    let chain =
        nat_spec::resolve(spec).map_err(|e| ScenarioError::Invalid(format!("{what}: {e}")))?;
    if chain.nats.len() > MAX_CHAIN {
        return Err(ScenarioError::Invalid(format!(
            "{what}: at most {MAX_CHAIN} NATs in a chain"
        )));
    }
    Ok(chain)
}

fn relay_plan(name: &str, relay: &RelaySpec) -> Result<HostPlan, String> {
    let what = format!("relays.{name}");
    let mut config = RelayConfig::default();
    let l = &relay.limits;
    if let Some(b) = l.max_circuit_bytes {
        config.max_circuit_bytes = b;
    }
    if let Some(s) = l.max_circuit_duration_s {
        config.max_circuit_duration =
            nat_spec::seconds(s, &format!("{what}.limits.max_circuit_duration_s"))?;
    }
    if let Some(n) = l.max_circuits {
        config.max_circuits = n;
    }
    if let Some(n) = l.max_reservations {
        config.max_reservations = n;
    }
    if let Some(s) = l.reservation_ttl_s {
        config.reservation_ttl = nat_spec::seconds(s, &format!("{what}.limits.reservation_ttl_s"))?;
    }
    let port = match relay.port {
        Some(0) => return Err(format!("{what}.port must not be 0")),
        Some(p) => p,
        None => 4001,
    };
    Ok(HostPlan {
        name: name.to_owned(),
        role: Role::Relay(Box::new(config)),
        link: LinkPlan::resolve(&relay.link, (10.0, 10.0), &format!("{what}.link"))?,
        lan: LinkPlan::resolve(&LinkSpec::default(), (1.0, 1.0), &what)?,
        port,
        port_reuse: true,
        present: true,
        chain: Chain {
            label: PUBLIC.into(),
            nats: Vec::new(),
        },
        auto_relay: None,
    })
}

/// Name checks against the hosts.
struct Lookup<'a> {
    hosts: &'a [HostPlan],
    index: &'a BTreeMap<String, usize>,
}

impl Lookup<'_> {
    fn host(&self, name: &str) -> Result<usize, String> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| format!("no relay or peer named `{name}`"))
    }

    fn peer(&self, name: &str) -> Result<usize, String> {
        let i = self.host(name)?;
        match self.hosts[i].role {
            Role::Peer => Ok(i),
            Role::Relay(_) => Err(format!("`{name}` is a relay, not a peer")),
        }
    }

    fn relay(&self, name: &str) -> Result<usize, String> {
        let i = self.host(name)?;
        match self.hosts[i].role {
            Role::Relay(_) => Ok(i),
            Role::Peer => Err(format!("`{name}` is a peer, not a relay")),
        }
    }

    /// A peer that runs AutoRelay: its plan.
    fn auto_peer(&self, name: &str) -> Result<&AutoRelayPlan, String> {
        let i = self.peer(name)?;
        self.hosts[i]
            .auto_relay
            .as_ref()
            .ok_or_else(|| format!("`{name}` runs no auto_relay"))
    }

    /// A host named, or a relay of an AutoRelay peer; `relay_only` refuses peers.
    fn host_ref(&self, r: &HostRef, relay_only: bool) -> Result<(), String> {
        match r {
            HostRef::Named(name) if relay_only => self.relay(name).map(|_| ()),
            HostRef::Named(name) => self.host(name).map(|_| ()),
            HostRef::RelayOf { peer, .. } => self.auto_peer(peer).map(|_| ()),
        }
    }

    fn pair(&self, from: &str, to: &str) -> Result<(), String> {
        let (a, b) = (self.peer(from)?, self.peer(to)?);
        if a == b {
            return Err(format!("`{from}` cannot connect to itself"));
        }
        Ok(())
    }

    fn check_step(&self, step: &Step) -> Result<(), String> {
        let timeout = |t: &Option<f64>| match t {
            Some(s) => nat_spec::seconds(*s, "timeout_s").map(|_| ()),
            None => Ok(()),
        };
        match step {
            Step::Reserve {
                peer,
                relay,
                timeout_s,
            } => {
                self.peer(peer)?;
                self.relay(relay)?;
                timeout(timeout_s)
            }
            Step::Connect {
                from,
                to,
                via,
                timeout_s,
            } => {
                self.pair(from, to)?;
                if let Some(via) = via {
                    self.host_ref(via, true)?;
                }
                timeout(timeout_s)
            }
            Step::HolePunch {
                from,
                to,
                timeout_s,
            } => {
                self.pair(from, to)?;
                timeout(timeout_s)
            }
            Step::Ping {
                from,
                to,
                count,
                timeout_s,
                ..
            } => {
                self.pair(from, to)?;
                if count.is_some_and(|c| c == 0 || c > 10_000) {
                    return Err("ping count must be 1 to 10000".into());
                }
                timeout(timeout_s)
            }
            Step::Transfer {
                from,
                to,
                bytes,
                timeout_s,
                ..
            } => {
                self.pair(from, to)?;
                if *bytes == 0 || *bytes > 1 << 40 {
                    return Err("transfer bytes must be 1 to 2^40".into());
                }
                timeout(timeout_s)
            }
            Step::Await {
                host, timeout_s, ..
            } => {
                self.host(host)?;
                timeout(timeout_s)
            }
            Step::Crash(h) | Step::Kill(h) => self.host_ref(h, false),
            Step::AwaitRelays {
                peer,
                count,
                timeout_s,
            } => {
                let max = self.auto_peer(peer)?.config.max_relay_peers;
                if count.is_some_and(|c| c == 0 || c > max) {
                    return Err(format!(
                        "await_relays count must be 1 to {peer}'s max_relay_peers ({max})"
                    ));
                }
                timeout(timeout_s)
            }
            Step::Restart(h) => self.host(h).map(|_| ()),
            Step::Leave(p) | Step::Join(p) => self.peer(p).map(|_| ()),
            Step::Wait(s) => nat_spec::seconds(*s, "wait").map(|_| ()),
        }
    }
}

fn matrix_cells(
    m: &MatrixSpec,
    spec: &ScenarioSpec,
    lookup: &Lookup<'_>,
) -> Result<Vec<Cell>, ScenarioError> {
    let invalid = ScenarioError::Invalid;
    let transports = if m.transport.is_empty() {
        vec![spec.transport]
    } else {
        m.transport.clone()
    };
    for t in &transports {
        refuse_quic(*t)?;
    }
    let mut axes: Vec<(usize, Vec<Chain>)> = Vec::new();
    for (name, nats) in &m.nat {
        let i = lookup
            .peer(name)
            .map_err(|e| invalid(format!("matrix: {e}")))?;
        if nats.is_empty() {
            return Err(invalid(format!("matrix.nat.{name} is empty")));
        }
        let chains = nats
            .iter()
            .map(|n| resolve_chain(n, &format!("matrix.nat.{name}")))
            .collect::<Result<Vec<_>, _>>()?;
        axes.push((i, chains));
    }
    let trials = m.trials.unwrap_or(spec.trials);
    let mut combos: Vec<Vec<(usize, Chain)>> = vec![Vec::new()];
    for (i, chains) in &axes {
        let mut next = Vec::new();
        for combo in &combos {
            for chain in chains {
                let mut c = combo.clone();
                c.push((*i, chain.clone()));
                next.push(c);
            }
        }
        if next.len() > 100_000 {
            return Err(invalid("matrix: more than 100000 cells".into()));
        }
        combos = next;
    }
    let mut cells = Vec::new();
    for combo in combos {
        for &transport in &transports {
            let mut parts: Vec<String> = combo
                .iter()
                .map(|(i, c)| format!("{}={}", lookup.hosts[*i].name, c.label))
                .collect();
            if transports.len() > 1 {
                parts.push(transport.name().to_owned());
            }
            cells.push(Cell {
                label: parts.join(" "),
                nats: combo.clone(),
                transport,
                trials,
                weight: None,
            });
        }
    }
    Ok(cells)
}

fn mix_cells(
    prevalence: &BTreeMap<String, f64>,
    peers: [usize; 2],
    hosts: &[HostPlan],
    transport: TransportName,
    trials: u32,
) -> Result<Vec<Cell>, ScenarioError> {
    let invalid = ScenarioError::Invalid;
    let mut types = Vec::new();
    for (name, &w) in prevalence {
        if !(w.is_finite() && w >= 0.0) {
            return Err(invalid(format!(
                "field_mix.prevalence.{name} must be a weight >= 0"
            )));
        }
        let chain = resolve_chain(
            &NatSpec::One(super::spec::NatItem::Preset(name.clone())),
            "field_mix.prevalence",
        )?;
        if w > 0.0 {
            types.push((chain, w));
        }
    }
    let total: f64 = types.iter().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return Err(invalid(
            "field_mix.prevalence needs a positive weight".into(),
        ));
    }
    let mut cells = Vec::new();
    for (ca, wa) in &types {
        for (cb, wb) in &types {
            cells.push(Cell {
                label: format!(
                    "{}={} {}={}",
                    hosts[peers[0]].name, ca.label, hosts[peers[1]].name, cb.label
                ),
                nats: vec![(peers[0], ca.clone()), (peers[1], cb.clone())],
                transport,
                trials,
                weight: Some((wa / total) * (wb / total)),
            });
        }
    }
    Ok(cells)
}
