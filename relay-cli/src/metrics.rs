//! Prometheus metrics of a relay node: the relay service, connections, hole punching,
//! AutoRelay and ping.
//!
//! [`Metrics`] holds every metric in one registry; its methods are named after the events
//! that update them (`reservation_accepted`, `circuit_closed`, ...), so the code that sees
//! an event calls one method and never touches a metric. [`Metrics::encode`] writes the
//! text exposition; [`serve_metrics`] serves it over HTTP at `/metrics`; [`Alerts`] turns
//! the seed's monitoring thresholds into WARN logs.
//!
//! Every metric name starts with `relay_`. Counters end in `_total`, durations are in
//! seconds and sizes in bytes, as Prometheus expects.

// Used by `relay serve` once it is wired; until then only the tests use all of it.

mod alerts;
mod http;

#[cfg(test)]
mod tests;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use relay_proto::conn::Endpoint;
use relay_proto::hop::{AbuseKey, Direction, LimitKind, Refusal, RefusalReason, ResourceUsage};

#[allow(unused_imports)] // the module's API, for `relay serve`
pub(crate) use alerts::{Alert, AlertThresholds, Alerts, run_alerts};
#[allow(unused_imports)] // the module's API, for `relay serve`
pub(crate) use http::{
    MAX_CONNECTIONS, MAX_REQUEST_HEAD, MetricsServer, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE,
    serve_metrics,
};

use crate::config::MonitoringSection;

/// Which groups of metrics are recorded; the others stay at zero.
///
/// From the seed's `track_circuit_stats`, `track_bandwidth_stats` and
/// `track_latency_stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tracking {
    /// Circuits closed by reason, their durations and sizes.
    pub(crate) circuits: bool,
    /// Relayed bytes.
    pub(crate) bandwidth: bool,
    /// Ping round trips.
    pub(crate) latency: bool,
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            circuits: true,
            bandwidth: true,
            latency: true,
        }
    }
}

impl From<&MonitoringSection> for Tracking {
    fn from(monitoring: &MonitoringSection) -> Self {
        Self {
            circuits: monitoring.track_circuit_stats,
            bandwidth: monitoring.track_bandwidth_stats,
            latency: monitoring.track_latency_stats,
        }
    }
}

/// Why a circuit closed, as the `reason` label of `relay_circuits_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CircuitCloseReason {
    /// Both sides finished normally.
    Normal,
    /// It reached `max_circuit_duration`.
    DurationLimit,
    /// It reached `max_circuit_bytes` in one direction.
    DataLimit,
    /// One side reset its stream or its connection closed.
    Reset,
    /// The relay failed to forward (write error, buffer timeout).
    Error,
}

impl CircuitCloseReason {
    /// Every reason.
    pub(crate) const ALL: [Self; 5] = [
        Self::Normal,
        Self::DurationLimit,
        Self::DataLimit,
        Self::Reset,
        Self::Error,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::DurationLimit => "duration_limit",
            Self::DataLimit => "data_limit",
            Self::Reset => "reset",
            Self::Error => "error",
        }
    }
}

impl From<LimitKind> for CircuitCloseReason {
    fn from(kind: LimitKind) -> Self {
        match kind {
            LimitKind::Duration => Self::DurationLimit,
            LimitKind::Data(_) => Self::DataLimit,
        }
    }
}

/// The transport of a connection, as the `transport` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    /// TCP.
    Tcp,
    /// QUIC.
    Quic,
    /// A relayed connection (through a circuit).
    Relayed,
}

impl Transport {
    /// Every transport.
    pub(crate) const ALL: [Self; 3] = [Self::Tcp, Self::Quic, Self::Relayed];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
            Self::Relayed => "relayed",
        }
    }
}

/// Why a hole punch failed, as the `reason` label (the seed's hole punch errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PunchFailure {
    /// No attempt finished in time (`ErrHolePunchTimeout`).
    Timeout,
    /// Every direct dial failed (`ErrDirectDialFailed`).
    DirectDialFailed,
    /// The NATs cannot be traversed (`ErrNATTypeIncompatible`).
    NatTypeIncompatible,
    /// Hole punching is off here or at the peer (`ErrHolePunchNotEnabled`).
    NotEnabled,
    /// The DCUtR exchange itself failed (bad message, stream reset).
    Protocol,
}

