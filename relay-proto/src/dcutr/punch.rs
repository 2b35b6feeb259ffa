//! [`HolePunch`]: the DCUtR state machine of one relayed connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use multiaddr::{Multiaddr, Protocol};

use super::addrs::{AddrScope, filter_candidates_in, remote_candidates};
use super::config::HolePunchConfig;
use super::message::{DcutrError, Message, MessageReader, encode_connect, encode_sync};
use super::outcome::{Action, FailureReason, Outcome, Role};

/// The hole punch of one relayed connection: the unilateral direct dial, then up to
/// `max_attempts` CONNECT/SYNC exchanges, each followed by a simultaneous dial.
///
/// # Calling contract
/// - Create it when the relayed connection is established (for the initiator, once the
///   peer's identify has arrived, so that its listen addresses are known).
/// - Feed it stream events ([`stream_opened`](Self::stream_opened),
///   [`inbound_stream`](Self::inbound_stream), [`handle_message`](Self::handle_message),
///   [`stream_closed`](Self::stream_closed)), dial results
///   ([`direct_connected`](Self::direct_connected),
///   [`direct_dial_failed`](Self::direct_dial_failed)) and timer expiries
///   ([`handle_timeout`](Self::handle_timeout)).
/// - After [`new`](Self::new) and every input, drain [`poll_action`](Self::poll_action)
///   until it returns `None`, then re-arm the timer from
///   [`poll_timeout`](Self::poll_timeout). The timing of the punch rests on carrying out
///   each action when it is returned.
/// - Time only moves forward. After [`Action::Done`] nothing else is returned.
#[derive(Debug)]
pub struct HolePunch {
    role: Role,
    /// Whether we run the exchanges as the spec's B; false once the peer started one.
    leads: bool,
    config: HolePunchConfig,
    our_addrs: Vec<Multiaddr>,
    created: Instant,
    /// Exchanges started, the current one included.
    attempts: u32,
    phase: Phase,
    /// Whether the current stream is ours to close or reset.
    stream: bool,
    reader: MessageReader,
    /// The relay RTT of the latest exchange that measured one.
    rtt: Option<Duration>,
    last_failure: Option<FailureReason>,
    /// The relayed connection is gone: no exchange can follow.
    relay_gone: bool,
    actions: VecDeque<Action>,
}

/// Where the machine is; each phase carries its deadline.
#[derive(Debug)]
enum Phase {
    /// No exchange: the responder awaits the initiator's next stream.
    Idle { deadline: Option<Instant> },
    /// Initiator: the stream was asked for.
    Opening { deadline: Option<Instant> },
    /// Initiator: CONNECT sent at `sent`; awaiting the peer's CONNECT.
    Connecting {
        sent: Instant,
        deadline: Option<Instant>,
    },
    /// Initiator: SYNC sent; the dial is due at `dial_at`, RTT/2 later.
    Punching {
        dial_at: Instant,
        addrs: Vec<Multiaddr>,
    },
    /// Responder: a stream arrived; awaiting CONNECT.
    Accepted { deadline: Option<Instant> },
    /// Responder: CONNECT answered at `sent`; awaiting SYNC.
    Syncing {
        sent: Instant,
        deadline: Option<Instant>,
        addrs: Vec<Multiaddr>,
    },
    /// A dial is out; awaiting a direct connection.
    Dialing {
        deadline: Option<Instant>,
        /// Every address dialed, and the addresses whose dial has not failed yet.
        addrs: Vec<Multiaddr>,
        pending: Vec<Multiaddr>,
        as_client: bool,
    },
    /// Over.
    Done,
}

impl Phase {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Phase::Idle { deadline }
            | Phase::Opening { deadline }
            | Phase::Connecting { deadline, .. }
            | Phase::Accepted { deadline }
            | Phase::Syncing { deadline, .. }
            | Phase::Dialing { deadline, .. } => *deadline,
            Phase::Punching { dial_at, .. } => Some(*dial_at),
            Phase::Done => None,
        }
    }

    /// Whether an exchange is waiting for a message (or a stream) before its SYNC.
    fn in_exchange(&self) -> bool {
        matches!(
            self,
            Phase::Opening { .. }
                | Phase::Connecting { .. }
                | Phase::Accepted { .. }
                | Phase::Syncing { .. }
        )
    }
}

/// `now + d`, or `None` (never) if that is beyond what `Instant` can hold.
fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

