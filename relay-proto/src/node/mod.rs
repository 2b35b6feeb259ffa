//! One local peer: its connections, the protocols every libp2p node speaks (identify,
//! ping), and the streams the application opens and accepts.
//!
//! [`Node`] follows the sans-IO pattern of quinn-proto and str0m: the runtime feeds it
//! socket events with [`Node::handle_input`] and timer expiries with
//! [`Node::handle_timeout`], gives it commands ([`Node::dial`], [`Node::open_stream`],
//! ...), then drains [`Node::poll_output`] until it returns `None` and re-arms its one
//! timer from [`Node::poll_timeout`].

pub mod addr;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use multiaddr::Multiaddr;
use smallvec::SmallVec;

use crate::conn::connection::{
    Connection, ConnectionConfig, ConnectionError, ConnectionEvent, Endpoint, OpenError, Protocols,
    StreamError,
};
use crate::conn::yamux::StreamId;
use crate::identify::{self, IdentifyError};
use crate::identity::{Keypair, PeerId};
use crate::map::Map;
use crate::ping::{self, Echo, PingConfig, PingError, PingOutcome, Pinger};
use crate::rng::Rng;
use addr::AddrError;

/// Identifies one connection of a node; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Identifies one stream: its connection and its muxer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    /// The connection carrying the stream.
    pub conn: ConnectionId,
    /// The stream within the connection.
    pub stream: StreamId,
}

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct Config {
    /// Negotiation and muxer settings of every connection.
    pub connection: ConnectionConfig,
    /// Ping settings.
    pub ping: PingConfig,
    /// The identify `agentVersion`.
    pub agent_version: String,
    /// The identify `protocolVersion`.
    pub protocol_version: String,
    /// Connections beyond this many are refused.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            ping: PingConfig::default(),
            agent_version: concat!("relay-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
            protocol_version: "/ipfs/0.1.0".to_owned(),
            max_connections: 4096,
        }
    }
}

/// Why a dial failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The address cannot be dialed.
    #[error(transparent)]
    Address(#[from] AddrError),
    /// The transport could not connect.
    #[error("transport: {0}")]
    Transport(String),
    /// The connection failed before it was established.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The node has as many connections as it may.
    #[error("connection limit reached")]
    ConnectionLimit,
}

/// What the runtime tells the node.
#[derive(Debug)]
pub enum Input<'a> {
    /// A dial asked for by [`Output::Dial`] connected.
    Connected {
        /// The connection.
        conn: ConnectionId,
        /// Our side of the socket.
        local_addr: SocketAddr,
    },
    /// A dial asked for by [`Output::Dial`] failed.
    DialFailed {
        /// The connection.
        conn: ConnectionId,
        /// Why, in the runtime's words.
        error: String,
    },
    /// Bytes arrived on a connection.
    Received {
        /// The connection.
        conn: ConnectionId,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// The socket reached end of file or failed.
    Closed {
        /// The connection.
        conn: ConnectionId,
    },
}

