//! Hole-punching trials: a relay on [`Host::Relay`], a peer listening behind router B
//! with a reservation, a peer behind router A dialing it through the relay, DCUtR
//! between them, and pings. Either peer may be ours (`relay listen` / `relay dial`) or
//! rust-libp2p 0.57 (the `rust-peer` binary of this crate); both print the JSON events
//! of CONTRACT.md, so one code path drives every pair.
//!
//! [`PunchLab::trial`] runs one trial and returns its [`Trial`]: how the hole punch
//! ended (the dialer's report, or a failure the listener reports first), the time from
//! the relayed connection to the direct one as the lab saw it (the arrival of the
//! dialer's two event lines, so both stacks are timed the same way), and the pings. Each
//! of the [`SLOTS`] trial slots has its own identities and listen ports, so trials that
//! run at once, or one after another through the slots, share no NAT mapping or
//! connection.
//!
//! The relay is our `relay serve --unlimited`. DCUtR runs with each stack's defaults;
//! [`TrialOptions`] can shorten rust-libp2p's timeouts, and `--config` is not passed to
//! ours: a relay at a private address (the lab's are in `10.77.0.0/16`) already makes
//! our peers offer and accept private addresses.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Host, Lab, LabError, Process};

/// Which implementation a peer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stack {
    /// Ours: `relay listen` and `relay dial`.
    Ours,
    /// rust-libp2p 0.57: `rust-peer listen` and `rust-peer dial`.
    Rust,
}

impl Stack {
    /// A short name for messages and tables.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Ours => "ours",
            Stack::Rust => "rust-libp2p",
        }
    }
}

impl std::fmt::Display for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The two peers of a trial: `listener` behind router B (it holds the reservation and,
/// per DCUtR, sends CONNECT), `dialer` behind router A (it dials through the relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pair {
    /// The peer on [`Host::B`].
    pub listener: Stack,
    /// The peer on [`Host::A`].
    pub dialer: Stack,
}

impl Pair {
    /// The pair's kind as `PUNCH_PAIRS` names it: `ours`, `rust` or `mixed`.
    pub fn kind(&self) -> &'static str {
        match (self.listener, self.dialer) {
            (Stack::Ours, Stack::Ours) => "ours",
            (Stack::Rust, Stack::Rust) => "rust",
            _ => "mixed",
        }
    }

    /// Both peers on `stack`.
    pub const fn same(stack: Stack) -> Pair {
        Pair {
            listener: stack,
            dialer: stack,
        }
    }

    /// Every pair: ours, rust-libp2p's, and the two mixed ones.
    pub const ALL: [Pair; 4] = [
        Pair::same(Stack::Ours),
        Pair::same(Stack::Rust),
        Pair {
            listener: Stack::Rust,
            dialer: Stack::Ours,
        },
        Pair {
            listener: Stack::Ours,
            dialer: Stack::Rust,
        },
    ];
}

impl std::fmt::Display for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.listener == self.dialer {
            write!(f, "{} pair", self.listener)
        } else {
            write!(f, "{} dials {}", self.dialer, self.listener)
        }
    }
}

/// The programs of each stack.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// Our `relay` command ([`super::relay_binary`]).
    pub ours: PathBuf,
    /// The `rust-peer` binary (`env!("CARGO_BIN_EXE_rust-peer")` in this crate's tests
    /// and benches).
    pub rust: PathBuf,
}

impl Binaries {
    fn of(&self, stack: Stack) -> &Path {
        match stack {
            Stack::Ours => &self.ours,
            Stack::Rust => &self.rust,
        }
    }
}

/// Settings of a trial.
#[derive(Clone, Debug)]
pub struct TrialOptions {
    /// Pings the dialer sends after the hole punch's outcome.
    pub pings: u32,
    /// Whether to wait for the dialer's pings and its exit. Without, the trial ends with
    /// the outcome: the dialer's report, or a failure the listener reports first.
    pub wait_for_pings: bool,
    /// rust-libp2p's connection timeout, which ends a hole-punch dial whose SYN a NAT
    /// dropped (`--dial-timeout`; rust-libp2p's own 10 s when `None`).
    pub rust_dial_timeout: Option<Duration>,
    /// How long a rust-libp2p dialer waits for a direct connection (`--punch-timeout`;
    /// 45 s when `None`): rust-libp2p tells only the listener that it gave up.
    pub rust_punch_timeout: Option<Duration>,
    /// The longest the whole trial may take.
    pub timeout: Duration,
}

