//! One libp2p connection over a reliable byte stream (TCP): security and muxer
//! negotiation with multistream-select, Noise XX, Yamux, and multistream-select again on
//! every stream.
//!
//! The connection knows nothing of sockets or of the protocols spoken on its streams: it
//! turns ciphertext into stream events and stream writes into ciphertext.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::map::Map as HashMap;
use bytes::{Bytes, BytesMut};

use super::noise::{self, HandshakeProgress, NoiseError};
use super::offload::{Offload, TransportCiphers};
use super::recycle::Recycler;
use super::yamux::{self, StreamId, YamuxError};
use crate::identity::{Keypair, PeerId, PublicKey};
use crate::rng::Rng;
use crate::wire::multistream::{self, Negotiated, NegotiationError};

/// What the transmit buffer grows by at least while bulk data flows, so that one
/// allocation serves many flushes.
const TRANSMIT_BUFFER: usize = 256 * 1024;
/// Flushes at least this large count as bulk data.
const BULK: usize = 16 * 1024;
/// Noise's length prefix and authentication tag on every frame.
const NOISE_FRAME_OVERHEAD: usize = 2 + noise::MAX_FRAME - noise::MAX_PLAINTEXT;

/// The muxer this stack speaks inside Noise.
pub const YAMUX_PROTOCOL: &str = "/yamux/1.0.0";

/// Which side of the underlying transport connection we are, or which side of the
/// upgrade (security and muxer negotiation) we take.
///
/// The two are the same unless a hole punch says otherwise: a TCP simultaneous open
/// leaves both peers with a socket they dialed, so DCUtR names the one that acts as the
/// listener of the upgrade (see [`Connection::with_upgrade_role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// We dialed: we are the multistream-select dialer, the Noise initiator and the
    /// Yamux client (odd stream ids).
    Dialer,
    /// We accepted: we are the multistream-select listener, the Noise responder and the
    /// Yamux server (even stream ids).
    Listener,
}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// How long security and muxer negotiation may take before the connection is dropped.
    pub upgrade_timeout: Duration,
    /// Yamux settings.
    pub yamux: yamux::Config,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            upgrade_timeout: Duration::from_secs(10),
            yamux: yamux::Config::default(),
        }
    }
}

/// The set of protocols this node accepts on inbound streams.
#[derive(Debug, Clone, Default)]
pub struct Protocols(Vec<String>);

impl Protocols {
    /// Adds a protocol; adding one twice is harmless.
    pub fn insert(&mut self, protocol: impl Into<String>) {
        let protocol = protocol.into();
        if !self.contains(&protocol) {
            self.0.push(protocol);
        }
    }

    /// Removes a protocol.
    pub fn remove(&mut self, protocol: &str) {
        self.0.retain(|p| p != protocol);
    }

    /// Whether `protocol` is accepted.
    pub fn contains(&self, protocol: &str) -> bool {
        self.0.iter().any(|p| p == protocol)
    }

    /// The accepted protocols, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// Security or muxer negotiation failed.
    #[error("protocol negotiation failed: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The Noise handshake or a transport frame failed.
    #[error("noise: {0}")]
    Noise(String),
    /// The peer violated the Yamux protocol.
    #[error("yamux: {0}")]
    Yamux(#[from] YamuxError),
    /// Negotiation did not finish within the upgrade timeout.
    #[error("connection upgrade timed out")]
    UpgradeTimeout,
    /// The peer closed the transport.
    #[error("closed by peer")]
    ClosedByPeer,
    /// We closed the connection.
    #[error("closed locally")]
    ClosedLocally,
}

impl From<NoiseError> for ConnectionError {
    fn from(e: NoiseError) -> Self {
        ConnectionError::Noise(e.to_string())
    }
}

/// Why an operation on a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The connection is not (or no longer) open.
    #[error("connection is not open")]
    ConnectionNotOpen,
    /// The stream is unknown or already gone.
    #[error("unknown stream")]
    UnknownStream,
    /// The stream's protocol is still being negotiated.
    #[error("stream protocol not negotiated yet")]
    NotNegotiated,
    /// The muxer refused the operation.
    #[error("yamux: {0}")]
    Yamux(#[from] YamuxError),
}

/// Why opening an outbound stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The peer refused every protocol we proposed.
    #[error("protocol not supported by peer")]
    NotSupported,
    /// Negotiation failed otherwise.
    #[error("negotiation failed: {0}")]
    Negotiation(NegotiationError),
    /// The peer reset or closed the stream before agreeing.
    #[error("stream closed during negotiation")]
    Closed,
}

