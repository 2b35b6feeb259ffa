//! The translation table of one NAT: mappings, filtering state and lifetimes.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::config::{FilteringBehavior, InboundSynPolicy, MappingBehavior, NatConfig, Timeouts};
use super::port::PortAllocator;
use super::session::TcpSession;
use crate::packet::{
    Body, IcmpError, IcmpKind, OriginalHeader, Packet, Protocol, TcpFlags, TcpSegment,
};
use crate::rng::SimRng;
use crate::time::SimTime;

/// What a NAT does with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatAction {
    /// Send this (translated or NAT-generated) packet out of the external side.
    ToOutside(Packet),
    /// Send this translated packet into the internal network.
    ToInside(Packet),
    /// Discard the packet.
    Drop(NatDrop),
}

/// Why a NAT discarded a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatDrop {
    /// No live mapping matches (never created, or expired).
    NoMapping,
    /// A mapping exists but its filter refuses the source.
    Filtered,
    /// Every external port of the range is in use.
    PortsExhausted,
    /// A packet from inside to the NAT's own external address, with hairpinning off.
    HairpinDisabled,
    /// An inbound packet not addressed to the NAT's external address.
    NotForNat,
}

/// A snapshot of one live mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingInfo {
    /// Transport protocol.
    pub protocol: Protocol,
    /// The internal endpoint.
    pub internal: SocketAddrV4,
    /// The external endpoint it is translated to.
    pub external: SocketAddrV4,
    /// Remote endpoints the mapping has sent to: its filtering state.
    pub contacted: Vec<SocketAddrV4>,
    /// The last time a packet used the mapping.
    pub last_activity: SimTime,
    /// The mapping expires after this instant unless a packet refreshes it.
    pub expires_at: SimTime,
}

/// The state of one NAT: a pure state machine fed with time and packets.
///
/// [`NatTable::outbound`] takes packets arriving from inside, [`NatTable::inbound`]
/// packets arriving from outside. Expired mappings are removed before a packet is
/// looked up, so no packet ever uses a mapping past its lifetime.
#[derive(Debug, Clone)]
pub struct NatTable {
    config: NatConfig,
    public_ip: Ipv4Addr,
    rng: SimRng,
    ports: PortAllocator,
    mappings: BTreeMap<u64, Mapping>,
    by_internal: BTreeMap<InternalKey, u64>,
    by_external: BTreeMap<(Protocol, u16), u64>,
    next_id: u64,
    /// No mapping expires before this instant (a lower bound, recomputed on sweeps).
    next_expiry: Option<SimTime>,
}

impl NatTable {
    /// An empty table for a NAT with external address `public_ip`; `seed` drives its
    /// random port choices.
    pub fn new(config: NatConfig, public_ip: Ipv4Addr, seed: u64) -> Self {
        Self {
            config,
            public_ip,
            rng: SimRng::new(seed),
            ports: PortAllocator::new(config.ports, config.port_range),
            mappings: BTreeMap::new(),
            by_internal: BTreeMap::new(),
            by_external: BTreeMap::new(),
            next_id: 0,
            next_expiry: None,
        }
    }

    /// The NAT's configuration.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// The NAT's external address.
    pub fn public_ip(&self) -> Ipv4Addr {
        self.public_ip
    }

    /// Translates a packet that arrived from the internal side.
    pub fn outbound(&mut self, now: SimTime, mut packet: Packet) -> NatAction {
        self.expire(now);
        if *packet.dst.ip() == self.public_ip {
            return self.hairpin(now, packet);
        }
        if let Body::Icmp(err) = packet.body {
            return self.outbound_icmp(packet, err);
        }
        match self.map_outbound(now, &packet) {
            Ok(port) => {
                packet.src = SocketAddrV4::new(self.public_ip, port);
                NatAction::ToOutside(packet)
            }
            Err(drop) => NatAction::Drop(drop),
        }
    }

