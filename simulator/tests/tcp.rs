//! TCP between public hosts: handshakes, data, loss, resets, simultaneous open, close.

mod common;

use bytes::Bytes;
use common::*;
use simulator::{CloseReason, HostEvent, LinkParams, SimTime, TcpEvent, TcpState, UdpEvent};

fn tcp(events: &[(SimTime, simulator::HostId, HostEvent)]) -> Vec<(simulator::HostId, TcpEvent)> {
    events
        .iter()
        .filter_map(|(_, h, e)| match e {
            HostEvent::Tcp(t) => Some((*h, t.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn three_way_handshake_and_data() {
    let (mut world, _, a, b) = two_public_hosts(1, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let conn = world.tcp_connect(a, Some(5000), sa(b_addr, 80)).unwrap();
    world.tcp_send(conn, Bytes::from_static(b"hello")).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(1)));
    let a_addr = world.host_addr(a).unwrap();
    assert!(events.contains(&(
        a,
        TcpEvent::Connected {
            conn,
            local: sa(a_addr, 5000),
            remote: sa(b_addr, 80)
        }
    )));
    let accepted = events
        .iter()
        .find_map(|(h, e)| match e {
            TcpEvent::Accepted { conn, remote, .. } if *h == b => Some((*conn, *remote)),
            _ => None,
        })
        .expect("accepted");
    assert_eq!(accepted.1, sa(a_addr, 5000));
    assert!(events.contains(&(
        b,
        TcpEvent::Data {
            conn: accepted.0,
            bytes: Bytes::from_static(b"hello")
        }
    )));
    assert_eq!(world.tcp_state(conn), Some(TcpState::Established));
}

#[test]
fn rst_to_closed_port_refuses_the_connect() {
    let (mut world, _, a, b) = two_public_hosts(2, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    let conn = world.tcp_connect(a, None, sa(b_addr, 81)).unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(1));
    let (at, _, event) = events.last().unwrap();
    assert_eq!(
        *event,
        HostEvent::Tcp(TcpEvent::Closed {
            conn,
            reason: CloseReason::Refused
        })
    );
    assert_eq!(
        *at,
        SimTime::from_millis(40),
        "one round trip of 2 x 2 x 10 ms"
    );
    assert_eq!(world.tcp_state(conn), None);
}

#[test]
fn syn_retransmits_with_linux_backoff_then_times_out() {
    let (mut world, _, a, b) = two_public_hosts(3, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    let conn = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
    let link = world.host_link(b).unwrap();
    world.set_link_up(link, false).unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(200));
    assert_eq!(
        events.last().map(|(t, _, e)| (*t, e.clone())),
        Some((
            SimTime::from_secs(127),
            HostEvent::Tcp(TcpEvent::Closed {
                conn,
                reason: CloseReason::Timeout
            })
        ))
    );
    // SYNs at 0, 1, 3, 7, 15, 31, 63 s: seven, each dropped on b's link.
    assert_eq!(world.stats().dropped, 7);
}

#[test]
fn syn_retransmission_recovers_when_the_link_returns() {
    let (mut world, _, a, b) = two_public_hosts(4, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let conn = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
    let link = world.host_link(b).unwrap();
    world.set_link_up(link, false).unwrap();
    let mut events = run_collect(&mut world, SimTime::from_millis(2500));
    world.set_link_up(link, true).unwrap();
    events.extend(run_collect(&mut world, SimTime::from_secs(5)));
    let connected_at = events
        .iter()
        .find(|(_, _, e)| matches!(e, HostEvent::Tcp(TcpEvent::Connected { .. })))
        .map(|(t, _, _)| *t);
    // The SYN retransmitted at 3 s gets through.
    assert_eq!(connected_at, Some(SimTime::from_millis(3040)));
    assert_eq!(world.tcp_state(conn), Some(TcpState::Established));
}

#[test]
fn data_survives_loss_in_order() {
    for seed in 0..10 {
        let link = LinkParams::new(ms(5))
            .with_jitter(ms(2))
            .with_loss_percent(10.0);
        let (mut world, _, a, b) = two_public_hosts(seed, link);
        let b_addr = world.host_addr(b).unwrap();
        world.tcp_listen(b, 80).unwrap();
        let conn = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        world.tcp_send(conn, payload.clone()).unwrap();
        let mut events = tcp(&run_collect(&mut world, SimTime::from_secs(20)));
        assert_eq!(
            world.tcp_state(conn),
            Some(TcpState::Established),
            "seed {seed}"
        );
        // Closing after the connect completed: the FIN follows the queued data.
        world.tcp_close(conn).unwrap();
        events.extend(tcp(&run_collect(&mut world, SimTime::from_secs(600))));
        let received: Vec<u8> = events
            .iter()
            .filter_map(|(h, e)| match e {
                TcpEvent::Data { bytes, .. } if *h == b => Some(bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(received.len(), payload.len(), "seed {seed}");
        assert!(received == payload, "seed {seed}: bytes in order");
        assert!(
            events
                .iter()
                .any(|(h, e)| *h == b && matches!(e, TcpEvent::Eof { .. })),
            "seed {seed}"
        );
    }
}

#[test]
fn bandwidth_limits_throughput() {
    // 1 Mbit/s each way: 125 kB takes at least a second.
    let link = LinkParams::new(ms(5)).with_bandwidth(1_000_000, 64 * 1024);
    let (mut world, _, a, b) = two_public_hosts(5, link);
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let conn = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
    world.tcp_send(conn, vec![7u8; 125_000]).unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(30));
    let mut total = 0;
    let mut done = None;
    for (t, h, e) in &events {
        if let (true, HostEvent::Tcp(TcpEvent::Data { bytes, .. })) = (*h == b, e) {
            total += bytes.len();
            if total == 125_000 {
                done = Some(*t);
            }
        }
    }
    let done = done.expect("all data arrived");
    assert!(done >= SimTime::from_secs(1), "{done}");
    assert!(done < SimTime::from_secs(3), "{done}");
}

#[test]
fn simultaneous_open_without_nat() {
    let (mut world, _, a, b) = two_public_hosts(6, LinkParams::new(ms(10)));
    let (a_addr, b_addr) = (world.host_addr(a).unwrap(), world.host_addr(b).unwrap());
    // Nobody listens: the SYNs cross and both sides go SYN_RCVD -> ESTABLISHED.
    let ca = world.tcp_connect(a, Some(4001), sa(b_addr, 4002)).unwrap();
    let cb = world.tcp_connect(b, Some(4002), sa(a_addr, 4001)).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(1)));
    assert!(events.contains(&(
        a,
        TcpEvent::Connected {
            conn: ca,
            local: sa(a_addr, 4001),
            remote: sa(b_addr, 4002)
        }
    )));
    assert!(events.contains(&(
        b,
        TcpEvent::Connected {
            conn: cb,
            local: sa(b_addr, 4002),
            remote: sa(a_addr, 4001)
        }
    )));
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, TcpEvent::Accepted { .. } | TcpEvent::Closed { .. }))
    );
    world.tcp_send(ca, Bytes::from_static(b"x")).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(2)));
    assert_eq!(
        events,
        vec![(
            b,
            TcpEvent::Data {
                conn: cb,
                bytes: Bytes::from_static(b"x")
            }
        )]
    );
}

