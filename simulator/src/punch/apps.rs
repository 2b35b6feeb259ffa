//! The applications of the experiment: a relay that reports observed addresses, and
//! two peers that punch.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;

use super::topology::{RELAY, Topology};
use crate::error::NetError;
use crate::host::HostEvent;
use crate::net::HostId;
use crate::oracle::{DirectPath, Opened, Transport};
use crate::tcp::{ConnId, TcpEvent};
use crate::time::SimTime;
use crate::udp::UdpEvent;
use crate::world::World;

/// Timer tokens.
const OBSERVE_RETRY: u64 = 1;
const PUNCH: u64 = 2;
const PUNCH_RETRY: u64 = 3;
/// QUIC-like retransmissions of the punch packets, one a second.
const PUNCH_TRIES: u32 = 5;
/// Delay between learning both addresses and punching.
const PUNCH_DELAY: Duration = Duration::from_millis(1);

const INITIAL: &[u8] = b"initial";
const HANDSHAKE: &[u8] = b"handshake";
const FINISHED: &[u8] = b"finished";
const PROBE: &[u8] = b"punch";
const PING: &[u8] = b"ping";
const WHO_AM_I: &[u8] = b"who";

#[derive(Debug)]
struct Peer {
    host: HostId,
    port: u16,
    relay_conn: Option<ConnId>,
    buf: Vec<u8>,
    observed: Option<SocketAddrV4>,
    target: Option<SocketAddrV4>,
    direct: Vec<(ConnId, Opened)>,
    /// How the connection on which direct data arrived was opened (TCP), or
    /// `Dialed` for QUIC.
    reached: Option<Opened>,
    tries: u32,
}

/// The relay and both peers.
#[derive(Debug)]
pub(super) struct Apps {
    relay: HostId,
    transport: Transport,
    peers: [Peer; 2],
    punch_at: Option<SimTime>,
    done_at: Option<SimTime>,
}

impl Apps {
    /// Opens the sockets and contacts the relay.
    pub(super) fn start(
        world: &mut World,
        topo: &Topology,
        transport: Transport,
    ) -> Result<Self, NetError> {
        let peer = |host, port| Peer {
            host,
            port,
            relay_conn: None,
            buf: Vec::new(),
            observed: None,
            target: None,
            direct: Vec::new(),
            reached: None,
            tries: 0,
        };
        let mut apps = Self {
            relay: topo.relay,
            transport,
            peers: [peer(topo.a, topo.port_a), peer(topo.b, topo.port_b)],
            punch_at: None,
            done_at: None,
        };
        match transport {
            Transport::Tcp => world.tcp_listen(topo.relay, RELAY.port())?,
            Transport::Quic => world.udp_bind(topo.relay, RELAY.port())?,
        }
        for p in &mut apps.peers {
            match transport {
                Transport::Tcp => {
                    world.tcp_listen(p.host, p.port)?;
                    p.relay_conn = Some(world.tcp_connect(p.host, Some(p.port), RELAY)?);
                }
                Transport::Quic => {
                    world.udp_bind(p.host, p.port)?;
                    world.udp_send(p.host, p.port, RELAY, WHO_AM_I)?;
                    world.set_timer(p.host, world.now() + Duration::from_secs(1), OBSERVE_RETRY)?;
                }
            }
        }
        Ok(apps)
    }

    pub(super) fn done(&self) -> bool {
        self.done_at.is_some()
    }

    pub(super) fn punch_start(&self) -> Option<SimTime> {
        self.punch_at
    }

    pub(super) fn observed(&self) -> (Option<SocketAddrV4>, Option<SocketAddrV4>) {
        (self.peers[0].observed, self.peers[1].observed)
    }

    pub(super) fn direct(&self) -> Option<DirectPath> {
        self.done_at?;
        match self.transport {
            Transport::Quic => Some(DirectPath::Quic),
            Transport::Tcp => Some(DirectPath::Tcp {
                a: self.peers[0].reached?,
                b: self.peers[1].reached?,
            }),
        }
    }

    pub(super) fn time_to_direct(&self) -> Option<Duration> {
        Some(self.done_at?.saturating_since(self.punch_at?))
    }

