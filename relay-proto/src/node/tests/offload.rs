//! Crypto offload: nodes that hand their ciphers to the runtime (here the in-memory
//! network) talk to each other and to nodes that do not, directly and through a relay.

use std::time::Duration;

use super::Net;
use super::relay::{ECHO, SECS, dial_via_relay, net, relay_config, reserve};
use crate::node::{Config, Event, StreamRef};

/// Writes all of `data` on `stream` of node `i`, running the network as the send
/// window allows; returns whether it all went.
fn send_all(net: &mut Net, i: usize, stream: StreamRef, data: &[u8]) -> bool {
    let mut sent = 0;
    let end = net.now + 60 * SECS;
    while sent < data.len() && net.now < end {
        match net.nodes[i].stream_write(net.now, stream, &data[sent..]) {
            Ok(n) => sent += n,
            Err(_) => return false,
        }
        net.run_for(Duration::from_millis(20));
    }
    sent == data.len()
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

/// The inbound stream of `protocol` node `i` accepted last.
fn inbound(net: &Net, i: usize) -> StreamRef {
    net.events[i]
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::InboundStream {
                stream, protocol, ..
            } if protocol == ECHO => Some(*stream),
            _ => None,
        })
        .expect("an inbound stream")
}

/// A relay (0), a listener (1) and a dialer (2); `offloaded` says which of them hand
/// their ciphers out. Returns the network and the dialer's relayed connection.
fn circuit(offloaded: [bool; 3]) -> (Net, crate::ConnectionId) {
    let mut net = net(relay_config(|_| {}), 2);
    for (i, on) in offloaded.into_iter().enumerate() {
        if on {
            net.nodes[i].enable_crypto_offload();
        }
    }
    reserve(&mut net, 1);
    net.nodes[1].register_protocol(ECHO);
    let conn = dial_via_relay(&mut net, 2, 1).expect("circuit");
    (net, conn)
}

#[test]
fn offloaded_nodes_relay_bulk_data() {
    for offloaded in [[true; 3], [true, false, false], [false, true, true]] {
        let (mut net, conn) = circuit(offloaded);
        let stream = net.open(2, conn, ECHO).expect("stream");
        // Several windows' worth, so window updates travel both ways many times.
        let data = payload(700 * 1024);
        assert!(send_all(&mut net, 2, stream, &data), "{offloaded:?}");
        net.run_for(SECS);
        let received = net.received(1, inbound(&net, 1));
        assert_eq!(received.len(), data.len(), "{offloaded:?}");
        assert!(received == data, "{offloaded:?}");
        // Pings still find their way.
        net.nodes[2].ping(net.now, conn, 1).unwrap();
        let pong = net.wait_for(2, 5 * SECS, |e| match e {
            Event::Ping {
                conn: c, result, ..
            } if *c == conn => Some(result.is_ok()),
            _ => None,
        });
        assert_eq!(pong, Some(true), "{offloaded:?}");
    }
}

#[test]
fn only_tcp_connections_hand_out_their_ciphers() {
    let (net, relayed) = circuit([true; 3]);
    // The network holds ciphers for each end of the two TCP connections to the relay.
    let held: Vec<_> = net.ciphers.keys().copied().collect();
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(
        !held.contains(&(2, relayed)),
        "relayed connections keep theirs"
    );
    for (node, conn) in held {
        assert!(
            net.nodes[node]
                .connection_info(conn)
                .unwrap()
                .relay
                .is_none()
        );
    }
}

#[test]
fn offload_asked_for_after_the_connection_opened() {
    let mut net = Net::new(Duration::from_millis(5));
    let mut config = Config::default();
    config.ping.interval = None;
    let a = net.add(1, config.clone());
    let b = net.add(2, config);
    net.nodes[b].register_protocol(ECHO);
    let addr = net.full_addr(b);
    let conn = net.nodes[a].dial(net.now, addr).unwrap();
    net.wait_for(a, 10 * SECS, |e| {
        matches!(e, Event::ConnectionEstablished { .. }).then_some(())
    })
    .expect("connected");
    let stream = net.open(a, conn, ECHO).unwrap();
    assert!(send_all(&mut net, a, stream, &payload(1000)));
    // Only now does node `a` hand its ciphers out; the byte streams go on in order.
    let c = net.nodes[a].conns.get_mut(&conn).unwrap();
    c.conn.offload_crypto();
    net.nodes[a].mark(conn);
    net.nodes[a].run(net.now);
    let data = payload(300 * 1024);
    assert!(send_all(&mut net, a, stream, &data));
    net.run_for(SECS);
    assert!(net.ciphers.contains_key(&(a, conn)));
    let received = net.received(b, inbound(&net, b));
    assert_eq!(received.len(), 1000 + data.len());
    assert!(received[1000..] == data[..]);
}
