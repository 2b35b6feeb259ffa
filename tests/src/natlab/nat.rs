//! The NAT presets and the nftables rulesets that realise them on a router.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::topology::{LAN_IF, WAN_IF};

/// A NAT preset for one router.
///
/// Every preset shares the same firewall: the router's `forward` and `input` chains
/// drop by default and accept only what conntrack knows (`established,related`) and what
/// comes from the LAN, so an unsolicited packet from the internet is dropped silently
/// (no RST, no ICMP), as home routers do. The presets differ in how the source is
/// rewritten and in what inbound traffic they let through:
///
/// | preset | mapping (RFC 4787) | filtering | rules |
/// |---|---|---|---|
/// | [`Nat::PortRestricted`] | endpoint independent, port preserving | address and port dependent | `masquerade` |
/// | [`Nat::FullCone`] | endpoint independent, port preserving | endpoint independent | `masquerade` + a dynamic map of live mappings that inbound packets are DNATed through |
/// | [`Nat::Symmetric`] | address and port dependent, random ports | address and port dependent | `masquerade fully-random` |
///
/// What Linux does, measured in this lab (`tests/tests/natlab.rs` asserts it):
/// - Plain `masquerade` keeps the source port whenever the resulting 5-tuple is unused,
///   and with one host per LAN it always is, so a socket bound to port P appears as
///   `wan:P` to every destination: endpoint-independent mapping in effect. Strictly the
///   mapping is per conntrack entry (two LAN hosts using the same port towards different
///   destinations would both get P), which RFC 4787 would not call independent; with
///   one host it is indistinguishable.
/// - Conntrack lets in only packets that match an entry exactly (the reply tuple), so
///   filtering is address-and-port dependent: after A sends to `relay:3478`, a packet
///   from `relay:3479` or from the observer is dropped.
/// - `fully-random` picks a fresh random port for every new conntrack entry (every
///   destination address and port), and never preserves the source port.
/// - Full cone has no nftables statement (OpenWrt's `fullcone` is an out-of-tree
///   patch), so it is emulated: after `masquerade`, a filter chain at
///   `srcnat + 10` records each outbound flow's public port and LAN port in the dynamic
///   maps `cone_udp`/`cone_tcp` (refreshed by every outbound packet; elements expire
///   after 120 s for UDP and 7440 s for TCP, RFC 4787 REQ-5 and RFC 5382 REQ-5), and a
///   `dstnat` chain sends any inbound packet to a recorded public port to the LAN host's
///   recorded port. Ports nobody mapped stay closed.
///
/// No preset hairpins (A cannot reach its own router's public address). Conntrack's
/// default timeouts apply to the mappings of `masquerade` (UDP 30 s unreplied, 120 s
/// once replied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nat {
    /// Endpoint-independent, port-preserving mapping with address-and-port-dependent
    /// filtering ("port-restricted cone"): what Linux `masquerade` gives.
    PortRestricted,
    /// Endpoint-independent, port-preserving mapping with endpoint-independent filtering
    /// ("full cone"): anyone may send to a mapped port.
    FullCone,
    /// Address-and-port-dependent mapping with random ports and address-and-port-dependent
    /// filtering ("symmetric").
    Symmetric,
}

/// How a NAT chooses the public address and port of an outbound flow (RFC 4787 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mapping {
    /// One public port per private address and port, whatever the destination.
    EndpointIndependent,
    /// A new public port for every destination address and port.
    AddressAndPortDependent,
}

/// Which inbound packets a NAT lets through to a mapped port (RFC 4787 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filtering {
    /// Packets from anyone.
    EndpointIndependent,
    /// Only packets from an address and port the private host has sent to.
    AddressAndPortDependent,
}

impl Nat {
    /// Every preset.
    pub const ALL: [Nat; 3] = [Nat::PortRestricted, Nat::FullCone, Nat::Symmetric];

    /// A short name for messages and test output.
    pub fn name(self) -> &'static str {
        match self {
            Nat::PortRestricted => "port-restricted",
            Nat::FullCone => "full-cone",
            Nat::Symmetric => "symmetric",
        }
    }

    /// The preset's mapping behaviour.
    pub fn mapping(self) -> Mapping {
        match self {
            Nat::PortRestricted | Nat::FullCone => Mapping::EndpointIndependent,
            Nat::Symmetric => Mapping::AddressAndPortDependent,
        }
    }

    /// The preset's filtering behaviour.
    pub fn filtering(self) -> Filtering {
        match self {
            Nat::FullCone => Filtering::EndpointIndependent,
            Nat::PortRestricted | Nat::Symmetric => Filtering::AddressAndPortDependent,
        }
    }

    /// Whether the public port equals the private port (when it is free).
    pub fn preserves_ports(self) -> bool {
        self.mapping() == Mapping::EndpointIndependent
    }

    /// The complete nftables ruleset of a router with this preset whose LAN host is
    /// `lan_host`, for `nft -f -`.
    pub(crate) fn ruleset(self, lan_host: Ipv4Addr) -> String {
        let masquerade = match self {
            Nat::Symmetric => "masquerade fully-random",
            Nat::PortRestricted | Nat::FullCone => "masquerade",
        };
        let mut rules = String::new();
        // `write!` to a String cannot fail.
        let _ = write!(
            rules,
            r#"table ip natlab {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{LAN_IF}" oifname "{WAN_IF}" accept
"#
        );
        if self == Nat::FullCone {
            let _ = writeln!(
                rules,
                r#"        iifname "{WAN_IF}" oifname "{LAN_IF}" ct status dnat accept"#
            );
        }
        let _ = write!(
            rules,
            r#"    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        iifname "{LAN_IF}" accept
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{WAN_IF}" {masquerade}
    }}
"#
        );
        if self == Nat::FullCone {
            let _ = write!(
                rules,
                r#"    map cone_udp {{
        type inet_service : inet_service; flags dynamic,timeout; timeout 120s;
    }}
    map cone_tcp {{
        type inet_service : inet_service; flags dynamic,timeout; timeout 7440s;
    }}
    chain cone_record {{
        type filter hook postrouting priority srcnat + 10; policy accept;
        oifname "{WAN_IF}" ct direction original meta l4proto udp update @cone_udp {{ ct reply proto-dst : ct original proto-src }}
        oifname "{WAN_IF}" ct direction original meta l4proto tcp update @cone_tcp {{ ct reply proto-dst : ct original proto-src }}
    }}
    chain cone_inbound {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{WAN_IF}" meta l4proto udp dnat to {lan_host} : udp dport map @cone_udp
        iifname "{WAN_IF}" meta l4proto tcp dnat to {lan_host} : tcp dport map @cone_tcp
    }}
"#
            );
        }
        rules.push_str("}\n");
        rules
    }
}

impl std::fmt::Display for Nat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_cone_has_inbound_rules() {
        let host = Ipv4Addr::new(172, 31, 77, 2);
        assert!(Nat::FullCone.ruleset(host).contains("dnat to 172.31.77.2"));
        assert!(!Nat::PortRestricted.ruleset(host).contains("dnat"));
        assert!(Nat::Symmetric.ruleset(host).contains("fully-random"));
        for nat in Nat::ALL {
            assert_eq!(nat.ruleset(host).matches("policy drop").count(), 2, "{nat}");
        }
    }
}