/// What happened on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// Security and muxer are up: streams can be opened.
    Established {
        /// The authenticated remote peer.
        peer: PeerId,
        /// The remote's identity key.
        public_key: Box<PublicKey>,
    },
    /// The remote opened a stream and we agreed on one of our protocols.
    InboundStream {
        /// The stream.
        stream: StreamId,
        /// The agreed protocol.
        protocol: String,
    },
    /// A stream we opened was accepted with this protocol.
    OutboundStream {
        /// The stream.
        stream: StreamId,
        /// The agreed protocol.
        protocol: String,
    },
    /// A stream we opened could not be negotiated; it is gone.
    OutboundFailed {
        /// The stream.
        stream: StreamId,
        /// Why.
        error: OpenError,
    },
    /// Bytes arrived on a negotiated stream. Report them with [`Connection::consumed`]
    /// once processed, or the peer's send window never reopens.
    Data {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        data: Bytes,
    },
    /// The remote will send nothing more on this stream.
    Finished(StreamId),
    /// The stream was reset; it is gone.
    Reset(StreamId),
    /// A stream whose write was short can take more bytes.
    Writable(StreamId),
    /// A muxer round trip was measured.
    Rtt(Duration),
    /// The connection is over; the caller closes the transport after flushing
    /// [`Connection::poll_transmit`].
    Closed(ConnectionError),
}

enum Negotiator {
    Dialer(multistream::Dialer),
    Listener(multistream::Listener),
}

impl Negotiator {
    fn new(endpoint: Endpoint, protocol: &str, out: &mut Vec<u8>) -> Self {
        match endpoint {
            Endpoint::Dialer => {
                Negotiator::Dialer(multistream::Dialer::new(vec![protocol.to_owned()], out))
            }
            Endpoint::Listener => Negotiator::Listener(multistream::Listener::new()),
        }
    }

    fn handle(
        &mut self,
        input: &[u8],
        wanted: &str,
        out: &mut Vec<u8>,
    ) -> Result<Negotiated, NegotiationError> {
        match self {
            Negotiator::Dialer(d) => d.handle(input, out),
            Negotiator::Listener(l) => l.handle(input, |p| p == wanted, out),
        }
    }
}

/// What a connection's Noise handshake authenticates us with.
enum LocalKey {
    /// A static key drawn for this handshake alone.
    Fresh(Box<Keypair>),
    /// The node's static key, shared by its handshakes.
    Shared(noise::LocalStatic),
}

