//! A rust-libp2p 0.57 peer for the NAT lab: the other stack the hole-punching tests and
//! the punch benchmark run against ours, driven through the same JSON events as our
//! `relay listen` and `relay dial` (CONTRACT.md).
//!
//! ```text
//! rust-peer listen --relay /ip4/R/tcp/PORT/p2p/RELAY [--listen MULTIADDR] [COMMON]
//! rust-peer dial TARGET [--ping N] [--punch-timeout SECONDS] [--listen MULTIADDR] [COMMON]
//! COMMON: [--seed N] [--hold SECONDS] [--no-punch] [--dial-timeout SECONDS]
//! ```
//!
//! Both listen on TCP first (`--listen`, default `/ip4/0.0.0.0/tcp/0`), then connect to
//! the relay and wait for identify to tell them their observed address, as rust-libp2p's
//! own DCUtR example does: the observed address is the candidate DCUtR sends. Every dial
//! reuses the listen port (rust-libp2p 0.57 dials with `PortUse::Reuse` by default and
//! binds the listen socket's port with `SO_REUSEPORT`), so the NAT mapping the relay
//! connection made is the one the hole punch uses.
//!
//! - `listen` takes a reservation (`listen_on(.../p2p-circuit)`), accepts relayed
//!   connections and answers ping; rust-libp2p's DCUtR makes it the side that sends
//!   CONNECT and retries (up to 3 attempts).
//! - `dial` dials `TARGET` (`/ip4/.../tcp/PORT/p2p/RELAY/p2p-circuit/p2p/PEER`, or a
//!   direct address), waits for the hole punch's outcome unless `--no-punch`, sends
//!   `--ping N` pings (over the direct connection when there is one) and exits; `--hold`
//!   keeps it connected that many seconds longer.
//!
//! Events on stdout, one JSON object per line: `listening`, `reservation`, `connected`,
//! `hole_punch`, `ping`, as CONTRACT.md describes. The `hole_punch` outcome is this
//! program's reading of rust-libp2p, which reports success only for a connection it
//! dialed and failure only on the side that retries:
//! - success: the first direct connection to the peer after the relayed one, dialed or
//!   accepted; `attempt` is how many hole-punch dials to the peer were started by then
//!   (at least 1), `elapsed_ms` the time since the relayed connection was established;
//! - failure: a DCUtR error on the `listen` side (it gives up after its 3 attempts), or
//!   on the `dial` side no direct connection within `--punch-timeout` (default 45 s),
//!   with the last DCUtR error seen, if any.
//!
//! `--dial-timeout` sets the swarm's connection timeout (rust-libp2p's default, 10 s): a
//! hole-punch dial whose SYN a NAT drops fails after it. Errors go to stderr with a
//! non-zero exit status.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, dcutr, identify, noise, ping, relay, tcp, yamux};
use serde_json::{Value, json};
use tokio::time::Instant;

/// rust-libp2p's own connection timeout.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `dial` waits for a direct connection before it reports failure: longer than
/// rust-libp2p's three attempts with their 10 s dial timeouts.
const DEFAULT_PUNCH_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the steps before the hole punch (relay connection, identify, circuit) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often ping runs on each connection.
const PING_INTERVAL: Duration = Duration::from_millis(200);

const USAGE: &str = "usage: rust-peer listen --relay MULTIADDR [--listen MULTIADDR] [--seed N] \
[--hold SECONDS] [--no-punch] [--dial-timeout SECONDS]\n       rust-peer dial TARGET [--ping N] \
[--punch-timeout SECONDS] [--listen MULTIADDR] [--seed N] [--hold SECONDS] [--no-punch] \
[--dial-timeout SECONDS]";

#[derive(NetworkBehaviour)]
struct Peer {
    relay_client: relay::client::Behaviour,
    dcutr: Toggle<dcutr::Behaviour>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

#[derive(Debug)]
enum Mode {
    Listen { relay: Multiaddr },
    Dial { target: Multiaddr, pings: u32 },
}

#[derive(Debug)]
struct Args {
    mode: Mode,
    listen: Multiaddr,
    seed: Option<u8>,
    hold: Option<Duration>,
    punch: bool,
    dial_timeout: Duration,
    punch_timeout: Duration,
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("{flag} {value}: expected a number of seconds"))
}

