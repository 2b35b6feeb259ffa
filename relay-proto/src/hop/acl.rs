//! Access control for the relay: allow and deny lists of peers and CIDR blocks, and the
//! setting that makes the policy ask the runtime before granting.
//!
//! Rules, in order: a request whose peer or IP is on a deny list is refused; then each
//! allow list that is not empty must contain the request's peer (or IP), so with both an
//! allow list of peers and one of CIDRs a request must match both. An empty configuration
//! allows everyone. A refusal by the ACL is `PERMISSION_DENIED`.

use std::net::IpAddr;

use crate::identity::PeerId;

use super::Set;
use super::ip::Cidr;
use super::refusal::RefusalReason;

/// Allow and deny lists of peers and CIDR blocks, and the decision hook's mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// If not empty, only these peers may reserve or take part in circuits.
    pub allow_peers: Vec<PeerId>,
    /// These peers may not reserve, connect, or be connected to.
    pub deny_peers: Vec<PeerId>,
    /// If not empty, only peers connecting from these blocks may reserve or connect.
    pub allow_cidrs: Vec<Cidr>,
    /// Peers connecting from these blocks may not reserve or connect.
    pub deny_cidrs: Vec<Cidr>,
    /// Which requests the runtime is asked about after they pass every other check.
    pub hook: HookMode,
}

/// Which requests the policy asks the runtime about (the "decision hook").
///
/// A request is asked about only once it has passed the ACL, the rate limits and the
/// resource limits, so the hook sees only requests that would otherwise be granted. The
/// runtime answers with [`RelayPolicy::answer`](super::RelayPolicy::answer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HookMode {
    /// Never ask; the lists alone decide.
    #[default]
    Off,
    /// Ask about reservations.
    Reservations,
    /// Ask about circuits.
    Circuits,
    /// Ask about reservations and circuits.
    Both,
}

impl HookMode {
    /// Whether RESERVE requests are asked about.
    pub fn asks_reservations(self) -> bool {
        matches!(self, Self::Reservations | Self::Both)
    }

    /// Whether CONNECT requests are asked about.
    pub fn asks_circuits(self) -> bool {
        matches!(self, Self::Circuits | Self::Both)
    }
}

/// An [`AclConfig`] prepared for lookups.
#[derive(Clone, Debug, Default)]
pub(crate) struct Acl {
    allow_peers: Set<PeerId>,
    deny_peers: Set<PeerId>,
    allow_cidrs: Vec<Cidr>,
    deny_cidrs: Vec<Cidr>,
}

impl Acl {
    pub(crate) fn new(config: &AclConfig) -> Self {
        Self {
            allow_peers: config.allow_peers.iter().copied().collect(),
            deny_peers: config.deny_peers.iter().copied().collect(),
            allow_cidrs: config.allow_cidrs.clone(),
            deny_cidrs: config.deny_cidrs.clone(),
        }
    }

    /// Why `peer` may not take part in relaying, if it may not.
    pub(crate) fn check_peer(&self, peer: PeerId) -> Option<RefusalReason> {
        if self.deny_peers.contains(&peer) {
            return Some(RefusalReason::DeniedPeer(peer));
        }
        if !self.allow_peers.is_empty() && !self.allow_peers.contains(&peer) {
            return Some(RefusalReason::PeerNotAllowed(peer));
        }
        None
    }

    /// Why a peer connecting from `ip` may not reserve or connect, if it may not.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Option<RefusalReason> {
        if self.deny_cidrs.iter().any(|c| c.contains(ip)) {
            return Some(RefusalReason::DeniedIp(ip));
        }
        if !self.allow_cidrs.is_empty() && !self.allow_cidrs.iter().any(|c| c.contains(ip)) {
            return Some(RefusalReason::IpNotAllowed(ip));
        }
        None
    }

    /// Why `peer` connecting from `ip` is refused, if it is.
    pub(crate) fn check(&self, peer: PeerId, ip: IpAddr) -> Option<RefusalReason> {
        self.check_peer(peer).or_else(|| self.check_ip(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    fn peer(n: u8) -> PeerId {
        keypair_from_seed(n).public().to_peer_id()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_acl_allows_everyone() {
        let acl = Acl::new(&AclConfig::default());
        assert_eq!(acl.check(peer(1), ip("1.2.3.4")), None);
        assert_eq!(acl.check(peer(2), ip("::1")), None);
    }

    #[test]
    fn deny_lists_win() {
        let acl = Acl::new(&AclConfig {
            allow_peers: vec![peer(1), peer(2)],
            deny_peers: vec![peer(2)],
            deny_cidrs: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/48".parse().unwrap(),
            ],
            ..AclConfig::default()
        });
        assert_eq!(acl.check(peer(1), ip("9.255.255.255")), None);
        assert_eq!(
            acl.check(peer(2), ip("9.0.0.1")),
            Some(RefusalReason::DeniedPeer(peer(2)))
        );
        assert_eq!(
            acl.check(peer(3), ip("9.0.0.1")),
            Some(RefusalReason::PeerNotAllowed(peer(3)))
        );
        assert_eq!(
            acl.check(peer(1), ip("10.0.0.0")),
            Some(RefusalReason::DeniedIp(ip("10.0.0.0")))
        );
        assert_eq!(
            acl.check(peer(1), ip("10.255.255.255")),
            Some(RefusalReason::DeniedIp(ip("10.255.255.255")))
        );
        assert_eq!(acl.check(peer(1), ip("11.0.0.0")), None);
        assert!(acl.check(peer(1), ip("2001:db8:0:ffff::1")).is_some());
        assert_eq!(acl.check(peer(1), ip("2001:db8:1::")), None);
        assert!(acl.check(peer(1), ip("::ffff:10.1.1.1")).is_some());
    }

    #[test]
    fn allow_lists_must_all_match() {
        let acl = Acl::new(&AclConfig {
            allow_cidrs: vec![
                "192.168.0.0/16".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
            ],
            ..AclConfig::default()
        });
        assert_eq!(acl.check(peer(1), ip("192.168.255.255")), None);
        assert_eq!(
            acl.check(peer(1), ip("192.169.0.0")),
            Some(RefusalReason::IpNotAllowed(ip("192.169.0.0")))
        );
        assert_eq!(acl.check(peer(1), ip("fdff:ffff::1")), None);
        assert!(acl.check(peer(1), ip("fe00::")).is_some());
        let both = Acl::new(&AclConfig {
            allow_peers: vec![peer(1)],
            allow_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
            ..AclConfig::default()
        });
        assert_eq!(both.check(peer(1), ip("192.168.1.1")), None);
        assert!(both.check(peer(1), ip("8.8.8.8")).is_some());
        assert!(both.check(peer(2), ip("192.168.1.1")).is_some());
        assert!(HookMode::Both.asks_circuits() && HookMode::Both.asks_reservations());
        assert!(!HookMode::Off.asks_circuits() && !HookMode::Reservations.asks_circuits());
    }
}
