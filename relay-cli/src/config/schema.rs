//! The sections of the config file, one struct per YAML mapping, with their defaults.
//!
//! Defaults of settings that relay-proto also has are taken from relay-proto's own
//! `Default`s (which are the seed's), so the two cannot drift apart; the tests check them
//! against the numbers written in the seed.

use std::path::PathBuf;

use relay_proto::Multiaddr;
use relay_proto::hop::{Cidr, HookMode, RateLimit, RelayConfig};
use relay_proto::identity::PeerId;
use serde::{Deserialize, Serialize};

use super::duration::GoDuration;
use super::text;

/// The whole file: everything lives under `node:`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    /// The local node.
    pub(crate) node: NodeSection,
}

/// `node`: the local peer, its addresses and key, its connections, and `relay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NodeSection {
    /// Multiaddrs to listen on (`["/ip4/0.0.0.0/tcp/4001"]`); `--listen` replaces them.
    #[serde(with = "text::list")]
    pub(crate) listen: Vec<Multiaddr>,
    /// The ed25519 key file (libp2p protobuf format), created if missing; `None` for a
    /// fresh key at every start. Relative paths are relative to the config file. `--key`
    /// replaces it.
    pub(crate) key_file: Option<PathBuf>,
    /// Most connections at once (4096).
    pub(crate) max_connections: usize,
    /// Longest time security and muxer negotiation of a new connection may take (10s).
    pub(crate) upgrade_timeout: GoDuration,
    /// Time between automatic pings on each connection (15s); `0` pings only on request.
    pub(crate) ping_interval: GoDuration,
    /// Longest wait for a ping's answer (20s).
    pub(crate) ping_timeout: GoDuration,
    /// Most Yamux streams open at once on one connection (512).
    pub(crate) max_streams: usize,
    /// The seed's `node.relay` sections.
    pub(crate) relay: RelaySection,
}

/// `node.relay`: the seed's five sections.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RelaySection {
    /// Relay client transport and hop settings.
    pub(crate) transport: TransportSection,
    /// The relay server.
    pub(crate) service: ServiceSection,
    /// Choosing and keeping relays.
    pub(crate) auto_relay: AutoRelaySection,
    /// DCUtR hole punching.
    pub(crate) hole_punch: HolePunchSection,
    /// Metrics and alert thresholds.
    pub(crate) monitoring: MonitoringSection,
}

/// `node.relay.transport` (seed: 中继传输配置).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TransportSection {
    /// Whether this node dials and listens through relays (true).
    pub(crate) enabled: bool,
    /// Longest time one hop request may take, answer included (30s); `0`: no limit.
    pub(crate) hop_timeout: GoDuration,
    /// Most relay hops on a path (3). Circuit relay v2 relays one hop and refuses hop
    /// requests arriving over relayed connections, so any value of at least 1 behaves
    /// alike; it is kept for the seed's schema.
    pub(crate) max_hops: u32,
    /// Longest time a dial through a relay may take (60s).
    pub(crate) dial_timeout: GoDuration,
    /// Most circuits one peer takes part in at once through this relay (16); `0`: no limit.
    pub(crate) max_circuits_per_peer: u32,
    /// Longest time a hop or stop stream waits for its next message (1m); `0`: no limit.
    pub(crate) stream_timeout: GoDuration,
    /// Largest message accepted (65536); relay messages are further capped at 4096.
    pub(crate) max_message_size: usize,
}

/// `node.relay.service` (seed: 中继服务配置), plus the settings of issue 3 beyond the seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServiceSection {
    /// Whether this node relays for others (false; `relay serve` turns it on).
    pub(crate) enabled: bool,
    /// Most circuits open at once (1000); `0`: no limit.
    pub(crate) max_circuits: u32,
    /// Longest life of a circuit (2m); `0`: no limit.
    pub(crate) max_circuit_duration: GoDuration,
    /// Most bytes relayed in each direction of a circuit (1048576); `0`: no limit.
    pub(crate) max_circuit_bytes: u64,
    /// Most live reservations (256); `0`: no limit.
    pub(crate) max_reservations: u32,
    /// Most reservation requests of one peer awaiting the decision hook (4).
    pub(crate) max_reservations_per_peer: u32,
    /// Most live reservations from one IP (8); `0`: no limit.
    pub(crate) max_reservations_per_ip: u32,
    /// Most live reservations from one autonomous system (32); needs `asn_table`.
    pub(crate) max_reservations_per_asn: u32,
    /// Bytes buffered per direction of a circuit (2048); at least 1.
    pub(crate) buffer_size: usize,
    /// Longest time relayed data may wait in a buffer (10s); `0`: no limit.
    pub(crate) max_buffer_time: GoDuration,
    /// Life of a new or refreshed reservation (1h); not zero.
    pub(crate) reservation_ttl: GoDuration,
    /// IPv6 addresses in one prefix of this length count as one IP (64); at most 128.
    pub(crate) ipv6_prefix_len: u8,
    /// Most requests awaiting the decision hook at once (256); `0`: no limit.
    pub(crate) max_pending_asks: u32,
    /// Token-bucket rate limits on requests.
    pub(crate) rate_limits: RateLimitsSection,
    /// Allow and deny lists, and the decision hook.
    pub(crate) acl: AclSection,
    /// An ip2asn TSV file (iptoasn.com format, IPv4, IPv6 or combined) for
    /// `max_reservations_per_asn`; `None` turns that limit off. Relative paths are
    /// relative to the config file.
    pub(crate) asn_table: Option<PathBuf>,
    /// Refusal counting and temporary bans.
    pub(crate) abuse: AbuseSection,
}

