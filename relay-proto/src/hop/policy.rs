//! [`RelayPolicy`]: the relay server's admission state. It decides every RESERVE and
//! CONNECT exactly, tracks reservations and circuits, and says when something expires.
//!
//! Order of checks, first failure wins:
//! - RESERVE: ACL (202), ban (202), rate limits (200), `max_reservations`, per IP, per ASN
//!   (200), then the decision hook if configured (202 if it says no).
//! - CONNECT: ACL on initiator and target (202), ban (202), the target's live reservation
//!   (204), rate limits (201), `max_circuits` and `max_circuits_per_peer` for initiator
//!   and target (201), then the decision hook if configured.
//!
//! A refused request changes nothing but rate-limit tokens and abuse counters: in
//! particular a refused refresh leaves the existing reservation as it was.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use crate::identity::PeerId;

use super::abuse::{AbuseDetector, AbuseKey};
use super::acl::Acl;
use super::asn::AsnTable;
use super::circuits::{
    CircuitError, CircuitId, CircuitInfo, Circuits, Direction, Limit, LimitHit, LimitKind,
};
use super::config::{ConfigError, RelayConfig};
use super::hook::{Asks, HookQuery, HookRequest, Ticket};
use super::ip::IpKey;
use super::rate::KeyedLimiter;
use super::refusal::{Refusal, RefusalReason};
use super::reservations::{ReservationInfo, Reservations};

/// The relay server's admission state: reservations, circuits, limits, ACL, hook, bans.
///
/// Methods come in four groups, as in quinn-proto's `Connection`:
/// - getters: [`config`](Self::config), [`reservations`](Self::reservations),
///   [`circuits`](Self::circuits), [`usage`](Self::usage), [`abusive`](Self::abusive), ...
/// - `handle_*`: [`handle_timeout`](Self::handle_timeout) when the timer fires;
/// - requests and mutators: [`reserve`](Self::reserve), [`connect`](Self::connect),
///   [`answer`](Self::answer), [`circuit_data`](Self::circuit_data),
///   [`circuit_closed`](Self::circuit_closed), [`remove_reservation`](Self::remove_reservation);
/// - `poll_*`: [`poll_event`](Self::poll_event) until `None`, then
///   [`poll_timeout`](Self::poll_timeout) to re-arm the timer.
///
/// Every method taking `now` first collects what expired by `now`, so admission never
/// counts an expired reservation, whether or not the timer has fired yet.
#[derive(Debug)]
pub struct RelayPolicy {
    config: RelayConfig,
    acl: Acl,
    asn: Option<AsnTable>,
    reservations: Reservations,
    circuits: Circuits,
    asks: Asks,
    rates: Rates,
    abuse: AbuseDetector,
    events: VecDeque<PolicyEvent>,
    stats: Stats,
}

/// A granted reservation, for the STATUS:OK answer and the voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservationGrant {
    /// The reserving peer.
    pub peer: PeerId,
    /// When the reservation ends unless refreshed.
    pub expires_at: Instant,
    /// The same end in Unix seconds, for `Reservation.expire` and the voucher; rounded
    /// down, so the peer never believes in a reservation the relay has dropped.
    pub expire_unix: u64,
    /// The limit each circuit to this peer gets, for `HopMessage.limit`.
    pub limit: Limit,
    /// Whether this refreshed a live reservation rather than creating one.
    pub refreshed: bool,
}

/// A granted circuit: open the stop stream to `dst`, then splice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitGrant {
    /// Its id, for [`RelayPolicy::circuit_data`] and [`RelayPolicy::circuit_closed`].
    pub id: CircuitId,
    /// The initiator.
    pub src: PeerId,
    /// The target.
    pub dst: PeerId,
    /// Its limit, for the hop and stop messages.
    pub limit: Limit,
    /// When its duration limit ends it, if it has one.
    pub deadline: Option<Instant>,
}

