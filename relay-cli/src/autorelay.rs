//! AutoRelay for `relay listen`: the node's settings from `--relay`, `--auto-relay`,
//! `--max-relays` and `--config`, starting the service, and its events as JSON lines.
//!
//! - Each `--relay` is a static relay; without `--max-relays` the listener keeps a
//!   reservation on every one of them (as many as given), and replaces one that fails
//!   by another when there are more relays than reservations.
//! - `--auto-relay` also takes relays found on its own: peers met that announce the
//!   hop protocol (there is no peer source on the command line).
//! - `--max-relays N` is the seed's `max_relay_peers`.
//! - `--config FILE` reads the seed's schema: `node.listen`, `node.key_file`, ping and
//!   connection settings, and `node.relay.auto_relay`; the flags above add to it.
//!
//! With `--relay` or `--auto-relay` on the command line, AutoRelay holds reservations
//! whatever the node's reachability (the operator asked for relays). From the file
//! alone it does so only while the node believes itself unreachable: it has no public
//! listen address (see relay-proto's `node::autorelay`).
//!
//! A failed relay is noticed when its connection closes, or when a ping to it goes
//! unanswered: the detection interval of a silent relay is `node.ping_interval +
//! node.ping_timeout` (15s + 20s by default).

use std::net::SocketAddr;
use std::time::Duration;

use relay_proto::autorelay::{
    Activation, AutoRelayConfig, Event as AutoRelayEvent, FailureReason, RemovalReason,
};
use relay_proto::identity::Keypair;
use relay_proto::node::Config;
use relay_proto::node::addr::{parse_tcp, peer_of};
use relay_tokio::Node;
use serde_json::{Value, json};

use crate::config::{self, FileConfig};
use crate::{IdentityArgs, ListenArgs, identity};

/// What `relay listen` runs with.
pub(crate) struct ListenSettings {
    /// The node's identity.
    pub(crate) keypair: Keypair,
    /// The sockets to listen on.
    pub(crate) listen: Vec<SocketAddr>,
    /// The node's settings, AutoRelay included when it is used.
    pub(crate) config: Config,
}

