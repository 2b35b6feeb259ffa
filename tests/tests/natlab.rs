//! The NAT lab (`relay_tests::natlab`) held to what it promises: it comes up and goes
//! away cleanly for every preset, each preset's NAT behaves as documented (mapping,
//! port preservation, filtering) for UDP and TCP, the NFQUEUE delays add the configured
//! latency, and real `relay` processes talk libp2p through the NATs.
//!
//! Needs root; where network namespaces are unavailable each test prints
//! `natlab: skipped: <reason>` and passes.

#![allow(clippy::print_stdout)]

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use relay_tests::natlab::{
    Delays, Filtering, Host, Lab, LabBuilder, LabError, Mapping, Nat, Transport, ask_tcp, ask_udp,
    namespaces_of, receive_udp, relay_binary,
};

/// Builds a lab, or prints the skip line and returns `None` where namespaces are
/// unavailable. Any other error fails the test.
fn lab(builder: LabBuilder) -> Option<Lab> {
    match builder.build() {
        Ok(lab) => Some(lab),
        Err(LabError::Unavailable(reason)) => {
            println!("natlab: skipped: {reason}");
            None
        }
        Err(e) => panic!("natlab: {e}"),
    }
}

/// How long to wait for a packet that must not arrive.
fn silence(lab: &Lab) -> Duration {
    Duration::from_millis(400) + lab.expected_rtt(Host::A, Host::Observer)
}

#[test]
fn every_preset_comes_up_and_leaves_nothing_behind() {
    for nat in Nat::ALL {
        let Some(lab) = lab(Lab::builder().nat_a(nat).nat_b(nat)) else {
            return;
        };
        let id = lab.id().to_owned();
        assert_eq!(namespaces_of(&id).len(), Host::ALL.len(), "{nat}");
        let ruleset = lab
            .exec(Host::RouterA, "nft", ["list", "ruleset"])
            .expect("nft list ruleset");
        assert!(ruleset.contains("table ip natlab"), "{nat}: {ruleset}");
        for host in [Host::A, Host::B] {
            let seen = lab
                .observed_addr(host, Transport::Udp, 0)
                .unwrap_or_else(|e| panic!("{nat}: {host} reaches the observer: {e}"));
            assert_eq!(*seen.ip(), lab.public_addr(host), "{nat}: {host}");
        }
        // A thread inside the relay's namespace owns the relay's address.
        let relay_addr = lab.addr(Host::Relay);
        let bound = lab
            .thread_in(Host::Relay, move || {
                UdpSocket::bind((relay_addr, 0)).is_ok()
            })
            .expect("thread in the relay's namespace");
        assert!(bound.join().expect("thread"), "{nat}: bind {relay_addr}");
        let mut sleeper = lab.spawn(Host::B, "sleep", ["600"]).expect("spawn sleep");
        assert!(
            sleeper.wait(Duration::from_millis(50)).is_err(),
            "sleep still runs"
        );
        let pid = sleeper.pid();
        // The lab kills its processes even when their handles outlive it.
        drop(lab);
        assert_eq!(namespaces_of(&id), Vec::<String>::new(), "{nat}");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{nat}: the lab's process {pid} survived it"
        );
        drop(sleeper);
    }
}

#[test]
fn port_restricted_maps_independently_and_filters_by_address_and_port() {
    check_nat(Nat::PortRestricted);
}

#[test]
fn full_cone_maps_independently_and_lets_anyone_in() {
    check_nat(Nat::FullCone);
}

#[test]
fn symmetric_maps_each_destination_to_a_random_port_and_filters() {
    check_nat(Nat::Symmetric);
}

/// Probes router A's NAT with UDP and TCP and asserts the preset's documented mapping,
/// port preservation and filtering.
fn check_nat(nat: Nat) {
    let Some(lab) = lab(Lab::builder().nat_a(nat).nat_b(nat)) else {
        return;
    };
    check_udp(&lab, nat);
    check_tcp(&lab, nat);
}

