//! The world: networks, hosts, NATs and links in simulated time.
//!
//! Build a topology with [`World::add_network`], [`World::add_host`] and
//! [`World::add_nat`]; drive applications through the socket methods (`tcp_*`,
//! `udp_*`, [`World::set_timer`]) and [`World::poll_event`]; advance time with
//! [`World::step`] or [`World::run_until`].
//!
//! The contract for a driver is: call [`World::step`] (or `run_until`), then drain
//! [`World::poll_event`] and react with socket calls, which take effect at
//! [`World::now`]; repeat. The same seed and the same calls give the same run, and
//! [`World::trace_hash`] proves it.

mod build;
mod run;
mod sockets;
mod trace;

pub use trace::{TraceEvent, TraceRecord};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use crate::host::stack::{Stack, StackOutput};
use crate::host::{HostEvent, TimerId};
use crate::invariant::{NatModel, Violation};
use crate::nat::{NatConfig, NatTable};
use crate::net::{Direction, HostId, LinkId, LinkState, NatId, NetworkId};
use crate::packet::Packet;
use crate::rng::SimRng;
use crate::tcp::{ConnId, TcpConfig};
use crate::time::{EventQueue, SimTime};
use trace::Trace;

/// Settings of a world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldConfig {
    /// TCP tunables for every host.
    pub tcp: TcpConfig,
    /// Check every NAT crossing against the reference model (costs some speed).
    pub check_nats: bool,
    /// Keep the trace records, not only their hash (costs memory).
    pub keep_trace: bool,
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            tcp: TcpConfig::default(),
            check_nats: true,
            keep_trace: false,
        }
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorldStats {
    /// Events processed.
    pub events: u64,
    /// Packets put on links.
    pub transmitted: u64,
    /// Packets discarded.
    pub dropped: u64,
    /// Packets handed to host stacks.
    pub delivered: u64,
}

/// The simulated world. See the [module docs](self).
#[derive(Debug)]
pub struct World {
    now: SimTime,
    seed: u64,
    config: WorldConfig,
    queue: EventQueue<Event>,
    /// Loss and jitter draws.
    rng: SimRng,
    networks: Vec<Network>,
    links: Vec<Link>,
    hosts: Vec<Host>,
    nats: Vec<Nat>,
    events: VecDeque<(HostId, HostEvent)>,
    next_timer: u64,
    pending_timers: BTreeSet<TimerId>,
    trace: Trace,
    violations: Vec<Violation>,
    stats: WorldStats,
    scratch: StackOutput,
}

/// A queued event.
#[derive(Debug)]
enum Event {
    /// A packet reached the far end of a link.
    Arrive {
        link: LinkId,
        dir: Direction,
        epoch: u32,
        packet: Packet,
    },
    /// A TCP connection's timer.
    ConnTimer { conn: ConnId },
    /// An application timer.
    AppTimer {
        host: HostId,
        incarnation: u32,
        id: TimerId,
        token: u64,
    },
}

#[derive(Debug)]
struct Network {
    members: BTreeMap<Ipv4Addr, LinkId>,
    gateway: Option<LinkId>,
}

/// What a link attaches to its network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attachment {
    Host(HostId),
    NatOutside(NatId),
    NatInside(NatId),
}

#[derive(Debug)]
struct Link {
    network: NetworkId,
    attachment: Attachment,
    attached: bool,
    state: LinkState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Up,
    Crashed,
    Removed,
}

#[derive(Debug)]
struct Host {
    addr: Ipv4Addr,
    link: LinkId,
    life: Life,
    incarnation: u32,
    stack: Option<Stack>,
}

#[derive(Debug)]
struct Nat {
    public_ip: Ipv4Addr,
    config: NatConfig,
    outside: LinkId,
    inside: LinkId,
    inside_network: NetworkId,
    life: Life,
    incarnation: u32,
    table: NatTable,
    model: NatModel,
}

impl World {
    /// An empty world whose randomness is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, WorldConfig::default())
    }

    /// An empty world with settings.
    pub fn with_config(seed: u64, config: WorldConfig) -> Self {
        Self {
            now: SimTime::ZERO,
            seed,
            config,
            queue: EventQueue::new(),
            rng: SimRng::new(mix(seed, 0, 0)),
            networks: Vec::new(),
            links: Vec::new(),
            hosts: Vec::new(),
            nats: Vec::new(),
            events: VecDeque::new(),
            next_timer: 0,
            pending_timers: BTreeSet::new(),
            trace: Trace::new(config.keep_trace),
            violations: Vec::new(),
            stats: WorldStats::default(),
            scratch: StackOutput::default(),
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// The seed the world was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Counters of the run so far.
    pub fn stats(&self) -> WorldStats {
        self.stats
    }

    /// A hash of every trace record so far: equal runs have equal hashes.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// How many trace records were hashed.
    pub fn trace_len(&self) -> u64 {
        self.trace.records()
    }

    /// The trace records, if [`WorldConfig::keep_trace`] is set (else empty).
    pub fn trace(&self) -> &[TraceRecord] {
        self.trace.log()
    }

    /// Invariant violations seen so far (NAT crossings the reference model rejects).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Checks the invariants now: no violation was recorded and every NAT's table is
    /// consistent.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        if let Some(v) = self.violations.first() {
            return Err(v.clone());
        }
        for (i, nat) in self.nats.iter().enumerate() {
            if nat.life == Life::Removed {
                continue;
            }
            if let Err(detail) = nat.table.check_consistency() {
                let nat = NatId(i as u32);
                return Err(Violation::Table {
                    nat,
                    at: self.now,
                    detail,
                });
            }
        }
        Ok(())
    }
}

/// SplitMix64 of a seed and two salts: independent streams per host, NAT, incarnation.
pub(crate) fn mix(seed: u64, salt_a: u64, salt_b: u64) -> u64 {
    let mut z = seed
        .wrapping_add(salt_a.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(salt_b.wrapping_mul(0xd1b5_4a32_d192_ed03));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
