//! Dispatch of connection events to the owner of each stream: the application,
//! identify, ping, the relay client and the relay server.

use std::time::Instant;

use bytes::Bytes;

use super::conn::StreamRole;
use super::{ConnectionId, Event, Node, StreamRef};
use crate::circuit::message::MessageReader;
use crate::circuit::{HOP_PROTOCOL, STOP_PROTOCOL};
use crate::conn::connection::{ConnectionEvent, OpenError};
use crate::identify;
use crate::ping::{self, Echo, PingError, PingOutcome};

impl Node {
    pub(super) fn on_connection_event(
        &mut self,
        now: Instant,
        id: ConnectionId,
        event: ConnectionEvent,
    ) {
        match event {
            ConnectionEvent::Established { peer, .. } => self.established(now, id, peer),
            ConnectionEvent::InboundStream { stream, protocol } => {
                self.inbound_stream(now, StreamRef { conn: id, stream }, protocol)
            }
            ConnectionEvent::OutboundStream { stream, protocol } => {
                self.with_role(now, StreamRef { conn: id, stream }, |node, now, s, role| {
                    node.outbound_stream(now, s, role, protocol)
                });
            }
            ConnectionEvent::OutboundFailed { stream, error } => {
                let s = StreamRef { conn: id, stream };
                if let Some(role) = self.take_role(s) {
                    self.outbound_failed(now, s, role, error);
                }
            }
            ConnectionEvent::Data { stream, data } => {
                let s = StreamRef { conn: id, stream };
                self.with_role(now, s, |node, now, s, role| {
                    node.stream_data(now, s, role, data)
                });
            }
            ConnectionEvent::Finished(stream) => {
                let s = StreamRef { conn: id, stream };
                self.with_role(now, s, |node, now, s, role| {
                    node.stream_finished(now, s, role)
                });
            }
            ConnectionEvent::Reset(stream) => {
                let s = StreamRef { conn: id, stream };
                if let Some(role) = self.take_role(s) {
                    self.stream_reset_by_peer(now, s, role);
                }
            }
            ConnectionEvent::Writable(stream) => {
                let s = StreamRef { conn: id, stream };
                self.with_role(now, s, |node, now, s, role| {
                    node.stream_writable(now, s, role)
                });
            }
            ConnectionEvent::Rtt(_) | ConnectionEvent::Closed(_) => {}
        }
    }

    // ----- stream helpers used by every owner -----

    /// Takes a stream's role out of its connection; put it back with [`Node::put_role`].
    pub(super) fn take_role(&mut self, s: StreamRef) -> Option<StreamRole> {
        self.conns.get_mut(&s.conn)?.streams.remove(&s.stream)
    }

    /// The role of a stream, in place.
    pub(super) fn role_mut(&mut self, s: StreamRef) -> Option<&mut StreamRole> {
        self.conns.get_mut(&s.conn)?.streams.get_mut(&s.stream)
    }

    pub(super) fn put_role(&mut self, s: StreamRef, role: StreamRole) {
        if let Some(c) = self.conns.get_mut(&s.conn) {
            c.streams.insert(s.stream, role);
        }
    }

    /// Runs `f` with the stream's role taken out; `f` returns the role to keep, if any.
    fn with_role(
        &mut self,
        now: Instant,
        s: StreamRef,
        f: impl FnOnce(&mut Node, Instant, StreamRef, StreamRole) -> Option<StreamRole>,
    ) {
        let Some(role) = self.take_role(s) else {
            return;
        };
        if let Some(role) = f(self, now, s, role) {
            self.put_role(s, role);
        }
    }

    /// Writes to a stream; returns the bytes the send window took.
    pub(super) fn write_stream(&mut self, s: StreamRef, data: &[u8]) -> usize {
        let Some(c) = self.conns.get_mut(&s.conn) else {
            return 0;
        };
        let n = c.conn.write(s.stream, data).unwrap_or(0);
        self.mark(s.conn);
        n
    }

    /// Finishes our side of a stream.
    pub(super) fn finish_stream(&mut self, s: StreamRef) {
        if let Some(c) = self.conns.get_mut(&s.conn) {
            let _ = c.conn.close_stream(s.stream);
            self.mark(s.conn);
        }
    }

