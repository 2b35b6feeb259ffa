//! A NAT lab: Linux network namespaces wired as a small internet with a relay, an
//! observer and two private hosts, each behind its own NAT router with real kernel NAT
//! (nftables), and latency added with NFQUEUE.
//!
//! ```text
//!   A 172.31.77.2 ── lan 172.31.77.1  router-a  wan 10.77.2.2 ──┐
//!                                                               │ 10.77.2.1
//!   B 172.31.77.18 ─ lan 172.31.77.17 router-b  wan 10.77.3.2 ──┤ 10.77.3.1
//!                                                            internet
//!   relay 10.77.1.2 ───────────────────────────────────────────┤ 10.77.1.1
//!   observer 10.77.4.2 ────────────────────────────────────────┘ 10.77.4.1
//! ```
//!
//! Every link is a veth pair with a /24 on the public side and a /28 on each LAN. The
//! `internet` namespace routes between its links and knows no route to the LANs, so a
//! private address is unreachable from outside, as on the real internet. Each host's
//! default route points at the other end of its (first) link. The addresses exist only
//! inside the lab's own namespaces; every lab uses the same plan because each has its
//! own namespaces.
//!
//! - [`Lab::new`] (or [`Lab::builder`]) creates the namespaces, veth links, addresses,
//!   default routes and forwarding, loads each router's [`Nat`] preset (see [`Nat`] for
//!   the rules and the behaviour measured), and starts the [`Delays`]. Dropping the
//!   [`Lab`] kills every process it started, stops the delay threads and deletes every
//!   namespace, on success, failure or panic alike. Namespace names are unique per lab
//!   (`natlab-<pid>-<n>-<host>`), so labs in parallel tests do not collide, and a new lab
//!   removes namespaces left behind by a test process that no longer exists.
//! - [`Lab::spawn`] runs a program in a host's namespace and captures its JSON event
//!   lines ([`Process::wait_event`]); [`relay_binary`] finds or builds `relay`.
//! - [`Lab::run_in`] runs a closure on a thread inside a namespace ([`Lab::thread_in`]
//!   starts a long-lived one, e.g. for an in-process libp2p peer). Sockets keep the
//!   namespace they were made in, so [`Lab::udp_socket`], [`Lab::tcp_socket`] and
//!   [`Lab::tcp_listener`] return sockets the test then uses from any thread.
//! - [`Lab::reflector`] and [`Lab::observed_addr`] show the address and port a NAT maps
//!   a socket to, for NAT assertions.
//! - [`PunchLab`] runs hole-punching trials between a peer behind each router, ours or
//!   rust-libp2p's, through a relay on [`Host::Relay`].
//!
//! Needs root, `ip` (iproute2), `nft` (nftables), and `iptables` (for the NFQUEUE rules;
//! only when delays are on). Where namespaces cannot be made (not root, no `ip`, the
//! kernel refuses) building a lab returns [`LabError::Unavailable`], the one error tests
//! turn into `natlab: skipped: <reason>`; everything else is a failure. The lab uses
//! only addresses inside its own namespaces and sends nothing anywhere else.
//!
//! ```no_run
//! use relay_tests::natlab::{Host, Lab, LabError, Nat, Transport};
//!
//! let lab = match Lab::new(Nat::PortRestricted, Nat::Symmetric) {
//!     Err(LabError::Unavailable(reason)) => return eprintln!("natlab: skipped: {reason}"),
//!     lab => lab.expect("lab"),
//! };
//! let mapped = lab.observed_addr(Host::A, Transport::Udp, 40_000).expect("probe");
//! assert_eq!(mapped.port(), 40_000);
//! ```

#![warn(missing_docs)]

mod binary;
mod delay;
mod error;
mod nat;
mod netns;
mod probe;
mod process;
mod punch;
mod topology;

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub use binary::relay_binary;
pub use delay::Delays;
pub use error::LabError;
pub use nat::{Filtering, Mapping, Nat};
pub use probe::{Reflector, Transport, ask_tcp, ask_udp, receive_udp};
pub use process::Process;
pub use punch::{Binaries, Outcome, Pair, Ping, PunchLab, SLOTS, Stack, Trial, TrialOptions};
pub use topology::Host;

