//! IP address helpers for the relay policy: CIDR blocks and per-IP accounting keys.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are treated as the IPv4 address they
//! carry everywhere, so a dual-stack socket cannot dodge an IPv4 limit or ACL entry.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A CIDR block, IPv4 or IPv6, such as `10.0.0.0/8` or `2001:db8::/32`.
///
/// Parsing accepts a bare address as a single-host block (`/32` or `/128`) and clears host
/// bits (`10.1.2.3/8` is `10.0.0.0/8`). An IPv4-mapped IPv6 block with a prefix of at
/// least 96 becomes the IPv4 block it denotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string or an address/prefix pair is not a valid [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IP address.
    #[error("invalid IP address in CIDR {0:?}")]
    BadAddress(String),
    /// The part after `/` is not a number.
    #[error("invalid prefix length in CIDR {0:?}")]
    BadPrefix(String),
    /// The prefix is longer than the address (32 bits for IPv4, 128 for IPv6).
    #[error("prefix length {prefix} is longer than the {bits}-bit address")]
    PrefixTooLong {
        /// The prefix length given.
        prefix: u8,
        /// The address width in bits.
        bits: u8,
    },
}

impl Cidr {
    /// A block from a network address and a prefix length; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let bits = width(addr);
        if prefix > bits {
            return Err(CidrError::PrefixTooLong { prefix, bits });
        }
        Ok(Self {
            network: from_bits(addr, to_bits(addr) & mask(bits, prefix)),
            prefix,
        })
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this block; an address of the other family never does.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        to_bits(ip) & mask(width(ip), self.prefix) == to_bits(self.network)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(s.to_owned()))?;
        let prefix = match prefix {
            Some(p) => p.parse().map_err(|_| CidrError::BadPrefix(s.to_owned()))?,
            None => width(addr.to_canonical()) + if addr.to_canonical() != addr { 96 } else { 0 },
        };
        Self::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The key under which per-IP limits count an address.
///
/// An IPv4 address counts as itself. An IPv6 address counts as its prefix of the
/// configured length (64 by default), because one host usually owns a whole /64 and could
/// otherwise spread its requests over as many addresses as it likes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpKey(IpAddr);

impl IpKey {
    /// The key of `ip` when IPv6 addresses are grouped by their first `ipv6_prefix` bits.
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> Self {
        let ip = ip.to_canonical();
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(_) => Self(from_bits(ip, to_bits(ip) & mask(128, ipv6_prefix.min(128)))),
        }
    }

    /// The address this key stands for (an IPv6 key has its host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The width of an address in bits: 32 or 128.
fn width(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The address as an unsigned integer (IPv4 in the low 32 bits).
pub(crate) fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The address of `family` whose integer value is `bits` (truncated for IPv4).
fn from_bits(family: IpAddr, bits: u128) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
    }
}

/// The network mask of a `prefix`-bit block in a `bits`-wide address space.
fn mask(bits: u8, prefix: u8) -> u128 {
    let all = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if prefix == 0 {
        0
    } else {
        all & !all.checked_shr(u32::from(prefix.min(bits))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_prefix_boundaries() {
        let c: Cidr = "192.168.1.0/24".parse().unwrap();
        assert!(!c.contains(ip("192.168.0.255")));
        assert!(c.contains(ip("192.168.1.0")));
        assert!(c.contains(ip("192.168.1.255")));
        assert!(!c.contains(ip("192.168.2.0")));
        assert!(!c.contains(ip("::1")));
        assert!(c.contains(ip("::ffff:192.168.1.7")));
    }

    #[test]
    fn v6_prefix_boundaries() {
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(!c.contains(ip("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(c.contains(ip("2001:db8::")));
        assert!(c.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!c.contains(ip("2001:db9::")));
        assert!(!c.contains(ip("32.1.13.184")));
    }

    #[test]
    fn odd_prefixes_and_host_bits() {
        let c: Cidr = "10.1.2.3/9".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/9");
        assert!(c.contains(ip("10.127.255.255")));
        assert!(!c.contains(ip("10.128.0.0")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("::")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("ffff::1")));
        let host: Cidr = "10.0.0.1".parse().unwrap();
        assert_eq!(host.prefix_len(), 32);
        assert!(host.contains(ip("10.0.0.1")) && !host.contains(ip("10.0.0.2")));
        let host6: Cidr = "2001:db8::1".parse().unwrap();
        assert_eq!(host6.prefix_len(), 128);
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        let mapped_host: Cidr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(mapped_host.to_string(), "10.0.0.9/32");
    }

    #[test]
    fn bad_cidrs_are_errors() {
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { .. })
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { .. })
        ));
        assert!(matches!(
            "10.0.0/8".parse::<Cidr>(),
            Err(CidrError::BadAddress(_))
        ));
        assert!(matches!(
            "10.0.0.0/x".parse::<Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!(matches!(
            "10.0.0.0/-1".parse::<Cidr>(),
            Err(CidrError::BadPrefix(_))
        ));
        assert!("".parse::<Cidr>().is_err());
    }

    #[test]
    fn ip_keys_group_v6_by_prefix() {
        let a = IpKey::new(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = IpKey::new(ip("2001:db8:1:2:bbbb::2"), 64);
        let c = IpKey::new(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.addr(), ip("2001:db8:1:2::"));
        assert_eq!(
            IpKey::new(ip("::ffff:1.2.3.4"), 64),
            IpKey::new(ip("1.2.3.4"), 64)
        );
        assert_ne!(IpKey::new(ip("1.2.3.4"), 0), IpKey::new(ip("1.2.3.5"), 0));
        assert_eq!(IpKey::new(ip("1::1"), 0), IpKey::new(ip("2::2"), 0));
        assert_ne!(IpKey::new(ip("1::1"), 200), IpKey::new(ip("1::2"), 200));
    }

    proptest::proptest! {
        #[test]
        fn cidrs_contain_their_network_and_never_panic(
            text in "[0-9a-f:./]{0,45}",
            bits in proptest::prelude::any::<u128>(),
            prefix in 0u8..=128,
        ) {
            let _ = text.parse::<Cidr>();
            let v6 = IpAddr::V6(Ipv6Addr::from_bits(bits));
            let c = Cidr::new(v6, prefix).unwrap();
            proptest::prop_assert!(c.contains(v6));
            let v4 = IpAddr::V4(Ipv4Addr::from_bits(bits as u32));
            let c = Cidr::new(v4, prefix.min(32)).unwrap();
            proptest::prop_assert!(c.contains(v4));
            let _ = IpKey::new(v6, prefix);
        }
    }
}
