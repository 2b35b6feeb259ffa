//! The application's side of a host: sockets and timers.

use std::net::SocketAddrV4;

use bytes::Bytes;

use super::{Event, World};
use crate::error::NetError;
use crate::host::TimerId;
use crate::net::{Direction, HostId};
use crate::tcp::{ConnId, TcpState};
use crate::time::SimTime;

impl World {
    /// Listens for TCP connections on `port`. Connections may also be opened from a
    /// listening port (SO_REUSEPORT semantics).
    pub fn tcp_listen(&mut self, host: HostId, port: u16) -> Result<(), NetError> {
        self.stack_op(host, |stack, _| stack.listen(port))
    }

    /// Stops listening on `port`; established connections are unaffected. Returns
    /// whether the port was listening.
    pub fn tcp_unlisten(&mut self, host: HostId, port: u16) -> Result<bool, NetError> {
        self.stack_op(host, |stack, _| Ok(stack.unlisten(port)))
    }

    /// Opens a TCP connection to `remote` from `local_port`, or from an ephemeral port
    /// if `None`. The SYN leaves now; [`crate::TcpEvent::Connected`] or
    /// [`crate::TcpEvent::Closed`] follows. Data sent before the connection is
    /// established is queued.
    pub fn tcp_connect(
        &mut self,
        host: HostId,
        local_port: Option<u16>,
        remote: SocketAddrV4,
    ) -> Result<ConnId, NetError> {
        let now = self.now;
        self.stack_op(host, |stack, out| {
            stack.connect(now, local_port, remote, out)
        })
    }

    /// Queues bytes on a connection.
    pub fn tcp_send(&mut self, conn: ConnId, bytes: impl Into<Bytes>) -> Result<(), NetError> {
        let (now, bytes) = (self.now, bytes.into());
        self.stack_op(conn.host(), |stack, out| stack.send(now, conn, bytes, out))
    }

    /// Closes a connection gracefully: FIN after the queued data. A connection still
    /// opening is discarded without an event.
    pub fn tcp_close(&mut self, conn: ConnId) -> Result<(), NetError> {
        let now = self.now;
        self.stack_op(conn.host(), |stack, out| stack.close(now, conn, out))
    }

    /// Resets a connection (RST) and forgets it, without an event.
    pub fn tcp_abort(&mut self, conn: ConnId) -> Result<(), NetError> {
        self.stack_op(conn.host(), |stack, out| stack.abort(conn, out))
    }

    /// A connection's state, or `None` if it no longer exists.
    pub fn tcp_state(&self, conn: ConnId) -> Option<TcpState> {
        self.host(conn.host()).ok()?.stack.as_ref()?.state(conn)
    }

    /// Binds a UDP port to receive datagrams.
    pub fn udp_bind(&mut self, host: HostId, port: u16) -> Result<(), NetError> {
        self.stack_op(host, |stack, _| stack.udp_bind(port))
    }

    /// Unbinds a UDP port. Returns whether it was bound.
    pub fn udp_unbind(&mut self, host: HostId, port: u16) -> Result<bool, NetError> {
        self.stack_op(host, |stack, _| Ok(stack.udp_unbind(port)))
    }

    /// Sends a datagram from `local_port` (which becomes bound if it was not).
    pub fn udp_send(
        &mut self,
        host: HostId,
        local_port: u16,
        remote: SocketAddrV4,
        bytes: impl Into<Bytes>,
    ) -> Result<(), NetError> {
        let bytes = bytes.into();
        let packet = self.stack_op(host, |stack, _| stack.udp_send(local_port, remote, bytes))?;
        let link = self.host(host)?.link;
        self.transmit(link, Direction::Up, packet);
        Ok(())
    }

    /// Sets a timer on a host: at `at` (or now, if earlier) the host gets
    /// [`crate::HostEvent::Timer`] with `token`. A timer dies with its host's
    /// incarnation.
    pub fn set_timer(
        &mut self,
        host: HostId,
        at: SimTime,
        token: u64,
    ) -> Result<TimerId, NetError> {
        let h = self.host(host)?;
        if h.stack.is_none() {
            return Err(NetError::HostDown(host));
        }
        let incarnation = h.incarnation;
        let id = TimerId(self.next_timer);
        self.next_timer += 1;
        self.pending_timers.insert(id);
        self.queue.push(
            at.max(self.now),
            Event::AppTimer {
                host,
                incarnation,
                id,
                token,
            },
        );
        Ok(id)
    }

    /// Cancels a timer that has not fired yet (no effect otherwise).
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.pending_timers.remove(&id);
    }
}
