//! The table of open circuits: who relays to whom, since when, how many bytes each way,
//! and under which limit, with an index by deadline and per-peer counts.
//!
//! Limits follow the circuit v2 spec: `data` bounds the bytes of each direction apart, and
//! a circuit ends when one direction goes over it or when it has been open for
//! `duration`. A circuit that reaches a limit is removed at once; the caller resets both
//! streams.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Instant;

use crate::identity::PeerId;

use super::{Map, decrement};

/// Identifies one circuit for the life of a [`RelayPolicy`](super::RelayPolicy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CircuitId(u64);

impl CircuitId {
    /// The number behind the id, for logs and metrics labels.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CircuitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit#{}", self.0)
    }
}

/// A direction of relayed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the initiator (the CONNECT sender) to the target (the reservation holder).
    SrcToDst,
    /// From the target back to the initiator.
    DstToSrc,
}

pub use crate::circuit::limit::Limit;

/// An open circuit, as the usage getters and limit events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitInfo {
    /// Its id.
    pub id: CircuitId,
    /// The initiator, who sent CONNECT.
    pub src: PeerId,
    /// The IP the initiator connected from.
    pub src_ip: IpAddr,
    /// The target, holder of the reservation.
    pub dst: PeerId,
    /// When it was granted.
    pub started: Instant,
    /// When its duration limit ends it, if it has one.
    pub deadline: Option<Instant>,
    /// Its limits.
    pub limit: Limit,
    /// Bytes relayed from initiator to target.
    pub bytes_src_to_dst: u64,
    /// Bytes relayed from target to initiator.
    pub bytes_dst_to_src: u64,
}

impl CircuitInfo {
    /// Bytes relayed in `direction`.
    pub fn bytes(&self, direction: Direction) -> u64 {
        match direction {
            Direction::SrcToDst => self.bytes_src_to_dst,
            Direction::DstToSrc => self.bytes_dst_to_src,
        }
    }

    fn bytes_mut(&mut self, direction: Direction) -> &mut u64 {
        match direction {
            Direction::SrcToDst => &mut self.bytes_src_to_dst,
            Direction::DstToSrc => &mut self.bytes_dst_to_src,
        }
    }
}

/// Which limit a circuit reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// It was open for `Limit.duration`.
    Duration,
    /// More than `Limit.data` bytes went in this direction.
    Data(Direction),
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duration => f.write_str("duration"),
            Self::Data(Direction::SrcToDst) => f.write_str("data (initiator to target)"),
            Self::Data(Direction::DstToSrc) => f.write_str("data (target to initiator)"),
        }
    }
}

/// A circuit that reached a limit and was closed by the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitHit {
    /// The circuit as it was when closed.
    pub circuit: CircuitInfo,
    /// The limit it reached.
    pub kind: LimitKind,
    /// How many of the bytes just reported still fit in the limit: forward these, then
    /// reset both streams. Zero for a duration limit.
    pub forwardable: u64,
}

/// Why bytes cannot be relayed on a circuit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CircuitError {
    /// No open circuit has this id (it was closed, or ended at a limit).
    #[error("unknown {0}")]
    Unknown(CircuitId),
    /// The circuit reached a limit and is closed: reset both streams. (Boxed: limits are
    /// hit once per circuit, and the data path should not carry a large `Result`.)
    #[error("{} reached its {} limit", .0.circuit.id, .0.kind)]
    LimitReached(Box<LimitHit>),
}

/// Open circuits and their counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Circuits {
    by_id: Map<CircuitId, CircuitInfo>,
    by_deadline: BTreeSet<(Instant, CircuitId)>,
    per_peer: Map<PeerId, u32>,
    next_id: u64,
}