    /// Translates a packet that arrived from the external side.
    pub fn inbound(&mut self, now: SimTime, mut packet: Packet) -> NatAction {
        self.expire(now);
        if *packet.dst.ip() != self.public_ip {
            return NatAction::Drop(NatDrop::NotForNat);
        }
        let protocol = match &packet.body {
            Body::Icmp(err) => return self.inbound_icmp(packet.clone(), *err),
            Body::Tcp(_) => Protocol::Tcp,
            Body::Udp(_) => Protocol::Udp,
        };
        let Some(&id) = self.by_external.get(&(protocol, packet.dst.port())) else {
            return self.unsolicited(packet, NatDrop::NoMapping);
        };
        let Some(mapping) = self.mappings.get_mut(&id) else {
            return NatAction::Drop(NatDrop::NoMapping);
        };
        if !mapping.permits(self.config.filtering, packet.src) {
            return self.unsolicited(packet, NatDrop::Filtered);
        }
        mapping.touch(now, packet.src, tcp_flags(&packet), false);
        let deadline = mapping.deadline(&self.config.timeouts);
        packet.dst = mapping.internal;
        self.note_deadline(deadline);
        NatAction::ToInside(packet)
    }

    /// The external endpoint a packet from `internal` to `remote` would use now, if a
    /// live mapping for it exists.
    pub fn external_for(
        &self,
        now: SimTime,
        protocol: Protocol,
        internal: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Option<SocketAddrV4> {
        let key = InternalKey {
            protocol,
            internal,
            remote: self.remote_key(remote),
        };
        let mapping = self.mappings.get(self.by_internal.get(&key)?)?;
        (mapping.deadline(&self.config.timeouts) >= now)
            .then(|| SocketAddrV4::new(self.public_ip, mapping.external_port))
    }

    /// The live mappings at `now`, ordered by creation.
    pub fn mappings(&self, now: SimTime) -> Vec<MappingInfo> {
        self.mappings
            .values()
            .filter(|m| m.deadline(&self.config.timeouts) >= now)
            .map(|m| MappingInfo {
                protocol: m.protocol,
                internal: m.internal,
                external: SocketAddrV4::new(self.public_ip, m.external_port),
                contacted: m.contacted.clone(),
                last_activity: m.last_activity,
                expires_at: m.deadline(&self.config.timeouts),
            })
            .collect()
    }

    /// Checks that the table's indexes agree with its mappings.
    pub fn check_consistency(&self) -> Result<(), String> {
        if self.by_internal.len() != self.mappings.len()
            || self.by_external.len() != self.mappings.len()
        {
            return Err(format!(
                "index sizes differ: {} mappings, {} internal, {} external",
                self.mappings.len(),
                self.by_internal.len(),
                self.by_external.len()
            ));
        }
        for (id, m) in &self.mappings {
            let key = InternalKey {
                protocol: m.protocol,
                internal: m.internal,
                remote: m.key,
            };
            if self.by_internal.get(&key) != Some(id)
                || self.by_external.get(&(m.protocol, m.external_port)) != Some(id)
            {
                return Err(format!(
                    "mapping {} -> port {} not indexed",
                    m.internal, m.external_port
                ));
            }
            if let Some(next) = self.next_expiry
                && m.deadline(&self.config.timeouts) < next
            {
                return Err(format!(
                    "mapping {} expires before the sweep time",
                    m.internal
                ));
            }
        }
        Ok(())
    }

    fn hairpin(&mut self, now: SimTime, mut packet: Packet) -> NatAction {
        if !self.config.hairpinning || matches!(packet.body, Body::Icmp(_)) {
            return NatAction::Drop(NatDrop::HairpinDisabled);
        }
        match self.map_outbound(now, &packet) {
            Ok(port) => packet.src = SocketAddrV4::new(self.public_ip, port),
            Err(drop) => return NatAction::Drop(drop),
        }
        match self.inbound(now, packet) {
            NatAction::ToInside(p) => NatAction::ToInside(p),
            // A hairpinned packet the filter refuses gets no RST or ICMP.
            NatAction::ToOutside(_) => NatAction::Drop(NatDrop::Filtered),
            NatAction::Drop(drop) => NatAction::Drop(drop),
        }
    }

    /// Finds or creates the mapping for an outbound packet and refreshes it.
    fn map_outbound(&mut self, now: SimTime, packet: &Packet) -> Result<u16, NatDrop> {
        let protocol = match packet.body {
            Body::Tcp(_) => Protocol::Tcp,
            Body::Udp(_) => Protocol::Udp,
            Body::Icmp(_) => return Err(NatDrop::NoMapping),
        };
        let flags = tcp_flags(packet);
        let key = InternalKey {
            protocol,
            internal: packet.src,
            remote: self.remote_key(packet.dst),
        };
        let id = match self.by_internal.get(&key) {
            Some(&id) => id,
            // A RST never creates state.
            None if flags.is_some_and(TcpFlags::rst) => return Err(NatDrop::NoMapping),
            None => self.create(now, key)?,
        };
        let Some(mapping) = self.mappings.get_mut(&id) else {
            return Err(NatDrop::NoMapping);
        };
        mapping.touch(now, packet.dst, flags, true);
        let (port, deadline) = (
            mapping.external_port,
            mapping.deadline(&self.config.timeouts),
        );
        self.note_deadline(deadline);
        Ok(port)
    }

    fn create(&mut self, now: SimTime, key: InternalKey) -> Result<u64, NatDrop> {
        let by_external = &self.by_external;
        let protocol = key.protocol;
        let port = self
            .ports
            .allocate(protocol, key.internal.port(), &mut self.rng, |p| {
                by_external.contains_key(&(protocol, p))
            })
            .ok_or(NatDrop::PortsExhausted)?;
        let id = self.next_id;
        self.next_id += 1;
        self.mappings.insert(
            id,
            Mapping {
                protocol,
                internal: key.internal,
                external_port: port,
                key: key.remote,
                last_activity: now,
                contacted: Vec::new(),
                sessions: Vec::new(),
            },
        );
        self.by_internal.insert(key, id);
        self.by_external.insert((protocol, port), id);
        Ok(id)
    }

    fn remote_key(&self, remote: SocketAddrV4) -> RemoteKey {
        match self.config.mapping {
            MappingBehavior::EndpointIndependent => RemoteKey::Any,
            MappingBehavior::AddressDependent => RemoteKey::Addr(*remote.ip()),
            MappingBehavior::AddressAndPortDependent => RemoteKey::AddrPort(remote),
        }
    }

    /// The answer to an inbound packet no mapping accepts.
    fn unsolicited(&self, packet: Packet, reason: NatDrop) -> NatAction {
        let Body::Tcp(seg) = &packet.body else {
            return NatAction::Drop(reason);
        };
        if !seg.flags.syn() || seg.flags.ack() {
            return NatAction::Drop(reason);
        }
        match self.config.inbound_syn {
            InboundSynPolicy::Drop => NatAction::Drop(reason),
            InboundSynPolicy::Rst => {
                let ack = seg.seq.wrapping_add(seg.seq_len());
                let rst = TcpSegment::control(TcpFlags::RST | TcpFlags::ACK, 0, ack);
                NatAction::ToOutside(Packet::tcp(packet.dst, packet.src, rst))
            }
            InboundSynPolicy::Icmp => NatAction::ToOutside(Packet {
                src: SocketAddrV4::new(self.public_ip, 0),
                dst: SocketAddrV4::new(*packet.src.ip(), 0),
                body: Body::Icmp(IcmpError {
                    kind: IcmpKind::AdminProhibited,
                    original: OriginalHeader {
                        src: packet.src,
                        dst: packet.dst,
                        protocol: Protocol::Tcp,
                    },
                }),
            }),
        }
    }

    /// An ICMP error from an internal host about a packet it received: the quoted
    /// destination is translated back to the external endpoint (RFC 5508).
    fn outbound_icmp(&self, mut packet: Packet, mut err: IcmpError) -> NatAction {
        let original = err.original;
        let key = InternalKey {
            protocol: original.protocol,
            internal: original.dst,
            remote: self.remote_key(original.src),
        };
        let Some(mapping) = self
            .by_internal
            .get(&key)
            .and_then(|id| self.mappings.get(id))
        else {
            return NatAction::Drop(NatDrop::NoMapping);
        };
        err.original.dst = SocketAddrV4::new(self.public_ip, mapping.external_port);
        packet.src = SocketAddrV4::new(self.public_ip, 0);
        packet.body = Body::Icmp(err);
        NatAction::ToOutside(packet)
    }

    /// An ICMP error about a packet this NAT sent out: forwarded to the internal sender
    /// if the quoted packet matches a mapping and a remote it contacted (RFC 5508).
    fn inbound_icmp(&self, mut packet: Packet, mut err: IcmpError) -> NatAction {
        let original = err.original;
        let Some(mapping) = self
            .by_external
            .get(&(original.protocol, original.src.port()))
            .and_then(|id| self.mappings.get(id))
        else {
            return NatAction::Drop(NatDrop::NoMapping);
        };
        if *original.src.ip() != self.public_ip || !mapping.contacted.contains(&original.dst) {
            return NatAction::Drop(NatDrop::Filtered);
        }
        err.original.src = mapping.internal;
        packet.dst = SocketAddrV4::new(*mapping.internal.ip(), 0);
        packet.body = Body::Icmp(err);
        NatAction::ToInside(packet)
    }

    /// Removes every mapping whose lifetime ended before `now`.
    fn expire(&mut self, now: SimTime) {
        if self.next_expiry.is_none_or(|t| t >= now) {
            return;
        }
        let timeouts = self.config.timeouts;
        let mut next: Option<SimTime> = None;
        let mut dead = Vec::new();
        for (&id, m) in &self.mappings {
            let deadline = m.deadline(&timeouts);
            if deadline < now {
                dead.push(id);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        for id in dead {
            if let Some(m) = self.mappings.remove(&id) {
                self.by_internal.remove(&InternalKey {
                    protocol: m.protocol,
                    internal: m.internal,
                    remote: m.key,
                });
                self.by_external.remove(&(m.protocol, m.external_port));
            }
        }
        self.next_expiry = next;
    }

    fn note_deadline(&mut self, deadline: SimTime) {
        self.next_expiry = Some(self.next_expiry.map_or(deadline, |n| n.min(deadline)));
    }
}

/// The destination part of a mapping's key, as the mapping behaviour requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RemoteKey {
    Any,
    Addr(Ipv4Addr),
    AddrPort(SocketAddrV4),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct InternalKey {
    protocol: Protocol,
    internal: SocketAddrV4,
    remote: RemoteKey,
}

#[derive(Debug, Clone)]
struct Mapping {
    protocol: Protocol,
    internal: SocketAddrV4,
    external_port: u16,
    key: RemoteKey,
    last_activity: SimTime,
    /// Remote endpoints sent to: the filter state.
    contacted: Vec<SocketAddrV4>,
    /// TCP connections through the mapping, by remote endpoint.
    sessions: Vec<(SocketAddrV4, TcpSession)>,
}

impl Mapping {
    fn permits(&self, filtering: FilteringBehavior, src: SocketAddrV4) -> bool {
        match filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => {
                self.contacted.iter().any(|c| c.ip() == src.ip())
            }
            FilteringBehavior::AddressAndPortDependent => self.contacted.contains(&src),
        }
    }

    fn touch(
        &mut self,
        now: SimTime,
        remote: SocketAddrV4,
        flags: Option<TcpFlags>,
        outbound: bool,
    ) {
        self.last_activity = now;
        if outbound && !self.contacted.contains(&remote) {
            self.contacted.push(remote);
        }
        if let Some(flags) = flags {
            match self.sessions.iter_mut().find(|(r, _)| *r == remote) {
                Some((_, s)) => s.observe(flags, outbound),
                None => {
                    let mut s = TcpSession::default();
                    s.observe(flags, outbound);
                    self.sessions.push((remote, s));
                }
            }
        }
    }

    fn lifetime(&self, timeouts: &Timeouts) -> Duration {
        match self.protocol {
            Protocol::Udp => timeouts.udp,
            Protocol::Tcp if self.sessions.iter().any(|(_, s)| s.established()) => {
                timeouts.tcp_established
            }
            Protocol::Tcp => timeouts.tcp_transitory,
        }
    }

    fn deadline(&self, timeouts: &Timeouts) -> SimTime {
        self.last_activity + self.lifetime(timeouts)
    }
}

fn tcp_flags(packet: &Packet) -> Option<TcpFlags> {
    packet.tcp_segment().map(|s| s.flags)
}
