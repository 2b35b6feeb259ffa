//! The circuit relay v2 client: reservations on relays (kept and refreshed), dialing
//! through a relay, accepting relayed connections, and carrying their bytes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use multiaddr::Multiaddr;
use smallvec::SmallVec;

use super::addr::{self, CircuitAddr};
use super::conn::{Relayed, StreamRole, Transport};
use super::{ConnectionId, DialError, Event, Node, StreamRef, limit_from_wire, since};
use crate::circuit::HOP_PROTOCOL;
use crate::circuit::limit::Limit;
use crate::circuit::message::{self, MessageReader};
use crate::circuit::voucher::Voucher;
use crate::conn::connection::Endpoint;
use crate::hop::{Direction, LimitKind};
use crate::identity::PeerId;
use crate::map::Map;
use crate::wire::proto::{HopMessage, HopType, Peer, Status, StopType};

/// Settings of the relay client (the seed's `node.relay.transport`).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Whether relayed connections are accepted and dialed at all.
    pub enabled: bool,
    /// How long a relay may take to answer a RESERVE or CONNECT (the seed's
    /// `hop_timeout`), and a peer to finish a stop request.
    pub hop_timeout: Duration,
    /// Renew a reservation this long before it expires (or at half its life, if
    /// sooner).
    pub refresh_margin: Duration,
    /// The most relayed connections at once.
    pub max_relayed_connections: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            hop_timeout: Duration::from_secs(30),
            refresh_margin: Duration::from_secs(60),
            max_relayed_connections: 256,
        }
    }
}

/// Why a reservation was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationLoss {
    /// The connection to the relay closed.
    ConnectionClosed,
    /// The relay could not be reached.
    ConnectFailed(String),
    /// The relay refused to renew it.
    Refused(Status),
    /// It expired before a renewal succeeded.
    Expired,
    /// The relay broke the protocol.
    Protocol(String),
    /// The relay did not answer within the hop timeout.
    Timeout,
    /// The application cancelled it.
    Cancelled,
}

/// A reservation we hold, for applications and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationInfo {
    /// The relay.
    pub relay: PeerId,
    /// The connection it is tied to.
    pub conn: ConnectionId,
    /// When it expires, in Unix seconds.
    pub expire_unix: u64,
    /// Our addresses through the relay.
    pub addrs: Vec<Multiaddr>,
    /// The limit of relayed connections.
    pub limit: Limit,
}

#[derive(Debug)]
struct Reservation {
    conn: ConnectionId,
    active: Option<Active>,
    /// A request is in flight.
    requesting: bool,
}

#[derive(Debug)]
struct Active {
    expire_unix: u64,
    expires_at: Instant,
    refresh_at: Instant,
    addrs: Vec<Multiaddr>,
    limit: Limit,
}

/// What waits for a connection to a relay to be established.
#[derive(Debug, Clone, Copy)]
enum Pending {
    Reserve(PeerId),
    Circuit(ConnectionId),
}

/// The client's state.
#[derive(Debug, Default)]
pub(super) struct Client {
    reservations: Map<PeerId, Reservation>,
    pending: Map<ConnectionId, SmallVec<[Pending; 2]>>,
}

impl Client {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.reservations
            .values()
            .filter(|r| !r.requesting)
            .filter_map(|r| r.active.as_ref())
            .map(|a| a.refresh_at.min(a.expires_at))
            .min()
    }

    pub(super) fn reservations(&self) -> impl Iterator<Item = ReservationInfo> + '_ {
        self.reservations.iter().filter_map(|(relay, r)| {
            let a = r.active.as_ref()?;
            Some(ReservationInfo {
                relay: *relay,
                conn: r.conn,
                expire_unix: a.expire_unix,
                addrs: a.addrs.clone(),
                limit: a.limit,
            })
        })
    }
}

/// Why a reservation command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    /// The address does not end with `/p2p/RELAY` or cannot be dialed.
    #[error("relay address must be /ip4|ip6/.../tcp/PORT/p2p/RELAY: {0}")]
    Address(Multiaddr),
    /// Dialing the relay failed at once.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// Relayed connections are disabled (the seed's "relay not enabled").
    #[error("relay transport not enabled")]
    NotEnabled,
}

