//! The `relay` command as CONTRACT.md describes it, over real processes on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// A running `relay` process whose stdout lines are parsed as they arrive.
struct Process {
    child: Child,
    lines: mpsc::Receiver<Value>,
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
                assert!(
                    value["event"].is_string(),
                    "every line has an event: {line}"
                );
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Process { child, lines }
    }

    /// Waits for the next line whose `event` is `name` and that `f` accepts.
    fn wait(&self, name: &str, f: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {name} event"));
            if line["event"] == name && f(&line) {
                return line;
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> (bool, Vec<Value>, String) {
    let out = Command::new(RELAY).args(args).output().expect("relay runs");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout lines are JSON"))
        .collect();
    (
        out.status.success(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn id_matches_rust_libp2p_seed_convention() {
    let (ok, lines, _) = run(&["id", "--seed", "1"]);
    assert!(ok);
    // The ed25519 key whose secret is [1, 0, ..., 0], as rust-libp2p's examples derive
    // `--secret-key-seed 1`.
    assert_eq!(
        lines[0]["peer_id"],
        "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let (ok, _, err) = run(&["dial", "/ip4/127.0.0.1/udp/1"]);
    assert!(!ok);
    assert!(err.starts_with("relay: "), "{err}");
    let (ok, _, err) = run(&["dial", "not-a-multiaddr"]);
    assert!(!ok && !err.contains("panicked"), "{err}");
    let (ok, _, err) = run(&["serve", "--config", "/nonexistent/relay.yaml"]);
    assert!(!ok && err.contains("/nonexistent/relay.yaml"), "{err}");
}

#[test]
fn serve_listen_dial_through_the_relay() {
    let port = free_port();
    let relay_addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let relay = Process::start(&[
        "serve",
        "--seed",
        "1",
        "--listen",
        &relay_addr,
        "--max-circuit-bytes",
        "0",
    ]);
    let relay_id = relay.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let relay_full = format!("{relay_addr}/p2p/{relay_id}");

    let listener = Process::start(&["listen", "--seed", "2", "--relay", &relay_full]);
    let listener_id = listener.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reservation = listener.wait("reservation", |l| l["status"] == "accepted");
    assert_eq!(reservation["relay"], relay_id.as_str());
    assert_eq!(reservation["addrs"][0], format!("{relay_full}/p2p-circuit"));
    relay.wait("relay_reservation", |l| l["status"] == "accepted");

    let target = format!("{relay_full}/p2p-circuit/p2p/{listener_id}");
    let (ok, lines, err) = run(&[
        "dial",
        &target,
        "--no-punch",
        "--seed",
        "3",
        "--ping",
        "2",
        "--perf-up",
        "300000",
        "--perf-down",
        "500000",
    ]);
    assert!(ok, "{err}");
    assert_eq!(lines[0]["event"], "connected");
    assert_eq!(lines[0]["relayed"], true);
    let pings: Vec<_> = lines.iter().filter(|l| l["event"] == "ping").collect();
    assert_eq!(pings.len(), 2);
    let perf = lines
        .iter()
        .find(|l| l["event"] == "perf")
        .expect("perf line");
    assert_eq!(perf["upload_bytes"], 300000);
    assert_eq!(perf["download_bytes"], 500000);
    assert_eq!(perf["relayed"], true);
    assert!(lines.iter().all(|l| l["event"] != "hole_punch"));
    relay.wait("relay_circuit", |l| l["status"] == "opened");
}

#[test]
fn data_limit_closes_the_circuit_and_is_reported() {
    let port = free_port();
    let relay_addr = format!("/ip4/127.0.0.1/tcp/{port}");
    let relay = Process::start(&[
        "serve",
        "--seed",
        "4",
        "--listen",
        &relay_addr,
        "--max-circuit-bytes",
        "65536",
    ]);
    let relay_id = relay.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let relay_full = format!("{relay_addr}/p2p/{relay_id}");
    let listener = Process::start(&["listen", "--seed", "5", "--relay", &relay_full]);
    let listener_id = listener.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    listener.wait("reservation", |l| l["status"] == "accepted");

    let target = format!("{relay_full}/p2p-circuit/p2p/{listener_id}");
    let (ok, _, _) = run(&[
        "dial",
        &target,
        "--no-punch",
        "--seed",
        "6",
        "--ping",
        "0",
        "--perf-up",
        "1000000",
    ]);
    assert!(!ok, "a megabyte cannot cross a 64 KiB circuit");
    let closed = relay.wait("relay_circuit", |l| l["status"] == "closed");
    assert!(
        closed["reason"].as_str().unwrap().starts_with("data limit"),
        "{closed}"
    );
    let circuit = listener.wait("circuit", |l| l["status"] == "closed");
    assert_eq!(circuit["reason"], "data limit");
}

#[test]
fn decision_hook_program_allows_and_refuses_reservations() {
    let allowed = run(&["id", "--seed", "8"]).1[0]["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = std::env::temp_dir().join(format!("relay-hook-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("requests.jsonl");
    // The hook allows exactly one peer and records what it was asked.
    let script = format!(
        "read -r request; printf '%s\\n' \"$request\" >> {log}; \
         case \"$request\" in *'\"peer\":\"{allowed}\"'*) exit 0;; *) exit 1;; esac",
        log = log.display()
    );
    let port = free_port();
    let config = dir.join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "node:\n  listen: [/ip4/127.0.0.1/tcp/{port}]\n  relay:\n    service:\n      enabled: true\n      acl:\n        hook: reservations\n        hook_command: [sh, -c, {script:?}]\n"
        ),
    )
    .unwrap();
    let relay = Process::start(&["serve", "--seed", "1", "--config", config.to_str().unwrap()]);
    let relay_id = relay.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let relay_full = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{relay_id}");

    let good = Process::start(&["listen", "--seed", "8", "--relay", &relay_full]);
    good.wait("reservation", |l| l["status"] == "accepted");
    let bad = Process::start(&["listen", "--seed", "9", "--relay", &relay_full]);
    let refused = bad.wait("reservation", |l| l["status"] == "refused");
    assert_eq!(refused["reason"], "PERMISSION_DENIED", "{refused}");

    let asked = std::fs::read_to_string(&log).unwrap();
    let requests: Vec<Value> = asked
        .lines()
        .map(|l| serde_json::from_str(l).expect("the hook reads JSON"))
        .collect();
    assert!(requests.len() >= 2, "{asked}");
    assert!(
        requests
            .iter()
            .all(|r| r["kind"] == "reserve" && r["ip"] == "127.0.0.1")
    );
    assert!(requests.iter().any(|r| r["peer"] == allowed.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A relay on loopback, a listener and a dialer: the dialer prints the hole punch
/// outcome, then pings and measures over the direct connection; the listener reports
/// the hole punch too.
#[test]
fn dial_upgrades_to_a_direct_connection() {
    let (relay, relay_full) = start_relay(7);
    let (listener, listener_id) = start_listener(8, &relay_full, &[]);
    let target = format!("{relay_full}/p2p-circuit/p2p/{listener_id}");
    let (ok, lines, err) = run(&[
        "dial",
        &target,
        "--seed",
        "9",
        "--ping",
        "2",
        "--perf-up",
        "100000",
    ]);
    assert!(ok, "{err}");
    assert_eq!(lines[0]["event"], "connected");
    assert_eq!(lines[0]["relayed"], true);
    assert_eq!(lines[1]["event"], "hole_punch", "{lines:?}");
    let punch = &lines[1];
    assert_eq!(punch["peer"], listener_id.as_str());
    assert_eq!(punch["result"], "success", "{punch}");
    assert_eq!(punch["transport"], "tcp");
    assert!(punch["attempt"].as_u64().unwrap() >= 1);
    assert!(punch["elapsed_ms"].is_u64());
    assert!(
        punch["addr"]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/"),
        "{punch}"
    );
    let pings: Vec<_> = lines.iter().filter(|l| l["event"] == "ping").collect();
    assert_eq!(pings.len(), 2);
    assert!(pings.iter().all(|p| p["relayed"] == false), "{pings:?}");
    let perf = lines.iter().find(|l| l["event"] == "perf").expect("perf");
    assert_eq!(perf["relayed"], false);
    let theirs = listener.wait("hole_punch", |_| true);
    assert_eq!(theirs["result"], "success", "{theirs}");
    drop(relay);
}

/// A listener that takes no part in hole punching: the dialer's wait ends with a
/// failure line and it keeps using the relay.
#[test]
fn dial_falls_back_to_the_relay() {
    let (_relay, relay_full) = start_relay(10);
    let (_listener, listener_id) = start_listener(11, &relay_full, &["--no-punch"]);
    let target = format!("{relay_full}/p2p-circuit/p2p/{listener_id}");
    let (ok, lines, err) = run(&[
        "dial",
        &target,
        "--seed",
        "12",
        "--ping",
        "1",
        "--punch-wait",
        "1",
    ]);
    assert!(ok, "{err}");
    let punch = lines
        .iter()
        .find(|l| l["event"] == "hole_punch")
        .expect("hole_punch line");
    assert_eq!(punch["result"], "failure");
    assert_eq!(punch["attempts"], 0);
    assert!(
        punch["error"].as_str().unwrap().contains("within 1.0 s"),
        "{punch}"
    );
    let ping = lines.iter().find(|l| l["event"] == "ping").expect("ping");
    assert_eq!(ping["relayed"], true);
}

/// Starts `relay serve` on a free loopback port; returns it and its full address.
fn start_relay(seed: u8) -> (Process, String) {
    let relay_addr = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let seed = seed.to_string();
    let relay = Process::start(&["serve", "--seed", &seed, "--listen", &relay_addr]);
    let relay_id = relay.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (relay, format!("{relay_addr}/p2p/{relay_id}"))
}

/// Starts `relay listen` reserving on `relay_full`; returns it once its reservation is
/// accepted, and its peer id.
fn start_listener(seed: u8, relay_full: &str, extra: &[&str]) -> (Process, String) {
    let seed = seed.to_string();
    let mut args = vec!["listen", "--seed", &seed, "--relay", relay_full];
    args.extend_from_slice(extra);
    let listener = Process::start(&args);
    let id = listener.wait("listening", |_| true)["peer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    listener.wait("reservation", |l| l["status"] == "accepted");
    (listener, id)
}