    /// Resets a stream and forgets its role.
    pub(super) fn reset_stream(&mut self, s: StreamRef) {
        if let Some(c) = self.conns.get_mut(&s.conn) {
            c.streams.remove(&s.stream);
            let _ = c.conn.reset_stream(s.stream);
            self.mark(s.conn);
        }
    }

    /// Gives `n` bytes of the peer's send window back.
    pub(super) fn consume(&mut self, now: Instant, s: StreamRef, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.conns.get_mut(&s.conn) {
            c.conn.consumed(now, s.stream, n);
            self.mark(s.conn);
        }
    }

    fn peer_of(&self, id: ConnectionId) -> Option<crate::identity::PeerId> {
        self.conns.get(&id).and_then(|c| c.peer)
    }

    // ----- events -----

    fn inbound_stream(&mut self, now: Instant, s: StreamRef, protocol: String) {
        let role = match protocol.as_str() {
            identify::PROTOCOL => {
                let unix = self.unix_time(now);
                let Some(c) = self.conns.get_mut(&s.conn) else {
                    return;
                };
                let info = self.shared.identify_info(&c.remote_addr, unix);
                let _ = c.conn.write(s.stream, &info.encode());
                let _ = c.conn.close_stream(s.stream);
                StreamRole::Discard
            }
            identify::PUSH_PROTOCOL => StreamRole::IdentifyPushIn(identify::Reader::default()),
            ping::PROTOCOL => StreamRole::PingIn(Echo::default()),
            HOP_PROTOCOL if self.relay.is_some() => {
                self.arm_deadline(now, s, true);
                StreamRole::HopIn(MessageReader::default())
            }
            STOP_PROTOCOL if self.shared.config.client.enabled => {
                self.arm_deadline(now, s, false);
                StreamRole::StopIn(MessageReader::default())
            }
            crate::dcutr::PROTOCOL => {
                self.put_role(s, StreamRole::Dcutr);
                self.punch_inbound_stream(now, s);
                return;
            }
            _ => {
                let Some(peer) = self.peer_of(s.conn) else {
                    return;
                };
                self.shared.emit(Event::InboundStream {
                    stream: s,
                    peer,
                    protocol,
                });
                StreamRole::App
            }
        };
        self.put_role(s, role);
    }

    fn outbound_stream(
        &mut self,
        now: Instant,
        s: StreamRef,
        role: StreamRole,
        protocol: String,
    ) -> Option<StreamRole> {
        match role {
            StreamRole::App => {
                let peer = self.peer_of(s.conn)?;
                self.shared.emit(Event::StreamOpened {
                    stream: s,
                    peer,
                    protocol,
                });
                Some(StreamRole::App)
            }
            StreamRole::IdentifyPushOut => {
                let unix = self.unix_time(now);
                let c = self.conns.get(&s.conn)?;
                let info = self.shared.identify_info(&c.remote_addr, unix).encode();
                self.write_stream(s, &info);
                self.finish_stream(s);
                Some(StreamRole::Discard)
            }
            StreamRole::PingOut => {
                let c = self.conns.get_mut(&s.conn)?;
                c.ping_opening = false;
                c.ping_stream = Some(s.stream);
                self.mark(s.conn);
                Some(StreamRole::PingOut)
            }
            role @ (StreamRole::ReserveOut(_) | StreamRole::ConnectOut { .. }) => {
                self.client_stream_opened(now, s, role)
            }
            role @ StreamRole::StopOut { .. } => self.relay_stop_opened(now, s, role),
            StreamRole::Dcutr => {
                self.put_role(s, StreamRole::Dcutr);
                self.punch_stream_opened(now, s);
                None
            }
            role => Some(role),
        }
    }

    fn outbound_failed(&mut self, now: Instant, s: StreamRef, role: StreamRole, error: OpenError) {
        match role {
            StreamRole::App => self
                .shared
                .emit(Event::StreamOpenFailed { stream: s, error }),
            StreamRole::PingOut => {
                let Some(c) = self.conns.get_mut(&s.conn) else {
                    return;
                };
                c.ping_opening = false;
                if let Some(peer) = c.peer {
                    self.shared.emit(Event::Ping {
                        conn: s.conn,
                        peer,
                        result: Err(PingError::Unavailable),
                    });
                }
            }
            StreamRole::Dcutr => self.punch_stream_ended(now, s),
            role @ (StreamRole::ReserveOut(_) | StreamRole::ConnectOut { .. })
                if error == OpenError::NotSupported =>
            {
                self.client_hop_unsupported(now, s, role);
            }
            role => self.stream_gone(now, s, role),
        }
    }

