//! Property test: random sequences of reserve, connect, data, close, hook answers and time
//! never exceed a configured limit and never leave a reservation past its expiry.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::hop::{AbuseConfig, AclConfig, HookMode, RateLimit, RateLimits};
use crate::identity::keypair_from_seed;

const UNIX: u64 = 1_700_000_000;
const PEERS: u8 = 6;
const TTL: Duration = Duration::from_secs(30);
const CIRCUIT_TIME: Duration = Duration::from_secs(10);
const CIRCUIT_BYTES: u64 = 100;

const IPS: [&str; 7] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.1.1",
    "10.0.2.1",
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:1::1",
];

const TABLE: &str =
    "10.0.0.0\t10.0.1.255\t1\n2001:db8::\t2001:db8:ffff:ffff:ffff:ffff:ffff:ffff\t2\n";

fn config(hook: HookMode) -> RelayConfig {
    RelayConfig {
        max_circuits: 4,
        max_circuit_duration: CIRCUIT_TIME,
        max_circuit_bytes: CIRCUIT_BYTES,
        max_reservations: 4,
        max_reservations_per_peer: 2,
        max_reservations_per_ip: 2,
        max_reservations_per_asn: 3,
        max_circuits_per_peer: 2,
        max_pending_asks: 3,
        hop_timeout: Duration::from_secs(5),
        reservation_ttl: TTL,
        rate: RateLimits {
            reservations_per_peer: RateLimit::new(3, Duration::from_secs(2)),
            reservations_per_ip: RateLimit::new(5, Duration::from_secs(1)),
            circuits_per_peer: RateLimit::new(4, Duration::from_millis(500)),
            circuits_per_ip: RateLimit::new(6, Duration::from_millis(250)),
            max_tracked_keys: 4,
        },
        abuse: AbuseConfig {
            refusals: RateLimit::new(5, Duration::from_secs(5)),
            ban: Duration::from_secs(7),
        },
        acl: AclConfig {
            hook,
            deny_peers: vec![peer(PEERS - 1)],
            ..AclConfig::default()
        },
        ..RelayConfig::default()
    }
}

fn peer(n: u8) -> PeerId {
    keypair_from_seed(n).public().to_peer_id()
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        peer: u8,
        ip: usize,
    },
    Connect {
        src: u8,
        ip: usize,
        dst: u8,
    },
    Data {
        circuit: usize,
        back: bool,
        bytes: u64,
    },
    Close {
        circuit: usize,
    },
    Answer {
        ask: usize,
        allow: bool,
    },
    Cancel {
        ask: usize,
    },
    Disconnect {
        peer: u8,
    },
    Advance {
        ms: u64,
        fire: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let ip = 0..IPS.len();
    prop_oneof![
        4 => (0..PEERS, ip.clone()).prop_map(|(peer, ip)| Op::Reserve { peer, ip }),
        4 => (0..PEERS, ip, 0..PEERS).prop_map(|(src, ip, dst)| Op::Connect { src, ip, dst }),
        4 => (0..8usize, any::<bool>(), 0..70u64)
            .prop_map(|(circuit, back, bytes)| Op::Data { circuit, back, bytes }),
        1 => (0..8usize).prop_map(|circuit| Op::Close { circuit }),
        2 => (0..4usize, any::<bool>()).prop_map(|(ask, allow)| Op::Answer { ask, allow }),
        1 => (0..4usize).prop_map(|ask| Op::Cancel { ask }),
        1 => (0..PEERS).prop_map(|peer| Op::Disconnect { peer }),
        3 => (0..12_000u64, any::<bool>()).prop_map(|(ms, fire)| Op::Advance { ms, fire }),
    ]
}

struct Harness {
    policy: RelayPolicy,
    table: AsnTable,
    t0: Instant,
    now: Instant,
    circuits: Vec<CircuitId>,
    asks: Vec<Ticket>,
}

impl Harness {
    fn unix(&self) -> u64 {
        UNIX + (self.now - self.t0).as_secs()
    }

    fn live(&self, peer: PeerId) -> bool {
        self.policy
            .reservation(&peer)
            .is_some_and(|r| r.expires_at > self.now)
    }