fn check_udp(lab: &Lab, nat: Nat) {
    let public = lab.public_addr(Host::A);
    let timeout = Duration::from_secs(3);
    let reflectors = [
        (Host::Relay, 3478),
        (Host::Relay, 3479),
        (Host::Observer, 3478),
    ]
    .map(|(host, port)| {
        lab.reflector(host, Transport::Udp, port)
            .expect("reflector")
    });
    let socket = lab.udp_socket(Host::A, 40_000).expect("socket on A");
    let mapped: Vec<SocketAddrV4> = reflectors
        .iter()
        .map(|r| ask_udp(&socket, r.addr(), timeout).expect("reflector answers"))
        .collect();
    assert!(
        mapped.iter().all(|m| *m.ip() == public),
        "{nat}: {mapped:?}"
    );
    match nat.mapping() {
        Mapping::EndpointIndependent => {
            assert!(mapped.iter().all(|m| *m == mapped[0]), "{nat}: {mapped:?}")
        }
        Mapping::AddressAndPortDependent => {
            assert!(mapped.iter().any(|m| *m != mapped[0]), "{nat}: {mapped:?}")
        }
    }
    if nat.preserves_ports() {
        assert!(
            mapped.iter().all(|m| m.port() == 40_000),
            "{nat}: {mapped:?}"
        );
    }

    // Unsolicited datagrams to the mapping made towards relay:3478, from a new port on
    // the relay and from the observer.
    for (from, port) in [(Host::Relay, 5556), (Host::Observer, 5555)] {
        let sender = lab.udp_socket(from, port).expect("sender");
        sender.send_to(b"unsolicited", mapped[0]).expect("send");
        let wait = match nat.filtering() {
            Filtering::EndpointIndependent => timeout,
            Filtering::AddressAndPortDependent => silence(lab),
        };
        let got = receive_udp(&socket, wait).expect("receive");
        match nat.filtering() {
            Filtering::EndpointIndependent => {
                let (src, data) = got.unwrap_or_else(|| panic!("{nat}: nothing from {from}"));
                assert_eq!(src, SocketAddr::from((lab.addr(from), port)), "{nat}");
                assert_eq!(data, b"unsolicited");
            }
            Filtering::AddressAndPortDependent => {
                assert_eq!(got, None, "{nat}: a datagram from {from}:{port} got in")
            }
        }
    }

    // A port nobody mapped stays closed under every preset (a full cone is no DMZ).
    let unmapped = lab.udp_socket(Host::A, 45_000).expect("socket on A");
    let sender = lab.udp_socket(Host::Observer, 0).expect("sender");
    sender
        .send_to(b"unsolicited", SocketAddrV4::new(public, 45_000))
        .expect("send");
    assert_eq!(
        receive_udp(&unmapped, silence(lab)).expect("receive"),
        None,
        "{nat}: an unmapped port let a datagram in"
    );
}

