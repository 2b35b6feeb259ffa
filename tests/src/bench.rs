//! What the relay benchmarks (`benches/relay_throughput.rs`, `benches/relay_memory.rs`)
//! share: starting a relay server in its own process (ours, `relay serve --unlimited`,
//! or rust-libp2p's, the `rust-relay` binary of this crate), reading its address, and
//! reading its CPU time and memory from `/proc`.
//!
//! Each relay runs in a process of its own so that both are measured alike: their CPU
//! time and memory are theirs alone, and the clients (in the benchmark process) are the
//! same for both.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use relay_proto::Multiaddr;
use relay_proto::identity::PeerId;
use relay_proto::multiaddr::Protocol;

/// Which relay server implementation a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// Ours: `relay serve --unlimited` from `relay-cli`.
    Ours,
    /// rust-libp2p 0.57's `relay::Behaviour` with its limits lifted (`rust-relay`).
    RustLibp2p,
}

impl RelayKind {
    /// The name benchmark tables use.
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Ours => "ours",
            RelayKind::RustLibp2p => "rust-libp2p",
        }
    }
}

/// Where the two relay binaries are.
#[derive(Debug, Clone)]
pub struct RelayBinaries {
    /// Our `relay` command.
    pub ours: PathBuf,
    /// The `rust-relay` binary of this crate.
    pub rust_libp2p: PathBuf,
}

impl RelayBinaries {
    /// Our `relay` binary, built first with `cargo build --release -p relay-cli` into
    /// the target directory's `relay-bench/` (see [`build_relay_cli`]); `RELAY_BIN` names
    /// another one and skips the build. `rust_libp2p` is the `rust-relay` path Cargo gives
    /// the benchmark (`CARGO_BIN_EXE_rust-relay`).
    pub fn locate(rust_libp2p: &str) -> Result<Self, String> {
        let ours = match std::env::var_os("RELAY_BIN") {
            Some(path) => PathBuf::from(path),
            None => build_relay_cli()?,
        };
        if !ours.is_file() {
            return Err(format!("no relay binary at {}", ours.display()));
        }
        Ok(Self {
            ours,
            rust_libp2p: PathBuf::from(rust_libp2p),
        })
    }

    /// The binary of `kind`.
    pub fn of(&self, kind: RelayKind) -> &Path {
        match kind {
            RelayKind::Ours => &self.ours,
            RelayKind::RustLibp2p => &self.rust_libp2p,
        }
    }
}

/// Runs `cargo build --release -p relay-cli` in this workspace; returns the binary path.
///
/// It builds into a target directory of its own, `<target>/relay-bench/`: building
/// relay-cli alone unifies dependency features differently from building this crate's
/// benchmarks, and in one target directory the two builds would keep rebuilding each
/// other's artifacts. The first run compiles relay-cli once; later runs find it fresh.
fn build_relay_cli() -> Result<PathBuf, String> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the tests crate lives in the workspace")?;
    // The benchmark runs from `<target>/<profile>/deps/`.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or("the benchmark runs from <target>/<profile>/deps")?;
    let target = target.join("relay-bench");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the relay binary: cargo build --release -p relay-cli");
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "-p", "relay-cli", "--bin", "relay"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(workspace);
    // Cargo gives the benchmark this crate's package variables; cargo compares them with
    // those relay-cli was built with and would rebuild it on every run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_EXE_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || name == "CARGO_PRIMARY_PACKAGE"
        {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p relay-cli failed: {status}"));
    }
    Ok(target.join("release").join("relay"))
}

/// A relay server running in a child process; killed when dropped.
#[derive(Debug)]
pub struct RelayProcess {
    kind: RelayKind,
    child: Child,
    /// Held open: the rust-libp2p relay exits when its standard input closes.
    _stdin: Option<ChildStdin>,
    peer_id: PeerId,
    addr: Multiaddr,
}

impl RelayProcess {
    /// Starts a relay of `kind` on `127.0.0.1` with an ephemeral port and the key of
    /// `seed`, with every limit lifted, and waits until it says where it listens.
    ///
    /// Its further stdout (our relay prints one JSON line per event) is read and dropped
    /// by a thread; its stderr is discarded (both log at `warn` by default).
    pub fn start(binaries: &RelayBinaries, kind: RelayKind, seed: u8) -> Result<Self, String> {
        let mut command = Command::new(binaries.of(kind));
        if kind == RelayKind::Ours {
            // `--hold` ends it even if we die without killing it.
            command.args(["serve", "--unlimited", "--hold", "3600"]);
        }
        command
            .args([
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--seed",
                &seed.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binaries.of(kind).display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(Ok(line)) => line,
            _ => {
                let _ = child.kill();
                return Err(format!("the {} relay printed nothing", kind.name()));
            }
        };
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        let (peer_id, addr) = parse_listening(&first)
            .map_err(|e| format!("{} relay said {first:?}: {e}", kind.name()))?;
        Ok(Self {
            kind,
            child,
            _stdin: stdin,
            peer_id,
            addr,
        })
    }

    /// Which relay this is.
    pub fn kind(&self) -> RelayKind {
        self.kind
    }

    /// The relay's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The relay's address, ending in `/p2p/RELAY`.
    pub fn addr(&self) -> Multiaddr {
        self.addr.clone().with(Protocol::P2p(self.peer_id))
    }

    /// The circuit address of `target` through this relay.
    pub fn circuit_addr(&self, target: PeerId) -> Multiaddr {
        self.addr()
            .with(Protocol::P2pCircuit)
            .with(Protocol::P2p(target))
    }

    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process used so far, user and system together.
    pub fn cpu_time(&self) -> Result<Duration, String> {
        cpu_time(self.pid())
    }

    /// The process's memory now.
    pub fn memory(&self) -> Result<Memory, String> {
        memory(self.pid())
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `{"event":"listening","peer_id":"...","addrs":["..."]}`.
fn parse_listening(line: &str) -> Result<(PeerId, Multiaddr), String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let peer_id = value["peer_id"]
        .as_str()
        .ok_or("no peer_id")?
        .parse::<PeerId>()
        .map_err(|e| e.to_string())?;
    let addr = value["addrs"][0]
        .as_str()
        .ok_or("no address")?
        .parse::<Multiaddr>()
        .map_err(|e| e.to_string())?;
    Ok((peer_id, addr))
}

/// Memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size (`VmRSS` of `/proc/PID/status`).
    pub rss: u64,
    /// Proportional set size (`Pss` of `/proc/PID/smaps_rollup`): resident pages, shared
    /// ones divided among the processes sharing them.
    pub pss: u64,
}

/// Reads the memory of process `pid` from `/proc`.
pub fn memory(pid: u32) -> Result<Memory, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("/proc/{pid}/smaps_rollup: {e}"))?;
    Ok(Memory {
        rss: kib_field(&status, "VmRSS:").ok_or("no VmRSS")? * 1024,
        pss: kib_field(&rollup, "Pss:").ok_or("no Pss")? * 1024,
    })
}