/// A token-bucket rate: `burst` requests at once, then one more per `refill`.
/// `burst: 0` or `refill: 0s` turns it off. Both fields must be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateSection {
    /// Requests admitted at one instant.
    pub(crate) burst: u32,
    /// Time to regain one request.
    pub(crate) refill: GoDuration,
}

/// `node.relay.service.rate_limits`: per peer and per IP, for reservations and circuits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RateLimitsSection {
    /// RESERVE requests per peer (burst 4, refill 1m).
    pub(crate) reservations_per_peer: RateSection,
    /// RESERVE requests per IP (burst 16, refill 15s).
    pub(crate) reservations_per_ip: RateSection,
    /// CONNECT requests per initiating peer (burst 32, refill 1s).
    pub(crate) circuits_per_peer: RateSection,
    /// CONNECT requests per initiating IP (burst 64, refill 250ms).
    pub(crate) circuits_per_ip: RateSection,
    /// Most peers or IPs tracked by each limiter and by the abuse detector (16384).
    pub(crate) max_tracked_keys: usize,
}

/// `node.relay.service.acl`: deny lists win; each non-empty allow list must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AclSection {
    /// If not empty, only these peers may reserve or take part in circuits.
    #[serde(with = "text::list")]
    pub(crate) allow_peers: Vec<PeerId>,
    /// These peers may not reserve, connect, or be connected to.
    #[serde(with = "text::list")]
    pub(crate) deny_peers: Vec<PeerId>,
    /// If not empty, only peers connecting from these blocks may reserve or connect.
    #[serde(with = "text::list")]
    pub(crate) allow_cidrs: Vec<Cidr>,
    /// Peers connecting from these blocks may not reserve or connect.
    #[serde(with = "text::list")]
    pub(crate) deny_cidrs: Vec<Cidr>,
    /// Which requests the runtime's decision hook is asked about (`off`).
    pub(crate) hook: HookSetting,
    /// The program `relay serve` runs to answer the hook, with its arguments, e.g.
    /// `[/usr/local/bin/relay-acl, --strict]`: one run per request, the request as
    /// one JSON line on stdin; exit status 0 allows, anything else (or no answer
    /// within `transport.hop_timeout`) refuses.
    pub(crate) hook_command: Vec<String>,
}

/// `node.relay.service.acl.hook`: `off`, `reservations`, `circuits` or `both`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HookSetting {
    /// The lists alone decide.
    #[default]
    Off,
    /// Ask about RESERVE requests.
    Reservations,
    /// Ask about CONNECT requests.
    Circuits,
    /// Ask about both.
    Both,
}

/// `node.relay.service.abuse`: a peer or IP refused too often is banned for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AbuseSection {
    /// Refusals tolerated per peer and per IP (burst 32, refill 2s); off disables bans.
    pub(crate) refusals: RateSection,
    /// How long a ban lasts (10m); `0` disables bans.
    pub(crate) ban: GoDuration,
}

