//! Tiny probes for NAT behaviour: a reflector that tells each sender the address it
//! came from (a minimal STUN), and the client side that asks it.
//!
//! The wire format is plain text: a UDP datagram or a TCP connection to a reflector is
//! answered with `a.b.c.d:port`, the source the reflector saw; TCP then closes from the
//! reflector's side (so the TIME_WAIT lands there and the client's port stays free).

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a reflector thread sleeps between looks at its stop flag.
const POLL: Duration = Duration::from_millis(5);

/// A transport protocol for probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// A server on a lab host answering every UDP datagram or TCP connection with the
/// source address it saw. Stops on drop.
#[derive(Debug)]
pub struct Reflector {
    addr: SocketAddrV4,
    transport: Transport,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reflector {
    /// Serves UDP on `socket` (already bound inside its namespace) until dropped.
    pub(crate) fn udp(socket: UdpSocket, addr: SocketAddrV4) -> std::io::Result<Self> {
        socket.set_read_timeout(Some(POLL * 4))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("natlab-reflector-udp".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let mut buf = [0u8; 1500];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((_, from)) = socket.recv_from(&mut buf) {
                            let _ = socket.send_to(from.to_string().as_bytes(), from);
                        }
                    }
                }
            })?;
        Ok(Reflector {
            addr,
            transport: Transport::Udp,
            stop,
            thread: Some(thread),
        })
    }

    /// Serves TCP on `listener` (already listening inside its namespace) until dropped.
    pub(crate) fn tcp(listener: TcpListener, addr: SocketAddrV4) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("natlab-reflector-tcp".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((mut stream, from)) => {
                                let _ = stream.set_nonblocking(false);
                                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                                let _ = stream.write_all(from.to_string().as_bytes());
                            }
                            Err(_) => std::thread::sleep(POLL),
                        }
                    }
                }
            })?;
        Ok(Reflector {
            addr,
            transport: Transport::Tcp,
            stop,
            thread: Some(thread),
        })
    }

    /// The address to reach the reflector at.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    /// The reflector's transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Asks a UDP reflector which address `socket` appears at, resending every 250 ms until
/// `timeout`. Datagrams from anyone but the reflector are ignored.
pub fn ask_udp(
    socket: &UdpSocket,
    reflector: SocketAddrV4,
    timeout: Duration,
) -> std::io::Result<SocketAddrV4> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        socket.send_to(b"?", reflector)?;
        let resend = Instant::now() + Duration::from_millis(250);
        loop {
            let wait = resend
                .min(deadline)
                .saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(wait))?;
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == SocketAddr::V4(reflector) => {
                    return parse_reply(&buf[..n]);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from the reflector at {reflector}"),
    ))
}

/// Reads a TCP reflector's answer from a connected stream (set a read timeout on it
/// first if the answer might not come).
pub fn ask_tcp(mut stream: impl Read) -> std::io::Result<SocketAddrV4> {
    let mut reply = Vec::new();
    stream.by_ref().take(64).read_to_end(&mut reply)?;
    parse_reply(&reply)
}

/// Waits up to `timeout` for a datagram on `socket`; returns its sender and contents, or
/// `None` if nothing came.
pub fn receive_udp(
    socket: &UdpSocket,
    timeout: Duration,
) -> std::io::Result<Option<(SocketAddr, Vec<u8>)>> {
    socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    let mut buf = [0u8; 1500];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => Ok(Some((from, buf[..n].to_vec()))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn parse_reply(reply: &[u8]) -> std::io::Result<SocketAddrV4> {
    std::str::from_utf8(reply)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not an address from the reflector: {:?}",
                    String::from_utf8_lossy(reply)
                ),
            )
        })
}
