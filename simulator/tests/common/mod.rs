//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use simulator::{HostEvent, HostId, LinkParams, NetworkId, SimTime, World};

/// Runs until `until`, collecting every application event, checking invariants after
/// every step.
pub fn run_collect(world: &mut World, until: SimTime) -> Vec<(SimTime, HostId, HostEvent)> {
    let mut events = Vec::new();
    while world.next_event_time().is_some_and(|t| t <= until) {
        world.step();
        world.check_invariants().expect("invariants hold");
        while let Some((host, event)) = world.poll_event() {
            events.push((world.now(), host, event));
        }
    }
    world.run_until(until);
    events
}

/// Two public hosts on one network, 10 ms from it each.
pub fn two_public_hosts(seed: u64, link: LinkParams) -> (World, NetworkId, HostId, HostId) {
    let mut world = World::new(seed);
    let internet = world.add_network();
    let a = world.add_host(internet, ip(1, 0, 0, 1), link).unwrap();
    let b = world.add_host(internet, ip(2, 0, 0, 2), link).unwrap();
    (world, internet, a, b)
}

pub fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