/// `node.relay.auto_relay` (seed: AutoRelay配置).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AutoRelaySection {
    /// Whether AutoRelay keeps reservations by itself (false).
    pub(crate) enabled: bool,
    /// Relays to use, each a multiaddr ending in `/p2p/<peer id>` ([]).
    #[serde(with = "text::list")]
    pub(crate) static_relay_peers: Vec<Multiaddr>,
    /// Whether relays may also be discovered (true).
    pub(crate) enable_dynamic: bool,
    /// Most reservations kept at once (3); at least 1.
    pub(crate) max_relay_peers: u32,
    /// Fewest reservations wanted (1); at most `max_relay_peers`.
    pub(crate) min_relay_peers: u32,
    /// How candidates are chosen (`quality`).
    pub(crate) selection_policy: SelectionPolicy,
    /// Lowest quality score, in 0..=1, of a relay worth keeping (0.8).
    pub(crate) quality_threshold: f64,
    /// How often relays are re-evaluated (30m).
    pub(crate) refresh_interval: GoDuration,
    /// Longest wait for the peer source to offer candidates (30s).
    pub(crate) peer_source_timeout: GoDuration,
    /// Longest wait for discovery of relays (1m).
    pub(crate) discovery_timeout: GoDuration,
}

/// `node.relay.auto_relay.selection_policy`: `quality`, `random` or `round_robin`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SelectionPolicy {
    /// The best-scoring candidates (by RTT, reservation success and uptime).
    #[default]
    Quality,
    /// Uniformly random candidates.
    Random,
    /// Candidates in turn.
    RoundRobin,
}

/// `node.relay.hole_punch` (seed: 打洞配置).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HolePunchSection {
    /// Whether relayed connections are upgraded to direct ones (true).
    pub(crate) enabled: bool,
    /// DCUtR exchanges per upgrade (3); at least 1.
    pub(crate) max_attempts: u32,
    /// Longest time one attempt may take (5s).
    pub(crate) attempt_timeout: GoDuration,
    /// Direct dials tried before DCUtR when the peer has public addresses (3); at least 1.
    pub(crate) direct_dial_attempts: u32,
    /// Longest wait for the SYNC message (15s).
    pub(crate) sync_timeout: GoDuration,
    /// Whether TCP simultaneous open is tried (true).
    pub(crate) enable_tcp_hole_punch: bool,
    /// Whether the DCUtR protocol is spoken (true).
    pub(crate) enable_dcutr: bool,
    /// Most hole punches in progress at once (10); at least 1.
    pub(crate) concurrent_limit: u32,
    /// Beyond the seed: whether private addresses (RFC 1918, 100.64/10, IPv6 ULA) are
    /// hole punch candidates (false).
    pub(crate) allow_private_addrs: bool,
    /// Beyond the seed: whether loopback addresses are candidates too, for peers on one
    /// host (false).
    pub(crate) allow_loopback_addrs: bool,
    /// Beyond the seed: how long a relayed connection is kept after a hole punch
    /// replaced it (1m).
    pub(crate) relayed_close_grace: GoDuration,
}

/// `node.relay.monitoring` (seed: 监控配置), plus where to serve metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MonitoringSection {
    /// Whether metrics are collected and served (true).
    pub(crate) enable_metrics: bool,
    /// How often alert thresholds are checked (1m).
    pub(crate) metrics_interval: GoDuration,
    /// Whether per-circuit statistics are kept (true).
    pub(crate) track_circuit_stats: bool,
    /// Whether relayed bytes are counted (true).
    pub(crate) track_bandwidth_stats: bool,
    /// Whether ping round trips are recorded (true).
    pub(crate) track_latency_stats: bool,
    /// Warn when open circuits exceed this share of `max_circuits` (0.9).
    pub(crate) circuit_limit_threshold: f64,
    /// Warn when relayed bytes per second exceed this share of `bandwidth_capacity` (0.8).
    pub(crate) bandwidth_limit_threshold: f64,
    /// Warn when more than this share of requests in an interval are refused (0.1).
    pub(crate) error_rate_threshold: f64,
    /// `HOST:PORT` to serve Prometheus text on at `/metrics` (none); `--metrics` sets it.
    pub(crate) metrics_listen: Option<String>,
    /// Relayed bytes per second (both directions) the relay is sized for; `0` (the
    /// default) turns the bandwidth alert off.
    pub(crate) bandwidth_capacity: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        let node = relay_proto::node::Config::default();
        Self {
            listen: vec![default_listen()],
            key_file: None,
            max_connections: node.max_connections,
            upgrade_timeout: node.connection.upgrade_timeout.into(),
            ping_interval: node.ping.interval.unwrap_or_default().into(),
            ping_timeout: node.ping.timeout.into(),
            max_streams: node.connection.yamux.max_streams,
            relay: RelaySection::default(),
        }
    }
}

/// `/ip4/0.0.0.0/tcp/4001`, the listen address when none is configured.
pub(crate) fn default_listen() -> Multiaddr {
    Multiaddr::empty()
        .with(relay_proto::multiaddr::Protocol::Ip4([0, 0, 0, 0].into()))
        .with(relay_proto::multiaddr::Protocol::Tcp(4001))
}