/// What the node asks of the runtime, or tells the application.
#[derive(Debug)]
pub enum Output {
    /// Write these bytes to the connection's socket, in order.
    Transmit {
        /// The connection.
        conn: ConnectionId,
        /// The bytes.
        data: Bytes,
    },
    /// Open a TCP connection; answer with [`Input::Connected`] or [`Input::DialFailed`].
    Dial {
        /// The connection this socket will carry.
        conn: ConnectionId,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Close the socket after writing what was transmitted before.
    Close {
        /// The connection.
        conn: ConnectionId,
    },
    /// Something the application may want to know.
    Event(Event),
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection is authenticated and multiplexed.
    ConnectionEstablished {
        /// The connection.
        conn: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// Whether we dialed or accepted.
        endpoint: Endpoint,
        /// The remote's address.
        remote_addr: Multiaddr,
    },
    /// An established connection ended.
    ConnectionClosed {
        /// The connection.
        conn: ConnectionId,
        /// The remote peer.
        peer: PeerId,
        /// Why.
        error: ConnectionError,
    },
    /// A dial failed before the connection was established.
    DialFailed {
        /// The connection that was being dialed.
        conn: ConnectionId,
        /// The dialed address.
        addr: Multiaddr,
        /// Why.
        error: DialError,
    },
    /// An accepted connection failed before it was established.
    InboundFailed {
        /// The connection.
        conn: ConnectionId,
        /// The remote's address.
        remote_addr: Multiaddr,
        /// Why.
        error: ConnectionError,
    },
    /// A peer told us about itself.
    Identified {
        /// The connection it spoke on.
        conn: ConnectionId,
        /// The peer.
        peer: PeerId,
        /// What it said.
        info: Box<identify::Info>,
    },
    /// A peer sent an identify message we could not accept.
    IdentifyFailed {
        /// The connection.
        conn: ConnectionId,
        /// The peer.
        peer: PeerId,
        /// Why.
        error: IdentifyError,
    },
    /// A ping completed or failed.
    Ping {
        /// The connection.
        conn: ConnectionId,
        /// The peer.
        peer: PeerId,
        /// The round trip, or why there was none.
        result: Result<Duration, PingError>,
    },
    /// The remote opened a stream with a protocol the application registered.
    InboundStream {
        /// The stream.
        stream: StreamRef,
        /// The remote peer.
        peer: PeerId,
        /// The agreed protocol.
        protocol: String,
    },
    /// A stream opened with [`Node::open_stream`] is ready.
    StreamOpened {
        /// The stream.
        stream: StreamRef,
        /// The remote peer.
        peer: PeerId,
        /// The agreed protocol.
        protocol: String,
    },
    /// A stream opened with [`Node::open_stream`] failed; it is gone.
    StreamOpenFailed {
        /// The stream.
        stream: StreamRef,
        /// Why.
        error: OpenError,
    },
    /// Bytes arrived on an application stream. Report them with
    /// [`Node::stream_consumed`] once processed: that reopens the peer's send window.
    StreamData {
        /// The stream.
        stream: StreamRef,
        /// The bytes.
        data: Bytes,
    },
    /// The remote finished writing on an application stream.
    StreamFinished {
        /// The stream.
        stream: StreamRef,
    },
    /// An application stream was reset; it is gone.
    StreamReset {
        /// The stream.
        stream: StreamRef,
    },
    /// An application stream whose write was short can take more bytes.
    StreamWritable {
        /// The stream.
        stream: StreamRef,
    },
}

/// Who owns a stream of a connection, and its protocol state.
#[derive(Debug)]
enum StreamRole {
    App,
    IdentifyRequest(identify::Reader),
    IdentifyPushIn(identify::Reader),
    IdentifyPushOut,
    /// An answered identify request, or any stream whose remaining input we drop.
    Discard,
    PingOut,
    PingIn(Echo),
}

#[derive(Debug)]
struct Conn {
    conn: Connection,
    endpoint: Endpoint,
    remote_addr: Multiaddr,
    peer: Option<PeerId>,
    /// Whether the runtime's socket is connected (dials start unconnected).
    connected: bool,
    streams: Map<StreamId, StreamRole>,
    pinger: Pinger,
    /// The outbound ping stream, once negotiated.
    ping_stream: Option<StreamId>,
    ping_opening: bool,
}

/// State shared by all connections of a node.
#[derive(Debug)]
struct Shared {
    config: Config,
    keypair: Keypair,
    peer_id: PeerId,
    rng: Rng,
    protocols: Protocols,
    listen_addrs: Vec<Multiaddr>,
    outputs: VecDeque<Output>,
}

/// One local libp2p peer, free of I/O.
///
/// # Calling contract
/// - Feed socket events with [`Node::handle_input`], timer expiries with
///   [`Node::handle_timeout`], and give commands with the mutators.
/// - After every such call, drain [`Node::poll_output`] until it returns `None`, then
///   re-arm the runtime's single timer to [`Node::poll_timeout`].
/// - Time only moves forward: every `now` is at or after the previous one.
#[derive(Debug)]
pub struct Node {
    shared: Shared,
    conns: Map<ConnectionId, Conn>,
    peers: Map<PeerId, SmallVec<[ConnectionId; 2]>>,
    next_conn: u64,
    start: Instant,
    unix_start: u64,
}

impl Node {
    /// Creates a node. `rng_seed` seeds all its randomness; `now` and `unix_now` (seconds
    /// since the Unix epoch) anchor its clocks.
    pub fn new(
        config: Config,
        keypair: Keypair,
        rng_seed: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Self {
        let mut protocols = Protocols::default();
        protocols.insert(identify::PROTOCOL);
        protocols.insert(identify::PUSH_PROTOCOL);
        protocols.insert(ping::PROTOCOL);
        Node {
            shared: Shared {
                peer_id: keypair.public().to_peer_id(),
                keypair,
                config,
                rng: Rng::from_seed(rng_seed),
                protocols,
                listen_addrs: Vec::new(),
                outputs: VecDeque::new(),
            },
            conns: Map::default(),
            peers: Map::default(),
            next_conn: 0,
            start: now,
            unix_start: unix_now,
        }
    }

    // ----- getters -----

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Our identity key.
    pub fn keypair(&self) -> &Keypair {
        &self.shared.keypair
    }

    /// The node's settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Seconds since the Unix epoch at `now`.
    pub fn unix_time(&self, now: Instant) -> u64 {
        self.unix_start + now.saturating_duration_since(self.start).as_secs()
    }

    /// The addresses we listen on, as announced by identify.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.shared.listen_addrs
    }

