//! Handing a connection's transport encryption to the runtime (crypto offload).
//!
//! Noise encryption is most of the CPU a relay spends per byte. Done inside the
//! connection, it runs wherever the connection runs, which for a node of many
//! connections is one task on one core. Once the handshake is over the two directions
//! are independent ciphers ([`SendCipher`], [`RecvCipher`]), so a runtime that reads and
//! writes each socket on tasks of their own can take them: its reader decrypts, its
//! writer encrypts, and the connection exchanges plaintext with it, in the manner of
//! kernel TLS. The protocol logic stays here; only the cipher work moves, and it moves
//! to as many cores as there are sockets busy.
//!
//! The hand-over, for the runtime:
//! 1. [`Connection::offload_crypto`](super::Connection::offload_crypto) asks for it,
//!    before or after the connection is open.
//! 2. Once open, and after the last ciphertext of
//!    [`Connection::poll_transmit`](super::Connection::poll_transmit),
//!    [`Connection::poll_offload`](super::Connection::poll_offload) returns the
//!    [`TransportCiphers`] once. Ciphertext polled before it is written as it is; what
//!    [`Connection::poll_transmit_plain`](super::Connection::poll_transmit_plain)
//!    returns afterwards is plaintext for the send cipher, in order.
//! 3. The receive cipher is positioned after the last byte given to
//!    [`Connection::handle_input`](super::Connection::handle_input), with the start of
//!    an incomplete frame buffered in it ([`RecvCipher::take_buffered`]). Later socket
//!    bytes are decrypted by the runtime and fed, in order, to
//!    [`Connection::handle_plaintext`](super::Connection::handle_plaintext).
//!
//! A connection never offloaded works as before, so runtimes and simulators that do
//! not split their sockets need do nothing.

use super::noise::{RecvCipher, SendCipher, Session};

/// The two directions of an established connection's Noise session, handed out.
#[derive(Debug)]
pub struct TransportCiphers {
    /// Encrypts what the connection sends; the runtime's writer owns it.
    pub send: SendCipher,
    /// Decrypts what the socket delivers; the runtime's reader owns it. It may hold the
    /// start of a frame ([`RecvCipher::take_buffered`]) that precedes the socket's next
    /// bytes.
    pub recv: RecvCipher,
}

/// Where a connection is in handing its ciphers out.
#[derive(Debug, Default)]
pub(super) enum Offload {
    /// The connection encrypts and decrypts itself.
    #[default]
    Off,
    /// The runtime asked for the ciphers; they go once the connection is open.
    Wanted,
    /// The ciphers wait for [`Offload::take`].
    Ready(Box<TransportCiphers>),
    /// The runtime has the ciphers: bytes in and out are plaintext.
    Done,
}

impl Offload {
    /// The runtime asks for the ciphers; `session` is the open connection's, if open.
    pub(super) fn request(&mut self, session: Option<&mut Option<Session>>) {
        if !matches!(self, Offload::Off) {
            return;
        }
        *self = Offload::Wanted;
        if let Some(session) = session {
            self.on_open(session);
        }
    }

    /// The connection is open with `session`: hand it out if wanted.
    pub(super) fn on_open(&mut self, session: &mut Option<Session>) {
        if !matches!(self, Offload::Wanted) {
            return;
        }
        if let Some(session) = session.take() {
            let (send, recv) = session.into_halves();
            *self = Offload::Ready(Box::new(TransportCiphers { send, recv }));
        }
    }

    /// Takes the ciphers out once they are ready.
    pub(super) fn take(&mut self) -> Option<TransportCiphers> {
        if !matches!(self, Offload::Ready(_)) {
            return None;
        }
        match std::mem::replace(self, Offload::Done) {
            Offload::Ready(ciphers) => Some(*ciphers),
            _ => None,
        }
    }

    /// Whether the runtime has the ciphers, so that transport bytes are plaintext.
    pub(super) fn is_done(&self) -> bool {
        matches!(self, Offload::Done)
    }
}
