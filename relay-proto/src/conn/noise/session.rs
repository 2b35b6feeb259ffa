//! Transport encryption after the handshake: one ChaCha20-Poly1305 message per frame.
//!
//! This is the data path of every connection, relayed bytes included, so it allocates
//! nothing per frame: ciphertext is written straight into the caller's buffer and
//! plaintext decrypted straight into the caller's buffer. Only a frame split across
//! two inputs is copied aside, into a buffer reused for the life of the session.

use bytes::BytesMut;
use snow::TransportState;

use super::{LEN_PREFIX, MAX_PLAINTEXT, NoiseError, TAG_LEN, complete_frame_len};

/// The encrypted byte stream of an established connection.
///
/// Frames are encrypted and decrypted in order with implicit nonces, so every byte
/// from the socket must reach [`Session::decrypt`] exactly once and in order.
pub struct Session {
    transport: TransportState,
    /// The beginning of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    /// Set once a frame failed authentication: the stream cannot recover from that.
    failed: bool,
}

impl Session {
    pub(super) fn new(transport: TransportState) -> Self {
        Self {
            transport,
            partial: Vec::new(),
            failed: false,
        }
    }

    /// Encrypts `plaintext`, appending length-prefixed frames to `out`.
    ///
    /// Plaintext longer than [`MAX_PLAINTEXT`] is split over several frames; an empty
    /// plaintext writes nothing.
    pub fn encrypt(
        &mut self,
        plaintext: &[u8],
        out: &mut bytes::BytesMut,
    ) -> Result<(), NoiseError> {
        let frames = plaintext.len().div_ceil(MAX_PLAINTEXT);
        out.reserve(plaintext.len() + frames * (LEN_PREFIX + TAG_LEN));
        for chunk in plaintext.chunks(MAX_PLAINTEXT) {
            let start = out.len();
            let body_len = chunk.len() + TAG_LEN;
            let Ok(prefix) = u16::try_from(body_len) else {
                return Err(NoiseError::FrameTooLarge);
            };
            out.resize(start + LEN_PREFIX + body_len, 0);
            out[start..start + LEN_PREFIX].copy_from_slice(&prefix.to_be_bytes());
            if let Err(error) = self
                .transport
                .write_message(chunk, &mut out[start + LEN_PREFIX..])
            {
                out.truncate(start);
                return Err(NoiseError::from_snow(error));
            }
        }
        Ok(())
    }

    /// Feeds ciphertext from the socket (any split); appends decrypted plaintext to `out`.
    ///
    /// Plaintext of every complete frame is appended; the start of an incomplete frame
    /// is kept for the next call. A frame that fails authentication ends the session:
    /// this and every later call return [`NoiseError::DecryptFailed`], though plaintext
    /// of the frames before it has been appended.
    pub fn decrypt(
        &mut self,
        ciphertext: &[u8],
        out: &mut bytes::BytesMut,
    ) -> Result<(), NoiseError> {
        if self.failed {
            return Err(NoiseError::DecryptFailed);
        }
        let result = self.decrypt_frames(ciphertext, out);
        self.failed = result.is_err();
        result
    }

    fn decrypt_frames(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        out.reserve(input.len());
        if !self.partial.is_empty() {
            input = self.complete_partial(input);
            if complete_frame_len(&self.partial).is_none() {
                return Ok(());
            }
            decrypt_frame(&mut self.transport, &self.partial[LEN_PREFIX..], out)?;
            self.partial.clear();
        }
        // Whole frames are decrypted straight from the input.
        while let Some(body_len) = complete_frame_len(input) {
            let frame_end = LEN_PREFIX + body_len;
            decrypt_frame(&mut self.transport, &input[LEN_PREFIX..frame_end], out)?;
            input = &input[frame_end..];
        }
        self.partial.extend_from_slice(input);
        Ok(())
    }

    /// Moves from `input` into `partial` as much as the frame begun there still lacks;
    /// returns the rest of `input`.
    fn complete_partial<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let mut input = input;
        if self.partial.len() < LEN_PREFIX {
            let take = (LEN_PREFIX - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() < LEN_PREFIX {
                return input;
            }
        }
        let body_len = usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]]));
        let missing = (LEN_PREFIX + body_len).saturating_sub(self.partial.len());
        let take = missing.min(input.len());
        self.partial.extend_from_slice(&input[..take]);
        &input[take..]
    }
}

/// Decrypts one frame body into the end of `out`.
fn decrypt_frame(
    transport: &mut TransportState,
    body: &[u8],
    out: &mut BytesMut,
) -> Result<(), NoiseError> {
    if body.len() < TAG_LEN {
        return Err(NoiseError::DecryptFailed);
    }
    // Room for the whole body, tag included: ring's cipher decrypts in place when the
    // output holds the ciphertext, and copies through a fresh allocation otherwise.
    let start = out.len();
    out.resize(start + body.len(), 0);
    match transport.read_message(body, &mut out[start..]) {
        Ok(written) => {
            out.truncate(start + written);
            Ok(())
        }
        Err(error) => {
            out.truncate(start);
            Err(NoiseError::from_snow(error))
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sent_frames", &self.transport.sending_nonce())
            .field("received_frames", &self.transport.receiving_nonce())
            .field("buffered", &self.partial.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}
