//! A reference model of one NAT, fed with what crossed it.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use super::Violation;
use crate::nat::{FilteringBehavior, MappingBehavior, NatConfig};
use crate::net::NatId;
use crate::packet::{Protocol, TcpFlags};
use crate::time::SimTime;

/// What the model knows of one external endpoint.
#[derive(Debug, Clone)]
struct Seen {
    internal: SocketAddrV4,
    last: SimTime,
    contacted: Vec<SocketAddrV4>,
    /// Remotes a SYN went to and came from.
    syn_out: Vec<SocketAddrV4>,
    syn_in: Vec<SocketAddrV4>,
}

impl Seen {
    fn new(internal: SocketAddrV4, now: SimTime) -> Self {
        Self {
            internal,
            last: now,
            contacted: Vec::new(),
            syn_out: Vec::new(),
            syn_in: Vec::new(),
        }
    }

    fn handshake_seen(&self) -> bool {
        self.syn_out.iter().any(|r| self.syn_in.contains(r))
    }
}

/// Checks one NAT's translations against RFC 4787/5382 semantics.
///
/// Lifetimes are bounds: a mapping is surely alive within the shortest timeout of its
/// protocol after its last packet, and surely dead after the longest one that can apply
/// (the established timeout only once a SYN went each way).
#[derive(Debug, Clone)]
pub(crate) struct NatModel {
    nat: NatId,
    config: NatConfig,
    seen: BTreeMap<(Protocol, u16), Seen>,
}

impl NatModel {
    pub(crate) fn new(nat: NatId, config: NatConfig) -> Self {
        Self {
            nat,
            config,
            seen: BTreeMap::new(),
        }
    }

    /// Forgets everything (the NAT crashed).
    pub(crate) fn reset(&mut self) {
        self.seen.clear();
    }

    fn surely_alive(&self, protocol: Protocol) -> Duration {
        let t = self.config.timeouts;
        match protocol {
            Protocol::Udp => t.udp,
            Protocol::Tcp => t.tcp_transitory.min(t.tcp_established),
        }
    }

    fn maybe_alive(&self, protocol: Protocol, seen: &Seen) -> Duration {
        let t = self.config.timeouts;
        match protocol {
            Protocol::Udp => t.udp,
            Protocol::Tcp if seen.handshake_seen() => t.tcp_established.max(t.tcp_transitory),
            Protocol::Tcp => t.tcp_transitory,
        }
    }

    /// A packet from `internal` to `remote` left with source `external`.
    pub(crate) fn outbound(
        &mut self,
        now: SimTime,
        protocol: Protocol,
        internal: SocketAddrV4,
        external: SocketAddrV4,
        remote: SocketAddrV4,
        flags: Option<TcpFlags>,
    ) -> Result<(), Violation> {
        let nat = self.nat;
        let surely = self.surely_alive(protocol);
        // Mapping behaviour: a live mapping that covers this destination must be reused.
        for (&(p, port), seen) in &self.seen {
            if p != protocol || port == external.port() || seen.internal != internal {
                continue;
            }
            if now.saturating_since(seen.last) > surely {
                continue;
            }
            let covers = match self.config.mapping {
                MappingBehavior::EndpointIndependent => true,
                MappingBehavior::AddressDependent => {
                    seen.contacted.iter().any(|c| c.ip() == remote.ip())
                }
                MappingBehavior::AddressAndPortDependent => seen.contacted.contains(&remote),
            };
            if covers {
                return Err(Violation::MappingBehavior {
                    nat,
                    at: now,
                    mapping: self.config.mapping,
                    internal,
                    remote,
                    external,
                    existing: SocketAddrV4::new(*external.ip(), port),
                });
            }
        }
        let key = (protocol, external.port());
        let fresh = match self.seen.get(&key) {
            None => true,
            Some(seen) => {
                let gap = now.saturating_since(seen.last);
                if seen.internal != internal && gap <= surely {
                    return Err(Violation::ExternalPortShared {
                        nat,
                        at: now,
                        external,
                        internal: seen.internal,
                        other: internal,
                    });
                }
                seen.internal != internal || gap > self.maybe_alive(protocol, seen)
            }
        };
        if fresh {
            self.seen.insert(key, Seen::new(internal, now));
        }
        let Some(seen) = self.seen.get_mut(&key) else {
            return Ok(());
        };
        seen.last = now;
        if !seen.contacted.contains(&remote) {
            seen.contacted.push(remote);
        }
        if flags.is_some_and(TcpFlags::syn) && !seen.syn_out.contains(&remote) {
            seen.syn_out.push(remote);
        }
        Ok(())
    }

