//! The scenario file, as written: YAML mapped onto these types by serde.
//!
//! Every struct refuses unknown fields, so a misspelt key is an error, not a silent
//! default. Meaning and defaults are documented in the [module docs](super).

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// A name for reports (default: the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// The seed every trial's seed derives from.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Trials per cell.
    #[serde(default = "default_trials")]
    pub trials: u32,
    /// The transport of every connection.
    #[serde(default)]
    pub transport: TransportName,
    /// Relays by name: public hosts running the relay service.
    pub relays: BTreeMap<String, RelaySpec>,
    /// Peers by name.
    pub peers: BTreeMap<String, PeerSpec>,
    /// What happens, in order, in every trial (each step a one-key map, `- wait: 5`).
    #[serde(with = "serde_yaml::with::singleton_map_recursive")]
    pub steps: Vec<Step>,
    /// Sweep NAT types (and transports) over a grid of cells.
    #[serde(default)]
    pub matrix: Option<MatrixSpec>,
    /// Weigh NAT types by their prevalence and project a direct-connection rate.
    #[serde(default)]
    pub field_mix: Option<FieldMixSpec>,
    /// Settings of the run.
    #[serde(default)]
    pub options: OptionsSpec,
}

fn default_seed() -> u64 {
    1
}

fn default_trials() -> u32 {
    1
}

/// A transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportName {
    /// TCP (with Noise and Yamux).
    #[default]
    Tcp,
    /// QUIC: refused, relay-proto's `Node` has no QUIC transport yet.
    Quic,
}

impl TransportName {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            TransportName::Tcp => "tcp",
            TransportName::Quic => "quic",
        }
    }
}

/// A relay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySpec {
    /// Its link to the Internet (default: 10 ms).
    #[serde(default)]
    pub link: LinkSpec,
    /// The TCP port it listens on (default 4001).
    #[serde(default)]
    pub port: Option<u16>,
    /// Limits of the relay service (defaults: relay-proto's, the seed's).
    #[serde(default)]
    pub limits: LimitsSpec,
}

/// Limits of a relay (the seed's `node.relay.service`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Bytes per direction per circuit; 0 for no limit.
    #[serde(default)]
    pub max_circuit_bytes: Option<u64>,
    /// Seconds per circuit; 0 for no limit.
    #[serde(default)]
    pub max_circuit_duration_s: Option<f64>,
    /// Circuits at once.
    #[serde(default)]
    pub max_circuits: Option<u32>,
    /// Reservations at once.
    #[serde(default)]
    pub max_reservations: Option<u32>,
    /// Life of a reservation, in seconds.
    #[serde(default)]
    pub reservation_ttl_s: Option<f64>,
}

/// A peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    /// Its NAT (default `public`: none).
    #[serde(default)]
    pub nat: NatSpec,
    /// The link of its outermost NAT (or of itself, if public) to the Internet
    /// (default: 10 to 40 ms, drawn per trial).
    #[serde(default)]
    pub link: LinkSpec,
    /// The links inside its NAT chain (default: 1 ms).
    #[serde(default)]
    pub lan: LinkSpec,
    /// The TCP port it listens on (default 4001).
    #[serde(default)]
    pub port: Option<u16>,
    /// Dial from the listen port (default true, as libp2p's TCP transport).
    #[serde(default)]
    pub port_reuse: Option<bool>,
    /// Whether the peer is there when the trial starts (default true); `join` brings
    /// an absent one.
    #[serde(default)]
    pub present: Option<bool>,
    /// AutoRelay: the peer chooses relays and keeps reservations on them by itself.
    #[serde(default)]
    pub auto_relay: Option<AutoRelaySpec>,
}

