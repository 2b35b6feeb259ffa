//! Sockets that share a port: listeners and dials bound with `SO_REUSEADDR` and
//! `SO_REUSEPORT`, so that hole punch dials (and, with port reuse, every dial) go out
//! from the port we listen on and a NAT maps them as it maps the listener.
//!
//! Runtimes build their sockets here and wrap them in their own types. Platforms
//! without `SO_REUSEPORT` get `SO_REUSEADDR` alone: listening works, dialing from a
//! listening port fails with `EADDRINUSE` and ordinary dials fall back to an ephemeral
//! port.

use std::io;
use std::net::SocketAddr;

use relay_proto::node::DialFrom;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{BoxFuture, BoxSocket, Runtime};

/// Backlog of listeners.
const BACKLOG: i32 = 1024;

/// A TCP socket for `addr`'s family with both reuse options set, non-blocking.
fn reusable(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// A non-blocking listener on `addr` whose port dials can share.
pub fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = reusable(addr)?;
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A non-blocking socket bound to `local` (a port we may be listening on), not yet
/// connected. `TCP_NODELAY` is set.
pub fn bound(local: SocketAddr) -> io::Result<Socket> {
    let socket = reusable(local)?;
    socket.set_nodelay(true)?;
    socket.bind(&SockAddr::from(local))?;
    Ok(socket)
}

/// Starts a non-blocking connect of `socket` to `addr`; completion is signalled by the
/// socket becoming writable, then [`finish_connect`] says how it ended.
pub fn start_connect(socket: &Socket, addr: SocketAddr) -> io::Result<()> {
    match socket.connect(&SockAddr::from(addr)) {
        Ok(()) => Ok(()),
        Err(e) if in_progress(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a non-blocking connect's error only says it is under way.
fn in_progress(error: &io::Error) -> bool {
    #[cfg(unix)]
    if error.raw_os_error() == Some(libc::EINPROGRESS) {
        return true;
    }
    error.kind() == io::ErrorKind::WouldBlock
}

/// How a connect started with [`start_connect`] ended, once the socket is writable.
pub fn finish_connect(socket: &std::net::TcpStream) -> io::Result<()> {
    if let Some(error) = socket.take_error()? {
        return Err(error);
    }
    // Writable without an error but not connected would be a spurious wake-up.
    socket.peer_addr().map(|_| ())
}

/// The connect of an `Output::Dial`: from the listen port where the node asks for it,
/// falling back to an ephemeral port where the node allows ([`DialFrom::ListenPort`])
/// and the port or address pair is taken.
pub(crate) fn dial<R: Runtime>(
    runtime: &R,
    addr: SocketAddr,
    from: DialFrom,
) -> BoxFuture<io::Result<(BoxSocket, SocketAddr)>> {
    match from {
        DialFrom::Ephemeral => runtime.connect(addr),
        DialFrom::HolePunch(local) => runtime.connect_from(local, addr),
        DialFrom::ListenPort(local) => {
            let runtime = runtime.clone();
            Box::pin(async move {
                match runtime.connect_from(local, addr).await {
                    Err(error) if is_addr_taken(&error) => {
                        tracing::debug!(%local, %addr, %error, "dialing from an ephemeral port");
                        runtime.connect(addr).await
                    }
                    result => result,
                }
            })
        }
    }
}

/// Whether a bind or connect failed because the address pair (or port) is taken: a
/// connection between the same two ports exists or lingers in `TIME_WAIT`, or the port
/// is held by a socket without `SO_REUSEPORT`.
pub fn is_addr_taken(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dial_shares_the_listeners_port() {
        let listener = listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let local = listener.local_addr().unwrap();
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = bound(local).unwrap();
        start_connect(&socket, target.local_addr().unwrap()).unwrap();
        let (_, peer) = target.accept().unwrap();
        assert_eq!(peer, local, "the dial left from the listen port");
        // The same pair again is taken.
        let again = bound(local).unwrap();
        let error = match again.connect(&SockAddr::from(target.local_addr().unwrap())) {
            Err(e) => e,
            Ok(()) => panic!("connected twice on one address pair"),
        };
        assert!(is_addr_taken(&error), "{error:?}");
    }
}