impl Node {
    // ----- commands -----

    /// Asks the relay at `relay_addr` (ending in `/p2p/RELAY`) for a reservation, and
    /// keeps it renewed; connects to the relay first if needed. The outcome arrives as
    /// [`Event::ReservationAccepted`], [`Event::ReservationRefused`] or
    /// [`Event::ReservationLost`].
    pub fn reserve(&mut self, now: Instant, relay_addr: Multiaddr) -> Result<PeerId, ReserveError> {
        if !self.shared.config.client.enabled {
            return Err(ReserveError::NotEnabled);
        }
        let Some(relay) = addr::peer_of(&relay_addr) else {
            return Err(ReserveError::Address(relay_addr));
        };
        if let Some(&conn) = self.direct_connection(&relay) {
            // Asking again renews a reservation we hold.
            let r = self
                .client
                .reservations
                .entry(relay)
                .or_insert(Reservation {
                    conn,
                    active: None,
                    requesting: false,
                });
            r.conn = conn;
            self.request_reservation(now, relay);
        } else {
            let conn = self.dial_tcp(now, relay_addr)?;
            self.client.reservations.insert(
                relay,
                Reservation {
                    conn,
                    active: None,
                    requesting: true,
                },
            );
            self.client
                .pending
                .entry(conn)
                .or_default()
                .push(Pending::Reserve(relay));
        }
        self.run(now);
        Ok(relay)
    }

    /// Stops renewing the reservation on `relay` and withdraws our addresses through it.
    pub fn cancel_reservation(&mut self, now: Instant, relay: PeerId) {
        if self.client.reservations.remove(&relay).is_some() {
            self.reservation_gone(now, relay, ReservationLoss::Cancelled);
        }
        self.run(now);
    }

    // ----- internals -----

    fn direct_connection(&self, peer: &PeerId) -> Option<&ConnectionId> {
        self.connections_to(peer).iter().find(|id| {
            self.conns
                .get(*id)
                .is_some_and(|c| !c.transport.is_relayed())
        })
    }

    pub(super) fn dial_circuit(
        &mut self,
        now: Instant,
        addr: Multiaddr,
        circuit: CircuitAddr,
    ) -> Result<ConnectionId, DialError> {
        if !self.shared.config.client.enabled {
            return Err(DialError::RelayNotEnabled);
        }
        let relayed_now = self
            .conns
            .values()
            .filter(|c| c.transport.is_relayed())
            .count();
        if relayed_now >= self.shared.config.client.max_relayed_connections {
            return Err(DialError::ConnectionLimit);
        }
        let relay_conn = self.direct_connection(&circuit.relay).copied();
        if relay_conn.is_none() && circuit.relay_addr.is_none() {
            return Err(DialError::Address(addr::AddrError::Unsupported(addr)));
        }
        let transport = Transport::Relayed(Box::new(Relayed {
            relay: circuit.relay,
            carrier: None,
            outbox: Default::default(),
            limit: Limit::NONE,
            started: now,
            bytes_out: 0,
            bytes_in: 0,
        }));
        let id = self.new_connection(now, Endpoint::Dialer, addr, Some(circuit.dst), transport)?;
        match relay_conn {
            Some(conn) => self.request_circuit(now, conn, id),
            None => {
                let relay_addr = circuit.relay_addr.expect("checked above");
                match self.dial_tcp(now, relay_addr) {
                    Ok(conn) => self
                        .client
                        .pending
                        .entry(conn)
                        .or_default()
                        .push(Pending::Circuit(id)),
                    Err(error) => {
                        self.conns.remove(&id);
                        return Err(error);
                    }
                }
            }
        }
        Ok(id)
    }

