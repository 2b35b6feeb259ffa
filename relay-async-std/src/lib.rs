//! Drives a [`relay_proto::Node`] on the async-io reactor, the reactor of async-std and
//! smol, so a node runs under either.
//!
//! async-std is discontinued upstream; this adapter depends only on async-io and
//! async-net for sockets and timers. Tasks are spawned on smol's global executor unless
//! the embedding application supplies its own spawner, e.g. `async_std::task::spawn`.
//!
//! Streams implement `futures::io::AsyncRead + AsyncWrite`, the traits async-std and
//! smol use.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use relay_proto::identity::Keypair;
use relay_proto::node::Config;
use relay_runtime::{Accepted, BoxFuture, BoxSocket, Listener, Runtime};

pub use relay_runtime::{Error, Handle as Node, Stream};

type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

/// The async-io implementation of [`relay_runtime::Runtime`].
#[derive(Clone)]
pub struct AsyncIo {
    spawner: Spawner,
}

impl std::fmt::Debug for AsyncIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncIo")
    }
}

impl Default for AsyncIo {
    fn default() -> Self {
        Self::with_spawner(|future| smol::spawn(future).detach())
    }
}

impl AsyncIo {
    /// Spawns tasks with `spawner`, e.g. `|f| { async_std::task::spawn(f); }`.
    pub fn with_spawner(spawner: impl Fn(BoxFuture<()>) + Send + Sync + 'static) -> Self {
        Self {
            spawner: Arc::new(spawner),
        }
    }
}

impl Runtime for AsyncIo {
    fn spawn(&self, future: BoxFuture<()>) {
        (self.spawner)(future)
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()> {
        let timer = async_io::Timer::at(deadline);
        Box::pin(async move {
            timer.await;
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>> {
        Box::pin(async move {
            let socket = async_net::TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let local = socket.local_addr()?;
            Ok((Box::new(socket) as BoxSocket, local))
        })
    }

    fn connect_from(
        &self,
        local: SocketAddr,
        addr: SocketAddr,
    ) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>> {
        Box::pin(async move {
            let socket = relay_runtime::reuse::bound(local)?;
            relay_runtime::reuse::start_connect(&socket, addr)?;
            let stream = async_io::Async::new(std::net::TcpStream::from(socket))?;
            stream.writable().await?;
            relay_runtime::reuse::finish_connect(stream.get_ref())?;
            let socket = async_net::TcpStream::from(stream);
            let local = socket.local_addr()?;
            Ok((Box::new(socket) as BoxSocket, local))
        })
    }

    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>> {
        let std = relay_runtime::reuse::listener(addr)?;
        Ok(Box::new(AsyncIoListener(async_net::TcpListener::try_from(
            std,
        )?)))
    }
}

struct AsyncIoListener(async_net::TcpListener);

impl Listener for AsyncIoListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send + '_>> {
        Box::pin(async move {
            let (socket, remote) = self.0.accept().await?;
            socket.set_nodelay(true)?;
            let local = socket.local_addr()?;
            Ok((Box::new(socket) as BoxSocket, local, remote))
        })
    }
}

/// Configures and starts a node on the async-io reactor.
#[derive(Debug, Default)]
pub struct Builder {
    inner: relay_runtime::Builder,
    runtime: Option<AsyncIo>,
}

impl Builder {
    /// Starts configuring a node.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this identity; without it a fresh ed25519 key is made.
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.inner = self.inner.keypair(keypair);
        self
    }

    /// Uses these node settings.
    pub fn config(mut self, config: Config) -> Self {
        self.inner = self.inner.config(config);
        self
    }

    /// Listens on a TCP address (port 0 picks a free port); may repeat.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.inner = self.inner.listen(addr);
        self
    }

    /// Seeds the node's randomness, for reproducible tests.
    pub fn rng_seed(mut self, seed: [u8; 32]) -> Self {
        self.inner = self.inner.rng_seed(seed);
        self
    }

    /// Offers AutoRelay relay candidates from `source` (see
    /// [`relay_runtime::PeerSource`]).
    pub fn peer_source(mut self, source: impl relay_runtime::PeerSource) -> Self {
        self.inner = self.inner.peer_source(source);
        self
    }

    /// Spawns the node's tasks with this runtime (e.g. one using async-std's spawner).
    pub fn runtime(mut self, runtime: AsyncIo) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Binds the listeners and starts the node.
    pub fn start(self) -> io::Result<Node> {
        self.inner.start(self.runtime.unwrap_or_default())
    }
}
