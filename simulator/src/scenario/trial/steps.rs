//! The steps of a trial: what each does and what it waits for.

use std::time::Duration;

use relay_proto::multiaddr::Protocol;
use relay_proto::node::{ConnectionId, Event};

use super::auto_relay::Failure;
use super::{Trial, await_kind};
use crate::scenario::spec::{AwaitName, PathName, Step};
use crate::scenario::topology::TRANSFER_PROTOCOL;

impl Trial<'_, '_> {
    pub(super) fn step(&mut self, step: &Step) -> Result<(), String> {
        let timeout = |t: &Option<f64>| t.map_or(self.plan.step_timeout, Duration::from_secs_f64);
        match step {
            Step::Reserve {
                peer,
                relay,
                timeout_s,
            } => self.reserve(self.slot(peer), self.slot(relay), timeout(timeout_s)),
            Step::Connect {
                from,
                to,
                via,
                timeout_s,
            } => {
                let via = via.as_ref().map(|v| self.resolve(v)).transpose()?;
                self.connect(self.slot(from), self.slot(to), via, timeout(timeout_s))?;
                self.connected();
                Ok(())
            }
            Step::HolePunch {
                from,
                to,
                timeout_s,
            } => {
                let limit = timeout_s.map_or(PUNCH_TIMEOUT, Duration::from_secs_f64);
                self.hole_punch(self.slot(from), self.slot(to), limit)
            }
            Step::Ping {
                from,
                to,
                count,
                path,
                timeout_s,
            } => self.ping(
                self.slot(from),
                self.slot(to),
                count.unwrap_or(1),
                *path,
                timeout(timeout_s),
            ),
            Step::Transfer {
                from,
                to,
                bytes,
                path,
                timeout_s,
            } => self.transfer(
                self.slot(from),
                self.slot(to),
                *bytes,
                *path,
                timeout(timeout_s),
            ),
            Step::Await {
                host,
                event,
                timeout_s,
            } => self.await_event(self.slot(host), *event, timeout(timeout_s)),
            Step::Crash(h) => self.fail(self.resolve(h)?, Failure::Crash),
            Step::Kill(h) => self.fail(self.resolve(h)?, Failure::Kill),
            Step::AwaitRelays {
                peer,
                count,
                timeout_s,
            } => {
                let p = self.slot(peer);
                let count = count.unwrap_or_else(|| {
                    self.plan.hosts[p]
                        .auto_relay
                        .as_ref()
                        .map_or(1, |a| a.config.max_relay_peers)
                });
                self.await_relays(p, count, timeout(timeout_s))
            }
            Step::Restart(h) | Step::Join(h) => self.start(self.slot(h)),
            Step::Leave(p) => self.leave(self.slot(p)),
            Step::Wait(s) => {
                self.run_for(Duration::from_secs_f64(*s));
                Ok(())
            }
        }
    }

    // ----- steps -----

    fn reserve(&mut self, peer: usize, relay: usize, timeout: Duration) -> Result<(), String> {
        let relay_addr = self.p2p_addr(relay)?;
        let relay_id = self.peer_id(relay);
        self.command(peer, |n, now| n.reserve(now, relay_addr))?
            .map_err(|e| e.to_string())?;
        let host = self.hosts[peer];
        self.wait(timeout, |_, e| {
            if e.host != host {
                return None;
            }
            match &e.event {
                Event::ReservationAccepted { relay, .. } if *relay == relay_id => Some(Ok(())),
                Event::ReservationRefused { relay, status } if *relay == relay_id => {
                    Some(Err(format!("refused: {status:?}")))
                }
                Event::ReservationLost { relay, reason } if *relay == relay_id => {
                    Some(Err(format!("lost: {reason:?}")))
                }
                _ => None,
            }
        })
    }