    fn request_reservation(&mut self, now: Instant, relay: PeerId) {
        let Some(r) = self.client.reservations.get_mut(&relay) else {
            return;
        };
        let conn = r.conn;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.conn.open_stream(vec![HOP_PROTOCOL.to_owned()]) {
            Ok(stream) => {
                c.streams
                    .insert(stream, StreamRole::ReserveOut(MessageReader::default()));
                r.requesting = true;
                self.mark(conn);
                self.arm_deadline(now, StreamRef { conn, stream }, false);
            }
            Err(error) => tracing::debug!(%relay, %error, "cannot open hop stream"),
        }
    }

    fn request_circuit(&mut self, now: Instant, relay_conn: ConnectionId, relayed: ConnectionId) {
        let Some(c) = self.conns.get_mut(&relay_conn) else {
            return;
        };
        match c.conn.open_stream(vec![HOP_PROTOCOL.to_owned()]) {
            Ok(stream) => {
                c.streams.insert(
                    stream,
                    StreamRole::ConnectOut {
                        reader: MessageReader::default(),
                        relayed,
                    },
                );
                self.mark(relay_conn);
                self.arm_deadline(
                    now,
                    StreamRef {
                        conn: relay_conn,
                        stream,
                    },
                    false,
                );
            }
            Err(error) => self.fail_relayed(relayed, DialError::RelayProtocol(error.to_string())),
        }
    }

    /// A relayed dial failed before its circuit existed.
    pub(super) fn fail_relayed(&mut self, relayed: ConnectionId, error: DialError) {
        let Some(c) = self.conns.get_mut(&relayed) else {
            return;
        };
        c.dial_error = Some(error);
        c.conn.handle_eof();
        self.mark(relayed);
    }

    pub(super) fn client_connection_established(
        &mut self,
        now: Instant,
        id: ConnectionId,
        _peer: PeerId,
    ) {
        for pending in self.client.pending.remove(&id).unwrap_or_default() {
            match pending {
                Pending::Reserve(relay) => {
                    if let Some(r) = self.client.reservations.get_mut(&relay) {
                        r.conn = id;
                        r.requesting = false;
                    }
                    self.request_reservation(now, relay);
                }
                Pending::Circuit(relayed) => self.request_circuit(now, id, relayed),
            }
        }
    }

    /// A connection is gone: reservations tied to it are lost, waiting work fails.
    pub(super) fn client_conn_retired(&mut self, now: Instant, id: ConnectionId, error: String) {
        for pending in self.client.pending.remove(&id).unwrap_or_default() {
            match pending {
                // Unless it was cancelled, or asked again over another connection.
                Pending::Reserve(relay)
                    if self
                        .client
                        .reservations
                        .get(&relay)
                        .is_some_and(|r| r.conn == id) =>
                {
                    self.client.reservations.remove(&relay);
                    self.reservation_gone(
                        now,
                        relay,
                        ReservationLoss::ConnectFailed(error.clone()),
                    );
                }
                Pending::Reserve(_) => {}
                Pending::Circuit(relayed) => {
                    self.fail_relayed(relayed, DialError::Transport(error.clone()))
                }
            }
        }
        let lost: SmallVec<[PeerId; 2]> = self
            .client
            .reservations
            .iter()
            .filter(|(_, r)| r.conn == id)
            .map(|(p, _)| *p)
            .collect();
        for relay in lost {
            self.client.reservations.remove(&relay);
            self.reservation_gone(now, relay, ReservationLoss::ConnectionClosed);
        }
    }

    /// Renews reservations that are due and drops those that expired.
    pub(super) fn client_timeout(&mut self, now: Instant) {
        let mut renew: SmallVec<[PeerId; 4]> = SmallVec::new();
        let mut expired: SmallVec<[PeerId; 4]> = SmallVec::new();
        for (relay, r) in &self.client.reservations {
            let Some(a) = &r.active else { continue };
            if now >= a.expires_at {
                expired.push(*relay);
            } else if now >= a.refresh_at && !r.requesting {
                renew.push(*relay);
            }
        }
        for relay in expired {
            self.client.reservations.remove(&relay);
            self.reservation_gone(now, relay, ReservationLoss::Expired);
        }
        for relay in renew {
            self.request_reservation(now, relay);
        }
    }

