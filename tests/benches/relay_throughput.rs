//! Throughput through one circuit: our relay (`relay serve --unlimited`) against
//! rust-libp2p 0.57's relay (`rust-relay`), measured in one run.
//!
//! ```text
//! cargo bench -p relay-tests --bench relay_throughput
//! ```
//!
//! Topology, all on loopback: the relay in a process of its own, and in this process a
//! listener node holding a reservation on it and serving `/perf/1.0.0`, and a dialer node
//! connected to the listener through the relay. Both clients are our `relay-tokio`
//! nodes, the same for both relays, so only the relay differs. Each repetition opens a
//! perf stream on the relayed connection and uploads `RELAY_BENCH_MIB` MiB (default 256);
//! the time is from the first byte written until the listener has read the last one and
//! finished the stream. The relays take turns, `RELAY_BENCH_REPS` times each (default
//! 5), after a warm-up transfer each; the table shows the median and every run, and the
//! CPU time per GiB relayed of the relay process and of this process (both clients).
//! The clients do twice the relay's cryptography (the end-to-end Noise session inside
//! the circuit and their own to the relay), so on a small machine they, not the relay,
//! may bound the throughput; the relay's CPU per GiB shows its own cost either way.
//!
//! So each series runs twice: once with no quota (relay and clients share the cores),
//! and once with each relay process held to `RELAY_BENCH_CAP` cores (default 0.5) by a
//! control group of its own (cgroup v2 `cpu.max` or v1 `cpu.cfs_quota_us`; needs root,
//! else only the first series runs). In the second the relay is the bottleneck, as it is
//! when its clients are other machines, and the throughput is what it forwards on that
//! share of a core. `RELAY_BENCH_CAP=0` skips it.
//!
//! Our relay binary is built first with `cargo build --release -p relay-cli` into
//! `target/relay-bench/` (the first run compiles it; set `RELAY_BIN` to use another). Both relays lift their limits: ours with `--unlimited`,
//! rust-libp2p's as `tests/src/bin/rust-relay.rs` says. rust-libp2p marks relayed
//! connections "limited"; our clients open streams on them all the same.

use std::time::Duration;

use futures::StreamExt;
use relay_proto::identity::{PeerId, keypair_from_seed};
use relay_proto::node::{ClientConfig, Config};
use relay_runtime::perf;
use relay_tests::bench::{
    CpuCap, RelayBinaries, RelayKind, RelayProcess, cpu_time, env_or, median,
};

const MIB: u64 = 1024 * 1024;

/// One relay with its own listener and dialer.
struct Circuit {
    relay: RelayProcess,
    /// The relay's CPU quota, when control groups are at hand; dropped after the relay.
    cap: Option<CpuCap>,
    listener: relay_tokio::Node,
    dialer: relay_tokio::Node,
    target: PeerId,
}

/// How much CPU the relays may use during a series of runs.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// No quota: relay and clients share the machine's cores as the scheduler sees fit.
    Shared,
    /// Each relay held to this many cores' time; the clients have the rest.
    Capped(f64),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Shared => "relay and clients sharing all cores".to_owned(),
            Mode::Capped(cores) => format!("relay held to {cores} CPU (cgroup quota)"),
        }
    }
}

/// What one transfer measured.
#[derive(Debug, Clone, Copy)]
struct Run {
    mib_per_s: f64,
    relay_cpu: Duration,
    /// CPU time of this process, where both clients run.
    clients_cpu: Duration,
}