impl Default for TransportSection {
    fn default() -> Self {
        let relay = RelayConfig::default();
        Self {
            enabled: true,
            hop_timeout: relay.hop_timeout.into(),
            max_hops: 3,
            dial_timeout: GoDuration::from_secs(60),
            max_circuits_per_peer: relay.max_circuits_per_peer,
            stream_timeout: relay.stream_timeout.into(),
            max_message_size: relay.max_message_size,
        }
    }
}

impl Default for ServiceSection {
    fn default() -> Self {
        let relay = RelayConfig::default();
        Self {
            enabled: false,
            max_circuits: relay.max_circuits,
            max_circuit_duration: relay.max_circuit_duration.into(),
            max_circuit_bytes: relay.max_circuit_bytes,
            max_reservations: relay.max_reservations,
            max_reservations_per_peer: relay.max_reservations_per_peer,
            max_reservations_per_ip: relay.max_reservations_per_ip,
            max_reservations_per_asn: relay.max_reservations_per_asn,
            buffer_size: relay.buffer_size,
            max_buffer_time: relay.max_buffer_time.into(),
            reservation_ttl: relay.reservation_ttl.into(),
            ipv6_prefix_len: relay.ipv6_prefix_len,
            max_pending_asks: relay.max_pending_asks,
            rate_limits: RateLimitsSection::default(),
            acl: AclSection::default(),
            asn_table: None,
            abuse: AbuseSection::default(),
        }
    }
}

impl Default for RateLimitsSection {
    fn default() -> Self {
        let rate = RelayConfig::default().rate;
        Self {
            reservations_per_peer: rate.reservations_per_peer.into(),
            reservations_per_ip: rate.reservations_per_ip.into(),
            circuits_per_peer: rate.circuits_per_peer.into(),
            circuits_per_ip: rate.circuits_per_ip.into(),
            max_tracked_keys: rate.max_tracked_keys,
        }
    }
}

impl Default for AbuseSection {
    fn default() -> Self {
        let abuse = RelayConfig::default().abuse;
        Self {
            refusals: abuse.refusals.into(),
            ban: abuse.ban.into(),
        }
    }
}

impl Default for AutoRelaySection {
    fn default() -> Self {
        Self {
            enabled: false,
            static_relay_peers: Vec::new(),
            enable_dynamic: true,
            max_relay_peers: 3,
            min_relay_peers: 1,
            selection_policy: SelectionPolicy::Quality,
            quality_threshold: 0.8,
            refresh_interval: GoDuration::from_secs(30 * 60),
            peer_source_timeout: GoDuration::from_secs(30),
            discovery_timeout: GoDuration::from_secs(60),
        }
    }
}

impl Default for HolePunchSection {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 3,
            attempt_timeout: GoDuration::from_secs(5),
            direct_dial_attempts: 3,
            sync_timeout: GoDuration::from_secs(15),
            enable_tcp_hole_punch: true,
            enable_dcutr: true,
            concurrent_limit: 10,
            allow_private_addrs: false,
            allow_loopback_addrs: false,
            relayed_close_grace: GoDuration::from_secs(60),
        }
    }
}

impl Default for MonitoringSection {
    fn default() -> Self {
        Self {
            enable_metrics: true,
            metrics_interval: GoDuration::from_secs(60),
            track_circuit_stats: true,
            track_bandwidth_stats: true,
            track_latency_stats: true,
            circuit_limit_threshold: 0.9,
            bandwidth_limit_threshold: 0.8,
            error_rate_threshold: 0.1,
            metrics_listen: None,
            bandwidth_capacity: 0,
        }
    }
}

impl RateSection {
    /// A rate that lets every request pass.
    pub(crate) const OFF: Self = Self {
        burst: 0,
        refill: GoDuration::ZERO,
    };
}

impl From<RateLimit> for RateSection {
    fn from(rate: RateLimit) -> Self {
        Self {
            burst: rate.burst,
            refill: rate.refill.into(),
        }
    }
}

impl From<RateSection> for RateLimit {
    fn from(rate: RateSection) -> Self {
        RateLimit::new(rate.burst, rate.refill.get())
    }
}

impl From<HookSetting> for HookMode {
    fn from(hook: HookSetting) -> Self {
        match hook {
            HookSetting::Off => HookMode::Off,
            HookSetting::Reservations => HookMode::Reservations,
            HookSetting::Circuits => HookMode::Circuits,
            HookSetting::Both => HookMode::Both,
        }
    }
}
