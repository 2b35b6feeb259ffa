//! Transport encryption after the handshake: one ChaCha20-Poly1305 message per frame.
//!
//! This is the data path of every connection, relayed bytes included, so it allocates
//! nothing per frame: each byte is copied once, into the caller's buffer, and encrypted
//! or decrypted there. Only a frame split across two inputs is copied aside, into a
//! buffer reused for the life of the session. The two directions are independent
//! ciphers ([`super::split`]); [`Session::into_halves`] hands them out.

use bytes::BytesMut;

use super::NoiseError;
use super::split::{RecvCipher, SendCipher};

/// The encrypted byte stream of an established connection.
///
/// Frames are encrypted and decrypted in order with implicit nonces, so every byte
/// from the socket must reach [`Session::decrypt`] exactly once and in order.
pub struct Session {
    send: SendCipher,
    recv: RecvCipher,
}

impl Session {
    pub(super) fn new(send: SendCipher, recv: RecvCipher) -> Self {
        Self { send, recv }
    }

    /// Encrypts `plaintext`, appending length-prefixed frames to `out`.
    ///
    /// Plaintext longer than [`super::MAX_PLAINTEXT`] is split over several frames; an
    /// empty plaintext writes nothing.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        self.send.encrypt(plaintext, out)
    }

    /// Feeds ciphertext from the socket (any split); appends decrypted plaintext to `out`.
    ///
    /// Plaintext of every complete frame is appended; the start of an incomplete frame
    /// is kept for the next call. A frame that fails authentication ends the session:
    /// this and every later call return [`NoiseError::DecryptFailed`], though plaintext
    /// of the frames before it has been appended.
    pub fn decrypt(&mut self, ciphertext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        self.recv.decrypt(ciphertext, out)
    }

    /// The two directions, apart: what is sent and what is received.
    pub fn into_halves(self) -> (SendCipher, RecvCipher) {
        (self.send, self.recv)
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("send", &self.send)
            .field("recv", &self.recv)
            .finish()
    }
}