fn client_config() -> Config {
    Config {
        client: ClientConfig {
            max_relayed_connections: 1024,
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

/// Starts the listener (reserving on `relay`, serving perf) and the dialer (connected to
/// it through `relay`).
async fn circuit(relay: RelayProcess, seed: u8) -> Result<Circuit, String> {
    let name = relay.kind().name();
    let listener = client(seed)?;
    let mut incoming = listener
        .handle()
        .accept(perf::PROTOCOL)
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(stream) = incoming.next().await {
            tokio::spawn(perf::serve(stream));
        }
    });
    listener
        .reserve(relay.addr())
        .await
        .map_err(|e| format!("reservation on the {name} relay: {e}"))?;
    let dialer = client(seed + 1)?;
    let target = dialer
        .dial(relay.circuit_addr(listener.peer_id()))
        .await
        .map_err(|e| format!("circuit through the {name} relay: {e}"))?;
    Ok(Circuit {
        relay,
        cap: None,
        listener,
        dialer,
        target,
    })
}

/// Uploads `bytes` through the circuit with perf.
async fn transfer(c: &Circuit, bytes: u64) -> Result<Run, String> {
    let name = c.relay.kind().name();
    let cpu_before = c.relay.cpu_time()?;
    let clients_before = cpu_time(std::process::id())?;
    let stream = c
        .dialer
        .handle()
        .open_stream(c.target, perf::PROTOCOL)
        .await
        .map_err(|e| format!("perf stream through the {name} relay: {e}"))?;
    let result = perf::run(stream, bytes, 0)
        .await
        .map_err(|e| format!("perf through the {name} relay: {e}"))?;
    let relay_cpu = c.relay.cpu_time()?.saturating_sub(cpu_before);
    let clients_cpu = cpu_time(std::process::id())?.saturating_sub(clients_before);
    Ok(Run {
        mib_per_s: bytes as f64 / MIB as f64 / result.total.as_secs_f64(),
        relay_cpu,
        clients_cpu,
    })
}

async fn bench(binaries: RelayBinaries, bytes: u64, reps: usize, cap: f64) -> Result<(), String> {
    let ours = RelayProcess::start(&binaries, RelayKind::Ours, 201)?;
    let rust = RelayProcess::start(&binaries, RelayKind::RustLibp2p, 202)?;
    let mut circuits = [circuit(ours, 210).await?, circuit(rust, 220).await?];
    let mut modes = vec![Mode::Shared];
    if cap > 0.0 {
        let caps = circuits
            .iter()
            .map(|c| CpuCap::new(c.relay.kind().name(), c.relay.pid()))
            .collect::<Result<Vec<_>, _>>();
        match caps {
            Ok(caps) => {
                for (c, group) in circuits.iter_mut().zip(caps) {
                    c.cap = Some(group);
                }
                modes.push(Mode::Capped(cap));
            }
            Err(error) => eprintln!("relay_throughput: no capped runs: {error}"),
        }
    }
    for c in &circuits {
        transfer(c, bytes.min(32 * MIB)).await?;
    }
    let mut out = String::new();
    for mode in modes {
        for c in &circuits {
            if let Some(group) = &c.cap {
                group.set(match mode {
                    Mode::Shared => None,
                    Mode::Capped(cores) => Some(cores),
                })?;
            }
        }
        eprintln!("{}:", mode.label());
        let runs = series(&circuits, bytes, reps).await?;
        out.push_str(&table(&circuits, &runs, mode, bytes, reps));
    }
    for c in &circuits {
        c.dialer.shutdown().await;
        c.listener.shutdown().await;
    }
    print(&out);
    Ok(())
}

/// `reps` transfers through each circuit, the relays taking turns.
async fn series(circuits: &[Circuit; 2], bytes: u64, reps: usize) -> Result<[Vec<Run>; 2], String> {
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..reps {
        // Alternate which relay goes first, so neither always follows the other.
        let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let run = transfer(&circuits[i], bytes).await?;
            eprintln!(
                "  run {}/{reps} {:<12} {:>8.1} MiB/s",
                rep + 1,
                circuits[i].relay.kind().name(),
                run.mib_per_s
            );
            runs[i].push(run);
        }
    }
    Ok(runs)
}

fn table(
    circuits: &[Circuit; 2],
    runs: &[Vec<Run>; 2],
    mode: Mode,
    bytes: u64,
    reps: usize,
) -> String {
    let medians = [0, 1].map(|i| median(&runs[i].iter().map(|r| r.mib_per_s).collect::<Vec<_>>()));
    let mut out = String::new();
    out.push_str(&format!(
        "\nrelay throughput through one circuit, {}: {} MiB uploaded with /perf/1.0.0 per \
         run, {reps} runs each, alternating; same relay-tokio clients for both relays\n",
        mode.label(),
        bytes / MIB
    ));
    out.push_str(&format!(
        "{:<12} {:>12} {:>16} {:>18}  runs (MiB/s)\n",
        "relay", "median MiB/s", "relay CPU s/GiB", "clients CPU s/GiB"
    ));
    let mut relay_cpu = [0.0; 2];
    for (i, c) in circuits.iter().enumerate() {
        let gib = (bytes * runs[i].len() as u64) as f64 / (1024.0 * MIB as f64);
        let per_gib =
            |f: fn(&Run) -> Duration| runs[i].iter().map(f).sum::<Duration>().as_secs_f64() / gib;
        relay_cpu[i] = per_gib(|r| r.relay_cpu);
        let list: Vec<String> = runs[i]
            .iter()
            .map(|r| format!("{:.1}", r.mib_per_s))
            .collect();
        out.push_str(&format!(
            "{:<12} {:>12.1} {:>16.2} {:>18.2}  {}\n",
            c.relay.kind().name(),
            medians[i],
            relay_cpu[i],
            per_gib(|r| r.clients_cpu),
            list.join(" ")
        ));
    }
    out.push_str(&format!(
        "relay CPU per GiB: ours/rust-libp2p = {:.2}x (lower is better)\n",
        relay_cpu[0] / relay_cpu[1]
    ));
    out.push_str(&format!(
        "ratio ours/rust-libp2p = {:.2}x (target >= 1.50x)\n",
        medians[0] / medians[1]
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
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let bytes = env_or("RELAY_BENCH_MIB", 256u64).max(1) * MIB;
    let reps = env_or("RELAY_BENCH_REPS", 5usize).max(1);
    let cap = env_or("RELAY_BENCH_CAP", 0.5f64);
    let binaries = match RelayBinaries::locate(env!("CARGO_BIN_EXE_rust-relay")) {
        Ok(b) => b,
        Err(error) => {
            eprintln!("relay_throughput: {error}");
            std::process::exit(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(error) = runtime.block_on(bench(binaries, bytes, reps, cap)) {
        eprintln!("relay_throughput: {error}");
        std::process::exit(1);
    }
}
