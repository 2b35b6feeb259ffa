//! The experiment's topology: a relay on the Internet and a NAT chain per peer.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::PunchSetup;
use crate::error::NetError;
use crate::nat::NatConfig;
use crate::net::{HostId, LinkParams, NetworkId};
use crate::rng::SimRng;
use crate::world::World;

/// The relay's address and port.
pub(super) const RELAY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 1), 443);

/// Hosts of the experiment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Topology {
    pub(super) relay: HostId,
    pub(super) a: HostId,
    pub(super) b: HostId,
    pub(super) port_a: u16,
    pub(super) port_b: u16,
}

pub(super) fn build(world: &mut World, setup: &PunchSetup) -> Result<Topology, NetError> {
    let mut rng = SimRng::new(setup.seed ^ 0x7075_6e63_6821);
    let loss = setup.loss_percent;
    let internet = world.add_network();
    let relay_link = LinkParams::new(ms(rng.range_inclusive(5, 20)))
        .with_jitter(Duration::from_micros(rng.range_inclusive(0, 2000)))
        .with_loss_percent(loss);
    let relay = world.add_host(internet, *RELAY.ip(), relay_link)?;
    let a = side(world, internet, &setup.a, 1, &mut rng, loss)?;
    let b = side(world, internet, &setup.b, 2, &mut rng, loss)?;
    let port_a = port(&mut rng);
    let port_b = port(&mut rng);
    Ok(Topology {
        relay,
        a,
        b,
        port_a,
        port_b,
    })
}

/// Builds a chain, outermost NAT first, and the host inside it. `side` numbers the
/// address plan: A uses 198.51.100.0/24 and 10.1.x.0/24, B 192.0.2.0/24 and 10.2.x.0/24.
fn side(
    world: &mut World,
    internet: NetworkId,
    chain: &[NatConfig],
    side: u8,
    rng: &mut SimRng,
    loss: f64,
) -> Result<HostId, NetError> {
    let public = if side == 1 {
        [198, 51, 100]
    } else {
        [192, 0, 2]
    };
    let wan = LinkParams::new(ms(rng.range_inclusive(10, 40)))
        .with_jitter(Duration::from_micros(rng.range_inclusive(0, 2000)))
        .with_loss_percent(loss);
    let lan = LinkParams::new(ms(1))
        .with_jitter(Duration::from_micros(200))
        .with_loss_percent(loss);
    let mut network = internet;
    for (depth, config) in chain.iter().rev().enumerate() {
        let (addr, link) = if depth == 0 {
            (Ipv4Addr::new(public[0], public[1], public[2], 1), wan)
        } else {
            (Ipv4Addr::new(10, side, depth as u8, 2), lan)
        };
        let nat = world.add_nat(network, addr, link, *config)?;
        network = world.nat_inside_network(nat)?;
    }
    let depth = chain.len() as u8;
    let (addr, link) = if chain.is_empty() {
        (Ipv4Addr::new(public[0], public[1], public[2], 10), wan)
    } else {
        (Ipv4Addr::new(10, side, depth, 100), lan)
    };
    world.add_host(network, addr, link)
}

fn port(rng: &mut SimRng) -> u16 {
    u16::try_from(rng.range_inclusive(20_000, 40_000)).unwrap_or(20_000)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