impl LocalKey {
    // The error is noise's own (see its module): large only on the error path.
    #[allow(clippy::result_large_err)]
    fn handshake(
        &self,
        role: noise::Role,
        expected: Option<PeerId>,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<noise::Handshake, noise::NoiseError> {
        match self {
            LocalKey::Fresh(identity) => noise::Handshake::new(role, identity, expected, rng, out),
            LocalKey::Shared(local) => {
                noise::Handshake::with_static(role, local, expected, rng, out)
            }
        }
    }
}

#[allow(clippy::large_enum_variant)] // one per connection; boxing would only add a hop
enum State {
    /// Agreeing on `/noise`.
    Security {
        mss: Negotiator,
        local: LocalKey,
        rng: Box<Rng>,
    },
    /// Running the Noise XX handshake. An upgrade dialer sends its first handshake
    /// message right behind its `/noise` proposal (multistream-select's "lazy" dialer,
    /// as rust-libp2p's `V1Lazy`), saving a round trip: `confirm` then reads the
    /// listener's answer before the handshake gets the bytes that follow it.
    Handshake {
        noise: Box<noise::Handshake>,
        confirm: Option<Negotiator>,
    },
    /// Agreeing on `/yamux/1.0.0` inside Noise.
    Muxer {
        noise: Box<noise::Session>,
        mss: Negotiator,
        peer: PeerId,
        key: PublicKey,
    },
    /// Streams flow.
    Open(Box<Open>),
    /// Over.
    Closed,
}

struct Open {
    peer: PeerId,
    /// `None` once the ciphers are handed out ([`Connection::offload_crypto`]).
    noise: Option<noise::Session>,
    /// An upgrade dialer's `/yamux/1.0.0` proposal, until the listener's answer has
    /// arrived: the dialer runs Yamux right behind its proposal (multistream-select's
    /// "lazy" dialer, as rust-libp2p's `V1Lazy`), half a round trip sooner.
    muxer_confirm: Option<multistream::Dialer>,
    yamux: yamux::Session,
    streams: HashMap<StreamId, Phase>,
}

impl Open {
    /// Plaintext from the peer: the rest of its answer to our muxer proposal, if that
    /// is still awaited, then Yamux frames.
    fn feed(&mut self, now: Instant, bytes: &Bytes) -> Result<(), ConnectionError> {
        let Some(confirm) = &mut self.muxer_confirm else {
            self.yamux.handle_bytes(now, bytes)?;
            return Ok(());
        };
        // One proposal: nothing more to write whatever the answer.
        let mut nothing = Vec::new();
        let Negotiated::Agreed { rest, .. } = confirm.handle(bytes, &mut nothing)? else {
            return Ok(());
        };
        self.muxer_confirm = None;
        self.yamux.handle_bytes(now, &rest)?;
        Ok(())
    }
}

/// Where a stream is in its protocol negotiation.
enum Phase {
    Outbound(multistream::Dialer),
    Inbound(multistream::Listener),
    Ready,
}

/// One libp2p connection: negotiation, Noise and Yamux over a byte stream.
///
/// Call order: after [`Connection::handle_input`], [`Connection::handle_timeout`] or any
/// stream operation, drain [`Connection::poll_event`] and [`Connection::poll_transmit`],
/// then re-arm the timer from [`Connection::poll_timeout`].
pub struct Connection {
    endpoint: Endpoint,
    /// The side we take in the upgrade; `endpoint` unless a hole punch overrides it.
    upgrade: Endpoint,
    state: State,
    expected_peer: Option<PeerId>,
    upgrade_deadline: Option<Instant>,
    transmit: BytesMut,
    /// Used-up blocks of `transmit`, reused once the socket has written them.
    transmit_blocks: Recycler,
    /// Decrypted input; the muxer hands out slices of it.
    plaintext: BytesMut,
    /// Used-up blocks of `plaintext`, reused once the slices cut from them are gone.
    plaintext_blocks: Recycler,
    /// Whether the runtime took the ciphers.
    offload: Offload,
    /// Plaintext for the runtime's send cipher, once offloaded.
    plain: BytesMut,
    scratch: Vec<u8>,
    events: VecDeque<ConnectionEvent>,
    yamux_config: yamux::Config,
    upgrade_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Security { .. } => "security",
            State::Handshake { .. } => "handshake",
            State::Muxer { .. } => "muxer",
            State::Open(_) => "open",
            State::Closed => "closed",
        };
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("upgrade", &self.upgrade)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts a connection; as dialer its first bytes are ready in
    /// [`Connection::poll_transmit`].
    pub fn new(
        endpoint: Endpoint,
        identity: &Keypair,
        expected_peer: Option<PeerId>,
        rng: &mut Rng,
        config: &ConnectionConfig,
        now: Instant,
    ) -> Self {
        Self::with_upgrade_role(
            endpoint,
            endpoint,
            identity,
            expected_peer,
            rng,
            config,
            now,
        )
    }

    /// Starts a connection that takes the `upgrade` side of security and muxer
    /// negotiation whatever its transport `endpoint` (rust-libp2p's role override,
    /// go-libp2p's simultaneous connect): a hole punch dial acting as
    /// [`Endpoint::Listener`] waits for the peer's multistream-select header, answers
    /// the Noise handshake as responder and runs Yamux as server, with even stream ids.
    /// As an upgrade dialer its first bytes are ready in [`Connection::poll_transmit`].
    pub fn with_upgrade_role(
        endpoint: Endpoint,
        upgrade: Endpoint,
        identity: &Keypair,
        expected_peer: Option<PeerId>,
        rng: &mut Rng,
        config: &ConnectionConfig,
        now: Instant,
    ) -> Self {
        let local = LocalKey::Fresh(Box::new(identity.clone()));
        Self::start(endpoint, upgrade, local, expected_peer, rng, config, now)
    }

    /// As [`Connection::with_upgrade_role`], authenticating with the node's Noise static
    /// key `local` instead of a fresh one: a key generation and a signature less per
    /// handshake.
    pub fn with_local_static(
        endpoint: Endpoint,
        upgrade: Endpoint,
        local: &noise::LocalStatic,
        expected_peer: Option<PeerId>,
        rng: &mut Rng,
        config: &ConnectionConfig,
        now: Instant,
    ) -> Self {
        let local = LocalKey::Shared(local.clone());
        Self::start(endpoint, upgrade, local, expected_peer, rng, config, now)
    }