#[test]
fn listen_and_connect_from_the_same_port() {
    let (mut world, _, a, b) = two_public_hosts(7, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(a, 4001).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let conn = world.tcp_connect(a, Some(4001), sa(b_addr, 80)).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(1)));
    assert!(events.iter().any(|(_, e)| *e
        == TcpEvent::Connected {
            conn,
            local: sa(world.host_addr(a).unwrap(), 4001),
            remote: sa(b_addr, 80)
        }));
    // The same tuple twice is refused.
    assert!(world.tcp_connect(a, Some(4001), sa(b_addr, 80)).is_err());
}

#[test]
fn graceful_close_both_ways() {
    let (mut world, _, a, b) = two_public_hosts(8, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let ca = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(1)));
    let cb = events
        .iter()
        .find_map(|(_, e)| match e {
            TcpEvent::Accepted { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    world.tcp_close(ca).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(2)));
    assert_eq!(events, vec![(b, TcpEvent::Eof { conn: cb })]);
    assert_eq!(world.tcp_state(ca), Some(TcpState::FinWait2));
    assert_eq!(world.tcp_state(cb), Some(TcpState::CloseWait));
    world.tcp_send(cb, Bytes::from_static(b"bye")).unwrap();
    world.tcp_close(cb).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(3)));
    assert!(events.contains(&(
        a,
        TcpEvent::Data {
            conn: ca,
            bytes: Bytes::from_static(b"bye")
        }
    )));
    assert!(events.contains(&(a, TcpEvent::Eof { conn: ca })));
    assert!(events.contains(&(
        a,
        TcpEvent::Closed {
            conn: ca,
            reason: CloseReason::Fin
        }
    )));
    assert!(events.contains(&(
        b,
        TcpEvent::Closed {
            conn: cb,
            reason: CloseReason::Fin
        }
    )));
    assert_eq!(world.tcp_state(ca), Some(TcpState::TimeWait));
    assert_eq!(world.tcp_state(cb), None);
    run_collect(&mut world, SimTime::from_secs(100));
    assert_eq!(world.tcp_state(ca), None);
}

