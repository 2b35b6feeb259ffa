//! The `relay` command: one binary for operators, testers and scripts.
//!
//! It speaks to people on stderr and to programs on stdout, one JSON object per line
//! with an `"event"` field (see CONTRACT.md). Errors are one line on stderr and a
//! non-zero exit status.

mod config;
mod identity;
mod metrics;
mod output;
mod run;

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
    /// Listens for connections; answers ping, identify and echo.
    Listen(ListenArgs),
    /// Connects to a peer, pings it, and exits.
    Dial(DialArgs),
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
struct ListenArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// A TCP multiaddr to listen on; may repeat.
    #[arg(
        long = "listen",
        value_name = "MULTIADDR",
        default_value = "/ip4/0.0.0.0/tcp/4001"
    )]
    listen: Vec<Multiaddr>,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    hold: Option<f64>,
}

#[derive(Debug, Args)]
struct DialArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// The peer's multiaddr, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3...
    target: Multiaddr,
    /// Pings to send once connected.
    #[arg(long, value_name = "N", default_value_t = 1)]
    ping: u32,
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
        Command::Listen(args) => run::block_on(run::listen(args)),
        Command::Dial(args) => run::block_on(run::dial(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("relay: {error}");
            ExitCode::FAILURE
        }
    }
}