    fn start(
        endpoint: Endpoint,
        upgrade: Endpoint,
        local: LocalKey,
        expected_peer: Option<PeerId>,
        rng: &mut Rng,
        config: &ConnectionConfig,
        now: Instant,
    ) -> Self {
        let mut out = Vec::new();
        let mss = Negotiator::new(upgrade, noise::PROTOCOL, &mut out);
        let mut rng = rng.fork();
        let state = match upgrade {
            // `/noise` is our only proposal: the first handshake message goes with it.
            // (Should the handshake fail to start, the negotiation runs first and the
            // error surfaces where it would without the shortcut.)
            Endpoint::Dialer => {
                let mut first = Vec::new();
                match local.handshake(noise::Role::Initiator, expected_peer, &mut rng, &mut first) {
                    Ok(handshake) => {
                        out.extend_from_slice(&first);
                        State::Handshake {
                            noise: Box::new(handshake),
                            confirm: Some(mss),
                        }
                    }
                    Err(_) => State::Security {
                        mss,
                        local,
                        rng: Box::new(rng),
                    },
                }
            }
            Endpoint::Listener => State::Security {
                mss,
                local,
                rng: Box::new(rng),
            },
        };
        let mut conn = Connection {
            endpoint,
            upgrade,
            state,
            expected_peer,
            upgrade_deadline: Some(now + config.upgrade_timeout),
            transmit: BytesMut::new(),
            transmit_blocks: Recycler::default(),
            plaintext: BytesMut::new(),
            plaintext_blocks: Recycler::default(),
            offload: Offload::Off,
            plain: BytesMut::new(),
            scratch: Vec::new(),
            events: VecDeque::new(),
            yamux_config: config.yamux.clone(),
            upgrade_timeout: config.upgrade_timeout,
        };
        conn.transmit.extend_from_slice(&out);
        conn
    }

    // ----- getters -----

    /// Which side of the transport we are.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// Which side of the upgrade we take: [`Connection::endpoint`] unless overridden by
    /// [`Connection::with_upgrade_role`].
    pub fn upgrade_role(&self) -> Endpoint {
        self.upgrade
    }

    /// The authenticated remote peer, once the handshake is done.
    pub fn remote_peer(&self) -> Option<PeerId> {
        match &self.state {
            State::Muxer { peer, .. } => Some(*peer),
            State::Open(open) => Some(open.peer),
            _ => None,
        }
    }

