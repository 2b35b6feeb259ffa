//! The node's record of one connection: its transport (TCP or a relay's stream), its
//! streams and who owns each, and its pinger.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use multiaddr::Multiaddr;

use super::{ConnectionId, DialError, Shared, StreamRef};
use crate::circuit::limit::Limit;
use crate::circuit::message::MessageReader;
use crate::conn::connection::{Connection, Endpoint};
use crate::conn::yamux::StreamId;
use crate::hop::{CircuitId, Direction, Ticket};
use crate::identify;
use crate::identity::PeerId;
use crate::map::Map;
use crate::ping::{self, Echo, PingConfig, Pinger};

/// What is known of a connection, for applications and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The remote peer, once authenticated.
    pub peer: Option<PeerId>,
    /// Whether we dialed or accepted.
    pub endpoint: Endpoint,
    /// The remote's address.
    pub remote_addr: Multiaddr,
    /// Our address on the connection, when known.
    pub local_addr: Option<Multiaddr>,
    /// The relay it runs through, if relayed.
    pub relay: Option<PeerId>,
    /// The relay's limit on it, if relayed.
    pub limit: Option<Limit>,
    /// Open streams.
    pub streams: usize,
    /// When it was created.
    pub since: Instant,
}

/// How a connection's bytes travel.
#[derive(Debug)]
pub(super) enum Transport {
    /// A TCP socket owned by the runtime; `connected` once the dial completed.
    Tcp { connected: bool },
    /// A stream of another connection (to a relay).
    Relayed(Box<Relayed>),
}

/// The transport of a relayed connection.
#[derive(Debug)]
pub(super) struct Relayed {
    /// The relay.
    pub(super) relay: PeerId,
    /// The stream carrying our bytes, once the relay connected us.
    pub(super) carrier: Option<StreamRef>,
    /// Ciphertext waiting for the carrier's send window.
    pub(super) outbox: VecDeque<Bytes>,
    /// The relay's limit.
    pub(super) limit: Limit,
    /// When the circuit was made.
    pub(super) started: Instant,
    /// Bytes sent and received through the carrier, for limit reporting.
    pub(super) bytes_out: u64,
    pub(super) bytes_in: u64,
}

impl Transport {
    pub(super) fn is_connected(&self) -> bool {
        match self {
            Transport::Tcp { connected } => *connected,
            Transport::Relayed(r) => r.carrier.is_some(),
        }
    }

    pub(super) fn is_relayed(&self) -> bool {
        matches!(self, Transport::Relayed(_))
    }
}

/// Who owns a stream of a connection, and its protocol state.
#[derive(Debug)]
pub(super) enum StreamRole {
    /// The application's.
    App,
    /// We asked for the peer's identify message.
    IdentifyRequest(identify::Reader),
    /// The peer pushes its identify message.
    IdentifyPushIn(identify::Reader),
    /// We push ours.
    IdentifyPushOut,
    /// Done with; remaining input is dropped.
    Discard,
    /// Our ping stream.
    PingOut,
    /// The peer's ping stream, echoed.
    PingIn(Echo),

    // ----- relay client -----
    /// We asked a relay for a reservation.
    ReserveOut(MessageReader),
    /// We asked a relay to connect us to a peer; `relayed` is the connection to be.
    ConnectOut {
        reader: MessageReader,
        relayed: ConnectionId,
    },
    /// A relay offers us a circuit.
    StopIn(MessageReader),
    /// Carries the bytes of a relayed connection.
    Carrier { relayed: ConnectionId },

    // ----- hole punching -----
    /// A DCUtR stream of this (relayed) connection; see `punch.rs`.
    Dcutr,

    // ----- relay server -----
    /// A client's hop request, being read.
    HopIn(MessageReader),
    /// A client waiting for the decision hook or the target; early bytes kept.
    HopWaiting {
        ticket: Option<Ticket>,
        early: BytesMut,
    },
    /// Our stop request to a circuit's target.
    StopOut {
        circuit: CircuitId,
        reader: MessageReader,
    },
    /// One end of a spliced circuit: bytes arriving here go to `peer`.
    Splice(Box<Splice>),
}

