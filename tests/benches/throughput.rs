//! One-stream throughput over loopback: our stack against rust-libp2p's TCP + Noise +
//! Yamux, measured in the same run and reported as a ratio.
//!
//! For each configuration two nodes in this process connect over loopback on one tokio
//! multi-thread runtime; the client opens one stream and uploads `BENCH_MB` MiB (default
//! 256) with the perf protocol (asking for nothing back), the server reads and discards
//! them and closes its side, which is the acknowledgement. Every round runs each
//! configuration once, in an order that alternates between rounds, so slow phases of a
//! shared machine hit all of them alike; the median of `BENCH_ROUNDS` rounds (default 5)
//! counts.
//!
//! The same perf code (`relay_runtime::perf`) runs on both stacks: only the connection
//! stack differs. Mixed pairs (our node with a rust-libp2p node) are reported for
//! information.
//!
//! Besides throughput, the CPU time the whole process spent per GiB is reported (on
//! Linux, from `/proc/self/task/*/schedstat`). Both nodes of a pair run in this process,
//! so that is the cost of sending and receiving together, and unlike throughput it
//! hardly moves when other work shares the machine.
//!
//! ```sh
//! cargo bench -p relay-tests --bench throughput
//! BENCH_MB=64 BENCH_ROUNDS=3 cargo bench -p relay-tests --bench throughput
//! # only the configurations whose name contains a word, e.g. for a profiler:
//! BENCH_ONLY="ours -> ours" cargo bench -p relay-tests --bench throughput
//! ```
#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::time::Duration;

use futures::StreamExt;
use futures::io::{AsyncRead, AsyncWrite};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, Swarm, noise, tcp, yamux};
use relay_proto::identity::{PeerId, keypair_from_seed};
use relay_proto::node::Config;
use relay_runtime::Handle;
use relay_runtime::perf;
use relay_tests::suite;
use relay_tokio::Tokio;

const PERF: StreamProtocol = StreamProtocol::new(perf::PROTOCOL);

fn main() {
    let mib = env_number("BENCH_MB", 256);
    let rounds = env_number("BENCH_ROUNDS", 5).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(mib, rounds));
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
        Err(_) => default,
    }
}

/// The client end of one configuration: a connected node that opens perf streams.
enum Client {
    Ours {
        node: Handle,
        server: PeerId,
    },
    Rust {
        control: libp2p_stream::Control,
        server: PeerId,
    },
}

impl Client {
    /// Uploads `bytes` over a new stream; returns the time from the first byte written
    /// to the server's acknowledgement.
    async fn upload(&mut self, bytes: u64) -> Duration {
        match self {
            Client::Ours { node, server } => {
                let stream = node
                    .open_stream(*server, perf::PROTOCOL)
                    .await
                    .expect("open");
                transfer(stream, bytes).await
            }
            Client::Rust { control, server } => {
                let stream = control.open_stream(*server, PERF).await.expect("open");
                transfer(stream, bytes).await
            }
        }
    }
}

async fn transfer<S: AsyncRead + AsyncWrite + Unpin>(stream: S, bytes: u64) -> Duration {
    let result = perf::run(stream, bytes, 0).await.expect("perf exchange");
    assert_eq!(result.upload_bytes, bytes);
    result.total
}

/// The server end of one configuration: where clients dial, already serving perf.
struct Server {
    peer: PeerId,
    addr: Multiaddr,
    /// Our node, kept for the whole run; rust-libp2p's swarm lives in its task.
    _node: Option<Handle>,
}

/// Which stack one end of a configuration runs.
#[derive(Clone, Copy)]
enum StackKind {
    Ours,
    Rust,
}

/// Every configuration: its name, the client's stack and the server's stack.
const CONFIGURATIONS: [(&str, StackKind, StackKind); 4] = [
    (OURS, StackKind::Ours, StackKind::Ours),
    (RUST, StackKind::Rust, StackKind::Rust),
    ("ours -> rust-libp2p", StackKind::Ours, StackKind::Rust),
    ("rust-libp2p -> ours", StackKind::Rust, StackKind::Ours),
];

struct Configuration {
    name: &'static str,
    client: Client,
    _server: Server,
    /// MiB/s of every round.
    runs: Vec<f64>,
    /// CPU seconds per GiB of every round, where the platform tells.
    cpu: Vec<f64>,
}