    pub(super) fn on_event(
        &mut self,
        world: &mut World,
        host: HostId,
        event: HostEvent,
    ) -> Result<(), NetError> {
        if host == self.relay {
            return self.on_relay_event(world, event);
        }
        let Some(i) = self.peers.iter().position(|p| p.host == host) else {
            return Ok(());
        };
        match event {
            HostEvent::Tcp(TcpEvent::Data { conn, bytes }) => {
                if self.peers[i].relay_conn == Some(conn) {
                    self.peers[i].buf.extend_from_slice(&bytes);
                    if let Some(addr) = decode(&self.peers[i].buf) {
                        self.learn(world, i, addr)?;
                    }
                } else if let Some(&(_, opened)) =
                    self.peers[i].direct.iter().find(|(c, _)| *c == conn)
                {
                    self.peers[i].reached.get_or_insert(opened);
                    self.check_done(world.now());
                }
            }
            HostEvent::Tcp(TcpEvent::Connected { conn, remote, .. }) if remote != RELAY => {
                self.peers[i].direct.push((conn, Opened::Dialed));
                world.tcp_send(conn, PING)?;
            }
            HostEvent::Tcp(TcpEvent::Accepted { conn, .. }) => {
                self.peers[i].direct.push((conn, Opened::Accepted));
                world.tcp_send(conn, PING)?;
            }
            HostEvent::Tcp(_) => {}
            HostEvent::Udp(UdpEvent::Datagram { from, bytes, .. }) => {
                self.on_datagram(world, i, from, &bytes)?
            }
            HostEvent::Timer { token, .. } => self.on_timer(world, i, token)?,
        }
        Ok(())
    }

    fn on_relay_event(&mut self, world: &mut World, event: HostEvent) -> Result<(), NetError> {
        match event {
            HostEvent::Tcp(TcpEvent::Accepted { conn, remote, .. }) => {
                world.tcp_send(conn, encode(remote))
            }
            HostEvent::Udp(UdpEvent::Datagram { from, .. }) => {
                world.udp_send(self.relay, RELAY.port(), from, encode(from))
            }
            _ => Ok(()),
        }
    }

    fn on_datagram(
        &mut self,
        world: &mut World,
        i: usize,
        from: SocketAddrV4,
        bytes: &[u8],
    ) -> Result<(), NetError> {
        let (host, port, target) = (self.peers[i].host, self.peers[i].port, self.peers[i].target);
        if from == RELAY {
            if let Some(addr) = decode(bytes) {
                self.learn(world, i, addr)?;
            }
            return Ok(());
        }
        match (i, bytes) {
            // B, the QUIC server, answers an Initial at its source address.
            (1, INITIAL) => world.udp_send(host, port, from, HANDSHAKE)?,
            // A, the client, accepts only the address it dialed.
            (0, HANDSHAKE) if Some(from) == target => {
                world.udp_send(host, port, from, FINISHED)?;
                self.peers[0].reached.get_or_insert(Opened::Dialed);
            }
            (1, FINISHED) => {
                self.peers[1].reached.get_or_insert(Opened::Accepted);
                self.check_done(world.now());
            }
            _ => {}
        }
        Ok(())
    }

    fn on_timer(&mut self, world: &mut World, i: usize, token: u64) -> Result<(), NetError> {
        let peer = &mut self.peers[i];
        let (host, port) = (peer.host, peer.port);
        match token {
            OBSERVE_RETRY if peer.observed.is_none() => {
                world.udp_send(host, port, RELAY, WHO_AM_I)?;
                world.set_timer(host, world.now() + Duration::from_secs(1), OBSERVE_RETRY)?;
            }
            PUNCH | PUNCH_RETRY => {
                let Some(target) = peer.target else {
                    return Ok(());
                };
                match self.transport {
                    Transport::Tcp => {
                        // A refused tuple (already connected) is not an error here.
                        let _ = world.tcp_connect(host, Some(port), target);
                    }
                    Transport::Quic if self.done_at.is_none() && peer.tries < PUNCH_TRIES => {
                        peer.tries += 1;
                        let probe = if i == 0 { INITIAL } else { PROBE };
                        world.udp_send(host, port, target, probe)?;
                        world.set_timer(host, world.now() + Duration::from_secs(1), PUNCH_RETRY)?;
                    }
                    Transport::Quic => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A peer learned its observed address; once both have, schedule the punch.
    fn learn(&mut self, world: &mut World, i: usize, addr: SocketAddrV4) -> Result<(), NetError> {
        self.peers[i].observed.get_or_insert(addr);
        let (Some(oa), Some(ob)) = (self.peers[0].observed, self.peers[1].observed) else {
            return Ok(());
        };
        if self.punch_at.is_some() {
            return Ok(());
        }
        let at = world.now() + PUNCH_DELAY;
        self.punch_at = Some(at);
        self.peers[0].target = Some(ob);
        self.peers[1].target = Some(oa);
        for p in &self.peers {
            world.set_timer(p.host, at, PUNCH)?;
        }
        Ok(())
    }

    fn check_done(&mut self, now: SimTime) {
        if self.done_at.is_none() && self.peers.iter().all(|p| p.reached.is_some()) {
            self.done_at = Some(now);
        }
    }
}

fn encode(addr: SocketAddrV4) -> Bytes {
    let mut b = addr.ip().octets().to_vec();
    b.extend_from_slice(&addr.port().to_be_bytes());
    Bytes::from(b)
}

fn decode(b: &[u8]) -> Option<SocketAddrV4> {
    let b: &[u8; 6] = b.get(..6)?.try_into().ok()?;
    Some(SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    ))
}
