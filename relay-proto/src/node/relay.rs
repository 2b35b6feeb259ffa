//! The circuit relay v2 server: answering RESERVE and CONNECT on the hop protocol,
//! opening stop streams to targets, and splicing circuits with flow control and limits.
//!
//! Admission is decided by [`RelayPolicy`]; this file moves the messages and the bytes.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use multiaddr::{Multiaddr, Protocol};

use super::addr;
use super::conn::{Splice, StreamRole};
use super::events::CircuitEnd;
use super::{ConnectionId, Event, Node, StreamRef, since};
use crate::circuit::STOP_PROTOCOL;
use crate::circuit::limit::Limit;
use crate::circuit::message::{self, MessageReader};
use crate::circuit::voucher::Voucher;
use crate::hop::{
    Admission, CircuitError, CircuitGrant, CircuitId, ConfigError, Direction, Grant, PolicyEvent,
    Refusal, RelayConfig, RelayPolicy, ReservationGrant, Ticket,
};
use crate::identity::PeerId;
use crate::map::Map;
use crate::wire::proto::{HopMessage, HopType, Peer, Reservation, Status, StopMessage, StopType};

#[path = "relay_buffer.rs"]
mod buffer;

/// Bytes a client may send after CONNECT before the circuit is up; more resets it.
const MAX_EARLY_BYTES: usize = 64 * 1024;

/// The relay server's state.
#[derive(Debug)]
pub(super) struct RelayService {
    pub(super) policy: RelayPolicy,
    circuits: Map<CircuitId, Circuit>,
    asks: Map<Ticket, Ask>,
    /// When each direction holding bytes nobody takes runs out of `max_buffer_time`,
    /// by the stream the bytes arrived on.
    stalls: std::collections::BTreeSet<(Instant, StreamRef)>,
}

#[derive(Debug)]
struct Circuit {
    src: PeerId,
    dst: PeerId,
    src_stream: StreamRef,
    dst_stream: Option<StreamRef>,
    limit: Limit,
    started: Instant,
    spliced: bool,
    /// Set when a data limit was reached: forward what fits, then end for this reason.
    ending: Option<CircuitEnd>,
    /// Bytes forwarded: initiator to target, target to initiator.
    bytes: [u64; 2],
    /// Directions whose sender finished.
    finished: [bool; 2],
}

#[derive(Debug)]
enum Ask {
    Reserve { stream: StreamRef },
    Connect { stream: StreamRef },
}

impl RelayService {
    /// When the service needs [`Node::handle_timeout`] next.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let stall = self.stalls.first().map(|(at, _)| *at);
        [self.policy.poll_timeout(), stall]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn new(config: RelayConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            policy: RelayPolicy::new(config)?,
            circuits: Map::default(),
            asks: Map::default(),
            stalls: Default::default(),
        })
    }
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::SrcToDst => 0,
        Direction::DstToSrc => 1,
    }
}

impl Node {
    /// Starts the relay service (the seed's `StartService`); replaces a running one's
    /// settings only if it is stopped first.
    pub fn start_relay(&mut self, config: RelayConfig) -> Result<(), ConfigError> {
        if self.relay.is_none() {
            self.relay = Some(RelayService::new(config)?);
            self.shared.protocols.insert(crate::circuit::HOP_PROTOCOL);
        }
        Ok(())
    }

    /// Stops the relay service (the seed's `StopService`): hop requests are no longer
    /// accepted, open circuits are reset and reservations dropped.
    pub fn stop_relay(&mut self, now: Instant) {
        let Some(relay) = self.relay.as_ref() else {
            return;
        };
        let circuits: Vec<CircuitId> = relay.circuits.keys().copied().collect();
        for circuit in circuits {
            self.end_circuit(now, circuit, CircuitEnd::Reset);
        }
        if let Some(relay) = self.relay.take() {
            for r in relay.policy.reservations() {
                self.shared
                    .emit(Event::RelayReservationEnded { peer: r.peer });
            }
        }
        self.shared.protocols.remove(crate::circuit::HOP_PROTOCOL);
        self.run(now);
    }

