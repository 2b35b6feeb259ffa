//! The pair harness: the two sides of a hole punch, A and B, wired over a simulated
//! relay in simulated time, as a node would drive them.
//!
//! The relay delays each message by a one-way delay that may change between attempts.
//! Opening a stream takes one relay round trip (multistream-select) before the opener
//! may write; the peer sees the stream after one way. The direct network between the
//! two decides each pair of dials: they punch through when close enough in time, in
//! compatible security roles, and past the number of pairs scripted to fail; failing
//! dials are refused after a while or hang until the attempt times out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Action, HolePunch, HolePunchConfig, Outcome, Role, encode_sync};
use multiaddr::Multiaddr;

pub(super) const MS: Duration = Duration::from_millis(1);

pub(super) fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

pub(super) fn a_addrs() -> Vec<Multiaddr> {
    vec![ma("/ip4/198.51.100.10/tcp/4001")]
}

pub(super) fn b_addrs() -> Vec<Multiaddr> {
    vec![ma("/ip4/203.0.113.20/tcp/4001")]
}

/// Index of a side in [`Pair::peers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    A = 0,
    B = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// What the simulated node passes to a machine.
#[derive(Debug, Clone)]
enum Event {
    InboundStream(u32),
    StreamOpened(u32),
    Data(u32, Vec<u8>),
    Closed(u32),
    Connected,
    DialFailed(u32, Multiaddr),
}

/// How the direct path between A and B behaves.
#[derive(Debug, Clone)]
pub(super) struct Network {
    /// The first this many pairs of dials fail whatever their timing.
    pub(super) failing_pairs: usize,
    /// Failing dials are refused after this long; `None`: they hang.
    pub(super) refuse_after: Option<Duration>,
    /// Largest gap between two dials that still makes a simultaneous open.
    pub(super) window: Duration,
    /// One-way delay of the direct path.
    pub(super) direct: Duration,
    /// Whether the unilateral dial reaches A.
    pub(super) a_reachable: bool,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            failing_pairs: 0,
            refuse_after: Some(300 * MS),
            window: Duration::ZERO,
            direct: 10 * MS,
            a_reachable: false,
        }
    }
}

#[derive(Debug, Clone)]
struct DialRecord {
    at: Instant,
    addrs: Vec<Multiaddr>,
    as_client: bool,
    attempt: u32,
}

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) hp: HolePunch,
    /// The current DCUtR stream, as the node tracks it.
    current: Option<u32>,
    /// Refuses inbound DCUtR streams without asking the machine, as go-libp2p and
    /// rust-libp2p initiators do.
    pub(super) denies_inbound: bool,
    pub(super) log: Vec<(Instant, Action)>,
    pub(super) outcome: Option<(Instant, Outcome)>,
    unpaired: Option<DialRecord>,
}

pub(super) struct Pair {
    pub(super) start: Instant,
    pub(super) now: Instant,
    pub(super) peers: [Peer; 2],
    /// One-way relay delay of each attempt (by streams opened); the last one repeats.
    relay: Vec<Duration>,
    /// Relay messages are dropped.
    pub(super) relay_lossy: bool,
    net: Network,
    queue: BTreeMap<(Instant, u64), (Side, Event)>,
    seq: u64,
    streams: u32,
    pairs: usize,
}

impl Pair {
    pub(super) fn new(config: HolePunchConfig, net: Network, relay: Vec<Duration>) -> Self {
        Self::with_listen_addrs(config, net, relay, &[])
    }

    pub(super) fn with_listen_addrs(
        config: HolePunchConfig,
        net: Network,
        relay: Vec<Duration>,
        a_listen: &[Multiaddr],
    ) -> Self {
        let start = crate::test_now();
        let a = HolePunch::new(Role::Responder, config.clone(), a_addrs(), &[], start);
        let b = HolePunch::new(Role::Initiator, config, b_addrs(), a_listen, start);
        Self::from_machines(start, a, b, net, relay)
    }

    pub(super) fn from_machines(
        start: Instant,
        a: HolePunch,
        b: HolePunch,
        net: Network,
        relay: Vec<Duration>,
    ) -> Self {
        let peer = |hp| Peer {
            hp,
            current: None,
            denies_inbound: false,
            log: Vec::new(),
            outcome: None,
            unpaired: None,
        };
        let mut pair = Self {
            start,
            now: start,
            peers: [peer(a), peer(b)],
            relay,
            relay_lossy: false,
            net,
            queue: BTreeMap::new(),
            seq: 0,
            streams: 0,
            pairs: 0,
        };
        pair.drain(Side::A);
        pair.drain(Side::B);
        pair
    }

    pub(super) fn peer(&self, side: Side) -> &Peer {
        &self.peers[side as usize]
    }

    fn relay_delay(&self) -> Duration {
        let i = (self.streams as usize).saturating_sub(1);
        self.relay[i.min(self.relay.len() - 1)]
    }

