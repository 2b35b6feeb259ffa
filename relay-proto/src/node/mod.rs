//! One local peer: its connections (direct and relayed), the protocols every libp2p node
//! speaks (identify, ping), the circuit relay v2 server and client, and the streams the
//! application opens and accepts.
//!
//! [`Node`] follows the sans-IO pattern of quinn-proto and str0m: the runtime feeds it
//! socket events with [`Node::handle_input`] and timer expiries with
//! [`Node::handle_timeout`], gives it commands ([`Node::dial`], [`Node::open_stream`],
//! [`Node::reserve`], ...), then drains [`Node::poll_output`] until it returns `None` and
//! re-arms its one timer from [`Node::poll_timeout`].
//!
//! Files: this one holds the public surface and the connection pump; `conn.rs` the
//! per-connection state; `streams.rs` the dispatch of stream events to their owners;
//! `relay.rs` the relay server; `client.rs` the relay client; `autorelay.rs` AutoRelay
//! driven by the node; `punch.rs` hole punching (DCUtR); `addr.rs` address parsing.

pub mod addr;
mod autorelay;
mod client;
mod conn;
mod events;
mod offload;
mod punch;
mod relay;
mod streams;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use multiaddr::Multiaddr;
use smallvec::SmallVec;

use crate::circuit::limit::Limit;
use crate::conn::connection::{
    Connection, ConnectionConfig, ConnectionError, ConnectionEvent, Endpoint, Protocols,
    StreamError,
};
use crate::dcutr::HolePunchConfig;
use crate::hop::{ConfigError, RelayConfig, Ticket};
use crate::identify;
use crate::identity::{Keypair, PeerId};
use crate::map::Map;
use crate::ping::{self, PingConfig};
use crate::rng::Rng;
use addr::AddrError;
use conn::{Conn, StreamRole, Transport};

pub use client::{ClientConfig, ReservationInfo, ReservationLoss, ReserveError};
pub use conn::ConnectionInfo;
pub use events::{CircuitEnd, Event};
pub use punch::HolePunchError;

/// Identifies one connection of a node; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

pub use crate::conn::yamux::StreamId;

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
    /// The relay service; `None` disables it (hop requests are not accepted).
    pub relay: Option<RelayConfig>,
    /// The relay client: reservations and relayed connections.
    pub client: ClientConfig,
    /// Addresses to announce besides the listen addresses (e.g. a public address
    /// behind port forwarding); used in identify and in reservation answers.
    pub external_addrs: Vec<Multiaddr>,
    /// Hole punching (DCUtR) of relayed connections (the seed's
    /// `node.relay.hole_punch`); see [`Node::hole_punch`].
    pub hole_punch: HolePunchConfig,
    /// Whether TCP dials go out from the port we listen on, with `SO_REUSEADDR` and
    /// `SO_REUSEPORT` ([`DialFrom::ListenPort`]), as go-libp2p and rust-libp2p dial by
    /// default (true). Then a NAT maps our connections as it maps our listener, and the
    /// addresses peers observe (identify) are ones a hole punch can use.
    pub port_reuse: bool,
    /// AutoRelay: choosing relays and keeping reservations on them; `None` disables it.
    /// It runs once started with [`Node::auto_relay_start`].
    pub auto_relay: Option<crate::autorelay::AutoRelayConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connection: ConnectionConfig::default(),
            ping: PingConfig::default(),
            agent_version: concat!("relay-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
            protocol_version: "/ipfs/0.1.0".to_owned(),
            max_connections: 4096,
            relay: None,
            client: ClientConfig::default(),
            external_addrs: Vec::new(),
            hole_punch: HolePunchConfig::default(),
            port_reuse: true,
            auto_relay: None,
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
    /// The relay refused or could not make the circuit (the seed's "circuit failed").
    #[error("circuit failed: relay answered {0:?}")]
    CircuitFailed(crate::wire::proto::Status),
    /// The relay did not answer within the hop timeout (the seed's "hop timeout").
    #[error("hop timeout: the relay did not answer")]
    HopTimeout,
    /// The relay did not answer as the protocol says.
    #[error("circuit failed: {0}")]
    RelayProtocol(String),
    /// Relayed connections are disabled (the seed's "relay not enabled").
    #[error("relay transport not enabled")]
    RelayNotEnabled,
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
    /// Bytes arrived on a connection whose ciphers the runtime holds
    /// ([`Output::Offload`]), decrypted by it, in order.
    Decrypted {
        /// The connection.
        conn: ConnectionId,
        /// The plaintext; the node keeps slices of it for a while.
        bytes: Bytes,
    },
}