#[test]
fn abort_resets_the_peer() {
    let (mut world, _, a, b) = two_public_hosts(9, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let ca = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(1)));
    let cb = events
        .iter()
        .find_map(|(_, e)| match e {
            TcpEvent::Accepted { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    world.tcp_abort(ca).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(2)));
    assert_eq!(
        events,
        vec![(
            b,
            TcpEvent::Closed {
                conn: cb,
                reason: CloseReason::Reset
            }
        )]
    );
    assert!(world.tcp_send(ca, Bytes::from_static(b"x")).is_err());
}

#[test]
fn crash_and_restart_host() {
    let (mut world, _, a, b) = two_public_hosts(10, LinkParams::new(ms(10)));
    let b_addr = world.host_addr(b).unwrap();
    world.tcp_listen(b, 80).unwrap();
    let ca = world.tcp_connect(a, None, sa(b_addr, 80)).unwrap();
    run_collect(&mut world, SimTime::from_secs(1));
    world.crash_host(b).unwrap();
    assert!(world.tcp_listen(b, 80).is_err());
    world.restart_host(b).unwrap();
    // The restarted host knows nothing: data from a gets a RST.
    world.tcp_send(ca, Bytes::from_static(b"x")).unwrap();
    let events = tcp(&run_collect(&mut world, SimTime::from_secs(2)));
    assert_eq!(
        events,
        vec![(
            a,
            TcpEvent::Closed {
                conn: ca,
                reason: CloseReason::Reset
            }
        )]
    );
}

#[test]
fn udp_datagrams_and_port_unreachable() {
    let (mut world, _, a, b) = two_public_hosts(11, LinkParams::new(ms(10)));
    let (a_addr, b_addr) = (world.host_addr(a).unwrap(), world.host_addr(b).unwrap());
    world.udp_bind(b, 53).unwrap();
    world
        .udp_send(a, 1000, sa(b_addr, 53), Bytes::from_static(b"q"))
        .unwrap();
    world
        .udp_send(a, 1000, sa(b_addr, 54), Bytes::from_static(b"lost"))
        .unwrap();
    let events = run_collect(&mut world, SimTime::from_secs(1));
    assert_eq!(
        events
            .iter()
            .map(|(_, h, e)| (*h, e.clone()))
            .collect::<Vec<_>>(),
        vec![(
            b,
            HostEvent::Udp(UdpEvent::Datagram {
                local_port: 53,
                from: sa(a_addr, 1000),
                bytes: Bytes::from_static(b"q")
            })
        )]
    );
    // The second datagram was answered with ICMP, which a's unconnected socket ignores.
    assert_eq!(world.stats().delivered, 3);
}

#[test]
fn timers_fire_and_cancel() {
    let (mut world, _, a, _) = two_public_hosts(12, LinkParams::new(ms(10)));
    let t1 = world.set_timer(a, SimTime::from_secs(1), 11).unwrap();
    let t2 = world.set_timer(a, SimTime::from_secs(2), 22).unwrap();
    world.cancel_timer(t2);
    let events = run_collect(&mut world, SimTime::from_secs(3));
    assert_eq!(
        events,
        vec![(
            SimTime::from_secs(1),
            a,
            HostEvent::Timer { id: t1, token: 11 }
        )]
    );
}

#[test]
fn the_same_seed_gives_the_same_trace_log() {
    let run = |seed| {
        let config = simulator::WorldConfig {
            keep_trace: true,
            ..Default::default()
        };
        let mut world = simulator::World::with_config(seed, config);
        let internet = world.add_network();
        let link = LinkParams::new(ms(5))
            .with_jitter(ms(3))
            .with_loss_percent(5.0);
        let a = world.add_host(internet, ip(1, 0, 0, 1), link).unwrap();
        let b = world.add_host(internet, ip(2, 0, 0, 2), link).unwrap();
        world.tcp_listen(b, 80).unwrap();
        let conn = world.tcp_connect(a, None, sa(ip(2, 0, 0, 2), 80)).unwrap();
        world.tcp_send(conn, vec![1u8; 50_000]).unwrap();
        run_collect(&mut world, SimTime::from_secs(60));
        (world.trace().to_vec(), world.trace_hash())
    };
    let (log1, hash1) = run(5);
    let (log2, hash2) = run(5);
    assert!(log1.len() > 100);
    assert_eq!(log1, log2);
    assert_eq!(hash1, hash2);
    assert_ne!(run(6).1, hash1);
}