    /// Whether streams can be opened.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The muxer's smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        match &self.state {
            State::Open(open) => open.yamux.rtt(),
            _ => None,
        }
    }

    /// How many streams are open.
    pub fn num_streams(&self) -> usize {
        match &self.state {
            State::Open(open) => open.streams.len(),
            _ => 0,
        }
    }

    // ----- inputs -----

    /// Feeds bytes received from the transport.
    pub fn handle_input(&mut self, now: Instant, input: &[u8], protocols: &Protocols) {
        if let Err(e) = self.process(now, input, protocols) {
            self.fail(e);
        }
    }

    /// The transport reached end of file or failed.
    pub fn handle_eof(&mut self) {
        if !self.is_closed() {
            self.fail(ConnectionError::ClosedByPeer);
        }
    }

    /// Advances timers; call when [`Connection::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.upgrade_deadline.is_some_and(|d| now >= d) {
            self.fail(ConnectionError::UpgradeTimeout);
            return;
        }
        if let State::Open(open) = &mut self.state {
            open.yamux.handle_timeout(now);
            self.drain_yamux(now, &Protocols::default());
        }
    }

    // ----- mutators -----

    /// The transport under the connection is ready (the TCP dial completed, the relay
    /// made the circuit): the upgrade timeout counts from now.
    pub fn transport_ready(&mut self, now: Instant) {
        if self.upgrade_deadline.is_some() {
            self.upgrade_deadline = Some(now + self.upgrade_timeout);
        }
    }

    /// Opens a stream proposing `protocols` in order of preference.
    pub fn open_stream(&mut self, protocols: Vec<String>) -> Result<StreamId, StreamError> {
        let State::Open(open) = &mut self.state else {
            return Err(StreamError::ConnectionNotOpen);
        };
        let stream = open.yamux.open_stream()?;
        self.scratch.clear();
        let dialer = multistream::Dialer::new(protocols, &mut self.scratch);
        open.yamux.write(stream, &self.scratch)?;
        open.streams.insert(stream, Phase::Outbound(dialer));
        Ok(stream)
    }

    /// Queues bytes on a negotiated stream; returns how many were accepted by the send
    /// window. A short write is followed by [`ConnectionEvent::Writable`].
    pub fn write(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let open = self.ready_stream(stream)?;
        Ok(open.yamux.write(stream, data)?)
    }

    /// Half-closes a stream: we send no more.
    pub fn close_stream(&mut self, stream: StreamId) -> Result<(), StreamError> {
        let State::Open(open) = &mut self.state else {
            return Err(StreamError::ConnectionNotOpen);
        };
        Ok(open.yamux.close(stream)?)
    }

    /// Resets a stream in both directions and forgets it.
    pub fn reset_stream(&mut self, stream: StreamId) -> Result<(), StreamError> {
        let State::Open(open) = &mut self.state else {
            return Err(StreamError::ConnectionNotOpen);
        };
        open.streams.remove(&stream);
        Ok(open.yamux.reset(stream)?)
    }

    /// Reports that `n` bytes delivered on `stream` were processed, reopening the peer's
    /// send window.
    pub fn consumed(&mut self, now: Instant, stream: StreamId, n: usize) {
        if let State::Open(open) = &mut self.state {
            open.yamux.consumed(now, stream, n);
        }
    }

    /// Keeps the receive window of `stream` from growing beyond `max` bytes (the
    /// protocol's 256 KiB at least): the most the peer may have in flight to us on it.
    pub fn limit_receive_window(&mut self, stream: StreamId, max: usize) {
        if let State::Open(open) = &mut self.state {
            open.yamux.limit_receive_window(stream, max);
        }
    }

    /// The current receive window of `stream`, if open.
    pub fn receive_window(&self, stream: StreamId) -> Option<usize> {
        match &self.state {
            State::Open(open) => open.yamux.receive_window(stream),
            _ => None,
        }
    }

    /// Closes the connection: sends a Yamux GoAway if open and ends.
    pub fn close(&mut self) {
        if let State::Open(open) = &mut self.state {
            open.yamux.go_away(0);
            let _ = Self::flush_open(
                open,
                &mut self.transmit,
                &mut self.transmit_blocks,
                &mut self.plain,
            );
        }
        if !self.is_closed() {
            self.state = State::Closed;
            self.events
                .push_back(ConnectionEvent::Closed(ConnectionError::ClosedLocally));
        }
    }

    // ----- crypto offload (see `super::offload`) -----

    /// Asks for the transport ciphers, so that the runtime encrypts and decrypts this
    /// connection's bytes itself: [`Connection::poll_offload`] hands them out once the
    /// connection is open. See [`super::offload`] for the whole hand-over.
    pub fn offload_crypto(&mut self) {
        let session = match &mut self.state {
            State::Open(open) => Some(&mut open.noise),
            _ => None,
        };
        self.offload.request(session);
    }

    /// Whether the runtime has the ciphers: input and output are plaintext.
    pub fn is_offloaded(&self) -> bool {
        self.offload.is_done()
    }

    /// The transport ciphers, once, after [`Connection::offload_crypto`]: when the
    /// connection is open and [`Connection::poll_transmit`] has no ciphertext left.
    pub fn poll_offload(&mut self) -> Option<TransportCiphers> {
        if !self.transmit.is_empty() {
            return None;
        }
        self.offload.take()
    }

    /// Plaintext to encrypt with the handed-out send cipher and send, in order.
    pub fn poll_transmit_plain(&mut self) -> Option<BytesMut> {
        if !self.offload.is_done() {
            return None;
        }
        if let State::Open(open) = &mut self.state {
            open.yamux.poll_transmit(&mut self.plain);
        }
        if self.plain.is_empty() {
            return None;
        }
        Some(self.plain.split())
    }

    /// Feeds plaintext the runtime decrypted with the handed-out receive cipher.
    pub fn handle_plaintext(&mut self, now: Instant, input: &Bytes, protocols: &Protocols) {
        let result = match &mut self.state {
            State::Open(open) if self.offload.is_done() => open.feed(now, input),
            State::Closed => return,
            _ => Err(ConnectionError::Noise(
                "plaintext given before the ciphers were handed out".into(),
            )),
        };
        match result {
            Ok(()) => self.drain_yamux(now, protocols),
            Err(e) => self.fail(e),
        }
    }

    // ----- outputs -----

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
    }

    /// All bytes to send to the transport now, if any.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if let State::Open(open) = &mut self.state
            && let Err(e) = Self::flush_open(
                open,
                &mut self.transmit,
                &mut self.transmit_blocks,
                &mut self.plain,
            )
        {
            self.fail(e);
        }
        if self.transmit.is_empty() {
            return None;
        }
        let chunk = self.transmit.split().freeze();
        if chunk.len() < BULK {
            // Traffic is light: let the bulk blocks go with their last chunks rather
            // than hold them for an idle connection.
            self.transmit = BytesMut::new();
            self.transmit_blocks.clear();
        }
        Some(chunk)
    }

    /// When [`Connection::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let muxer = match &self.state {
            State::Open(open) => open.yamux.poll_timeout(),
            _ => None,
        };
        match (self.upgrade_deadline, muxer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----- internals -----

    fn ready_stream(&mut self, stream: StreamId) -> Result<&mut Open, StreamError> {
        let State::Open(open) = &mut self.state else {
            return Err(StreamError::ConnectionNotOpen);
        };
        match open.streams.get(&stream) {
            Some(Phase::Ready) => Ok(open),
            Some(_) => Err(StreamError::NotNegotiated),
            None => Err(StreamError::UnknownStream),
        }
    }

    fn fail(&mut self, error: ConnectionError) {
        if self.is_closed() {
            return;
        }
        tracing::debug!(endpoint = ?self.endpoint, %error, "connection failed");
        if let State::Open(open) = &mut self.state {
            // A GoAway queued by the muxer for a protocol error still goes out.
            let _ = Self::flush_open(
                open,
                &mut self.transmit,
                &mut self.transmit_blocks,
                &mut self.plain,
            );
        }
        self.state = State::Closed;
        self.upgrade_deadline = None;
        self.events.push_back(ConnectionEvent::Closed(error));
    }

    fn process(
        &mut self,
        now: Instant,
        input: &[u8],
        protocols: &Protocols,
    ) -> Result<(), ConnectionError> {
        if self.is_open() {
            // The data path: decrypt straight from the caller's bytes.
            return self.receive_open(now, input, protocols);
        }
        // Negotiation hands what follows it on as `Bytes`; only this phase copies.
        let mut input = Bytes::copy_from_slice(input);
        loop {
            match &mut self.state {
                State::Closed => return Ok(()),
                State::Security { mss, local, rng } => {
                    self.scratch.clear();
                    let negotiated = mss.handle(&input, noise::PROTOCOL, &mut self.scratch)?;
                    self.transmit.extend_from_slice(&self.scratch);
                    let Negotiated::Agreed { rest, .. } = negotiated else {
                        return Ok(());
                    };
                    let role = match self.upgrade {
                        Endpoint::Dialer => noise::Role::Initiator,
                        Endpoint::Listener => noise::Role::Responder,
                    };
                    self.scratch.clear();
                    let handshake =
                        local.handshake(role, self.expected_peer, rng, &mut self.scratch)?;
                    self.transmit.extend_from_slice(&self.scratch);
                    self.state = State::Handshake {
                        noise: Box::new(handshake),
                        confirm: None,
                    };
                    input = rest;
                }
                State::Handshake {
                    confirm: Some(mss), ..
                } => {
                    self.scratch.clear();
                    let negotiated = mss.handle(&input, noise::PROTOCOL, &mut self.scratch)?;
                    self.transmit.extend_from_slice(&self.scratch);
                    let Negotiated::Agreed { rest, .. } = negotiated else {
                        return Ok(());
                    };
                    if let State::Handshake { confirm, .. } = &mut self.state {
                        *confirm = None;
                    }
                    input = rest;
                }
                State::Handshake {
                    noise: handshake,
                    confirm: None,
                } => {
                    self.scratch.clear();
                    let progress = handshake.handle_input(&input, &mut self.scratch)?;
                    self.transmit.extend_from_slice(&self.scratch);
                    let HandshakeProgress::Done(established) = progress else {
                        return Ok(());
                    };
                    let noise::Established {
                        mut session,
                        remote_peer,
                        remote_public_key,
                        rest,
                        ..
                    } = *established;
                    tracing::debug!(peer = %remote_peer, "noise handshake done");
                    self.scratch.clear();
                    if self.upgrade == Endpoint::Dialer {
                        // Our only proposal, with Yamux right behind it.
                        let confirm = multistream::Dialer::new(
                            vec![YAMUX_PROTOCOL.to_owned()],
                            &mut self.scratch,
                        );
                        session.encrypt(&self.scratch, &mut self.transmit)?;
                        self.open(
                            now,
                            session,
                            remote_peer,
                            remote_public_key,
                            Some(confirm),
                            &Bytes::new(),
                            protocols,
                        )?;
                        return match rest.is_empty() {
                            true => Ok(()),
                            false => self.receive_open(now, &rest, protocols),
                        };
                    }
                    let mss = Negotiator::new(self.upgrade, YAMUX_PROTOCOL, &mut self.scratch);
                    if !self.scratch.is_empty() {
                        session.encrypt(&self.scratch, &mut self.transmit)?;
                    }
                    self.state = State::Muxer {
                        noise: Box::new(session),
                        mss,
                        peer: remote_peer,
                        key: remote_public_key,
                    };
                    input = rest;
                }
                State::Muxer {
                    noise,
                    mss,
                    peer,
                    key,
                } => {
                    self.plaintext.clear();
                    noise.decrypt(&input, &mut self.plaintext)?;
                    self.scratch.clear();
                    let negotiated =
                        mss.handle(&self.plaintext, YAMUX_PROTOCOL, &mut self.scratch)?;
                    if !self.scratch.is_empty() {
                        noise.encrypt(&self.scratch, &mut self.transmit)?;
                    }
                    let Negotiated::Agreed { rest, .. } = negotiated else {
                        return Ok(());
                    };
                    let (peer, key) = (*peer, key.clone());
                    let State::Muxer { noise, .. } =
                        std::mem::replace(&mut self.state, State::Closed)
                    else {
                        unreachable!("matched above")
                    };
                    return self.open(now, *noise, peer, key, None, &rest, protocols);
                }
                State::Open(_) => return self.receive_open(now, &input, protocols),
            }
        }
    }

    /// The upgrade is done (or, for a lazy dialer, sent): streams may flow. `rest` is
    /// the plaintext that came behind the muxer negotiation.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        now: Instant,
        noise: noise::Session,
        peer: PeerId,
        key: PublicKey,
        muxer_confirm: Option<multistream::Dialer>,
        rest: &Bytes,
        protocols: &Protocols,
    ) -> Result<(), ConnectionError> {
        let mode = match self.upgrade {
            Endpoint::Dialer => yamux::Mode::Client,
            Endpoint::Listener => yamux::Mode::Server,
        };
        let mut yamux = yamux::Session::new(mode, self.yamux_config.clone(), now);
        self.upgrade_deadline = None;
        self.events.push_back(ConnectionEvent::Established {
            peer,
            public_key: Box::new(key),
        });
        yamux.handle_bytes(now, rest)?;
        let mut open = Box::new(Open {
            peer,
            noise: Some(noise),
            muxer_confirm,
            yamux,
            streams: HashMap::default(),
        });
        self.offload.on_open(&mut open.noise);
        self.state = State::Open(open);
        self.drain_yamux(now, protocols);
        Ok(())
    }

    /// Decrypts transport bytes of an open connection and feeds them to the muxer.
    fn receive_open(
        &mut self,
        now: Instant,
        input: &[u8],
        protocols: &Protocols,
    ) -> Result<(), ConnectionError> {
        let State::Open(open) = &mut self.state else {
            return Ok(());
        };
        let Some(noise) = &mut open.noise else {
            return Err(ConnectionError::Noise(
                "ciphertext given after the ciphers were handed out".into(),
            ));
        };
        self.plaintext.clear();
        if input.len() >= BULK {
            self.plaintext_blocks
                .reserve(&mut self.plaintext, input.len(), TRANSMIT_BUFFER);
        }
        noise.decrypt(input, &mut self.plaintext)?;
        // The muxer hands out slices of the plaintext rather than copies.
        let plaintext = self.plaintext.split().freeze();
        if input.len() < BULK {
            // Light traffic: hold no bulk block for an idle connection.
            self.plaintext = BytesMut::new();
            self.plaintext_blocks.clear();
        }
        open.feed(now, &plaintext)?;
        self.drain_yamux(now, protocols);
        Ok(())
    }

    /// Turns muxer events into connection events, negotiating stream protocols on the way.
    fn drain_yamux(&mut self, now: Instant, protocols: &Protocols) {
        let State::Open(open) = &mut self.state else {
            return;
        };
        let events = &mut self.events;
        let mut ended = false;
        while let Some(event) = open.yamux.poll_event() {
            let event = match event {
                yamux::Event::InboundStream(stream) => {
                    open.streams
                        .insert(stream, Phase::Inbound(multistream::Listener::new()));
                    continue;
                }
                yamux::Event::OutboundAccepted(_) => continue,
                yamux::Event::Data { stream, data } => {
                    Self::negotiate(
                        open,
                        now,
                        stream,
                        data,
                        protocols,
                        &mut self.scratch,
                        events,
                    );
                    continue;
                }
                yamux::Event::Finished(stream) => {
                    ended = true;
                    match open.streams.get(&stream) {
                        Some(Phase::Ready) => ConnectionEvent::Finished(stream),
                        Some(Phase::Outbound(_)) => {
                            open.streams.remove(&stream);
                            let _ = open.yamux.reset(stream);
                            ConnectionEvent::OutboundFailed {
                                stream,
                                error: OpenError::Closed,
                            }
                        }
                        Some(Phase::Inbound(_)) => {
                            open.streams.remove(&stream);
                            let _ = open.yamux.reset(stream);
                            continue;
                        }
                        None => continue,
                    }
                }
                yamux::Event::Reset(stream) => match open.streams.remove(&stream) {
                    Some(Phase::Ready) => ConnectionEvent::Reset(stream),
                    Some(Phase::Outbound(_)) => ConnectionEvent::OutboundFailed {
                        stream,
                        error: OpenError::Closed,
                    },
                    _ => continue,
                },
                yamux::Event::Writable(stream) => match open.streams.get(&stream) {
                    Some(Phase::Ready) => ConnectionEvent::Writable(stream),
                    _ => continue,
                },
                yamux::Event::GoAway { code } => {
                    tracing::debug!(code, "peer sent yamux go-away");
                    continue;
                }
                yamux::Event::Rtt(rtt) => ConnectionEvent::Rtt(rtt),
            };
            events.push_back(event);
        }
        if ended {
            // Streams that both sides finished are gone from the muxer; forget them here too.
            open.streams
                .retain(|id, _| open.yamux.send_window(*id).is_some());
        }
    }

    /// Feeds stream bytes to the stream's negotiation, or passes them through when done.
    fn negotiate(
        open: &mut Open,
        now: Instant,
        stream: StreamId,
        data: Bytes,
        protocols: &Protocols,
        scratch: &mut Vec<u8>,
        events: &mut VecDeque<ConnectionEvent>,
    ) {
        let Some(phase) = open.streams.get_mut(&stream) else {
            // Data for a stream we reset: give the credit back and drop it.
            open.yamux.consumed(now, stream, data.len());
            return;
        };
        let len = data.len();
        scratch.clear();
        let inbound = matches!(phase, Phase::Inbound(_));
        let result = match phase {
            Phase::Ready => {
                events.push_back(ConnectionEvent::Data { stream, data });
                return;
            }
            Phase::Outbound(dialer) => dialer.handle(&data, scratch),
            Phase::Inbound(listener) => listener.handle(&data, |p| protocols.contains(p), scratch),
        };
        if !scratch.is_empty() {
            // Negotiation messages are tiny; the initial window always has room for them.
            let _ = open.yamux.write(stream, scratch);
        }
        match result {
            Ok(Negotiated::Pending) => open.yamux.consumed(now, stream, len),
            Ok(Negotiated::Agreed { protocol, rest }) => {
                open.yamux.consumed(now, stream, len - rest.len());
                *phase = Phase::Ready;
                events.push_back(if inbound {
                    ConnectionEvent::InboundStream { stream, protocol }
                } else {
                    ConnectionEvent::OutboundStream { stream, protocol }
                });
                if !rest.is_empty() {
                    // Data pipelined behind the negotiation belongs to the protocol.
                    events.push_back(ConnectionEvent::Data { stream, data: rest });
                }
            }
            Err(error) => {
                open.streams.remove(&stream);
                let _ = open.yamux.reset(stream);
                if inbound {
                    tracing::debug!(%stream, %error, "inbound stream negotiation failed");
                } else {
                    let error = match error {
                        NegotiationError::NotSupported => OpenError::NotSupported,
                        other => OpenError::Negotiation(other),
                    };
                    events.push_back(ConnectionEvent::OutboundFailed { stream, error });
                }
            }
        }
    }

    /// Encrypts whatever the muxer has queued into `transmit`.
    ///
    /// While bulk data flows, both buffers are recycled rather than allocated per flush:
    /// the muxer's queue moves out without copying and is dropped right after
    /// encryption, so the muxer reclaims that memory on its next write; `transmit` grows
    /// in blocks of [`TRANSMIT_BUFFER`], reused once the socket has written the chunks
    /// [`Connection::poll_transmit`] cut from them.
    fn flush_open(
        open: &mut Open,
        transmit: &mut BytesMut,
        blocks: &mut Recycler,
        plain: &mut BytesMut,
    ) -> Result<(), ConnectionError> {
        let Some(noise) = &mut open.noise else {
            // Offloaded: the runtime encrypts ([`Connection::poll_transmit_plain`]).
            open.yamux.poll_transmit(plain);
            return Ok(());
        };
        let mut plaintext = BytesMut::new();
        if !open.yamux.poll_transmit(&mut plaintext) {
            return Ok(());
        }
        let frames = plaintext.len().div_ceil(noise::MAX_PLAINTEXT);
        let needed = plaintext.len() + frames * NOISE_FRAME_OVERHEAD;
        if needed >= BULK {
            blocks.reserve(transmit, needed, TRANSMIT_BUFFER);
        }
        noise.encrypt(&plaintext, transmit)?;
        Ok(())
    }
}