/// What the node asks of the runtime, or tells the application.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // outputs are drained at once; events are not boxed to save an allocation each
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
        /// Which local address to bind the socket to before connecting.
        from: DialFrom,
    },
    /// Close the socket after writing what was transmitted before.
    Close {
        /// The connection.
        conn: ConnectionId,
    },
    /// Something the application may want to know.
    Event(Event),
    /// From now on the runtime encrypts and decrypts this connection
    /// ([`Node::enable_crypto_offload`]): bytes it reads go through `ciphers.recv` into
    /// [`Input::Decrypted`], and [`Output::TransmitPlain`] goes through `ciphers.send`.
    /// Every [`Output::Transmit`] of the connection comes before this.
    Offload {
        /// The connection.
        conn: ConnectionId,
        /// Both directions of its Noise session.
        ciphers: Box<crate::conn::offload::TransportCiphers>,
    },
    /// Encrypt these bytes with the connection's send cipher and write them, in order.
    TransmitPlain {
        /// The connection.
        conn: ConnectionId,
        /// The plaintext, which the runtime may encrypt in place.
        data: BytesMut,
    },
}

/// Where the socket of an [`Output::Dial`] is bound before it connects.
///
/// A runtime that cannot bind a connecting socket (no `SO_REUSEPORT` on its platform)
/// treats [`DialFrom::ListenPort`] as [`DialFrom::Ephemeral`] and fails a
/// [`DialFrom::HolePunch`] dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialFrom {
    /// Any local port the OS picks.
    Ephemeral,
    /// This listen address (`0.0.0.0:PORT` or `IP:PORT`), with `SO_REUSEADDR` and
    /// `SO_REUSEPORT` set before binding (the listener has them too), so that a NAT maps
    /// the connection as it maps the listener ([`Config::port_reuse`]). If binding or
    /// connecting from it fails because the address pair is taken (`EADDRINUSE`,
    /// `EADDRNOTAVAIL`: a connection between the same two ports exists or lingers in
    /// `TIME_WAIT`), dial again from an ephemeral port.
    ListenPort(SocketAddr),
    /// A hole punch dial: this listen address with both options, and no other. Without
    /// it the NAT mapping the punch relies on is not reused. If the address pair is
    /// taken, fail the dial: the connection between the two ports that exists is the
    /// peer's dial, accepted, and it is the one that counts. When the peer dials at the
    /// same moment (a TCP simultaneous open) the connect completes like any other; the
    /// node runs the upgrade in the role DCUtR gave, whatever the socket says.
    HolePunch(SocketAddr),
}

/// State shared by all connections of a node.
#[derive(Debug)]
struct Shared {
    config: Config,
    keypair: Keypair,
    /// The Noise static key of all our handshakes, signed by `keypair` (`None` only if
    /// signing failed: each handshake then makes its own and reports the error).
    noise_static: Option<crate::conn::noise::LocalStatic>,
    /// Our last signed peer record and the addresses it holds.
    peer_record: Option<(Vec<Multiaddr>, Vec<u8>)>,
    /// Its sequence number.
    peer_record_seq: u64,
    peer_id: PeerId,
    rng: Rng,
    protocols: Protocols,
    /// The runtime takes the ciphers of TCP connections ([`Node::enable_crypto_offload`]).
    offload_crypto: bool,
    listen_addrs: Vec<Multiaddr>,
    /// Our `/p2p-circuit` addresses through the relays we hold reservations on.
    relayed_addrs: Vec<Multiaddr>,
    outputs: VecDeque<Output>,
    /// What AutoRelay learns from the events emitted, when it is configured.
    auto_relay_facts: Option<VecDeque<autorelay::Fact>>,
}