impl HolePunch {
    /// Starts the hole punch of a relayed connection on which we are `role`.
    ///
    /// `our_addrs` are our address candidates, best first (see
    /// [`local_candidates`](super::local_candidates)); they are filtered again here.
    /// `remote_listen_addrs` are the peer's identify listen addresses: when they include
    /// public ones, an initiator dials those first (the unilateral upgrade). A responder
    /// ignores them.
    pub fn new(
        role: Role,
        config: HolePunchConfig,
        our_addrs: Vec<Multiaddr>,
        remote_listen_addrs: &[Multiaddr],
        now: Instant,
    ) -> Self {
        let our_addrs = if config.enable_tcp_hole_punch {
            filter_candidates_in(&our_addrs, config.scope())
        } else {
            Vec::new()
        };
        let mut hp = Self {
            role,
            leads: role == Role::Initiator,
            config,
            our_addrs,
            created: now,
            attempts: 0,
            phase: Phase::Idle { deadline: None },
            stream: false,
            reader: MessageReader::default(),
            rtt: None,
            last_failure: None,
            relay_gone: false,
            actions: VecDeque::new(),
        };
        if !hp.config.enabled {
            hp.finish(Outcome::Failure {
                attempts: 0,
                reason: FailureReason::NotEnabled,
            });
            return hp;
        }
        match role {
            Role::Initiator => {
                let public = filter_candidates_in(remote_listen_addrs, AddrScope::Public);
                if hp.config.unilateral_first && !public.is_empty() {
                    tracing::debug!(addrs = ?public, "dcutr: unilateral direct dial first");
                    hp.dial(now, public, true);
                } else {
                    hp.begin_exchanges(now);
                }
            }
            Role::Responder if !hp.config.exchange_enabled() => hp.finish(Outcome::Failure {
                attempts: 0,
                reason: FailureReason::NotEnabled,
            }),
            Role::Responder => {}
        }
        hp
    }

    // ----- getters -----

    /// The role this machine was created with.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether we run the exchanges (the spec's B). An initiator stops leading when the
    /// peer starts an exchange itself; see [`inbound_stream`](Self::inbound_stream).
    pub fn leads(&self) -> bool {
        self.leads
    }

    /// CONNECT/SYNC exchanges started so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Our candidates, as sent in CONNECT.
    pub fn our_addrs(&self) -> &[Multiaddr] {
        &self.our_addrs
    }