    /// The protocols we accept on inbound streams.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.shared.protocols.iter()
    }

    /// The established connections to `peer`.
    pub fn connections_to(&self, peer: &PeerId) -> &[ConnectionId] {
        self.peers.get(peer).map_or(&[], |c| c.as_slice())
    }

    /// The remote peer of an established connection.
    pub fn connection_peer(&self, conn: ConnectionId) -> Option<PeerId> {
        self.conns.get(&conn).and_then(|c| c.peer)
    }

    /// Every connection, in any state.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.conns.keys().copied()
    }

    /// How many connections exist, in any state.
    pub fn num_connections(&self) -> usize {
        self.conns.len()
    }

    // ----- inputs -----

    /// Feeds a socket event.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Connected { conn, .. } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.connected = true;
                self.pump(now, conn);
            }
            Input::DialFailed { conn, error } => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.shared
                        .outputs
                        .push_back(Output::Event(Event::DialFailed {
                            conn,
                            addr: c.remote_addr,
                            error: DialError::Transport(error),
                        }));
                }
            }
            Input::Received { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.conn.handle_input(now, bytes, &self.shared.protocols);
                self.pump(now, conn);
            }
            Input::Closed { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.conn.handle_eof();
                self.pump(now, conn);
            }
        }
    }

    /// Advances timers; call when [`Node::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: SmallVec<[ConnectionId; 16]> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.poll_timeout(&self.shared.config.ping)
                    .is_some_and(|t| t <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.conn.poll_timeout().is_some_and(|t| t <= now) {
                c.conn.handle_timeout(now);
            }
            if let (Some(error), Some(peer)) = (
                c.pinger.handle_timeout(now, &self.shared.config.ping),
                c.peer,
            ) {
                self.shared.outputs.push_back(Output::Event(Event::Ping {
                    conn: id,
                    peer,
                    result: Err(error),
                }));
            }
            self.pump(now, id);
        }
    }

    // ----- commands -----

    /// Dials a TCP multiaddr, optionally ending in `/p2p/PEER` (then the handshake
    /// verifies that peer). The runtime gets [`Output::Dial`].
    pub fn dial(&mut self, now: Instant, addr: Multiaddr) -> Result<ConnectionId, DialError> {
        let (socket, peer) = addr::parse_tcp(&addr)?;
        let id = self.new_connection(now, Endpoint::Dialer, addr, peer)?;
        self.shared.outputs.push_back(Output::Dial {
            conn: id,
            addr: socket,
        });
        Ok(id)
    }

    /// Registers a connection the runtime accepted; feed its bytes with
    /// [`Input::Received`] under the returned id.
    pub fn accept(
        &mut self,
        now: Instant,
        remote_addr: SocketAddr,
    ) -> Result<ConnectionId, DialError> {
        let id = self.new_connection(
            now,
            Endpoint::Listener,
            addr::tcp_multiaddr(remote_addr),
            None,
        )?;
        self.conns.get_mut(&id).expect("just inserted").connected = true;
        self.pump(now, id);
        Ok(id)
    }

    /// Records an address we listen on; it is announced to peers by identify push.
    pub fn add_listen_addr(&mut self, now: Instant, addr: Multiaddr) {
        if !self.shared.listen_addrs.contains(&addr) {
            self.shared.listen_addrs.push(addr);
            self.push_identify(now);
        }
    }

    /// Accepts inbound streams of `protocol` from now on; they arrive as
    /// [`Event::InboundStream`].
    pub fn register_protocol(&mut self, protocol: impl Into<String>) {
        self.shared.protocols.insert(protocol);
    }

    /// Stops accepting inbound streams of `protocol`.
    pub fn unregister_protocol(&mut self, protocol: &str) {
        self.shared.protocols.remove(protocol);
    }

    /// Opens a stream on `conn` proposing `protocol`; [`Event::StreamOpened`] or
    /// [`Event::StreamOpenFailed`] follows.
    pub fn open_stream(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        protocol: &str,
    ) -> Result<StreamRef, StreamError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(StreamError::ConnectionNotOpen)?;
        let stream = c.conn.open_stream(vec![protocol.to_owned()])?;
        c.streams.insert(stream, StreamRole::App);
        self.pump(now, conn);
        Ok(StreamRef { conn, stream })
    }

    /// Writes to an application stream; returns how many bytes the send window took.
    /// After a short write, [`Event::StreamWritable`] says when to try again.
    pub fn stream_write(
        &mut self,
        now: Instant,
        stream: StreamRef,
        data: &[u8],
    ) -> Result<usize, StreamError> {
        let c = self
            .conns
            .get_mut(&stream.conn)
            .ok_or(StreamError::ConnectionNotOpen)?;
        let n = c.conn.write(stream.stream, data)?;
        self.pump(now, stream.conn);
        Ok(n)
    }

    /// Finishes our side of an application stream.
    pub fn stream_close(&mut self, now: Instant, stream: StreamRef) -> Result<(), StreamError> {
        let c = self
            .conns
            .get_mut(&stream.conn)
            .ok_or(StreamError::ConnectionNotOpen)?;
        c.conn.close_stream(stream.stream)?;
        self.pump(now, stream.conn);
        Ok(())
    }

    /// Resets an application stream; it is gone.
    pub fn stream_reset(&mut self, now: Instant, stream: StreamRef) -> Result<(), StreamError> {
        let c = self
            .conns
            .get_mut(&stream.conn)
            .ok_or(StreamError::ConnectionNotOpen)?;
        c.streams.remove(&stream.stream);
        c.conn.reset_stream(stream.stream)?;
        self.pump(now, stream.conn);
        Ok(())
    }

    /// Reports that `n` bytes of [`Event::StreamData`] were processed.
    pub fn stream_consumed(&mut self, now: Instant, stream: StreamRef, n: usize) {
        if let Some(c) = self.conns.get_mut(&stream.conn) {
            c.conn.consumed(now, stream.stream, n);
            self.pump(now, stream.conn);
        }
    }

    /// Sends `count` pings on `conn` as soon as possible; results arrive as
    /// [`Event::Ping`].
    pub fn ping(
        &mut self,
        now: Instant,
        conn: ConnectionId,
        count: usize,
    ) -> Result<(), StreamError> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or(StreamError::ConnectionNotOpen)?;
        c.pinger.request(count, now);
        self.pump(now, conn);
        Ok(())
    }

    /// Closes a connection.
    pub fn close(&mut self, now: Instant, conn: ConnectionId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.conn.close();
            self.pump(now, conn);
        }
    }

    // ----- outputs -----

    /// The next output; drain until `None` after every input or command.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.shared.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .values()
            .filter_map(|c| c.poll_timeout(&self.shared.config.ping))
            .min()
    }

    // ----- internals -----

    fn new_connection(
        &mut self,
        now: Instant,
        endpoint: Endpoint,
        remote_addr: Multiaddr,
        expected: Option<PeerId>,
    ) -> Result<ConnectionId, DialError> {
        if self.conns.len() >= self.shared.config.max_connections {
            return Err(DialError::ConnectionLimit);
        }
        let id = ConnectionId(self.next_conn);
        self.next_conn += 1;
        let shared = &mut self.shared;
        let conn = Connection::new(
            endpoint,
            &shared.keypair,
            expected,
            &mut shared.rng,
            &shared.config.connection,
            now,
        );
        self.conns.insert(
            id,
            Conn {
                conn,
                endpoint,
                remote_addr,
                peer: None,
                connected: false,
                streams: Map::default(),
                pinger: Pinger::new(now, &shared.config.ping),
                ping_stream: None,
                ping_opening: false,
            },
        );
        Ok(id)
    }

    fn push_identify(&mut self, now: Instant) {
        let ids: SmallVec<[ConnectionId; 16]> = self
            .conns
            .iter()
            .filter(|(_, c)| c.conn.is_open())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if let Ok(stream) = c.conn.open_stream(vec![identify::PUSH_PROTOCOL.to_owned()]) {
                c.streams.insert(stream, StreamRole::IdentifyPushOut);
            }
            self.pump(now, id);
        }
    }

    /// Processes a connection's events, sends its bytes, and retires it when closed.
    fn pump(&mut self, now: Instant, id: ConnectionId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if !c.connected {
            return;
        }
        let shared = &mut self.shared;
        let mut closed = None;
        while let Some(event) = c.conn.poll_event() {
            match event {
                ConnectionEvent::Closed(error) => closed = Some(error),
                event => c.handle_event(now, id, event, shared, &mut self.peers),
            }
        }
        c.drive_ping(now, shared);
        if let Some(data) = c.conn.poll_transmit() {
            shared
                .outputs
                .push_back(Output::Transmit { conn: id, data });
        }
        let Some(error) = closed else { return };
        let c = self.conns.remove(&id).expect("present above");
        self.shared.outputs.push_back(Output::Close { conn: id });
        let event = match (c.peer, c.endpoint) {
            (Some(peer), _) => {
                if let Some(list) = self.peers.get_mut(&peer) {
                    list.retain(|x| *x != id);
                    if list.is_empty() {
                        self.peers.remove(&peer);
                    }
                }
                Event::ConnectionClosed {
                    conn: id,
                    peer,
                    error,
                }
            }
            (None, Endpoint::Dialer) => Event::DialFailed {
                conn: id,
                addr: c.remote_addr,
                error: DialError::Connection(error),
            },
            (None, Endpoint::Listener) => Event::InboundFailed {
                conn: id,
                remote_addr: c.remote_addr,
                error,
            },
        };
        self.shared.outputs.push_back(Output::Event(event));
    }
}