fn multiaddr(flag: &str, value: &str) -> Result<Multiaddr, String> {
    value.parse().map_err(|e| format!("{flag} {value}: {e}"))
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut argv = argv.into_iter();
    let command = argv.next().ok_or("a command is needed: listen or dial")?;
    let mut relay = None;
    let mut target = None;
    let mut pings = 1;
    let mut args = Args {
        mode: Mode::Dial {
            target: Multiaddr::empty(),
            pings: 0,
        },
        listen: multiaddr("--listen", "/ip4/0.0.0.0/tcp/0")?,
        seed: None,
        hold: None,
        punch: true,
        dial_timeout: DEFAULT_DIAL_TIMEOUT,
        punch_timeout: DEFAULT_PUNCH_TIMEOUT,
    };
    while let Some(arg) = argv.next() {
        if arg == "--no-punch" {
            args.punch = false;
            continue;
        }
        if !arg.starts_with("--") {
            if command == "dial" && target.is_none() {
                target = Some(multiaddr("TARGET", &arg)?);
                continue;
            }
            return Err(format!("unexpected argument {arg}"));
        }
        let value = argv.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match (command.as_str(), arg.as_str()) {
            (_, "--listen") => args.listen = multiaddr(&arg, &value)?,
            (_, "--seed") => {
                args.seed = Some(value.parse().map_err(|e| format!("--seed {value}: {e}"))?)
            }
            (_, "--hold") => args.hold = Some(seconds(&arg, &value)?),
            (_, "--dial-timeout") => args.dial_timeout = seconds(&arg, &value)?,
            ("listen", "--relay") => relay = Some(multiaddr(&arg, &value)?),
            ("dial", "--ping") => {
                pings = value.parse().map_err(|e| format!("--ping {value}: {e}"))?
            }
            ("dial", "--punch-timeout") => args.punch_timeout = seconds(&arg, &value)?,
            _ => return Err(format!("unknown argument {arg} for {command}")),
        }
    }
    args.mode = match command.as_str() {
        "listen" => Mode::Listen {
            relay: relay.ok_or("listen needs --relay /ip4/.../tcp/PORT/p2p/RELAY")?,
        },
        "dial" => Mode::Dial {
            target: target.ok_or("dial needs a TARGET multiaddr")?,
            pings,
        },
        other => return Err(format!("unknown command {other}")),
    };
    Ok(args)
}