/// A peer's AutoRelay (the seed's `node.relay.auto_relay`), run by its node: it
/// reserves, renews and replaces relays by itself; no `reserve` steps are needed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoRelaySpec {
    /// Relays of the scenario, by name, as the node's static relays.
    #[serde(default)]
    pub static_relays: Vec<String>,
    /// Reservations to keep (default 3, the seed's).
    #[serde(default)]
    pub max_relay_peers: Option<usize>,
    /// Reservations below which a failed selection is an error (default 1).
    #[serde(default)]
    pub min_relay_peers: Option<usize>,
    /// How candidates are chosen (default `quality`).
    #[serde(default)]
    pub selection_policy: Option<PolicyName>,
    /// Also use relays seen to speak the hop protocol (default false here: nobody
    /// answers the peer source in a scenario).
    #[serde(default)]
    pub enable_dynamic: Option<bool>,
    /// `when_private` (default, the node's; every simulated address counts as
    /// private) or `always`.
    #[serde(default)]
    pub activation: Option<ActivationName>,
    /// Seconds a failed relay waits before it may be chosen again (default 30).
    #[serde(default)]
    pub backoff_s: Option<f64>,
}

/// An AutoRelay selection policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    /// Highest quality score first.
    Quality,
    /// At random.
    Random,
    /// In turn, in the order the relays became known.
    RoundRobin,
}

/// When AutoRelay holds reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationName {
    /// While the node believes itself unreachable.
    WhenPrivate,
    /// Always.
    Always,
}

/// A host a step acts on: by name, or one of the relays a peer's AutoRelay holds,
/// looked up when the step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRef {
    /// The relay or peer of this name.
    Named(String),
    /// A relay `peer`'s AutoRelay holds a reservation on.
    RelayOf {
        /// The peer.
        peer: String,
        /// Which of its relays.
        pick: Pick,
    },
}

/// Which of a peer's AutoRelay relays, in the order they were granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    /// The one held longest.
    #[default]
    Oldest,
    /// The one granted last.
    Newest,
}

/// `{relay_of: b, pick: newest}` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayOfSpec {
    relay_of: String,
    #[serde(default)]
    pick: Pick,
}

// By hand: a name, or a map naming a peer; nothing else.
impl<'de> Deserialize<'de> for HostRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(name) => Ok(HostRef::Named(name)),
            v @ serde_yaml::Value::Mapping(_) => serde_yaml::from_value::<RelayOfSpec>(v)
                .map(|r| HostRef::RelayOf {
                    peer: r.relay_of,
                    pick: r.pick,
                })
                .map_err(|e| serde::de::Error::custom(format!("a host: {e}"))),
            other => Err(serde::de::Error::custom(format!(
                "a host is a name or {{relay_of: PEER, pick: oldest|newest}}; not {other:?}"
            ))),
        }
    }
}

/// A NAT: a preset name, one custom NAT, or a chain of them, innermost first.
#[derive(Debug, Clone, PartialEq)]
pub enum NatSpec {
    /// One NAT, or `public` for none.
    One(NatItem),
    /// Several NATs in a row, innermost (the home router) first.
    Chain(Vec<NatItem>),
}

impl Default for NatSpec {
    fn default() -> Self {
        NatSpec::One(NatItem::Preset("public".to_owned()))
    }
}

/// One NAT of a chain.
#[derive(Debug, Clone, PartialEq)]
pub enum NatItem {
    /// `full_cone`, `restricted_cone`, `port_restricted_cone`, `symmetric`,
    /// `linux_default` (or `public` alone: no NAT).
    Preset(String),
    /// A NAT described by its RFC 4787/5382 dimensions.
    Custom(NatCustom),
}