    fn reservation_gone(&mut self, now: Instant, relay: PeerId, reason: ReservationLoss) {
        let before = self.shared.relayed_addrs.len();
        self.shared
            .relayed_addrs
            .retain(|a| addr::parse_circuit_relay(a) != Some(relay));
        if self.shared.relayed_addrs.len() != before {
            self.push_identify(now);
        }
        tracing::info!(%relay, ?reason, "reservation lost");
        self.shared.emit(Event::ReservationLost { relay, reason });
    }

    // ----- streams -----

    pub(super) fn client_stream_opened(
        &mut self,
        _now: Instant,
        s: StreamRef,
        role: StreamRole,
    ) -> Option<StreamRole> {
        let request = match &role {
            StreamRole::ReserveOut(_) => HopMessage {
                r#type: Some(HopType::Reserve as i32),
                ..Default::default()
            },
            StreamRole::ConnectOut { relayed, .. } => {
                let dst = self
                    .conns
                    .get(relayed)
                    .and_then(|c| addr::parse_circuit(&c.remote_addr))?
                    .dst;
                HopMessage {
                    r#type: Some(HopType::Connect as i32),
                    peer: Some(Peer {
                        id: Some(dst.to_bytes()),
                        addrs: Vec::new(),
                    }),
                    ..Default::default()
                }
            }
            _ => return Some(role),
        };
        self.write_stream(s, &message::framed(&request));
        Some(role)
    }

    pub(super) fn client_stream_data(
        &mut self,
        now: Instant,
        s: StreamRef,
        role: StreamRole,
        data: Bytes,
    ) -> Option<StreamRole> {
        let len = data.len();
        match role {
            StreamRole::ReserveOut(mut reader) => {
                self.consume(now, s, len);
                match reader.push(&data) {
                    Ok(None) => Some(StreamRole::ReserveOut(reader)),
                    Ok(Some(body)) => {
                        self.finish_stream(s);
                        self.reservation_answer(now, s.conn, &body);
                        Some(StreamRole::Discard)
                    }
                    Err(error) => {
                        self.reset_stream(s);
                        self.reservation_failed(
                            now,
                            s.conn,
                            ReservationLoss::Protocol(error.to_string()),
                        );
                        None
                    }
                }
            }
            StreamRole::ConnectOut {
                mut reader,
                relayed,
            } => match reader.push(&data) {
                Ok(None) => {
                    self.consume(now, s, len);
                    Some(StreamRole::ConnectOut { reader, relayed })
                }
                Ok(Some(body)) => {
                    let rest = reader.take_rest();
                    self.consume(now, s, len - rest.len());
                    self.circuit_answer(now, s, relayed, &body, rest)
                }
                Err(error) => {
                    self.reset_stream(s);
                    self.fail_relayed(relayed, DialError::RelayProtocol(error.to_string()));
                    None
                }
            },
            StreamRole::StopIn(mut reader) => match reader.push(&data) {
                Ok(None) => {
                    self.consume(now, s, len);
                    Some(StreamRole::StopIn(reader))
                }
                Ok(Some(body)) => {
                    let rest = reader.take_rest();
                    self.consume(now, s, len - rest.len());
                    self.stop_request(now, s, &body, rest)
                }
                Err(error) => {
                    self.write_stream(s, &message::stop_status(error.status()));
                    self.finish_stream(s);
                    self.consume(now, s, len);
                    Some(StreamRole::Discard)
                }
            },
            role => Some(role),
        }
    }

    pub(super) fn client_stream_gone(&mut self, now: Instant, s: StreamRef, role: StreamRole) {
        match role {
            StreamRole::ReserveOut(_) => self.reservation_failed(
                now,
                s.conn,
                ReservationLoss::Protocol("hop stream closed".into()),
            ),
            StreamRole::ConnectOut { relayed, .. } => self.fail_relayed(
                relayed,
                DialError::RelayProtocol("relay closed the hop stream".into()),
            ),
            _ => {}
        }
    }

