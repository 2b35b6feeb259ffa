//! The dimensions of NAT behaviour and the presets built from them.

use std::fmt;
use std::time::Duration;

/// How a NAT chooses the external endpoint for packets from one internal endpoint
/// (RFC 4787 section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MappingBehavior {
    /// One external endpoint for every destination ("EIM").
    EndpointIndependent,
    /// One external endpoint per destination address ("ADM").
    AddressDependent,
    /// One external endpoint per destination address and port ("APDM"), the
    /// "symmetric" NAT of RFC 3489.
    AddressAndPortDependent,
}

/// Which inbound packets a mapping forwards (RFC 4787 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilteringBehavior {
    /// Any source ("EIF", full cone).
    EndpointIndependent,
    /// Sources whose address the mapping has sent to ("ADF", restricted cone).
    AddressDependent,
    /// Sources whose address and port the mapping has sent to ("APDF", port
    /// restricted cone).
    AddressAndPortDependent,
}

/// How a NAT picks the external port of a new mapping (RFC 4787 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortAllocation {
    /// The internal port when it is free in the range, else a random free port.
    Preserve,
    /// The next free port after the last one allocated, wrapping in the range.
    Sequential,
    /// A uniformly random free port in the range.
    Random,
}

/// What a NAT answers to an inbound SYN that no mapping accepts (RFC 5382 section 7.1).
///
/// RFC 5382 recommends waiting 6 seconds and answering with ICMP only if no outbound
/// SYN of the same connection came meanwhile. For hole punching that behaves like
/// [`InboundSynPolicy::Drop`], because the local side's SYN follows within a round
/// trip, so the simulator does not model the delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InboundSynPolicy {
    /// Discard the SYN silently (most home routers).
    Drop,
    /// Answer with a TCP RST from the targeted external endpoint (a Linux router without
    /// a DROP rule: the SYN reaches the router's own stack, which has no socket there).
    Rst,
    /// Answer with ICMP "communication administratively prohibited".
    Icmp,
}

/// Idle times after which a mapping expires (RFC 4787 REQ-5, RFC 5382 REQ-5).
///
/// A mapping is refreshed by every packet it translates, in either direction. A TCP
/// mapping lives for `tcp_established` while one of its connections is established (a
/// SYN seen each way, no FIN or RST since), else for `tcp_transitory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeouts {
    /// Idle lifetime of a UDP mapping.
    pub udp: Duration,
    /// Idle lifetime of a TCP mapping with an established connection.
    pub tcp_established: Duration,
    /// Idle lifetime of a TCP mapping whose connections are opening or closing.
    pub tcp_transitory: Duration,
}

impl Timeouts {
    /// The values the RFCs recommend: UDP 5 minutes, TCP established 2 hours 4 minutes,
    /// TCP transitory 4 minutes.
    pub const RFC: Timeouts = Timeouts {
        udp: Duration::from_secs(300),
        tcp_established: Duration::from_secs(7440),
        tcp_transitory: Duration::from_secs(240),
    };

    /// Linux conntrack defaults: UDP stream 120 s, TCP established 5 days, TCP
    /// SYN_SENT/TIME_WAIT 120 s.
    pub const LINUX: Timeouts = Timeouts {
        udp: Duration::from_secs(120),
        tcp_established: Duration::from_secs(432_000),
        tcp_transitory: Duration::from_secs(120),
    };
}

/// An inclusive range of external ports a NAT may allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    lo: u16,
    hi: u16,
}

impl PortRange {
    /// Ports `lo..=hi`; the bounds are swapped if given in the wrong order, and port 0
    /// is never used.
    pub fn new(lo: u16, hi: u16) -> Self {
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        Self {
            lo: lo.max(1),
            hi: hi.max(1),
        }
    }

    /// The lowest port.
    pub fn lo(self) -> u16 {
        self.lo
    }

    /// The highest port.
    pub fn hi(self) -> u16 {
        self.hi
    }

    /// Whether `port` is in the range.
    pub fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }

    /// How many ports the range holds.
    pub fn len(self) -> u32 {
        u32::from(self.hi - self.lo) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(self) -> bool {
        false
    }
}

impl Default for PortRange {
    /// The unprivileged ports, 1024 to 65535.
    fn default() -> Self {
        Self::new(1024, u16::MAX)
    }
}

/// The behaviour of one NAT box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NatConfig {
    /// How mappings are chosen.
    pub mapping: MappingBehavior,
    /// Which inbound packets pass.
    pub filtering: FilteringBehavior,
    /// How external ports are picked.
    pub ports: PortAllocation,
    /// The external ports that may be allocated.
    pub port_range: PortRange,
    /// Whether a packet from inside to one of the NAT's own external endpoints is
    /// translated and sent back inside (RFC 4787 REQ-9), with the sender's external
    /// endpoint as source. Off: such packets are dropped.
    pub hairpinning: bool,
    /// Mapping lifetimes.
    pub timeouts: Timeouts,
    /// The answer to an unsolicited inbound SYN.
    pub inbound_syn: InboundSynPolicy,
}