    fn stream_data(
        &mut self,
        now: Instant,
        s: StreamRef,
        role: StreamRole,
        data: Bytes,
    ) -> Option<StreamRole> {
        let len = data.len();
        let keep = match role {
            StreamRole::App => {
                self.shared.emit(Event::StreamData { stream: s, data });
                return Some(StreamRole::App);
            }
            StreamRole::Splice(splice) => return self.relay_splice_data(now, s, splice, data),
            StreamRole::Carrier { relayed } => {
                self.carrier_data(now, s, relayed, &data);
                Some(StreamRole::Carrier { relayed })
            }
            role @ (StreamRole::IdentifyRequest(_) | StreamRole::IdentifyPushIn(_)) => {
                let peer = self.peer_of(s.conn)?;
                let push = matches!(role, StreamRole::IdentifyPushIn(_));
                let (StreamRole::IdentifyRequest(mut reader)
                | StreamRole::IdentifyPushIn(mut reader)) = role
                else {
                    unreachable!("matched above")
                };
                match reader.push(&data) {
                    Ok(None) if push => Some(StreamRole::IdentifyPushIn(reader)),
                    Ok(None) => Some(StreamRole::IdentifyRequest(reader)),
                    Ok(Some(info)) => {
                        if let Some(c) = self.conns.get_mut(&s.conn) {
                            c.agent = Some(info.agent_version.clone());
                        }
                        self.finish_stream(s);
                        self.punch_identified(now, s.conn, &info);
                        self.shared.emit(Event::Identified {
                            conn: s.conn,
                            peer,
                            info: Box::new(info),
                        });
                        Some(StreamRole::Discard)
                    }
                    Err(error) => {
                        self.reset_stream(s);
                        self.shared.emit(Event::IdentifyFailed {
                            conn: s.conn,
                            peer,
                            error,
                        });
                        None
                    }
                }
            }
            StreamRole::PingIn(mut echo) => {
                if let Some(answer) = echo.handle(&data) {
                    self.write_stream(s, &answer);
                }
                Some(StreamRole::PingIn(echo))
            }
            StreamRole::PingOut => {
                let ping = self.shared.config.ping.clone();
                let c = self.conns.get_mut(&s.conn)?;
                let peer = c.peer?;
                match c.pinger.handle_answer(now, &data, &ping) {
                    PingOutcome::Pending => {}
                    PingOutcome::Rtt(rtt) => self.shared.emit(Event::Ping {
                        conn: s.conn,
                        peer,
                        result: Ok(rtt),
                    }),
                    PingOutcome::Failed(error) => self.shared.emit(Event::Ping {
                        conn: s.conn,
                        peer,
                        result: Err(error),
                    }),
                }
                self.mark(s.conn);
                Some(StreamRole::PingOut)
            }
            role @ (StreamRole::ReserveOut(_)
            | StreamRole::ConnectOut { .. }
            | StreamRole::StopIn(_)) => {
                // The client consumes what it reads itself (the rest may be relayed data).
                return self.client_stream_data(now, s, role, data);
            }
            role @ (StreamRole::HopIn(_)
            | StreamRole::HopWaiting { .. }
            | StreamRole::StopOut { .. }) => {
                return self.relay_stream_data(now, s, role, data);
            }
            StreamRole::Dcutr => {
                self.put_role(s, StreamRole::Dcutr);
                self.punch_stream_data(now, s, &data);
                return None;
            }
            role @ (StreamRole::IdentifyPushOut | StreamRole::Discard) => Some(role),
        };
        self.consume(now, s, len);
        keep
    }