// By hand rather than `untagged`: a struct would also accept a sequence (its fields in
// order), so a chain could silently become one custom NAT.
impl<'de> Deserialize<'de> for NatSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Sequence(items) => items
                .into_iter()
                .map(nat_item)
                .collect::<Result<_, _>>()
                .map(NatSpec::Chain),
            other => nat_item(other).map(NatSpec::One),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for NatItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        nat_item(serde_yaml::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn nat_item(v: serde_yaml::Value) -> Result<NatItem, String> {
    match v {
        serde_yaml::Value::String(name) => Ok(NatItem::Preset(name)),
        v @ serde_yaml::Value::Mapping(_) => serde_yaml::from_value(v)
            .map(NatItem::Custom)
            .map_err(|e| format!("a custom NAT: {e}")),
        other => Err(format!(
            "a NAT is a preset name, a map of dimensions, or a list of those; not {other:?}"
        )),
    }
}

/// A NAT by its dimensions; unset ones come from `preset` (default `full_cone`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatCustom {
    /// A label for reports (default: derived from the dimensions).
    #[serde(default)]
    pub name: Option<String>,
    /// The preset the unset dimensions come from.
    #[serde(default)]
    pub preset: Option<String>,
    /// Mapping: `endpoint_independent`, `address_dependent`,
    /// `address_and_port_dependent`.
    #[serde(default)]
    pub mapping: Option<Dependence>,
    /// Filtering, the same three.
    #[serde(default)]
    pub filtering: Option<Dependence>,
    /// Port allocation: `preserve`, `sequential`, `random`.
    #[serde(default)]
    pub ports: Option<PortsName>,
    /// The external ports, `[lo, hi]`.
    #[serde(default)]
    pub port_range: Option<[u16; 2]>,
    /// Hairpinning.
    #[serde(default)]
    pub hairpinning: Option<bool>,
    /// The answer to an unsolicited SYN: `drop`, `rst`, `icmp`.
    #[serde(default)]
    pub inbound_syn: Option<SynName>,
    /// Mapping lifetimes.
    #[serde(default)]
    pub timeouts: Option<TimeoutsSpec>,
}

/// Endpoint (in)dependence of mapping or filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependence {
    /// Endpoint independent.
    EndpointIndependent,
    /// Address dependent.
    AddressDependent,
    /// Address and port dependent.
    AddressAndPortDependent,
}

/// Port allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortsName {
    /// Keep the internal port when free.
    Preserve,
    /// The next free port.
    Sequential,
    /// A random free port.
    Random,
}

/// The answer to an unsolicited inbound SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynName {
    /// Silence.
    Drop,
    /// A TCP RST.
    Rst,
    /// An ICMP error.
    Icmp,
}

/// Mapping lifetimes in seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// UDP mappings.
    pub udp_s: f64,
    /// TCP mappings with an established connection.
    pub tcp_established_s: f64,
    /// TCP mappings opening or closing.
    pub tcp_transitory_s: f64,
}

/// A link's properties. Latency is a number of milliseconds or a `[lo, hi]` range
/// drawn uniformly per trial.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One-way latency in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<Span>,
    /// Extra random delay per packet, up to this many milliseconds.
    #[serde(default)]
    pub jitter_ms: Option<f64>,
    /// Packet loss in percent.
    #[serde(default)]
    pub loss_percent: Option<f64>,
    /// Bandwidth in megabits per second (default: unlimited).
    #[serde(default)]
    pub bandwidth_mbps: Option<f64>,
    /// Queue size in kilobytes when the bandwidth is limited (default 256).
    #[serde(default)]
    pub queue_kb: Option<u64>,
}

/// A number, or a range drawn from per trial.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Span {
    /// Always this.
    Fixed(f64),
    /// Uniformly in `[lo, hi]`.
    Range([f64; 2]),
}