async fn bench(mib: u64, rounds: u64) {
    let rt = Tokio::current();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut configurations = Vec::new();
    // Each configuration has a server of its own: nothing idle shares the process with
    // the ones selected, which keeps profiles of one configuration clean.
    for (i, (name, client, server)) in CONFIGURATIONS.into_iter().enumerate() {
        if !name.contains(&only) {
            continue;
        }
        let seed = 2 * i as u8 + 1;
        let server = match server {
            StackKind::Ours => our_server(&rt, seed),
            StackKind::Rust => rust_server(seed).await,
        };
        let client = match client {
            StackKind::Ours => our_client(&rt, seed + 1, &server).await,
            StackKind::Rust => rust_client(seed + 1, &server).await,
        };
        configurations.push(Configuration {
            name,
            client,
            _server: server,
            runs: Vec::new(),
            cpu: Vec::new(),
        });
    }
    let bytes = mib << 20;
    println!("one-stream upload over loopback, {mib} MiB per transfer, {rounds} rounds");
    // One small transfer each first: connections settle, allocators warm up.
    for c in &mut configurations {
        c.client.upload(bytes.min(16 << 20)).await;
    }
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..configurations.len()).collect()
        } else {
            (0..configurations.len()).rev().collect()
        };
        for i in order {
            let c = &mut configurations[i];
            let cpu_before = process_cpu_time();
            let elapsed = c.client.upload(bytes).await;
            c.runs.push(mib as f64 / elapsed.as_secs_f64());
            if let (Some(before), Some(after)) = (cpu_before, process_cpu_time()) {
                c.cpu
                    .push((after - before).as_secs_f64() * 1024.0 / mib as f64);
            }
        }
    }

    println!();
    println!(
        "{:<28} {:>12} {:>8} {:>10}   runs (MiB/s)",
        "configuration", "median MiB/s", "Gbit/s", "CPU s/GiB"
    );
    for c in &configurations {
        let runs: Vec<String> = c.runs.iter().map(|r| format!("{r:.0}")).collect();
        let median_runs = median(&c.runs);
        println!(
            "{:<28} {:>12.0} {:>8.2} {:>10}   {}",
            c.name,
            median_runs,
            median_runs * 8.0 * 1.048_576 / 1000.0,
            median_of(&c.cpu).map_or("-".to_owned(), |cpu| format!("{cpu:.2}")),
            runs.join(" ")
        );
    }
    let find = |name| configurations.iter().find(|c| c.name == name);
    if let (Some(ours), Some(rust)) = (find(OURS), find(RUST)) {
        println!();
        println!(
            "ratio ours/rust-libp2p = {:.2}x",
            median(&ours.runs) / median(&rust.runs)
        );
        if let (Some(ours), Some(rust)) = (median_of(&ours.cpu), median_of(&rust.cpu)) {
            println!("CPU per byte, rust-libp2p/ours = {:.2}x", rust / ours);
        }
    }
}

const OURS: &str = "ours -> ours";
const RUST: &str = "rust-libp2p -> rust-libp2p";

/// CPU time all threads of this process have run, where the platform tells.
fn process_cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

fn median_of(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| median(values))
}

fn median(runs: &[f64]) -> f64 {
    let mut sorted = runs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

fn our_server(rt: &Tokio, seed: u8) -> Server {
    let node = suite::node(rt, seed, Config::default());
    // What each stream got is not needed: the server task ignores a dropped receiver.
    drop(suite::serve_perf(rt, &node));
    Server {
        peer: node.peer_id(),
        addr: node.listen_addrs()[0].clone(),
        _node: Some(node),
    }
}

async fn our_client(rt: &Tokio, seed: u8, server: &Server) -> Client {
    let node = suite::node(rt, seed, Config::default());
    let addr = server
        .addr
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(server.peer));
    node.dial(addr).await.expect("dial");
    Client::Ours {
        node,
        server: server.peer,
    }
}

fn rust_swarm(seed: u8) -> Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_existing_identity(keypair_from_seed(seed))
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

async fn rust_server(seed: u8) -> Server {
    let mut swarm = rust_swarm(seed);
    let mut incoming = swarm
        .behaviour()
        .new_control()
        .accept(PERF)
        .expect("first accept of perf");
    tokio::spawn(async move {
        while let Some((_, stream)) = incoming.next().await {
            tokio::spawn(async move {
                let _ = perf::serve(stream).await;
            });
        }
    });
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("valid"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let peer = *swarm.local_peer_id();
    tokio::spawn(drive(swarm));
    Server {
        peer,
        addr,
        _node: None,
    }
}

async fn rust_client(seed: u8, server: &Server) -> Client {
    let mut swarm = rust_swarm(seed);
    let control = swarm.behaviour().new_control();
    let addr = server
        .addr
        .clone()
        .with(libp2p::multiaddr::Protocol::P2p(server.peer));
    swarm.dial(addr).expect("dial");
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
            _ => {}
        }
    }
    tokio::spawn(drive(swarm));
    Client::Rust {
        control,
        server: server.peer,
    }
}

async fn drive(mut swarm: Swarm<libp2p_stream::Behaviour>) {
    loop {
        swarm.select_next_some().await;
    }
}