/// The value of a `Name:   1234 kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU time (user + system) process `pid` used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')').ok_or("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| "malformed stat".to_owned())
    };
    let total = ticks(14)? + ticks(15)?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_secs_f64(total as f64 / hz as f64))
}

/// Raises this process's soft limit on open files to at least `want` (up to the hard
/// limit); child processes inherit it. Returns the soft limit in force afterwards.
pub fn raise_open_files_limit(want: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= want {
        return current;
    }
    let target = match limit.maximum {
        Some(max) => want.min(max),
        None => want,
    };
    limit.current = Some(target);
    match setrlimit(Resource::Nofile, limit) {
        Ok(()) => target,
        Err(_) => current,
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The environment variable `name` parsed, or `default` when it is unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let line = r#"{"event":"listening","peer_id":"12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X","addrs":["/ip4/127.0.0.1/tcp/4001"]}"#;
        let (peer, addr) = parse_listening(line).unwrap();
        assert_eq!(
            peer.to_string(),
            "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
        );
        assert_eq!(addr.to_string(), "/ip4/127.0.0.1/tcp/4001");
    }

    #[test]
    fn reads_our_own_memory_and_cpu() {
        let me = std::process::id();
        let memory = memory(me).unwrap();
        assert!(memory.rss > 0 && memory.pss > 0);
        cpu_time(me).unwrap();
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn kib_fields() {
        assert_eq!(
            kib_field("VmPeak:  10 kB\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        assert_eq!(kib_field("Rss: 1 kB\n", "Pss:"), None);
    }
}

/// A CPU quota on one process, by a control group of its own: cgroup v2's `cpu.max`
/// where the unified hierarchy has the `cpu` controller, else cgroup v1's
/// `cpu.cfs_quota_us`. Needs root; the group is removed when dropped (after the process
/// has left it or ended).
///
/// The relay benchmark uses it to make the relay, not the clients sharing its machine,
/// the bottleneck of a transfer: with the relay held to a fraction of a core and the
/// clients free to use the rest, the throughput through the circuit is what the relay
/// can forward on that fraction.
#[derive(Debug)]
pub struct CpuCap {
    dir: PathBuf,
    version: CgroupVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The scheduler period the quota is a share of.
const CPU_PERIOD_US: u64 = 100_000;

impl CpuCap {
    /// Creates a group named `name` holding process `pid` (all its threads), with no
    /// quota yet.
    pub fn new(name: &str, pid: u32) -> Result<Self, String> {
        let (root, version) = if std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            (Path::new("/sys/fs/cgroup"), CgroupVersion::V2)
        } else if Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
            (Path::new("/sys/fs/cgroup/cpu"), CgroupVersion::V1)
        } else {
            return Err("no cgroup cpu controller (v2 cpu.max or v1 cpu.cfs_quota_us)".into());
        };
        let dir = root.join(format!("relay-bench-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let cap = Self { dir, version };
        cap.write("cgroup.procs", &pid.to_string())?;
        Ok(cap)
    }

    /// Holds the group to `cores` CPUs (0.5 = half of one core's time); `None` lifts the
    /// quota.
    pub fn set(&self, cores: Option<f64>) -> Result<(), String> {
        let quota = cores.map(|c| ((c * CPU_PERIOD_US as f64) as u64).max(1_000));
        match self.version {
            CgroupVersion::V2 => {
                let value = match quota {
                    Some(q) => format!("{q} {CPU_PERIOD_US}"),
                    None => format!("max {CPU_PERIOD_US}"),
                };
                self.write("cpu.max", &value)
            }
            CgroupVersion::V1 => {
                self.write("cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                let value = quota.map_or_else(|| "-1".to_owned(), |q| q.to_string());
                self.write("cpu.cfs_quota_us", &value)
            }
        }
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Fails while a process is still inside; the benchmark drops its relays first.
        let _ = std::fs::remove_dir(&self.dir);
    }
}
