//! The runtime-independent driver of a [`relay_proto::Node`].
//!
//! A [`Runtime`] supplies what differs between async runtimes: spawning, a timer and TCP
//! sockets. Everything else, the event loop that feeds sockets to the node and hands
//! streams to the application, lives here once and is shared by `relay-tokio` and
//! `relay-async-std`, in the way quinn keeps its runtimes behind one small trait.
//!
//! The loop runs as one task: commands from [`Handle`]s first, then socket events, then
//! the timer. Each socket has a reader task and a writer task of its own.
//!
//! [`perf`] is the perf benchmarking protocol as plain stream I/O over the
//! `futures::io` traits, so it runs on any runtime and over any libp2p stream.

mod autorelay;
mod driver;
pub mod perf;
pub mod reuse;
mod stream;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncRead, AsyncWrite};
use relay_proto::Multiaddr;
use relay_proto::identity::{Keypair, PeerId};
use relay_proto::node::{Config, DialError, Event};

pub use autorelay::PeerSource;
pub use stream::Stream;

/// The channel types handles return, re-exported for adapters.
pub use futures::channel::mpsc as futures_channel;
/// Stream combinators for the receivers handles return.
pub use futures::stream as futures_stream;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A connected TCP socket as a runtime provides it.
pub trait Socket: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Socket for T {}

/// A boxed socket.
pub type BoxSocket = Box<dyn Socket>;

/// An accepted connection: the socket, its local and its remote address.
pub type Accepted = (BoxSocket, SocketAddr, SocketAddr);

/// A bound TCP listener as a runtime provides it.
pub trait Listener: Send + 'static {
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Waits for the next connection: the socket, its local and its remote address.
    fn accept(&mut self) -> Pin<Box<dyn Future<Output = io::Result<Accepted>> + Send + '_>>;
}

/// What an async runtime supplies to the driver.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Runs a future in the background.
    fn spawn(&self, future: BoxFuture<()>);
    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<()>;
    /// Connects to `addr`; returns the socket and its local address.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>>;
    /// Connects to `addr` from `local`, a port we listen on: the socket gets
    /// `SO_REUSEADDR` and `SO_REUSEPORT` before it is bound ([`reuse::bound`]), so it
    /// shares the listener's port and a NAT maps it as it maps the listener. No other
    /// port is tried; the driver falls back to [`Runtime::connect`] where the node
    /// allows it.
    fn connect_from(
        &self,
        local: SocketAddr,
        addr: SocketAddr,
    ) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>>;
    /// Binds a TCP listener with `SO_REUSEADDR` and `SO_REUSEPORT`
    /// ([`reuse::listener`]), so that dials can go out from its port.
    fn bind(&self, addr: SocketAddr) -> io::Result<Box<dyn Listener>>;
}

/// Why an operation of a [`Handle`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The node has shut down.
    #[error("the node is not running")]
    NotRunning,
    /// A dial failed.
    #[error("dial failed: {0}")]
    Dial(#[from] DialError),
    /// There is no connection to the peer.
    #[error("not connected to {0}")]
    NotConnected(PeerId),
    /// A stream could not be opened.
    #[error("stream: {0}")]
    Stream(String),
    /// A relay refused or lost our reservation.
    #[error("reservation: {0}")]
    Reservation(String),
    /// A ping failed.
    #[error("ping: {0}")]
    Ping(String),
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(String),
    /// A hole punch could not start, or ended without a direct connection.
    #[error("hole punch: {0}")]
    HolePunch(String),
    /// An AutoRelay command failed (not enabled, a bad relay address).
    #[error("auto relay: {0}")]
    AutoRelay(String),
}

/// A direct connection a hole punch made ([`Handle::hole_punch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectConnection {
    /// The relayed connection it upgraded.
    pub relayed: relay_proto::ConnectionId,
    /// The direct connection.
    pub conn: relay_proto::ConnectionId,
    /// The peer's address on it.
    pub addr: Multiaddr,
    /// The attempt that made it (`0`: the direct dial before any exchange).
    pub attempt: u32,
    /// Time from the start of the hole punch to the direct connection.
    pub elapsed: Duration,
}