    /// Applies `op`; returns whether the policy saw `now` through a call that collects
    /// expiries (a request, an answer, or a timer that was due and fired).
    fn step(&mut self, op: &Op) -> bool {
        let mut collected = matches!(op, Op::Reserve { .. } | Op::Connect { .. });
        match *op {
            Op::Reserve { peer: n, ip } => {
                let (p, ip) = (peer(n), IPS[ip].parse().unwrap());
                let had = self.live(p);
                let before = self.policy.reservation(&p).copied();
                match self.policy.reserve(self.now, self.unix(), p, ip) {
                    Admission::Granted(g) => {
                        assert_eq!(g.refreshed, had);
                        assert_eq!(g.expires_at, self.now + TTL);
                        assert_eq!(g.expire_unix, self.unix() + TTL.as_secs());
                        let r = self.policy.reservation(&p).unwrap();
                        assert_eq!((r.ip, r.expires_at), (ip, g.expires_at));
                    }
                    Admission::Refused(r) => {
                        assert!(matches!(r.status_code(), 200 | 202), "{r}");
                        // A refused request leaves a live reservation as it was.
                        if had {
                            assert_eq!(self.policy.reservation(&p).copied(), before);
                        }
                    }
                    Admission::Ask(a) => self.asks.push(a.ticket),
                }
            }
            Op::Connect { src, ip, dst } => {
                let (src, dst, ip) = (peer(src), peer(dst), IPS[ip].parse().unwrap());
                let had = self.live(dst);
                match self.policy.connect(self.now, src, ip, dst) {
                    Admission::Granted(g) => {
                        assert!(had, "circuit granted to a peer without a live reservation");
                        assert_eq!(g.deadline, Some(self.now + CIRCUIT_TIME));
                        self.circuits.push(g.id);
                    }
                    Admission::Refused(r) => {
                        assert!(matches!(r.status_code(), 201 | 202 | 204), "{r}");
                        if r.status_code() == 204 {
                            assert!(!had);
                        }
                    }
                    Admission::Ask(a) => {
                        assert!(had);
                        self.asks.push(a.ticket);
                    }
                }
            }
            Op::Data {
                circuit,
                back,
                bytes,
            } => {
                let Some(&id) = self.circuits.get(circuit) else {
                    return false;
                };
                let dir = if back {
                    Direction::DstToSrc
                } else {
                    Direction::SrcToDst
                };
                let before = self.policy.circuit(id).copied();
                match self.policy.circuit_data(self.now, id, dir, bytes) {
                    Ok(left) => {
                        let info = self.policy.circuit(id).unwrap();
                        assert_eq!(left, Some(CIRCUIT_BYTES - info.bytes(dir)));
                    }
                    Err(CircuitError::LimitReached(hit)) => {
                        let before = before.unwrap();
                        assert!(self.policy.circuit(id).is_none());
                        match hit.kind {
                            LimitKind::Duration => assert!(before.deadline.unwrap() <= self.now),
                            LimitKind::Data(d) => {
                                assert_eq!(d, dir);
                                assert!(before.bytes(dir) + bytes > CIRCUIT_BYTES);
                                assert_eq!(hit.forwardable, CIRCUIT_BYTES - before.bytes(dir));
                            }
                        }
                    }
                    Err(CircuitError::Unknown(_)) => assert!(before.is_none()),
                }
            }
            Op::Close { circuit } => {
                if let Some(&id) = self.circuits.get(circuit) {
                    self.policy.circuit_closed(id);
                    assert!(self.policy.circuit(id).is_none());
                }
            }
            Op::Answer { ask, allow } => {
                let Some(&ticket) = self.asks.get(ask) else {
                    return false;
                };
                collected = true;
                let query = self
                    .policy
                    .pending_asks()
                    .find(|a| a.ticket == ticket)
                    .map(|a| a.query);
                let dst_live = match query {
                    Some(HookQuery::Connect { dst, .. }) => self.live(dst),
                    _ => true,
                };
                match self.policy.answer(self.now, self.unix(), ticket, allow) {
                    Ok(answered) => match answered.outcome {
                        Ok(Grant::Circuit(g)) => {
                            assert!(allow && dst_live);
                            self.circuits.push(g.id);
                        }
                        Ok(Grant::Reservation(g)) => {
                            assert!(allow);
                            assert_eq!(g.expires_at, self.now + TTL);
                        }
                        Err(r) => assert!(allow || r.reason() == RefusalReason::HookDenied),
                    },
                    Err(UnknownTicket(t)) => assert_eq!(t, ticket),
                }
            }
            Op::Cancel { ask } => {
                if let Some(&ticket) = self.asks.get(ask) {
                    self.policy.cancel_ask(ticket);
                }
            }
            Op::Disconnect { peer: n } => {
                self.policy.remove_reservation(&peer(n));
            }
            Op::Advance { ms, fire } => {
                self.now += Duration::from_millis(ms);
                if fire {
                    if self.policy.poll_timeout().is_some_and(|t| t <= self.now) {
                        self.policy.handle_timeout(self.now);
                    }
                    collected = true;
                }
            }
        }
        while let Some(event) = self.policy.poll_event() {
            match event {
                PolicyEvent::ReservationExpired(info) => assert!(info.expires_at <= self.now),
                PolicyEvent::CircuitLimitReached(hit) => {
                    assert!(hit.circuit.deadline.is_some_and(|d| d <= self.now));
                }
                PolicyEvent::AskExpired { request, refusal } => {
                    assert!(request.deadline.is_some_and(|d| d <= self.now));
                    assert_eq!(refusal.reason(), RefusalReason::HookTimedOut);
                }
                PolicyEvent::AbuseDetected { until, .. } => assert!(until > self.now),
            }
        }
        self.circuits
            .retain(|&id| self.policy.circuit(id).is_some() || id.as_u64() % 3 == 0);
        let pending: Vec<Ticket> = self.policy.pending_asks().map(|a| a.ticket).collect();
        self.asks
            .retain(|t| pending.contains(t) || t.as_u64() % 3 == 0);
        collected
    }

