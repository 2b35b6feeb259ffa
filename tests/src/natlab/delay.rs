//! Latency without netem: packets taken from NFQUEUE, held, and let go (see [`Delays`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::LabError;
use super::netns;
use super::topology::Host;

/// How often the delay thread looks for new packets and due verdicts.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The most packets one queue holds; more are dropped, like a full router queue.
const QUEUE_MAX_LEN: u32 = 16_384;

/// The latency a lab adds, per place where packets are held.
///
/// The kernels this project runs on have no `sch_netem`, and their nftables lacks the
/// native `queue` statement (`CONFIG_NFT_QUEUE` is off), but they have the xtables
/// `NFQUEUE` target. So each delayed namespace gets an `iptables -t raw -A PREROUTING
/// -i IF -j NFQUEUE --queue-num N` rule per delayed interface, and a thread of the test
/// process bound to those queues (through a netlink socket opened inside the namespace,
/// with the pure-Rust `nfq` crate) stamps each packet on arrival and issues its ACCEPT
/// verdict once the interface's delay has passed. Each queue is a FIFO with one delay,
/// so packet order is kept.
///
/// The queue sits on *ingress*, in the `raw` table before conntrack sees the packet:
/// holding a packet after conntrack would leave its entry unconfirmed for the whole
/// delay, and a second packet of the same new flow would then race it for a NAT
/// mapping. On ingress every packet crossing a router is held exactly once, on the
/// interface it came in by; a round trip through a router is held twice (`lan` on the
/// way out, `wan` on the way back).
///
/// The `nfq` socket offers no file descriptor to poll, so the thread polls it without
/// blocking every millisecond and sleeps until the next release in between: measured,
/// each hold point adds its delay plus about 0.8 ms (A to the relay, three hold points
/// of 120 ms in all, measures 122.5 ms). Only metadata is copied to user space (copy
/// range 0), GSO packets are queued whole, and a queue holds at most 16384 packets
/// (more are dropped, like a full router queue).
///
/// Delays apply to packets as they *arrive* at an interface, so each value is added
/// once to every packet that arrives there. A round trip from A to the relay is held
/// at router A's `lan` (outbound), at the relay (inbound) and at router A's `wan` (the
/// reply): [`Lab::expected_rtt`](super::Lab::expected_rtt) adds them up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delays {
    /// Added to every packet a NAT router receives from its private host.
    pub router_lan: Duration,
    /// Added to every packet a NAT router receives from the internet.
    pub router_wan: Duration,
    /// Added to every packet the relay host receives.
    pub relay: Duration,
}

impl Delays {
    /// No added latency: the lab starts no queues and adds no `iptables` rules.
    pub const NONE: Delays = Delays {
        router_lan: Duration::ZERO,
        router_wan: Duration::ZERO,
        relay: Duration::ZERO,
    };

    /// The figures: 100 ms per router round trip, split over its two interfaces,
    /// and 25 ms at the relay. This is the default.
    pub const TYPICAL: Delays = Delays {
        router_lan: Duration::from_millis(50),
        router_wan: Duration::from_millis(50),
        relay: Duration::from_millis(25),
    };

    /// What one round trip through a NAT router adds.
    pub fn router_round_trip(&self) -> Duration {
        self.router_lan + self.router_wan
    }

    /// Whether no latency is added anywhere.
    pub fn is_none(&self) -> bool {
        *self == Delays::NONE
    }
}

impl Default for Delays {
    fn default() -> Self {
        Delays::TYPICAL
    }
}

/// One namespace's delay thread; stops it on drop.
#[derive(Debug)]
pub(crate) struct DelayLine {
    host: Host,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Starts a thread inside namespace `ns` bound to queues `0..delays.len()`, queue `n`
    /// holding each packet for `delays[n]`. Returns once the queues are bound, so rules
    /// sending packets to them may be added right after.
    pub(crate) fn start(host: Host, ns: &str, delays: Vec<Duration>) -> Result<Self, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let ns = ns.to_owned();
        let thread = std::thread::Builder::new()
            .name(format!("natlab-delay-{}", host.name()))
            .spawn({
                let stop = stop.clone();
                let delayed = delayed.clone();
                move || {
                    let queue = match open(&ns, delays.len()) {
                        Ok(queue) => {
                            let _ = ready_tx.send(Ok(()));
                            queue
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    // Said at once: from now on this namespace drops what it would delay.
                    if let Err(e) = hold_and_release(queue, &delays, &stop, &delayed) {
                        eprintln!("natlab: the delay line of {host} stopped: {e}");
                    }
                }
            })
            .map_err(|e| LabError::io("spawn the delay thread", e))?;
        let line = DelayLine {
            host,
            stop,
            delayed,
            thread: Some(thread),
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(line),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LabError::Invalid(format!(
                "the delay thread of {host} ended before it was ready"
            ))),
        }
    }

    /// The host whose packets this line delays.
    pub(crate) fn host(&self) -> Host {
        self.host
    }

    /// How many packets this line has held and released so far.
    pub(crate) fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            eprintln!("natlab: the delay line of {} panicked", self.host);
        }
    }
}

/// Opens a netfilter queue socket inside namespace `ns` and binds queues `0..count`.
fn open(ns: &str, count: usize) -> Result<nfq::Queue, LabError> {
    netns::enter(ns)?;
    let bind_err = |what: &str, e| LabError::io(format!("NFQUEUE in {ns}: {what}"), e);
    let mut queue = nfq::Queue::open().map_err(|e| bind_err("open the netlink socket", e))?;
    for n in 0..count {
        let n = u16::try_from(n).map_err(|_| LabError::Invalid("too many queues".into()))?;
        queue.bind(n).map_err(|e| bind_err("bind", e))?;
        queue
            .set_copy_range(n, 0)
            .map_err(|e| bind_err("set the copy range", e))?;
        queue
            .set_recv_gso(n, true)
            .map_err(|e| bind_err("accept GSO packets", e))?;
        queue
            .set_queue_max_len(n, QUEUE_MAX_LEN)
            .map_err(|e| bind_err("set the queue length", e))?;
    }
    queue.set_nonblocking(true);
    Ok(queue)
}

/// The delay loop: take what has arrived, release what is due, sleep a tick.
fn hold_and_release(
    mut queue: nfq::Queue,
    delays: &[Duration],
    stop: &AtomicBool,
    delayed: &AtomicU64,
) -> Result<(), LabError> {
    let io_err = |e| LabError::io("NFQUEUE", e);
    let mut held: Vec<VecDeque<(Instant, nfq::Message)>> =
        delays.iter().map(|_| VecDeque::new()).collect();
    while !stop.load(Ordering::Relaxed) {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    let now = Instant::now();
                    let n = usize::from(msg.get_queue_num());
                    match (held.get_mut(n), delays.get(n)) {
                        (Some(fifo), Some(delay)) => fifo.push_back((now + *delay, msg)),
                        _ => {
                            msg.set_verdict(nfq::Verdict::Accept);
                            queue.verdict(msg).map_err(io_err)?;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let now = Instant::now();
        let mut next_due = now + TICK;
        for fifo in &mut held {
            while let Some((due, _)) = fifo.front() {
                if *due > now {
                    next_due = next_due.min(*due);
                    break;
                }
                if let Some((_, mut msg)) = fifo.pop_front() {
                    msg.set_verdict(nfq::Verdict::Accept);
                    queue.verdict(msg).map_err(io_err)?;
                    delayed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        std::thread::sleep(next_due.saturating_duration_since(Instant::now()));
    }
    Ok(())
}