/// One direction of a circuit, owned by the stream the bytes arrive on.
#[derive(Debug)]
pub(super) struct Splice {
    pub(super) circuit: CircuitId,
    /// Which way bytes arriving on this stream travel.
    pub(super) direction: Direction,
    /// The other end.
    pub(super) peer: StreamRef,
    /// Bytes received here that the other end's window has not taken yet; they are
    /// reported consumed only once forwarded, so the sender feels the backpressure.
    pub(super) pending: VecDeque<Bytes>,
    /// The remote finished this stream; finish the other end once `pending` is empty.
    pub(super) finished: bool,
}

/// The node's record of one connection.
#[derive(Debug)]
pub(super) struct Conn {
    pub(super) conn: Connection,
    pub(super) endpoint: Endpoint,
    pub(super) remote_addr: Multiaddr,
    pub(super) local_addr: Option<Multiaddr>,
    pub(super) peer: Option<PeerId>,
    /// The peer's identify agent, once known (js-libp2p writes limits differently).
    pub(super) agent: Option<String>,
    pub(super) transport: Transport,
    pub(super) streams: Map<StreamId, StreamRole>,
    pub(super) pinger: Pinger,
    pub(super) ping_stream: Option<StreamId>,
    pub(super) ping_opening: bool,
    /// Queued in the node's dirty list.
    pub(super) queued: bool,
    /// Why the dial failed, when the runtime said so.
    pub(super) dial_error: Option<DialError>,
    pub(super) since: Instant,
}

impl Conn {
    pub(super) fn new(
        conn: Connection,
        endpoint: Endpoint,
        remote_addr: Multiaddr,
        transport: Transport,
        now: Instant,
        ping: &PingConfig,
    ) -> Self {
        Conn {
            conn,
            endpoint,
            remote_addr,
            local_addr: None,
            peer: None,
            agent: None,
            transport,
            streams: Map::default(),
            pinger: Pinger::new(now, ping),
            ping_stream: None,
            ping_opening: false,
            queued: false,
            dial_error: None,
            since: now,
        }
    }

    pub(super) fn info(&self) -> ConnectionInfo {
        let (relay, limit) = match &self.transport {
            Transport::Relayed(r) => (Some(r.relay), Some(r.limit)),
            Transport::Tcp { .. } => (None, None),
        };
        ConnectionInfo {
            peer: self.peer,
            endpoint: self.endpoint,
            remote_addr: self.remote_addr.clone(),
            local_addr: self.local_addr.clone(),
            relay,
            limit,
            streams: self.conn.num_streams(),
            since: self.since,
        }
    }

    pub(super) fn poll_timeout(&self, ping: &PingConfig) -> Option<Instant> {
        // Until its transport is up, a connection's own timers wait.
        let conn = if self.transport.is_connected() {
            self.conn.poll_timeout()
        } else {
            None
        };
        // While the ping stream is being opened, a due ping waits for it, not a timer.
        let ping = if self.conn.is_open() && !self.ping_opening {
            self.pinger.poll_timeout(ping)
        } else {
            None
        };
        match (conn, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Opens the ping stream when needed and sends a ping when one is due.
    pub(super) fn drive_ping(&mut self, now: Instant, shared: &mut Shared) {
        if !self.conn.is_open() || self.pinger.is_outstanding() {
            return;
        }
        let due = self
            .pinger
            .poll_timeout(&shared.config.ping)
            .is_some_and(|t| t <= now);
        if !due {
            return;
        }
        let Some(stream) = self.ping_stream else {
            if !self.ping_opening
                && let Ok(stream) = self.conn.open_stream(vec![ping::PROTOCOL.to_owned()])
            {
                self.streams.insert(stream, StreamRole::PingOut);
                self.ping_opening = true;
            }
            return;
        };
        if let Some(payload) = self.pinger.poll_send(now, &mut shared.rng) {
            let _ = self.conn.write(stream, &payload);
        }
    }
}
