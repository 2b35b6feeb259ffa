//! The TCP/IP stack of one host incarnation: listeners, connections, UDP ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::Bytes;

use crate::error::NetError;
use crate::net::HostId;
use crate::packet::{
    Body, IcmpError, IcmpKind, OriginalHeader, Packet, Protocol, TcpFlags, TcpSegment,
};
use crate::rng::SimRng;
use crate::tcp::conn::{Conn, Output};
use crate::tcp::{ConnId, TcpConfig, TcpState};
use crate::time::SimTime;
use crate::udp::UdpEvent;

/// Linux's default ephemeral port range.
const EPHEMERAL: (u16, u16) = (32768, 60999);

/// What the stack produced while handling an input.
#[derive(Debug, Default)]
pub(crate) struct StackOutput {
    /// Packets to send and TCP events.
    pub(crate) tcp: Output,
    /// UDP events.
    pub(crate) udp: Vec<UdpEvent>,
    /// Timer events to queue: connection and instant.
    pub(crate) timers: Vec<(ConnId, SimTime)>,
}

/// One host's sockets.
#[derive(Debug)]
pub(crate) struct Stack {
    host: HostId,
    incarnation: u32,
    addr: Ipv4Addr,
    rng: SimRng,
    cfg: TcpConfig,
    listeners: BTreeSet<u16>,
    conns: BTreeMap<u32, Conn>,
    tuples: BTreeMap<(u16, SocketAddrV4), u32>,
    next_index: u32,
    next_ephemeral: u16,
    udp: BTreeSet<u16>,
}

impl Stack {
    pub(crate) fn new(
        host: HostId,
        incarnation: u32,
        addr: Ipv4Addr,
        mut rng: SimRng,
        cfg: TcpConfig,
    ) -> Self {
        let span = u64::from(EPHEMERAL.1 - EPHEMERAL.0);
        let offset = u16::try_from(rng.below(span + 1)).unwrap_or(0);
        Self {
            host,
            incarnation,
            addr,
            rng,
            cfg,
            listeners: BTreeSet::new(),
            conns: BTreeMap::new(),
            tuples: BTreeMap::new(),
            next_index: 0,
            next_ephemeral: EPHEMERAL.0 + offset,
            udp: BTreeSet::new(),
        }
    }

    pub(crate) fn listen(&mut self, port: u16) -> Result<(), NetError> {
        if port == 0 || !self.listeners.insert(port) {
            return Err(NetError::PortInUse {
                host: self.host,
                port,
            });
        }
        Ok(())
    }

    pub(crate) fn unlisten(&mut self, port: u16) -> bool {
        self.listeners.remove(&port)
    }