impl Shared {
    fn emit(&mut self, event: Event) {
        if let Some(facts) = &mut self.auto_relay_facts {
            autorelay::observe(facts, &event);
        }
        self.outputs.push_back(Output::Event(event));
    }

    /// Every address we announce: listen, external and relayed.
    fn announced_addrs(&self) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = self
            .listen_addrs
            .iter()
            .chain(&self.config.external_addrs)
            .chain(&self.relayed_addrs)
            .cloned()
            .collect();
        addrs.dedup();
        addrs
    }

    /// Our identify message for a peer that we see at `observed`; `unix` is the time
    /// in Unix seconds.
    fn identify_info(&mut self, observed: &Multiaddr, unix: u64) -> identify::Info {
        let listen_addrs = self.announced_addrs();
        let signed_peer_record = self.signed_peer_record(&listen_addrs, unix);
        identify::Info {
            public_key: self.keypair.public(),
            protocol_version: self.config.protocol_version.clone(),
            agent_version: self.config.agent_version.clone(),
            listen_addrs,
            protocols: self.protocols.iter().map(str::to_owned).collect(),
            observed_addr: Some(observed.clone()),
            signed_peer_record,
        }
    }

    /// Our signed peer record of `addrs`, signed again only when they changed. Its
    /// sequence number is the time in nanoseconds, as go-libp2p's, so it also grows
    /// across restarts, and at least one more than the last.
    fn signed_peer_record(&mut self, addrs: &[Multiaddr], unix: u64) -> Option<Vec<u8>> {
        if let Some((signed_addrs, bytes)) = &self.peer_record
            && signed_addrs == addrs
        {
            return Some(bytes.clone());
        }
        let seq = unix
            .saturating_mul(1_000_000_000)
            .max(self.peer_record_seq.saturating_add(1));
        let record = crate::peer_record::PeerRecord {
            peer: self.peer_id,
            seq,
            addrs: addrs.to_vec(),
        };
        let bytes = record.sign(&self.keypair).ok()?;
        self.peer_record_seq = seq;
        self.peer_record = Some((addrs.to_vec(), bytes.clone()));
        Some(bytes)
    }
}

/// Why the relay service could not start.
pub type RelayConfigError = ConfigError;