/// Configures and starts a node.
#[derive(Default)]
pub struct Builder {
    keypair: Option<Keypair>,
    config: Config,
    listen: Vec<SocketAddr>,
    rng_seed: Option<[u8; 32]>,
    peer_source: Option<Arc<dyn PeerSource>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("keypair", &self.keypair)
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("peer_source", &self.peer_source.is_some())
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Uses this identity; without it a fresh ed25519 key is made.
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// Uses these node settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Listens on a TCP address (port 0 picks a free port); may repeat.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen.push(addr);
        self
    }

    /// Seeds the node's randomness (for reproducible tests); without it the OS seeds it.
    pub fn rng_seed(mut self, seed: [u8; 32]) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Offers AutoRelay relay candidates from `source` (`Config::auto_relay` must be
    /// set, with `enable_dynamic`); each query is given `peer_source_timeout`.
    pub fn peer_source(mut self, source: impl PeerSource) -> Self {
        self.peer_source = Some(Arc::new(source));
        self
    }

    /// Binds the listeners and starts the node's event loop on `runtime`.
    pub fn start<R: Runtime>(self, runtime: R) -> io::Result<Handle> {
        let keypair = match self.keypair {
            Some(k) => k,
            None => relay_proto::identity::keypair_from_secret(os_random()?),
        };
        let seed = match self.rng_seed {
            Some(s) => s,
            None => os_random()?,
        };
        let unix_now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let peer_source_timeout = self
            .config
            .auto_relay
            .as_ref()
            .map(|a| a.peer_source_timeout);
        let node = relay_proto::Node::try_new(self.config, keypair, seed, Instant::now(), unix_now)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let peer_id = node.peer_id();
        let mut listeners = Vec::new();
        for addr in self.listen {
            listeners.push(runtime.bind(addr)?);
        }
        let (commands, receiver) = mpsc::unbounded();
        // Subscribed before the loop starts, so that no query is missed.
        let queries = match (self.peer_source, peer_source_timeout) {
            (Some(source), Some(timeout)) => {
                let (sender, events) = mpsc::unbounded();
                let _ = commands.unbounded_send(Command::Subscribe { sender });
                Some((source, timeout, events))
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            listen_addrs: Mutex::new(Vec::new()),
        });
        driver::start(
            runtime.clone(),
            node,
            listeners,
            receiver,
            commands.clone(),
            shared.clone(),
        )?;
        let handle = Handle {
            peer_id,
            commands,
            shared,
        };
        if let Some((source, timeout, events)) = queries {
            let answering =
                autorelay::answer_queries(runtime.clone(), handle.clone(), events, source, timeout);
            runtime.spawn(Box::pin(answering));
        }
        Ok(handle)
    }
}

fn os_random() -> io::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(seed)
}

/// State the driver publishes for handles to read without a round trip.
#[derive(Debug)]
struct Shared {
    listen_addrs: Mutex<Vec<Multiaddr>>,
}

/// Commands from handles and streams to the driver.
/// A closure run on the node inside the driver.
pub(crate) type NodeFn = Box<dyn FnOnce(&mut relay_proto::Node, Instant) + Send>;

pub(crate) enum Command {
    /// Runs a closure on the node inside the driver.
    Inspect(NodeFn),
    Reserve {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<Reservation, Error>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, Error>>,
    },
    OpenStream {
        peer: PeerId,
        protocol: String,
        reply: oneshot::Sender<Result<Stream, Error>>,
    },
    Accept {
        protocol: String,
        sender: mpsc::UnboundedSender<Stream>,
    },
    Ping {
        peer: PeerId,
        reply: oneshot::Sender<Result<Duration, Error>>,
    },
    Subscribe {
        sender: mpsc::UnboundedSender<Event>,
    },
    Disconnect {
        peer: PeerId,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    Stream(stream::StreamCommand),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Inspect(_) => f.write_str("Inspect"),
            Command::Reserve { addr, .. } => write!(f, "Reserve({addr})"),
            Command::Dial { addr, .. } => write!(f, "Dial({addr})"),
            Command::OpenStream { peer, protocol, .. } => {
                write!(f, "OpenStream({peer}, {protocol})")
            }
            Command::Accept { protocol, .. } => write!(f, "Accept({protocol})"),
            Command::Ping { peer, .. } => write!(f, "Ping({peer})"),
            Command::Subscribe { .. } => f.write_str("Subscribe"),
            Command::Disconnect { peer } => write!(f, "Disconnect({peer})"),
            Command::Shutdown { .. } => f.write_str("Shutdown"),
            Command::Stream(c) => write!(f, "Stream({c:?})"),
        }
    }
}

/// A reservation a relay granted us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The relay.
    pub relay: PeerId,
    /// When it expires, in Unix seconds (it is renewed before).
    pub expire_unix: u64,
    /// Our addresses through the relay.
    pub addrs: Vec<Multiaddr>,
    /// The relay's limit on each relayed connection.
    pub limit: relay_proto::circuit::limit::Limit,
}

