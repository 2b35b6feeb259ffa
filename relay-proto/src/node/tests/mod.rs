//! Node tests over an in-memory network: [`Net`] wires any number of [`Node`]s, delivers
//! their bytes after a fixed one-way latency, and jumps time to the next event or
//! timeout, in the manner of quinn-proto's `Pair`.

mod prop;
mod relay;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use multiaddr::Multiaddr;

use super::{Config, ConnectionId, Event, Input, Node, Output, StreamRef};
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
}

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
        index
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
            let next_timer = self.nodes.iter().filter_map(Node::poll_timeout).min();
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
                    None => {}
                }
                self.drain(to);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
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

    fn schedule(&mut self, to: usize, conn: ConnectionId, delivery: Delivery) {
        self.seq += 1;
        self.payloads.insert(self.seq, delivery);
        self.queue
            .push(Reverse((self.now + self.latency, self.seq, to, conn)));
    }

    /// Moves node `i`'s outputs onto the network.
    pub(super) fn drain(&mut self, i: usize) {
        while let Some(output) = self.nodes[i].poll_output() {
            match output {
                Output::Transmit { conn, data } => {
                    if let Some(&(to, their)) = self.links.get(&(i, conn)) {
                        self.schedule(to, their, Delivery::Data(data));
                    }
                }
                Output::Dial { conn, addr } => {
                    let target = (0..self.nodes.len()).find(|&j| self.socket(j) == addr);
                    let Some(j) = target else {
                        self.nodes[i].handle_input(
                            self.now,
                            Input::DialFailed {
                                conn,
                                error: "connection refused".into(),
                            },
                        );
                        continue;
                    };
                    self.next_port += 1;
                    let local = SocketAddr::from(([10, 0, 0, i as u8 + 1], self.next_port));
                    let Ok(their) = self.nodes[j].accept(self.now, addr, local) else {
                        continue;
                    };
                    self.links.insert((i, conn), (j, their));
                    self.links.insert((j, their), (i, conn));
                    self.nodes[i].handle_input(
                        self.now,
                        Input::Connected {
                            conn,
                            local_addr: local,
                        },
                    );
                    self.drain(j);
                }
                Output::Close { conn } => {
                    if let Some((to, their)) = self.links.remove(&(i, conn)) {
                        self.links.remove(&(to, their));
                        self.schedule(to, their, Delivery::Eof);
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
