//! relay-proto `Node`s on simulated hosts: the runtime that drives them.
//!
//! A [`NodeWorld`] owns a [`World`] and, for some of its hosts, one unmodified
//! `relay_proto::Node` each. It is the simulator's runtime adapter, as `relay-tokio`
//! is the real one: it listens on the node's port, turns [`crate::TcpEvent`]s into
//! `Node::handle_input` calls, carries out every `Output` (transmit, dial, close), arms
//! one world timer per node from `Node::poll_timeout`, and queues the node's events as
//! [`NodeEvent`]s for whoever drives the scenario.
//!
//! Time: simulated time maps onto `Instant`s through a [`SimClock`]; results never
//! depend on its base. Randomness: each node's RNG is seeded from the world's seed, the
//! host and the node's incarnation, so the same seed gives the same run.
//!
//! Dials leave from where the node says (`Output::Dial`'s `DialFrom`): the listen port
//! for ordinary dials when `Config::port_reuse` is on (the default, as libp2p's TCP
//! transport does with `SO_REUSEPORT`), falling back to an ephemeral port when that
//! 4-tuple is taken; the listen port and nothing else for hole-punch dials. So the
//! address a relay observes is the NAT mapping a hole punch reuses, and simultaneous
//! open happens through the simulated NATs as through real ones.
//!
//! Crashes: [`NodeWorld::crash`] drops the node with its host's sockets, silently (a
//! machine that loses power); [`NodeWorld::kill`] drops the node as the operating
//! system ends a killed process: its connections are reset and its port refuses new
//! ones, the host stays up. A restart builds a new node with the same identity and
//! configuration and a fresh RNG stream.
//! [`NodeWorld::leave`] removes a host for good.

mod clock;
mod drive;

pub use clock::SimClock;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Instant;

use relay_proto::identity::Keypair;
use relay_proto::node::{Config, ConnectionId, Event, NodeConfigError};
use relay_proto::{Multiaddr, Node};

use crate::error::NetError;
use crate::host::TimerId;
use crate::invariant::Violation;
use crate::net::HostId;
use crate::tcp::ConnId;
use crate::time::SimTime;
use crate::world::World;

/// The Unix time the nodes believe the run starts at (reservation expiry is Unix
/// seconds on the wire). Fixed, so runs do not depend on the date.
pub const UNIX_START: u64 = 1_800_000_000;

/// What to run on a host.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's settings.
    pub config: Config,
    /// Its identity; kept across restarts.
    pub keypair: Keypair,
    /// The TCP port it listens on.
    pub listen_port: u16,
    /// Protocols the application accepts inbound streams of.
    pub protocols: Vec<String>,
    /// Start AutoRelay (`Config::auto_relay`) when the node boots, as `relay listen`
    /// does: at attach and after every restart.
    pub start_auto_relay: bool,
}

impl NodeSpec {
    /// A node with `config` and `keypair` listening on `listen_port`.
    pub fn new(config: Config, keypair: Keypair, listen_port: u16) -> Self {
        Self {
            config,
            keypair,
            listen_port,
            protocols: Vec::new(),
            start_auto_relay: false,
        }
    }
}

/// Something a node told its application, and when.
#[derive(Debug)]
pub struct NodeEvent {
    /// When.
    pub at: SimTime,
    /// The host whose node it is.
    pub host: HostId,
    /// The event.
    pub event: Event,
}