impl PunchFailure {
    /// Every reason.
    pub(crate) const ALL: [Self; 5] = [
        Self::Timeout,
        Self::DirectDialFailed,
        Self::NatTypeIncompatible,
        Self::NotEnabled,
        Self::Protocol,
    ];

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::DirectDialFailed => "direct_dial_failed",
            Self::NatTypeIncompatible => "nat_type_incompatible",
            Self::NotEnabled => "not_enabled",
            Self::Protocol => "protocol",
        }
    }
}

impl From<&relay_proto::dcutr::FailureReason> for PunchFailure {
    fn from(reason: &relay_proto::dcutr::FailureReason) -> Self {
        use relay_proto::dcutr::FailureReason;
        match reason {
            FailureReason::Timeout => Self::Timeout,
            FailureReason::DirectDialFailed => Self::DirectDialFailed,
            FailureReason::NatIncompatible => Self::NatTypeIncompatible,
            FailureReason::NotEnabled => Self::NotEnabled,
            FailureReason::ProtocolError(_) => Self::Protocol,
        }
    }
}

/// The circuit v2 status names a refusal is sent as, in label form.
pub(crate) const REFUSAL_STATUSES: [&str; 4] = [
    "RESERVATION_REFUSED",
    "RESOURCE_LIMIT_EXCEEDED",
    "PERMISSION_DENIED",
    "NO_RESERVATION",
];

/// The `status` label of a refusal: its circuit v2 status name.
pub(crate) fn status_label(refusal: &Refusal) -> &'static str {
    match refusal {
        Refusal::ReservationRefused(_) => REFUSAL_STATUSES[0],
        Refusal::ResourceLimitExceeded(_) => REFUSAL_STATUSES[1],
        Refusal::PermissionDenied(_) => REFUSAL_STATUSES[2],
        Refusal::NoReservation(_) => REFUSAL_STATUSES[3],
    }
}

/// The `reason` label of a refusal: which rule or limit refused, without the peer or IP
/// (labels must not grow with the number of peers).
pub(crate) fn reason_label(reason: &RefusalReason) -> &'static str {
    match reason {
        RefusalReason::DeniedPeer(_) => "denied_peer",
        RefusalReason::PeerNotAllowed(_) => "peer_not_allowed",
        RefusalReason::DeniedIp(_) => "denied_ip",
        RefusalReason::IpNotAllowed(_) => "ip_not_allowed",
        RefusalReason::HookDenied => "hook_denied",
        RefusalReason::HookTimedOut => "hook_timed_out",
        RefusalReason::Banned(_) => "banned",
        RefusalReason::Reservations => "max_reservations",
        RefusalReason::ReservationsForIp(_) => "max_reservations_per_ip",
        RefusalReason::ReservationsForAsn(_) => "max_reservations_per_asn",
        RefusalReason::Circuits => "max_circuits",
        RefusalReason::CircuitsForPeer(_) => "max_circuits_per_peer",
        RefusalReason::PeerRateLimited(_) => "peer_rate_limited",
        RefusalReason::IpRateLimited(_) => "ip_rate_limited",
        RefusalReason::PendingAsks => "max_pending_asks",
        RefusalReason::PendingAsksForPeer(_) => "max_pending_asks_per_peer",
        RefusalReason::NoReservation(_) => "no_reservation",
    }
}

/// The `direction` label of a circuit direction.
fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::SrcToDst => "src_to_dst",
        Direction::DstToSrc => "dst_to_src",
    }
}

/// The `direction` label of a connection: `inbound` or `outbound`.
fn endpoint_label(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Dialer => "outbound",
        Endpoint::Listener => "inbound",
    }
}

/// The circuit v2 status of a refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Why something ended or failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// A refused request: `reserve` or `connect`, and the rule that refused it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    request: &'static str,
    reason: &'static str,
}

/// A direction of a circuit: `src_to_dst` or `dst_to_src`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

/// A connection's direction (`inbound`, `outbound`) and transport.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    direction: &'static str,
    transport: &'static str,
}

/// What a ban applies to: `peer` or `ip`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// An AutoRelay change: `added` or `removed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    change: &'static str,
}

/// The path of a ping: `direct` or `relayed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

