//! Memory per active circuit at 1,000 circuits: our relay (`relay serve --unlimited`)
//! against rust-libp2p 0.57's relay (`rust-relay`), measured in one run.
//!
//! ```text
//! cargo bench -p relay-tests --bench relay_memory
//! ```
//!
//! Topology, all on loopback: the relay in a process of its own; in this process 25
//! listener nodes, each holding a reservation on it and serving an echo protocol, and 40
//! dialer nodes, each connected to the relay and dialing every listener through it once:
//! 1,000 relayed connections, each a circuit on the relay. Every circuit carries one
//! 1 KiB echo exchange, so it is really spliced, and stays open while the relay's memory
//! is read. The clients are our `relay-tokio` nodes for both relays, so only the relay
//! differs. `RELAY_BENCH_LISTENERS` and `RELAY_BENCH_DIALERS` change the counts.
//! Each relay is measured `RELAY_BENCH_ROUNDS` times (default 2), a fresh process each
//! time, the two taking turns; the ratios compare the means.
//!
//! The relay's memory is read from `/proc` three times: idle after start, once every
//! client is connected (listeners with reservations), and with all circuits open (each
//! time after a pause to settle). The headline is `(with circuits - idle) / circuits`,
//! in resident set size (RSS); the table also gives PSS and the increase from the
//! connected state alone, which leaves out the clients' connections.
//!
//! File descriptors: the relay holds one socket per client node and this process one per
//! client connection, far below common limits; the soft limit is raised to the hard one
//! if needed anyway (the relay process inherits it).

use std::time::Duration;

use futures::StreamExt;
use relay_proto::identity::{PeerId, keypair_from_seed};
use relay_proto::node::{ClientConfig, Config};
use relay_tests::bench::{
    Memory, RelayBinaries, RelayKind, RelayProcess, env_or, raise_open_files_limit,
};
use relay_tests::{echo, exchange, payload};

/// The protocol every circuit is exercised with once.
const ECHO: &str = "/echo/1.0.0";
/// Bytes echoed on each circuit.
const ECHOED: usize = 1024;
/// Time given to the relay to settle before each memory reading.
const SETTLE: Duration = Duration::from_secs(2);

/// The relay's memory at the three points of one measurement.
#[derive(Debug, Clone, Copy)]
struct Readings {
    idle: Memory,
    connected: Memory,
    circuits: Memory,
    count: usize,
}

impl Readings {
    /// Bytes per circuit of `(with circuits - from) / count`.
    fn per_circuit(&self, from: Memory, field: fn(&Memory) -> u64) -> f64 {
        (field(&self.circuits) as f64 - field(&from) as f64) / self.count as f64
    }
}

fn client_config() -> Config {
    Config {
        client: ClientConfig {
            max_relayed_connections: 4096,
            ..ClientConfig::default()
        },
        ..Config::default()
    }
}

fn client(seed: u8) -> Result<relay_tokio::Node, String> {
    relay_tokio::Node::builder()
        .keypair(keypair_from_seed(seed))
        .config(client_config())
        .rng_seed([seed; 32])
        .start()
        .map_err(|e| format!("client node: {e}"))
}

/// Serves the echo protocol on `node`.
fn serve_echo(node: &relay_tokio::Node) -> Result<(), String> {
    let mut incoming = node.handle().accept(ECHO).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(stream) = incoming.next().await {
            tokio::spawn(echo(stream));
        }
    });
    Ok(())
}

/// Makes `dialer` dial every listener through `relay` once and echo on each circuit.
/// Dialer `index` starts at a different listener than its neighbours, so the circuits
/// being set up at any moment spread over the listeners.
async fn dial_all(
    relay: &RelayProcess,
    dialer: &relay_tokio::Node,
    index: usize,
    listeners: &[PeerId],
) -> Result<(), String> {
    let data = payload(ECHOED, index as u64);
    for k in 0..listeners.len() {
        let target = listeners[(index + k) % listeners.len()];
        let peer = dialer
            .dial(relay.circuit_addr(target))
            .await
            .map_err(|e| format!("circuit to {target}: {e}"))?;
        let stream = dialer
            .handle()
            .open_stream(peer, ECHO)
            .await
            .map_err(|e| format!("echo stream to {target}: {e}"))?;
        let back = exchange(stream, &data)
            .await
            .map_err(|e| format!("echo to {target}: {e}"))?;
        if back != data {
            return Err(format!("echo to {target} came back wrong"));
        }
    }
    Ok(())
}

