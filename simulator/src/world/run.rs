//! Advancing time: processing events, moving packets, crossing NATs.

use std::net::SocketAddrV4;
use std::time::Duration;

use super::trace::TraceEvent;
use super::{Attachment, Event, Life, World};
use crate::host::HostEvent;
use crate::host::stack::StackOutput;
use crate::nat::NatAction;
use crate::net::{Direction, DropReason, HostId, LinkId, NatId, NetworkId};
use crate::packet::{Packet, Protocol, TcpFlags};
use crate::time::SimTime;

/// The header fields of a packet before a NAT rewrote it.
#[derive(Debug, Clone, Copy)]
struct Header {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    protocol: Option<Protocol>,
    flags: Option<TcpFlags>,
}

impl Header {
    fn of(p: &Packet) -> Self {
        Self {
            src: p.src,
            dst: p.dst,
            protocol: p.protocol(),
            flags: p.tcp_segment().map(|s| s.flags),
        }
    }
}

impl World {
    /// The time of the next event, if any.
    pub fn next_event_time(&self) -> Option<SimTime> {
        self.queue.peek_time()
    }

    /// Processes the next event: returns its time, or `None` if nothing is queued.
    pub fn step(&mut self) -> Option<SimTime> {
        let (at, event) = self.queue.pop()?;
        self.now = self.now.max(at);
        self.stats.events += 1;
        match event {
            Event::Arrive {
                link,
                dir,
                epoch,
                packet,
            } => self.on_arrive(link, dir, epoch, packet),
            Event::ConnTimer { conn } => {
                let host = conn.host();
                let now = self.now;
                let _ = self.stack_op(host, |stack, out| {
                    stack.on_timer(now, conn, at, out);
                    Ok(())
                });
            }
            Event::AppTimer {
                host,
                incarnation,
                id,
                token,
            } => {
                let live = self
                    .host(host)
                    .is_ok_and(|h| h.life == Life::Up && h.incarnation == incarnation);
                if self.pending_timers.remove(&id) && live {
                    self.emit(host, HostEvent::Timer { id, token });
                }
            }
        }
        Some(at)
    }

    /// Processes every event up to and including `until`, then sets the time to
    /// `until` (if later than now).
    pub fn run_until(&mut self, until: SimTime) {
        while self.queue.peek_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.now = self.now.max(until);
    }

    /// [`World::run_until`] `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// The next application event, in the order they happened.
    pub fn poll_event(&mut self) -> Option<(HostId, HostEvent)> {
        self.events.pop_front()
    }

    /// Puts a packet on a link.
    pub(super) fn transmit(&mut self, link: LinkId, dir: Direction, packet: Packet) {
        let now = self.now;
        let Some(l) = self.links.get_mut(link.0 as usize) else {
            return self.drop_packet(DropReason::NoRoute, packet);
        };
        if !l.attached {
            return self.drop_packet(DropReason::LinkDown, packet);
        }
        match l.state.transmit(now, dir, packet.wire_len(), &mut self.rng) {
            Ok(arrival) => {
                let epoch = l.state.epoch;
                self.stats.transmitted += 1;
                let toward_network = dir == Direction::Up;
                let event = TraceEvent::Transmitted {
                    link,
                    toward_network,
                    arrival,
                    packet: packet.clone(),
                };
                self.trace.record(now, event);
                self.queue.push(
                    arrival,
                    Event::Arrive {
                        link,
                        dir,
                        epoch,
                        packet,
                    },
                );
            }
            Err(reason) => self.drop_packet(reason, packet),
        }
    }

    fn on_arrive(&mut self, link: LinkId, dir: Direction, epoch: u32, packet: Packet) {
        let Some(l) = self.links.get(link.0 as usize) else {
            return;
        };
        if !l.attached || !l.state.up || l.state.epoch != epoch {
            return self.drop_packet(DropReason::LinkDown, packet);
        }
        let (network, attachment) = (l.network, l.attachment);
        match (dir, attachment) {
            (Direction::Up, _) => self.route(network, link, packet),
            (Direction::Down, Attachment::Host(host)) => self.deliver(host, packet),
            (Direction::Down, Attachment::NatOutside(nat)) => self.cross_nat(nat, false, packet),
            (Direction::Down, Attachment::NatInside(nat)) => self.cross_nat(nat, true, packet),
        }
    }

