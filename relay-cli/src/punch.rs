//! Hole punching in `relay listen` and `relay dial`: the node settings, the default
//! listen port punches dial from, and `dial`'s wait for the outcome.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use relay_proto::dcutr::AddrScope;
use relay_proto::identity::PeerId;
use relay_proto::node::Config;
use relay_proto::node::addr::{parse_circuit, parse_tcp};
use relay_proto::{Event, Multiaddr};
use relay_tokio::Node;
use serde_json::{Value, json};

use crate::config::{self, FileConfig};
use crate::events;

/// How long `relay dial` waits for the hole punch outcome by default.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The node settings of `listen` and `dial`: the file's (`--config`) or the defaults,
/// hole punching off with `--no-punch`. Peers that meet through a relay at a private
/// (loopback) address share that network (host), so private (loopback) addresses count
/// as hole punch candidates then.
pub(crate) fn node_config(
    file: Option<&Path>,
    relays: &[Multiaddr],
    no_punch: bool,
) -> Result<Config, String> {
    let file = match file {
        Some(path) => config::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let mut config = file.node_config();
    adjust(&mut config, relays, no_punch);
    Ok(config)
}

/// Turns hole punching off with `--no-punch`, and widens the candidates to the
/// relays' private or loopback ranges (see [`node_config`]).
pub(crate) fn adjust(config: &mut Config, relays: &[Multiaddr], no_punch: bool) {
    let punch = &mut config.hole_punch;
    if no_punch {
        punch.enabled = false;
    }
    for ip in relays.iter().filter_map(relay_ip) {
        match AddrScope::of(ip) {
            Some(AddrScope::Loopback) => punch.allow_loopback_addrs = true,
            Some(AddrScope::Private) => punch.allow_private_addrs = true,
            _ => {}
        }
    }
}

/// The IP of a relay address, `/ip4|ip6/.../tcp/PORT/p2p/RELAY[/p2p-circuit/...]`.
fn relay_ip(addr: &Multiaddr) -> Option<IpAddr> {
    let relay = match parse_circuit(addr) {
        Some(circuit) => circuit.relay_addr?,
        None => addr.clone(),
    };
    parse_tcp(&relay).ok().map(|(socket, _)| socket.ip())
}

/// Where to listen when no `--listen` is given and hole punching is on: an OS-chosen
/// port on all addresses of the relays' IP family.
pub(crate) fn default_listen(relays: &[Multiaddr]) -> Vec<SocketAddr> {
    let v6 = relays.iter().filter_map(relay_ip).any(|ip| ip.is_ipv6());
    let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    vec![SocketAddr::new(any, 0)]
}

/// Waits up to `wait` for the outcome of the hole punch with `peer`; returns its
/// `hole_punch` line (a failure line if none came in time), or `None` if the node
/// stopped.
pub(crate) async fn wait_outcome(
    events: &mut relay_tokio::UnboundedReceiver<Event>,
    peer: PeerId,
    wait: Duration,
) -> Option<Value> {
    let outcome = async {
        while let Some(event) = events.next().await {
            let ours = matches!(
                &event,
                Event::HolePunchSucceeded { peer: p, .. } | Event::HolePunchFailed { peer: p, .. }
                    if *p == peer
            );
            if ours {
                return events::to_json(&event);
            }
        }
        None
    };
    match tokio::time::timeout(wait, outcome).await {
        Ok(line) => line,
        Err(_) => Some(json!({
            "event": "hole_punch",
            "peer": peer.to_string(),
            "result": "failure",
            "attempts": 0,
            "error": format!("no hole punch outcome within {:.1} s", wait.as_secs_f64()),
            "reason": "timeout",
        })),
    }
}

/// Whether new streams to `peer` (and pings) take a relayed connection.
pub(crate) async fn relayed_now(node: &Node, peer: PeerId) -> bool {
    node.with_node(move |n, _| {
        n.preferred_connection(&peer)
            .and_then(|c| n.connection_info(c))
            .is_some_and(|info| info.relay.is_some())
    })
    .await
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_relays_network_widens_the_candidates() {
        let relay = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X";
        let peer = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3";
        let cases = [
            (format!("/ip4/127.0.0.1/tcp/1/p2p/{relay}"), true, false),
            (
                format!("/ip4/10.1.2.3/tcp/1/p2p/{relay}/p2p-circuit/p2p/{peer}"),
                false,
                true,
            ),
            (format!("/ip4/203.0.113.1/tcp/1/p2p/{relay}"), false, false),
        ];
        for (addr, loopback, private) in cases {
            let config = node_config(None, &[ma(&addr)], false).unwrap();
            let punch = &config.hole_punch;
            assert!(punch.enabled, "{addr}");
            assert_eq!(
                (punch.allow_loopback_addrs, punch.allow_private_addrs),
                (loopback, private),
                "{addr}"
            );
        }
        assert!(!node_config(None, &[], true).unwrap().hole_punch.enabled);
        let v6 = default_listen(&[ma(&format!("/ip6/::1/tcp/1/p2p/{relay}"))]);
        assert_eq!(v6, ["[::]:0".parse().unwrap()]);
        assert_eq!(default_listen(&[]), ["0.0.0.0:0".parse().unwrap()]);
    }
}