impl Default for TrialOptions {
    fn default() -> Self {
        TrialOptions {
            pings: 3,
            wait_for_pings: true,
            rust_dial_timeout: None,
            rust_punch_timeout: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// How a hole punch ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A direct connection: on which attempt (the dialer's count), at which address,
    /// and how long after the relayed connection (see the module docs).
    Direct {
        /// The attempt that connected, from 1.
        attempt: u64,
        /// The direct connection's remote address as the dialer printed it.
        addr: String,
        /// From the dialer's `connected` (relayed) line to its `hole_punch` line.
        after: Duration,
        /// From the dialer's start (its process spawned) to its `hole_punch` line: the
        /// connection to the relay, the circuit and the hole punch, end to end.
        from_start: Duration,
    },
    /// No direct connection: the first failure reported, by either peer.
    Relayed {
        /// Which peer reported it: `"dialer"` or `"listener"`.
        by: &'static str,
        /// The attempts it counted, if it said.
        attempts: Option<u64>,
        /// Its reason.
        error: String,
        /// From the dialer's `connected` (relayed) line to the failure's line.
        after: Duration,
    },
}

impl Outcome {
    /// Whether the peers ended with a direct connection.
    pub fn is_direct(&self) -> bool {
        matches!(self, Outcome::Direct { .. })
    }
}

/// One ping the dialer reported.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ping {
    /// Whether it went over the relayed connection.
    pub relayed: bool,
    /// Its round-trip time.
    pub rtt_ms: f64,
}

/// What one trial showed.
#[derive(Debug)]
pub struct Trial {
    /// Who took part.
    pub pair: Pair,
    /// How the hole punch ended.
    pub outcome: Outcome,
    /// The dialer's pings after the outcome (empty unless
    /// [`TrialOptions::wait_for_pings`]).
    pub pings: Vec<Ping>,
    /// The listener's own `hole_punch` line, if it printed one by the end of the trial.
    pub listener_report: Option<Value>,
    /// The dialer, still running unless it exited.
    pub dialer: Process,
    /// The listener, still running.
    pub listener: Process,
}

impl Trial {
    /// Both peers' output lines so far, merged in the order they were read, each with
    /// its time in milliseconds since the listener's first line: what happened when,
    /// for a failure message.
    pub fn timeline(&mut self) -> String {
        let mut lines: Vec<(Instant, &str, Value)> = self
            .listener
            .timed_events()
            .into_iter()
            .map(|(at, line)| (at, "listener", line))
            .chain(
                self.dialer
                    .timed_events()
                    .into_iter()
                    .map(|(at, line)| (at, "dialer", line)),
            )
            .collect();
        lines.sort_by_key(|(at, _, _)| *at);
        let Some(start) = lines.first().map(|(at, _, _)| *at) else {
            return String::new();
        };
        lines
            .iter()
            .map(|(at, who, line)| {
                let ms = at.saturating_duration_since(start).as_secs_f64() * 1000.0;
                format!("{ms:9.1} ms {who:<8} {line}\n")
            })
            .collect()
    }
}

/// A lab with a relay running: where trials take place. Trials may run on several
/// threads at once when each has its own slot number (see [`PunchLab::trial`]).
#[derive(Debug)]
pub struct PunchLab<'lab> {
    lab: &'lab Lab,
    binaries: Binaries,
    relay: Mutex<Process>,
    relay_addr: String,
}

/// The relay's TCP port.
const RELAY_PORT: u16 = 4001;
/// The first listen port of the peers; each trial takes the next two.
const FIRST_PEER_PORT: u16 = 20_000;
/// How many slots have distinct ports and identities: slot numbers count modulo this.
pub const SLOTS: u32 = 100;
/// How long a peer may take to start, reach the relay and reserve.
const SETUP: Duration = Duration::from_secs(30);

impl<'lab> PunchLab<'lab> {
    /// Starts our relay on [`Host::Relay`]: `relay serve --unlimited`, because every
    /// listener reserves from router B's one address, many times over in a benchmark,
    /// beyond the default per-IP counts and rate limits.
    pub fn start(lab: &'lab Lab, binaries: Binaries) -> Result<Self, LabError> {
        let listen = format!("/ip4/0.0.0.0/tcp/{RELAY_PORT}");
        let mut relay = lab.spawn(
            Host::Relay,
            &binaries.ours,
            [
                "serve",
                "--listen",
                listen.as_str(),
                "--seed",
                "1",
                "--unlimited",
            ],
        )?;
        let listening = relay.wait_event("listening", SETUP)?;
        let peer_id = str_field(&listening, "peer_id", "the relay's `listening`")?;
        let relay_addr = format!(
            "/ip4/{}/tcp/{RELAY_PORT}/p2p/{peer_id}",
            lab.addr(Host::Relay)
        );
        Ok(PunchLab {
            lab,
            binaries,
            relay: Mutex::new(relay),
            relay_addr,
        })
    }