/// Why a node-level call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// The network refused.
    #[error(transparent)]
    Net(#[from] NetError),
    /// No node is attached to the host.
    #[error("no node on {0}")]
    NoNode(HostId),
    /// A node is already attached to the host.
    #[error("{0} already runs a node")]
    AlreadyAttached(HostId),
    /// The node's host is crashed.
    #[error("the node on {0} is down")]
    Down(HostId),
    /// The node's configuration is invalid.
    #[error("node configuration: {0}")]
    Config(#[from] NodeConfigError),
    /// AutoRelay could not be started.
    #[error("starting auto relay: {0}")]
    AutoRelay(#[from] relay_proto::autorelay::Error),
}

/// A world whose hosts run relay-proto nodes. See the [module docs](self).
#[derive(Debug)]
pub struct NodeWorld {
    world: World,
    clock: SimClock,
    hosts: BTreeMap<HostId, Attached>,
    events: VecDeque<NodeEvent>,
    check_invariants: bool,
    violation: Option<Violation>,
}

/// One host's node and the sockets that carry its connections.
#[derive(Debug)]
struct Attached {
    spec: NodeSpec,
    node: Option<Node>,
    incarnation: u32,
    /// The world timer armed for the node's next timeout.
    timer: Option<(TimerId, SimTime)>,
    /// When the timer last fired.
    last_fire: Option<SimTime>,
    conns: BTreeMap<ConnectionId, ConnId>,
    sockets: BTreeMap<ConnId, Socket>,
}

/// The node connection a socket carries.
#[derive(Debug, Clone, Copy)]
struct Socket {
    conn: ConnectionId,
    /// The dial completed (or the socket was accepted).
    connected: bool,
    /// The node was told the socket ended.
    ended: bool,
}

/// Salt of the node RNG seeds, apart from the world's own streams.
const NODE_SALT: u64 = 3 << 32;

impl NodeWorld {
    /// Wraps a world (build its topology before or after); `clock` maps its time onto
    /// the nodes' instants.
    pub fn new(world: World, clock: SimClock) -> Self {
        Self {
            world,
            clock,
            hosts: BTreeMap::new(),
            events: VecDeque::new(),
            check_invariants: true,
            violation: None,
        }
    }

    /// Whether to check the world's invariants after every step (on by default).
    pub fn set_check_invariants(&mut self, on: bool) {
        self.check_invariants = on;
    }

    // ----- getters -----

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world, to change the topology (links, NATs). Crash and restart hosts that
    /// run nodes through [`NodeWorld::crash`] and [`NodeWorld::restart`] instead.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The current simulated time.
    pub fn now(&self) -> SimTime {
        self.world.now()
    }

    /// The current time as the nodes see it.
    pub fn instant(&self) -> Instant {
        self.clock.instant(self.world.now())
    }

    /// The clock.
    pub fn clock(&self) -> SimClock {
        self.clock
    }

    /// The node on a host, if one is attached and up.
    pub fn node(&self, host: HostId) -> Option<&Node> {
        self.hosts.get(&host)?.node.as_ref()
    }

    /// The spec of a host's node.
    pub fn spec(&self, host: HostId) -> Option<&NodeSpec> {
        self.hosts.get(&host).map(|a| &a.spec)
    }

    /// How many times the host's node was (re)started.
    pub fn incarnation(&self, host: HostId) -> Option<u32> {
        self.hosts.get(&host).map(|a| a.incarnation)
    }

    /// The node's listen address, `/ip4/<host addr>/tcp/<port>`.
    pub fn listen_addr(&self, host: HostId) -> Result<Multiaddr, NodeError> {
        let a = self.hosts.get(&host).ok_or(NodeError::NoNode(host))?;
        let ip = self.world.host_addr(host)?;
        let socket = SocketAddrV4::new(ip, a.spec.listen_port);
        Ok(relay_proto::node::addr::tcp_multiaddr(socket.into()))
    }

    /// The first invariant violation seen, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// Checks the invariants of the node layer: every socket and connection mapping
    /// has its inverse, and the world's own invariants hold.
    pub fn check(&self) -> Result<(), String> {
        if let Some(v) = &self.violation {
            return Err(v.to_string());
        }
        self.world.check_invariants().map_err(|v| v.to_string())?;
        for (host, a) in &self.hosts {
            for (conn, sock) in &a.conns {
                if a.sockets.get(sock).map(|s| s.conn) != Some(*conn) {
                    return Err(format!("{host}: {conn} maps to {sock} but not back"));
                }
            }
            for (sock, s) in &a.sockets {
                if a.conns.get(&s.conn) != Some(sock) {
                    return Err(format!("{host}: {sock} maps to {} but not back", s.conn));
                }
            }
            if a.node.is_none() && !a.conns.is_empty() {
                return Err(format!("{host}: sockets survive a crashed node"));
            }
        }
        Ok(())
    }

    // ----- nodes -----

    /// Starts a node on a host: listens on its port and announces its listen address.
    pub fn attach(&mut self, host: HostId, spec: NodeSpec) -> Result<(), NodeError> {
        if self.hosts.contains_key(&host) {
            return Err(NodeError::AlreadyAttached(host));
        }
        self.hosts.insert(
            host,
            Attached {
                spec,
                node: None,
                incarnation: 0,
                timer: None,
                last_fire: None,
                conns: BTreeMap::new(),
                sockets: BTreeMap::new(),
            },
        );
        if let Err(e) = self.boot(host) {
            self.hosts.remove(&host);
            return Err(e);
        }
        Ok(())
    }

    /// Crashes a host and its node: sockets, connections and timers vanish without a
    /// word to anyone. Peers notice by timeouts or resets.
    pub fn crash(&mut self, host: HostId) -> Result<(), NodeError> {
        self.world.crash_host(host)?;
        if let Some(a) = self.hosts.get_mut(&host) {
            a.node = None;
            a.timer = None;
            a.last_fire = None;
            a.conns.clear();
            a.sockets.clear();
        }
        self.events.retain(|e| e.host != host);
        Ok(())
    }

    /// Kills a host's node as the operating system ends a killed process: every
    /// connection is reset (RST), the listener closes so new connections are refused,
    /// the node and its timer vanish; the host stays up. Peers notice at once.
    pub fn kill(&mut self, host: HostId) -> Result<(), NodeError> {
        let a = self.hosts.get_mut(&host).ok_or(NodeError::NoNode(host))?;
        if a.node.take().is_none() {
            return Ok(());
        }
        let timer = a.timer.take();
        a.last_fire = None;
        a.conns.clear();
        let sockets = std::mem::take(&mut a.sockets);
        let port = a.spec.listen_port;
        if let Some((id, _)) = timer {
            self.world.cancel_timer(id);
        }
        for sock in sockets.keys() {
            // A socket the stack already forgot needs nothing.
            let _ = self.world.tcp_abort(*sock);
        }
        self.world.tcp_unlisten(host, port)?;
        self.events.retain(|e| e.host != host);
        Ok(())
    }

    /// Restarts a crashed host, or a killed node, with a new node of the same identity
    /// and settings.
    pub fn restart(&mut self, host: HostId) -> Result<(), NodeError> {
        if self.world.host_is_up(host) {
            let Some(a) = self.hosts.get_mut(&host) else {
                return Ok(());
            };
            if a.node.is_some() {
                return Ok(());
            }
            a.incarnation = a.incarnation.wrapping_add(1);
            return self.boot(host);
        }
        self.world.restart_host(host)?;
        if let Some(a) = self.hosts.get_mut(&host) {
            a.incarnation = a.incarnation.wrapping_add(1);
        }
        self.boot(host)
    }

    /// Removes a host for good: a peer that leaves.
    pub fn leave(&mut self, host: HostId) -> Result<(), NodeError> {
        self.crash(host)?;
        self.world.remove_host(host)?;
        self.hosts.remove(&host);
        Ok(())
    }

    /// Runs a command on a host's node at the current time, then carries out what it
    /// asked for (the calling contract of `Node`).
    pub fn command<T>(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut Node, Instant) -> T,
    ) -> Result<T, NodeError> {
        let now = self.instant();
        let a = self.hosts.get_mut(&host).ok_or(NodeError::NoNode(host))?;
        let node = a.node.as_mut().ok_or(NodeError::Down(host))?;
        let out = f(node, now);
        self.drain(host);
        Ok(out)
    }

    // ----- time -----

    /// The time of the next event, if any.
    pub fn next_event_time(&self) -> Option<SimTime> {
        self.world.next_event_time()
    }

    /// Processes the next world event and everything the nodes do in answer; returns
    /// its time, or `None` when nothing is queued.
    pub fn step(&mut self) -> Option<SimTime> {
        let at = self.world.step()?;
        while let Some((host, event)) = self.world.poll_event() {
            self.on_host_event(host, event);
        }
        if self.check_invariants
            && self.violation.is_none()
            && let Err(v) = self.world.check_invariants()
        {
            self.violation = Some(v);
        }
        Some(at)
    }

    /// Processes every event up to `until`, then sets the time to `until`.
    pub fn run_until(&mut self, until: SimTime) {
        while self.world.next_event_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.world.run_until(until);
    }

    /// The next node event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// A new node for a host's current incarnation.
    fn boot(&mut self, host: HostId) -> Result<(), NodeError> {
        let now = self.instant();
        let listen = self.listen_addr(host)?;
        let seed = self.world.seed();
        let a = self.hosts.get_mut(&host).ok_or(NodeError::NoNode(host))?;
        let rng_seed = node_seed(seed, host, a.incarnation);
        let mut node = Node::try_new(
            a.spec.config.clone(),
            a.spec.keypair.clone(),
            rng_seed,
            now,
            UNIX_START + self.world.now().as_duration().as_secs(),
        )?;
        for p in &a.spec.protocols {
            node.register_protocol(p.clone());
        }
        node.add_listen_addr(now, listen);
        let port = a.spec.listen_port;
        let start_auto_relay = a.spec.start_auto_relay;
        a.node = Some(node);
        self.world.tcp_listen(host, port)?;
        if start_auto_relay {
            self.command(host, |node, now| node.auto_relay_start(now))??;
        }
        self.drain(host);
        Ok(())
    }
}

/// The 32-byte RNG seed of a node incarnation.
fn node_seed(seed: u64, host: HostId, incarnation: u32) -> [u8; 32] {
    let mut rng = crate::rng::SimRng::new(crate::world::mix(
        seed,
        NODE_SALT | u64::from(host.index()),
        u64::from(incarnation),
    ));
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    out
}