/// Prints one event line and flushes it at once, for the program reading it.
fn emit(line: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The peer id at the end of `addr`.
fn last_peer(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Splits `/.../p2p/RELAY/p2p-circuit/p2p/PEER` into the relay's address, or `None` for
/// a direct address.
fn relay_part(addr: &Multiaddr) -> Option<Multiaddr> {
    let mut relay = Multiaddr::empty();
    for protocol in addr.iter() {
        if protocol == Protocol::P2pCircuit {
            return Some(relay);
        }
        relay.push(protocol);
    }
    None
}

/// What this peer knows of one hole punch with a remote peer.
#[derive(Debug)]
struct Punch {
    /// When the relayed connection was established.
    relayed_at: Instant,
    /// Dials to the peer started since then: rust-libp2p's hole-punch attempts.
    dials: u32,
    /// The last DCUtR error, for the failure message.
    last_error: Option<String>,
    /// Whether the outcome was reported.
    done: bool,
}

struct Node {
    swarm: Swarm<Peer>,
    relay: PeerId,
    listen_mode: bool,
    /// Every open connection: its peer, whether it is relayed, the remote address.
    connections: HashMap<ConnectionId, (PeerId, bool, Multiaddr)>,
    punches: HashMap<PeerId, Punch>,
    /// The peer the dial mode dialed, and the connection its pings are reported from.
    target: Option<PeerId>,
    ping_connection: Option<ConnectionId>,
    pings_left: u32,
    /// Whether the relay's identify arrived (our observed address is known).
    identified_by_relay: bool,
    reserved: bool,
    fatal: Option<String>,
}

impl Node {
    fn new(args: &Args, relay: PeerId) -> Result<Self, String> {
        let key = match args.seed {
            Some(seed) => relay_proto::identity::keypair_from_seed(seed),
            None => libp2p::identity::Keypair::generate_ed25519(),
        };
        let punch = args.punch;
        let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| format!("tcp transport: {e}"))?
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| format!("relay transport: {e}"))?
            .with_behaviour(|key, relay_client| Peer {
                relay_client,
                dcutr: Toggle::from(
                    punch.then(|| dcutr::Behaviour::new(key.public().to_peer_id())),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/ipfs/0.1.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
            })
            .map_err(|e| format!("behaviour: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .with_connection_timeout(args.dial_timeout)
            .build();
        Ok(Node {
            swarm,
            relay,
            listen_mode: matches!(args.mode, Mode::Listen { .. }),
            connections: HashMap::new(),
            punches: HashMap::new(),
            target: None,
            ping_connection: None,
            pings_left: 0,
            identified_by_relay: false,
            reserved: false,
            fatal: None,
        })
    }

    /// Handles swarm events until `done` says so, a fatal error, or `deadline`.
    async fn until<T>(
        &mut self,
        what: &str,
        deadline: Instant,
        mut done: impl FnMut(&mut Self) -> Option<T>,
    ) -> Result<T, String> {
        loop {
            if let Some(error) = self.fatal.take() {
                return Err(error);
            }
            if let Some(value) = done(self) {
                return Ok(value);
            }
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(format!("timed out waiting for {what}"));
                }
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<PeerEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connected(peer_id, connection_id, &endpoint),
            SwarmEvent::ConnectionClosed { connection_id, .. } => {
                self.connections.remove(&connection_id);
                if self.ping_connection == Some(connection_id) {
                    self.ping_connection = None;
                }
            }
            SwarmEvent::Dialing {
                peer_id: Some(peer),
                ..
            } => {
                if let Some(punch) = self.punches.get_mut(&peer) {
                    punch.dials += 1;
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if peer == self.relay
                || (Some(peer) == self.target && !self.has_connection(peer)) =>
            {
                self.fatal = Some(format!("cannot connect to {peer}: {error}"));
            }
            SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } if !self.reserved => {
                self.fatal = Some(format!("listener closed: {error}"));
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn has_connection(&self, peer: PeerId) -> bool {
        self.connections.values().any(|(p, _, _)| *p == peer)
    }

    fn on_connected(&mut self, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        let relayed = endpoint.is_relayed();
        let addr = endpoint.get_remote_address().clone();
        self.connections.insert(id, (peer, relayed, addr.clone()));
        if peer == self.relay {
            return;
        }
        emit(&json!({
            "event": "connected",
            "peer": peer.to_string(),
            "relayed": relayed,
            "addr": addr.to_string(),
        }));
        if relayed {
            self.punches.entry(peer).or_insert(Punch {
                relayed_at: Instant::now(),
                dials: 0,
                last_error: None,
                done: false,
            });
            return;
        }
        if let Some(punch) = self.punches.get_mut(&peer)
            && !punch.done
        {
            punch.done = true;
            emit(&json!({
                "event": "hole_punch",
                "peer": peer.to_string(),
                "result": "success",
                "transport": "tcp",
                "attempt": punch.dials.max(1),
                "elapsed_ms": u64::try_from(punch.relayed_at.elapsed().as_millis()).unwrap_or(u64::MAX),
                "addr": addr.to_string(),
            }));
        }
    }

    fn on_behaviour(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Identify(identify::Event::Received { peer_id, .. })
                if peer_id == self.relay =>
            {
                self.identified_by_relay = true;
            }
            PeerEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                limit,
            }) => {
                self.reserved = true;
                let circuit = self
                    .connections
                    .values()
                    .find(|(p, relayed, _)| *p == relay_peer_id && !relayed)
                    .map(|(_, _, addr)| {
                        addr.clone()
                            .with_p2p(relay_peer_id)
                            .unwrap_or_else(|a| a)
                            .with(Protocol::P2pCircuit)
                            .with(Protocol::P2p(*self.swarm.local_peer_id()))
                    });
                emit(&json!({
                    "event": "reservation",
                    "status": if renewal { "renewed" } else { "accepted" },
                    "relay": relay_peer_id.to_string(),
                    "addrs": circuit.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "limit": {
                        "duration_s": limit.as_ref().and_then(|l| l.duration()).map(|d| d.as_secs()),
                        "data_bytes": limit.as_ref().and_then(|l| l.data_in_bytes()),
                    },
                }));
            }
            PeerEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result: Err(error),
            }) => self.on_punch_error(remote_peer_id, error.to_string()),
            PeerEvent::Ping(ping::Event {
                peer,
                connection,
                result,
            }) if Some(connection) == self.ping_connection && self.pings_left > 0 => match result {
                Ok(rtt) => {
                    self.pings_left -= 1;
                    let relayed = self
                        .connections
                        .get(&connection)
                        .is_some_and(|(_, relayed, _)| *relayed);
                    emit(&json!({
                        "event": "ping",
                        "peer": peer.to_string(),
                        "relayed": relayed,
                        "rtt_ms": rtt.as_secs_f64() * 1000.0,
                    }));
                }
                Err(error) => self.fatal = Some(format!("ping failed: {error}")),
            },
            _ => {}
        }
    }

    /// rust-libp2p reports a DCUtR error per failed exchange; only the side that sends
    /// CONNECT (ours in `listen` mode) decides the hole punch is over.
    fn on_punch_error(&mut self, peer: PeerId, error: String) {
        let listen_mode = self.listen_mode;
        let Some(punch) = self.punches.get_mut(&peer) else {
            return;
        };
        if punch.done {
            return;
        }
        if listen_mode {
            punch.done = true;
            emit_punch_failure(peer, punch.dials, &error);
        } else {
            punch.last_error = Some(error);
        }
    }

    fn listen_addrs(&self) -> Vec<String> {
        self.swarm.listeners().map(ToString::to_string).collect()
    }

    /// Listens on `addr` and prints `listening` once the listener has an address.
    async fn listen(&mut self, addr: Multiaddr) -> Result<(), String> {
        self.swarm
            .listen_on(addr.clone())
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        self.until("a listen address", deadline, |n| {
            n.swarm.listeners().next().map(|_| ())
        })
        .await?;
        emit(&json!({
            "event": "listening",
            "peer_id": self.swarm.local_peer_id().to_string(),
            "addrs": self.listen_addrs(),
        }));
        Ok(())
    }

    /// Connects to the relay from the listen port and waits for its identify, which
    /// carries our observed address: the candidate DCUtR will offer.
    async fn join_relay(&mut self, relay: Multiaddr) -> Result<(), String> {
        self.swarm
            .dial(relay.clone())
            .map_err(|e| format!("cannot dial the relay {relay}: {e}"))?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        self.until("the relay's identify", deadline, |n| {
            n.identified_by_relay.then_some(())
        })
        .await
    }

    async fn run_listen(&mut self, relay: Multiaddr) -> Result<(), String> {
        self.join_relay(relay.clone()).await?;
        let circuit = relay.with(Protocol::P2pCircuit);
        self.swarm
            .listen_on(circuit.clone())
            .map_err(|e| format!("cannot listen on {circuit}: {e}"))?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        self.until("the reservation", deadline, |n| n.reserved.then_some(()))
            .await
    }

    async fn run_dial(
        &mut self,
        target: Multiaddr,
        pings: u32,
        punch_timeout: Duration,
    ) -> Result<(), String> {
        let peer = last_peer(&target).ok_or("the target must end with /p2p/<peer id>")?;
        let relay = relay_part(&target);
        if let Some(relay) = &relay {
            self.join_relay(relay.clone()).await?;
        }
        self.target = Some(peer);
        self.swarm
            .dial(target.clone())
            .map_err(|e| format!("cannot dial {target}: {e}"))?;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let first = self
            .until("the connection to the target", deadline, |n| {
                n.connections
                    .iter()
                    .find(|(_, (p, _, _))| *p == peer)
                    .map(|(id, _)| *id)
            })
            .await?;
        let punching = relay.is_some() && self.swarm.behaviour().dcutr.is_enabled();
        if punching {
            let deadline = Instant::now() + punch_timeout;
            let outcome = self
                .until("the hole punch", deadline, |n| {
                    n.punches.get(&peer).is_some_and(|p| p.done).then_some(())
                })
                .await;
            if outcome.is_err()
                && let Some(punch) = self.punches.get_mut(&peer)
            {
                punch.done = true;
                let error = match &punch.last_error {
                    Some(e) => format!("no direct connection within {punch_timeout:?}: {e}"),
                    None => format!("no direct connection within {punch_timeout:?}"),
                };
                emit_punch_failure(peer, punch.dials, &error);
            }
        }
        let direct = self
            .connections
            .iter()
            .find(|(_, (p, relayed, _))| *p == peer && !relayed)
            .map(|(id, _)| *id);
        self.ping_connection = Some(direct.unwrap_or(first));
        self.pings_left = pings;
        let deadline = Instant::now() + SETUP_TIMEOUT + PING_INTERVAL * pings;
        self.until("the pings", deadline, |n| {
            if n.ping_connection.is_none() {
                n.fatal = Some("the connection closed before the pings".into());
            }
            (n.pings_left == 0).then_some(())
        })
        .await
    }

    /// Keeps handling events for `hold` (forever without it).
    async fn hold(&mut self, hold: Option<Duration>) -> Result<(), String> {
        let deadline = match hold {
            Some(hold) => Instant::now() + hold,
            None => Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600),
        };
        match self.until("nothing", deadline, |_| None::<()>).await {
            Err(e) if e.starts_with("timed out") => Ok(()),
            other => other,
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let relay_addr = match &args.mode {
        Mode::Listen { relay } => relay.clone(),
        Mode::Dial { target, .. } => relay_part(target).unwrap_or_else(Multiaddr::empty),
    };
    let relay = match (&args.mode, last_peer(&relay_addr)) {
        (_, Some(relay)) => relay,
        (Mode::Listen { .. }, None) => {
            return Err(format!("--relay {relay_addr}: expected .../p2p/<relay id>"));
        }
        (Mode::Dial { target, .. }, None) if !relay_addr.is_empty() => {
            return Err(format!(
                "{target}: expected .../p2p/RELAY/p2p-circuit/p2p/PEER"
            ));
        }
        // A direct dial: no relay; a random id nobody has stands in for it.
        (Mode::Dial { .. }, None) => PeerId::random(),
    };
    let mut node = Node::new(&args, relay)?;
    node.listen(args.listen.clone()).await?;
    match args.mode {
        Mode::Listen { relay } => {
            node.run_listen(relay).await?;
            node.hold(args.hold).await
        }
        Mode::Dial { target, pings } => {
            node.run_dial(target, pings, args.punch_timeout).await?;
            match args.hold {
                Some(hold) => node.hold(Some(hold)).await,
                None => Ok(()),
            }
        }
    }
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("rust-peer: {error}");
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rust-peer: cannot start the runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(run(args)) {
        eprintln!("rust-peer: {error}");
        std::process::exit(1);
    }
}

/// Prints a failed `hole_punch` line as our CLI does.
fn emit_punch_failure(peer: PeerId, attempts: u32, error: &str) {
    emit(&json!({
        "event": "hole_punch",
        "peer": peer.to_string(),
        "result": "failure",
        "attempts": attempts,
        "error": error,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args, String> {
        parse_args(line.split_whitespace().map(String::from))
    }

    const RELAY: &str =
        "/ip4/10.77.1.2/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
    const PEER: &str = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3";

    #[test]
    fn a_circuit_target_splits_into_the_relay_and_the_peer() {
        let target: Multiaddr = format!("{RELAY}/p2p-circuit/p2p/{PEER}").parse().unwrap();
        assert_eq!(relay_part(&target), Some(RELAY.parse().unwrap()));
        assert_eq!(last_peer(&target), Some(PEER.parse().unwrap()));
        let direct: Multiaddr = format!("/ip4/10.77.1.2/tcp/1/p2p/{PEER}").parse().unwrap();
        assert_eq!(relay_part(&direct), None);
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_named() {
        let listen = args(&format!("listen --relay {RELAY} --seed 3 --no-punch")).unwrap();
        assert!(matches!(listen.mode, Mode::Listen { .. }));
        assert_eq!(listen.seed, Some(3));
        assert!(!listen.punch);
        let dial = args(&format!(
            "dial {RELAY}/p2p-circuit/p2p/{PEER} --ping 4 --punch-timeout 2.5 --dial-timeout 3"
        ))
        .unwrap();
        assert!(matches!(dial.mode, Mode::Dial { pings: 4, .. }));
        assert_eq!(dial.punch_timeout, Duration::from_millis(2500));
        assert_eq!(dial.dial_timeout, Duration::from_secs(3));
        for (line, needle) in [
            ("listen", "--relay"),
            ("dial", "TARGET"),
            (
                "dial /ip4/1.2.3.4/tcp/1 --relay /ip4/1.2.3.4/tcp/1",
                "--relay",
            ),
            ("listen --relay nonsense", "nonsense"),
            ("listen --relay", "needs a value"),
            ("dial /ip4/1.2.3.4/tcp/1 --ping -1", "--ping"),
            ("dial /ip4/1.2.3.4/tcp/1 --hold forever", "--hold"),
            ("punch", "punch"),
        ] {
            let error = args(line).expect_err(line);
            assert!(error.contains(needle), "{line}: {error}");
        }
    }
}