/// The policy's answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission<G> {
    /// Granted: answer STATUS:OK.
    Granted(G),
    /// Refused: answer with [`Refusal::status_code`].
    Refused(Refusal),
    /// The decision hook must decide: pass the request to the runtime, keep the stream
    /// waiting, and call [`RelayPolicy::answer`] with the ticket.
    Ask(HookRequest),
}

impl<G> Admission<G> {
    /// The grant, if granted.
    pub fn granted(self) -> Option<G> {
        match self {
            Self::Granted(g) => Some(g),
            _ => None,
        }
    }

    /// The refusal, if refused.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::Refused(r) => Some(*r),
            _ => None,
        }
    }

    /// The hook request, if the hook must decide.
    pub fn ask(&self) -> Option<HookRequest> {
        match self {
            Self::Ask(request) => Some(*request),
            _ => None,
        }
    }
}

/// Something granted after the decision hook allowed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// A reservation.
    Reservation(ReservationGrant),
    /// A circuit.
    Circuit(CircuitGrant),
}

/// The outcome of a request the decision hook was asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// The request as asked.
    pub request: HookRequest,
    /// Granted, or refused: by the hook, or because limits filled up while it decided.
    pub outcome: Result<Grant, Refusal>,
}

/// An answer named a ticket that is not waiting: already answered, cancelled or expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no request waits with {0}")]
pub struct UnknownTicket(pub Ticket);

/// Something the caller must act on, from [`RelayPolicy::poll_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyEvent {
    /// A reservation expired and was removed.
    ReservationExpired(ReservationInfo),
    /// A circuit reached its duration limit and was removed: reset both streams.
    CircuitLimitReached(LimitHit),
    /// The decision hook did not answer in time: answer the stream with the refusal.
    AskExpired {
        /// The request that waited.
        request: HookRequest,
        /// The refusal to send.
        refusal: Refusal,
    },
    /// A peer or IP was refused too often and is banned until `until`: the runtime may
    /// disconnect it.
    AbuseDetected {
        /// What is banned.
        key: AbuseKey,
        /// When the ban ends.
        until: Instant,
    },
}

/// Current usage against the limits, and counters since creation (the seed's
/// `ResourceUsage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// Live reservations.
    pub reservations: usize,
    /// `max_reservations` (0: no limit).
    pub max_reservations: u32,
    /// Open circuits.
    pub circuits: usize,
    /// `max_circuits` (0: no limit).
    pub max_circuits: u32,
    /// Requests waiting for the decision hook.
    pub pending_asks: usize,
    /// `max_pending_asks` (0: no limit).
    pub max_pending_asks: u32,
    /// Peers and IPs banned for abuse.
    pub banned: usize,
    /// Token buckets held by the rate limiters and the abuse detector.
    pub tracked_keys: usize,
    /// Reservations created.
    pub reservations_granted: u64,
    /// Reservations refreshed.
    pub reservations_refreshed: u64,
    /// RESERVE requests refused.
    pub reservations_refused: u64,
    /// Reservations that expired.
    pub reservations_expired: u64,
    /// Circuits granted.
    pub circuits_granted: u64,
    /// CONNECT requests refused.
    pub circuits_refused: u64,
    /// Circuits ended by a duration or data limit.
    pub circuits_limited: u64,
    /// Bytes relayed, both directions of all circuits.
    pub bytes_relayed: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    reservations_granted: u64,
    reservations_refreshed: u64,
    reservations_refused: u64,
    reservations_expired: u64,
    circuits_granted: u64,
    circuits_refused: u64,
    circuits_limited: u64,
    bytes_relayed: u64,
}

#[derive(Debug)]
struct Rates {
    reserve_peer: KeyedLimiter<PeerId>,
    reserve_ip: KeyedLimiter<IpKey>,
    connect_peer: KeyedLimiter<PeerId>,
    connect_ip: KeyedLimiter<IpKey>,
}