    /// The peer we asked to relay answered `na` to the hop protocol: it runs no relay
    /// service.
    pub(super) fn client_hop_unsupported(&mut self, now: Instant, s: StreamRef, role: StreamRole) {
        let why = "the peer does not speak /libp2p/circuit/relay/0.2.0/hop (no relay service)";
        match role {
            StreamRole::ReserveOut(_) => {
                self.reservation_failed(now, s.conn, ReservationLoss::Protocol(why.into()));
            }
            StreamRole::ConnectOut { relayed, .. } => {
                self.fail_relayed(relayed, DialError::RelayProtocol(why.into()));
            }
            role => self.client_stream_gone(now, s, role),
        }
    }

    /// A relay did not answer our RESERVE in time.
    pub(super) fn reservation_timed_out(&mut self, now: Instant, conn: ConnectionId) {
        self.reservation_failed(now, conn, ReservationLoss::Timeout);
    }

    fn relay_of_conn(&self, conn: ConnectionId) -> Option<PeerId> {
        self.client
            .reservations
            .iter()
            .find(|(_, r)| r.conn == conn)
            .map(|(p, _)| *p)
    }

    fn reservation_failed(&mut self, now: Instant, conn: ConnectionId, reason: ReservationLoss) {
        let Some(relay) = self.relay_of_conn(conn) else {
            return;
        };
        let r = self
            .client
            .reservations
            .remove(&relay)
            .expect("found above");
        if r.active.is_some() {
            self.reservation_gone(now, relay, reason);
        } else if let ReservationLoss::Refused(status) = reason {
            self.shared
                .emit(Event::ReservationRefused { relay, status });
        } else {
            self.shared.emit(Event::ReservationLost { relay, reason });
        }
    }

    fn reservation_answer(&mut self, now: Instant, conn: ConnectionId, body: &[u8]) {
        let Some(relay) = self.relay_of_conn(conn) else {
            return;
        };
        let parsed = message::decode_hop_status(body);
        let (status, msg) = match parsed {
            Ok(answer) => answer,
            Err(error) => {
                return self.reservation_failed(
                    now,
                    conn,
                    ReservationLoss::Protocol(error.to_string()),
                );
            }
        };
        if status != Status::Ok {
            tracing::info!(%relay, ?status, "reservation refused");
            return self.reservation_failed(now, conn, ReservationLoss::Refused(status));
        }
        let Some(reservation) = msg.reservation else {
            return self.reservation_failed(
                now,
                conn,
                ReservationLoss::Protocol("no reservation in answer".into()),
            );
        };
        let Some(expire_unix) = reservation.expire else {
            return self.reservation_failed(
                now,
                conn,
                ReservationLoss::Protocol("reservation without expiry".into()),
            );
        };
        let me = self.shared.peer_id;
        if let Some(voucher) = &reservation.voucher {
            match Voucher::open(voucher) {
                Ok(v) if v.relay == relay && v.peer == me && v.expiration == expire_unix => {}
                Ok(_) => {
                    let reason =
                        ReservationLoss::Protocol("voucher does not match the reservation".into());
                    return self.reservation_failed(now, conn, reason);
                }
                Err(error) => {
                    return self.reservation_failed(
                        now,
                        conn,
                        ReservationLoss::Protocol(error.to_string()),
                    );
                }
            }
        }
        let agent = self.conns.get(&conn).and_then(|c| c.agent.clone());
        let limit = limit_from_wire(msg.limit.as_ref(), agent.as_deref());
        let mut addrs: Vec<Multiaddr> = reservation
            .addrs
            .into_iter()
            .filter_map(|a| Multiaddr::try_from(a).ok())
            .filter(addr::is_dialable_direct)
            .map(|a| addr::relayed_listen_addr(&a, relay))
            .collect();
        if addrs.is_empty()
            && let Some(c) = self.conns.get(&conn)
        {
            addrs.push(addr::relayed_listen_addr(&c.remote_addr, relay));
        }
        addrs.dedup();
        let remaining = Duration::from_secs(expire_unix.saturating_sub(self.unix_time(now)));
        let margin = self.shared.config.client.refresh_margin;
        let refresh_in = remaining.saturating_sub(margin).max(remaining / 2);
        let Some(r) = self.client.reservations.get_mut(&relay) else {
            return;
        };
        let renewed = r.active.is_some();
        r.requesting = false;
        r.active = Some(Active {
            expire_unix,
            expires_at: now + remaining,
            refresh_at: now + refresh_in,
            addrs: addrs.clone(),
            limit,
        });
        let before = self.shared.relayed_addrs.clone();
        self.shared
            .relayed_addrs
            .retain(|a| addr::parse_circuit_relay(a) != Some(relay));
        self.shared.relayed_addrs.extend(addrs.iter().cloned());
        if self.shared.relayed_addrs != before {
            self.push_identify(now);
        }
        tracing::info!(%relay, expire_unix, renewed, "reservation accepted");
        self.shared.emit(Event::ReservationAccepted {
            relay,
            expire_unix,
            addrs,
            limit,
            renewed,
        });
    }