use delay::DelayLine;
use netns::Namespaces;
use process::{SharedChild, Spawner};
use topology::{HOST_IF, LAN_IF, LINKS, WAN_IF};

/// How a lab is set up: a NAT preset per router and the delays. [`Lab::builder`] makes
/// one with [`Nat::PortRestricted`] on both routers and [`Delays::TYPICAL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabBuilder {
    nat_a: Nat,
    nat_b: Nat,
    delays: Delays,
}

impl LabBuilder {
    /// Sets router A's preset.
    pub fn nat_a(mut self, nat: Nat) -> Self {
        self.nat_a = nat;
        self
    }

    /// Sets router B's preset.
    pub fn nat_b(mut self, nat: Nat) -> Self {
        self.nat_b = nat;
        self
    }

    /// Sets the delays; [`Delays::NONE`] starts no queues.
    pub fn delays(mut self, delays: Delays) -> Self {
        self.delays = delays;
        self
    }

    /// Creates the lab.
    pub fn build(self) -> Result<Lab, LabError> {
        netns::sweep_stale();
        let mut namespaces = Namespaces::prepare()?;
        for host in Host::ALL {
            namespaces.create(host)?;
        }
        let lab = Lab {
            config: self,
            processes: Mutex::new(Vec::new()),
            delay_lines: Vec::new(),
            spawner: Spawner::start()?,
            namespaces,
        };
        lab.build_with()
    }
}

impl Default for LabBuilder {
    fn default() -> Self {
        LabBuilder {
            nat_a: Nat::PortRestricted,
            nat_b: Nat::PortRestricted,
            delays: Delays::TYPICAL,
        }
    }
}

/// A running NAT lab. Dropping it removes everything it made.
///
/// Fields drop in declaration order after [`Drop::drop`] killed the processes: the
/// delay threads stop, the spawner thread ends, and the namespaces go last.
#[derive(Debug)]
pub struct Lab {
    config: LabBuilder,
    processes: Mutex<Vec<SharedChild>>,
    delay_lines: Vec<DelayLine>,
    spawner: Spawner,
    namespaces: Namespaces,
}

impl Lab {
    /// A lab with `nat_a` on router A, `nat_b` on router B and [`Delays::TYPICAL`].
    pub fn new(nat_a: Nat, nat_b: Nat) -> Result<Lab, LabError> {
        Lab::builder().nat_a(nat_a).nat_b(nat_b).build()
    }

    /// A builder to choose presets and delays.
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// The common prefix of this lab's namespace names, `natlab-<pid>-<n>`.
    pub fn id(&self) -> &str {
        self.namespaces.id()
    }

    /// The network namespace of `host`, for `ip netns exec` by hand.
    pub fn namespace(&self, host: Host) -> String {
        self.namespaces.name(host)
    }

    /// The NAT preset in front of `host` (for A and B) or of a router; `None` for the
    /// public hosts.
    pub fn nat(&self, host: Host) -> Option<Nat> {
        match host {
            Host::A | Host::RouterA => Some(self.config.nat_a),
            Host::B | Host::RouterB => Some(self.config.nat_b),
            Host::Relay | Host::Observer | Host::Internet => None,
        }
    }

    /// The delays this lab adds.
    pub fn delays(&self) -> Delays {
        self.config.delays
    }

    /// A host's own address; a router's is its `wan` address.
    pub fn addr(&self, host: Host) -> Ipv4Addr {
        topology::addr(host)
    }

    /// The address the internet sees `host` at: its router's `wan` address for A and B,
    /// its own address for the others.
    pub fn public_addr(&self, host: Host) -> Ipv4Addr {
        topology::public_addr(host)
    }