fn check_tcp(lab: &Lab, nat: Nat) {
    let public = lab.public_addr(Host::A);
    let timeout = Duration::from_secs(3);
    let reflectors = [
        (Host::Relay, 3478),
        (Host::Relay, 3479),
        (Host::Observer, 3478),
    ]
    .map(|(host, port)| {
        lab.reflector(host, Transport::Tcp, port)
            .expect("reflector")
    });
    // The listener a hole punch keeps on the port it dials from.
    let listener = lab.tcp_listener(Host::A, 41_000).expect("listener on A");
    let mapped: Vec<SocketAddrV4> = reflectors
        .iter()
        .map(|r| {
            let socket = lab.tcp_socket(Host::A, 41_000).expect("socket on A");
            socket
                .connect_timeout(&SocketAddr::V4(r.addr()).into(), timeout)
                .expect("connect to the reflector");
            socket.set_read_timeout(Some(timeout)).expect("timeout");
            ask_tcp(std::net::TcpStream::from(socket)).expect("reflector answers")
        })
        .collect();
    assert!(
        mapped.iter().all(|m| *m.ip() == public),
        "{nat}: {mapped:?}"
    );
    match nat.mapping() {
        Mapping::EndpointIndependent => {
            assert!(mapped.iter().all(|m| *m == mapped[0]), "{nat}: {mapped:?}")
        }
        Mapping::AddressAndPortDependent => {
            assert!(mapped.iter().any(|m| *m != mapped[0]), "{nat}: {mapped:?}")
        }
    }
    if nat.preserves_ports() {
        assert!(
            mapped.iter().all(|m| m.port() == 41_000),
            "{nat}: {mapped:?}"
        );
    }

    // An unsolicited SYN from the observer to the mapping made towards relay:3478.
    let stranger = lab
        .tcp_socket(Host::Observer, 0)
        .expect("socket on observer");
    let wait = match nat.filtering() {
        Filtering::EndpointIndependent => timeout,
        Filtering::AddressAndPortDependent => silence(lab),
    };
    let connected = stranger.connect_timeout(&SocketAddr::V4(mapped[0]).into(), wait);
    match nat.filtering() {
        Filtering::EndpointIndependent => {
            connected.unwrap_or_else(|e| panic!("{nat}: the observer cannot connect: {e}"));
            listener.set_nonblocking(false).expect("blocking");
            let (_, from) = listener.accept().expect("A accepts the observer");
            assert_eq!(from.ip(), std::net::IpAddr::V4(lab.addr(Host::Observer)));
        }
        Filtering::AddressAndPortDependent => {
            let err = connected.expect_err("an unsolicited SYN got through");
            // Dropped silently: no RST, so the dialer times out rather than being refused.
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{nat}: {err}");
        }
    }
}