    /// Whether the relay service runs (the seed's "service not running" otherwise).
    pub fn is_relay_running(&self) -> bool {
        self.relay.is_some()
    }

    /// Enables or disables the relay transport: dialing through relays, reservations
    /// and accepting relayed connections (the seed's `EnableRelay`/`DisableRelay`).
    pub fn set_relay_transport(&mut self, enabled: bool) {
        self.shared.config.client.enabled = enabled;
        if enabled {
            self.shared.protocols.insert(crate::circuit::STOP_PROTOCOL);
        } else {
            self.shared.protocols.remove(crate::circuit::STOP_PROTOCOL);
        }
    }

    /// The relayed connections (the seed's `GetRelayConnections`).
    pub fn relayed_connections(&self) -> Vec<(ConnectionId, super::ConnectionInfo)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.transport.is_relayed() && c.peer.is_some())
            .map(|(id, c)| (*id, c.info()))
            .collect()
    }

    /// Replaces the relay's ASN table (for per-ASN limits); no effect without the service.
    pub fn set_relay_asn_table(&mut self, table: Option<crate::hop::AsnTable>) {
        if let Some(relay) = &mut self.relay {
            relay.policy.set_asn_table(table);
        }
    }

    // ----- hop streams -----

    pub(super) fn relay_stream_data(
        &mut self,
        now: Instant,
        s: StreamRef,
        role: StreamRole,
        data: Bytes,
    ) -> Option<StreamRole> {
        match role {
            StreamRole::HopIn(mut reader) => {
                self.consume(now, s, data.len());
                let body = match reader.push(&data) {
                    Ok(None) => return Some(StreamRole::HopIn(reader)),
                    Ok(Some(body)) => body,
                    Err(error) => {
                        tracing::debug!(stream = ?s, %error, "bad hop message");
                        return self.hop_answer(s, error.status());
                    }
                };
                let early = reader.take_rest();
                self.hop_request(now, s, &body, early)
            }
            StreamRole::HopWaiting { ticket, mut early } => {
                if early.len() + data.len() > MAX_EARLY_BYTES {
                    if let Some(ticket) = ticket {
                        self.cancel_ask(ticket);
                    }
                    self.relay_stream_gone(now, s, StreamRole::HopWaiting { ticket, early });
                    self.reset_stream(s);
                    return None;
                }
                // Kept unconsumed: the client's window bounds what it may send early.
                early.extend_from_slice(&data);
                Some(StreamRole::HopWaiting { ticket, early })
            }
            StreamRole::StopOut {
                circuit,
                mut reader,
            } => {
                let len = data.len();
                match reader.push(&data) {
                    Ok(None) => {
                        self.consume(now, s, len);
                        Some(StreamRole::StopOut { circuit, reader })
                    }
                    Ok(Some(body)) => {
                        let rest = reader.take_rest();
                        self.consume(now, s, len - rest.len());
                        self.stop_answer(now, s, circuit, &body, rest)
                    }
                    Err(error) => {
                        tracing::debug!(%circuit, %error, "bad stop answer");
                        self.consume(now, s, len);
                        self.circuit_failed(now, circuit, Status::ConnectionFailed, None);
                        None
                    }
                }
            }
            role => Some(role),
        }
    }

    /// Answers a hop stream with a bare status and finishes it.
    fn hop_answer(&mut self, s: StreamRef, status: Status) -> Option<StreamRole> {
        self.write_stream(s, &message::hop_status(status));
        self.finish_stream(s);
        Some(StreamRole::Discard)
    }

    fn hop_request(
        &mut self,
        now: Instant,
        s: StreamRef,
        body: &[u8],
        early: Bytes,
    ) -> Option<StreamRole> {
        let (kind, msg) = match message::decode_hop(body) {
            Ok(request) => request,
            Err(error) => return self.hop_answer(s, error.status()),
        };
        let (peer, ip, relayed) = match self.conns.get(&s.conn) {
            Some(c) => (
                c.peer?,
                addr::ip_of(&c.remote_addr),
                c.transport.is_relayed(),
            ),
            None => return None,
        };
        if relayed {
            // Hop requests over relayed connections would chain relays; the spec refuses them.
            tracing::info!(%peer, "refused hop request over a relayed connection");
            return self.hop_answer(s, Status::PermissionDenied);
        }
        let Some(ip) = ip else {
            return self.hop_answer(s, Status::PermissionDenied);
        };
        let unix = self.unix_time(now);
        match kind {
            HopType::Reserve => {
                let relay = self.relay.as_mut()?;
                let admission = relay.policy.reserve(now, unix, peer, ip);
                let role = match admission {
                    Admission::Granted(grant) => self.reservation_granted(now, s, grant),
                    Admission::Refused(refusal) => self.reservation_refused(s, peer, refusal),
                    Admission::Ask(request) => {
                        self.relay
                            .as_mut()?
                            .asks
                            .insert(request.ticket, Ask::Reserve { stream: s });
                        self.shared.emit(Event::RelayAsk { request });
                        Some(StreamRole::HopWaiting {
                            ticket: Some(request.ticket),
                            early: BytesMut::new(),
                        })
                    }
                };
                self.drain_policy(now);
                role
            }
            HopType::Connect => {
                let dst = msg
                    .peer
                    .as_ref()
                    .and_then(|p| p.id.as_deref())
                    .and_then(|id| PeerId::from_bytes(id).ok());
                let Some(dst) = dst else {
                    return self.hop_answer(s, Status::MalformedMessage);
                };
                let relay = self.relay.as_mut()?;
                let admission = relay.policy.connect(now, peer, ip, dst);
                let mut early_buf = BytesMut::new();
                early_buf.extend_from_slice(&early);
                let role = match admission {
                    Admission::Granted(grant) => self.start_circuit(now, s, grant, early_buf),
                    Admission::Refused(refusal) => self.circuit_refused(s, peer, dst, refusal),
                    Admission::Ask(request) => {
                        self.relay
                            .as_mut()?
                            .asks
                            .insert(request.ticket, Ask::Connect { stream: s });
                        self.shared.emit(Event::RelayAsk { request });
                        Some(StreamRole::HopWaiting {
                            ticket: Some(request.ticket),
                            early: early_buf,
                        })
                    }
                };
                self.drain_policy(now);
                role
            }
            HopType::Status => self.hop_answer(s, Status::UnexpectedMessage),
        }
    }

    /// The addresses a reservation answer advertises: ours, or the one the client used.
    fn relay_addrs(&self, conn: ConnectionId) -> Vec<Multiaddr> {
        let me = self.shared.peer_id;
        let mut addrs: Vec<Multiaddr> = self
            .shared
            .listen_addrs
            .iter()
            .chain(&self.shared.config.external_addrs)
            .filter(|a| addr::is_dialable_direct(a))
            .cloned()
            .collect();
        if addrs.is_empty()
            && let Some(local) = self.conns.get(&conn).and_then(|c| c.local_addr.clone())
        {
            addrs.push(local);
        }
        addrs
            .into_iter()
            .map(|a| a.with(Protocol::P2p(me)))
            .collect()
    }

    fn reservation_granted(
        &mut self,
        now: Instant,
        s: StreamRef,
        grant: ReservationGrant,
    ) -> Option<StreamRole> {
        let _ = now;
        let me = self.shared.peer_id;
        let voucher = Voucher {
            relay: me,
            peer: grant.peer,
            expiration: grant.expire_unix,
        }
        .sign(&self.shared.keypair);
        let answer = HopMessage {
            r#type: Some(HopType::Status as i32),
            status: Some(Status::Ok as i32),
            reservation: Some(Reservation {
                expire: Some(grant.expire_unix),
                addrs: self
                    .relay_addrs(s.conn)
                    .iter()
                    .map(|a| a.to_vec())
                    .collect(),
                voucher: Some(voucher),
            }),
            limit: grant.limit.to_wire(),
            peer: None,
        };
        self.write_stream(s, &message::framed(&answer));
        self.finish_stream(s);
        tracing::info!(peer = %grant.peer, renewed = grant.refreshed, "reservation accepted");
        self.shared.emit(Event::RelayReservationAccepted {
            peer: grant.peer,
            expire_unix: grant.expire_unix,
            renewed: grant.refreshed,
        });
        Some(StreamRole::Discard)
    }

    fn reservation_refused(
        &mut self,
        s: StreamRef,
        peer: PeerId,
        refusal: Refusal,
    ) -> Option<StreamRole> {
        tracing::info!(%peer, %refusal, "reservation refused");
        self.shared
            .emit(Event::RelayReservationRefused { peer, refusal });
        self.hop_answer(s, status_of_refusal(&refusal))
    }

    fn circuit_refused(
        &mut self,
        s: StreamRef,
        src: PeerId,
        dst: PeerId,
        refusal: Refusal,
    ) -> Option<StreamRole> {
        tracing::info!(%src, %dst, %refusal, "circuit refused");
        let status = status_of_refusal(&refusal);
        self.shared.emit(Event::RelayCircuitRefused {
            src,
            dst,
            status,
            refusal: Some(refusal),
        });
        self.hop_answer(s, status)
    }

    /// Opens the stop stream to the target of a granted circuit.
    fn start_circuit(
        &mut self,
        now: Instant,
        s: StreamRef,
        grant: CircuitGrant,
        early: BytesMut,
    ) -> Option<StreamRole> {
        let target = self.connections_to(&grant.dst).iter().copied().find(|id| {
            self.conns
                .get(id)
                .is_some_and(|c| !c.transport.is_relayed())
        });
        let opened = target.and_then(|conn| {
            let c = self.conns.get_mut(&conn)?;
            let stream = c.conn.open_stream(vec![STOP_PROTOCOL.to_owned()]).ok()?;
            c.streams.insert(
                stream,
                StreamRole::StopOut {
                    circuit: grant.id,
                    reader: MessageReader::default(),
                },
            );
            Some(StreamRef { conn, stream })
        });
        if let Some(s) = opened {
            self.arm_deadline(now, s, true);
        }
        let relay = self.relay.as_mut()?;
        let Some(dst_stream) = opened else {
            relay.policy.circuit_closed(grant.id);
            tracing::info!(src = %grant.src, dst = %grant.dst, "circuit target unreachable");
            self.shared.emit(Event::RelayCircuitRefused {
                src: grant.src,
                dst: grant.dst,
                status: Status::ConnectionFailed,
                refusal: None,
            });
            return self.hop_answer(s, Status::ConnectionFailed);
        };
        relay.circuits.insert(
            grant.id,
            Circuit {
                src: grant.src,
                dst: grant.dst,
                src_stream: s,
                dst_stream: Some(dst_stream),
                limit: grant.limit,
                started: now,
                spliced: false,
                ending: None,
                bytes: [0; 2],
                finished: [false; 2],
            },
        );
        self.mark(dst_stream.conn);
        Some(StreamRole::HopWaiting {
            ticket: None,
            early,
        })
    }

    /// The stop stream to the target is negotiated: send CONNECT.
    pub(super) fn relay_stop_opened(
        &mut self,
        _now: Instant,
        s: StreamRef,
        role: StreamRole,
    ) -> Option<StreamRole> {
        let StreamRole::StopOut { circuit, .. } = &role else {
            return Some(role);
        };
        let c = self.relay.as_ref()?.circuits.get(circuit)?;
        let request = StopMessage {
            r#type: Some(StopType::Connect as i32),
            peer: Some(Peer {
                id: Some(c.src.to_bytes()),
                addrs: Vec::new(),
            }),
            limit: c.limit.to_wire(),
            status: None,
        };
        self.write_stream(s, &message::framed(&request));
        Some(role)
    }

    /// The target answered our stop CONNECT.
    fn stop_answer(
        &mut self,
        now: Instant,
        s: StreamRef,
        circuit: CircuitId,
        body: &[u8],
        rest: Bytes,
    ) -> Option<StreamRole> {
        let status = message::decode_stop(body).and_then(|(kind, msg)| {
            if kind != StopType::Status {
                return Err(message::MessageError::Unexpected("expected STATUS"));
            }
            message::status_of(msg.status)
        });
        if status != Ok(Status::Ok) {
            tracing::debug!(%circuit, ?status, "target declined the circuit");
            self.reset_stream(s);
            self.circuit_failed(now, circuit, Status::ConnectionFailed, None);
            return None;
        }
        let relay = self.relay.as_mut()?;
        let c = relay.circuits.get_mut(&circuit)?;
        c.spliced = true;
        let (src_stream, src, dst, limit) = (c.src_stream, c.src, c.dst, c.limit);
        let answer = HopMessage {
            r#type: Some(HopType::Status as i32),
            status: Some(Status::Ok as i32),
            limit: limit.to_wire(),
            ..Default::default()
        };
        self.write_stream(src_stream, &message::framed(&answer));
        // Bytes the initiator sent early travel first.
        let early = match self.take_role(src_stream) {
            Some(StreamRole::HopWaiting { early, .. }) => early.freeze(),
            _ => Bytes::new(),
        };
        // Both sides may have sent bytes along with their messages; they count too.
        let early_allowed = self.account(now, circuit, Direction::SrcToDst, early.len());
        let rest_allowed = self.account(now, circuit, Direction::DstToSrc, rest.len());
        let pending = |bytes: Bytes, allowed: usize| {
            let mut queue = VecDeque::new();
            if allowed > 0 {
                queue.push_back(bytes.slice(..allowed));
            }
            queue
        };
        self.put_role(
            src_stream,
            StreamRole::Splice(Box::new(Splice {
                circuit,
                direction: Direction::SrcToDst,
                peer: s,
                pending: pending(early.clone(), early_allowed),
                finished: false,
                stalled_since: None,
            })),
        );
        tracing::info!(%circuit, %src, %dst, "circuit opened");
        self.shared
            .emit(Event::RelayCircuitOpened { circuit, src, dst });
        let role = StreamRole::Splice(Box::new(Splice {
            circuit,
            direction: Direction::DstToSrc,
            peer: src_stream,
            pending: pending(rest.clone(), rest_allowed),
            finished: false,
            stalled_since: None,
        }));
        self.put_role(s, role);
        self.relay_limit_buffers([src_stream, s]);
        self.consume(now, src_stream, early.len() - early_allowed);
        self.consume(now, s, rest.len() - rest_allowed);
        self.relay_flush_splice(now, src_stream);
        self.relay_flush_splice(now, s);
        self.take_role(s)
    }

    /// Counts `n` bytes against the circuit's limits; returns how many may be forwarded.
    ///
    /// At a data limit the circuit is marked ending: the bytes that fit are forwarded,
    /// then both streams are reset (see [`Node::relay_flush_splice`]), so the receiver
    /// gets exactly the limit and can tell why the circuit ended.
    fn account(
        &mut self,
        now: Instant,
        circuit: CircuitId,
        direction: Direction,
        n: usize,
    ) -> usize {
        let Some(relay) = self.relay.as_mut() else {
            return 0;
        };
        if relay
            .circuits
            .get(&circuit)
            .is_none_or(|c| c.ending.is_some())
        {
            return 0;
        }
        match relay.policy.circuit_data(now, circuit, direction, n as u64) {
            Ok(_) => {
                if let Some(c) = relay.circuits.get_mut(&circuit) {
                    c.bytes[index(direction)] += n as u64;
                }
                n
            }
            Err(CircuitError::LimitReached(hit)) => {
                if let Some(c) = relay.circuits.get_mut(&circuit) {
                    c.bytes[index(direction)] += hit.forwardable;
                    c.ending = Some(CircuitEnd::Limit(hit.kind));
                }
                usize::try_from(hit.forwardable).unwrap_or(n).min(n)
            }
            Err(CircuitError::Unknown(_)) => {
                self.end_circuit(now, circuit, CircuitEnd::Reset);
                0
            }
        }
    }

    // ----- splicing -----

    pub(super) fn relay_splice_data(
        &mut self,
        now: Instant,
        s: StreamRef,
        mut splice: Box<Splice>,
        data: Bytes,
    ) -> Option<StreamRole> {
        let (circuit, direction, len) = (splice.circuit, splice.direction, data.len());
        splice.pending.push_back(data.clone());
        self.put_role(s, StreamRole::Splice(splice));
        let allowed = self.account(now, circuit, direction, len);
        if allowed < len {
            // Past the limit: keep what fits, drop (and give back) the rest.
            if let Some(StreamRole::Splice(splice)) = self.role_mut(s) {
                splice.pending.pop_back();
                if allowed > 0 {
                    splice.pending.push_back(data.slice(..allowed));
                }
            }
            self.consume(now, s, len - allowed);
        }
        self.relay_flush_splice(now, s);
        None
    }

    /// Forwards what arrived on `from` to its peer as far as the peer's window allows,
    /// reporting forwarded bytes consumed on `from`.
    pub(super) fn relay_flush_splice(&mut self, now: Instant, from: StreamRef) {
        let Some(StreamRole::Splice(mut splice)) = self.take_role(from) else {
            return;
        };
        let mut forwarded = 0;
        while let Some(front) = splice.pending.front_mut() {
            let n = self.write_stream(splice.peer, front);
            forwarded += n;
            if n == front.len() {
                splice.pending.pop_front();
            } else {
                let _ = front.split_to(n);
                break;
            }
        }
        self.consume(now, from, forwarded);
        let stalled = splice.stalled_since;
        let (finished, drained, peer, circuit, direction) = (
            splice.finished,
            splice.pending.is_empty(),
            splice.peer,
            splice.circuit,
            splice.direction,
        );
        self.put_role(from, StreamRole::Splice(splice));
        if forwarded > 0 || !drained || stalled.is_some() {
            self.relay_track_buffer(now, from, forwarded);
        }
        if finished && drained {
            self.finish_stream(peer);
            self.direction_finished(now, circuit, direction);
        }
        self.end_if_drained(now, circuit, from, peer);
    }

    /// Ends a circuit marked ending once both directions forwarded what they may.
    fn end_if_drained(&mut self, now: Instant, circuit: CircuitId, a: StreamRef, b: StreamRef) {
        let Some(reason) = self
            .relay
            .as_ref()
            .and_then(|r| r.circuits.get(&circuit))
            .and_then(|c| c.ending)
        else {
            return;
        };
        let drained = |node: &Node, s: StreamRef| {
            node.conns
                .get(&s.conn)
                .and_then(|c| c.streams.get(&s.stream))
                .is_none_or(
                    |role| !matches!(role, StreamRole::Splice(sp) if !sp.pending.is_empty()),
                )
        };
        if drained(self, a) && drained(self, b) {
            self.end_circuit(now, circuit, reason);
        }
    }

    pub(super) fn relay_splice_finished(
        &mut self,
        now: Instant,
        s: StreamRef,
        mut splice: Box<Splice>,
    ) -> Option<StreamRole> {
        splice.finished = true;
        self.put_role(s, StreamRole::Splice(splice));
        self.relay_flush_splice(now, s);
        None
    }

    fn direction_finished(&mut self, now: Instant, circuit: CircuitId, direction: Direction) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let Some(c) = relay.circuits.get_mut(&circuit) else {
            return;
        };
        c.finished[index(direction)] = true;
        if c.finished == [true; 2] {
            self.end_circuit(now, circuit, CircuitEnd::Closed);
        }
    }

    /// Removes a circuit, resets whatever of its streams remain, and reports it.
    fn end_circuit(&mut self, now: Instant, circuit: CircuitId, reason: CircuitEnd) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let Some(c) = relay.circuits.remove(&circuit) else {
            return;
        };
        relay.policy.circuit_closed(circuit);
        for stream in [Some(c.src_stream), c.dst_stream].into_iter().flatten() {
            self.relay_forget_buffer(stream);
            if reason == CircuitEnd::Closed {
                self.take_role(stream);
                self.put_role(stream, StreamRole::Discard);
            } else {
                self.reset_stream(stream);
            }
        }
        if !c.spliced {
            return;
        }
        tracing::info!(%circuit, src = %c.src, dst = %c.dst, ?reason, "circuit closed");
        self.shared.emit(Event::RelayCircuitClosed {
            circuit,
            src: c.src,
            dst: c.dst,
            bytes_src_to_dst: c.bytes[0],
            bytes_dst_to_src: c.bytes[1],
            duration: since(c.started, now),
            reason,
        });
    }

    /// A circuit failed before it was spliced: answer the initiator and clean up.
    fn circuit_failed(
        &mut self,
        now: Instant,
        circuit: CircuitId,
        status: Status,
        refusal: Option<Refusal>,
    ) {
        let _ = now;
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let Some(c) = relay.circuits.remove(&circuit) else {
            return;
        };
        relay.policy.circuit_closed(circuit);
        if let Some(dst) = c.dst_stream {
            self.reset_stream(dst);
        }
        if self.take_role(c.src_stream).is_some() {
            self.write_stream(c.src_stream, &message::hop_status(status));
            self.finish_stream(c.src_stream);
            self.put_role(c.src_stream, StreamRole::Discard);
        }
        self.shared.emit(Event::RelayCircuitRefused {
            src: c.src,
            dst: c.dst,
            status,
            refusal,
        });
    }

    fn cancel_ask(&mut self, ticket: Ticket) {
        if let Some(relay) = self.relay.as_mut() {
            relay.asks.remove(&ticket);
            relay.policy.cancel_ask(ticket);
        }
    }

    /// A relay-server stream is gone (reset, or its connection closed).
    pub(super) fn relay_stream_gone(&mut self, now: Instant, s: StreamRef, role: StreamRole) {
        let Some(relay) = self.relay.as_ref() else {
            return;
        };
        match role {
            StreamRole::HopWaiting {
                ticket: Some(ticket),
                ..
            } => self.cancel_ask(ticket),
            StreamRole::HopWaiting { ticket: None, .. } => {
                let circuit = relay
                    .circuits
                    .iter()
                    .find(|(_, c)| c.src_stream == s)
                    .map(|(id, _)| *id);
                if let Some(circuit) = circuit {
                    self.end_circuit(now, circuit, CircuitEnd::Reset);
                }
            }
            StreamRole::StopOut { circuit, .. } => {
                self.circuit_failed(now, circuit, Status::ConnectionFailed, None);
            }
            StreamRole::Splice(splice) => self.end_circuit(now, splice.circuit, CircuitEnd::Reset),
            _ => {}
        }
    }

    // ----- hook, timers, peers -----

    pub(super) fn relay_hook_answer(&mut self, now: Instant, ticket: Ticket, allow: bool) {
        let unix = self.unix_time(now);
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        let Some(ask) = relay.asks.remove(&ticket) else {
            return;
        };
        let Ok(answered) = relay.policy.answer(now, unix, ticket, allow) else {
            return;
        };
        match (ask, answered.outcome) {
            (Ask::Reserve { stream }, Ok(Grant::Reservation(grant))) => {
                self.take_role(stream);
                if let Some(role) = self.reservation_granted(now, stream, grant) {
                    self.put_role(stream, role);
                }
            }
            (Ask::Connect { stream }, Ok(Grant::Circuit(grant))) => {
                let early = match self.take_role(stream) {
                    Some(StreamRole::HopWaiting { early, .. }) => early,
                    _ => BytesMut::new(),
                };
                if let Some(role) = self.start_circuit(now, stream, grant, early) {
                    self.put_role(stream, role);
                }
            }
            (ask, outcome) => {
                let (Ask::Reserve { stream } | Ask::Connect { stream }) = ask;
                let refusal = match outcome {
                    Err(refusal) => refusal,
                    Ok(_) => Refusal::PermissionDenied(crate::hop::RefusalReason::HookDenied),
                };
                self.take_role(stream);
                let role = match answered.request.query {
                    crate::hop::HookQuery::Reserve { peer, .. } => {
                        self.reservation_refused(stream, peer, refusal)
                    }
                    crate::hop::HookQuery::Connect { src, dst, .. } => {
                        self.circuit_refused(stream, src, dst, refusal)
                    }
                };
                if let Some(role) = role {
                    self.put_role(stream, role);
                }
            }
        }
        self.drain_policy(now);
    }

    pub(super) fn relay_timeout(&mut self, now: Instant) {
        if let Some(relay) = self.relay.as_mut() {
            relay.policy.handle_timeout(now);
            self.drain_policy(now);
            self.relay_expire_buffers(now);
        }
    }

    /// Acts on what the policy decided by itself.
    fn drain_policy(&mut self, now: Instant) {
        loop {
            let Some(relay) = self.relay.as_mut() else {
                return;
            };
            let Some(event) = relay.policy.poll_event() else {
                return;
            };
            match event {
                PolicyEvent::ReservationExpired(info) => {
                    self.shared
                        .emit(Event::RelayReservationEnded { peer: info.peer });
                }
                PolicyEvent::CircuitLimitReached(hit) => {
                    self.end_circuit(now, hit.circuit.id, CircuitEnd::Limit(hit.kind));
                }
                PolicyEvent::AskExpired { request, refusal } => {
                    let Some(ask) = relay.asks.remove(&request.ticket) else {
                        continue;
                    };
                    let (Ask::Reserve { stream } | Ask::Connect { stream }) = ask;
                    self.take_role(stream);
                    self.write_stream(stream, &message::hop_status(status_of_refusal(&refusal)));
                    self.finish_stream(stream);
                    self.put_role(stream, StreamRole::Discard);
                }
                PolicyEvent::AbuseDetected { key, until } => {
                    tracing::warn!(?key, "relay abuse detected; banning");
                    if let crate::hop::AbuseKey::Peer(peer) = key {
                        for conn in self.connections_to(&peer).to_vec() {
                            if let Some(c) = self.conns.get_mut(&conn) {
                                c.conn.close();
                                self.mark(conn);
                            }
                        }
                    }
                    self.shared.emit(Event::RelayAbuse {
                        key,
                        ban: until.saturating_duration_since(now),
                    });
                }
            }
        }
    }

    /// The last connection to `peer` closed: its reservation ends with it.
    pub(super) fn peer_disconnected(&mut self, _now: Instant, peer: PeerId) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        if relay.policy.remove_reservation(&peer).is_some() {
            self.shared.emit(Event::RelayReservationEnded { peer });
        }
    }
}

fn status_of_refusal(refusal: &Refusal) -> Status {
    Status::try_from(refusal.status_code() as i32).unwrap_or(Status::PermissionDenied)
}

impl Limit {
    /// Whether `bytes` in one direction reach the data limit.
    pub fn data_reached(&self, bytes: u64) -> bool {
        self.data.is_some_and(|d| bytes >= d)
    }
}