    fn stream_finished(
        &mut self,
        now: Instant,
        s: StreamRef,
        role: StreamRole,
    ) -> Option<StreamRole> {
        match role {
            StreamRole::App => {
                self.shared.emit(Event::StreamFinished { stream: s });
                Some(StreamRole::App)
            }
            StreamRole::IdentifyRequest(reader) | StreamRole::IdentifyPushIn(reader) => {
                let error = reader.finish();
                self.reset_stream(s);
                if let Some(peer) = self.peer_of(s.conn) {
                    self.shared.emit(Event::IdentifyFailed {
                        conn: s.conn,
                        peer,
                        error,
                    });
                }
                None
            }
            StreamRole::PingOut => {
                if let Some(c) = self.conns.get_mut(&s.conn) {
                    c.ping_stream = None;
                }
                self.finish_stream(s);
                None
            }
            StreamRole::Splice(splice) => self.relay_splice_finished(now, s, splice),
            StreamRole::Dcutr => {
                self.finish_stream(s);
                self.punch_stream_ended(now, s);
                None
            }
            StreamRole::Discard | StreamRole::PingIn(_) | StreamRole::IdentifyPushOut => {
                self.finish_stream(s);
                None
            }
            role => {
                self.stream_gone(now, s, role);
                self.reset_stream(s);
                None
            }
        }
    }

    fn stream_reset_by_peer(&mut self, now: Instant, s: StreamRef, role: StreamRole) {
        match role {
            StreamRole::App => self.shared.emit(Event::StreamReset { stream: s }),
            StreamRole::PingOut => {
                if let Some(c) = self.conns.get_mut(&s.conn) {
                    c.ping_stream = None;
                }
            }
            StreamRole::Dcutr => self.punch_stream_ended(now, s),
            role => self.stream_gone(now, s, role),
        }
    }

    fn stream_writable(
        &mut self,
        now: Instant,
        s: StreamRef,
        role: StreamRole,
    ) -> Option<StreamRole> {
        match role {
            StreamRole::App => {
                self.shared.emit(Event::StreamWritable { stream: s });
                Some(StreamRole::App)
            }
            StreamRole::Carrier { relayed } => {
                self.put_role(s, StreamRole::Carrier { relayed });
                self.flush_carrier(now, relayed);
                None
            }
            StreamRole::Splice(splice) => {
                let from = splice.peer;
                self.put_role(s, StreamRole::Splice(splice));
                self.relay_flush_splice(now, from);
                None
            }
            role => Some(role),
        }
    }

    /// Gives a relay request stream until `now + hop_timeout` to get its answer: the
    /// relay service's timeout for its own streams (`relay`), the client's otherwise.
    pub(super) fn arm_deadline(&mut self, now: Instant, s: StreamRef, relay: bool) {
        let timeout = match (&self.relay, relay) {
            (Some(service), true) => service.policy.config().hop_timeout,
            _ => self.shared.config.client.hop_timeout,
        };
        self.deadlines.insert((now + timeout, s));
    }

    /// Ends relay request streams whose answer is overdue.
    pub(super) fn expire_deadlines(&mut self, now: Instant) {
        while let Some(&(at, s)) = self.deadlines.first() {
            if at > now {
                return;
            }
            self.deadlines.pop_first();
            let waiting = matches!(
                self.conns
                    .get(&s.conn)
                    .and_then(|c| c.streams.get(&s.stream)),
                Some(
                    StreamRole::ReserveOut(_)
                        | StreamRole::ConnectOut { .. }
                        | StreamRole::StopIn(_)
                        | StreamRole::HopIn(_)
                        | StreamRole::StopOut { .. }
                )
            );
            if !waiting {
                continue;
            }
            tracing::debug!(stream = ?s, "relay request timed out");
            let Some(role) = self.take_role(s) else {
                continue;
            };
            self.reset_stream(s);
            match role {
                StreamRole::ReserveOut(_) => self.reservation_timed_out(now, s.conn),
                StreamRole::ConnectOut { relayed, .. } => {
                    self.fail_relayed(relayed, super::DialError::HopTimeout)
                }
                role => self.stream_gone(now, s, role),
            }
        }
    }

    /// A stream ended without its owner's usual path (its connection closed, it was
    /// refused or reset): let the owner clean up.
    pub(super) fn stream_gone(&mut self, now: Instant, s: StreamRef, role: StreamRole) {
        match role {
            StreamRole::Carrier { relayed } => self.carrier_gone(now, relayed),
            role @ (StreamRole::ReserveOut(_)
            | StreamRole::ConnectOut { .. }
            | StreamRole::StopIn(_)) => self.client_stream_gone(now, s, role),
            role @ (StreamRole::HopIn(_)
            | StreamRole::HopWaiting { .. }
            | StreamRole::StopOut { .. }
            | StreamRole::Splice(_)) => self.relay_stream_gone(now, s, role),
            _ => {}
        }
    }
}
