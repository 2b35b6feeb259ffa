//! Settings of hole punching: the seed's `node.relay.hole_punch` section and the few
//! choices it leaves open.

use std::time::Duration;

use super::addrs::AddrScope;

/// Settings of hole punching (seed: `node.relay.hole_punch`).
///
/// `Default` gives the seed's values; the fields the seed does not name follow
/// go-libp2p.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HolePunchConfig {
    // --- node.relay.hole_punch ---
    /// Whether to upgrade relayed connections at all (seed: `enabled`, true). When
    /// false every [`HolePunch`](super::HolePunch) ends at once with
    /// [`FailureReason::NotEnabled`](super::FailureReason::NotEnabled).
    pub enabled: bool,
    /// Most CONNECT/SYNC exchanges per relayed connection (seed: `max_attempts`, 3; the
    /// spec's "retry twice"). `0` allows none: only the unilateral direct dial is tried.
    pub max_attempts: u32,
    /// Longest one attempt's dial may take, from the `Dial` to the direct connection
    /// (seed: `attempt_timeout`, 5s; go-libp2p's `DirectDialTimeout`). The unilateral
    /// direct dial gets the same time.
    pub attempt_timeout: Duration,
    /// Most of the peer's addresses dialed in one attempt (seed: `direct_dial_attempts`,
    /// 3): each address is one direct dial, the peer's first ones in the order it sent
    /// them. `0` dials every usable address (at most [`MAX_CANDIDATES`]).
    ///
    /// [`MAX_CANDIDATES`]: super::MAX_CANDIDATES
    pub direct_dial_attempts: u32,
    /// Longest the CONNECT/SYNC exchange of one attempt may take (seed: `sync_timeout`,
    /// 15s): for the initiator from asking for the stream to the peer's CONNECT, for the
    /// responder from the stream's arrival to the SYNC. A responder whose attempt failed
    /// also waits this long for the initiator's next attempt before giving up.
    pub sync_timeout: Duration,
    /// Whether TCP addresses take part (seed: `enable_tcp_hole_punch`, true). TCP is the
    /// only transport punched so far, so false means no exchange is possible.
    pub enable_tcp_hole_punch: bool,
    /// Whether to run the DCUtR exchange (seed: `enable_dcutr`, true). When false only
    /// the unilateral direct dial is tried.
    pub enable_dcutr: bool,
    /// Most hole punches the node runs at once (seed: `concurrent_limit`, 10). Not used
    /// by [`HolePunch`](super::HolePunch) itself: the node counts the machines that
    /// are [active](super::HolePunch::is_active) and delays starting initiators beyond it.
    pub concurrent_limit: u32,

    // --- beyond the seed ---
    /// Whether the initiator first dials the peer directly when the peer's identify
    /// listen addresses include public ones (true, as the spec and go-libp2p).
    pub unilateral_first: bool,
    /// Whether private addresses (RFC 1918, 100.64.0.0/10, IPv6 unique local) count as
    /// candidates, ours and the peer's (false). The node turns it on for a peer it knows
    /// to share a private network with us, e.g. one reached through a relay at a private
    /// address. Loopback, link-local and unspecified addresses never count.
    pub allow_private_addrs: bool,
    /// Whether loopback addresses count as candidates too (false): only for peers on one
    /// host, as in tests over `127.0.0.1`. The node turns it on for a peer reached
    /// through a relay at a loopback address. It implies `allow_private_addrs`.
    pub allow_loopback_addrs: bool,
    /// How long the node keeps a relayed connection after a direct connection to the
    /// same peer replaced it (one minute, the grace period go-libp2p's connection
    /// manager gives a new connection). New streams take the direct connection at once;
    /// the relayed one closes once the grace period has passed and no application
    /// stream is left on it. Not used by [`HolePunch`](super::HolePunch) itself.
    pub relayed_close_grace: Duration,
    /// Whether the initiator takes the client role of the security handshake on its last
    /// attempt, as go-libp2p does (true). See the module documentation.
    pub swap_roles_on_last_attempt: bool,
}

impl Default for HolePunchConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(5),
            direct_dial_attempts: 3,
            sync_timeout: Duration::from_secs(15),
            enable_tcp_hole_punch: true,
            enable_dcutr: true,
            concurrent_limit: 10,
            unilateral_first: true,
            allow_private_addrs: false,
            allow_loopback_addrs: false,
            relayed_close_grace: Duration::from_secs(60),
            swap_roles_on_last_attempt: true,
        }
    }
}

impl HolePunchConfig {
    /// Whether a CONNECT/SYNC exchange can take place at all: hole punching and DCUtR
    /// enabled, at least one attempt allowed, and a transport to punch.
    pub fn exchange_enabled(&self) -> bool {
        self.enabled && self.enable_dcutr && self.enable_tcp_hole_punch && self.max_attempts > 0
    }

    /// Which IP ranges count as candidates: loopback with `allow_loopback_addrs`, private
    /// with `allow_private_addrs`, else public only.
    pub fn scope(&self) -> AddrScope {
        if self.allow_loopback_addrs {
            AddrScope::Loopback
        } else {
            AddrScope::from_private(self.allow_private_addrs)
        }
    }

    /// How many addresses one dial may take: `direct_dial_attempts`, or every address
    /// when it is `0`.
    pub(crate) fn dial_limit(&self) -> usize {
        match self.direct_dial_attempts {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let c = HolePunchConfig::default();
        assert!(c.enabled && c.enable_dcutr && c.enable_tcp_hole_punch);
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.attempt_timeout, Duration::from_secs(5));
        assert_eq!(c.direct_dial_attempts, 3);
        assert_eq!(c.sync_timeout, Duration::from_secs(15));
        assert_eq!(c.concurrent_limit, 10);
        assert!(c.exchange_enabled());
        assert_eq!(c.dial_limit(), 3);
    }

    #[test]
    fn any_switch_off_disables_the_exchange() {
        let off = [
            HolePunchConfig {
                enabled: false,
                ..Default::default()
            },
            HolePunchConfig {
                enable_dcutr: false,
                ..Default::default()
            },
            HolePunchConfig {
                enable_tcp_hole_punch: false,
                ..Default::default()
            },
            HolePunchConfig {
                max_attempts: 0,
                ..Default::default()
            },
        ];
        for c in off {
            assert!(!c.exchange_enabled(), "{c:?}");
        }
        let all = HolePunchConfig {
            direct_dial_attempts: 0,
            ..Default::default()
        };
        assert_eq!(all.dial_limit(), usize::MAX);
    }
}