    /// Whether the hole punch is over ([`Action::Done`] was queued).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Whether an exchange or a dial is in progress: what the node's
    /// `concurrent_limit` counts.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Idle { .. } | Phase::Done)
    }

    /// The peer's addresses a direct connection of the current attempt may come from,
    /// and whether we take the client role of its security handshake, from the moment
    /// they are known (the peer's CONNECT) until the attempt ends.
    ///
    /// The node gives a connection it accepts from one of these addresses this role:
    /// without a NAT in between the peer's dial may reach our listener before ours
    /// leaves (or instead of it, the two sharing one address pair), and both sides must
    /// still take opposite roles.
    pub fn expected_direct(&self) -> Option<(&[Multiaddr], bool)> {
        match &self.phase {
            Phase::Syncing { addrs, .. } => Some((addrs, true)),
            Phase::Punching { addrs, .. } => Some((addrs, self.initiator_as_client())),
            Phase::Dialing {
                addrs, as_client, ..
            } => Some((addrs, *as_client)),
            _ => None,
        }
    }

    // ----- mutators -----

    /// Replaces our candidates for the exchanges to come (e.g. identify told us a new
    /// observed address); they are filtered as in [`new`](Self::new).
    pub fn set_our_addrs(&mut self, addrs: &[Multiaddr]) {
        self.our_addrs = if self.config.enable_tcp_hole_punch {
            filter_candidates_in(addrs, self.config.scope())
        } else {
            Vec::new()
        };
    }

    // ----- inputs -----

    /// The stream asked for by [`Action::OpenStream`] is negotiated: CONNECT goes out
    /// now and the RTT is measured from now. Ignored unless a stream was awaited.
    pub fn stream_opened(&mut self, now: Instant) {
        let Phase::Opening { deadline } = self.phase else {
            return;
        };
        self.reader = MessageReader::default();
        self.actions
            .push_back(Action::Send(encode_connect(&self.our_addrs)));
        self.phase = Phase::Connecting {
            sent: now,
            deadline,
        };
    }

    /// The peer opened a `/libp2p/dcutr` stream: a new exchange in which we answer as
    /// the spec's A, whatever our role.
    ///
    /// On `Ok` the new stream becomes the current one; the node resets the previous
    /// DCUtR stream of this connection if it is still open, and passes no more of its
    /// events. It replaces an exchange that had not reached its SYNC under the same
    /// attempt number, and otherwise starts the next attempt. On `Err` (the hole punch
    /// is over, DCUtR is disabled, or every attempt has been used) the node resets the
    /// new stream and nothing changes.
    ///
    /// An initiator that accepts a stream stops leading: the peer evidently runs the
    /// exchanges as B (a peer that swapped the DCUtR roles), so from then on we answer
    /// its exchanges rather than compete with our own.
    pub fn inbound_stream(&mut self, now: Instant) -> Result<(), DcutrError> {
        if self.is_done() {
            return Err(DcutrError::Finished);
        }
        if !self.config.exchange_enabled() {
            return Err(DcutrError::Unexpected("dcutr is not enabled"));
        }
        if !self.phase.in_exchange() {
            if self.attempts >= self.config.max_attempts {
                return Err(DcutrError::AttemptsExhausted);
            }
            self.attempts += 1;
        }
        if self.leads {
            tracing::debug!("dcutr: the peer started an exchange; answering as A from now on");
            self.leads = false;
        }
        self.reader = MessageReader::default();
        self.stream = true;
        self.phase = Phase::Accepted {
            deadline: after(now, self.config.sync_timeout),
        };
        Ok(())
    }

    /// Bytes read from the current stream, in pieces of any size.
    ///
    /// A malformed, oversized or out-of-order message during an exchange ends the
    /// attempt with [`FailureReason::ProtocolError`] (the stream is reset) and is
    /// returned as the error; one outside an exchange changes nothing and is returned.
    pub fn handle_message(&mut self, now: Instant, bytes: &[u8]) -> Result<(), DcutrError> {
        if self.is_done() {
            return Err(DcutrError::Finished);
        }
        if !self.stream {
            return Err(DcutrError::Unexpected("no dcutr exchange on this stream"));
        }
        self.reader.push(bytes);
        loop {
            match self.reader.next_message() {
                Ok(None) => return Ok(()),
                Ok(Some(message)) => self.on_message(now, message)?,
                Err(e) => return Err(self.violation(now, e)),
            }
        }
    }

    /// The current stream ended (closed or reset by the peer, or failed to open). Mid-
    /// exchange this ends the attempt with a protocol error; otherwise it is the normal
    /// end of the stream. The node closes our side if it is still open.
    pub fn stream_closed(&mut self, now: Instant) {
        if self.is_done() || !self.stream {
            return;
        }
        self.stream = false;
        if self.phase.in_exchange() {
            self.attempt_failed(now, FailureReason::ProtocolError(DcutrError::StreamClosed));
        }
    }

    /// A direct connection to the peer exists, dialed or accepted: success.
    pub fn direct_connected(&mut self, now: Instant) {
        if self.is_done() {
            return;
        }
        tracing::debug!(attempt = self.attempts, "dcutr: direct connection");
        self.finish(Outcome::Success {
            attempt: self.attempts,
            rtt: self.rtt,
            elapsed: now.saturating_duration_since(self.created),
        });
    }

    /// One address of the dial of `attempt` (as in [`Action::Dial`]) failed; when all
    /// of the current attempt's have, so has the attempt. Failures of earlier attempts'
    /// dials are ignored.
    pub fn direct_dial_failed(
        &mut self,
        now: Instant,
        attempt: u32,
        addr: &Multiaddr,
        reason: &str,
    ) {
        let Phase::Dialing { pending, .. } = &mut self.phase else {
            return;
        };
        if attempt != self.attempts {
            return;
        }
        let bare = without_peer(addr);
        let Some(i) = pending.iter().position(|a| *a == bare) else {
            return;
        };
        tracing::debug!(%addr, reason, "dcutr: direct dial failed");
        pending.swap_remove(i);
        if pending.is_empty() {
            self.attempt_failed(now, FailureReason::DirectDialFailed);
        }
    }

    /// The relayed connection closed, so no exchange can follow. A dial that is out (or
    /// due, RTT/2 after SYNC) still decides the current attempt, since its direct
    /// connection may yet appear; otherwise the hole punch ends now, with the last
    /// attempt's failure or, if none failed, a protocol error (the stream is gone).
    pub fn relayed_closed(&mut self, _now: Instant) {
        if self.is_done() {
            return;
        }
        self.relay_gone = true;
        self.stream = false;
        if !matches!(self.phase, Phase::Dialing { .. } | Phase::Punching { .. }) {
            let reason = self
                .last_failure
                .clone()
                .unwrap_or(FailureReason::ProtocolError(DcutrError::StreamClosed));
            tracing::debug!(%reason, "dcutr: relayed connection closed");
            self.finish(Outcome::Failure {
                attempts: self.attempts,
                reason,
            });
        }
    }

    /// The time from [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase.deadline().is_none_or(|d| now < d) {
            return;
        }
        match self.phase {
            Phase::Idle { .. } => {
                let reason = self.last_failure.clone().unwrap_or(FailureReason::Timeout);
                self.finish(Outcome::Failure {
                    attempts: self.attempts,
                    reason,
                });
            }
            Phase::Punching { .. } => self.punch(now),
            Phase::Opening { .. }
            | Phase::Connecting { .. }
            | Phase::Accepted { .. }
            | Phase::Syncing { .. }
            | Phase::Dialing { .. } => self.attempt_failed(now, FailureReason::Timeout),
            Phase::Done => {}
        }
    }

    // ----- outputs -----

    /// The next thing for the node to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.phase.deadline()
    }

    // ----- the exchange -----

    fn on_message(&mut self, now: Instant, message: Message) -> Result<(), DcutrError> {
        match (message, &self.phase) {
            (Message::Connect(raw), &Phase::Connecting { sent, .. }) => {
                self.on_connect_answer(now, &raw, now.saturating_duration_since(sent));
                Ok(())
            }
            (Message::Connect(raw), Phase::Accepted { .. }) => {
                self.on_connect_request(now, &raw);
                Ok(())
            }
            (Message::Sync, Phase::Syncing { .. }) => {
                self.on_sync(now);
                Ok(())
            }
            (message, phase) if phase.in_exchange() => {
                let what = match message {
                    Message::Connect(_) => "CONNECT before the stream or instead of SYNC",
                    Message::Sync => "SYNC before CONNECT",
                };
                Err(self.violation(now, DcutrError::Unexpected(what)))
            }
            _ => Err(DcutrError::Unexpected("message after the exchange")),
        }
    }

    /// Initiator: the peer's CONNECT arrived `rtt` after ours. SYNC, then dial RTT/2 later.
    fn on_connect_answer(&mut self, now: Instant, raw: &[Vec<u8>], rtt: Duration) {
        let addrs = remote_candidates(raw, self.config.scope());
        if addrs.is_empty() {
            self.attempt_failed(now, FailureReason::NatIncompatible);
            return;
        }
        self.rtt = Some(rtt);
        self.actions.push_back(Action::Send(encode_sync()));
        self.actions.push_back(Action::CloseStream);
        self.stream = false;
        let dial_at = now.checked_add(rtt / 2).unwrap_or(now);
        tracing::debug!(
            attempt = self.attempts,
            ?rtt,
            "dcutr: CONNECT answered; SYNC sent"
        );
        self.phase = Phase::Punching { dial_at, addrs };
        if dial_at <= now {
            self.punch(now);
        }
    }

    /// Responder: the peer's CONNECT arrived; answer with ours.
    fn on_connect_request(&mut self, now: Instant, raw: &[Vec<u8>]) {
        let addrs = remote_candidates(raw, self.config.scope());
        if addrs.is_empty() || self.our_addrs.is_empty() {
            self.attempt_failed(now, FailureReason::NatIncompatible);
            return;
        }
        let Phase::Accepted { deadline } = self.phase else {
            return;
        };
        self.actions
            .push_back(Action::Send(encode_connect(&self.our_addrs)));
        self.phase = Phase::Syncing {
            sent: now,
            deadline,
            addrs,
        };
    }

    /// Responder: SYNC arrived; dial at once.
    fn on_sync(&mut self, now: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let Phase::Syncing { sent, addrs, .. } = phase else {
            self.phase = phase;
            return;
        };
        self.rtt = Some(now.saturating_duration_since(sent));
        self.actions.push_back(Action::CloseStream);
        self.stream = false;
        tracing::debug!(attempt = self.attempts, rtt = ?self.rtt, "dcutr: SYNC; dialing as A");
        self.dial(now, addrs, true);
    }

    /// Initiator: RTT/2 after SYNC, dial.
    fn punch(&mut self, now: Instant) {
        let phase = std::mem::replace(&mut self.phase, Phase::Done);
        let Phase::Punching { addrs, .. } = phase else {
            self.phase = phase;
            return;
        };
        let as_client = self.initiator_as_client();
        tracing::debug!(attempt = self.attempts, as_client, "dcutr: dialing as B");
        self.dial(now, addrs, as_client);
    }

    /// Turns go-libp2p's role swap on the last attempt on or off for the attempts still
    /// to come: the node learns the peer's agent (identify) after the hole punch began.
    pub fn set_swap_roles_on_last_attempt(&mut self, on: bool) {
        self.config.swap_roles_on_last_attempt = on;
    }

    /// The security role of the initiator's dial in the current attempt: the server, but
    /// the client on the last one if `swap_roles_on_last_attempt`, as go-libp2p does for
    /// peers older than its v0.41 that took the roles the other way round.
    fn initiator_as_client(&self) -> bool {
        self.config.swap_roles_on_last_attempt
            && self.attempts > 1
            && self.attempts >= self.config.max_attempts
    }

    fn dial(&mut self, now: Instant, mut addrs: Vec<Multiaddr>, as_client: bool) {
        addrs.truncate(self.config.dial_limit());
        self.actions.push_back(Action::Dial {
            addrs: addrs.clone(),
            as_client,
            attempt: self.attempts,
        });
        self.phase = Phase::Dialing {
            deadline: after(now, self.config.attempt_timeout),
            pending: addrs.clone(),
            addrs,
            as_client,
        };
    }

    /// A broken message during an exchange ends the attempt; outside one it is only
    /// reported.
    fn violation(&mut self, now: Instant, e: DcutrError) -> DcutrError {
        if self.phase.in_exchange() {
            self.attempt_failed(now, FailureReason::ProtocolError(e.clone()));
        }
        e
    }

    // ----- attempts -----

    /// Initiator: after the unilateral dial (or instead of it), the exchanges.
    fn begin_exchanges(&mut self, now: Instant) {
        if !self.config.exchange_enabled() {
            let reason = self
                .last_failure
                .take()
                .unwrap_or(FailureReason::NotEnabled);
            self.finish(Outcome::Failure {
                attempts: 0,
                reason,
            });
        } else if self.our_addrs.is_empty() {
            self.finish(Outcome::Failure {
                attempts: 0,
                reason: FailureReason::NatIncompatible,
            });
        } else {
            self.start_attempt(now);
        }
    }

    /// Initiator: a fresh exchange on a fresh stream.
    fn start_attempt(&mut self, now: Instant) {
        self.attempts += 1;
        tracing::debug!(attempt = self.attempts, "dcutr: opening a stream");
        self.reader = MessageReader::default();
        self.stream = true;
        self.actions.push_back(Action::OpenStream);
        self.phase = Phase::Opening {
            deadline: after(now, self.config.sync_timeout),
        };
    }

    fn attempt_failed(&mut self, now: Instant, reason: FailureReason) {
        tracing::debug!(attempt = self.attempts, %reason, "dcutr: attempt failed");
        if self.stream {
            self.actions.push_back(Action::ResetStream);
            self.stream = false;
        }
        if self.relay_gone {
            self.finish(Outcome::Failure {
                attempts: self.attempts,
                reason,
            });
            return;
        }
        if self.leads && self.attempts == 0 {
            // The unilateral direct dial.
            self.last_failure = Some(reason);
            self.begin_exchanges(now);
            return;
        }
        let terminal = if self.leads {
            !reason.is_retryable()
        } else {
            matches!(
                reason,
                FailureReason::NatIncompatible | FailureReason::NotEnabled
            )
        };
        if terminal || self.attempts >= self.config.max_attempts {
            self.finish(Outcome::Failure {
                attempts: self.attempts,
                reason,
            });
        } else if self.leads {
            self.last_failure = Some(reason);
            self.start_attempt(now);
        } else {
            self.last_failure = Some(reason);
            self.phase = Phase::Idle {
                deadline: after(now, self.config.sync_timeout),
            };
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.stream {
            self.actions.push_back(Action::ResetStream);
            self.stream = false;
        }
        tracing::debug!(?outcome, "dcutr: hole punch over");
        self.phase = Phase::Done;
        self.actions.push_back(Action::Done(outcome));
    }
}