    /// The relay answered our CONNECT.
    fn circuit_answer(
        &mut self,
        now: Instant,
        s: StreamRef,
        relayed: ConnectionId,
        body: &[u8],
        rest: Bytes,
    ) -> Option<StreamRole> {
        let answer = message::decode_hop_status(body);
        let (status, msg) = match answer {
            Ok(answer) => answer,
            Err(error) => {
                self.reset_stream(s);
                self.fail_relayed(relayed, DialError::RelayProtocol(error.to_string()));
                return None;
            }
        };
        if status != Status::Ok {
            self.reset_stream(s);
            self.fail_relayed(relayed, DialError::CircuitFailed(status));
            return None;
        }
        let agent = self.conns.get(&s.conn).and_then(|c| c.agent.clone());
        let limit = limit_from_wire(msg.limit.as_ref(), agent.as_deref());
        let Some(c) = self.conns.get_mut(&relayed) else {
            self.reset_stream(s);
            return None;
        };
        if let Transport::Relayed(r) = &mut c.transport {
            r.carrier = Some(s);
            r.limit = limit;
            r.started = now;
        }
        c.conn.transport_ready(now);
        self.mark(relayed);
        self.put_role(s, StreamRole::Carrier { relayed });
        if !rest.is_empty() {
            self.carrier_data(now, s, relayed, &rest);
            self.consume(now, s, rest.len());
        }
        self.take_role(s)
    }

    /// A relay offers us a circuit from another peer.
    fn stop_request(
        &mut self,
        now: Instant,
        s: StreamRef,
        body: &[u8],
        rest: Bytes,
    ) -> Option<StreamRole> {
        let request = message::decode_stop(body).and_then(|(kind, msg)| {
            if kind != StopType::Connect {
                return Err(message::MessageError::Unexpected("expected CONNECT"));
            }
            let src = msg
                .peer
                .as_ref()
                .and_then(|p| p.id.as_deref())
                .and_then(|id| PeerId::from_bytes(id).ok())
                .ok_or(message::MessageError::Malformed(
                    "CONNECT without a valid peer",
                ))?;
            Ok((src, msg))
        });
        let (src, msg) = match request {
            Ok(request) => request,
            Err(error) => {
                self.write_stream(s, &message::stop_status(error.status()));
                self.finish_stream(s);
                return Some(StreamRole::Discard);
            }
        };
        let relayed_now = self
            .conns
            .values()
            .filter(|c| c.transport.is_relayed())
            .count();
        let (relay, relay_addr, agent) = match self.conns.get(&s.conn) {
            Some(c) if !c.transport.is_relayed() => {
                (c.peer?, c.remote_addr.clone(), c.agent.clone())
            }
            _ => {
                // A stop request over a relayed connection would nest circuits.
                self.write_stream(s, &message::stop_status(Status::PermissionDenied));
                self.finish_stream(s);
                return Some(StreamRole::Discard);
            }
        };
        if relayed_now >= self.shared.config.client.max_relayed_connections {
            self.write_stream(s, &message::stop_status(Status::ResourceLimitExceeded));
            self.finish_stream(s);
            return Some(StreamRole::Discard);
        }
        let limit = limit_from_wire(msg.limit.as_ref(), agent.as_deref());
        let remote_addr =
            addr::relayed_listen_addr(&relay_addr, relay).with(multiaddr::Protocol::P2p(src));
        let transport = Transport::Relayed(Box::new(Relayed {
            relay,
            carrier: Some(s),
            outbox: Default::default(),
            limit,
            started: now,
            bytes_out: 0,
            bytes_in: 0,
        }));
        let id =
            match self.new_connection(now, Endpoint::Listener, remote_addr, Some(src), transport) {
                Ok(id) => id,
                Err(_) => {
                    self.write_stream(s, &message::stop_status(Status::ResourceLimitExceeded));
                    self.finish_stream(s);
                    return Some(StreamRole::Discard);
                }
            };
        self.write_stream(s, &message::stop_status(Status::Ok));
        self.mark(id);
        tracing::debug!(%src, %relay, conn = %id, "accepted relayed connection");
        if !rest.is_empty() {
            self.carrier_data(now, s, id, &rest);
            self.consume(now, s, rest.len());
        }
        Some(StreamRole::Carrier { relayed: id })
    }