impl Circuits {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: CircuitId) -> Option<&CircuitInfo> {
        self.by_id.get(&id)
    }

    /// Circuits `peer` takes part in, as initiator or target.
    pub(crate) fn count_peer(&self, peer: &PeerId) -> u32 {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    pub(crate) fn open(
        &mut self,
        now: Instant,
        src: PeerId,
        src_ip: IpAddr,
        dst: PeerId,
        limit: Limit,
    ) -> CircuitInfo {
        self.next_id += 1;
        let id = CircuitId(self.next_id);
        // Durations are validated to be representable; if one is not, end at once.
        let deadline = limit.duration.map(|d| now.checked_add(d).unwrap_or(now));
        let info = CircuitInfo {
            id,
            src,
            src_ip,
            dst,
            started: now,
            deadline,
            limit,
            bytes_src_to_dst: 0,
            bytes_dst_to_src: 0,
        };
        if let Some(deadline) = deadline {
            self.by_deadline.insert((deadline, id));
        }
        *self.per_peer.entry(src).or_default() += 1;
        if dst != src {
            *self.per_peer.entry(dst).or_default() += 1;
        }
        self.by_id.insert(id, info);
        info
    }

    pub(crate) fn close(&mut self, id: CircuitId) -> Option<CircuitInfo> {
        let info = self.by_id.remove(&id)?;
        if let Some(deadline) = info.deadline {
            self.by_deadline.remove(&(deadline, id));
        }
        decrement(&mut self.per_peer, info.src);
        if info.dst != info.src {
            decrement(&mut self.per_peer, info.dst);
        }
        Some(info)
    }

    /// Accounts `bytes` relayed in `direction`; returns the bytes still allowed that way
    /// (`None`: no data limit), or closes the circuit at a limit.
    pub(crate) fn data(
        &mut self,
        now: Instant,
        id: CircuitId,
        direction: Direction,
        bytes: u64,
    ) -> Result<Option<u64>, CircuitError> {
        let info = self.by_id.get_mut(&id).ok_or(CircuitError::Unknown(id))?;
        if info.deadline.is_some_and(|d| d <= now) {
            let circuit = self.close(id).ok_or(CircuitError::Unknown(id))?;
            return Err(CircuitError::LimitReached(Box::new(LimitHit {
                circuit,
                kind: LimitKind::Duration,
                forwardable: 0,
            })));
        }
        let Some(max) = info.limit.data else {
            let counter = info.bytes_mut(direction);
            *counter = counter.saturating_add(bytes);
            return Ok(None);
        };
        let counter = info.bytes_mut(direction);
        let room = max.saturating_sub(*counter);
        if bytes <= room {
            *counter += bytes;
            return Ok(Some(room - bytes));
        }
        *counter = max;
        let circuit = self.close(id).ok_or(CircuitError::Unknown(id))?;
        Err(CircuitError::LimitReached(Box::new(LimitHit {
            circuit,
            kind: LimitKind::Data(direction),
            forwardable: room,
        })))
    }

    /// Removes and returns one circuit whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<CircuitInfo> {
        let &(deadline, id) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.close(id)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|&(at, _)| at)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &CircuitInfo> + '_ {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;
    use std::time::Duration;

    fn peer(n: u8) -> PeerId {
        keypair_from_seed(n).public().to_peer_id()
    }

    #[test]
    fn data_is_limited_per_direction() {
        let t0 = crate::hop::test_base();
        let mut c = Circuits::default();
        let limit = Limit {
            duration: None,
            data: Some(100),
        };
        let info = c.open(t0, peer(1), "1.1.1.1".parse().unwrap(), peer(2), limit);
        let id = info.id;
        assert_eq!(c.data(t0, id, Direction::SrcToDst, 60), Ok(Some(40)));
        assert_eq!(c.data(t0, id, Direction::SrcToDst, 40), Ok(Some(0)));
        // The other direction has its own 100 bytes.
        assert_eq!(c.data(t0, id, Direction::DstToSrc, 100), Ok(Some(0)));
        assert_eq!(c.count_peer(&peer(1)), 1);
        let Err(CircuitError::LimitReached(hit)) = c.data(t0, id, Direction::SrcToDst, 1) else {
            panic!("one byte over the limit must end the circuit");
        };
        assert_eq!(hit.kind, LimitKind::Data(Direction::SrcToDst));
        assert_eq!(hit.forwardable, 0);
        assert_eq!(hit.circuit.bytes_src_to_dst, 100);
        assert_eq!(hit.circuit.bytes_dst_to_src, 100);
        assert_eq!(c.len(), 0);
        assert_eq!(c.count_peer(&peer(1)), 0);
        assert_eq!(
            c.data(t0, id, Direction::SrcToDst, 1),
            Err(CircuitError::Unknown(id))
        );
        // A report that overshoots says how much of it may still go.
        let id = c
            .open(t0, peer(1), "1.1.1.1".parse().unwrap(), peer(2), limit)
            .id;
        let Err(CircuitError::LimitReached(hit)) = c.data(t0, id, Direction::DstToSrc, 250) else {
            panic!("over the limit");
        };
        assert_eq!(hit.forwardable, 100);
        let message = CircuitError::LimitReached(hit).to_string();
        assert!(message.contains("data (target to initiator)"), "{message}");
    }

    #[test]
    fn duration_deadline_is_exact() {
        let t0 = crate::hop::test_base();
        let mut c = Circuits::default();
        let limit = Limit {
            duration: Some(Duration::from_secs(120)),
            data: None,
        };
        let end = t0 + Duration::from_secs(120);
        let id = c
            .open(t0, peer(1), "1.1.1.1".parse().unwrap(), peer(1), limit)
            .id;
        assert_eq!(c.count_peer(&peer(1)), 1, "a self-circuit counts once");
        assert_eq!(c.next_deadline(), Some(end));
        assert_eq!(
            c.data(
                end - Duration::from_nanos(1),
                id,
                Direction::SrcToDst,
                u64::MAX
            ),
            Ok(None)
        );
        assert_eq!(c.pop_expired(end - Duration::from_nanos(1)), None);
        let Err(CircuitError::LimitReached(hit)) = c.data(end, id, Direction::SrcToDst, 1) else {
            panic!("at the deadline the circuit is over");
        };
        assert_eq!(hit.kind, LimitKind::Duration);
        assert_eq!(c.count_peer(&peer(1)), 0);
        let id = c
            .open(t0, peer(1), "1.1.1.1".parse().unwrap(), peer(2), limit)
            .id;
        assert_eq!(c.pop_expired(end).map(|i| i.id), Some(id));
        assert_eq!(c.next_deadline(), None);
    }
}
