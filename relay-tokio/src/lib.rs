//! Drives a [`relay_proto::Node`] with tokio sockets and timers.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let node = relay_tokio::Node::builder().listen("127.0.0.1:0".parse()?).start()?;
//! let peer = node.dial("/ip4/127.0.0.1/tcp/4001".parse()?).await?;
//! let mut stream = node.open_stream(peer, "/echo/1.0.0").await?;
//! stream.write_all(b"hello").await?;
//! stream.shutdown().await?;
//! let mut answer = Vec::new();
//! stream.read_to_end(&mut answer).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

mod socket;

use futures_util_compat::{Compat, FuturesAsyncReadCompatExt};
use relay_proto::Multiaddr;
use relay_proto::identity::{Keypair, PeerId};
use relay_proto::node::{Config, Event};
use relay_runtime::socket::{BoxReader, BoxWriter, downcast_socket, lock_split};
use relay_runtime::{Accepted, BoxFuture, BoxSocket, Listener, Runtime};
use socket::{FuturesIo, TokioSocket};
use tokio_util::compat as futures_util_compat;

pub use relay_runtime::Error;
pub use relay_runtime::futures_channel::UnboundedReceiver;

/// The tokio implementation of [`relay_runtime::Runtime`].
#[derive(Debug, Clone)]
pub struct Tokio(tokio::runtime::Handle);

impl Tokio {
    /// The runtime of the calling task; panics outside a tokio runtime.
    pub fn current() -> Self {
        Self(tokio::runtime::Handle::current())
    }
}

impl Runtime for Tokio {
    fn spawn(&self, future: BoxFuture<()>) {
        self.0.spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>> {
        Box::pin(async move {
            let socket = tokio::net::TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let local = socket.local_addr()?;
            Ok((Box::new(FuturesIo(socket)) as BoxSocket, local))
        })
    }

    fn connect_from(
        &self,
        local: SocketAddr,
        addr: SocketAddr,
    ) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>> {
        let handle = self.0.clone();
        Box::pin(async move {
            let bound = relay_runtime::reuse::bound(local)?;
            let socket = {
                let _guard = handle.enter();
                tokio::net::TcpSocket::from_std_stream(bound.into())
            };
            let socket = socket.connect(addr).await?;
            let local = socket.local_addr()?;
            Ok((Box::new(FuturesIo(socket)) as BoxSocket, local))
        })
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        let std = relay_runtime::reuse::listener(addr)?;
        let _guard = self.0.enter();
        Ok(Box::new(TokioListener(tokio::net::TcpListener::from_std(
            std,
        )?)))
    }

    fn split(&self, socket: BoxSocket) -> (BoxReader, BoxWriter) {
        match downcast_socket::<TokioSocket>(socket) {
            Ok(socket) => {
                let (reader, writer) = socket.into_halves();
                (Box::new(reader), Box::new(writer))
            }
            Err(other) => lock_split(other),
        }
    }
}

struct TokioListener(tokio::net::TcpListener);

impl Listener for TokioListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send + '_>> {
        Box::pin(async move {
            let (socket, remote) = self.0.accept().await?;
            socket.set_nodelay(true)?;
            let local = socket.local_addr()?;
            Ok((Box::new(FuturesIo(socket)) as BoxSocket, local, remote))
        })
    }
}

/// Configures and starts a [`Node`].
#[derive(Debug, Default)]
pub struct Builder(relay_runtime::Builder);

impl Builder {
    /// Uses this identity; without it a fresh ed25519 key is made.
    pub fn keypair(self, keypair: Keypair) -> Self {
        Self(self.0.keypair(keypair))
    }

    /// Uses these node settings.
    pub fn config(self, config: Config) -> Self {
        Self(self.0.config(config))
    }

    /// Listens on a TCP address (port 0 picks a free port); may repeat.
    pub fn listen(self, addr: SocketAddr) -> Self {
        Self(self.0.listen(addr))
    }

    /// Seeds the node's randomness, for reproducible tests.
    pub fn rng_seed(self, seed: [u8; 32]) -> Self {
        Self(self.0.rng_seed(seed))
    }