/// Histograms by label, each created with the constructor function.
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of a relay node, in one registry. Share it as `Arc<Metrics>`: every
/// method takes `&self` and is cheap (atomic updates).
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    tracking: Tracking,

    reservations_active: Gauge,
    reservations_accepted: Counter,
    reservations_refreshed: Counter,
    reservations_ended: Counter,
    reservations_refused: Family<StatusLabels, Counter>,
    circuits_active: Gauge,
    circuits_opened: Counter,
    circuits_refused: Family<StatusLabels, Counter>,
    circuits_closed: Family<ReasonLabels, Counter>,
    circuit_duration: Histogram,
    circuit_bytes: HistogramFamily<DirectionLabels>,
    relayed_bytes: Family<DirectionLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    abuse_bans: Family<KindLabels, Counter>,
    banned: Gauge,

    connections_active: Family<ConnectionLabels, Gauge>,
    connections_established: Family<ConnectionLabels, Counter>,

    hole_punch_attempts: Counter,
    hole_punch_successes: Counter,
    hole_punch_failures: Family<ReasonLabels, Counter>,
    hole_punch_time_to_direct: Histogram,

    autorelay_relays: Gauge,
    autorelay_relay_changes: Family<ChangeLabels, Counter>,

    ping_rtt: HistogramFamily<PathLabels>,
}

/// Buckets for the bytes of one circuit in one direction.
fn circuit_bytes_histogram() -> Histogram {
    // 1 KiB to 256 MiB.
    Histogram::new(exponential_buckets(1024.0, 4.0, 10))
}

/// Buckets for ping round trips.
fn ping_rtt_histogram() -> Histogram {
    // 0.5 ms to about 4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Tracking::default())
    }
}

