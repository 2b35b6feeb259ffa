//! Abuse detection: refusals are counted per peer and per IP, and a peer or IP refused too
//! often is banned for a while, so the runtime can disconnect it and the policy refuses
//! it cheaply.
//!
//! The count is a token bucket of "allowed refusals": each refusal the requester is to
//! blame for (see [`RefusalReason`](super::RefusalReason)) takes a token, and the refusal
//! that finds the bucket empty bans. Memory is bounded like the rate limiters: at most
//! `max_tracked_keys` buckets per kind and as many bans, the soonest-ending ban making
//! room when full.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::identity::PeerId;

use super::Map;
use super::ip::IpKey;
use super::rate::{KeyedLimiter, RateLimit};

/// When a peer or IP counts as abusive and what happens then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbuseConfig {
    /// Refusals tolerated per peer and per IP: up to `burst` in a row, regained at one per
    /// `refill` (32, then one per 2s, i.e. a sustained refusal rate above one per 2s bans).
    /// [`RateLimit::OFF`] disables detection.
    pub refusals: RateLimit,
    /// How long a ban lasts (10 minutes); zero disables bans.
    pub ban: Duration,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        Self {
            refusals: RateLimit::new(32, Duration::from_secs(2)),
            ban: Duration::from_secs(600),
        }
    }
}

/// What a ban applies to: a peer, or an IP (an IPv6 prefix, see [`IpKey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbuseKey {
    /// A peer, wherever it connects from.
    Peer(PeerId),
    /// Every peer connecting from this IP.
    Ip(IpKey),
}

impl fmt::Display for AbuseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(p) => write!(f, "peer {p}"),
            Self::Ip(ip) => write!(f, "IP {ip}"),
        }
    }
}

/// Refusal counters and bans.
#[derive(Debug, Clone)]
pub(crate) struct AbuseDetector {
    ban: Duration,
    peers: KeyedLimiter<PeerId>,
    ips: KeyedLimiter<IpKey>,
    bans: Map<AbuseKey, Instant>,
    by_until: BTreeSet<(Instant, AbuseKey)>,
    max_bans: usize,
}

impl AbuseDetector {
    pub(crate) fn new(config: AbuseConfig, max_keys: usize) -> Self {
        let refusals = if config.ban.is_zero() {
            RateLimit::OFF
        } else {
            config.refusals
        };
        Self {
            ban: config.ban,
            peers: KeyedLimiter::new(refusals, max_keys),
            ips: KeyedLimiter::new(refusals, max_keys),
            bans: Map::default(),
            by_until: BTreeSet::new(),
            max_bans: max_keys.max(1),
        }
    }

    /// The ban in force at `now` on `peer` or on `ip`, if any.
    pub(crate) fn banned(&self, now: Instant, peer: PeerId, ip: IpKey) -> Option<AbuseKey> {
        [AbuseKey::Peer(peer), AbuseKey::Ip(ip)]
            .into_iter()
            .find(|key| self.bans.get(key).is_some_and(|&until| until > now))
    }

    /// Counts a refusal blamed on `peer` at `ip`; returns the bans it starts.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        peer: PeerId,
        ip: IpKey,
    ) -> SmallVec<[(AbuseKey, Instant); 2]> {
        let mut started = SmallVec::new();
        if self.peers.limit().is_off() {
            return started;
        }
        let peer_ok = self.peers.try_take(now, &peer);
        let ip_ok = self.ips.try_take(now, &ip);
        for (ok, key) in [(peer_ok, AbuseKey::Peer(peer)), (ip_ok, AbuseKey::Ip(ip))] {
            if !ok && let Some(until) = self.start_ban(now, key) {
                started.push((key, until));
            }
        }
        started
    }

    /// Lifts the bans that end at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(until, key)) = self.by_until.first() {
            if until > now {
                break;
            }
            self.by_until.remove(&(until, key));
            self.bans.remove(&key);
        }
    }

    /// When the next ban ends.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.by_until.first().map(|&(until, _)| until)
    }

    /// The bans in force, each with its end.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (AbuseKey, Instant)> + '_ {
        self.by_until.iter().map(|&(until, key)| (key, until))
    }

    /// Number of bans held.
    pub(crate) fn len(&self) -> usize {
        self.bans.len()
    }

    /// Number of refusal counters held.
    pub(crate) fn tracked(&self) -> usize {
        self.peers.len() + self.ips.len()
    }

    fn start_ban(&mut self, now: Instant, key: AbuseKey) -> Option<Instant> {
        let until = now.checked_add(self.ban)?;
        if let Some(old) = self.bans.get(&key).copied() {
            if old > now {
                return None;
            }
            self.by_until.remove(&(old, key));
            self.bans.remove(&key);
        }
        if self.bans.len() >= self.max_bans
            && let Some(first) = self.by_until.pop_first()
        {
            self.bans.remove(&first.1);
        }
        self.bans.insert(key, until);
        self.by_until.insert((until, key));
        Some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    #[test]
    fn too_many_refusals_ban_for_a_while() {
        let t0 = crate::hop::test_base();
        let peer = keypair_from_seed(1).public().to_peer_id();
        let ip = IpKey::new("1.2.3.4".parse().unwrap(), 64);
        let config = AbuseConfig {
            refusals: RateLimit::new(3, Duration::from_secs(10)),
            ban: Duration::from_secs(60),
        };
        let mut d = AbuseDetector::new(config, 16);
        for _ in 0..3 {
            assert!(d.record(t0, peer, ip).is_empty());
        }
        assert_eq!(d.banned(t0, peer, ip), None);
        let bans = d.record(t0, peer, ip);
        let until = t0 + Duration::from_secs(60);
        assert_eq!(
            bans.as_slice(),
            &[(AbuseKey::Peer(peer), until), (AbuseKey::Ip(ip), until)]
        );
        assert_eq!(d.banned(t0, peer, ip), Some(AbuseKey::Peer(peer)));
        assert!(
            d.record(t0, peer, ip).is_empty(),
            "a ban in force is not restarted"
        );
        assert_eq!(d.next_expiry(), Some(until));
        assert_eq!(d.iter().count(), 2);
        assert!(
            d.banned(until - Duration::from_nanos(1), peer, ip)
                .is_some()
        );
        assert_eq!(d.banned(until, peer, ip), None);
        d.expire(until);
        assert_eq!(d.len(), 0);
        assert!(d.tracked() > 0);
    }

    #[test]
    fn bans_are_bounded_and_off_means_off() {
        let t0 = crate::hop::test_base();
        let config = AbuseConfig {
            refusals: RateLimit::new(1, Duration::from_secs(10)),
            ban: Duration::from_secs(60),
        };
        let mut d = AbuseDetector::new(config, 4);
        for n in 0..20u8 {
            let peer = keypair_from_seed(n).public().to_peer_id();
            let ip = IpKey::new(std::net::IpAddr::from([10, 0, 0, n]), 64);
            d.record(t0, peer, ip);
            d.record(t0, peer, ip);
            assert!(d.len() <= 4);
        }
        let mut off = AbuseDetector::new(
            AbuseConfig {
                ban: Duration::ZERO,
                ..config
            },
            4,
        );
        let peer = keypair_from_seed(1).public().to_peer_id();
        let ip = IpKey::new("1.2.3.4".parse().unwrap(), 64);
        for _ in 0..10 {
            assert!(off.record(t0, peer, ip).is_empty());
        }
        assert_eq!(off.tracked(), 0);
    }
}