    /// A packet from `remote` to `external` was forwarded inside to `internal`.
    pub(crate) fn inbound(
        &mut self,
        now: SimTime,
        protocol: Protocol,
        remote: SocketAddrV4,
        external: SocketAddrV4,
        internal: SocketAddrV4,
        flags: Option<TcpFlags>,
    ) -> Result<(), Violation> {
        let nat = self.nat;
        let no_mapping = Violation::NoLiveMapping {
            nat,
            at: now,
            protocol,
            remote,
            external,
        };
        let Some(seen) = self.seen.get(&(protocol, external.port())) else {
            return Err(no_mapping);
        };
        if now.saturating_since(seen.last) > self.maybe_alive(protocol, seen) {
            return Err(no_mapping);
        }
        if seen.internal != internal {
            return Err(Violation::WrongInternal {
                nat,
                at: now,
                external,
                expected: seen.internal,
                actual: internal,
            });
        }
        let filtering = self.config.filtering;
        let admitted = match filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => {
                seen.contacted.iter().any(|c| c.ip() == remote.ip())
            }
            FilteringBehavior::AddressAndPortDependent => seen.contacted.contains(&remote),
        };
        if !admitted {
            return Err(Violation::Unfiltered {
                nat,
                at: now,
                protocol,
                remote,
                external,
                filtering,
            });
        }
        let Some(seen) = self.seen.get_mut(&(protocol, external.port())) else {
            return Ok(());
        };
        seen.last = now;
        if flags.is_some_and(TcpFlags::syn) && !seen.syn_in.contains(&remote) {
            seen.syn_in.push(remote);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn sa(d: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, d), port)
    }

    fn public(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), port)
    }

    fn remote(port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), port)
    }

    fn model(config: NatConfig) -> NatModel {
        NatModel::new(NatId(0), config)
    }

    #[test]
    fn flags_a_packet_through_a_closed_filter() {
        let mut m = model(NatConfig::port_restricted_cone());
        let t = SimTime::ZERO;
        m.outbound(t, Protocol::Udp, sa(2, 1), public(1), remote(443), None)
            .unwrap();
        m.inbound(t, Protocol::Udp, remote(443), public(1), sa(2, 1), None)
            .unwrap();
        let err = m
            .inbound(t, Protocol::Udp, remote(444), public(1), sa(2, 1), None)
            .unwrap_err();
        assert!(matches!(err, Violation::Unfiltered { .. }), "{err}");
        let err = m
            .inbound(t, Protocol::Udp, remote(443), public(2), sa(2, 1), None)
            .unwrap_err();
        assert!(matches!(err, Violation::NoLiveMapping { .. }), "{err}");
        let err = m
            .inbound(t, Protocol::Udp, remote(443), public(1), sa(3, 1), None)
            .unwrap_err();
        assert!(matches!(err, Violation::WrongInternal { .. }), "{err}");
    }

    #[test]
    fn flags_a_mapping_used_past_its_lifetime() {
        let config = NatConfig::full_cone();
        let mut m = model(config);
        m.outbound(
            SimTime::ZERO,
            Protocol::Udp,
            sa(2, 1),
            public(1),
            remote(443),
            None,
        )
        .unwrap();
        let late = SimTime::ZERO + config.timeouts.udp + Duration::from_nanos(1);
        let err = m
            .inbound(late, Protocol::Udp, remote(443), public(1), sa(2, 1), None)
            .unwrap_err();
        assert!(matches!(err, Violation::NoLiveMapping { .. }), "{err}");
        // A TCP mapping that never saw a handshake lives only the transitory time.
        let mut m = model(config);
        let syn = Some(TcpFlags::SYN);
        m.outbound(
            SimTime::ZERO,
            Protocol::Tcp,
            sa(2, 1),
            public(1),
            remote(443),
            syn,
        )
        .unwrap();
        let late = SimTime::ZERO + config.timeouts.tcp_transitory + Duration::from_nanos(1);
        assert!(
            m.inbound(late, Protocol::Tcp, remote(443), public(1), sa(2, 1), None)
                .is_err()
        );
    }

    #[test]
    fn flags_broken_mapping_behaviour() {
        let mut m = model(NatConfig::full_cone());
        let t = SimTime::ZERO;
        m.outbound(t, Protocol::Udp, sa(2, 1), public(1), remote(443), None)
            .unwrap();
        let err = m
            .outbound(t, Protocol::Udp, sa(2, 1), public(2), remote(444), None)
            .unwrap_err();
        assert!(matches!(err, Violation::MappingBehavior { .. }), "{err}");
        let err = m
            .outbound(t, Protocol::Udp, sa(3, 1), public(1), remote(443), None)
            .unwrap_err();
        assert!(matches!(err, Violation::ExternalPortShared { .. }), "{err}");
        // Symmetric: a new destination may get a new port, the same one may not.
        let mut m = model(NatConfig::symmetric());
        m.outbound(t, Protocol::Udp, sa(2, 1), public(1), remote(443), None)
            .unwrap();
        m.outbound(t, Protocol::Udp, sa(2, 1), public(2), remote(444), None)
            .unwrap();
        assert!(
            m.outbound(t, Protocol::Udp, sa(2, 1), public(3), remote(444), None)
                .is_err()
        );
    }
}