    /// The round-trip time the delays add between two hosts (on top of the ~0.1 ms the
    /// veth links take): a router's two delays for each private host on the path, the
    /// relay's delay when the relay is one end. Between a private host and its own router
    /// only the router's `lan` delay applies.
    pub fn expected_rtt(&self, from: Host, to: Host) -> Duration {
        let d = self.config.delays;
        if from.router() == Some(to) || to.router() == Some(from) {
            return d.router_lan;
        }
        let one_end = |host: Host| match host {
            Host::A | Host::B => d.router_round_trip(),
            Host::RouterA | Host::RouterB => d.router_wan,
            Host::Relay => d.relay,
            Host::Observer | Host::Internet => Duration::ZERO,
        };
        if from == to {
            return Duration::ZERO;
        }
        one_end(from) + one_end(to)
    }

    /// How many packets have been held and released at `host` so far (0 where no delay
    /// runs: only the routers and the relay have them).
    pub fn delayed_packets(&self, host: Host) -> u64 {
        self.delay_lines
            .iter()
            .filter(|l| l.host() == host)
            .map(DelayLine::delayed)
            .sum()
    }

    /// Runs `f` on a fresh thread inside `host`'s namespace and returns its result.
    /// Sockets made by `f` stay in that namespace wherever they are used afterwards. A
    /// panic in `f` is resumed on the caller's thread.
    pub fn run_in<T, F>(&self, host: Host, f: F) -> Result<T, LabError>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let ns = self.namespace(host);
        std::thread::scope(|scope| {
            let thread = std::thread::Builder::new()
                .name(format!("natlab-{}", host.name()))
                .spawn_scoped(scope, || {
                    netns::enter(&ns)?;
                    Ok(f())
                })
                .map_err(|e| LabError::io("spawn a thread", e))?;
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Starts a long-lived thread inside `host`'s namespace, e.g. for an in-process
    /// libp2p peer: threads it starts (a tokio runtime's workers) inherit the namespace.
    /// The thread is not stopped by the lab; make `f` return before dropping the lab.
    pub fn thread_in<T, F>(&self, host: Host, f: F) -> Result<JoinHandle<T>, LabError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let ns = self.namespace(host);
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("natlab-{}", host.name()))
            .spawn(move || {
                let entered = netns::enter(&ns);
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered);
                // Never run `f` outside the namespace; the caller got the error.
                if !ok {
                    std::panic::resume_unwind(Box::new("natlab: setns failed"));
                }
                f()
            })
            .map_err(|e| LabError::io("spawn a thread", e))?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(thread),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LabError::Invalid(format!(
                "the thread for {host} ended before entering its namespace"
            ))),
        }
    }

    /// Runs a command to completion inside `host`'s namespace (e.g. `nft list ruleset`
    /// on a router) and returns its standard output.
    pub fn exec<I, S>(&self, host: Host, program: &str, args: I) -> Result<String, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["netns".into(), "exec".into()];
        all.push(self.namespace(host).into());
        all.push(program.into());
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        netns::run("ip", all)
    }

    /// Starts `program args` inside `host`'s namespace with its output captured. The
    /// process is killed when the returned handle or the lab is dropped.
    pub fn spawn<P, I, S>(&self, host: Host, program: P, args: I) -> Result<Process, LabError>
    where
        P: AsRef<OsStr>,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let name = std::path::Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy();
        let what = match args.first() {
            Some(first) => format!("`{name} {}` on {host}", first.to_string_lossy()),
            None => format!("`{name}` on {host}"),
        };
        let (process, child) = self
            .spawner
            .spawn(&self.namespace(host), what, program, &args)?;
        self.processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(child);
        Ok(process)
    }

    /// A UDP socket bound to `0.0.0.0:port` inside `host` (`port` 0 picks one).
    pub fn udp_socket(&self, host: Host, port: u16) -> Result<UdpSocket, LabError> {
        self.run_in(host, || {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                .map_err(|e| LabError::io(format!("bind UDP port {port} on {host}"), e))
        })?
    }

    /// A TCP socket inside `host` with `SO_REUSEADDR` and `SO_REUSEPORT`, bound to
    /// `0.0.0.0:port` (`port` 0 picks one), ready to `connect` or `listen`: several may
    /// share a port, as a hole punch's listener and dialer do.
    pub fn tcp_socket(&self, host: Host, port: u16) -> Result<socket2::Socket, LabError> {
        self.run_in(host, || {
            let what = || format!("TCP socket on port {port} of {host}");
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .map_err(|e| LabError::io(what(), e))?;
            socket
                .set_reuse_address(true)
                .and_then(|()| socket.set_reuse_port(true))
                .and_then(|()| socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into()))
                .map_err(|e| LabError::io(what(), e))?;
            Ok(socket)
        })?
    }

    /// A TCP listener on `0.0.0.0:port` inside `host`, made by [`Lab::tcp_socket`].
    pub fn tcp_listener(&self, host: Host, port: u16) -> Result<TcpListener, LabError> {
        let socket = self.tcp_socket(host, port)?;
        socket
            .listen(128)
            .map_err(|e| LabError::io(format!("listen on TCP port {port} of {host}"), e))?;
        Ok(socket.into())
    }

    /// Starts a [`Reflector`] on `host` at `port` (0 picks one).
    pub fn reflector(
        &self,
        host: Host,
        transport: Transport,
        port: u16,
    ) -> Result<Reflector, LabError> {
        let what = || format!("{transport:?} reflector on {host}");
        let local = |addr: std::io::Result<SocketAddr>| match addr {
            Ok(SocketAddr::V4(a)) => Ok(SocketAddrV4::new(self.addr(host), a.port())),
            Ok(other) => Err(LabError::Invalid(format!("{} bound to {other}", what()))),
            Err(e) => Err(LabError::io(what(), e)),
        };
        match transport {
            Transport::Udp => {
                let socket = self.udp_socket(host, port)?;
                let addr = local(socket.local_addr())?;
                Reflector::udp(socket, addr).map_err(|e| LabError::io(what(), e))
            }
            Transport::Tcp => {
                let listener = self.tcp_listener(host, port)?;
                let addr = local(listener.local_addr())?;
                Reflector::tcp(listener, addr).map_err(|e| LabError::io(what(), e))
            }
        }
    }

    /// The public address and port the NAT in front of `host` maps `host`'s
    /// `local_port` to, as seen by a reflector on [`Host::Observer`]. For a TCP probe
    /// the socket has `SO_REUSEPORT`, so it may share `local_port` with a listener.
    ///
    /// Under [`Nat::Symmetric`] the answer holds only for the observer: every other
    /// destination sees another port.
    pub fn observed_addr(
        &self,
        host: Host,
        transport: Transport,
        local_port: u16,
    ) -> Result<SocketAddrV4, LabError> {
        let reflector = self.reflector(Host::Observer, transport, 0)?;
        let timeout = Duration::from_secs(3) + 4 * self.expected_rtt(host, Host::Observer);
        let what = || format!("ask the observer which address {host}:{local_port} maps to");
        match transport {
            Transport::Udp => {
                let socket = self.udp_socket(host, local_port)?;
                ask_udp(&socket, reflector.addr(), timeout).map_err(|e| LabError::io(what(), e))
            }
            Transport::Tcp => {
                let socket = self.tcp_socket(host, local_port)?;
                socket
                    .connect_timeout(&SocketAddr::V4(reflector.addr()).into(), timeout)
                    .and_then(|()| socket.set_read_timeout(Some(timeout)))
                    .map_err(|e| LabError::io(what(), e))?;
                ask_tcp(std::net::TcpStream::from(socket)).map_err(|e| LabError::io(what(), e))
            }
        }
    }

    /// Sets up links, forwarding, NAT and delays; on error `self` drops and cleans up.
    fn build_with(mut self) -> Result<Lab, LabError> {
        let config = self.config;
        for link in &LINKS {
            let outer = self.namespace(link.outer);
            let inner = self.namespace(link.inner);
            let (outer_if, inner_if) = (link.outer_if, link.inner_if);
            let len = link.prefix_len;
            netns::run(
                "ip",
                [
                    "-n", &outer, "link", "add", outer_if, "type", "veth", "peer", "name",
                    inner_if, "netns", &inner,
                ],
            )?;
            for (ns, dev, addr) in [
                (&outer, outer_if, link.outer_addr),
                (&inner, inner_if, link.inner_addr),
            ] {
                let cidr = format!("{addr}/{len}");
                netns::run("ip", ["-n", ns, "addr", "add", &cidr, "dev", dev])?;
                netns::run("ip", ["-n", ns, "link", "set", dev, "up"])?;
            }
            let gateway = link.outer_addr.to_string();
            netns::run(
                "ip",
                ["-n", &inner, "route", "add", "default", "via", &gateway],
            )?;
        }
        for host in [Host::Internet, Host::RouterA, Host::RouterB] {
            self.run_in(host, || {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                    .map_err(|e| LabError::io(format!("enable forwarding on {host}"), e))
            })??;
        }
        for (router, nat) in [(Host::RouterA, config.nat_a), (Host::RouterB, config.nat_b)] {
            let lan_host = router
                .lan_host()
                .map_or(Ipv4Addr::UNSPECIFIED, topology::addr);
            let ns = self.namespace(router);
            netns::run_with_input(
                "ip",
                ["netns", "exec", ns.as_str(), "nft", "-f", "-"],
                Some(&nat.ruleset(lan_host)),
            )
            .map_err(|e| hint(e, "is nftables installed?"))?;
        }
        let d = config.delays;
        for (host, queues) in [
            (
                Host::RouterA,
                vec![(LAN_IF, d.router_lan), (WAN_IF, d.router_wan)],
            ),
            (
                Host::RouterB,
                vec![(LAN_IF, d.router_lan), (WAN_IF, d.router_wan)],
            ),
            (Host::Relay, vec![(HOST_IF, d.relay)]),
        ] {
            if queues.iter().all(|(_, delay)| delay.is_zero()) {
                continue;
            }
            let ns = self.namespace(host);
            let delays = queues.iter().map(|(_, delay)| *delay).collect();
            self.delay_lines.push(DelayLine::start(host, &ns, delays)?);
            for (n, (dev, delay)) in queues.iter().enumerate() {
                if !delay.is_zero() {
                    add_queue_rule(&ns, dev, n)?;
                }
            }
        }
        Ok(self)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let children = std::mem::take(
            &mut *self
                .processes
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for child in &children {
            process::kill(child);
        }
    }
}