    // ----- carriers -----

    /// Bytes for a relayed connection arrived on its carrier.
    pub(super) fn carrier_data(
        &mut self,
        now: Instant,
        _s: StreamRef,
        relayed: ConnectionId,
        data: &[u8],
    ) {
        let Some(c) = self.conns.get_mut(&relayed) else {
            return;
        };
        if let Transport::Relayed(r) = &mut c.transport {
            r.bytes_in += data.len() as u64;
        }
        c.conn.handle_input(now, data, &self.shared.protocols);
        self.mark(relayed);
    }

    /// The carrier of a relayed connection ended: so does the connection.
    pub(super) fn carrier_gone(&mut self, now: Instant, relayed: ConnectionId) {
        let Some(c) = self.conns.get_mut(&relayed) else {
            return;
        };
        if let (Transport::Relayed(r), Some(peer)) = (&c.transport, c.peer) {
            let kind = if r.limit.data.is_some_and(|d| r.bytes_in >= d) {
                Some(LimitKind::Data(Direction::DstToSrc))
            } else if r.limit.data.is_some_and(|d| r.bytes_out >= d) {
                Some(LimitKind::Data(Direction::SrcToDst))
            } else if r.limit.duration.is_some_and(|d| {
                // The relay's clock started a round trip before ours: allow for it.
                since(r.started, now) + (d / 10).min(Duration::from_secs(2)) >= d
            }) {
                Some(LimitKind::Duration)
            } else {
                None
            };
            if let Some(kind) = kind {
                self.shared.emit(Event::RelayedLimitReached {
                    conn: relayed,
                    peer,
                    kind,
                });
            }
        }
        c.conn.handle_eof();
        self.mark(relayed);
    }

    /// Moves a relayed connection's ciphertext into its carrier as far as the carrier's
    /// send window allows.
    pub(super) fn flush_carrier(&mut self, _now: Instant, relayed: ConnectionId) {
        let Some(c) = self.conns.get_mut(&relayed) else {
            return;
        };
        let Transport::Relayed(r) = &mut c.transport else {
            return;
        };
        let Some(carrier) = r.carrier else { return };
        let mut outbox = std::mem::take(&mut r.outbox);
        while let Some(front) = outbox.front_mut() {
            let n = self.write_stream(carrier, front);
            if n == front.len() {
                outbox.pop_front();
            } else {
                let _ = front.split_to(n);
                break;
            }
        }
        if let Some(c) = self.conns.get_mut(&relayed)
            && let Transport::Relayed(r) = &mut c.transport
        {
            r.outbox = outbox;
        }
    }

    /// A relayed connection was retired: release its carrier.
    pub(super) fn relayed_closed(
        &mut self,
        _now: Instant,
        _id: ConnectionId,
        carrier: Option<StreamRef>,
    ) {
        let Some(carrier) = carrier else { return };
        if self
            .conns
            .get(&carrier.conn)
            .is_some_and(|c| c.streams.contains_key(&carrier.stream))
        {
            self.finish_stream(carrier);
            self.reset_stream(carrier);
        }
    }
}
