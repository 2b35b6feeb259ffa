//! One trial's world: relays on the Internet, peers public or behind their NAT chains,
//! a relay-proto node on each.
//!
//! Address plan: relay `r` is 203.0.113.(r+1); peer `p`'s public address (its own or
//! its outermost NAT's) is 198.51.100.(p+1); the NAT at depth `d` inside it is
//! 10.(p+1).d.2 and the peer behind the innermost NAT 10.(p+1).(depth).100.

use std::net::{Ipv4Addr, SocketAddrV4};

use relay_proto::identity::keypair_from_secret;
use relay_proto::multiaddr::Protocol;
use relay_proto::node::Config;
use relay_proto::node::addr::tcp_multiaddr;

use super::ScenarioError;
use super::plan::{Cell, Plan, Role};
use crate::net::{HostId, NetworkId};
use crate::node::{NodeSpec, NodeWorld, SimClock};
use crate::rng::SimRng;
use crate::tcp::TcpConfig;
use crate::world::{World, WorldConfig, mix};

/// The protocol of `transfer` steps: the receiver counts bytes until the stream ends.
pub(crate) const TRANSFER_PROTOCOL: &str = "/relay-rs/sim/transfer/1.0.0";

const TOPOLOGY_SALT: u64 = 0x746f_706f;
const KEY_SALT: u64 = 0x6b65_7973;

/// A trial's world and what runs where.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) nw: NodeWorld,
    /// The host of each planned host, by index.
    pub(crate) hosts: Vec<HostId>,
    /// The node of each planned host (attached or, for absent peers, to attach).
    pub(crate) specs: Vec<NodeSpec>,
    /// Whether the node was attached at the start.
    pub(crate) attached: Vec<bool>,
}

/// Builds the world of trial `seed` of `cell`.
pub(crate) fn build(
    plan: &Plan,
    cell: &Cell,
    seed: u64,
    clock: SimClock,
) -> Result<Built, ScenarioError> {
    let mut tcp = TcpConfig::default();
    if let Some(r) = plan.tcp_data_retries {
        tcp.data_retries = r;
    }
    let config = WorldConfig {
        tcp,
        check_nats: plan.check_invariants,
        keep_trace: false,
    };
    let mut world = World::with_config(seed, config);
    let mut rng = SimRng::new(mix(seed, TOPOLOGY_SALT, 0));
    let internet = world.add_network();
    let mut hosts = Vec::new();
    let (mut relays, mut peers) = (0u8, 0u8);
    for (i, h) in plan.hosts.iter().enumerate() {
        let host = match h.role {
            Role::Relay(_) => {
                relays += 1;
                let addr = Ipv4Addr::new(203, 0, 113, relays);
                world.add_host(internet, addr, h.link.draw(&mut rng))?
            }
            Role::Peer => {
                peers += 1;
                peer_host(&mut world, internet, plan, cell, i, peers, &mut rng)?
            }
        };
        hosts.push(host);
    }
    let mut nw = NodeWorld::new(world, clock);
    nw.set_check_invariants(plan.check_invariants);
    let keys: Vec<_> = (0..plan.hosts.len())
        .map(|i| {
            let mut key = SimRng::new(mix(seed, KEY_SALT, i as u64));
            let mut secret = [0u8; 32];
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&key.next_u64().to_le_bytes());
            }
            keypair_from_secret(secret)
        })
        .collect();
    let mut specs = Vec::new();
    let mut attached = Vec::new();
    for (i, h) in plan.hosts.iter().enumerate() {
        let mut config = Config {
            port_reuse: h.port_reuse,
            ..Config::default()
        };
        if let Some(interval) = plan.ping_interval {
            config.ping.interval = interval;
        }
        if let Some(timeout) = plan.ping_timeout {
            config.ping.timeout = timeout;
        }
        if let Some(ar) = &h.auto_relay {
            let mut auto = ar.config.clone();
            for &r in &ar.static_relays {
                let ip = nw.world().host_addr(hosts[r])?;
                let addr = SocketAddrV4::new(ip, plan.hosts[r].port);
                let id = keys[r].public().to_peer_id();
                auto.static_relay_peers
                    .push(tcp_multiaddr(addr.into()).with(Protocol::P2p(id)));
            }
            config.auto_relay = Some(auto);
        }
        let mut protocols = Vec::new();
        match &h.role {
            Role::Relay(relay) => config.relay = Some((**relay).clone()),
            Role::Peer => protocols.push(TRANSFER_PROTOCOL.to_owned()),
        }
        let spec = NodeSpec {
            config,
            keypair: keys[i].clone(),
            listen_port: h.port,
            protocols,
            start_auto_relay: h.auto_relay.is_some(),
        };
        if h.present {
            nw.attach(hosts[i], spec.clone())?;
        } else {
            nw.world_mut().crash_host(hosts[i])?;
        }
        specs.push(spec);
        attached.push(h.present);
    }
    Ok(Built {
        nw,
        hosts,
        specs,
        attached,
    })
}

/// A peer host: public, or behind its chain (built outermost first).
fn peer_host(
    world: &mut World,
    internet: NetworkId,
    plan: &Plan,
    cell: &Cell,
    i: usize,
    number: u8,
    rng: &mut SimRng,
) -> Result<HostId, ScenarioError> {
    let h = &plan.hosts[i];
    let chain = plan.chain(cell, i);
    let wan = h.link.draw(rng);
    let public = Ipv4Addr::new(198, 51, 100, number);
    if chain.nats.is_empty() {
        return Ok(world.add_host(internet, public, wan)?);
    }
    let mut network = internet;
    for (depth, nat) in chain.nats.iter().rev().enumerate() {
        let (addr, link) = if depth == 0 {
            (public, wan)
        } else {
            (Ipv4Addr::new(10, number, depth as u8, 2), h.lan.draw(rng))
        };
        let id = world.add_nat(network, addr, link, *nat)?;
        network = world.nat_inside_network(id)?;
    }
    let addr = Ipv4Addr::new(10, number, chain.nats.len() as u8, 100);
    Ok(world.add_host(network, addr, h.lan.draw(rng))?)
}