impl Conn {
    fn poll_timeout(&self, ping: &PingConfig) -> Option<Instant> {
        let conn = self.conn.poll_timeout();
        // While the ping stream is being opened, a due ping waits for it, not for a timer.
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

    fn emit(shared: &mut Shared, event: Event) {
        shared.outputs.push_back(Output::Event(event));
    }

    fn handle_event(
        &mut self,
        now: Instant,
        id: ConnectionId,
        event: ConnectionEvent,
        shared: &mut Shared,
        peers: &mut Map<PeerId, SmallVec<[ConnectionId; 2]>>,
    ) {
        match event {
            ConnectionEvent::Established { peer, .. } => {
                self.peer = Some(peer);
                peers.entry(peer).or_default().push(id);
                tracing::debug!(conn = %id, %peer, endpoint = ?self.endpoint, "connection established");
                Self::emit(
                    shared,
                    Event::ConnectionEstablished {
                        conn: id,
                        peer,
                        endpoint: self.endpoint,
                        remote_addr: self.remote_addr.clone(),
                    },
                );
                if let Ok(stream) = self.conn.open_stream(vec![identify::PROTOCOL.to_owned()]) {
                    self.streams.insert(
                        stream,
                        StreamRole::IdentifyRequest(identify::Reader::default()),
                    );
                }
            }
            ConnectionEvent::InboundStream { stream, protocol } => {
                self.inbound_stream(id, stream, protocol, shared)
            }
            ConnectionEvent::OutboundStream { stream, protocol } => {
                self.outbound_stream(id, stream, protocol, shared);
            }
            ConnectionEvent::OutboundFailed { stream, error } => match self.streams.remove(&stream)
            {
                Some(StreamRole::App) => {
                    Self::emit(
                        shared,
                        Event::StreamOpenFailed {
                            stream: StreamRef { conn: id, stream },
                            error,
                        },
                    );
                }
                Some(StreamRole::PingOut) => {
                    self.ping_opening = false;
                    if let Some(peer) = self.peer {
                        Self::emit(
                            shared,
                            Event::Ping {
                                conn: id,
                                peer,
                                result: Err(PingError::Unavailable),
                            },
                        );
                    }
                }
                _ => tracing::debug!(conn = %id, %stream, %error, "internal stream refused"),
            },
            ConnectionEvent::Data { stream, data } => {
                self.stream_data(now, id, stream, data, shared)
            }
            ConnectionEvent::Finished(stream) => match self.streams.get_mut(&stream) {
                Some(StreamRole::App) => {
                    Self::emit(
                        shared,
                        Event::StreamFinished {
                            stream: StreamRef { conn: id, stream },
                        },
                    );
                }
                Some(StreamRole::IdentifyRequest(reader) | StreamRole::IdentifyPushIn(reader)) => {
                    let error = reader.finish();
                    self.streams.remove(&stream);
                    let _ = self.conn.reset_stream(stream);
                    if let Some(peer) = self.peer {
                        Self::emit(
                            shared,
                            Event::IdentifyFailed {
                                conn: id,
                                peer,
                                error,
                            },
                        );
                    }
                }
                Some(StreamRole::PingOut) => {
                    self.streams.remove(&stream);
                    self.ping_stream = None;
                    let _ = self.conn.close_stream(stream);
                }
                Some(_) => {
                    self.streams.remove(&stream);
                    let _ = self.conn.close_stream(stream);
                }
                None => {}
            },
            ConnectionEvent::Reset(stream) => match self.streams.remove(&stream) {
                Some(StreamRole::App) => {
                    Self::emit(
                        shared,
                        Event::StreamReset {
                            stream: StreamRef { conn: id, stream },
                        },
                    );
                }
                Some(StreamRole::PingOut) => self.ping_stream = None,
                _ => {}
            },
            ConnectionEvent::Writable(stream) => {
                if let Some(StreamRole::App) = self.streams.get(&stream) {
                    Self::emit(
                        shared,
                        Event::StreamWritable {
                            stream: StreamRef { conn: id, stream },
                        },
                    );
                }
            }
            ConnectionEvent::Rtt(_) | ConnectionEvent::Closed(_) => {}
        }
    }

    fn inbound_stream(
        &mut self,
        id: ConnectionId,
        stream: StreamId,
        protocol: String,
        shared: &mut Shared,
    ) {
        let role = match protocol.as_str() {
            identify::PROTOCOL => {
                let info = identify::Info {
                    public_key: shared.keypair.public(),
                    protocol_version: shared.config.protocol_version.clone(),
                    agent_version: shared.config.agent_version.clone(),
                    listen_addrs: shared.listen_addrs.clone(),
                    protocols: shared.protocols.iter().map(str::to_owned).collect(),
                    observed_addr: Some(self.remote_addr.clone()),
                };
                let _ = self.conn.write(stream, &info.encode());
                let _ = self.conn.close_stream(stream);
                StreamRole::Discard
            }
            identify::PUSH_PROTOCOL => StreamRole::IdentifyPushIn(identify::Reader::default()),
            ping::PROTOCOL => StreamRole::PingIn(Echo::default()),
            _ => {
                let Some(peer) = self.peer else { return };
                Self::emit(
                    shared,
                    Event::InboundStream {
                        stream: StreamRef { conn: id, stream },
                        peer,
                        protocol,
                    },
                );
                StreamRole::App
            }
        };
        self.streams.insert(stream, role);
    }

    fn outbound_stream(
        &mut self,
        id: ConnectionId,
        stream: StreamId,
        protocol: String,
        shared: &mut Shared,
    ) {
        match self.streams.get(&stream) {
            Some(StreamRole::App) => {
                let Some(peer) = self.peer else { return };
                Self::emit(
                    shared,
                    Event::StreamOpened {
                        stream: StreamRef { conn: id, stream },
                        peer,
                        protocol,
                    },
                );
            }
            Some(StreamRole::IdentifyPushOut) => {
                let info = identify::Info {
                    public_key: shared.keypair.public(),
                    protocol_version: shared.config.protocol_version.clone(),
                    agent_version: shared.config.agent_version.clone(),
                    listen_addrs: shared.listen_addrs.clone(),
                    protocols: shared.protocols.iter().map(str::to_owned).collect(),
                    observed_addr: Some(self.remote_addr.clone()),
                };
                let _ = self.conn.write(stream, &info.encode());
                let _ = self.conn.close_stream(stream);
                self.streams.insert(stream, StreamRole::Discard);
            }
            Some(StreamRole::PingOut) => {
                self.ping_opening = false;
                self.ping_stream = Some(stream);
            }
            _ => {}
        }
    }

    fn stream_data(
        &mut self,
        now: Instant,
        id: ConnectionId,
        stream: StreamId,
        data: Bytes,
        shared: &mut Shared,
    ) {
        let len = data.len();
        let Some(role) = self.streams.get_mut(&stream) else {
            self.conn.consumed(now, stream, len);
            return;
        };
        match role {
            StreamRole::App => {
                Self::emit(
                    shared,
                    Event::StreamData {
                        stream: StreamRef { conn: id, stream },
                        data,
                    },
                );
                return;
            }
            StreamRole::IdentifyRequest(reader) | StreamRole::IdentifyPushIn(reader) => {
                let result = reader.push(&data);
                let peer = self
                    .peer
                    .expect("streams exist only on established connections");
                match result {
                    Ok(None) => {}
                    Ok(Some(info)) => {
                        self.streams.insert(stream, StreamRole::Discard);
                        let _ = self.conn.close_stream(stream);
                        Self::emit(
                            shared,
                            Event::Identified {
                                conn: id,
                                peer,
                                info: Box::new(info),
                            },
                        );
                    }
                    Err(error) => {
                        self.streams.remove(&stream);
                        let _ = self.conn.reset_stream(stream);
                        Self::emit(
                            shared,
                            Event::IdentifyFailed {
                                conn: id,
                                peer,
                                error,
                            },
                        );
                    }
                }
            }
            StreamRole::PingIn(echo) => {
                if let Some(answer) = echo.handle(&data) {
                    let _ = self.conn.write(stream, &answer);
                }
            }
            StreamRole::PingOut => {
                let outcome = self.pinger.handle_answer(now, &data, &shared.config.ping);
                let peer = self
                    .peer
                    .expect("streams exist only on established connections");
                match outcome {
                    PingOutcome::Pending => {}
                    PingOutcome::Rtt(rtt) => Self::emit(
                        shared,
                        Event::Ping {
                            conn: id,
                            peer,
                            result: Ok(rtt),
                        },
                    ),
                    PingOutcome::Failed(error) => {
                        Self::emit(
                            shared,
                            Event::Ping {
                                conn: id,
                                peer,
                                result: Err(error),
                            },
                        );
                    }
                }
            }
            StreamRole::IdentifyPushOut | StreamRole::Discard => {}
        }
        self.conn.consumed(now, stream, len);
    }

    /// Opens the ping stream when needed and sends a ping when one is due.
    fn drive_ping(&mut self, now: Instant, shared: &mut Shared) {
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
            if !self.ping_opening {
                if let Ok(stream) = self.conn.open_stream(vec![ping::PROTOCOL.to_owned()]) {
                    self.streams.insert(stream, StreamRole::PingOut);
                    self.ping_opening = true;
                }
            }
            return;
        };
        if let Some(payload) = self.pinger.poll_send(now, &mut shared.rng) {
            let _ = self.conn.write(stream, &payload);
        }
    }
}