/// The median round-trip time of a UDP probe from `socket` to `reflector`.
fn udp_rtt(socket: &UdpSocket, reflector: SocketAddrV4) -> Duration {
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            ask_udp(socket, reflector, Duration::from_secs(3)).expect("reflector answers");
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
fn delays_add_the_configured_round_trip_time() {
    let delays = Delays {
        router_lan: Duration::from_millis(20),
        router_wan: Duration::from_millis(60),
        relay: Duration::from_millis(40),
    };
    let Some(lab) = lab(Lab::builder().delays(delays)) else {
        return;
    };
    let relay = lab
        .reflector(Host::Relay, Transport::Udp, 3478)
        .expect("reflector");
    let observer = lab
        .reflector(Host::Observer, Transport::Udp, 3478)
        .expect("reflector");
    let from_a = lab.udp_socket(Host::A, 0).expect("socket");
    let from_b = lab.udp_socket(Host::B, 0).expect("socket");
    let from_relay = lab.udp_socket(Host::Relay, 0).expect("socket");
    for (from, socket, to, reflector, expected) in [
        (Host::A, &from_a, Host::Relay, &relay, 120),
        (Host::A, &from_a, Host::Observer, &observer, 80),
        (Host::B, &from_b, Host::Observer, &observer, 80),
        (Host::Relay, &from_relay, Host::Observer, &observer, 40),
    ] {
        let expected = Duration::from_millis(expected);
        assert_eq!(lab.expected_rtt(from, to), expected);
        let rtt = udp_rtt(socket, reflector.addr());
        println!("natlab: rtt {from} -> {to}: {rtt:?} (configured {expected:?})");
        assert!(
            rtt >= expected && rtt < expected + Duration::from_millis(25),
            "{from} -> {to}: measured {rtt:?}, configured {expected:?}"
        );
    }
    assert!(lab.delayed_packets(Host::RouterA) >= 20);
    assert!(lab.delayed_packets(Host::Relay) >= 5);
    assert_eq!(lab.delayed_packets(Host::Observer), 0);

    // TCP goes through the same queues: a connect takes one round trip.
    let listener = lab.tcp_listener(Host::Relay, 5000).expect("listener");
    let rtt = (0..3)
        .map(|_| {
            let socket = lab.tcp_socket(Host::A, 0).expect("socket");
            let start = Instant::now();
            socket
                .connect_timeout(
                    &SocketAddr::from((lab.addr(Host::Relay), 5000)).into(),
                    Duration::from_secs(3),
                )
                .expect("connect");
            start.elapsed()
        })
        .min()
        .unwrap_or_default();
    println!("natlab: tcp connect a -> relay: {rtt:?} (configured 120ms)");
    assert!(rtt >= Duration::from_millis(120) && rtt < Duration::from_millis(145));
    drop(listener);
}

#[test]
fn without_delays_the_lab_is_fast() {
    let Some(lab) = lab(Lab::builder().delays(Delays::NONE)) else {
        return;
    };
    let relay = lab
        .reflector(Host::Relay, Transport::Udp, 3478)
        .expect("reflector");
    let socket = lab.udp_socket(Host::A, 0).expect("socket");
    let rtt = udp_rtt(&socket, relay.addr());
    println!("natlab: rtt a -> relay without delays: {rtt:?}");
    assert!(rtt < Duration::from_millis(10), "{rtt:?}");
    assert_eq!(lab.delayed_packets(Host::RouterA), 0);
}

#[test]
fn relay_dial_pings_through_every_nat() {
    for (nat_a, nat_b) in [
        (Nat::PortRestricted, Nat::Symmetric),
        (Nat::FullCone, Nat::FullCone),
    ] {
        let Some(lab) = lab(Lab::builder().nat_a(nat_a).nat_b(nat_b)) else {
            return;
        };
        let relay = relay_binary().unwrap_or_else(|e| panic!("the relay binary: {e}"));
        let mut listener = lab
            .spawn(
                Host::Relay,
                &relay,
                ["listen", "--listen", "/ip4/0.0.0.0/tcp/4001", "--seed", "1"],
            )
            .expect("relay listen");
        let listening = listener
            .wait_event("listening", Duration::from_secs(20))
            .expect("listening");
        let peer_id = listening["peer_id"].as_str().expect("peer_id").to_owned();
        let target = format!("/ip4/{}/tcp/4001/p2p/{peer_id}", lab.addr(Host::Relay));
        for (host, seed) in [(Host::A, "2"), (Host::B, "3")] {
            let nat = lab.nat(host).map_or("none", Nat::name);
            let mut dial = lab
                .spawn(
                    host,
                    &relay,
                    ["dial", target.as_str(), "--ping", "3", "--seed", seed],
                )
                .expect("relay dial");
            let timeout = Duration::from_secs(20);
            dial.wait_event("connected", timeout)
                .unwrap_or_else(|e| panic!("{host} behind {nat}: {e}"));
            let floor = lab.expected_rtt(host, Host::Relay).as_secs_f64() * 1000.0;
            for _ in 0..3 {
                let ping = dial
                    .wait_event("ping", timeout)
                    .unwrap_or_else(|e| panic!("{host} behind {nat}: {e}"));
                let rtt = ping["rtt_ms"].as_f64().expect("rtt_ms");
                println!("natlab: relay ping {host} ({nat}) -> relay: {rtt:.1} ms");
                assert!(rtt >= floor - 1.0, "{host}: {rtt} ms < {floor} ms");
            }
            let status = dial.wait(timeout).expect("dial exits");
            assert!(status.success(), "{host}: {status}: {}", dial.stderr());
            // The relay saw the dialer at its router's public address: the NAT rewrote it.
            let prefix = format!("/ip4/{}/tcp/", lab.public_addr(host));
            listener
                .wait_for(&format!("a connection from {prefix}"), timeout, |e| {
                    e["event"] == "connected"
                        && e["addr"].as_str().is_some_and(|a| a.starts_with(&prefix))
                })
                .unwrap_or_else(|e| panic!("{host} behind {nat}: {e}"));
        }
    }
}