    fn connect(
        &mut self,
        from: usize,
        to: usize,
        via: Option<usize>,
        timeout: Duration,
    ) -> Result<(), String> {
        let target = self.peer_id(to);
        let addr = match via {
            Some(relay) => self
                .p2p_addr(relay)?
                .with(Protocol::P2pCircuit)
                .with(Protocol::P2p(target)),
            None => self.p2p_addr(to)?,
        };
        let conn = self
            .command(from, |n, now| n.dial(now, addr))?
            .map_err(|e| e.to_string())?;
        let host = self.hosts[from];
        self.wait(timeout, |_, e| {
            if e.host != host {
                return None;
            }
            match &e.event {
                Event::ConnectionEstablished { conn: c, .. } if *c == conn => Some(Ok(())),
                Event::DialFailed { conn: c, error, .. } if *c == conn => {
                    Some(Err(error.to_string()))
                }
                _ => None,
            }
        })
    }

    /// Waits for B's hole punch with A to end (B, behind the relay, leads DCUtR and
    /// counts the attempts), taking an outcome from since the previous step began; on
    /// success also for A to have the direct connection (B, the security handshake's
    /// server, has it half a round trip earlier).
    fn hole_punch(&mut self, a: usize, b: usize, timeout: Duration) -> Result<(), String> {
        let deadline = self.nw.now() + timeout;
        let since = self.previous_start;
        let found = self.punches[self.punches_used..]
            .iter()
            .position(|&(t, host, peer, _)| t >= since && host == b && peer == a);
        if let Some(i) = found {
            self.punches_used += i + 1;
            self.result.punch = Some(self.punches[self.punches_used - 1].3);
        } else {
            self.punches_used = self.punches.len();
            self.wait(timeout, |t, _| {
                while let Some(&(_, host, peer, punch)) = t.punches.get(t.punches_used) {
                    t.punches_used += 1;
                    if host == b && peer == a {
                        t.result.punch = Some(punch);
                        return Some(Ok(()));
                    }
                }
                None
            })?;
        }
        if !self.result.punch.is_some_and(|p| p.success) || self.has_direct(a, b) {
            return Ok(());
        }
        let left = deadline.saturating_since(self.nw.now());
        self.wait(left, |t, _| t.has_direct(a, b).then_some(Ok(())))
    }

    /// Whether `from`'s node has an established direct connection to `to`.
    fn has_direct(&self, from: usize, to: usize) -> bool {
        self.connection(from, to, PathName::Direct).is_ok()
    }

    fn ping(
        &mut self,
        from: usize,
        to: usize,
        count: u32,
        path: PathName,
        timeout: Duration,
    ) -> Result<(), String> {
        let conn = self.connection(from, to, path)?;
        self.command(from, |n, now| n.ping(now, conn, count as usize))?
            .map_err(|e| e.to_string())?;
        let host = self.hosts[from];
        let mut left = count;
        self.wait(timeout, |t, e| {
            if e.host != host {
                return None;
            }
            match &e.event {
                Event::Ping {
                    conn: c,
                    result: Ok(rtt),
                    ..
                } if *c == conn => {
                    t.result.ping_rtts.push(*rtt);
                    left -= 1;
                    (left == 0).then_some(Ok(()))
                }
                Event::Ping {
                    conn: c,
                    result: Err(error),
                    ..
                } if *c == conn => Some(Err(format!("ping failed: {error}"))),
                Event::ConnectionClosed { conn: c, .. } if *c == conn => {
                    Some(Err("the connection closed".into()))
                }
                _ => None,
            }
        })
    }