    /// Offers AutoRelay relay candidates from `source` (see
    /// [`relay_runtime::PeerSource`]).
    pub fn peer_source(self, source: impl relay_runtime::PeerSource) -> Self {
        Self(self.0.peer_source(source))
    }

    /// Binds the listeners and starts the node on the current tokio runtime.
    pub fn start(self) -> io::Result<Node> {
        Ok(Node(self.0.start(Tokio::current())?))
    }
}

/// A running node on tokio: cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct Node(relay_runtime::Handle);

impl Node {
    /// Starts configuring a node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.0.peer_id()
    }

    /// The addresses we listen on.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.0.listen_addrs()
    }

    /// Connects to a TCP multiaddr (optionally ending in `/p2p/PEER`).
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        self.0.dial(addr).await
    }

    /// Asks the relay at `addr` (ending in `/p2p/RELAY`) for a reservation, connecting
    /// to it if needed; the node keeps it renewed.
    pub async fn reserve(&self, addr: Multiaddr) -> Result<relay_runtime::Reservation, Error> {
        self.0.reserve(addr).await
    }

    /// Runs `f` on the node inside its event loop and returns its result.
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut relay_proto::Node, Instant) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.0.with_node(f).await
    }

    /// Opens a stream to a connected peer with `protocol`.
    pub async fn open_stream(&self, peer: PeerId, protocol: &str) -> Result<Stream, Error> {
        Ok(Stream(self.0.open_stream(peer, protocol).await?.compat()))
    }

    /// Accepts inbound streams of `protocol`.
    pub fn accept(&self, protocol: &str) -> Result<Incoming, Error> {
        Ok(Incoming(self.0.accept(protocol)?))
    }

    /// Pings a connected peer once.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, Error> {
        self.0.ping(peer).await
    }

    /// Every node event from now on.
    pub fn events(&self) -> Result<UnboundedReceiver<Event>, Error> {
        self.0.events()
    }

    /// Upgrades the relayed connection to `peer` to a direct one now and waits for the
    /// outcome (the seed's `AttemptHolePunch`).
    pub async fn hole_punch(&self, peer: PeerId) -> Result<relay_runtime::DirectConnection, Error> {
        self.0.hole_punch(peer).await
    }

    /// Enables or disables hole punching.
    pub async fn set_hole_punch_enabled(&self, enabled: bool) -> Result<(), Error> {
        self.0.set_hole_punch_enabled(enabled).await
    }

    /// Counts of finished hole punches.
    pub async fn hole_punch_stats(&self) -> Result<relay_proto::dcutr::HolePunchStats, Error> {
        self.0.hole_punch_stats().await
    }

    /// Closes all connections to `peer`.
    pub fn disconnect(&self, peer: PeerId) -> Result<(), Error> {
        self.0.disconnect(peer)
    }

    /// Closes every connection and stops the node.
    pub async fn shutdown(&self) {
        self.0.shutdown().await
    }

    /// The runtime-independent handle.
    pub fn handle(&self) -> &relay_runtime::Handle {
        &self.0
    }
}

/// Inbound streams of one protocol.
#[derive(Debug)]
pub struct Incoming(UnboundedReceiver<relay_runtime::Stream>);

impl Incoming {
    /// The next inbound stream; `None` once the node stopped.
    pub async fn next(&mut self) -> Option<Stream> {
        use relay_runtime::futures_stream::StreamExt;
        self.0.next().await.map(|s| Stream(s.compat()))
    }
}

/// A stream to a peer implementing tokio's `AsyncRead + AsyncWrite`.
#[derive(Debug)]
pub struct Stream(Compat<relay_runtime::Stream>);

impl Stream {
    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.0.get_ref().peer()
    }

    /// The negotiated protocol.
    pub fn protocol(&self) -> &str {
        self.0.get_ref().protocol()
    }

    /// Resets the stream in both directions.
    pub fn reset(self) {
        self.0.into_inner().reset()
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
