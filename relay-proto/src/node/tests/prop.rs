//! Property test of the relay through whole nodes: random sequences of reservations,
//! circuits, data, closed connections and elapsed time, between a relay with small
//! limits and three clients, never let the relay exceed a limit, keep a reservation past
//! its expiry, or forward more than a circuit's data limit.

use std::time::Duration;

use multiaddr::Protocol;
use proptest::prelude::*;

use super::Net;
use crate::hop::{RateLimits, RelayConfig};
use crate::node::{Config, Event};
use crate::{ConnectionId, StreamRef};

const SINK: &str = "/sink/1.0.0";
const CLIENTS: usize = 3;
const TTL: Duration = Duration::from_secs(20);
const CIRCUIT_TIME: Duration = Duration::from_secs(6);
const CIRCUIT_BYTES: u64 = 4096;

#[derive(Debug, Clone)]
enum Op {
    /// Client `0` asks for a reservation.
    Reserve(usize),
    /// Client `from` dials client `to` through the relay and opens a stream.
    Dial { from: usize, to: usize },
    /// Client `from` writes `n` bytes on its latest relayed stream.
    Send { from: usize, n: usize },
    /// Client `0` drops its connection to the relay.
    Drop(usize),
    /// Time passes.
    Wait(Duration),
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        3 => client.clone().prop_map(Op::Reserve),
        4 => (client.clone(), client.clone())
            .prop_filter("two clients", |(a, b)| a != b)
            .prop_map(|(from, to)| Op::Dial { from, to }),
        4 => (client.clone(), 1usize..3000).prop_map(|(from, n)| Op::Send { from, n }),
        1 => client.prop_map(Op::Drop),
        2 => (100u64..25_000).prop_map(|ms| Op::Wait(Duration::from_millis(ms))),
    ]
}

fn relay() -> RelayConfig {
    RelayConfig {
        rate: RateLimits::off(),
        max_reservations: 2,
        max_reservations_per_peer: 1,
        max_circuits: 2,
        max_circuits_per_peer: 1,
        max_circuit_bytes: CIRCUIT_BYTES,
        max_circuit_duration: CIRCUIT_TIME,
        reservation_ttl: TTL,
        ..RelayConfig::default()
    }
}

struct World {
    net: Net,
    /// Per client: its latest relayed connection and stream.
    streams: Vec<Option<(ConnectionId, StreamRef)>>,
}

impl World {
    fn new() -> Self {
        let mut net = Net::new(Duration::from_millis(5));
        net.add(
            1,
            Config {
                relay: Some(relay()),
                ..Config::default()
            },
        );
        for i in 0..CLIENTS {
            let mut config = Config::default();
            config.ping.interval = None;
            let index = net.add(10 + i as u8, config);
            net.nodes[index].register_protocol(SINK);
        }
        World {
            net,
            streams: vec![None; CLIENTS],
        }
    }

    fn apply(&mut self, op: &Op) {
        let net = &mut self.net;
        match *op {
            Op::Reserve(c) => {
                let relay = net.full_addr(0);
                let _ = net.nodes[c + 1].reserve(net.now, relay);
            }
            Op::Dial { from, to } => {
                let target = net
                    .full_addr(0)
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(net.peer(to + 1)));
                let Ok(conn) = net.nodes[from + 1].dial(net.now, target) else {
                    return;
                };
                let established = net.wait_for(from + 1, Duration::from_secs(10), |e| match e {
                    Event::ConnectionEstablished { conn: c, .. } if *c == conn => Some(true),
                    Event::DialFailed { conn: c, .. } if *c == conn => Some(false),
                    _ => None,
                });
                if established == Some(true)
                    && let Some(stream) = net.open(from + 1, conn, SINK)
                {
                    self.streams[from] = Some((conn, stream));
                }
            }
            Op::Send { from, n } => {
                if let Some((_, stream)) = self.streams[from] {
                    let _ = net.nodes[from + 1].stream_write(net.now, stream, &vec![7; n]);
                }
            }
            Op::Drop(c) => {
                let relay = net.peer(0);
                if let Some(conn) = net.conn_to(c + 1, relay) {
                    net.nodes[c + 1].close(net.now, conn);
                }
            }
            Op::Wait(d) => net.run_for(d),
        }
        net.run_for(Duration::from_millis(200));
    }

    /// Everything the relay promises, checked between steps.
    fn check(&self) -> Result<(), TestCaseError> {
        let net = &self.net;
        let config = relay();
        let policy = net.nodes[0].relay_policy().expect("relay service on");
        let usage = policy.usage();
        prop_assert!(usage.reservations <= config.max_reservations as usize);
        prop_assert!(usage.circuits <= config.max_circuits as usize);
        for r in policy.reservations() {
            prop_assert!(
                r.expires_at > net.now,
                "reservation of {} kept past expiry",
                r.peer
            );
        }
        let mut per_peer = std::collections::BTreeMap::<_, u32>::new();
        for c in policy.circuits() {
            prop_assert!(c.bytes_src_to_dst <= CIRCUIT_BYTES);
            prop_assert!(c.bytes_dst_to_src <= CIRCUIT_BYTES);
            prop_assert!(net.now.duration_since(c.started) <= CIRCUIT_TIME);
            *per_peer.entry(c.src).or_default() += 1;
        }
        prop_assert!(
            per_peer
                .values()
                .all(|&n| n <= config.max_circuits_per_peer)
        );
        for event in &net.events[0] {
            if let Event::RelayCircuitClosed {
                bytes_src_to_dst,
                bytes_dst_to_src,
                duration,
                ..
            } = event
            {
                prop_assert!(*bytes_src_to_dst <= CIRCUIT_BYTES);
                prop_assert!(*bytes_dst_to_src <= CIRCUIT_BYTES);
                prop_assert!(*duration <= CIRCUIT_TIME);
            }
        }
        // What any client received over a relayed stream fits in the data limit (the
        // limit counts the inner connection's framing too, so this is looser).
        for (i, events) in net.events.iter().enumerate().skip(1) {
            let mut per_stream = std::collections::BTreeMap::<StreamRef, u64>::new();
            for event in events {
                if let Event::StreamData { stream, data } = event {
                    let relayed = net.nodes[i]
                        .connection_info(stream.conn)
                        .is_some_and(|info| info.relay.is_some());
                    if relayed {
                        *per_stream.entry(*stream).or_default() += data.len() as u64;
                    }
                }
            }
            prop_assert!(per_stream.values().all(|&n| n <= CIRCUIT_BYTES));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn relay_limits_hold_through_whole_nodes(ops in prop::collection::vec(op(), 4..24)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
            world.check()?;
        }
    }
}