    pub(crate) fn connect(
        &mut self,
        now: SimTime,
        local_port: Option<u16>,
        remote: SocketAddrV4,
        out: &mut StackOutput,
    ) -> Result<ConnId, NetError> {
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(NetError::InvalidAddress(remote));
        }
        let port = match local_port {
            Some(0) => {
                return Err(NetError::PortInUse {
                    host: self.host,
                    port: 0,
                });
            }
            Some(port) => {
                if let Some(&idx) = self.tuples.get(&(port, remote)) {
                    // A tuple in TIME_WAIT is reused, as with SO_REUSEADDR; any other
                    // state holds it.
                    if self
                        .conns
                        .get(&idx)
                        .is_some_and(|c| c.state != TcpState::TimeWait)
                    {
                        return Err(NetError::PortInUse {
                            host: self.host,
                            port,
                        });
                    }
                    self.remove(idx);
                }
                port
            }
            None => self
                .ephemeral_port()
                .ok_or(NetError::NoFreePort(self.host))?,
        };
        let id = self.next_id();
        let local = SocketAddrV4::new(self.addr, port);
        let iss = self.rng.next_u32();
        let conn = Conn::connect(id, local, remote, iss, now, &self.cfg, &mut out.tcp);
        self.insert(conn, out);
        Ok(id)
    }

    pub(crate) fn state(&self, id: ConnId) -> Option<TcpState> {
        self.conn_index(id)
            .and_then(|i| self.conns.get(&i))
            .map(|c| c.state)
    }

    pub(crate) fn send(
        &mut self,
        now: SimTime,
        id: ConnId,
        data: Bytes,
        out: &mut StackOutput,
    ) -> Result<(), NetError> {
        let idx = self.conn_index(id).ok_or(NetError::UnknownConn(id))?;
        let conn = self.conns.get_mut(&idx).ok_or(NetError::UnknownConn(id))?;
        conn.send(now, data, &mut out.tcp)
            .map_err(|_| NetError::NotWritable(id))?;
        self.after(idx, out);
        Ok(())
    }

    pub(crate) fn close(
        &mut self,
        now: SimTime,
        id: ConnId,
        out: &mut StackOutput,
    ) -> Result<(), NetError> {
        let idx = self.conn_index(id).ok_or(NetError::UnknownConn(id))?;
        let conn = self.conns.get_mut(&idx).ok_or(NetError::UnknownConn(id))?;
        conn.close(now, &mut out.tcp);
        self.after(idx, out);
        Ok(())
    }

    pub(crate) fn abort(&mut self, id: ConnId, out: &mut StackOutput) -> Result<(), NetError> {
        let idx = self.conn_index(id).ok_or(NetError::UnknownConn(id))?;
        let conn = self.conns.get_mut(&idx).ok_or(NetError::UnknownConn(id))?;
        conn.abort(&mut out.tcp);
        self.after(idx, out);
        Ok(())
    }

    pub(crate) fn on_timer(
        &mut self,
        now: SimTime,
        id: ConnId,
        at: SimTime,
        out: &mut StackOutput,
    ) {
        let Some(idx) = self.conn_index(id) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&idx) else {
            return;
        };
        if conn.armed == Some(at) {
            conn.armed = None;
        }
        conn.on_timer(now, &self.cfg, &mut out.tcp);
        self.after(idx, out);
    }

    pub(crate) fn udp_bind(&mut self, port: u16) -> Result<(), NetError> {
        if port == 0 || !self.udp.insert(port) {
            return Err(NetError::PortInUse {
                host: self.host,
                port,
            });
        }
        Ok(())
    }

    pub(crate) fn udp_unbind(&mut self, port: u16) -> bool {
        self.udp.remove(&port)
    }

    /// A datagram from `local_port` (bound implicitly if needed).
    pub(crate) fn udp_send(
        &mut self,
        local_port: u16,
        remote: SocketAddrV4,
        data: Bytes,
    ) -> Result<Packet, NetError> {
        if local_port == 0 {
            return Err(NetError::PortInUse {
                host: self.host,
                port: 0,
            });
        }
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(NetError::InvalidAddress(remote));
        }
        self.udp.insert(local_port);
        Ok(Packet::udp(
            SocketAddrV4::new(self.addr, local_port),
            remote,
            data,
        ))
    }

    /// Handles a packet delivered to this host.
    pub(crate) fn on_packet(&mut self, now: SimTime, packet: Packet, out: &mut StackOutput) {
        if *packet.dst.ip() != self.addr {
            return;
        }
        match packet.body {
            Body::Tcp(seg) => self.on_tcp(now, packet.src, packet.dst.port(), &seg, out),
            Body::Udp(bytes) => {
                let local_port = packet.dst.port();
                if self.udp.contains(&local_port) {
                    out.udp.push(UdpEvent::Datagram {
                        local_port,
                        from: packet.src,
                        bytes,
                    });
                } else {
                    out.tcp.packets.push(Packet {
                        src: SocketAddrV4::new(self.addr, 0),
                        dst: SocketAddrV4::new(*packet.src.ip(), 0),
                        body: Body::Icmp(IcmpError {
                            kind: IcmpKind::PortUnreachable,
                            original: OriginalHeader {
                                src: packet.src,
                                dst: packet.dst,
                                protocol: Protocol::Udp,
                            },
                        }),
                    });
                }
            }
            Body::Icmp(err) => {
                let original = err.original;
                if original.protocol != Protocol::Tcp || *original.src.ip() != self.addr {
                    return;
                }
                let Some(&idx) = self.tuples.get(&(original.src.port(), original.dst)) else {
                    return;
                };
                if let Some(conn) = self.conns.get_mut(&idx) {
                    conn.on_icmp(&mut out.tcp);
                }
                self.after(idx, out);
            }
        }
    }

    fn on_tcp(
        &mut self,
        now: SimTime,
        src: SocketAddrV4,
        port: u16,
        seg: &TcpSegment,
        out: &mut StackOutput,
    ) {
        let listening = self.listeners.contains(&port);
        let fresh_syn = seg.flags.syn() && !seg.flags.ack();
        if let Some(&idx) = self.tuples.get(&(port, src)) {
            let time_wait = self
                .conns
                .get(&idx)
                .is_some_and(|c| c.state == TcpState::TimeWait);
            if time_wait && fresh_syn && listening {
                // A new connection on a tuple in TIME_WAIT goes to the listener.
                self.remove(idx);
            } else {
                if let Some(conn) = self.conns.get_mut(&idx) {
                    conn.on_segment(now, seg, &self.cfg, &mut out.tcp);
                }
                self.after(idx, out);
                return;
            }
        }
        if seg.flags.rst() {
            return;
        }
        if fresh_syn && listening {
            let id = self.next_id();
            let local = SocketAddrV4::new(self.addr, port);
            let iss = self.rng.next_u32();
            let conn = Conn::accept(id, local, src, seg, iss, now, &self.cfg, &mut out.tcp);
            self.insert(conn, out);
            return;
        }
        // No connection and no listener: the port is closed.
        let rst = if seg.flags.ack() {
            TcpSegment::control(TcpFlags::RST, seg.ack, 0)
        } else {
            let ack = seg.seq.wrapping_add(seg.seq_len());
            TcpSegment::control(TcpFlags::RST | TcpFlags::ACK, 0, ack)
        };
        out.tcp
            .packets
            .push(Packet::tcp(SocketAddrV4::new(self.addr, port), src, rst));
    }

    fn next_id(&mut self) -> ConnId {
        let index = self.next_index;
        self.next_index = self.next_index.wrapping_add(1);
        ConnId {
            host: self.host,
            incarnation: self.incarnation,
            index,
        }
    }

    fn conn_index(&self, id: ConnId) -> Option<u32> {
        (id.host == self.host && id.incarnation == self.incarnation).then_some(id.index)
    }

    fn insert(&mut self, conn: Conn, out: &mut StackOutput) {
        let idx = conn.id.index;
        self.tuples.insert((conn.local.port(), conn.remote), idx);
        self.conns.insert(idx, conn);
        self.after(idx, out);
    }

    fn remove(&mut self, idx: u32) {
        if let Some(conn) = self.conns.remove(&idx) {
            let key = (conn.local.port(), conn.remote);
            if self.tuples.get(&key) == Some(&idx) {
                self.tuples.remove(&key);
            }
        }
    }

    /// Drops a closed connection, or asks for a timer event if its deadline moved earlier.
    fn after(&mut self, idx: u32, out: &mut StackOutput) {
        let Some(conn) = self.conns.get_mut(&idx) else {
            return;
        };
        if conn.state == TcpState::Closed {
            self.remove(idx);
            return;
        }
        if let Some(deadline) = conn.deadline()
            && conn.armed.is_none_or(|armed| deadline < armed)
        {
            conn.armed = Some(deadline);
            out.timers.push((conn.id, deadline));
        }
    }

    fn ephemeral_port(&mut self) -> Option<u16> {
        let (lo, hi) = EPHEMERAL;
        for _ in lo..=hi {
            let port = self.next_ephemeral;
            self.next_ephemeral = if port >= hi { lo } else { port + 1 };
            let used = self.listeners.contains(&port)
                || self
                    .tuples
                    .range((port, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))..)
                    .next()
                    .is_some_and(|((p, _), _)| *p == port);
            if !used {
                return Some(port);
            }
        }
        None
    }
}
