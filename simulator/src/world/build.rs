//! Building and changing the topology: networks, hosts, NATs, links; crashes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Attachment, Host, Life, Link, Nat, Network, World, mix};
use crate::error::NetError;
use crate::host::stack::Stack;
use crate::invariant::NatModel;
use crate::nat::{NatConfig, NatTable};
use crate::net::{HostId, LinkId, LinkParams, LinkState, NatId, NetworkId};
use crate::rng::SimRng;

const HOST_SALT: u64 = 1 << 32;
const NAT_SALT: u64 = 2 << 32;

impl World {
    /// A new, empty network segment (e.g. the Internet, or a LAN).
    pub fn add_network(&mut self) -> NetworkId {
        let id = NetworkId(self.networks.len() as u32);
        self.networks.push(Network {
            members: BTreeMap::new(),
            gateway: None,
        });
        id
    }

    /// A host with address `addr` on `network`, attached by a link with `link`
    /// properties. The host is up, with no sockets.
    pub fn add_host(
        &mut self,
        network: NetworkId,
        addr: Ipv4Addr,
        link: LinkParams,
    ) -> Result<HostId, NetError> {
        self.check_free(network, addr)?;
        let id = HostId(self.hosts.len() as u32);
        let link_id = self.attach(network, Attachment::Host(id), link);
        if let Some(net) = self.networks.get_mut(network.0 as usize) {
            net.members.insert(addr, link_id);
        }
        let stack = self.new_stack(id, 0, addr);
        self.hosts.push(Host {
            addr,
            link: link_id,
            life: Life::Up,
            incarnation: 0,
            stack: Some(stack),
        });
        Ok(id)
    }

    /// A NAT whose external side has address `public_ip` on `outside`, attached by a
    /// link with `link` properties. Its inside is a new network
    /// ([`World::nat_inside_network`]) whose gateway it is, attached by an instant link
    /// (change it with [`World::set_link_params`]).
    pub fn add_nat(
        &mut self,
        outside: NetworkId,
        public_ip: Ipv4Addr,
        link: LinkParams,
        config: NatConfig,
    ) -> Result<NatId, NetError> {
        self.check_free(outside, public_ip)?;
        let id = NatId(self.nats.len() as u32);
        let outside_link = self.attach(outside, Attachment::NatOutside(id), link);
        if let Some(net) = self.networks.get_mut(outside.0 as usize) {
            net.members.insert(public_ip, outside_link);
        }
        let inside_network = self.add_network();
        let inside_link = self.attach(
            inside_network,
            Attachment::NatInside(id),
            LinkParams::instant(),
        );
        if let Some(net) = self.networks.get_mut(inside_network.0 as usize) {
            net.gateway = Some(inside_link);
        }
        let table = NatTable::new(
            config,
            public_ip,
            mix(self.seed, NAT_SALT | u64::from(id.0), 0),
        );
        self.nats.push(Nat {
            public_ip,
            config,
            outside: outside_link,
            inside: inside_link,
            inside_network,
            life: Life::Up,
            incarnation: 0,
            table,
            model: NatModel::new(id, config),
        });
        Ok(id)
    }

    /// The network behind a NAT.
    pub fn nat_inside_network(&self, nat: NatId) -> Result<NetworkId, NetError> {
        Ok(self.nat(nat)?.inside_network)
    }

    /// A NAT's external address.
    pub fn nat_public_addr(&self, nat: NatId) -> Result<Ipv4Addr, NetError> {
        Ok(self.nat(nat)?.public_ip)
    }

    /// The link of a NAT's external side.
    pub fn nat_outside_link(&self, nat: NatId) -> Result<LinkId, NetError> {
        Ok(self.nat(nat)?.outside)
    }

    /// The link of a NAT's internal side.
    pub fn nat_inside_link(&self, nat: NatId) -> Result<LinkId, NetError> {
        Ok(self.nat(nat)?.inside)
    }

    /// A NAT's translation table, for inspection.
    pub fn nat_table(&self, nat: NatId) -> Result<&crate::nat::NatTable, NetError> {
        Ok(&self.nat(nat)?.table)
    }

    /// A host's address.
    pub fn host_addr(&self, host: HostId) -> Result<Ipv4Addr, NetError> {
        Ok(self.host(host)?.addr)
    }

    /// A host's link.
    pub fn host_link(&self, host: HostId) -> Result<LinkId, NetError> {
        Ok(self.host(host)?.link)
    }

    /// Whether a host exists and is up.
    pub fn host_is_up(&self, host: HostId) -> bool {
        self.host(host).is_ok_and(|h| h.life == Life::Up)
    }

    /// Takes a link down (losing everything in flight on it) or brings it up.
    pub fn set_link_up(&mut self, link: LinkId, up: bool) -> Result<(), NetError> {
        let l = self
            .links
            .get_mut(link.0 as usize)
            .ok_or(NetError::UnknownLink(link))?;
        l.state.set_up(up);
        Ok(())
    }

    /// Whether a link is up.
    pub fn link_is_up(&self, link: LinkId) -> Result<bool, NetError> {
        Ok(self
            .links
            .get(link.0 as usize)
            .ok_or(NetError::UnknownLink(link))?
            .state
            .up)
    }

    /// Changes a link's properties; packets already in flight keep their timing.
    pub fn set_link_params(&mut self, link: LinkId, params: LinkParams) -> Result<(), NetError> {
        let l = self
            .links
            .get_mut(link.0 as usize)
            .ok_or(NetError::UnknownLink(link))?;
        l.state.params = params;
        Ok(())
    }