impl NatConfig {
    /// Full cone: endpoint-independent mapping and filtering, port preservation.
    pub fn full_cone() -> Self {
        Self {
            mapping: MappingBehavior::EndpointIndependent,
            filtering: FilteringBehavior::EndpointIndependent,
            ports: PortAllocation::Preserve,
            port_range: PortRange::default(),
            hairpinning: true,
            timeouts: Timeouts::RFC,
            inbound_syn: InboundSynPolicy::Drop,
        }
    }

    /// Restricted cone: endpoint-independent mapping, address-dependent filtering.
    pub fn restricted_cone() -> Self {
        Self {
            filtering: FilteringBehavior::AddressDependent,
            ..Self::full_cone()
        }
    }

    /// Port-restricted cone: endpoint-independent mapping, address-and-port-dependent
    /// filtering.
    pub fn port_restricted_cone() -> Self {
        Self {
            filtering: FilteringBehavior::AddressAndPortDependent,
            ..Self::full_cone()
        }
    }

    /// Symmetric: address-and-port-dependent mapping and filtering, random ports, no
    /// hairpinning.
    pub fn symmetric() -> Self {
        Self {
            mapping: MappingBehavior::AddressAndPortDependent,
            filtering: FilteringBehavior::AddressAndPortDependent,
            ports: PortAllocation::Random,
            hairpinning: false,
            ..Self::full_cone()
        }
    }

    /// A Linux router doing `iptables -t nat -A POSTROUTING -j MASQUERADE` and nothing
    /// else.
    ///
    /// - Mapping: endpoint-independent. Conntrack keeps the source port whenever the
    ///   resulting 5-tuple is unique, which for one internal endpoint talking to several
    ///   destinations is every time: every destination sees the same external port.
    ///   (When two internal hosts use the same port towards the same destination Linux
    ///   picks another port for the second; this model, where an external port belongs
    ///   to one internal endpoint, gives the second host another port for every
    ///   destination instead.)
    /// - Filtering: address-and-port-dependent. Only replies matching a conntrack entry
    ///   are translated back; anything else is addressed to the router itself.
    /// - Ports: preserved when free.
    /// - Unsolicited SYN: RST, sent by the router's own stack, which has no socket on
    ///   that port.
    /// - Hairpinning: off (it needs an extra DNAT rule).
    /// - Timeouts: conntrack defaults.
    pub fn linux_default() -> Self {
        Self {
            mapping: MappingBehavior::EndpointIndependent,
            filtering: FilteringBehavior::AddressAndPortDependent,
            ports: PortAllocation::Preserve,
            port_range: PortRange::default(),
            hairpinning: false,
            timeouts: Timeouts::LINUX,
            inbound_syn: InboundSynPolicy::Rst,
        }
    }

    /// This configuration with another answer to unsolicited SYNs.
    pub fn with_inbound_syn(self, inbound_syn: InboundSynPolicy) -> Self {
        Self {
            inbound_syn,
            ..self
        }
    }

    /// This configuration with hairpinning on or off.
    pub fn with_hairpinning(self, hairpinning: bool) -> Self {
        Self {
            hairpinning,
            ..self
        }
    }

    /// This configuration with other timeouts.
    pub fn with_timeouts(self, timeouts: Timeouts) -> Self {
        Self { timeouts, ..self }
    }

    /// This configuration with another port allocation.
    pub fn with_ports(self, ports: PortAllocation) -> Self {
        Self { ports, ..self }
    }
}

/// The named NAT configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatPreset {
    /// [`NatConfig::full_cone`].
    FullCone,
    /// [`NatConfig::restricted_cone`].
    RestrictedCone,
    /// [`NatConfig::port_restricted_cone`].
    PortRestrictedCone,
    /// [`NatConfig::symmetric`].
    Symmetric,
    /// [`NatConfig::linux_default`].
    LinuxDefault,
}

impl NatPreset {
    /// Every preset.
    pub const ALL: [NatPreset; 5] = [
        NatPreset::FullCone,
        NatPreset::RestrictedCone,
        NatPreset::PortRestrictedCone,
        NatPreset::Symmetric,
        NatPreset::LinuxDefault,
    ];

    /// The preset's configuration.
    pub fn config(self) -> NatConfig {
        match self {
            NatPreset::FullCone => NatConfig::full_cone(),
            NatPreset::RestrictedCone => NatConfig::restricted_cone(),
            NatPreset::PortRestrictedCone => NatConfig::port_restricted_cone(),
            NatPreset::Symmetric => NatConfig::symmetric(),
            NatPreset::LinuxDefault => NatConfig::linux_default(),
        }
    }

    /// A short name: `full_cone`, `restricted_cone`, ...
    pub fn name(self) -> &'static str {
        match self {
            NatPreset::FullCone => "full_cone",
            NatPreset::RestrictedCone => "restricted_cone",
            NatPreset::PortRestrictedCone => "port_restricted_cone",
            NatPreset::Symmetric => "symmetric",
            NatPreset::LinuxDefault => "linux_default",
        }
    }
}

impl fmt::Display for NatPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