impl RelayPolicy {
    /// A policy with `config` and no ASN table.
    pub fn new(config: RelayConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let keys = config.rate.max_tracked_keys;
        let rate = &config.rate;
        Ok(Self {
            acl: Acl::new(&config.acl),
            asn: None,
            reservations: Reservations::default(),
            circuits: Circuits::default(),
            asks: Asks::default(),
            rates: Rates {
                reserve_peer: KeyedLimiter::new(rate.reservations_per_peer, keys),
                reserve_ip: KeyedLimiter::new(rate.reservations_per_ip, keys),
                connect_peer: KeyedLimiter::new(rate.circuits_per_peer, keys),
                connect_ip: KeyedLimiter::new(rate.circuits_per_ip, keys),
            },
            abuse: AbuseDetector::new(config.abuse, keys),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    /// The same policy with `table` for per-ASN limits.
    pub fn with_asn_table(mut self, table: AsnTable) -> Self {
        self.asn = Some(table);
        self
    }

    // ----- getters -----

    /// The settings.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The ASN table, if one is set.
    pub fn asn_table(&self) -> Option<&AsnTable> {
        self.asn.as_ref()
    }

    /// The limit every circuit gets (from `max_circuit_duration` and `max_circuit_bytes`).
    pub fn limit(&self) -> Limit {
        Limit {
            duration: Some(self.config.max_circuit_duration).filter(|d| !d.is_zero()),
            data: Some(self.config.max_circuit_bytes).filter(|&b| b != 0),
        }
    }

    /// The reservation of `peer`, if it holds one (live unless time passed since the last
    /// call taking `now`).
    pub fn reservation(&self, peer: &PeerId) -> Option<&ReservationInfo> {
        self.reservations.get(peer)
    }

    /// All reservations held (the seed's active reservations: peer, IP, expiry).
    pub fn reservations(&self) -> impl Iterator<Item = &ReservationInfo> + '_ {
        self.reservations.iter()
    }

    /// The circuit `id`, if open.
    pub fn circuit(&self, id: CircuitId) -> Option<&CircuitInfo> {
        self.circuits.get(id)
    }

    /// All open circuits (the seed's `GetActiveCircuits`: source, destination, start,
    /// bytes each way, limit).
    pub fn circuits(&self) -> impl Iterator<Item = &CircuitInfo> + '_ {
        self.circuits.iter()
    }

    /// Requests waiting for the decision hook.
    pub fn pending_asks(&self) -> impl Iterator<Item = &HookRequest> + '_ {
        self.asks.iter()
    }