/// One step of a trial. Steps that wait take `timeout_s` (default 60 simulated
/// seconds); a step that does not complete in time fails the trial.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// A peer asks a relay for a reservation and waits for the answer.
    Reserve {
        /// The peer.
        peer: String,
        /// The relay.
        relay: String,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// A peer connects to another, through a relay (`via`) or directly.
    Connect {
        /// The dialer.
        from: String,
        /// The peer dialed.
        to: String,
        /// The relay to go through, by name or `{relay_of: PEER, pick: newest}`; none
        /// for a direct dial of `to`'s listen address.
        #[serde(default)]
        via: Option<HostRef>,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// Waits for the hole punch between two peers connected through a relay to end
    /// (DCUtR, run by the nodes themselves).
    HolePunch {
        /// The peer that dialed the relayed connection (DCUtR's A).
        from: String,
        /// The peer behind the relay (DCUtR's B).
        to: String,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// Pings over a connection and waits for the answers.
    Ping {
        /// The pinging peer.
        from: String,
        /// The peer pinged.
        to: String,
        /// How many pings (default 1).
        #[serde(default)]
        count: Option<u32>,
        /// Which connection: `any` (direct preferred), `direct`, `relayed`.
        #[serde(default)]
        path: PathName,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// Sends bytes on a new stream and waits until all arrived.
    Transfer {
        /// The sender.
        from: String,
        /// The receiver.
        to: String,
        /// How many bytes.
        bytes: u64,
        /// Which connection: `any` (direct preferred), `direct`, `relayed`.
        #[serde(default)]
        path: PathName,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// Waits for an event at a host.
    Await {
        /// The host.
        host: String,
        /// The event.
        event: AwaitName,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// A host crashes: its node and sockets vanish silently, as a machine that loses
    /// power or hangs; peers notice by their timeouts (heartbeat pings, TCP).
    Crash(HostRef),
    /// A host's node is killed, as a process: its operating system resets every
    /// connection and refuses new ones; peers notice at once.
    Kill(HostRef),
    /// Waits until a peer's AutoRelay holds `count` reservations on relays that are up.
    AwaitRelays {
        /// The peer.
        peer: String,
        /// How many (default: its `max_relay_peers`).
        #[serde(default)]
        count: Option<usize>,
        /// Limit in seconds.
        #[serde(default)]
        timeout_s: Option<f64>,
    },
    /// A crashed or killed host restarts with a new node (same identity).
    Restart(String),
    /// A peer leaves: closes its connections, then switches off.
    Leave(String),
    /// An absent or departed peer (re)joins with a new node.
    Join(String),
    /// Lets this many seconds pass.
    Wait(f64),
}

/// Which connection between two peers a step uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathName {
    /// A direct one if there is, else a relayed one.
    #[default]
    Any,
    /// Only a direct one.
    Direct,
    /// Only a relayed one.
    Relayed,
}

/// Events an `await` step can wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AwaitName {
    /// A reservation was granted or renewed.
    ReservationAccepted,
    /// A reservation was lost.
    ReservationLost,
    /// A relayed connection was established.
    RelayedConnection,
    /// A direct connection was established.
    DirectConnection,
    /// An established connection closed.
    ConnectionClosed,
}

/// A grid of cells: for each named peer a list of NATs; every combination, for every
/// transport, is a cell run `trials` times.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSpec {
    /// Peer name to the NATs it takes in turn.
    pub nat: BTreeMap<String, Vec<NatSpec>>,
    /// Transports (default: the scenario's).
    #[serde(default)]
    pub transport: Vec<TransportName>,
    /// Trials per cell (default: the scenario's).
    #[serde(default)]
    pub trials: Option<u32>,
}

/// NAT types weighted by how common they are: every pair of types for two peers is a
/// cell, and the cells' direct-connection rates, weighted by the product of the two
/// prevalences, project a rate for the field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMixSpec {
    /// The two peers whose NATs are drawn (DCUtR's A and B).
    pub peers: [String; 2],
    /// NAT preset name (or `public`) to its weight; weights need not sum to 1.
    pub prevalence: BTreeMap<String, f64>,
    /// The rate to compare with (default 0.70: DCUtR over 4.4 million attempts in the
    /// field).
    #[serde(default)]
    pub field_rate: Option<f64>,
    /// Trials per cell (default: the scenario's).
    #[serde(default)]
    pub trials: Option<u32>,
}

/// Settings of the run.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsSpec {
    /// Check the world's invariants after every event (default true).
    #[serde(default)]
    pub check_invariants: Option<bool>,
    /// Default limit of waiting steps, in seconds (default 60).
    #[serde(default)]
    pub step_timeout_s: Option<f64>,
    /// TCP data retransmissions before a connection times out (default 15, Linux).
    #[serde(default)]
    pub tcp_data_retries: Option<u32>,
    /// Automatic ping interval of the nodes in seconds; 0 disables (default 15).
    #[serde(default)]
    pub ping_interval_s: Option<f64>,
    /// How long the nodes wait for a ping's answer, in seconds (default 20). With the
    /// interval it makes the heartbeat's detection interval.
    #[serde(default)]
    pub ping_timeout_s: Option<f64>,
}
