//! Tier 2 of the deployment guide with real processes on loopback: three `relay serve`,
//! a `relay listen` with all three as static relays keeping two reservations, and
//! `relay dial` reaching it through a circuit. One relay that holds a reservation is
//! killed (or frozen); the listener reserves on the third, and a dialer reaches it
//! through the new relay.
//!
//! The detection interval is explicit: the listener pings every relay each
//! `node.ping_interval` (1s here) and gives up on one after `node.ping_timeout` (1s),
//! so a silent relay is noticed within 2s; a relay whose process dies is noticed at
//! once, when its connection closes. The target is a new reservation within two
//! detection intervals of the failure. Each test prints the time it measured; run with
//! `--nocapture` to see it.
#![allow(clippy::print_stdout)] // the measured failover time is part of the result

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// Ping interval + ping timeout of the listener's config.
const DETECTION: Duration = Duration::from_secs(2);

/// A running `relay` process whose stdout lines are parsed, and time-stamped, as they
/// arrive.
struct Process {
    child: Child,
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let mut child = Command::new(RELAY)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("relay starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).expect("stdout lines are JSON");
                if tx.send((Instant::now(), value)).is_err() {
                    return;
                }
            }
        });
        Process { child, lines }
    }

    /// Waits for the next line whose `event` is `name` and that `f` accepts; returns it
    /// with the time it arrived.
    fn wait(&self, name: &str, f: impl Fn(&Value) -> bool) -> (Instant, Value) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let (at, line) = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {name} event"));
            if line["event"] == name && f(&line) {
                return (at, line);
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A relay server on loopback: the process and its full address.
fn relay(seed: u8) -> (Process, String) {
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let process = Process::start(&["serve", "--seed", &seed.to_string(), "--listen", &listen]);
    let (_, line) = process.wait("listening", |_| true);
    let id = line["peer_id"].as_str().unwrap().to_owned();
    (process, format!("{listen}/p2p/{id}"))
}

/// `relay dial` through `relay` to `peer`, with one ping; whether it succeeded, given
/// 20 s.
fn dial_through(relay: &str, peer: &str) -> bool {
    let target = format!("{relay}/p2p-circuit/p2p/{peer}");
    let mut child = Command::new(RELAY)
        .args(["dial", &target, "--ping", "1", "--no-punch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("relay dial starts");
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out);
    let pinged = out.lines().any(|l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == "ping" && v["relayed"] == true)
    });
    status.success() && pinged
}

/// The listener's config: ping settings, and AutoRelay when `relays` are given.
fn listener_config(dir: &std::path::Path, relays: &[String]) -> String {
    let mut yaml = String::from(
        "node:\n  listen: [/ip4/127.0.0.1/tcp/0]\n  ping_interval: 1s\n  ping_timeout: 1s\n",
    );
    if !relays.is_empty() {
        yaml.push_str(
            "  relay:\n    auto_relay:\n      enabled: true\n      enable_dynamic: false\n",
        );
        yaml.push_str("      max_relay_peers: 2\n      static_relay_peers:\n");
        for relay in relays {
            yaml.push_str(&format!("        - {relay}\n"));
        }
    }
    let path = dir.join(format!("listener-{}.yaml", relays.len()));
    std::fs::write(&path, yaml).unwrap();
    path.to_str().unwrap().to_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("relay-tier2-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The peer id at the end of a relay address.
fn id_of(addr: &str) -> &str {
    addr.rsplit('/').next().unwrap()
}

/// Three relays, a listener keeping two reservations, a dialer through each; then
/// `fail` breaks the relay of the first reservation. Returns the time from the failure
/// to the reservation on the third relay.
fn failover(
    name: &str,
    seed: u8,
    listener_args: impl FnOnce(&std::path::Path, &[String]) -> Vec<String>,
    fail: impl FnOnce(&Process),
) -> Duration {
    let relays: Vec<(Process, String)> = (0..3).map(|i| relay(seed + i)).collect();
    let addrs: Vec<String> = relays.iter().map(|(_, a)| a.clone()).collect();
    let dir = temp_dir(name);
    let args = listener_args(&dir, &addrs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listener = Process::start(&args);
    let (_, line) = listener.wait("listening", |_| true);
    let me = line["peer_id"].as_str().unwrap().to_owned();
    let (_, line) = listener.wait("relays", |l| l["relays"].as_array().unwrap().len() == 2);
    let held: Vec<String> = line["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let index = |id: &str| addrs.iter().position(|a| id_of(a) == id).unwrap();
    let (first, second) = (index(&held[0]), index(&held[1]));
    let spare = (0..3).find(|i| *i != first && *i != second).unwrap();
    for i in [first, second] {
        assert!(dial_through(&addrs[i], &me), "dial through relay {i}");
    }

    let failed_at = Instant::now();
    fail(&relays[first].0);
    let spare_id = id_of(&addrs[spare]).to_owned();
    let (reserved_at, _) = listener.wait("reservation", |l| {
        l["status"] == "accepted" && l["relay"] == spare_id.as_str()
    });
    let took = reserved_at - failed_at;
    let (_, line) = listener.wait("relays", |l| l["relays"].as_array().unwrap().len() == 2);
    let now: Vec<&str> = line["relays"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(now, vec![id_of(&addrs[second]), spare_id.as_str()]);
    assert!(
        dial_through(&addrs[spare], &me),
        "dial through the new relay"
    );
    println!(
        "tier2 {name}: failure to new reservation on the third relay: {:.1} ms \
         (detection interval {DETECTION:?}, target {:?})",
        took.as_secs_f64() * 1000.0,
        2 * DETECTION
    );
    let _ = std::fs::remove_dir_all(&dir);
    took
}

#[test]
fn a_killed_relay_is_replaced() {
    let took = failover(
        "kill",
        60,
        |dir, relays| {
            // The relays as flags, the ping settings from the file.
            let config = listener_config(dir, &[]);
            let mut args: Vec<String> = ["listen", "--seed", "70", "--config", &config]
                .map(String::from)
                .to_vec();
            for relay in relays {
                args.extend(["--relay".to_owned(), relay.clone()]);
            }
            args.extend(["--max-relays".to_owned(), "2".to_owned()]);
            args
        },
        |relay| relay.signal("-KILL"),
    );
    assert!(took < 2 * DETECTION, "{took:?}");
}

#[test]
fn a_frozen_relay_is_replaced() {
    let took = failover(
        "freeze",
        63,
        |dir, relays| {
            // Everything from the file, as config/listener.autorelay.yaml.
            let config = listener_config(dir, relays);
            ["listen", "--seed", "71", "--config", &config]
                .map(String::from)
                .to_vec()
        },
        |relay| relay.signal("-STOP"),
    );
    assert!(took < 2 * DETECTION, "{took:?}");
}