    /// Crashes a host: its sockets, connections and pending events vanish; packets to
    /// it are dropped until [`World::restart_host`].
    pub fn crash_host(&mut self, host: HostId) -> Result<(), NetError> {
        let h = self.host_mut(host)?;
        if h.life == Life::Up {
            h.life = Life::Crashed;
            h.stack = None;
            h.incarnation = h.incarnation.wrapping_add(1);
        }
        self.events.retain(|(h, _)| *h != host);
        Ok(())
    }

    /// Restarts a crashed host with no sockets (a new incarnation: old connection ids
    /// stay invalid).
    pub fn restart_host(&mut self, host: HostId) -> Result<(), NetError> {
        let h = self.host(host)?;
        if h.life != Life::Crashed {
            return Ok(());
        }
        let (incarnation, addr) = (h.incarnation, h.addr);
        let stack = self.new_stack(host, incarnation, addr);
        let h = self.host_mut(host)?;
        h.stack = Some(stack);
        h.life = Life::Up;
        Ok(())
    }

    /// Removes a host for good; its address becomes free on its network.
    pub fn remove_host(&mut self, host: HostId) -> Result<(), NetError> {
        self.crash_host(host)?;
        let h = self.host_mut(host)?;
        h.life = Life::Removed;
        let (link, addr) = (h.link, h.addr);
        self.detach(link, addr);
        Ok(())
    }

    /// Crashes a NAT: its mappings vanish and it drops everything until
    /// [`World::restart_nat`].
    pub fn crash_nat(&mut self, nat: NatId) -> Result<(), NetError> {
        let seed = self.seed;
        let n = self.nat_mut(nat)?;
        if n.life == Life::Up {
            n.life = Life::Crashed;
            n.incarnation = n.incarnation.wrapping_add(1);
            let salt = NAT_SALT | u64::from(nat.0);
            n.table = NatTable::new(
                n.config,
                n.public_ip,
                mix(seed, salt, u64::from(n.incarnation)),
            );
            n.model.reset();
        }
        Ok(())
    }

    /// Restarts a crashed NAT with an empty table.
    pub fn restart_nat(&mut self, nat: NatId) -> Result<(), NetError> {
        let n = self.nat_mut(nat)?;
        if n.life == Life::Crashed {
            n.life = Life::Up;
        }
        Ok(())
    }

    /// Removes a NAT for good: its external address becomes free and its inside network
    /// loses its gateway.
    pub fn remove_nat(&mut self, nat: NatId) -> Result<(), NetError> {
        self.crash_nat(nat)?;
        let n = self.nat_mut(nat)?;
        n.life = Life::Removed;
        let (outside, inside, public_ip, inside_network) =
            (n.outside, n.inside, n.public_ip, n.inside_network);
        self.detach(outside, public_ip);
        if let Some(l) = self.links.get_mut(inside.0 as usize) {
            l.attached = false;
        }
        if let Some(net) = self.networks.get_mut(inside_network.0 as usize) {
            net.gateway = None;
        }
        Ok(())
    }

    pub(super) fn host(&self, host: HostId) -> Result<&Host, NetError> {
        self.hosts
            .get(host.0 as usize)
            .filter(|h| h.life != Life::Removed)
            .ok_or(NetError::UnknownHost(host))
    }

    pub(super) fn host_mut(&mut self, host: HostId) -> Result<&mut Host, NetError> {
        self.hosts
            .get_mut(host.0 as usize)
            .filter(|h| h.life != Life::Removed)
            .ok_or(NetError::UnknownHost(host))
    }

    fn nat(&self, nat: NatId) -> Result<&Nat, NetError> {
        self.nats
            .get(nat.0 as usize)
            .filter(|n| n.life != Life::Removed)
            .ok_or(NetError::UnknownNat(nat))
    }

    fn nat_mut(&mut self, nat: NatId) -> Result<&mut Nat, NetError> {
        self.nats
            .get_mut(nat.0 as usize)
            .filter(|n| n.life != Life::Removed)
            .ok_or(NetError::UnknownNat(nat))
    }

    fn new_stack(&self, host: HostId, incarnation: u32, addr: Ipv4Addr) -> Stack {
        let rng = SimRng::new(mix(
            self.seed,
            HOST_SALT | u64::from(host.0),
            u64::from(incarnation),
        ));
        Stack::new(host, incarnation, addr, rng, self.config.tcp)
    }

    fn check_free(&self, network: NetworkId, addr: Ipv4Addr) -> Result<(), NetError> {
        let net = self
            .networks
            .get(network.0 as usize)
            .ok_or(NetError::UnknownNetwork(network))?;
        if addr.is_unspecified() || addr.is_broadcast() || net.members.contains_key(&addr) {
            return Err(NetError::AddressInUse { network, addr });
        }
        Ok(())
    }

    fn attach(&mut self, network: NetworkId, attachment: Attachment, params: LinkParams) -> LinkId {
        let id = LinkId(self.links.len() as u32);
        self.links.push(Link {
            network,
            attachment,
            attached: true,
            state: LinkState::new(params),
        });
        id
    }

    fn detach(&mut self, link: LinkId, addr: Ipv4Addr) {
        let Some(l) = self.links.get_mut(link.0 as usize) else {
            return;
        };
        l.attached = false;
        let network = l.network;
        if let Some(net) = self.networks.get_mut(network.0 as usize)
            && net.members.get(&addr) == Some(&link)
        {
            net.members.remove(&addr);
        }
    }
}