    /// Peers and IPs banned for abuse, each with the end of its ban, soonest first.
    pub fn abusive(&self) -> impl Iterator<Item = (AbuseKey, Instant)> + '_ {
        self.abuse.iter()
    }

    /// Usage against the limits and counters (the seed's `GetResourceUsage`).
    pub fn usage(&self) -> ResourceUsage {
        let s = self.stats;
        ResourceUsage {
            reservations: self.reservations.len(),
            max_reservations: self.config.max_reservations,
            circuits: self.circuits.len(),
            max_circuits: self.config.max_circuits,
            pending_asks: self.asks.len(),
            max_pending_asks: self.config.max_pending_asks,
            banned: self.abuse.len(),
            tracked_keys: self.rates.reserve_peer.len()
                + self.rates.reserve_ip.len()
                + self.rates.connect_peer.len()
                + self.rates.connect_ip.len()
                + self.abuse.tracked(),
            reservations_granted: s.reservations_granted,
            reservations_refreshed: s.reservations_refreshed,
            reservations_refused: s.reservations_refused,
            reservations_expired: s.reservations_expired,
            circuits_granted: s.circuits_granted,
            circuits_refused: s.circuits_refused,
            circuits_limited: s.circuits_limited,
            bytes_relayed: s.bytes_relayed,
        }
    }

    // ----- handle_* -----

    /// Collects what expired by `now`: reservations, circuits at their duration limit,
    /// hook requests not answered in time, bans. Each yields a [`PolicyEvent`] except
    /// lifted bans.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    // ----- requests and mutators -----

    /// Decides a RESERVE from `peer` connected from `ip`; `unix_now` is the wall time at
    /// `now`, in Unix seconds.
    ///
    /// A peer holding a reservation gets it refreshed: counted once, its expiry moved to
    /// `now + reservation_ttl`, and its IP and ASN accounting moved to `ip` if the peer
    /// reconnected from elsewhere.
    pub fn reserve(
        &mut self,
        now: Instant,
        unix_now: u64,
        peer: PeerId,
        ip: IpAddr,
    ) -> Admission<ReservationGrant> {
        self.expire(now);
        let query = HookQuery::Reserve { peer, ip };
        if let Err(reason) = self.screen(now, &query) {
            return Admission::Refused(self.refuse(now, &query, reason));
        }
        let ip_key = self.ip_key(ip);
        let asn = self.asn_of(ip);
        if let Err(reason) = self.reservation_room(peer, ip_key, asn) {
            return Admission::Refused(self.refuse(now, &query, reason));
        }
        if self.config.acl.hook.asks_reservations() {
            return match self.ask(now, query) {
                Ok(request) => Admission::Ask(request),
                Err(reason) => Admission::Refused(self.refuse(now, &query, reason)),
            };
        }
        Admission::Granted(self.grant_reservation(now, unix_now, peer, ip, ip_key, asn))
    }

    /// Decides a CONNECT from `src`, connected from `src_ip`, to `dst`.
    ///
    /// A granted circuit counts against `max_circuits` and against `max_circuits_per_peer`
    /// of both `src` and `dst` until [`circuit_closed`](Self::circuit_closed) or a limit
    /// ends it.
    pub fn connect(
        &mut self,
        now: Instant,
        src: PeerId,
        src_ip: IpAddr,
        dst: PeerId,
    ) -> Admission<CircuitGrant> {
        self.expire(now);
        let query = HookQuery::Connect { src, src_ip, dst };
        if let Err(reason) = self.screen(now, &query) {
            return Admission::Refused(self.refuse(now, &query, reason));
        }
        if let Err(reason) = self.circuit_room(now, src, dst) {
            return Admission::Refused(self.refuse(now, &query, reason));
        }
        if self.config.acl.hook.asks_circuits() {
            return match self.ask(now, query) {
                Ok(request) => Admission::Ask(request),
                Err(reason) => Admission::Refused(self.refuse(now, &query, reason)),
            };
        }
        Admission::Granted(self.grant_circuit(now, src, src_ip, dst))
    }

    /// Finishes a request the decision hook was asked about.
    ///
    /// With `allow`, bans and resource limits are checked again, since they may have
    /// changed while the hook decided; the ACL and rate limits were applied when asked.
    pub fn answer(
        &mut self,
        now: Instant,
        unix_now: u64,
        ticket: Ticket,
        allow: bool,
    ) -> Result<Answered, UnknownTicket> {
        self.expire(now);
        let request = self.asks.take(ticket).ok_or(UnknownTicket(ticket))?;
        let query = request.query;
        let checked = if !allow {
            Err(RefusalReason::HookDenied)
        } else {
            let ip_key = self.ip_key(query.ip());
            match self.abuse.banned(now, query.requester(), ip_key) {
                Some(key) => Err(RefusalReason::Banned(key)),
                None => Ok(()),
            }
        };
        let outcome = match (query, checked) {
            (_, Err(reason)) => Err(reason),
            (HookQuery::Reserve { peer, ip }, Ok(())) => {
                let ip_key = self.ip_key(ip);
                let asn = self.asn_of(ip);
                self.reservation_room(peer, ip_key, asn).map(|()| {
                    Grant::Reservation(self.grant_reservation(now, unix_now, peer, ip, ip_key, asn))
                })
            }
            (HookQuery::Connect { src, src_ip, dst }, Ok(())) => self
                .circuit_room(now, src, dst)
                .map(|()| Grant::Circuit(self.grant_circuit(now, src, src_ip, dst))),
        };
        let outcome = outcome.map_err(|reason| self.refuse(now, &query, reason));
        Ok(Answered { request, outcome })
    }

    /// Drops a waiting hook request without an answer (its stream went away).
    pub fn cancel_ask(&mut self, ticket: Ticket) -> Option<HookRequest> {
        self.asks.take(ticket)
    }

    /// Removes the reservation of `peer`, e.g. when its connection to the relay closed
    /// (the spec ties a reservation to that connection). No event is queued.
    pub fn remove_reservation(&mut self, peer: &PeerId) -> Option<ReservationInfo> {
        self.reservations.remove(peer)
    }

    /// Accounts `bytes` relayed on circuit `id` in `direction`.
    ///
    /// Returns the bytes still allowed that way (`None` without a data limit). Past a limit
    /// (more than `Limit.data` bytes one way, or `now` at the deadline) the circuit is
    /// removed and the error says how many of these bytes may still be forwarded; the
    /// caller then resets both streams.
    pub fn circuit_data(
        &mut self,
        now: Instant,
        id: CircuitId,
        direction: Direction,
        bytes: u64,
    ) -> Result<Option<u64>, CircuitError> {
        let result = self.circuits.data(now, id, direction, bytes);
        let relayed = match &result {
            Ok(_) => bytes,
            Err(CircuitError::LimitReached(hit)) => {
                self.stats.circuits_limited += 1;
                tracing::info!(circuit = %id, src = %hit.circuit.src, dst = %hit.circuit.dst, limit = %hit.kind, "circuit limit reached");
                hit.forwardable
            }
            Err(CircuitError::Unknown(_)) => 0,
        };
        self.stats.bytes_relayed = self.stats.bytes_relayed.saturating_add(relayed);
        result
    }

    /// Removes circuit `id` when its streams closed; `None` if it was not open (already
    /// closed, or ended by a limit).
    pub fn circuit_closed(&mut self, id: CircuitId) -> Option<CircuitInfo> {
        self.circuits.close(id)
    }

    /// Replaces the ASN table. Live reservations keep the ASN they were counted under.
    pub fn set_asn_table(&mut self, table: Option<AsnTable>) {
        self.asn = table;
    }

    // ----- poll_* -----

    /// The next thing to act on; call until `None` after every other call.
    pub fn poll_event(&mut self) -> Option<PolicyEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.reservations.next_expiry(),
            self.circuits.next_deadline(),
            self.asks.next_deadline(),
            self.abuse.next_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- internals -----

    fn expire(&mut self, now: Instant) {
        while let Some(info) = self.reservations.pop_expired(now) {
            self.stats.reservations_expired += 1;
            tracing::debug!(peer = %info.peer, "reservation expired");
            self.events.push_back(PolicyEvent::ReservationExpired(info));
        }
        while let Some(circuit) = self.circuits.pop_expired(now) {
            self.stats.circuits_limited += 1;
            tracing::info!(circuit = %circuit.id, src = %circuit.src, dst = %circuit.dst, "circuit duration limit reached");
            self.events
                .push_back(PolicyEvent::CircuitLimitReached(LimitHit {
                    circuit,
                    kind: LimitKind::Duration,
                    forwardable: 0,
                }));
        }
        while let Some(request) = self.asks.pop_expired(now) {
            let refusal = self.refuse(now, &request.query, RefusalReason::HookTimedOut);
            self.events
                .push_back(PolicyEvent::AskExpired { request, refusal });
        }
        self.abuse.expire(now);
        for limiter in [&mut self.rates.reserve_peer, &mut self.rates.connect_peer] {
            limiter.purge_idle(now);
        }
        for limiter in [&mut self.rates.reserve_ip, &mut self.rates.connect_ip] {
            limiter.purge_idle(now);
        }
    }

    fn ip_key(&self, ip: IpAddr) -> IpKey {
        IpKey::new(ip, self.config.ipv6_prefix_len)
    }

    fn asn_of(&self, ip: IpAddr) -> Option<u32> {
        self.asn.as_ref()?.lookup(ip)
    }

    /// ACL, bans, the target's reservation (CONNECT) and rate limits.
    fn screen(&mut self, now: Instant, query: &HookQuery) -> Result<(), RefusalReason> {
        let (peer, ip) = (query.requester(), query.ip());
        if let Some(reason) = self.acl.check(peer, ip) {
            return Err(reason);
        }
        if let HookQuery::Connect { dst, .. } = *query
            && let Some(reason) = self.acl.check_peer(dst)
        {
            return Err(reason);
        }
        let ip_key = self.ip_key(ip);
        if let Some(key) = self.abuse.banned(now, peer, ip_key) {
            return Err(RefusalReason::Banned(key));
        }
        let (by_peer, by_ip) = match *query {
            HookQuery::Reserve { .. } => (&mut self.rates.reserve_peer, &mut self.rates.reserve_ip),
            HookQuery::Connect { dst, .. } => {
                if self.reservations.live(now, &dst).is_none() {
                    return Err(RefusalReason::NoReservation(dst));
                }
                (&mut self.rates.connect_peer, &mut self.rates.connect_ip)
            }
        };
        // Check both buckets before taking from either, so a refusal costs no token.
        if !by_peer.check(now, &peer) {
            return Err(RefusalReason::PeerRateLimited(peer));
        }
        if !by_ip.check(now, &ip_key) {
            return Err(RefusalReason::IpRateLimited(ip_key));
        }
        by_peer.try_take(now, &peer);
        by_ip.try_take(now, &ip_key);
        Ok(())
    }

    /// Whether a reservation of `peer` counted under `ip_key` and `asn` fits, its own
    /// current reservation left out (a refresh replaces it).
    fn reservation_room(
        &self,
        peer: PeerId,
        ip_key: IpKey,
        asn: Option<u32>,
    ) -> Result<(), RefusalReason> {
        let c = &self.config;
        let own = usize::from(self.reservations.get(&peer).is_some());
        let others = self.reservations.len().saturating_sub(own);
        if c.max_reservations != 0 && others >= c.max_reservations as usize {
            return Err(RefusalReason::Reservations);
        }
        if c.max_reservations_per_ip != 0
            && self.reservations.count_ip(ip_key, &peer) >= c.max_reservations_per_ip
        {
            return Err(RefusalReason::ReservationsForIp(ip_key));
        }
        if let Some(asn) = asn
            && c.max_reservations_per_asn != 0
            && self.reservations.count_asn(asn, &peer) >= c.max_reservations_per_asn
        {
            return Err(RefusalReason::ReservationsForAsn(asn));
        }
        Ok(())
    }

    /// Whether a circuit from `src` to `dst` fits, `dst` holding a live reservation.
    fn circuit_room(&self, now: Instant, src: PeerId, dst: PeerId) -> Result<(), RefusalReason> {
        let c = &self.config;
        if self.reservations.live(now, &dst).is_none() {
            return Err(RefusalReason::NoReservation(dst));
        }
        if c.max_circuits != 0 && self.circuits.len() >= c.max_circuits as usize {
            return Err(RefusalReason::Circuits);
        }
        if c.max_circuits_per_peer != 0 {
            for peer in [src, dst] {
                if self.circuits.count_peer(&peer) >= c.max_circuits_per_peer {
                    return Err(RefusalReason::CircuitsForPeer(peer));
                }
            }
        }
        Ok(())
    }

    fn ask(&mut self, now: Instant, query: HookQuery) -> Result<HookRequest, RefusalReason> {
        let c = &self.config;
        if c.max_pending_asks != 0 && self.asks.len() >= c.max_pending_asks as usize {
            return Err(RefusalReason::PendingAsks);
        }
        let quota = match query {
            HookQuery::Reserve { .. } => c.max_reservations_per_peer,
            HookQuery::Connect { .. } => c.max_circuits_per_peer,
        };
        if quota != 0 && self.asks.count_like(&query) >= quota {
            return Err(RefusalReason::PendingAsksForPeer(query.requester()));
        }
        let request = self.asks.insert(now, query, c.hop_timeout);
        tracing::debug!(ticket = %request.ticket, peer = %query.requester(), "asking the decision hook");
        Ok(request)
    }

    fn grant_reservation(
        &mut self,
        now: Instant,
        unix_now: u64,
        peer: PeerId,
        ip: IpAddr,
        ip_key: IpKey,
        asn: Option<u32>,
    ) -> ReservationGrant {
        let ttl = self.config.reservation_ttl;
        let previous = self.reservations.get(&peer).copied();
        // The TTL is validated to be representable; if it is not, expire at once.
        let expires_at = now.checked_add(ttl).unwrap_or(now);
        let info = ReservationInfo {
            peer,
            ip,
            ip_key,
            asn,
            granted_at: previous.map_or(now, |p| p.granted_at),
            expires_at,
            expire_unix: unix_now.saturating_add(ttl.as_secs()),
            refreshes: previous.map_or(0, |p| p.refreshes.saturating_add(1)),
        };
        self.reservations.upsert(info);
        let refreshed = previous.is_some();
        if refreshed {
            self.stats.reservations_refreshed += 1;
        } else {
            self.stats.reservations_granted += 1;
        }
        tracing::debug!(peer = %peer, %ip, refreshed, "reservation granted");
        ReservationGrant {
            peer,
            expires_at,
            expire_unix: info.expire_unix,
            limit: self.limit(),
            refreshed,
        }
    }

    fn grant_circuit(
        &mut self,
        now: Instant,
        src: PeerId,
        src_ip: IpAddr,
        dst: PeerId,
    ) -> CircuitGrant {
        let info = self.circuits.open(now, src, src_ip, dst, self.limit());
        self.stats.circuits_granted += 1;
        tracing::debug!(circuit = %info.id, src = %src, dst = %dst, "circuit granted");
        CircuitGrant {
            id: info.id,
            src,
            dst,
            limit: info.limit,
            deadline: info.deadline,
        }
    }

    /// Turns `reason` into the refusal for `query`'s kind, counts it, logs it, and feeds
    /// the abuse detector.
    fn refuse(&mut self, now: Instant, query: &HookQuery, reason: RefusalReason) -> Refusal {
        let refusal = match (query, reason) {
            (_, RefusalReason::NoReservation(dst)) => Refusal::NoReservation(dst),
            (_, r) if r.service_error() == super::ServiceError::PermissionDenied => {
                Refusal::PermissionDenied(r)
            }
            (HookQuery::Reserve { .. }, r) => Refusal::ReservationRefused(r),
            (HookQuery::Connect { .. }, r) => Refusal::ResourceLimitExceeded(r),
        };
        let peer = query.requester();
        match query {
            HookQuery::Reserve { .. } => self.stats.reservations_refused += 1,
            HookQuery::Connect { .. } => self.stats.circuits_refused += 1,
        }
        if reason.is_noisy() {
            tracing::debug!(peer = %peer, ip = %query.ip(), %refusal, "request refused");
        } else {
            tracing::info!(peer = %peer, ip = %query.ip(), %refusal, "request refused");
        }
        if reason.blames(peer) {
            let ip_key = self.ip_key(query.ip());
            for (key, until) in self.abuse.record(now, peer, ip_key) {
                tracing::warn!(%key, "banned for abuse");
                self.events
                    .push_back(PolicyEvent::AbuseDetected { key, until });
            }
        }
        refusal
    }
}

#[cfg(test)]
mod prop;
#[cfg(test)]
mod tests;