/// `addr` without a trailing `/p2p/<peer>`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut bare = addr.clone();
    if let Some(Protocol::P2p(_)) = bare.iter().last() {
        bare.pop();
    }
    bare
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcutr::PROTOCOL;

    const MS: Duration = Duration::from_millis(1);

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn ours() -> Vec<Multiaddr> {
        vec![ma("/ip4/198.51.100.1/tcp/4001")]
    }

    fn theirs() -> Vec<Multiaddr> {
        vec![ma("/ip4/203.0.113.2/tcp/4002")]
    }

    fn drain(hp: &mut HolePunch) -> Vec<Action> {
        std::iter::from_fn(|| hp.poll_action()).collect()
    }

    fn initiator(config: HolePunchConfig, t0: Instant) -> HolePunch {
        HolePunch::new(Role::Initiator, config, ours(), &[], t0)
    }

    #[test]
    fn protocol_name() {
        assert_eq!(PROTOCOL, "/libp2p/dcutr");
    }

    #[test]
    fn disabled_ends_at_once() {
        let t0 = crate::test_now();
        for role in [Role::Initiator, Role::Responder] {
            let config = HolePunchConfig {
                enabled: false,
                ..Default::default()
            };
            let mut hp = HolePunch::new(role, config, ours(), &theirs(), t0);
            assert_eq!(
                drain(&mut hp),
                [Action::Done(Outcome::Failure {
                    attempts: 0,
                    reason: FailureReason::NotEnabled
                })]
            );
            assert_eq!(hp.poll_timeout(), None);
            assert_eq!(hp.inbound_stream(t0), Err(DcutrError::Finished));
        }
    }

    #[test]
    fn initiator_without_candidates_is_nat_incompatible() {
        let t0 = crate::test_now();
        let mut hp = HolePunch::new(
            Role::Initiator,
            HolePunchConfig::default(),
            vec![ma("/ip4/192.168.1.2/tcp/1"), ma("/ip4/127.0.0.1/tcp/1")],
            &[],
            t0,
        );
        assert_eq!(
            drain(&mut hp),
            [Action::Done(Outcome::Failure {
                attempts: 0,
                reason: FailureReason::NatIncompatible
            })]
        );
    }

    #[test]
    fn initiator_exchange_step_by_step() {
        let t0 = crate::test_now();
        let mut hp = initiator(HolePunchConfig::default(), t0);
        assert_eq!(drain(&mut hp), [Action::OpenStream]);
        assert_eq!(hp.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        let t1 = t0 + 40 * MS;
        hp.stream_opened(t1);
        assert_eq!(drain(&mut hp), [Action::Send(encode_connect(&ours()))]);
        let answer = encode_connect(&theirs());
        let t2 = t1 + 80 * MS;
        hp.handle_message(t2, &answer[..3]).unwrap();
        assert!(drain(&mut hp).is_empty());
        hp.handle_message(t2, &answer[3..]).unwrap();
        assert_eq!(
            drain(&mut hp),
            [Action::Send(encode_sync()), Action::CloseStream]
        );
        assert_eq!(hp.poll_timeout(), Some(t2 + 40 * MS));
        hp.handle_timeout(t2 + 39 * MS);
        assert!(drain(&mut hp).is_empty());
        hp.handle_timeout(t2 + 40 * MS);
        assert_eq!(
            drain(&mut hp),
            [Action::Dial {
                addrs: theirs(),
                as_client: false,
                attempt: 1
            }]
        );
        hp.direct_connected(t2 + 60 * MS);
        assert_eq!(
            drain(&mut hp),
            [Action::Done(Outcome::Success {
                attempt: 1,
                rtt: Some(80 * MS),
                elapsed: 180 * MS,
            })]
        );
    }

    #[test]
    fn responder_answers_and_dials_on_sync() {
        let t0 = crate::test_now();
        let mut hp = HolePunch::new(Role::Responder, HolePunchConfig::default(), ours(), &[], t0);
        assert!(drain(&mut hp).is_empty());
        assert_eq!(hp.poll_timeout(), None, "waits for the initiator");
        hp.inbound_stream(t0).unwrap();
        hp.handle_message(t0, &encode_connect(&theirs())).unwrap();
        assert_eq!(drain(&mut hp), [Action::Send(encode_connect(&ours()))]);
        let t1 = t0 + 90 * MS;
        hp.handle_message(t1, &encode_sync()).unwrap();
        assert_eq!(
            drain(&mut hp),
            [
                Action::CloseStream,
                Action::Dial {
                    addrs: theirs(),
                    as_client: true,
                    attempt: 1
                }
            ]
        );
        // The peer's half-close after SYNC is the normal end of the stream.
        hp.stream_closed(t1);
        assert!(drain(&mut hp).is_empty());
        assert_eq!(
            hp.handle_message(t1, &encode_sync()),
            Err(DcutrError::Unexpected("no dcutr exchange on this stream"))
        );
    }

    #[test]
    fn wrong_order_ends_the_initiators_punch() {
        let t0 = crate::test_now();
        let mut hp = initiator(HolePunchConfig::default(), t0);
        hp.stream_opened(t0);
        drain(&mut hp);
        let err = hp.handle_message(t0, &encode_sync()).unwrap_err();
        assert_eq!(err, DcutrError::Unexpected("SYNC before CONNECT"));
        assert_eq!(
            drain(&mut hp),
            [
                Action::ResetStream,
                Action::Done(Outcome::Failure {
                    attempts: 1,
                    reason: FailureReason::ProtocolError(err)
                })
            ]
        );
    }

    #[test]
    fn responder_survives_bad_attempts_then_gives_up() {
        let t0 = crate::test_now();
        let config = HolePunchConfig {
            max_attempts: 2,
            ..Default::default()
        };
        let mut hp = HolePunch::new(Role::Responder, config, ours(), &[], t0);
        hp.inbound_stream(t0).unwrap();
        // An oversized frame: refused from its prefix alone.
        let err = hp.handle_message(t0, &[0x81, 0x20]).unwrap_err();
        assert_eq!(err, DcutrError::TooLarge { len: 4097 });
        assert_eq!(drain(&mut hp), [Action::ResetStream]);
        assert!(!hp.is_done());
        assert_eq!(hp.poll_timeout(), Some(t0 + Duration::from_secs(15)));
        // The second attempt: a SYNC first.
        hp.inbound_stream(t0).unwrap();
        assert!(hp.handle_message(t0, &encode_sync()).is_err());
        let actions = drain(&mut hp);
        assert!(matches!(
            actions.as_slice(),
            [
                Action::ResetStream,
                Action::Done(Outcome::Failure {
                    attempts: 2,
                    reason: FailureReason::ProtocolError(_)
                })
            ]
        ));
    }

    #[test]
    fn responder_refuses_beyond_max_attempts() {
        let t0 = crate::test_now();
        let config = HolePunchConfig {
            max_attempts: 1,
            ..Default::default()
        };
        let mut hp = HolePunch::new(Role::Responder, config, ours(), &[], t0);
        hp.inbound_stream(t0).unwrap();
        hp.handle_message(t0, &encode_connect(&theirs())).unwrap();
        hp.handle_message(t0, &encode_sync()).unwrap();
        drain(&mut hp);
        assert_eq!(hp.inbound_stream(t0), Err(DcutrError::AttemptsExhausted));
        assert!(drain(&mut hp).is_empty());
        hp.direct_dial_failed(t0, 1, &theirs()[0], "refused");
        assert_eq!(
            drain(&mut hp),
            [Action::Done(Outcome::Failure {
                attempts: 1,
                reason: FailureReason::DirectDialFailed
            })]
        );
    }

    #[test]
    fn stale_dial_failures_and_peer_suffixes() {
        let t0 = crate::test_now();
        let config = HolePunchConfig {
            swap_roles_on_last_attempt: false,
            ..Default::default()
        };
        let mut hp = initiator(config, t0);
        hp.stream_opened(t0);
        hp.handle_message(t0, &encode_connect(&theirs())).unwrap();
        hp.handle_timeout(t0);
        drain(&mut hp);
        // Not one of this dial's addresses, or not this attempt's dial.
        hp.direct_dial_failed(t0, 1, &ours()[0], "refused");
        hp.direct_dial_failed(t0, 0, &theirs()[0], "refused");
        assert!(drain(&mut hp).is_empty());
        let peer = crate::identity::keypair_from_seed(3).public().to_peer_id();
        let with_peer = theirs()[0].clone().with(Protocol::P2p(peer));
        hp.direct_dial_failed(t0, 1, &with_peer, "refused");
        assert_eq!(drain(&mut hp), [Action::OpenStream], "the next attempt");
        assert_eq!(hp.attempts(), 2);
    }

    #[test]
    fn unilateral_dial_then_exchange() {
        let t0 = crate::test_now();
        let listen = vec![
            ma("/ip4/10.0.0.5/tcp/4001"),
            ma("/ip4/203.0.113.9/tcp/4001"),
        ];
        let mut hp = HolePunch::new(
            Role::Initiator,
            HolePunchConfig::default(),
            ours(),
            &listen,
            t0,
        );
        assert_eq!(
            drain(&mut hp),
            [Action::Dial {
                addrs: vec![ma("/ip4/203.0.113.9/tcp/4001")],
                as_client: true,
                attempt: 0
            }]
        );
        hp.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(drain(&mut hp), [Action::OpenStream]);
        assert_eq!(hp.attempts(), 1);

        // Without DCUtR the unilateral failure is the outcome.
        let config = HolePunchConfig {
            enable_dcutr: false,
            ..Default::default()
        };
        let mut hp = HolePunch::new(Role::Initiator, config, ours(), &listen, t0);
        drain(&mut hp);
        hp.direct_dial_failed(t0, 0, &listen[1], "refused");
        assert_eq!(
            drain(&mut hp),
            [Action::Done(Outcome::Failure {
                attempts: 0,
                reason: FailureReason::DirectDialFailed
            })]
        );
    }

    #[test]
    fn huge_durations_never_overflow() {
        let t0 = crate::test_now();
        let config = HolePunchConfig {
            sync_timeout: Duration::MAX,
            attempt_timeout: Duration::MAX,
            ..Default::default()
        };
        let mut hp = initiator(config, t0);
        assert_eq!(hp.poll_timeout(), None);
        hp.stream_opened(t0);
        hp.handle_message(t0 + Duration::from_secs(1), &encode_connect(&theirs()))
            .unwrap();
        hp.handle_timeout(t0 + Duration::from_secs(2));
        assert!(
            drain(&mut hp)
                .iter()
                .any(|a| matches!(a, Action::Dial { .. }))
        );
        assert_eq!(hp.poll_timeout(), None);
    }

    #[test]
    fn expected_direct_follows_the_exchange() {
        let t0 = crate::test_now();
        // Responder: known from the peer's CONNECT, as client, until the attempt ends.
        let mut a = HolePunch::new(Role::Responder, HolePunchConfig::default(), ours(), &[], t0);
        assert_eq!(a.expected_direct(), None);
        a.inbound_stream(t0).unwrap();
        a.handle_message(t0, &encode_connect(&theirs())).unwrap();
        assert_eq!(a.expected_direct(), Some((theirs().as_slice(), true)));
        a.handle_message(t0, &encode_sync()).unwrap();
        assert_eq!(a.expected_direct(), Some((theirs().as_slice(), true)));
        a.direct_dial_failed(t0, 1, &theirs()[0], "refused");
        assert_eq!(a.expected_direct(), None);

        // Initiator: server while waiting RTT/2 and dialing, client on a swapped last attempt.
        let config = HolePunchConfig {
            max_attempts: 2,
            ..Default::default()
        };
        let mut b = initiator(config, t0);
        for (attempt, as_client) in [(1u32, false), (2, true)] {
            let t = t0 + 100 * MS * attempt;
            b.stream_opened(t);
            b.handle_message(t + 10 * MS, &encode_connect(&theirs()))
                .unwrap();
            assert_eq!(b.expected_direct(), Some((theirs().as_slice(), as_client)));
            b.handle_timeout(t + 15 * MS);
            let dial = drain(&mut b).into_iter().find_map(|a| match a {
                Action::Dial {
                    as_client, attempt, ..
                } => Some((attempt, as_client)),
                _ => None,
            });
            assert_eq!(dial, Some((attempt, as_client)));
            assert_eq!(b.expected_direct(), Some((theirs().as_slice(), as_client)));
            b.direct_dial_failed(t + 15 * MS, attempt, &theirs()[0], "refused");
        }
        assert!(b.is_done());
        assert_eq!(b.expected_direct(), None);
    }

    #[test]
    fn our_addrs_can_change_between_attempts() {
        let t0 = crate::test_now();
        let mut a = HolePunch::new(Role::Responder, HolePunchConfig::default(), vec![], &[], t0);
        a.set_our_addrs(&[ma("/ip4/127.0.0.1/tcp/1"), ma("/ip4/198.51.100.7/tcp/7")]);
        assert_eq!(a.our_addrs(), [ma("/ip4/198.51.100.7/tcp/7")]);
        a.inbound_stream(t0).unwrap();
        a.handle_message(t0, &encode_connect(&theirs())).unwrap();
        assert_eq!(
            drain(&mut a),
            [Action::Send(encode_connect(&[ma(
                "/ip4/198.51.100.7/tcp/7"
            )]))]
        );
        let loopback = HolePunchConfig {
            allow_loopback_addrs: true,
            ..Default::default()
        };
        let b = HolePunch::new(
            Role::Responder,
            loopback,
            vec![ma("/ip4/127.0.0.1/tcp/1")],
            &[],
            t0,
        );
        assert_eq!(b.our_addrs(), [ma("/ip4/127.0.0.1/tcp/1")]);
    }

    #[test]
    fn relayed_close_ends_all_but_a_dial_in_flight() {
        let t0 = crate::test_now();
        // Waiting for the peer's CONNECT: over at once.
        let mut b = initiator(HolePunchConfig::default(), t0);
        b.stream_opened(t0);
        drain(&mut b);
        b.relayed_closed(t0);
        assert_eq!(
            drain(&mut b),
            [Action::Done(Outcome::Failure {
                attempts: 1,
                reason: FailureReason::ProtocolError(DcutrError::StreamClosed)
            })]
        );
        // Dialing: the dial still counts, but its failure is final.
        let mut b = initiator(HolePunchConfig::default(), t0);
        b.stream_opened(t0);
        b.handle_message(t0, &encode_connect(&theirs())).unwrap();
        b.relayed_closed(t0);
        b.handle_timeout(t0);
        let actions = drain(&mut b);
        assert!(matches!(
            actions.last(),
            Some(Action::Dial { attempt: 1, .. })
        ));
        b.direct_dial_failed(t0, 1, &theirs()[0], "refused");
        assert_eq!(
            drain(&mut b),
            [Action::Done(Outcome::Failure {
                attempts: 1,
                reason: FailureReason::DirectDialFailed
            })]
        );
        // A responder that never began ends too.
        let mut a = HolePunch::new(Role::Responder, HolePunchConfig::default(), ours(), &[], t0);
        a.relayed_closed(t0);
        assert!(a.is_done());
    }
}