/// Why a node cannot be made with its [`Config`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeConfigError {
    /// The relay service's settings are invalid.
    #[error(transparent)]
    Relay(#[from] ConfigError),
    /// The AutoRelay settings are invalid.
    #[error("auto relay: {0}")]
    AutoRelay(#[from] crate::autorelay::ConfigError),
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
    /// Connections with events or bytes to process, in order.
    dirty: VecDeque<ConnectionId>,
    /// When relay requests in flight must have been answered.
    deadlines: std::collections::BTreeSet<(Instant, StreamRef)>,
    relay: Option<relay::RelayService>,
    client: client::Client,
    punch: punch::Punches,
    auto_relay: Option<Box<autorelay::Attached>>,
    next_conn: u64,
    start: Instant,
    unix_start: u64,
}

impl Node {
    /// Creates a node. `rng_seed` seeds all its randomness; `now` and `unix_now` (seconds
    /// since the Unix epoch) anchor its clocks.
    ///
    /// # Panics
    /// If `config.relay` or `config.auto_relay` is invalid; use [`Node::try_new`] to get
    /// the error instead.
    pub fn new(
        config: Config,
        keypair: Keypair,
        rng_seed: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Self {
        Self::try_new(config, keypair, rng_seed, now, unix_now).expect("valid node config")
    }

    /// Creates a node, or says why its relay or AutoRelay configuration is invalid.
    pub fn try_new(
        config: Config,
        keypair: Keypair,
        rng_seed: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Result<Self, NodeConfigError> {
        let mut protocols = Protocols::default();
        protocols.insert(identify::PROTOCOL);
        protocols.insert(identify::PUSH_PROTOCOL);
        protocols.insert(ping::PROTOCOL);
        let relay = match &config.relay {
            Some(relay_config) => {
                protocols.insert(crate::circuit::HOP_PROTOCOL);
                Some(relay::RelayService::new(relay_config.clone())?)
            }
            None => None,
        };
        if config.client.enabled {
            protocols.insert(crate::circuit::STOP_PROTOCOL);
        }
        if config.hole_punch.enabled && config.hole_punch.exchange_enabled() {
            protocols.insert(crate::dcutr::PROTOCOL);
        }
        let mut rng = Rng::from_seed(rng_seed);
        let auto_relay = match &config.auto_relay {
            Some(c) => Some(Box::new(autorelay::Attached::new(
                c.clone(),
                &mut rng,
                now,
            )?)),
            None => None,
        };
        let noise_static = crate::conn::noise::LocalStatic::generate(&keypair, &mut rng).ok();
        Ok(Node {
            shared: Shared {
                peer_id: keypair.public().to_peer_id(),
                keypair,
                noise_static,
                peer_record: None,
                peer_record_seq: 0,
                auto_relay_facts: auto_relay.as_ref().map(|_| VecDeque::new()),
                config,
                rng,
                protocols,
                offload_crypto: false,
                listen_addrs: Vec::new(),
                relayed_addrs: Vec::new(),
                outputs: VecDeque::new(),
            },
            conns: Map::default(),
            peers: Map::default(),
            dirty: VecDeque::new(),
            deadlines: Default::default(),
            relay,
            client: client::Client::default(),
            punch: punch::Punches::default(),
            auto_relay,
            next_conn: 0,
            start: now,
            unix_start: unix_now,
        })
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

    /// The addresses we listen on.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.shared.listen_addrs
    }

    /// Our `/p2p-circuit` addresses through the relays we hold reservations on.
    pub fn relayed_addrs(&self) -> &[Multiaddr] {
        &self.shared.relayed_addrs
    }

    /// The protocols we accept on inbound streams.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        self.shared.protocols.iter()
    }

    /// The established connections to `peer`, direct ones first.
    pub fn connections_to(&self, peer: &PeerId) -> &[ConnectionId] {
        self.peers.get(peer).map_or(&[], |c| c.as_slice())
    }

    /// The remote peer of an established connection.
    pub fn connection_peer(&self, conn: ConnectionId) -> Option<PeerId> {
        self.conns.get(&conn).and_then(|c| c.peer)
    }

    /// What is known of a connection.
    pub fn connection_info(&self, conn: ConnectionId) -> Option<ConnectionInfo> {
        self.conns.get(&conn).map(|c| c.info())
    }

    /// Every connection, in any state.
    pub fn connection_ids(&self) -> impl Iterator<Item = ConnectionId> + '_ {
        self.conns.keys().copied()
    }

    /// How many connections exist, in any state.
    pub fn num_connections(&self) -> usize {
        self.conns.len()
    }

    /// The relay service's policy (usage, reservations, circuits), if the service runs.
    pub fn relay_policy(&self) -> Option<&crate::hop::RelayPolicy> {
        self.relay.as_ref().map(|r| &r.policy)
    }

    /// The reservations we hold on relays.
    pub fn reservations(&self) -> impl Iterator<Item = client::ReservationInfo> + '_ {
        self.client.reservations()
    }

    // ----- inputs -----

    /// Feeds a socket event.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Connected { conn, local_addr } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.local_addr = Some(addr::tcp_multiaddr(local_addr));
                c.transport = Transport::Tcp { connected: true };
                c.conn.transport_ready(now);
                self.mark(conn);
            }
            Input::DialFailed { conn, error } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.dial_error = Some(DialError::Transport(error));
                    c.conn.handle_eof();
                    self.mark(conn);
                }
            }
            Input::Received { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.conn.handle_input(now, bytes, &self.shared.protocols);
                self.mark(conn);
            }
            Input::Closed { conn } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.conn.handle_eof();
                self.mark(conn);
            }
            Input::Decrypted { conn, bytes } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.conn.handle_plaintext(now, &bytes, &self.shared.protocols);
                self.mark(conn);
            }
        }
        self.run(now);
    }

    /// Advances timers; call when [`Node::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let ping = self.shared.config.ping.clone();
        let due: SmallVec<[ConnectionId; 16]> = self
            .conns
            .iter()
            .filter(|(_, c)| c.poll_timeout(&ping).is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if c.transport.is_connected() && c.conn.poll_timeout().is_some_and(|t| t <= now) {
                c.conn.handle_timeout(now);
            }
            if let (Some(error), Some(peer)) = (c.pinger.handle_timeout(now, &ping), c.peer) {
                self.shared.emit(Event::Ping {
                    conn: id,
                    peer,
                    result: Err(error),
                });
            }
            self.mark(id);
        }
        self.expire_deadlines(now);
        self.relay_timeout(now);
        self.client_timeout(now);
        self.punch_timeout(now);
        self.run(now);
    }

    // ----- commands -----

    /// Dials a multiaddr: TCP (`/ip4|ip6/.../tcp/PORT[/p2p/PEER]`, the handshake then
    /// verifies PEER) or a circuit (`.../p2p/RELAY/p2p-circuit/p2p/PEER`), connecting to
    /// the relay first if needed.
    pub fn dial(&mut self, now: Instant, addr: Multiaddr) -> Result<ConnectionId, DialError> {
        let result = match addr::parse_circuit(&addr) {
            Some(circuit) => self.dial_circuit(now, addr, circuit),
            None => self.dial_tcp(now, addr),
        };
        self.run(now);
        result
    }

    /// Registers a connection the runtime accepted; feed its bytes with
    /// [`Input::Received`] under the returned id.
    pub fn accept(
        &mut self,
        now: Instant,
        local_addr: SocketAddr,
        remote_addr: SocketAddr,
    ) -> Result<ConnectionId, DialError> {
        let remote = addr::tcp_multiaddr(remote_addr);
        // A connection from a peer we are hole punching with takes the role DCUtR gave.
        let punch = self.punch_inbound(now, &remote);
        let (upgrade, expected) = punch
            .as_ref()
            .map_or((Endpoint::Listener, None), |p| (p.upgrade, Some(p.peer)));
        let id = self.new_connection_as(
            now,
            Endpoint::Listener,
            upgrade,
            remote,
            expected,
            Transport::Tcp { connected: true },
        )?;
        self.conns.get_mut(&id).expect("just inserted").local_addr =
            Some(addr::tcp_multiaddr(local_addr));
        if let Some(punch) = punch {
            self.punch_accepted(id, punch);
        }
        self.mark(id);
        self.run(now);
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
        self.mark(conn);
        self.run(now);
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
        self.mark(stream.conn);
        self.run(now);
        Ok(n)
    }

    /// Finishes our side of an application stream.
    pub fn stream_close(&mut self, now: Instant, stream: StreamRef) -> Result<(), StreamError> {
        let c = self
            .conns
            .get_mut(&stream.conn)
            .ok_or(StreamError::ConnectionNotOpen)?;
        c.conn.close_stream(stream.stream)?;
        self.mark(stream.conn);
        self.run(now);
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
        self.mark(stream.conn);
        self.run(now);
        Ok(())
    }

    /// Reports that `n` bytes of [`Event::StreamData`] were processed.
    pub fn stream_consumed(&mut self, now: Instant, stream: StreamRef, n: usize) {
        if let Some(c) = self.conns.get_mut(&stream.conn) {
            c.conn.consumed(now, stream.stream, n);
            self.mark(stream.conn);
            self.run(now);
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
        self.mark(conn);
        self.run(now);
        Ok(())
    }

    /// Closes a connection.
    pub fn close(&mut self, now: Instant, conn: ConnectionId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.conn.close();
            self.mark(conn);
            self.run(now);
        }
    }

    /// Answers a relay decision-hook request ([`Event::RelayAsk`]).
    pub fn relay_answer(&mut self, now: Instant, ticket: Ticket, allow: bool) {
        self.relay_hook_answer(now, ticket, allow);
        self.run(now);
    }

    // ----- outputs -----

    /// The next output; drain until `None` after every input or command.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.shared.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ping = &self.shared.config.ping;
        let conns = self
            .conns
            .values()
            .filter_map(|c| c.poll_timeout(ping))
            .min();
        let relay = self.relay.as_ref().and_then(|r| r.poll_timeout());
        let client = self.client.poll_timeout();
        let deadline = self.deadlines.first().map(|(at, _)| *at);
        let punch = self.punch.poll_timeout();
        let auto_relay = self.auto_relay.as_ref().and_then(|a| a.poll_timeout());
        [conns, relay, client, deadline, punch, auto_relay]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- internals -----

    fn dial_tcp(&mut self, now: Instant, addr: Multiaddr) -> Result<ConnectionId, DialError> {
        let (socket, peer) = addr::parse_tcp(&addr)?;
        let id = self.new_connection(
            now,
            Endpoint::Dialer,
            addr,
            peer,
            Transport::Tcp { connected: false },
        )?;
        let from = if self.shared.config.port_reuse {
            self.listen_port_for(socket)
                .map_or(DialFrom::Ephemeral, DialFrom::ListenPort)
        } else {
            DialFrom::Ephemeral
        };
        self.shared.outputs.push_back(Output::Dial {
            conn: id,
            addr: socket,
            from,
        });
        Ok(id)
    }

    /// The listen address a dial to `target` can go out from: one of the same address
    /// family, unspecified or on the same side of loopback as `target`, and not `target`
    /// itself.
    fn listen_port_for(&self, target: SocketAddr) -> Option<SocketAddr> {
        let listening: SmallVec<[SocketAddr; 4]> = self
            .shared
            .listen_addrs
            .iter()
            .filter_map(|a| addr::parse_tcp(a).ok().map(|(s, _)| s))
            .collect();
        if listening.contains(&target) {
            return None;
        }
        listening.into_iter().find(|l| {
            l.port() != 0
                && l.is_ipv4() == target.is_ipv4()
                && (l.ip().is_unspecified() || l.ip().is_loopback() == target.ip().is_loopback())
        })
    }

    fn new_connection(
        &mut self,
        now: Instant,
        endpoint: Endpoint,
        remote_addr: Multiaddr,
        expected: Option<PeerId>,
        transport: Transport,
    ) -> Result<ConnectionId, DialError> {
        self.new_connection_as(now, endpoint, endpoint, remote_addr, expected, transport)
    }

    /// A new connection on `endpoint`'s side of the transport that takes the `upgrade`
    /// side of security and muxer negotiation.
    fn new_connection_as(
        &mut self,
        now: Instant,
        endpoint: Endpoint,
        upgrade: Endpoint,
        remote_addr: Multiaddr,
        expected: Option<PeerId>,
        transport: Transport,
    ) -> Result<ConnectionId, DialError> {
        if self.conns.len() >= self.shared.config.max_connections {
            return Err(DialError::ConnectionLimit);
        }
        let id = ConnectionId(self.next_conn);
        self.next_conn += 1;
        let shared = &mut self.shared;
        let mut conn = match &shared.noise_static {
            Some(local) => Connection::with_local_static(
                endpoint,
                upgrade,
                local,
                expected,
                &mut shared.rng,
                &shared.config.connection,
                now,
            ),
            None => Connection::with_upgrade_role(
                endpoint,
                upgrade,
                &shared.keypair,
                expected,
                &mut shared.rng,
                &shared.config.connection,
                now,
            ),
        };
        if shared.offload_crypto && matches!(transport, Transport::Tcp { .. }) {
            conn.offload_crypto();
        }
        self.conns.insert(
            id,
            Conn::new(
                conn,
                endpoint,
                remote_addr,
                transport,
                now,
                &shared.config.ping,
            ),
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
            self.mark(id);
        }
        self.run(now);
    }

    /// Queues a connection for [`Node::run`].
    fn mark(&mut self, id: ConnectionId) {
        if let Some(c) = self.conns.get_mut(&id)
            && !c.queued
        {
            c.queued = true;
            self.dirty.push_back(id);
        }
    }

    /// Processes queued connections until none has work left, then lets AutoRelay act
    /// on what happened.
    fn run(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop_front() {
            self.pump(now, id);
        }
        self.auto_relay_pass(now);
    }

    /// Processes a connection's events, sends its bytes, and retires it when closed.
    fn pump(&mut self, now: Instant, id: ConnectionId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.queued = false;
        if !c.transport.is_connected() && !c.conn.is_closed() {
            return;
        }
        let mut closed = None;
        while let Some(event) = self.conns.get_mut(&id).and_then(|c| c.conn.poll_event()) {
            match event {
                ConnectionEvent::Closed(error) => closed = Some(error),
                event => self.on_connection_event(now, id, event),
            }
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.drive_ping(now, &mut self.shared);
        if let Some(data) = c.conn.poll_transmit() {
            match &mut c.transport {
                Transport::Tcp { .. } => {
                    self.shared
                        .outputs
                        .push_back(Output::Transmit { conn: id, data });
                }
                Transport::Relayed(relayed) => {
                    relayed.bytes_out += data.len() as u64;
                    relayed.outbox.push_back(data);
                    self.flush_carrier(now, id);
                }
            }
        }
        self.pump_offload(id);
        if let Some(error) = closed {
            self.retire(now, id, error);
        }
    }

    /// Removes a closed connection and tells everyone who cares.
    fn retire(&mut self, now: Instant, id: ConnectionId, error: ConnectionError) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        match &c.transport {
            Transport::Tcp { .. } => self.shared.outputs.push_back(Output::Close { conn: id }),
            Transport::Relayed(relayed) => self.relayed_closed(now, id, relayed.carrier),
        }
        for (stream, role) in c.streams {
            self.stream_gone(now, StreamRef { conn: id, stream }, role);
        }
        self.client_conn_retired(now, id, error.to_string());
        let why = c
            .dial_error
            .as_ref()
            .map_or_else(|| error.to_string(), |e| e.to_string());
        self.punch_retired(now, id, c.peer, c.transport.is_relayed(), &why);
        let event = match (c.peer, c.endpoint) {
            (Some(peer), _) => {
                if let Some(list) = self.peers.get_mut(&peer) {
                    list.retain(|x| *x != id);
                    if list.is_empty() {
                        self.peers.remove(&peer);
                        self.peer_disconnected(now, peer);
                    }
                }
                Event::ConnectionClosed {
                    conn: id,
                    peer,
                    endpoint: c.endpoint,
                    relayed: c.transport.is_relayed(),
                    error,
                }
            }
            (None, Endpoint::Dialer) => Event::DialFailed {
                conn: id,
                addr: c.remote_addr,
                error: c.dial_error.unwrap_or(DialError::Connection(error)),
            },
            (None, Endpoint::Listener) => Event::InboundFailed {
                conn: id,
                remote_addr: c.remote_addr,
                error,
            },
        };
        self.shared.emit(event);
    }

    /// A connection became established: index it and start identify and ping.
    fn established(&mut self, now: Instant, id: ConnectionId, peer: PeerId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.peer = Some(peer);
        let relayed = c.transport.is_relayed();
        let list = self.peers.entry(peer).or_default();
        // Direct connections first: they are preferred for new streams.
        if relayed {
            list.push(id);
        } else {
            let first_relayed = list
                .iter()
                .position(|x| self.conns.get(x).is_some_and(|c| c.transport.is_relayed()))
                .unwrap_or(list.len());
            list.insert(first_relayed, id);
        }
        let c = self.conns.get_mut(&id).expect("present");
        tracing::debug!(conn = %id, %peer, endpoint = ?c.endpoint, relayed, "connection established");
        self.shared.emit(Event::ConnectionEstablished {
            conn: id,
            peer,
            endpoint: c.endpoint,
            remote_addr: c.remote_addr.clone(),
            relayed,
        });
        if let Ok(stream) = c.conn.open_stream(vec![identify::PROTOCOL.to_owned()]) {
            c.streams.insert(
                stream,
                StreamRole::IdentifyRequest(identify::Reader::default()),
            );
        }
        self.client_connection_established(now, id, peer);
        self.punch_established(now, id, peer, relayed);
    }
}

/// Time between `a` and `b`, zero if `b` is earlier.
fn since(a: Instant, b: Instant) -> Duration {
    b.saturating_duration_since(a)
}

/// The limit of relayed connections, read from the relay's answer.
fn limit_from_wire(limit: Option<&crate::wire::proto::Limit>, agent: Option<&str>) -> Limit {
    let js = agent.is_some_and(|a| a.starts_with("js-libp2p"));
    Limit::from_wire(limit, js)
}
