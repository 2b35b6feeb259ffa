//! The `relay` command: one binary for operators, testers and scripts.
//!
//! It speaks to people on stderr and to programs on stdout, one JSON object per line
//! with an `"event"` field (see CONTRACT.md). Errors are one line on stderr and a
//! non-zero exit status.

mod autorelay;
mod config;
mod events;
mod hook;
mod identity;
mod metrics;
mod output;
mod punch;
mod run;
mod serve;
mod simulate;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use relay_proto::Multiaddr;

/// A libp2p relay stack: circuit relay v2, DCUtR, AutoRelay.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the PeerId of a key.
    Id(IdentityArgs),
    /// Runs a circuit relay v2 server.
    Serve(ServeArgs),
    /// Keeps reservations on relays and accepts direct and relayed connections;
    /// answers ping, identify, echo and perf.
    Listen(ListenArgs),
    /// Connects to a peer (directly or through a relay), pings and measures, and exits.
    Dial(DialArgs),
    /// Runs a simulator scenario file: relay-proto nodes on simulated hosts and NATs.
    Simulate(simulate::SimulateArgs),
}

/// Where the node's identity comes from.
#[derive(Debug, Args, Clone)]
struct IdentityArgs {
    /// A deterministic key: secret bytes are N followed by 31 zeros (for tests).
    #[arg(long, value_name = "N", conflicts_with = "key")]
    seed: Option<u8>,
    /// An ed25519 key file in libp2p's protobuf format; created (mode 0600) if missing.
    #[arg(long, value_name = "FILE")]
    key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// A YAML file with the seed's `node.relay` schema (see config/relay.example.yaml);
    /// flags override it. Without it an embedded default runs the relay service.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// A TCP multiaddr to listen on; may repeat (default /ip4/0.0.0.0/tcp/4001).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// The most reservations at once.
    #[arg(long, value_name = "N")]
    max_reservations: Option<u32>,
    /// The most reservations one peer may hold or request at once.
    #[arg(long, value_name = "N")]
    max_reservations_per_peer: Option<u32>,
    /// The most circuits at once.
    #[arg(long, value_name = "N")]
    max_circuits: Option<u32>,
    /// Bytes each circuit may relay in each direction (0: no limit).
    #[arg(long, value_name = "BYTES")]
    max_circuit_bytes: Option<u64>,
    /// How long each circuit may last (0: no limit).
    #[arg(long, value_name = "SECONDS")]
    max_circuit_duration: Option<u64>,
    /// No data or duration limit on circuits and no rate limits (for benchmarks).
    #[arg(long)]
    unlimited: bool,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    hold: Option<f64>,
}

#[derive(Debug, Args)]
struct ListenArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// A TCP multiaddr to listen on; may repeat (default /ip4/0.0.0.0/tcp/4001 when no
    /// --relay is given).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// A relay to keep a reservation on (`/ip4/.../tcp/PORT/p2p/RELAY`); may repeat.
    /// AutoRelay keeps them (one reservation each unless --max-relays says fewer) and
    /// replaces one that fails. With relays and no --listen, the node listens on an
    /// OS-chosen port (hole punches dial from it).
    #[arg(long = "relay", value_name = "MULTIADDR")]
    relays: Vec<Multiaddr>,
    /// Let AutoRelay also choose relays it meets (peers announcing the hop protocol).
    #[arg(long)]
    auto_relay: bool,
    /// The most reservations kept at once (the seed's `max_relay_peers`).
    #[arg(long, value_name = "N")]
    max_relays: Option<usize>,
    /// A YAML file with the seed's schema: `node.listen`, `node.key_file`, ping
    /// settings and `node.relay.auto_relay` (see config/listener.autorelay.yaml); the
    /// flags add to it.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Take no part in hole punching.
    #[arg(long)]
    no_punch: bool,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    hold: Option<f64>,
}

#[derive(Debug, Args)]
struct DialArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// The peer: `/ip4/.../tcp/PORT/p2p/PEER`, or through a relay
    /// `/ip4/.../tcp/PORT/p2p/RELAY/p2p-circuit/p2p/PEER`.
    target: Multiaddr,
    /// Pings to send once connected.
    #[arg(long, value_name = "N", default_value_t = 1)]
    ping: u32,
    /// Bytes to upload with the perf protocol.
    #[arg(long, value_name = "BYTES")]
    perf_up: Option<u64>,
    /// Bytes to download with the perf protocol.
    #[arg(long, value_name = "BYTES")]
    perf_down: Option<u64>,
    /// Do not try to upgrade a relayed connection to a direct one.
    #[arg(long)]
    no_punch: bool,
    /// Longest wait for the hole punch outcome before pinging (default 30).
    #[arg(long, value_name = "SECONDS")]
    punch_wait: Option<f64>,
    /// A TCP multiaddr to listen on (hole punches dial from it); may repeat. Default
    /// for a relayed target: an OS-chosen port on all addresses.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,
    /// A YAML file with the seed's `node.relay` schema; its `hole_punch` section (and
    /// the node's connection settings) apply.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Stay connected this many seconds after the pings.
    #[arg(long, value_name = "SECONDS")]
    hold: Option<f64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RELAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Id(args) => identity::load(&args).map(|k| {
            output::emit(
                &serde_json::json!({"event": "id", "peer_id": k.public().to_peer_id().to_string()}),
            )
        }),
        Command::Serve(args) => run::block_on(serve::serve(args)),
        Command::Listen(args) => run::block_on(run::listen(args)),
        Command::Dial(args) => run::block_on(run::dial(args)),
        Command::Simulate(args) => simulate::simulate(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay: {error}");
            ExitCode::FAILURE
        }
    }
}
