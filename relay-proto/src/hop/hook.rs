//! The decision hook: requests the policy asks the runtime about, waiting for its answer.
//!
//! When [`HookMode`](super::HookMode) says so, a request that passes every other check is
//! not granted at once: the policy returns [`Admission::Ask`](super::Admission::Ask) with
//! a [`HookRequest`], and the runtime (an ACL callback, a cluster coordinator) answers
//! later with [`RelayPolicy::answer`](super::RelayPolicy::answer). Waiting requests are
//! bounded in number and in time (`hop_timeout`); one not answered in time is refused.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::identity::PeerId;

use super::Map;

/// Identifies one request waiting for the decision hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(u64);

impl Ticket {
    /// The number behind the ticket, for logs and for passing through foreign code.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ticket#{}", self.0)
    }
}

/// What the runtime is asked to allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookQuery {
    /// May `peer`, connected from `ip`, reserve (or refresh its reservation)?
    Reserve {
        /// The reserving peer.
        peer: PeerId,
        /// The IP it connects from.
        ip: IpAddr,
    },
    /// May `src`, connected from `src_ip`, open a circuit to `dst`?
    Connect {
        /// The initiator.
        src: PeerId,
        /// The IP the initiator connects from.
        src_ip: IpAddr,
        /// The target.
        dst: PeerId,
    },
}

impl HookQuery {
    /// The peer that sent the request.
    pub fn requester(&self) -> PeerId {
        match *self {
            Self::Reserve { peer, .. } => peer,
            Self::Connect { src, .. } => src,
        }
    }

    /// The IP the request came from.
    pub fn ip(&self) -> IpAddr {
        match *self {
            Self::Reserve { ip, .. } => ip,
            Self::Connect { src_ip, .. } => src_ip,
        }
    }
}

/// A request waiting for the runtime's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookRequest {
    /// The ticket to answer with.
    pub ticket: Ticket,
    /// What is asked.
    pub query: HookQuery,
    /// When the policy asked.
    pub asked_at: Instant,
    /// When the policy gives up waiting and refuses; `None` if `hop_timeout` is zero.
    pub deadline: Option<Instant>,
}

/// Requests waiting for the hook, with per-peer counts and a deadline index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Asks {
    pending: Map<Ticket, HookRequest>,
    by_deadline: BTreeSet<(Instant, Ticket)>,
    /// Waiting requests per (requester, is a CONNECT).
    per_peer: Map<(PeerId, bool), u32>,
    next: u64,
}

impl Asks {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Waiting requests of `peer` of the same kind as `query`.
    pub(crate) fn count_like(&self, query: &HookQuery) -> u32 {
        self.per_peer.get(&key(query)).copied().unwrap_or(0)
    }

    pub(crate) fn insert(
        &mut self,
        now: Instant,
        query: HookQuery,
        timeout: Duration,
    ) -> HookRequest {
        self.next += 1;
        let ticket = Ticket(self.next);
        let deadline = (!timeout.is_zero()).then(|| now.checked_add(timeout).unwrap_or(now));
        let request = HookRequest {
            ticket,
            query,
            asked_at: now,
            deadline,
        };
        if let Some(deadline) = deadline {
            self.by_deadline.insert((deadline, ticket));
        }
        *self.per_peer.entry(key(&query)).or_default() += 1;
        self.pending.insert(ticket, request);
        request
    }

    pub(crate) fn take(&mut self, ticket: Ticket) -> Option<HookRequest> {
        let request = self.pending.remove(&ticket)?;
        if let Some(deadline) = request.deadline {
            self.by_deadline.remove(&(deadline, ticket));
        }
        super::decrement(&mut self.per_peer, key(&request.query));
        Some(request)
    }

    /// Removes and returns one request whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<HookRequest> {
        let &(deadline, ticket) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.take(ticket)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &HookRequest> + '_ {
        self.pending.values()
    }
}

fn key(query: &HookQuery) -> (PeerId, bool) {
    (
        query.requester(),
        matches!(query, HookQuery::Connect { .. }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    #[test]
    fn asks_are_counted_and_expire() {
        let t0 = crate::hop::test_base();
        let peer = keypair_from_seed(1).public().to_peer_id();
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let mut asks = Asks::default();
        let reserve = HookQuery::Reserve { peer, ip };
        let connect = HookQuery::Connect {
            src: peer,
            src_ip: ip,
            dst: peer,
        };
        let a = asks.insert(t0, reserve, Duration::from_secs(30));
        let b = asks.insert(t0, connect, Duration::ZERO);
        assert_eq!(asks.count_like(&reserve), 1);
        assert_eq!(asks.count_like(&connect), 1);
        assert_eq!(b.deadline, None);
        assert_eq!(asks.next_deadline(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(asks.pop_expired(t0 + Duration::from_secs(29)), None);
        assert_eq!(asks.pop_expired(t0 + Duration::from_secs(30)), Some(a));
        assert_eq!(asks.take(a.ticket), None);
        assert_eq!(asks.take(b.ticket), Some(b));
        assert_eq!(asks.len(), 0);
        assert_eq!(asks.count_like(&connect), 0);
        assert_eq!(a.ticket.to_string(), "ticket#1");
        assert_eq!(connect.requester(), peer);
        assert_eq!(reserve.ip(), ip);
    }
}
