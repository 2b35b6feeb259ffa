//! Node tests over an in-memory network: [`Net`] wires any number of [`Node`]s, delivers
//! their bytes after a fixed one-way latency, and jumps time to the next event or
//! timeout, in the manner of quinn-proto's `Pair`.
//!
//! Ordinary dials connect at once. Hole punch dials ([`DialFrom::HolePunch`]) send a
//! SYN that takes the link's latency and meets the node's [`Filter`] (a NAT model):
//! two SYNs of the same address pair make a TCP simultaneous open, a SYN reaching an
//! open listener is accepted, and a SYN nobody answers times out.

mod autorelay;
mod prop;
mod punch;
mod relay;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use multiaddr::Multiaddr;

use super::{Config, ConnectionId, DialFrom, Event, Input, Node, Output, StreamRef};
use crate::identity::{PeerId, keypair_from_seed};
use crate::map::Map;

/// The base instant of a test.
pub(super) fn t0() -> Instant {
    crate::test_now()
}

#[derive(Debug)]
enum Delivery {
    Data(Bytes),
    Eof,
    /// A hole punch dial's SYN from `local` reaches `remote`'s node.
    Syn {
        from: usize,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A hole punch dial whose SYN found no answer gives up.
    SynTimeout {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A connection accepted by the kernel reaches the node ([`Net::accept_delay`]).
    Accept {
        from: usize,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// A hole punch dial held back by [`Net::punch_hold`] leaves now.
    Held {
        local: SocketAddr,
        remote: SocketAddr,
    },
}

/// How a node's side of the network treats direct TCP connections: its NAT, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Filter {
    /// No NAT: a listener accepts every SYN.
    #[default]
    Open,
    /// A NAT with endpoint-independent mapping and address-and-port-dependent filtering:
    /// a SYN passes only to a socket that sent one to its source (a simultaneous open).
    Cone,
    /// Every SYN to or from the node is lost (e.g. symmetric NATs on both sides).
    Closed,
}

/// A dial a node asked for, as the network saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DialRecord {
    pub(super) at: Instant,
    pub(super) node: usize,
    pub(super) conn: ConnectionId,
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    pub(super) from: DialFrom,
}

/// How long an unanswered SYN is retried before the dial fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Nodes on a simulated network.
pub(super) struct Net {
    pub(super) nodes: Vec<Node>,
    pub(super) events: Vec<Vec<Event>>,
    pub(super) now: Instant,
    pub(super) latency: Duration,
    queue: BinaryHeap<Reverse<(Instant, u64, usize, ConnectionId)>>,
    payloads: Map<u64, Delivery>,
    seq: u64,
    links: Map<(usize, ConnectionId), (usize, ConnectionId)>,
    next_port: u16,
    /// Each node's NAT model for hole punch dials.
    pub(super) filters: Vec<Filter>,
    /// Extra one-way latency of each node's access link, added to every delivery to or
    /// from it.
    pub(super) access: Vec<Duration>,
    /// How long each node's hole punch dials wait before their SYN leaves (a slow host).
    pub(super) punch_hold: Vec<Duration>,
    /// How long a connection a node's listener accepted from a hole punch SYN takes to
    /// reach the node (a runtime that is slow to hand it over).
    pub(super) accept_delay: Vec<Duration>,
    /// Accepted connections on their way to the node: `(local, remote)` of the
    /// listener's side.
    accepting: Vec<(SocketAddr, SocketAddr)>,
    /// Every dial, in order.
    pub(super) dials: Vec<DialRecord>,
    /// The address pair of every socket: `(node, conn)` to `(local, remote)`.
    sockets: Map<(usize, ConnectionId), (SocketAddr, SocketAddr)>,
    /// Hole punch dials whose SYN is out: `(local, remote)` to `(node, conn)`.
    syn_sent: Map<(SocketAddr, SocketAddr), (usize, ConnectionId)>,
    /// Nodes that stopped: they get no bytes, no timer and no new connection.
    frozen: Vec<bool>,
}

impl Net {
    pub(super) fn new(latency: Duration) -> Self {
        Net {
            nodes: Vec::new(),
            events: Vec::new(),
            now: t0(),
            latency,
            queue: BinaryHeap::new(),
            payloads: Map::default(),
            seq: 0,
            links: Map::default(),
            next_port: 40000,
            filters: Vec::new(),
            access: Vec::new(),
            punch_hold: Vec::new(),
            accept_delay: Vec::new(),
            accepting: Vec::new(),
            dials: Vec::new(),
            sockets: Map::default(),
            syn_sent: Map::default(),
            frozen: Vec::new(),
        }
    }