    /// A packet on a network goes to the member with its destination address, else to
    /// the gateway (unless it came from there).
    fn route(&mut self, network: NetworkId, from: LinkId, packet: Packet) {
        let Some(net) = self.networks.get(network.0 as usize) else {
            return;
        };
        let target = match net.members.get(packet.dst.ip()) {
            Some(&member) => Some(member),
            None => net.gateway.filter(|&g| g != from),
        };
        match target {
            Some(link) => self.transmit(link, Direction::Down, packet),
            None => self.drop_packet(DropReason::NoRoute, packet),
        }
    }

    fn deliver(&mut self, host: HostId, packet: Packet) {
        if !self.host_is_up(host) {
            return self.drop_packet(DropReason::HostDown, packet);
        }
        self.stats.delivered += 1;
        let now = self.now;
        let _ = self.stack_op(host, |stack, out| {
            stack.on_packet(now, packet, out);
            Ok(())
        });
    }

    fn cross_nat(&mut self, nat_id: NatId, from_inside: bool, packet: Packet) {
        let now = self.now;
        let check = self.config.check_nats;
        let Some(nat) = self.nats.get_mut(nat_id.0 as usize) else {
            return;
        };
        if nat.life != Life::Up {
            return self.drop_packet(DropReason::NatDown, packet);
        }
        let before = Header::of(&packet);
        let original = packet.clone();
        let action = if from_inside {
            nat.table.outbound(now, packet)
        } else {
            nat.table.inbound(now, packet)
        };
        let (outside, inside) = (nat.outside, nat.inside);
        let mut verdict = Ok(());
        if check && let Some(protocol) = before.protocol {
            verdict = match (&action, from_inside) {
                (NatAction::ToOutside(p), true) => {
                    nat.model
                        .outbound(now, protocol, before.src, p.src, before.dst, before.flags)
                }
                (NatAction::ToInside(p), true) => nat
                    .model
                    .outbound(now, protocol, before.src, p.src, before.dst, before.flags)
                    .and_then(|()| {
                        nat.model
                            .inbound(now, protocol, p.src, before.dst, p.dst, before.flags)
                    }),
                (NatAction::ToInside(p), false) => {
                    nat.model
                        .inbound(now, protocol, before.src, before.dst, p.dst, before.flags)
                }
                _ => Ok(()),
            };
        }
        if let Err(v) = verdict {
            self.violations.push(v);
        }
        match action {
            NatAction::ToOutside(p) => self.transmit(outside, Direction::Up, p),
            NatAction::ToInside(p) => self.transmit(inside, Direction::Up, p),
            NatAction::Drop(reason) => self.drop_packet(DropReason::Nat(reason), original),
        }
    }

    pub(super) fn drop_packet(&mut self, reason: DropReason, packet: Packet) {
        self.stats.dropped += 1;
        self.trace
            .record(self.now, TraceEvent::Dropped { reason, packet });
    }

    pub(super) fn emit(&mut self, host: HostId, event: HostEvent) {
        self.trace.record(
            self.now,
            TraceEvent::Host {
                host,
                event: event.clone(),
            },
        );
        self.events.push_back((host, event));
    }

    /// Runs `f` on a host's stack, then sends what it produced.
    pub(super) fn stack_op<T>(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut crate::host::stack::Stack, &mut StackOutput) -> Result<T, crate::NetError>,
    ) -> Result<T, crate::NetError> {
        let mut out = std::mem::take(&mut self.scratch);
        let h = self
            .hosts
            .get_mut(host.0 as usize)
            .filter(|h| h.life != Life::Removed);
        let Some(h) = h else {
            self.scratch = out;
            return Err(crate::NetError::UnknownHost(host));
        };
        let link = h.link;
        let result = match h.stack.as_mut() {
            Some(stack) => f(stack, &mut out),
            None => Err(crate::NetError::HostDown(host)),
        };
        for packet in out.tcp.packets.drain(..) {
            self.transmit(link, Direction::Up, packet);
        }
        for event in out.tcp.events.drain(..) {
            self.emit(host, HostEvent::Tcp(event));
        }
        for event in out.udp.drain(..) {
            self.emit(host, HostEvent::Udp(event));
        }
        for (conn, at) in out.timers.drain(..) {
            self.queue.push(at, Event::ConnTimer { conn });
        }
        self.scratch = out;
        result
    }
}