/// A running node: cheap to clone, usable from any task.
#[derive(Debug, Clone)]
pub struct Handle {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl Handle {
    /// Starts configuring a node.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Our PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses we listen on, each ending in `/p2p/<our id>`-less form.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.shared
            .listen_addrs
            .lock()
            .expect("not poisoned")
            .clone()
    }

    /// Connects to a TCP multiaddr (optionally ending in `/p2p/PEER`, which is then
    /// verified); returns the remote peer once the connection is established.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Dial { addr, reply })?;
        answer.await.map_err(|_| Error::NotRunning)?
    }

    /// Asks the relay at `addr` (ending in `/p2p/RELAY`) for a reservation, connecting
    /// to it if needed; the node keeps it renewed. Later changes arrive as events.
    pub async fn reserve(&self, addr: Multiaddr) -> Result<Reservation, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Reserve { addr, reply })?;
        answer.await.map_err(|_| Error::NotRunning)?
    }

    /// Runs `f` on the node inside its event loop and returns its result: the way to
    /// read state (relay usage, circuits, reservations) or call any node method.
    pub async fn with_node<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut relay_proto::Node, Instant) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Inspect(Box::new(move |node, now| {
            let _ = reply.send(f(node, now));
        })))?;
        answer.await.map_err(|_| Error::NotRunning)
    }

    /// Opens a stream to a connected peer with `protocol`.
    pub async fn open_stream(&self, peer: PeerId, protocol: &str) -> Result<Stream, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::OpenStream {
            peer,
            protocol: protocol.to_owned(),
            reply,
        })?;
        answer.await.map_err(|_| Error::NotRunning)?
    }

    /// Accepts inbound streams of `protocol`; they arrive on the returned receiver.
    pub fn accept(&self, protocol: &str) -> Result<mpsc::UnboundedReceiver<Stream>, Error> {
        let (sender, receiver) = mpsc::unbounded();
        self.send(Command::Accept {
            protocol: protocol.to_owned(),
            sender,
        })?;
        Ok(receiver)
    }

    /// Pings a connected peer once.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ping { peer, reply })?;
        answer.await.map_err(|_| Error::NotRunning)?
    }

    /// Upgrades the relayed connection to `peer` to a direct one now (the seed's
    /// `AttemptHolePunch`, see [`relay_proto::Node::hole_punch`]) and waits for the
    /// outcome.
    pub async fn hole_punch(&self, peer: PeerId) -> Result<DirectConnection, Error> {
        use futures::StreamExt;
        let mut events = self.events()?;
        let relayed = self
            .with_node(move |node, now| node.hole_punch(now, peer))
            .await?
            .map_err(|e| Error::HolePunch(e.to_string()))?;
        while let Some(event) = events.next().await {
            match event {
                Event::HolePunchSucceeded {
                    relayed: r,
                    attempt,
                    elapsed,
                    direct,
                    addr,
                    ..
                } if r == relayed => {
                    return Ok(DirectConnection {
                        relayed,
                        conn: direct,
                        addr,
                        attempt,
                        elapsed,
                    });
                }
                Event::HolePunchFailed {
                    relayed: r,
                    attempts,
                    reason,
                    ..
                } if r == relayed => {
                    return Err(Error::HolePunch(format!(
                        "{reason} after {attempts} attempt(s)"
                    )));
                }
                _ => {}
            }
        }
        Err(Error::NotRunning)
    }

    /// Enables or disables hole punching (the seed's `EnableHolePunch` and
    /// `DisableHolePunch`).
    pub async fn set_hole_punch_enabled(&self, enabled: bool) -> Result<(), Error> {
        self.with_node(move |node, now| node.set_hole_punch_enabled(now, enabled))
            .await
    }

    /// Counts of finished hole punches (the seed's `GetHolePunchStats`).
    pub async fn hole_punch_stats(&self) -> Result<relay_proto::dcutr::HolePunchStats, Error> {
        self.with_node(|node, _| node.hole_punch_stats().clone())
            .await
    }

    /// Every node event from now on.
    pub fn events(&self) -> Result<mpsc::UnboundedReceiver<Event>, Error> {
        let (sender, receiver) = mpsc::unbounded();
        self.send(Command::Subscribe { sender })?;
        Ok(receiver)
    }

    /// Closes all connections to `peer`.
    pub fn disconnect(&self, peer: PeerId) -> Result<(), Error> {
        self.send(Command::Disconnect { peer })
    }

    /// Closes every connection, flushes the sockets and stops the node.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).is_ok() {
            let _ = answer.await;
        }
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .unbounded_send(command)
            .map_err(|_| Error::NotRunning)
    }
}