/// How many relayed connections `nodes` hold in all.
async fn relayed(nodes: &[relay_tokio::Node]) -> Result<usize, String> {
    let mut total = 0;
    for node in nodes {
        total += node
            .with_node(|n, _| n.relayed_connections().len())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(total)
}

async fn measure(
    binaries: &RelayBinaries,
    kind: RelayKind,
    listeners: usize,
    dialers: usize,
) -> Result<Readings, String> {
    let name = kind.name();
    let relay = RelayProcess::start(binaries, kind, 230)?;
    tokio::time::sleep(SETTLE).await;
    let idle = relay.memory()?;

    let mut listener_nodes = Vec::new();
    for i in 0..listeners {
        let node = client(u8::try_from(i).map_err(|_| "at most 100 listeners")?)?;
        serve_echo(&node)?;
        node.reserve(relay.addr())
            .await
            .map_err(|e| format!("reservation on the {name} relay: {e}"))?;
        listener_nodes.push(node);
    }
    let mut dialer_nodes = Vec::new();
    for i in 0..dialers {
        let node = client(u8::try_from(100 + i).map_err(|_| "at most 155 dialers")?)?;
        node.dial(relay.addr())
            .await
            .map_err(|e| format!("connection to the {name} relay: {e}"))?;
        dialer_nodes.push(node);
    }
    tokio::time::sleep(SETTLE).await;
    let connected = relay.memory()?;

    let targets: Vec<PeerId> = listener_nodes.iter().map(|n| n.peer_id()).collect();
    let started = std::time::Instant::now();
    let dials = dialer_nodes
        .iter()
        .enumerate()
        .map(|(i, d)| dial_all(&relay, d, i, &targets));
    for result in futures::future::join_all(dials).await {
        result.map_err(|e| format!("through the {name} relay: {e}"))?;
    }
    let setup = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    let circuits = relay.memory()?;

    let count = listeners * dialers;
    let (out, inbound) = (
        relayed(&dialer_nodes).await?,
        relayed(&listener_nodes).await?,
    );
    if out != count || inbound != count {
        return Err(format!(
            "{name}: expected {count} open circuits, the dialers hold {out} and the \
             listeners {inbound}"
        ));
    }
    eprintln!("  {name}: {count} circuits set up in {setup:.1?}");
    for node in dialer_nodes.iter().chain(&listener_nodes) {
        node.shutdown().await;
    }
    drop(relay);
    Ok(Readings {
        idle,
        connected,
        circuits,
        count,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(readings: &[(RelayKind, Readings)], listeners: usize, dialers: usize) -> String {
    let count = listeners * dialers;
    let mut out = format!(
        "\nrelay memory per active circuit at {count} circuits ({listeners} listeners x \
         {dialers} dialers, one circuit each, {ECHOED} B echoed on each); same relay-tokio \
         clients for both relays\n"
    );
    out.push_str(&format!(
        "{:<12} {:>9} {:>9} {:>10} {:>13} {:>13} {:>15}\n",
        "relay", "idle MiB", "+conns", "+circuits", "B/circuit", "B/circuit", "B/circuit"
    ));
    out.push_str(&format!(
        "{:<12} {:>9} {:>9} {:>10} {:>13} {:>13} {:>15}\n",
        "", "(RSS)", "(RSS)", "(RSS)", "(RSS)", "(PSS)", "(RSS, -conns)"
    ));
    for (kind, r) in readings {
        out.push_str(&format!(
            "{:<12} {:>9.1} {:>9.1} {:>10.1} {:>13.0} {:>13.0} {:>15.0}\n",
            kind.name(),
            mib(r.idle.rss),
            mib(r.connected.rss),
            mib(r.circuits.rss),
            r.per_circuit(r.idle, |m| m.rss),
            r.per_circuit(r.idle, |m| m.pss),
            r.per_circuit(r.connected, |m| m.rss),
        ));
    }
    let mean = |kind: RelayKind, from: fn(&Readings) -> Memory| {
        let values: Vec<f64> = readings
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, r)| r.per_circuit(from(r), |m| m.rss))
            .collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let ratio = |from: fn(&Readings) -> Memory| {
        mean(RelayKind::Ours, from) / mean(RelayKind::RustLibp2p, from)
    };
    out.push_str(&format!(
        "circuits only (RSS, -conns): ratio ours/rust-libp2p = {:.2}x\n",
        ratio(|r| r.connected)
    ));
    out.push_str(&format!(
        "ratio ours/rust-libp2p = {:.2}x (target <= 0.50x; RSS per circuit, (with circuits - idle) / {count})\n",
        ratio(|r| r.idle)
    ));
    out
}

/// Writes the report to stdout.
fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn main() {
    let listeners = env_or("RELAY_BENCH_LISTENERS", 25usize).clamp(1, 100);
    let dialers = env_or("RELAY_BENCH_DIALERS", 40usize).clamp(1, 155);
    let rounds = env_or("RELAY_BENCH_ROUNDS", 2usize).max(1);
    // A socket per client connection here and per client node in the relay, plus slack.
    let files = raise_open_files_limit(4096);
    if files < 2 * (listeners + dialers) as u64 + 256 {
        eprintln!("relay_memory: only {files} open files allowed; raise `ulimit -n`");
        std::process::exit(1);
    }
    let binaries = match RelayBinaries::locate(env!("CARGO_BIN_EXE_rust-relay")) {
        Ok(b) => b,
        Err(error) => {
            eprintln!("relay_memory: {error}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        let mut readings = Vec::new();
        for round in 0..rounds {
            // Alternate which relay goes first.
            let order = if round % 2 == 0 {
                [RelayKind::Ours, RelayKind::RustLibp2p]
            } else {
                [RelayKind::RustLibp2p, RelayKind::Ours]
            };
            for kind in order {
                readings.push((kind, measure(&binaries, kind, listeners, dialers).await?));
            }
        }
        Ok::<_, String>(readings)
    });
    match result {
        Ok(readings) => print(&report(&readings, listeners, dialers)),
        Err(error) => {
            eprintln!("relay_memory: {error}");
            std::process::exit(1);
        }
    }
}