/// The settings of `relay listen` from its flags and config file.
pub(crate) fn settings(args: &ListenArgs) -> Result<ListenSettings, String> {
    for relay in &args.relays {
        if peer_of(relay).is_none() || parse_tcp(relay).is_err() {
            return Err(format!(
                "--relay {relay}: expected /ip4|ip6/<ip>/tcp/<port>/p2p/<relay id>"
            ));
        }
    }
    if args.max_relays == Some(0) {
        return Err("--max-relays: must be at least 1".into());
    }
    let file = match &args.config {
        Some(path) => Some(config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let keypair = match (
        &args.identity,
        file.as_ref().and_then(|f| f.node.key_file.clone()),
    ) {
        (
            IdentityArgs {
                seed: None,
                key: None,
            },
            Some(path),
        ) => identity::load(&IdentityArgs {
            seed: None,
            key: Some(path),
        })?,
        (identity, _) => identity::load(identity)?,
    };
    let listen_addrs = match (&file, args.listen.is_empty()) {
        (Some(file), true) => file.node.listen.clone(),
        _ => args.listen.clone(),
    };
    let listen = crate::run::listen_sockets(
        &listen_addrs,
        args.relays.is_empty() && !args.auto_relay && file.is_none(),
    )?;
    let mut config = file
        .as_ref()
        .map_or_else(Config::default, FileConfig::node_config);
    config.auto_relay = auto_relay_config(args, file.as_ref());
    Ok(ListenSettings {
        keypair,
        listen,
        config,
    })
}

/// The AutoRelay settings, or `None` when neither the flags nor the file enable it.
fn auto_relay_config(args: &ListenArgs, file: Option<&FileConfig>) -> Option<AutoRelayConfig> {
    let from_flags = !args.relays.is_empty() || args.auto_relay;
    let mut auto = match file {
        Some(file) => file.auto_relay_config(),
        None => AutoRelayConfig {
            enable_dynamic: false,
            ..AutoRelayConfig::default()
        },
    };
    if !(from_flags || auto.enabled) {
        return None;
    }
    auto.enabled = true;
    for relay in &args.relays {
        if !auto.static_relay_peers.contains(relay) {
            auto.static_relay_peers.push(relay.clone());
        }
    }
    if args.auto_relay {
        auto.enable_dynamic = true;
    }
    if from_flags {
        auto.activation = Activation::Always;
    }
    match args.max_relays {
        Some(n) => auto.max_relay_peers = n,
        // Flags alone: one reservation per relay given, as `--relay` always meant.
        None if file.is_none() && !args.relays.is_empty() => {
            let relays = auto.static_relays().map_or(args.relays.len(), |r| r.len());
            auto.max_relay_peers = relays.max(1);
        }
        None => {}
    }
    auto.min_relay_peers = auto.min_relay_peers.min(auto.max_relay_peers);
    // No peer source on the command line: waiting for one to offer candidates before
    // taking a relay met through identify would only delay.
    auto.boot_delay = Duration::ZERO;
    Some(auto)
}

/// Starts AutoRelay if the node has it.
pub(crate) async fn start(node: &Node, settings: &Config) -> Result<(), String> {
    if settings.auto_relay.is_none() {
        return Ok(());
    }
    node.handle()
        .auto_relay_start()
        .await
        .map_err(|e| e.to_string())
}

/// The JSON line of an AutoRelay event.
pub(crate) fn to_json(event: &AutoRelayEvent) -> Value {
    match event {
        AutoRelayEvent::RelayAdded { relay } => json!({
            "event": "auto_relay",
            "status": "added",
            "relay": relay.to_string(),
        }),
        AutoRelayEvent::RelayRemoved { relay, reason } => json!({
            "event": "auto_relay",
            "status": "removed",
            "relay": relay.to_string(),
            "reason": removal_reason(*reason),
        }),
        AutoRelayEvent::RelaysChanged { current } => json!({
            "event": "relays",
            "relays": current.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        }),
        AutoRelayEvent::Error(error) => json!({
            "event": "auto_relay",
            "status": "error",
            "error": error.to_string(),
        }),
    }
}

fn removal_reason(reason: RemovalReason) -> &'static str {
    match reason {
        RemovalReason::Failed(FailureReason::Refused) => "refused",
        RemovalReason::Failed(FailureReason::Unreachable) => "unreachable",
        RemovalReason::Failed(FailureReason::ConnectionClosed) => "connection closed",
        RemovalReason::Failed(FailureReason::NotRenewed) => "not renewed",
        RemovalReason::Failed(FailureReason::HeartbeatTimeout) => "heartbeat timeout",
        RemovalReason::Failed(FailureReason::Timeout) => "timeout",
        RemovalReason::Swapped => "swapped",
        RemovalReason::Stopped => "stopped",
        RemovalReason::Deactivated => "deactivated",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn listen_args(args: &[&str]) -> ListenArgs {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            listen: ListenArgs,
        }
        let mut argv = vec!["listen"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("valid flags").listen
    }

    fn relay(seed: u8, port: u16) -> String {
        let peer = relay_proto::identity::keypair_from_seed(seed)
            .public()
            .to_peer_id();
        format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
    }

    #[test]
    fn relays_on_the_command_line_are_static_and_all_kept() {
        let (a, b) = (relay(1, 4101), relay(2, 4102));
        let s = settings(&listen_args(&["--seed", "9", "--relay", &a, "--relay", &b])).unwrap();
        let auto = s.config.auto_relay.unwrap();
        assert!(auto.enabled && !auto.enable_dynamic);
        assert_eq!(auto.activation, Activation::Always);
        assert_eq!(auto.static_relay_peers.len(), 2);
        assert_eq!((auto.max_relay_peers, auto.min_relay_peers), (2, 1));
        assert!(
            s.listen.is_empty(),
            "behind relays, no listen socket unless asked"
        );
    }

    #[test]
    fn max_relays_and_auto_relay() {
        let (a, b, c) = (relay(1, 4101), relay(2, 4102), relay(3, 4103));
        let args = [
            "--seed",
            "9",
            "--relay",
            &a,
            "--relay",
            &b,
            "--relay",
            &c,
            "--max-relays",
            "2",
            "--auto-relay",
        ];
        let auto = settings(&listen_args(&args))
            .unwrap()
            .config
            .auto_relay
            .unwrap();
        assert_eq!(auto.max_relay_peers, 2);
        assert!(auto.enable_dynamic);
        let auto = settings(&listen_args(&["--seed", "9", "--auto-relay"]))
            .unwrap()
            .config
            .auto_relay
            .unwrap();
        assert!(auto.enable_dynamic && auto.static_relay_peers.is_empty());
        assert_eq!(auto.max_relay_peers, 3, "the seed's default");
    }

    #[test]
    fn without_relays_there_is_no_auto_relay() {
        let s = settings(&listen_args(&["--seed", "9"])).unwrap();
        assert!(s.config.auto_relay.is_none());
        assert_eq!(s.listen, vec![SocketAddr::from(([0, 0, 0, 0], 4001))]);
    }

    #[test]
    fn bad_flags_are_named() {
        let error = settings(&listen_args(&[
            "--seed",
            "9",
            "--relay",
            "/ip4/1.2.3.4/tcp/1",
        ]))
        .err()
        .unwrap();
        assert!(error.starts_with("--relay /ip4/1.2.3.4/tcp/1"), "{error}");
        let a = relay(1, 4101);
        let error = settings(&listen_args(&[
            "--seed",
            "9",
            "--relay",
            &a,
            "--max-relays",
            "0",
        ]))
        .err()
        .unwrap();
        assert_eq!(error, "--max-relays: must be at least 1");
    }

    #[test]
    fn the_example_config_is_read() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/listener.autorelay.yaml"
        );
        let s = settings(&listen_args(&["--seed", "9", "--config", path])).unwrap();
        let auto = s.config.auto_relay.unwrap();
        assert!(auto.enabled && !auto.enable_dynamic);
        assert_eq!(auto.static_relay_peers.len(), 3);
        assert_eq!((auto.max_relay_peers, auto.min_relay_peers), (2, 2));
        assert_eq!(auto.activation, Activation::WhenPrivate);
        assert_eq!(auto.quality_threshold, 0.5);
        assert_eq!(auto.refresh_interval, Duration::from_secs(300));
        assert_eq!(s.listen, vec![SocketAddr::from(([0, 0, 0, 0], 4002))]);
        // A flag adds a relay and raises the bound.
        let d = relay(4, 4104);
        let s = settings(&listen_args(&[
            "--seed",
            "9",
            "--config",
            path,
            "--relay",
            &d,
            "--max-relays",
            "3",
        ]))
        .unwrap();
        let auto = s.config.auto_relay.unwrap();
        assert_eq!(auto.static_relay_peers.len(), 4);
        assert_eq!(auto.max_relay_peers, 3);
        assert_eq!(auto.activation, Activation::Always);
    }
}