    /// The relay's multiaddr, `/ip4/.../tcp/4001/p2p/RELAY`.
    pub fn relay_addr(&self) -> &str {
        &self.relay_addr
    }

    /// The end of the relay's standard error.
    pub fn relay_stderr(&self) -> String {
        self.relay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stderr()
    }

    /// The lab the trials run in.
    pub fn lab(&self) -> &Lab {
        self.lab
    }

    /// The round-trip time of the relayed path between A and B that the lab's delays
    /// add: A to the relay and the relay to B.
    pub fn relayed_rtt(&self) -> Duration {
        self.lab.expected_rtt(Host::A, Host::Relay) + self.lab.expected_rtt(Host::Relay, Host::B)
    }

    /// The round-trip time of the direct path between A and B that the delays add.
    pub fn direct_rtt(&self) -> Duration {
        self.lab.expected_rtt(Host::A, Host::B)
    }

    /// Runs one trial of `pair` in slot `slot`: the slot (modulo [`SLOTS`]) sets the
    /// peers' listen ports and identities, so trials that run at the same time need
    /// different slots, and a trial that reuses an earlier one's slot finds that
    /// trial's ports closed only if it ended a while ago (count up through the slots).
    pub fn trial(&self, slot: u32, pair: Pair, options: &TrialOptions) -> Result<Trial, LabError> {
        let n = slot % SLOTS;
        let port_a = FIRST_PEER_PORT + 2 * u16::try_from(n).unwrap_or(0);
        let port_b = port_a + 1;
        let seed_a = 10 + 2 * n;
        let seed_b = seed_a + 1;
        let deadline = Instant::now() + options.timeout;
        let what = |role: &str, stack: Stack| format!("{pair}: the {role} ({stack})");

        let mut args = vec![
            "listen".to_owned(),
            "--relay".into(),
            self.relay_addr.clone(),
        ];
        args.extend(common_args(pair.listener, port_b, seed_b, options));
        let mut listener = self
            .lab
            .spawn(Host::B, self.binaries.of(pair.listener), &args)?;
        let listening = listener
            .wait_event("listening", SETUP)
            .map_err(|e| context(e, &what("listener", pair.listener)))?;
        let peer_b = str_field(&listening, "peer_id", "the listener's `listening`")?.to_owned();
        listener
            .wait_for("an accepted reservation", SETUP, |v| {
                v["event"] == "reservation" && v["status"] == "accepted"
            })
            .map_err(|e| context(e, &what("listener", pair.listener)))?;

        let target = format!("{}/p2p-circuit/p2p/{peer_b}", self.relay_addr);
        let mut args = vec![
            "dial".to_owned(),
            target,
            "--ping".into(),
            options.pings.to_string(),
        ];
        args.extend(common_args(pair.dialer, port_a, seed_a, options));
        if pair.dialer == Stack::Rust
            && let Some(timeout) = options.rust_punch_timeout
        {
            args.extend(["--punch-timeout".into(), timeout.as_secs_f64().to_string()]);
        }
        let started = Instant::now();
        let mut dialer = self
            .lab
            .spawn(Host::A, self.binaries.of(pair.dialer), &args)?;
        let (_, relayed_at) = dialer
            .wait_for_at("a relayed connection", SETUP, |v| {
                v["event"] == "connected" && v["relayed"] == true
            })
            .map_err(|e| context(e, &what("dialer", pair.dialer)))?;

        let outcome = outcome(&mut dialer, &mut listener, started, relayed_at, deadline)
            .map_err(|e| context(e, &format!("{pair}: the hole punch's outcome")))?;
        let mut pings = Vec::new();
        if options.wait_for_pings {
            for _ in 0..options.pings {
                let left = deadline.saturating_duration_since(Instant::now());
                let ping = dialer
                    .wait_event("ping", left)
                    .map_err(|e| context(e, &what("dialer", pair.dialer)))?;
                pings.push(Ping {
                    relayed: ping["relayed"] == true,
                    rtt_ms: ping["rtt_ms"].as_f64().unwrap_or(f64::NAN),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let status = dialer.wait(left)?;
            if !status.success() {
                return Err(LabError::Exited {
                    what: what("dialer", pair.dialer),
                    status: status.to_string(),
                    stderr: dialer.stderr(),
                });
            }
        }
        let listener_report = listener
            .events()
            .iter()
            .find(|v| v["event"] == "hole_punch")
            .cloned();
        Ok(Trial {
            pair,
            outcome,
            pings,
            listener_report,
            dialer,
            listener,
        })
    }
}

/// The arguments both roles take: listen port, identity, and rust-libp2p's dial timeout.
fn common_args(stack: Stack, port: u16, seed: u32, options: &TrialOptions) -> Vec<String> {
    let mut args = vec![
        "--listen".to_owned(),
        format!("/ip4/0.0.0.0/tcp/{port}"),
        "--seed".into(),
        seed.to_string(),
    ];
    if stack == Stack::Rust
        && let Some(timeout) = options.rust_dial_timeout
    {
        args.extend(["--dial-timeout".into(), timeout.as_secs_f64().to_string()]);
    }
    args
}

/// Waits for the dialer's `hole_punch` line, or a failure the listener reports first.
fn outcome(
    dialer: &mut Process,
    listener: &mut Process,
    started: Instant,
    relayed_at: Instant,
    deadline: Instant,
) -> Result<Outcome, LabError> {
    const POLL: Duration = Duration::from_millis(20);
    let is_punch = |v: &Value| v["event"] == "hole_punch";
    loop {
        match dialer.wait_for_at("a `hole_punch` line", POLL, is_punch) {
            Ok((line, at)) => {
                return parse_outcome(&line, "dialer", at - relayed_at, at - started);
            }
            Err(LabError::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        match listener.wait_for_at("a failed `hole_punch`", Duration::ZERO, |v| {
            is_punch(v) && v["result"] == "failure"
        }) {
            Ok((line, at)) => {
                return parse_outcome(&line, "listener", at - relayed_at, at - started);
            }
            Err(LabError::Timeout { .. }) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(LabError::Timeout {
                what: "a `hole_punch` line from either peer".into(),
                after: deadline.saturating_duration_since(relayed_at),
                stderr: format!(
                    "dialer:\n{}\nlistener:\n{}",
                    dialer.stderr(),
                    listener.stderr()
                ),
            });
        }
    }
}

fn parse_outcome(
    line: &Value,
    by: &'static str,
    after: Duration,
    from_start: Duration,
) -> Result<Outcome, LabError> {
    match line["result"].as_str() {
        Some("success") => Ok(Outcome::Direct {
            attempt: line["attempt"].as_u64().unwrap_or(1),
            addr: line["addr"].as_str().unwrap_or_default().to_owned(),
            after,
            from_start,
        }),
        Some("failure") => Ok(Outcome::Relayed {
            by,
            attempts: line["attempts"].as_u64(),
            error: line["error"].as_str().unwrap_or_default().to_owned(),
            after,
        }),
        _ => Err(LabError::Invalid(format!(
            "the {by} printed a `hole_punch` line without a known result: {line}"
        ))),
    }
}

fn str_field<'v>(line: &'v Value, field: &str, what: &str) -> Result<&'v str, LabError> {
    line[field]
        .as_str()
        .ok_or_else(|| LabError::Invalid(format!("{what} has no {field:?}: {line}")))
}

/// Says which peer an error is about.
fn context(error: LabError, what: &str) -> LabError {
    match error {
        LabError::Timeout {
            what: w,
            after,
            stderr,
        } => LabError::Timeout {
            what: format!("{what}: {w}"),
            after,
            stderr,
        },
        LabError::Exited {
            what: w,
            status,
            stderr,
        } => LabError::Exited {
            what: format!("{what}: {w}"),
            status,
            stderr,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn outcomes_parse_from_both_stacks_lines() {
        let success = serde_json::json!({"event": "hole_punch", "peer": "p", "result": "success",
            "transport": "tcp", "attempt": 2, "elapsed_ms": 800, "addr": "/ip4/10.77.3.2/tcp/1"});
        assert_eq!(
            parse_outcome(&success, "dialer", Duration::from_millis(900), SECOND).unwrap(),
            Outcome::Direct {
                attempt: 2,
                addr: "/ip4/10.77.3.2/tcp/1".into(),
                after: Duration::from_millis(900),
                from_start: SECOND,
            }
        );
        let failure = serde_json::json!({"event": "hole_punch", "peer": "p", "result": "failure",
            "attempts": 3, "error": "timeout"});
        let outcome = parse_outcome(&failure, "listener", Duration::ZERO, SECOND).unwrap();
        assert!(!outcome.is_direct());
        let odd = serde_json::json!({"event": "hole_punch", "result": "maybe"});
        assert!(parse_outcome(&odd, "dialer", Duration::ZERO, SECOND).is_err());
    }

    #[test]
    fn pairs_name_themselves() {
        assert_eq!(Pair::same(Stack::Rust).to_string(), "rust-libp2p pair");
        assert_eq!(Pair::ALL[2].to_string(), "ours dials rust-libp2p");
    }
}