    fn schedule(&mut self, delay: Duration, to: Side, event: Event) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), (to, event));
    }

    /// Runs until both sides are done and nothing is pending, or `limit` has passed.
    pub(super) fn run(&mut self, limit: Duration) {
        loop {
            let next = [
                self.queue.keys().next().map(|k| k.0),
                self.peers[0].hp.poll_timeout(),
                self.peers[1].hp.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            if next > self.start + limit {
                return;
            }
            self.now = self.now.max(next);
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let (to, event) = entry.remove();
                self.deliver(to, event);
            }
            for side in [Side::A, Side::B] {
                if self.peers[side as usize]
                    .hp
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.peers[side as usize].hp.handle_timeout(self.now);
                    self.drain(side);
                }
            }
        }
    }

    fn deliver(&mut self, to: Side, event: Event) {
        let now = self.now;
        let ow = self.relay_delay();
        let p = &mut self.peers[to as usize];
        match event {
            Event::InboundStream(s) => {
                if p.denies_inbound || p.hp.inbound_stream(now).is_err() {
                    self.schedule(ow, to.other(), Event::Closed(s));
                } else if let Some(old) = p.current.replace(s) {
                    // The node resets the stream the new one replaces.
                    self.schedule(ow, to.other(), Event::Closed(old));
                }
            }
            Event::StreamOpened(s) if p.current == Some(s) => p.hp.stream_opened(now),
            Event::Data(s, bytes) if p.current == Some(s) => {
                let _ = p.hp.handle_message(now, &bytes);
            }
            Event::Closed(s) if p.current == Some(s) => p.hp.stream_closed(now),
            Event::Connected => p.hp.direct_connected(now),
            Event::DialFailed(attempt, addr) => {
                p.hp.direct_dial_failed(now, attempt, &addr, "refused")
            }
            // Events of a stream the node no longer tracks.
            Event::StreamOpened(_) | Event::Data(..) | Event::Closed(_) => {}
        }
        self.drain(to);
    }

    fn drain(&mut self, side: Side) {
        while let Some(action) = self.peers[side as usize].hp.poll_action() {
            let p = &mut self.peers[side as usize];
            assert!(p.outcome.is_none(), "{side:?}: {action:?} after Done");
            p.log.push((self.now, action.clone()));
            self.act(side, action);
        }
    }

    fn act(&mut self, side: Side, action: Action) {
        let other = side.other();
        match action {
            Action::OpenStream => {
                self.streams += 1;
                let s = self.streams;
                self.peers[side as usize].current = Some(s);
                let ow = self.relay_delay();
                if self.peer(other).denies_inbound {
                    self.schedule(2 * ow, side, Event::Closed(s));
                } else {
                    self.schedule(ow, other, Event::InboundStream(s));
                    self.schedule(2 * ow, side, Event::StreamOpened(s));
                }
            }
            Action::Send(bytes) => {
                let s = self.peer(side).current.expect("Send without a stream");
                if !self.relay_lossy {
                    self.schedule(self.relay_delay(), other, Event::Data(s, bytes));
                }
            }
            Action::CloseStream | Action::ResetStream => {
                let s = self.peer(side).current.expect("close without a stream");
                if matches!(action, Action::ResetStream) {
                    self.peers[side as usize].current = None;
                }
                self.schedule(self.relay_delay(), other, Event::Closed(s));
            }
            Action::Dial {
                addrs,
                as_client,
                attempt,
            } => self.dial(
                side,
                DialRecord {
                    at: self.now,
                    addrs,
                    as_client,
                    attempt,
                },
            ),
            Action::Done(outcome) => self.peers[side as usize].outcome = Some((self.now, outcome)),
        }
    }

    fn dial(&mut self, side: Side, dial: DialRecord) {
        let direct = self.net.direct;
        if dial.attempt == 0 {
            // The unilateral dial: an ordinary connection if A is reachable.
            if self.net.a_reachable {
                self.schedule(2 * direct, side, Event::Connected);
                self.schedule(direct, side.other(), Event::Connected);
            } else {
                self.fail_later(side, &dial);
            }
            return;
        }
        let Some(earlier) = self.peers[side.other() as usize].unpaired.take() else {
            self.fail_later(side, &dial);
            self.peers[side as usize].unpaired = Some(dial);
            return;
        };
        let index = self.pairs;
        self.pairs += 1;
        let punched = index >= self.net.failing_pairs
            && dial.at.saturating_duration_since(earlier.at) <= self.net.window
            && dial.as_client != earlier.as_client;
        if punched {
            self.schedule(direct, side, Event::Connected);
            self.schedule(direct, side.other(), Event::Connected);
        } else {
            self.fail_later(side, &dial);
        }
    }

    fn fail_later(&mut self, side: Side, dial: &DialRecord) {
        if let Some(after) = self.net.refuse_after {
            for addr in &dial.addrs {
                self.schedule(after, side, Event::DialFailed(dial.attempt, addr.clone()));
            }
        }
    }

    /// Whether no event is in flight.
    pub(super) fn quiet(&self) -> bool {
        self.queue.is_empty()
    }

    pub(super) fn outcome(&self, side: Side) -> &Outcome {
        &self.peer(side).outcome.as_ref().expect("not done").1
    }

    /// Times since the start at which `side` took actions matching `f`.
    pub(super) fn times(&self, side: Side, f: impl Fn(&Action) -> bool) -> Vec<Duration> {
        self.peer(side)
            .log
            .iter()
            .filter(|(_, a)| f(a))
            .map(|(t, _)| *t - self.start)
            .collect()
    }

    pub(super) fn dials(&self, side: Side) -> Vec<(Duration, bool, u32)> {
        self.peer(side)
            .log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Dial {
                    as_client, attempt, ..
                } => Some((*t - self.start, *as_client, *attempt)),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn is_sync(a: &Action) -> bool {
    matches!(a, Action::Send(b) if *b == encode_sync())
}

pub(super) fn no_swap() -> HolePunchConfig {
    HolePunchConfig {
        swap_roles_on_last_attempt: false,
        ..Default::default()
    }
}