    fn transfer(
        &mut self,
        from: usize,
        to: usize,
        bytes: u64,
        path: PathName,
        timeout: Duration,
    ) -> Result<(), String> {
        let conn = self.connection(from, to, path)?;
        let stream = self
            .command(from, |n, now| n.open_stream(now, conn, TRANSFER_PROTOCOL))?
            .map_err(|e| e.to_string())?;
        self.sends.insert((from, stream), bytes);
        let started = self.nw.now();
        let (sender, receiver) = (self.hosts[from], self.hosts[to]);
        let result = self.wait(timeout, |t, e| match &e.event {
            Event::StreamOpenFailed { stream: s, error } if e.host == sender && *s == stream => {
                Some(Err(format!("stream refused: {error}")))
            }
            Event::StreamReset { stream: s } if e.host == sender && *s == stream => {
                Some(Err("the stream was reset".into()))
            }
            Event::StreamReset { stream: s } if e.host == receiver => {
                let got = t.receives.remove(&(to, *s))?;
                Some(Err(format!("the stream was reset after {got} bytes")))
            }
            Event::StreamFinished { stream: s } if e.host == receiver => {
                let got = t.receives.remove(&(to, *s))?;
                if got == bytes {
                    let took = t.nw.now().saturating_since(started);
                    t.result.transfers.push((bytes, took));
                    Some(Ok(()))
                } else {
                    Some(Err(format!(
                        "the stream ended after {got} of {bytes} bytes"
                    )))
                }
            }
            _ => None,
        });
        self.sends.remove(&(from, stream));
        result
    }

    /// Waits for an event at a host that happened since the previous step began and
    /// that no earlier `await` took.
    fn await_event(&mut self, at: usize, what: AwaitName, timeout: Duration) -> Result<(), String> {
        let since = self.previous_start;
        let found = self.marks[self.marks_used..]
            .iter()
            .position(|&(t, h, kind)| t >= since && h == at && kind == what);
        if let Some(i) = found {
            self.marks_used += i + 1;
            return Ok(());
        }
        self.marks_used = self.marks.len();
        let host = self.hosts[at];
        self.wait(timeout, |t, e| {
            let hit = e.host == host && await_kind(&e.event) == Some(what);
            if hit {
                t.marks_used = t.marks.len();
            }
            hit.then_some(Ok(()))
        })
    }

    fn crash(&mut self, i: usize) -> Result<(), String> {
        self.relay_bytes_gone += self.relayed_bytes_of(i);
        self.nw.crash(self.hosts[i]).map_err(|e| e.to_string())
    }

    /// Restarts a crashed host, or brings an absent peer for the first time.
    fn start(&mut self, i: usize) -> Result<(), String> {
        let host = self.hosts[i];
        if self.attached[i] {
            return self.nw.restart(host).map_err(|e| e.to_string());
        }
        self.nw
            .world_mut()
            .restart_host(host)
            .map_err(|e| e.to_string())?;
        self.nw
            .attach(host, self.specs[i].clone())
            .map_err(|e| e.to_string())?;
        self.attached[i] = true;
        Ok(())
    }

    /// Closes every connection, lets the closes go out, then switches off.
    fn leave(&mut self, i: usize) -> Result<(), String> {
        let host = self.hosts[i];
        if self.nw.node(host).is_some() {
            self.command(i, |n, now| {
                let conns: Vec<ConnectionId> = n.connection_ids().collect();
                for c in conns {
                    n.close(now, c);
                }
            })?;
            self.run_for(LEAVE_GRACE);
        }
        self.crash(i)
    }
}

/// How long a `hole_punch` step waits by default: DCUtR's three attempts of up to
/// 15 s of exchange and 5 s of dialing each, and the unilateral dial first.
const PUNCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a leaving peer waits for its closes to go out before switching off.
const LEAVE_GRACE: Duration = Duration::from_secs(2);

/// The step's kind, for failure messages.
pub(super) fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Reserve { .. } => "reserve",
        Step::Connect { .. } => "connect",
        Step::HolePunch { .. } => "hole_punch",
        Step::Ping { .. } => "ping",
        Step::Transfer { .. } => "transfer",
        Step::Await { .. } => "await",
        Step::Crash(_) => "crash",
        Step::Kill(_) => "kill",
        Step::AwaitRelays { .. } => "await_relays",
        Step::Restart(_) => "restart",
        Step::Leave(_) => "leave",
        Step::Join(_) => "join",
        Step::Wait(_) => "wait",
    }
}
