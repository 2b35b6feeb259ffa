//! A rust-libp2p 0.57 circuit relay v2 server with every limit lifted: the baseline the
//! relay benchmarks (`tests/benches/relay_*.rs`) measure our `relay serve --unlimited`
//! against, in its own process like ours.
//!
//! ```text
//! rust-relay [--listen /ip4/127.0.0.1/tcp/0] [--seed N]
//! ```
//!
//! Prints one JSON line on stdout once it listens, in the shape `relay serve` uses:
//! `{"event":"listening","peer_id":"12D3KooW...","addrs":["/ip4/127.0.0.1/tcp/PORT"]}`.
//! It runs until its standard input closes (so it dies with the benchmark that started
//! it), or until killed.
//!
//! Limits: rust-libp2p's relay refuses beyond `max_reservations`, `max_circuits` and
//! their per-peer variants, so they are set far above any benchmark's needs; there are no
//! rate limiters; `max_circuit_bytes` is `u64::MAX` (its copy loop also reads 0 as "no
//! limit", but it sends the value to clients, who might not) and `max_circuit_duration`
//! a day, because 0 would end every circuit at once. Runtime: tokio's multi-threaded
//! scheduler with its default worker count, as `relay serve` has.

use std::io::{Read, Write};
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, identify, noise, ping, relay, tcp, yamux};

/// How many reservations and circuits the relay admits: far beyond any benchmark.
const NO_COUNT_LIMIT: usize = 1 << 20;
/// How long a reservation or circuit may last: longer than any benchmark runs.
const NO_TIME_LIMIT: Duration = Duration::from_secs(24 * 3600);

#[derive(NetworkBehaviour)]
struct Server {
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// The relay settings with every limit lifted (see the module docs).
fn unlimited() -> relay::Config {
    relay::Config {
        max_reservations: NO_COUNT_LIMIT,
        max_reservations_per_peer: NO_COUNT_LIMIT,
        reservation_duration: NO_TIME_LIMIT,
        reservation_rate_limiters: Vec::new(),
        max_circuits: NO_COUNT_LIMIT,
        max_circuits_per_peer: NO_COUNT_LIMIT,
        max_circuit_duration: NO_TIME_LIMIT,
        max_circuit_bytes: u64::MAX,
        circuit_src_rate_limiters: Vec::new(),
    }
}

struct Args {
    listen: Multiaddr,
    seed: Option<u8>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
        seed: None,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(flag) = argv.next() {
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                args.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?;
            }
            "--seed" => {
                args.seed = Some(value.parse().map_err(|e| format!("--seed {value}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("rust-relay: {error}");
            eprintln!("usage: rust-relay [--listen MULTIADDR] [--seed N]");
            std::process::exit(2);
        }
    };
    // Exit when whoever started us closes our standard input (or dies).
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let key = match args.seed {
        Some(seed) => relay_proto::identity::keypair_from_seed(seed),
        None => libp2p::identity::Keypair::generate_ed25519(),
    };
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| Server {
            relay: relay::Behaviour::new(key.public().to_peer_id(), unlimited()),
            identify: identify::Behaviour::new(identify::Config::new(
                "/ipfs/0.1.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(NO_TIME_LIMIT))
        .build();
    if let Err(error) = swarm.listen_on(args.listen.clone()) {
        eprintln!("rust-relay: cannot listen on {}: {error}", args.listen);
        std::process::exit(1);
    }
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    // The relay puts its external addresses in reservation answers.
    swarm.add_external_address(addr.clone());
    let line = format!(
        "{{\"event\":\"listening\",\"peer_id\":\"{}\",\"addrs\":[\"{addr}\"]}}",
        swarm.local_peer_id()
    );
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    loop {
        swarm.select_next_some().await;
    }
}