/// Sends packets arriving on `dev` in namespace `ns` to NFQUEUE `queue` (see delay.rs
/// for why iptables and not nft). Tries `iptables`, then `iptables-legacy`.
fn add_queue_rule(ns: &str, dev: &str, queue: usize) -> Result<(), LabError> {
    let queue = queue.to_string();
    let rule = |iptables: &str| {
        netns::run(
            "ip",
            [
                "netns",
                "exec",
                ns,
                iptables,
                "-w",
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-i",
                dev,
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue,
            ],
        )
    };
    match rule("iptables") {
        Ok(_) => Ok(()),
        Err(first) => rule("iptables-legacy").map(|_| ()).map_err(|second| {
            hint(
                LabError::Command {
                    command: "iptables NFQUEUE rule".into(),
                    detail: format!("{first}; then {second}"),
                },
                "is iptables installed?",
            )
        }),
    }
}

/// Adds a hint to a failed command's message.
fn hint(error: LabError, hint: &str) -> LabError {
    match error {
        LabError::Command { command, detail } => LabError::Command {
            command,
            detail: format!("{detail} ({hint})"),
        },
        other => other,
    }
}

/// The namespaces of the lab with id `lab_id` ([`Lab::id`]) that exist now, for tests
/// that check a lab left nothing behind.
pub fn namespaces_of(lab_id: &str) -> Vec<String> {
    netns::existing(&format!("{lab_id}-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lab_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        fn sent<T: Send>() {}
        shared::<Lab>();
        shared::<Reflector>();
        sent::<Process>();
    }

    #[test]
    fn the_default_is_the_issues_delays() {
        let d = Lab::builder().delays;
        assert_eq!(d, Delays::TYPICAL);
        assert_eq!(d.router_round_trip(), Duration::from_millis(100));
        assert_eq!(d.relay, Duration::from_millis(25));
        assert!(Delays::NONE.is_none());
    }
}
