//! The adapter proper: socket events into a node, a node's outputs onto sockets.

use std::net::SocketAddr;

use relay_proto::node::{DialFrom, Input, Output};

use super::{NodeEvent, NodeWorld, Socket};
use crate::error::NetError;
use crate::host::HostEvent;
use crate::net::HostId;
use crate::tcp::{CloseReason, TcpEvent};

impl NodeWorld {
    /// Feeds one event of a host's sockets or timers to its node.
    pub(super) fn on_host_event(&mut self, host: HostId, event: HostEvent) {
        let now = self.instant();
        let Some(a) = self.hosts.get_mut(&host) else {
            return;
        };
        let Some(node) = a.node.as_mut() else {
            // A killed node's host is up: a connection its stack completes after the
            // kill has no process to take it.
            if let HostEvent::Tcp(TcpEvent::Accepted { conn, .. }) = event {
                let _ = self.world.tcp_abort(conn);
            }
            return;
        };
        match event {
            HostEvent::Tcp(TcpEvent::Accepted {
                conn: sock,
                local,
                remote,
            }) => match node.accept(now, local.into(), remote.into()) {
                Ok(conn) => {
                    a.conns.insert(conn, sock);
                    a.sockets.insert(
                        sock,
                        Socket {
                            conn,
                            connected: true,
                            ended: false,
                        },
                    );
                }
                Err(_) => {
                    let _ = self.world.tcp_abort(sock);
                }
            },
            HostEvent::Tcp(TcpEvent::Connected {
                conn: sock, local, ..
            }) => {
                let Some(s) = a.sockets.get_mut(&sock) else {
                    return;
                };
                s.connected = true;
                let input = Input::Connected {
                    conn: s.conn,
                    local_addr: local.into(),
                };
                node.handle_input(now, input);
            }
            HostEvent::Tcp(TcpEvent::Data { conn: sock, bytes }) => {
                let Some(s) = a.sockets.get(&sock) else {
                    return;
                };
                let input = Input::Received {
                    conn: s.conn,
                    bytes: &bytes,
                };
                node.handle_input(now, input);
            }
            HostEvent::Tcp(TcpEvent::Eof { conn: sock }) => {
                let Some(s) = a.sockets.get_mut(&sock) else {
                    return;
                };
                if !s.ended {
                    s.ended = true;
                    node.handle_input(now, Input::Closed { conn: s.conn });
                }
            }
            HostEvent::Tcp(TcpEvent::Closed { conn: sock, reason }) => {
                let Some(s) = a.sockets.remove(&sock) else {
                    return;
                };
                a.conns.remove(&s.conn);
                if !s.connected {
                    let input = Input::DialFailed {
                        conn: s.conn,
                        error: dial_error(reason).to_owned(),
                    };
                    node.handle_input(now, input);
                } else if !s.ended {
                    node.handle_input(now, Input::Closed { conn: s.conn });
                }
            }
            HostEvent::Udp(_) => {}
            HostEvent::Timer { id, .. } => {
                if a.timer.is_some_and(|(armed, _)| armed == id) {
                    a.timer = None;
                    a.last_fire = Some(self.world.now());
                    node.handle_timeout(now);
                }
            }
        }
        self.drain(host);
    }

    /// Carries out a node's outputs until it has none, then re-arms its timer.
    pub(super) fn drain(&mut self, host: HostId) {
        let now = self.instant();
        let at = self.world.now();
        loop {
            let Some(a) = self.hosts.get_mut(&host) else {
                return;
            };
            let Some(node) = a.node.as_mut() else {
                return;
            };
            let Some(output) = node.poll_output() else {
                break;
            };
            match output {
                Output::Transmit { conn, data } => {
                    if let Some(&sock) = a.conns.get(&conn) {
                        // A socket that no longer takes data reports its end by itself.
                        let _ = self.world.tcp_send(sock, data);
                    }
                }
                Output::Dial { conn, addr, from } => match self.connect(host, addr, from) {
                    Ok(sock) => {
                        let a = self.hosts.get_mut(&host).expect("present");
                        a.conns.insert(conn, sock);
                        a.sockets.insert(
                            sock,
                            Socket {
                                conn,
                                connected: false,
                                ended: false,
                            },
                        );
                    }
                    Err(error) => {
                        let a = self.hosts.get_mut(&host).expect("present");
                        let node = a.node.as_mut().expect("up");
                        let error = error.to_string();
                        node.handle_input(now, Input::DialFailed { conn, error });
                    }
                },
                Output::Close { conn } => {
                    if let Some(sock) = a.conns.remove(&conn) {
                        a.sockets.remove(&sock);
                        let _ = self.world.tcp_close(sock);
                    }
                }
                Output::Event(event) => self.events.push_back(NodeEvent { at, host, event }),
                // Only a runtime that calls `Node::enable_crypto_offload` gets these; the
                // simulator keeps the ciphers in the node.
                Output::Offload { .. } | Output::TransmitPlain { .. } => {}
            }
        }
        self.arm_timer(host);
    }

    /// Opens a TCP connection from where the node asked: an ephemeral port, the listen
    /// port if that 4-tuple is free (else an ephemeral one), or for a hole punch the
    /// listen port and nothing else.
    fn connect(
        &mut self,
        host: HostId,
        addr: SocketAddr,
        from: DialFrom,
    ) -> Result<crate::tcp::ConnId, String> {
        let SocketAddr::V4(remote) = addr else {
            return Err(format!("{addr}: the simulated network is IPv4 only"));
        };
        let result = match from {
            DialFrom::Ephemeral => self.world.tcp_connect(host, None, remote),
            DialFrom::ListenPort(local) => {
                match self.world.tcp_connect(host, Some(local.port()), remote) {
                    Err(NetError::PortInUse { .. }) => self.world.tcp_connect(host, None, remote),
                    other => other,
                }
            }
            DialFrom::HolePunch(local) => self.world.tcp_connect(host, Some(local.port()), remote),
        };
        result.map_err(|e| e.to_string())
    }

    /// Points the host's world timer at the node's next timeout.
    fn arm_timer(&mut self, host: HostId) {
        let clock = self.clock;
        let Some(a) = self.hosts.get_mut(&host) else {
            return;
        };
        let mut want = a
            .node
            .as_ref()
            .and_then(|n| n.poll_timeout())
            .map(|t| clock.sim_time(t));
        // A node that asks again for a time it was just woken at would spin without
        // time moving; wake it a millisecond later instead.
        if let (Some(t), Some(fired)) = (want, a.last_fire)
            && t <= fired
        {
            want = Some(fired + RESPIN);
        }
        if a.timer.map(|(_, t)| t) == want {
            return;
        }
        if let Some((id, _)) = a.timer.take() {
            self.world.cancel_timer(id);
        }
        if let Some(t) = want
            && let Ok(id) = self.world.set_timer(host, t, 0)
        {
            let a = self.hosts.get_mut(&host).expect("present");
            a.timer = Some((id, t));
        }
    }
}

/// How long a node that asks to be woken in the past waits.
const RESPIN: std::time::Duration = std::time::Duration::from_millis(1);

/// The words a socket layer would use for a failed connect.
fn dial_error(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Refused => "connection refused",
        CloseReason::Timeout => "connection timed out",
        CloseReason::Unreachable => "host unreachable",
        CloseReason::Reset => "connection reset",
        CloseReason::Fin => "connection closed before it was established",
    }
}