    /// Adds a node listening on `10.0.0.<index+1>:4001`.
    pub(super) fn add(&mut self, seed: u8, config: Config) -> usize {
        let index = self.nodes.len();
        let mut node = Node::new(
            config,
            keypair_from_seed(seed),
            [seed; 32],
            self.now,
            1_800_000_000,
        );
        node.add_listen_addr(self.now, self.addr(index));
        while node.poll_output().is_some() {}
        self.nodes.push(node);
        self.events.push(Vec::new());
        self.filters.push(Filter::Open);
        self.access.push(Duration::ZERO);
        self.punch_hold.push(Duration::ZERO);
        self.accept_delay.push(Duration::ZERO);
        self.frozen.push(false);
        index
    }

    /// The node that owns `ip`.
    fn node_at(&self, addr: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|&j| self.socket(j).ip() == addr.ip())
    }

    /// One-way latency from node `from` to node `to`.
    fn delay(&self, from: usize, to: usize) -> Duration {
        self.latency + self.access[from] + self.access[to]
    }

    pub(super) fn socket(&self, index: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, index as u8 + 1], 4001))
    }

    /// `/ip4/10.0.0.<index+1>/tcp/4001`.
    pub(super) fn addr(&self, index: usize) -> Multiaddr {
        super::addr::tcp_multiaddr(self.socket(index))
    }

    /// `/ip4/.../tcp/4001/p2p/<peer>`.
    pub(super) fn full_addr(&self, index: usize) -> Multiaddr {
        self.addr(index)
            .with(multiaddr::Protocol::P2p(self.peer(index)))
    }

    pub(super) fn peer(&self, index: usize) -> PeerId {
        self.nodes[index].peer_id()
    }

    /// Stops node `index` as a frozen process would: bytes sent to it are lost, its
    /// timers do not fire, dials to it are never answered; it sends nothing.
    pub(super) fn freeze(&mut self, index: usize) {
        self.frozen[index] = true;
    }

    /// Ends node `index` as a killed process: frozen, and every connection it had
    /// reaches end of file at its peer, as the kernel closes the sockets.
    pub(super) fn kill(&mut self, index: usize) {
        self.freeze(index);
        let mut ends: Vec<(usize, ConnectionId)> = self
            .links
            .iter()
            .filter(|((from, _), _)| *from == index)
            .map(|(_, to)| *to)
            .collect();
        ends.sort();
        for (to, their) in ends {
            self.links
                .retain(|k, v| *k != (to, their) && *v != (to, their));
            self.sockets
                .retain(|k, _| k.0 != index && *k != (to, their));
            self.schedule(index, to, their, Delivery::Eof);
        }
        self.syn_sent.retain(|_, (n, _)| *n != index);
    }

    /// Runs until nothing is left to deliver and no timer is due before `limit`.
    pub(super) fn run_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        self.run_until(end, |_| false);
    }

    /// Runs until `done` holds (checked after every step) or simulated time reaches
    /// `end`; returns whether `done` held.
    pub(super) fn run_until(&mut self, end: Instant, mut done: impl FnMut(&Net) -> bool) -> bool {
        loop {
            self.drain_all();
            if done(self) {
                return true;
            }
            let next_delivery = self.queue.peek().map(|Reverse((t, ..))| *t);
            let next_timer = (0..self.nodes.len())
                .filter(|&i| !self.frozen[i])
                .filter_map(|i| self.nodes[i].poll_timeout())
                .min();
            let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
                return false;
            };
            if next > end {
                self.now = self.now.max(end);
                return false;
            }
            self.now = self.now.max(next);
            while let Some(Reverse((t, seq, to, conn))) = self.queue.peek().copied() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                if self.frozen[to] {
                    self.payloads.remove(&seq);
                    continue;
                }
                match self.payloads.remove(&seq) {
                    Some(Delivery::Data(bytes)) => self.nodes[to].handle_input(
                        self.now,
                        Input::Received {
                            conn,
                            bytes: &bytes,
                        },
                    ),
                    Some(Delivery::Eof) => {
                        self.nodes[to].handle_input(self.now, Input::Closed { conn })
                    }
                    Some(Delivery::Syn {
                        from,
                        local,
                        remote,
                    }) => self.syn_arrives(from, to, local, remote),
                    Some(Delivery::SynTimeout { local, remote })
                        if self.syn_sent.get(&(local, remote)) == Some(&(to, conn)) =>
                    {
                        self.syn_sent.remove(&(local, remote));
                        self.fail_dial(to, conn, "connection timed out");
                    }
                    Some(Delivery::SynTimeout { .. }) => {}
                    Some(Delivery::Accept {
                        from,
                        local,
                        remote,
                    }) => self.accept_now(from, conn, to, local, remote),
                    Some(Delivery::Held { local, remote })
                        if self.pair_taken(to, local, remote) =>
                    {
                        self.fail_dial(to, conn, "address not available")
                    }
                    Some(Delivery::Held { local, remote }) => {
                        self.send_syn(to, conn, local, remote)
                    }
                    None => {}
                }
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                if !self.frozen[i] && self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                    self.drain(i);
                }
            }
        }
    }

    /// Runs until node `index` emits an event matching `f`, within `limit`.
    pub(super) fn wait_for<T>(
        &mut self,
        index: usize,
        limit: Duration,
        mut f: impl FnMut(&Event) -> Option<T>,
    ) -> Option<T> {
        let end = self.now + limit;
        let mut seen = self.events[index].len();
        let mut found = None;
        self.run_until(end, |net| {
            for event in &net.events[index][seen..] {
                if let Some(t) = f(event) {
                    found = Some(t);
                    return true;
                }
            }
            seen = net.events[index].len();
            false
        });
        found
    }

    fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
    }

    fn schedule(&mut self, from: usize, to: usize, conn: ConnectionId, delivery: Delivery) {
        let at = self.now + self.delay(from, to);
        self.schedule_at(at, to, conn, delivery);
    }

    fn schedule_at(&mut self, at: Instant, to: usize, conn: ConnectionId, delivery: Delivery) {
        self.seq += 1;
        self.payloads.insert(self.seq, delivery);
        self.queue.push(Reverse((at, self.seq, to, conn)));
    }

    /// Whether node `i` has a socket (or a SYN out) on this address pair.
    fn pair_taken(&self, i: usize, local: SocketAddr, remote: SocketAddr) -> bool {
        self.syn_sent.contains_key(&(local, remote))
            || self.accepting.contains(&(local, remote))
            || self
                .sockets
                .iter()
                .any(|(&(n, _), &pair)| n == i && pair == (local, remote))
    }

    fn fail_dial(&mut self, i: usize, conn: ConnectionId, error: &str) {
        self.nodes[i].handle_input(
            self.now,
            Input::DialFailed {
                conn,
                error: error.into(),
            },
        );
        self.drain(i);
    }

    /// Connects node `i`'s socket `conn` with node `j`'s `their`.
    fn link(
        &mut self,
        (i, conn, local): (usize, ConnectionId, SocketAddr),
        (j, their, remote): (usize, ConnectionId, SocketAddr),
    ) {
        self.links.insert((i, conn), (j, their));
        self.links.insert((j, their), (i, conn));
        self.sockets.insert((i, conn), (local, remote));
        self.sockets.insert((j, their), (remote, local));
    }

    /// A hole punch dial of node `i` sends its SYN.
    fn send_syn(&mut self, i: usize, conn: ConnectionId, local: SocketAddr, remote: SocketAddr) {
        let Some(j) = self.node_at(remote) else {
            self.fail_dial(i, conn, "no route to host");
            return;
        };
        self.syn_sent.insert((local, remote), (i, conn));
        self.schedule(
            i,
            j,
            conn,
            Delivery::Syn {
                from: i,
                local,
                remote,
            },
        );
        self.schedule_at(
            self.now + CONNECT_TIMEOUT,
            i,
            conn,
            Delivery::SynTimeout { local, remote },
        );
    }

    /// The SYN of node `i`'s dial from `local` reaches `remote` on node `j`.
    fn syn_arrives(&mut self, i: usize, j: usize, local: SocketAddr, remote: SocketAddr) {
        let Some(&(_, conn)) = self.syn_sent.get(&(local, remote)) else {
            return; // the dial gave up
        };
        if self.filters[i] == Filter::Closed || self.filters[j] == Filter::Closed {
            return; // lost; the dial times out
        }
        if let Some((_, their)) = self.syn_sent.remove(&(remote, local)) {
            // Node `j` dialed us from `remote` too: a TCP simultaneous open.
            self.syn_sent.remove(&(local, remote));
            self.link((i, conn, local), (j, their, remote));
            for (n, c, l) in [(i, conn, local), (j, their, remote)] {
                self.nodes[n].handle_input(
                    self.now,
                    Input::Connected {
                        conn: c,
                        local_addr: l,
                    },
                );
                self.drain(n);
            }
            return;
        }
        if self.filters[j] == Filter::Cone {
            return; // unsolicited: dropped by the NAT
        }
        self.syn_sent.remove(&(local, remote));
        if remote != self.socket(j) || self.pair_taken(j, remote, local) {
            self.fail_dial(i, conn, "connection refused");
            return;
        }
        if self.accept_delay[j] > Duration::ZERO {
            self.accepting.push((remote, local));
            let at = self.now + self.accept_delay[j];
            self.schedule_at(
                at,
                j,
                conn,
                Delivery::Accept {
                    from: i,
                    local: remote,
                    remote: local,
                },
            );
            return;
        }
        self.accept_now(i, conn, j, remote, local);
    }

    /// Node `j` learns of the connection its listener at `local` accepted from node
    /// `i`'s dial `conn` (from `remote`); the dial completes.
    fn accept_now(
        &mut self,
        i: usize,
        conn: ConnectionId,
        j: usize,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        self.accepting.retain(|pair| *pair != (local, remote));
        let (remote, local) = (local, remote);
        let Ok(their) = self.nodes[j].accept(self.now, remote, local) else {
            self.fail_dial(i, conn, "connection reset");
            return;
        };
        self.link((i, conn, local), (j, their, remote));
        self.drain(j);
        self.nodes[i].handle_input(
            self.now,
            Input::Connected {
                conn,
                local_addr: local,
            },
        );
        self.drain(i);
    }

    /// An ordinary dial of node `i`: connected (or refused) at once.
    fn dial_now(&mut self, i: usize, conn: ConnectionId, local: SocketAddr, addr: SocketAddr) {
        let target = (0..self.nodes.len()).find(|&j| self.socket(j) == addr);
        if target.is_some_and(|j| self.frozen[j]) {
            return; // a stopped host answers no SYN
        }
        let Some(j) = target else {
            self.fail_dial(i, conn, "connection refused");
            return;
        };
        let Ok(their) = self.nodes[j].accept(self.now, addr, local) else {
            return;
        };
        self.link((i, conn, local), (j, their, addr));
        self.nodes[i].handle_input(
            self.now,
            Input::Connected {
                conn,
                local_addr: local,
            },
        );
        self.drain(j);
    }

    /// Moves node `i`'s outputs onto the network.
    pub(super) fn drain(&mut self, i: usize) {
        while let Some(output) = self.nodes[i].poll_output() {
            match output {
                Output::Transmit { conn, data } => {
                    if let Some(&(to, their)) = self.links.get(&(i, conn)) {
                        self.schedule(i, to, their, Delivery::Data(data));
                    }
                }
                Output::Dial { conn, addr, from } => {
                    self.next_port += 1;
                    let ephemeral = SocketAddr::from(([10, 0, 0, i as u8 + 1], self.next_port));
                    let local = match from {
                        DialFrom::Ephemeral => ephemeral,
                        DialFrom::ListenPort(l) | DialFrom::HolePunch(l) => {
                            SocketAddr::new(self.socket(i).ip(), l.port())
                        }
                    };
                    self.dials.push(DialRecord {
                        at: self.now,
                        node: i,
                        conn,
                        local,
                        remote: addr,
                        from,
                    });
                    let taken = self.pair_taken(i, local, addr);
                    match from {
                        DialFrom::HolePunch(_) if taken => {
                            self.fail_dial(i, conn, "address not available")
                        }
                        DialFrom::HolePunch(_) if self.punch_hold[i] > Duration::ZERO => {
                            let at = self.now + self.punch_hold[i];
                            self.schedule_at(
                                at,
                                i,
                                conn,
                                Delivery::Held {
                                    local,
                                    remote: addr,
                                },
                            );
                        }
                        DialFrom::HolePunch(_) => self.send_syn(i, conn, local, addr),
                        DialFrom::ListenPort(_) if taken => self.dial_now(i, conn, ephemeral, addr),
                        _ => self.dial_now(i, conn, local, addr),
                    }
                }
                Output::Close { conn } => {
                    self.sockets.remove(&(i, conn));
                    self.syn_sent.retain(|_, v| *v != (i, conn));
                    if let Some((to, their)) = self.links.remove(&(i, conn)) {
                        self.links.remove(&(to, their));
                        self.sockets.remove(&(to, their));
                        self.schedule(i, to, their, Delivery::Eof);
                    }
                }
                Output::Event(event) => {
                    self.auto_consume(i, &event);
                    self.events[i].push(event);
                }
            }
        }
    }

    /// Tests act as an application that processes stream data at once.
    fn auto_consume(&mut self, i: usize, event: &Event) {
        if let Event::StreamData { stream, data } = event {
            self.nodes[i].stream_consumed(self.now, *stream, data.len());
        }
    }

    /// Opens an application stream from node `i` over `conn`; runs until it is open.
    pub(super) fn open(
        &mut self,
        i: usize,
        conn: ConnectionId,
        protocol: &str,
    ) -> Option<StreamRef> {
        let stream = self.nodes[i].open_stream(self.now, conn, protocol).ok()?;
        self.wait_for(i, Duration::from_secs(10), |e| match e {
            Event::StreamOpened { stream: s, .. } if *s == stream => Some(()),
            _ => None,
        })?;
        Some(stream)
    }

    /// Bytes received so far on an application stream of node `i`.
    pub(super) fn received(&self, i: usize, stream: StreamRef) -> Vec<u8> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::StreamData { stream: s, data } if *s == stream => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The first connection of node `i` to `peer`.
    pub(super) fn conn_to(&self, i: usize, peer: PeerId) -> Option<ConnectionId> {
        self.nodes[i].connections_to(&peer).first().copied()
    }
}
