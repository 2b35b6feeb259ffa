//! The table of live reservations: one per peer, with per-IP and per-ASN counts and an
//! index by expiry so expired reservations are found without a scan.
//!
//! A reservation is live while `now < expires_at`. The table only stores and counts; the
//! admission rules live in [`policy`](super::policy).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use crate::identity::PeerId;

use super::ip::IpKey;
use super::{Map, decrement};

/// A live reservation, as the usage getters and expiry events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservationInfo {
    /// The reserving peer.
    pub peer: PeerId,
    /// The IP the peer made (or last refreshed) the reservation from.
    pub ip: IpAddr,
    /// The key the reservation counts under for `max_reservations_per_ip`.
    pub ip_key: IpKey,
    /// The autonomous system it counts under for `max_reservations_per_asn`, if known.
    pub asn: Option<u32>,
    /// When the reservation was first granted.
    pub granted_at: Instant,
    /// When the reservation ends unless refreshed.
    pub expires_at: Instant,
    /// The same end in Unix seconds, as sent to the peer.
    pub expire_unix: u64,
    /// How many times it was refreshed.
    pub refreshes: u32,
}

/// Live reservations and their counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reservations {
    by_peer: Map<PeerId, ReservationInfo>,
    by_expiry: BTreeSet<(Instant, PeerId)>,
    per_ip: Map<IpKey, u32>,
    per_asn: Map<u32, u32>,
}

impl Reservations {
    pub(crate) fn get(&self, peer: &PeerId) -> Option<&ReservationInfo> {
        self.by_peer.get(peer)
    }

    /// The reservation of `peer` if it is live at `now`.
    pub(crate) fn live(&self, now: Instant, peer: &PeerId) -> Option<&ReservationInfo> {
        self.by_peer.get(peer).filter(|r| r.expires_at > now)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_peer.len()
    }

    /// Reservations counted under `key`, leaving out `peer`'s own (a refresh replaces it).
    pub(crate) fn count_ip(&self, key: IpKey, except: &PeerId) -> u32 {
        let own = self.by_peer.get(except).is_some_and(|r| r.ip_key == key);
        self.per_ip
            .get(&key)
            .copied()
            .unwrap_or(0)
            .saturating_sub(u32::from(own))
    }

    /// Reservations counted under `asn`, leaving out `peer`'s own.
    pub(crate) fn count_asn(&self, asn: u32, except: &PeerId) -> u32 {
        let own = self.by_peer.get(except).is_some_and(|r| r.asn == Some(asn));
        self.per_asn
            .get(&asn)
            .copied()
            .unwrap_or(0)
            .saturating_sub(u32::from(own))
    }

    /// Inserts or replaces the reservation of `info.peer`, moving its counts.
    pub(crate) fn upsert(&mut self, info: ReservationInfo) {
        self.remove(&info.peer);
        *self.per_ip.entry(info.ip_key).or_default() += 1;
        if let Some(asn) = info.asn {
            *self.per_asn.entry(asn).or_default() += 1;
        }
        self.by_expiry.insert((info.expires_at, info.peer));
        self.by_peer.insert(info.peer, info);
    }

    pub(crate) fn remove(&mut self, peer: &PeerId) -> Option<ReservationInfo> {
        let info = self.by_peer.remove(peer)?;
        self.by_expiry.remove(&(info.expires_at, info.peer));
        decrement(&mut self.per_ip, info.ip_key);
        if let Some(asn) = info.asn {
            decrement(&mut self.per_asn, asn);
        }
        Some(info)
    }

    /// Removes and returns one reservation expired at `now`, soonest first.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<ReservationInfo> {
        let &(expires_at, peer) = self.by_expiry.first()?;
        if expires_at > now {
            return None;
        }
        self.remove(&peer)
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|&(at, _)| at)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ReservationInfo> + '_ {
        self.by_peer.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;
    use std::time::Duration;

    fn info(n: u8, ip: &str, asn: Option<u32>, expires_at: Instant) -> ReservationInfo {
        let ip: IpAddr = ip.parse().unwrap();
        ReservationInfo {
            peer: keypair_from_seed(n).public().to_peer_id(),
            ip,
            ip_key: IpKey::new(ip, 64),
            asn,
            granted_at: expires_at,
            expires_at,
            expire_unix: 0,
            refreshes: 0,
        }
    }

    #[test]
    fn counts_follow_upserts_and_removals() {
        let t0 = crate::hop::test_base();
        let mut r = Reservations::default();
        let a = info(1, "1.1.1.1", Some(7), t0 + Duration::from_secs(5));
        let b = info(2, "1.1.1.1", Some(7), t0 + Duration::from_secs(3));
        r.upsert(a);
        r.upsert(b);
        let other = keypair_from_seed(9).public().to_peer_id();
        assert_eq!(r.count_ip(a.ip_key, &other), 2);
        assert_eq!(r.count_ip(a.ip_key, &a.peer), 1);
        assert_eq!(r.count_asn(7, &other), 2);
        // Move a to another IP and ASN.
        let moved = info(1, "2.2.2.2", None, t0 + Duration::from_secs(9));
        r.upsert(moved);
        assert_eq!(r.len(), 2);
        assert_eq!(r.count_ip(a.ip_key, &other), 1);
        assert_eq!(r.count_ip(moved.ip_key, &other), 1);
        assert_eq!(r.count_asn(7, &other), 1);
        assert_eq!(r.next_expiry(), Some(t0 + Duration::from_secs(3)));
        assert!(r.live(t0 + Duration::from_secs(3), &b.peer).is_none());
        assert_eq!(r.pop_expired(t0 + Duration::from_secs(2)), None);
        assert_eq!(r.pop_expired(t0 + Duration::from_secs(3)), Some(b));
        assert_eq!(r.pop_expired(t0 + Duration::from_secs(3)), None);
        assert_eq!(r.remove(&moved.peer), Some(moved));
        assert!(r.per_ip.is_empty() && r.per_asn.is_empty() && r.by_expiry.is_empty());
    }
}
