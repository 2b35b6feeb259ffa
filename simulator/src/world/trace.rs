//! The event trace: a running hash of everything that happened, and optionally a log.

use std::hash::{Hash, Hasher};

use crate::host::HostEvent;
use crate::net::{DropReason, HostId, LinkId};
use crate::packet::Packet;
use crate::time::SimTime;

/// Something the world did.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TraceEvent {
    /// A packet was put on a link.
    Transmitted {
        /// The link.
        link: LinkId,
        /// Towards the network (from a host or NAT), or away from it.
        toward_network: bool,
        /// When it will arrive at the other end.
        arrival: SimTime,
        /// The packet.
        packet: Packet,
    },
    /// A packet was discarded.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The packet.
        packet: Packet,
    },
    /// An application event was queued.
    Host {
        /// The host.
        host: HostId,
        /// The event.
        event: HostEvent,
    },
}

/// One entry of the trace log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceRecord {
    /// When.
    pub at: SimTime,
    /// What.
    pub event: TraceEvent,
}

/// The trace of a run: an FNV-1a hash over every record, and the records if kept.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    hash: Fnv64,
    log: Option<Vec<TraceRecord>>,
    records: u64,
}

impl Trace {
    pub(crate) fn new(keep_log: bool) -> Self {
        Self {
            hash: Fnv64::new(),
            log: keep_log.then(Vec::new),
            records: 0,
        }
    }

    pub(crate) fn record(&mut self, at: SimTime, event: TraceEvent) {
        let record = TraceRecord { at, event };
        record.hash(&mut self.hash);
        self.records += 1;
        if let Some(log) = &mut self.log {
            log.push(record);
        }
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    pub(crate) fn log(&self) -> &[TraceRecord] {
        self.log.as_deref().unwrap_or(&[])
    }
}

/// 64-bit FNV-1a: fixed, platform-independent, fast on short inputs.
#[derive(Debug, Clone)]
struct Fnv64(u64);

impl Fnv64 {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