impl Metrics {
    /// Every metric, registered and at zero; `tracking` says which groups are recorded.
    pub(crate) fn new(tracking: Tracking) -> Self {
        let mut registry = Registry::with_prefix("relay");
        let metrics = Self {
            registry: Registry::default(),
            tracking,
            reservations_active: Gauge::default(),
            reservations_accepted: Counter::default(),
            reservations_refreshed: Counter::default(),
            reservations_ended: Counter::default(),
            reservations_refused: Family::default(),
            circuits_active: Gauge::default(),
            circuits_opened: Counter::default(),
            circuits_refused: Family::default(),
            circuits_closed: Family::default(),
            // 100 ms to about 27 min.
            circuit_duration: Histogram::new(exponential_buckets(0.1, 2.0, 15)),
            circuit_bytes: Family::new_with_constructor(circuit_bytes_histogram),
            relayed_bytes: Family::default(),
            refusals: Family::default(),
            abuse_bans: Family::default(),
            banned: Gauge::default(),
            connections_active: Family::default(),
            connections_established: Family::default(),
            hole_punch_attempts: Counter::default(),
            hole_punch_successes: Counter::default(),
            hole_punch_failures: Family::default(),
            // 10 ms to about 40 s.
            hole_punch_time_to_direct: Histogram::new(exponential_buckets(0.01, 2.0, 13)),
            autorelay_relays: Gauge::default(),
            autorelay_relay_changes: Family::default(),
            ping_rtt: Family::new_with_constructor(ping_rtt_histogram),
        };
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "reservations_active",
            "Live reservations on this relay",
            m.reservations_active.clone(),
        );
        r.register(
            "reservations_accepted",
            "New reservations granted",
            m.reservations_accepted.clone(),
        );
        r.register(
            "reservations_refreshed",
            "Reservations renewed by their holder",
            m.reservations_refreshed.clone(),
        );
        r.register(
            "reservations_ended",
            "Reservations that expired or were removed",
            m.reservations_ended.clone(),
        );
        r.register(
            "reservations_refused",
            "RESERVE requests refused, by circuit v2 status",
            m.reservations_refused.clone(),
        );
        r.register(
            "circuits_active",
            "Circuits open on this relay",
            m.circuits_active.clone(),
        );
        r.register(
            "circuits_opened",
            "Circuits granted",
            m.circuits_opened.clone(),
        );
        r.register(
            "circuits_refused",
            "CONNECT requests refused, by circuit v2 status",
            m.circuits_refused.clone(),
        );
        r.register(
            "circuits_closed",
            "Circuits closed, by reason",
            m.circuits_closed.clone(),
        );
        r.register_with_unit(
            "circuit_duration",
            "Life of closed circuits",
            Unit::Seconds,
            m.circuit_duration.clone(),
        );
        r.register_with_unit(
            "circuit",
            "Bytes relayed by closed circuits, per direction",
            Unit::Bytes,
            m.circuit_bytes.clone(),
        );
        r.register_with_unit(
            "relayed",
            "Bytes relayed through circuits, by direction",
            Unit::Bytes,
            m.relayed_bytes.clone(),
        );
        r.register(
            "refusals",
            "Refused requests, by request (reserve or connect) and reason",
            m.refusals.clone(),
        );
        r.register(
            "abuse_bans",
            "Bans for abuse started, by kind (peer or ip)",
            m.abuse_bans.clone(),
        );
        r.register("abuse_banned", "Peers and IPs banned now", m.banned.clone());
        r.register(
            "connections_active",
            "Open connections, by direction and transport",
            m.connections_active.clone(),
        );
        r.register(
            "connections_established",
            "Connections established, by direction and transport",
            m.connections_established.clone(),
        );
        r.register(
            "hole_punch_attempts",
            "Hole punches started",
            m.hole_punch_attempts.clone(),
        );
        r.register(
            "hole_punch_successes",
            "Hole punches that gave a direct connection",
            m.hole_punch_successes.clone(),
        );
        r.register(
            "hole_punch_failures",
            "Hole punches that failed, by reason",
            m.hole_punch_failures.clone(),
        );
        r.register_with_unit(
            "hole_punch_time_to_direct",
            "Time from a relayed connection to a direct one",
            Unit::Seconds,
            m.hole_punch_time_to_direct.clone(),
        );
        r.register(
            "autorelay_relays",
            "Relays AutoRelay holds a reservation on",
            m.autorelay_relays.clone(),
        );
        r.register(
            "autorelay_relay_changes",
            "Relays added or removed by AutoRelay",
            m.autorelay_relay_changes.clone(),
        );
        r.register_with_unit(
            "ping_rtt",
            "Ping round trips, by path (direct or relayed)",
            Unit::Seconds,
            m.ping_rtt.clone(),
        );
        metrics.create_known_series();
        Self {
            registry,
            ..metrics
        }
    }

    /// Creates every series whose labels are known in advance, at zero, so that they are
    /// exported before their first event (queries such as `rate()` then see a start).
    /// Refusals by reason are left to appear when they happen.
    fn create_known_series(&self) {
        for status in REFUSAL_STATUSES {
            let labels = StatusLabels { status };
            let _ = self.reservations_refused.get_or_create(&labels);
            let _ = self.circuits_refused.get_or_create(&labels);
        }
        for reason in CircuitCloseReason::ALL {
            let _ = self.circuits_closed.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for direction in [Direction::SrcToDst, Direction::DstToSrc] {
            let labels = DirectionLabels {
                direction: direction_label(direction),
            };
            let _ = self.relayed_bytes.get_or_create(&labels);
            let _ = self.circuit_bytes.get_or_create(&labels);
        }
        for kind in ["peer", "ip"] {
            let _ = self.abuse_bans.get_or_create(&KindLabels { kind });
        }
        for endpoint in [Endpoint::Listener, Endpoint::Dialer] {
            for transport in Transport::ALL {
                let labels = ConnectionLabels {
                    direction: endpoint_label(endpoint),
                    transport: transport.as_str(),
                };
                let _ = self.connections_active.get_or_create(&labels);
                let _ = self.connections_established.get_or_create(&labels);
            }
        }
        for reason in PunchFailure::ALL {
            let _ = self.hole_punch_failures.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            });
        }
        for change in ["added", "removed"] {
            let _ = self
                .autorelay_relay_changes
                .get_or_create(&ChangeLabels { change });
        }
        for path in ["direct", "relayed"] {
            let _ = self.ping_rtt.get_or_create(&PathLabels { path });
        }
    }

    /// The metrics the monitoring section asks for.
    pub(crate) fn from_config(monitoring: &MonitoringSection) -> Self {
        Self::new(monitoring.into())
    }

    /// The text exposition: Prometheus text format 0.0.4 when `openmetrics` is false,
    /// OpenMetrics text (ending in `# EOF`) when true.
    pub(crate) fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        if openmetrics {
            encode_eof(&mut text)?;
        }
        Ok(text)
    }

    // --- relay service: reservations ---

    /// A new reservation was granted.
    pub(crate) fn reservation_accepted(&self) {
        self.reservations_accepted.inc();
        self.reservations_active.inc();
    }

    /// A reservation was renewed by its holder (it stays one reservation).
    pub(crate) fn reservation_refreshed(&self) {
        self.reservations_refreshed.inc();
    }

    /// A reservation expired or was removed.
    pub(crate) fn reservation_ended(&self) {
        self.reservations_ended.inc();
        dec_to_zero(&self.reservations_active);
    }

    /// A RESERVE request was refused.
    pub(crate) fn reservation_refused(&self, refusal: &Refusal) {
        self.reservations_refused
            .get_or_create(&StatusLabels {
                status: status_label(refusal),
            })
            .inc();
        self.refused("reserve", refusal);
    }

    // --- relay service: circuits ---

    /// A circuit was granted and its stop stream opened.
    pub(crate) fn circuit_opened(&self) {
        self.circuits_active.inc();
        self.circuits_opened.inc();
    }

    /// A CONNECT request was refused.
    pub(crate) fn circuit_refused(&self, refusal: &Refusal) {
        self.circuits_refused
            .get_or_create(&StatusLabels {
                status: status_label(refusal),
            })
            .inc();
        self.refused("connect", refusal);
    }

    /// Bytes were relayed on a circuit. Call it as bytes flow: `relay_relayed_bytes_total`
    /// counts only what is reported here (not what [`circuit_closed`](Self::circuit_closed)
    /// is told), so bandwidth shows while long circuits are open.
    pub(crate) fn bytes_relayed(&self, direction: Direction, bytes: u64) {
        if self.tracking.bandwidth {
            self.relayed_bytes
                .get_or_create(&DirectionLabels {
                    direction: direction_label(direction),
                })
                .inc_by(bytes);
        }
    }

    /// A circuit closed after `duration`, having relayed these totals. Records the closing
    /// reason, the duration and the per-circuit sizes; relayed bytes are counted by
    /// [`bytes_relayed`](Self::bytes_relayed) as they flow.
    pub(crate) fn circuit_closed(
        &self,
        reason: CircuitCloseReason,
        bytes_src_to_dst: u64,
        bytes_dst_to_src: u64,
        duration: Duration,
    ) {
        dec_to_zero(&self.circuits_active);
        if !self.tracking.circuits {
            return;
        }
        self.circuits_closed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        self.circuit_duration.observe(duration.as_secs_f64());
        for (direction, bytes) in [
            (Direction::SrcToDst, bytes_src_to_dst),
            (Direction::DstToSrc, bytes_dst_to_src),
        ] {
            self.circuit_bytes
                .get_or_create(&DirectionLabels {
                    direction: direction_label(direction),
                })
                .observe(bytes as f64);
        }
    }

    /// A peer or IP was banned for abuse.
    pub(crate) fn abuse_banned(&self, key: &AbuseKey) {
        let kind = match key {
            AbuseKey::Peer(_) => "peer",
            AbuseKey::Ip(_) => "ip",
        };
        self.abuse_bans.get_or_create(&KindLabels { kind }).inc();
        self.banned.inc();
    }

    /// Sets the gauges from the policy's own count (`RelayPolicy::usage`), correcting any
    /// drift of the event-driven updates: live reservations, open circuits, bans.
    pub(crate) fn sync_usage(&self, usage: &ResourceUsage) {
        self.reservations_active
            .set(saturating_i64(usage.reservations));
        self.circuits_active.set(saturating_i64(usage.circuits));
        self.banned.set(saturating_i64(usage.banned));
    }

    /// Counts a refusal by request and reason.
    fn refused(&self, request: &'static str, refusal: &Refusal) {
        self.refusals
            .get_or_create(&RefusalLabels {
                request,
                reason: reason_label(&refusal.reason()),
            })
            .inc();
    }

    // --- connections ---

    /// A connection was established (authenticated and multiplexed).
    pub(crate) fn connection_established(&self, endpoint: Endpoint, transport: Transport) {
        let labels = ConnectionLabels {
            direction: endpoint_label(endpoint),
            transport: transport.as_str(),
        };
        self.connections_established.get_or_create(&labels).inc();
        self.connections_active.get_or_create(&labels).inc();
    }

    /// An established connection closed.
    pub(crate) fn connection_closed(&self, endpoint: Endpoint, transport: Transport) {
        let labels = ConnectionLabels {
            direction: endpoint_label(endpoint),
            transport: transport.as_str(),
        };
        dec_to_zero(&self.connections_active.get_or_create(&labels));
    }

    // --- hole punching ---

    /// A hole punch (a DCUtR upgrade, all its attempts together) started.
    #[allow(dead_code)] // recorded once DCUtR and AutoRelay land (issues 4 and 6)
    pub(crate) fn hole_punch_started(&self) {
        self.hole_punch_attempts.inc();
    }

    /// A hole punch gave a direct connection `time_to_direct` after it started.
    #[allow(dead_code)] // recorded once DCUtR and AutoRelay land (issues 4 and 6)
    pub(crate) fn hole_punch_succeeded(&self, time_to_direct: Duration) {
        self.hole_punch_successes.inc();
        self.hole_punch_time_to_direct
            .observe(time_to_direct.as_secs_f64());
    }

    /// A hole punch failed; the relayed connection stays.
    #[allow(dead_code)] // recorded once DCUtR and AutoRelay land (issues 4 and 6)
    pub(crate) fn hole_punch_failed(&self, reason: PunchFailure) {
        self.hole_punch_failures
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    // --- AutoRelay ---

    /// AutoRelay gained a reservation on a relay.
    #[allow(dead_code)] // recorded once DCUtR and AutoRelay land (issues 4 and 6)
    pub(crate) fn autorelay_relay_added(&self) {
        self.autorelay_relays.inc();
        self.autorelay_relay_changes
            .get_or_create(&ChangeLabels { change: "added" })
            .inc();
    }

    /// AutoRelay lost or dropped a relay.
    #[allow(dead_code)] // recorded once DCUtR and AutoRelay land (issues 4 and 6)
    pub(crate) fn autorelay_relay_removed(&self) {
        dec_to_zero(&self.autorelay_relays);
        self.autorelay_relay_changes
            .get_or_create(&ChangeLabels { change: "removed" })
            .inc();
    }

    /// Sets the number of relays AutoRelay holds, from its own count.
    #[allow(dead_code)] // recorded once DCUtR and AutoRelay land (issues 4 and 6)
    pub(crate) fn set_autorelay_relays(&self, relays: usize) {
        self.autorelay_relays.set(saturating_i64(relays));
    }

    // --- ping ---

    /// A ping round trip completed.
    pub(crate) fn ping_rtt(&self, rtt: Duration, relayed: bool) {
        if !self.tracking.latency {
            return;
        }
        let path = if relayed { "relayed" } else { "direct" };
        self.ping_rtt
            .get_or_create(&PathLabels { path })
            .observe(rtt.as_secs_f64());
    }

    // --- readings, for alerts and tests ---

    /// Open circuits now.
    pub(crate) fn active_circuits(&self) -> u64 {
        u64::try_from(self.circuits_active.get()).unwrap_or(0)
    }

    /// Bytes relayed so far, both directions.
    pub(crate) fn total_relayed_bytes(&self) -> u64 {
        [Direction::SrcToDst, Direction::DstToSrc]
            .into_iter()
            .filter_map(|direction| {
                let labels = DirectionLabels {
                    direction: direction_label(direction),
                };
                self.relayed_bytes.get(&labels).map(|c| c.get())
            })
            .fold(0, u64::saturating_add)
    }

    /// RESERVE and CONNECT requests answered so far: (granted or refreshed, refused).
    pub(crate) fn request_outcomes(&self) -> (u64, u64) {
        let granted = self
            .reservations_accepted
            .get()
            .saturating_add(self.reservations_refreshed.get())
            .saturating_add(self.circuits_opened.get());
        let refused = REFUSAL_STATUSES
            .iter()
            .flat_map(|&status| {
                let labels = StatusLabels { status };
                [
                    self.reservations_refused.get(&labels).map(|c| c.get()),
                    self.circuits_refused.get(&labels).map(|c| c.get()),
                ]
            })
            .flatten()
            .fold(0, u64::saturating_add);
        (granted, refused)
    }
}

/// Decrements a gauge that counts things, never below zero.
fn dec_to_zero(gauge: &Gauge) {
    if gauge.get() > 0 {
        gauge.dec();
    }
}

/// `n` as a gauge value.
fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