    /// Checks every limit and every deadline against the policy's own reports.
    fn check(&self, timer_fired: bool) {
        let p = &self.policy;
        let c = p.config();
        let mut per_ip: std::collections::BTreeMap<IpKey, u32> = Default::default();
        let mut per_asn: std::collections::BTreeMap<u32, u32> = Default::default();
        let next = p.poll_timeout();
        let mut reservations = 0;
        for r in p.reservations() {
            reservations += 1;
            assert_eq!(r.ip_key, IpKey::new(r.ip, c.ipv6_prefix_len));
            assert_eq!(r.asn, self.table.lookup(r.ip));
            *per_ip.entry(r.ip_key).or_default() += 1;
            if let Some(asn) = r.asn {
                *per_asn.entry(asn).or_default() += 1;
            }
            assert!(
                next.is_some_and(|t| t <= r.expires_at),
                "timer not armed for an expiry"
            );
            if timer_fired {
                assert!(r.expires_at > self.now, "reservation kept past its expiry");
            }
            assert!(r.expires_at <= self.now + TTL);
        }
        assert!(reservations <= c.max_reservations);
        assert!(
            per_ip.values().all(|&n| n <= c.max_reservations_per_ip),
            "{per_ip:?}"
        );
        assert!(
            per_asn.values().all(|&n| n <= c.max_reservations_per_asn),
            "{per_asn:?}"
        );

        let mut per_peer: std::collections::BTreeMap<PeerId, u32> = Default::default();
        let mut circuits = 0;
        for info in p.circuits() {
            circuits += 1;
            *per_peer.entry(info.src).or_default() += 1;
            if info.dst != info.src {
                *per_peer.entry(info.dst).or_default() += 1;
            }
            assert!(
                info.bytes_src_to_dst <= CIRCUIT_BYTES && info.bytes_dst_to_src <= CIRCUIT_BYTES
            );
            let deadline = info.deadline.unwrap();
            assert_eq!(deadline, info.started + CIRCUIT_TIME);
            assert!(next.is_some_and(|t| t <= deadline));
            if timer_fired {
                assert!(deadline > self.now, "circuit kept past its deadline");
            }
        }
        assert!(circuits <= c.max_circuits);
        assert!(
            per_peer.values().all(|&n| n <= c.max_circuits_per_peer),
            "{per_peer:?}"
        );

        let asks = p.pending_asks().count();
        assert!(asks <= c.max_pending_asks as usize);
        let u = p.usage();
        assert_eq!(
            (u.reservations, u.circuits, u.pending_asks),
            (reservations as usize, circuits as usize, asks)
        );
        assert!(u.tracked_keys <= 8 * c.rate.max_tracked_keys);
        assert!(u.banned <= c.rate.max_tracked_keys);
    }
}

fn run(hook: HookMode, ops: &[Op]) {
    let t0 = crate::hop::test_base();
    let table = AsnTable::parse(TABLE).unwrap();
    let mut h = Harness {
        policy: RelayPolicy::new(config(hook))
            .unwrap()
            .with_asn_table(table.clone()),
        table,
        t0,
        now: t0,
        circuits: Vec::new(),
        asks: Vec::new(),
    };
    for op in ops {
        // Only a bare time jump may leave stale entries, and only until the timer fires.
        let collected = h.step(op);
        h.check(collected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn limits_hold_without_hook(ops in proptest::collection::vec(op(), 1..150)) {
        run(HookMode::Off, &ops);
    }

    #[test]
    fn limits_hold_with_hook(ops in proptest::collection::vec(op(), 1..150)) {
        run(HookMode::Both, &ops);
    }
}
