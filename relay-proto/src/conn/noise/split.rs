//! The transport ciphers of an established Noise session, one per direction.
//!
//! After the handshake each direction has a key and a nonce counter of its own, so the
//! two directions are independent: a [`SendCipher`] and a [`RecvCipher`] may live on
//! different threads, e.g. with a socket's writer and reader, while the connection
//! exchanges plaintext with them (the "kTLS offload" pattern; see
//! [`Connection::offload_crypto`](crate::conn::Connection::offload_crypto)).
//!
//! Every transport message is a frame: a 2-byte big-endian length, then that many bytes
//! of ChaCha20-Poly1305 ciphertext with its 16-byte tag, under the nonce of the frame's
//! number in its direction (little-endian, after four zero bytes) and no associated
//! data. Both ciphers work in place, so the data path copies nothing for them:
//! [`SendCipher::seal_in_place`] encrypts a frame body where it lies and returns the
//! length prefix and tag that surround it on the wire; [`RecvCipher::decrypt_frame`]
//! decrypts a frame inside the buffer it was read into. Where the bytes are borrowed,
//! [`SendCipher::encrypt`] and [`RecvCipher::decrypt`] copy them once, into the output.
//!
//! On native targets the cipher is ring's assembly, as rust-libp2p's; on wasm the
//! pure-Rust `chacha20poly1305`. They agree byte for byte (tested in `crypto.rs`).

use bytes::{Buf, Bytes, BytesMut};

use super::{LEN_PREFIX, MAX_PLAINTEXT, NoiseError, TAG_LEN, complete_frame_len};

/// The length of a transport key.
pub(super) const KEY_LEN: usize = 32;

/// The length prefix and the authentication tag that surround a sealed frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedFrame {
    /// The 2-byte big-endian length of body and tag.
    pub prefix: [u8; LEN_PREFIX],
    /// The authentication tag, sent right after the body.
    pub tag: [u8; TAG_LEN],
}

/// The sending direction of a Noise transport session.
pub struct SendCipher {
    key: Key,
    nonce: u64,
}

/// The receiving direction of a Noise transport session.
pub struct RecvCipher {
    key: Key,
    nonce: u64,
    /// The beginning of a frame whose end has not arrived yet ([`RecvCipher::decrypt`]).
    partial: Vec<u8>,
    /// Set once a frame failed authentication: the stream cannot recover from that.
    failed: bool,
}

impl SendCipher {
    pub(super) fn new(key: &[u8; KEY_LEN]) -> Result<Self, NoiseError> {
        Ok(Self {
            key: Key::new(key)?,
            nonce: 0,
        })
    }

    /// How many frames were sent.
    pub fn frames(&self) -> u64 {
        self.nonce
    }

    /// Encrypts one frame body in place: `body` (at most [`MAX_PLAINTEXT`] bytes) turns
    /// into its ciphertext; the wire carries the returned prefix, then `body`, then the
    /// returned tag.
    pub fn seal_in_place(&mut self, body: &mut [u8]) -> Result<SealedFrame, NoiseError> {
        if body.len() > MAX_PLAINTEXT {
            return Err(NoiseError::FrameTooLarge);
        }
        let nonce = next_nonce(&mut self.nonce)?;
        let tag = self.key.seal(nonce, body)?;
        // At most MAX_PLAINTEXT + TAG_LEN = u16::MAX: it fits.
        let len = (body.len() + TAG_LEN) as u16;
        Ok(SealedFrame {
            prefix: len.to_be_bytes(),
            tag,
        })
    }

    /// Encrypts `plaintext`, appending length-prefixed frames to `out`.
    ///
    /// Plaintext longer than [`MAX_PLAINTEXT`] is split over several frames; an empty
    /// plaintext writes nothing. Each byte is copied once, into `out`, and encrypted there.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        let frames = plaintext.len().div_ceil(MAX_PLAINTEXT);
        out.reserve(plaintext.len() + frames * (LEN_PREFIX + TAG_LEN));
        for chunk in plaintext.chunks(MAX_PLAINTEXT) {
            let start = out.len();
            out.extend_from_slice(&[0; LEN_PREFIX]);
            out.extend_from_slice(chunk);
            match self.seal_in_place(&mut out[start + LEN_PREFIX..]) {
                Ok(sealed) => {
                    out[start..start + LEN_PREFIX].copy_from_slice(&sealed.prefix);
                    out.extend_from_slice(&sealed.tag);
                }
                Err(error) => {
                    out.truncate(start);
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

impl RecvCipher {
    pub(super) fn new(key: &[u8; KEY_LEN]) -> Result<Self, NoiseError> {
        Ok(Self {
            key: Key::new(key)?,
            nonce: 0,
            partial: Vec::new(),
            failed: false,
        })
    }

    /// How many frames were received.
    pub fn frames(&self) -> u64 {
        self.nonce
    }

    /// Whether a frame failed authentication; every later call fails too.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Feeds ciphertext from the socket (any split); appends decrypted plaintext to `out`.
    ///
    /// Plaintext of every complete frame is appended; the start of an incomplete frame
    /// is kept for the next call (or for [`RecvCipher::take_buffered`]). A frame that
    /// fails authentication ends the session: this and every later call return
    /// [`NoiseError::DecryptFailed`], though plaintext of the frames before it has been
    /// appended.
    pub fn decrypt(&mut self, ciphertext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        if self.failed {
            return Err(NoiseError::DecryptFailed);
        }
        let result = self.decrypt_frames(ciphertext, out);
        self.failed = result.is_err();
        result
    }

    /// The start of a frame [`RecvCipher::decrypt`] received but could not finish yet,
    /// taken out: whoever continues the byte stream puts it in front of what follows.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }

    /// Decrypts the frame at the front of `buf` in place, if all of it is there: cuts it
    /// off `buf` and returns its plaintext, which shares `buf`'s memory.
    ///
    /// Bytes [`RecvCipher::decrypt`] kept must have been taken with
    /// [`RecvCipher::take_buffered`] and put in front of `buf` first; otherwise this
    /// fails with [`NoiseError::BufferedInput`].
    pub fn decrypt_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, NoiseError> {
        if self.failed {
            return Err(NoiseError::DecryptFailed);
        }
        if !self.partial.is_empty() {
            return Err(NoiseError::BufferedInput);
        }
        let Some(body_len) = complete_frame_len(buf) else {
            return Ok(None);
        };
        let mut frame = buf.split_to(LEN_PREFIX + body_len);
        frame.advance(LEN_PREFIX);
        match self.open(&mut frame) {
            Ok(len) => {
                frame.truncate(len);
                Ok(Some(frame.freeze()))
            }
            Err(error) => {
                self.failed = true;
                Err(error)
            }
        }
    }

    fn decrypt_frames(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        out.reserve(input.len());
        if !self.partial.is_empty() {
            input = self.complete_partial(input);
            if complete_frame_len(&self.partial).is_none() {
                return Ok(());
            }
            let body = std::mem::take(&mut self.partial);
            let result = self.open_into(&body[LEN_PREFIX..], out);
            // Keep the allocation for the next frame split across reads.
            self.partial = body;
            self.partial.clear();
            result?;
        }
        // Whole frames are decrypted as they are copied out of the input.
        while let Some(body_len) = complete_frame_len(input) {
            let frame_end = LEN_PREFIX + body_len;
            self.open_into(&input[LEN_PREFIX..frame_end], out)?;
            input = &input[frame_end..];
        }
        self.partial.extend_from_slice(input);
        Ok(())
    }

    /// Copies one frame body to the end of `out` and decrypts it there.
    fn open_into(&mut self, body: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        let start = out.len();
        out.extend_from_slice(body);
        match self.open(&mut out[start..]) {
            Ok(len) => {
                out.truncate(start + len);
                Ok(())
            }
            Err(error) => {
                out.truncate(start);
                Err(error)
            }
        }
    }

    /// Decrypts one frame body (ciphertext and tag) in place; returns the plaintext length.
    fn open(&mut self, body: &mut [u8]) -> Result<usize, NoiseError> {
        let Some(len) = body.len().checked_sub(TAG_LEN) else {
            return Err(NoiseError::DecryptFailed);
        };
        let nonce = next_nonce(&mut self.nonce)?;
        let (ciphertext, tag) = body.split_at_mut(len);
        self.key.open(nonce, ciphertext, tag)?;
        Ok(len)
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

/// The size on the wire (length prefix, body and tag) of the frame at the front of
/// `buf`, once its length prefix is there.
pub fn frame_size(buf: &[u8]) -> Option<usize> {
    let prefix = buf.get(..LEN_PREFIX)?;
    Some(LEN_PREFIX + usize::from(u16::from_be_bytes([prefix[0], prefix[1]])))
}

/// Takes the next nonce of a direction. The Noise spec reserves 2^64-1.
fn next_nonce(counter: &mut u64) -> Result<u64, NoiseError> {
    let nonce = *counter;
    if nonce == u64::MAX {
        return Err(NoiseError::NonceExhausted);
    }
    *counter += 1;
    Ok(nonce)
}

/// The 12-byte ChaCha20-Poly1305 nonce of Noise: four zero bytes, then the counter.
fn nonce_bytes(nonce: u64) -> [u8; 12] {
    let mut bytes = [0; 12];
    bytes[4..].copy_from_slice(&nonce.to_le_bytes());
    bytes
}

/// One direction's ChaCha20-Poly1305 key, from ring's assembly.
#[cfg(not(target_arch = "wasm32"))]
struct Key(ring::aead::LessSafeKey);

#[cfg(not(target_arch = "wasm32"))]
impl Key {
    fn new(key: &[u8; KEY_LEN]) -> Result<Self, NoiseError> {
        let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key)
            .map_err(|_| NoiseError::Snow("ChaCha20-Poly1305 rejected the key".into()))?;
        Ok(Self(ring::aead::LessSafeKey::new(key)))
    }

    fn seal(&self, nonce: u64, in_out: &mut [u8]) -> Result<[u8; TAG_LEN], NoiseError> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce_bytes(nonce));
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), in_out)
            .map_err(|_| NoiseError::FrameTooLarge)?;
        let mut bytes = [0; TAG_LEN];
        bytes.copy_from_slice(tag.as_ref());
        Ok(bytes)
    }

    fn open(&self, nonce: u64, in_out: &mut [u8], tag: &[u8]) -> Result<(), NoiseError> {
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce_bytes(nonce));
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| NoiseError::DecryptFailed)?;
        self.0
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::empty(),
                ring::aead::Tag::from(tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| NoiseError::DecryptFailed)
    }
}

#[cfg(target_arch = "wasm32")]
use pure::PureKey as Key;

/// One direction's ChaCha20-Poly1305 key in pure Rust, for wasm (and, in tests, checked
/// against ring's).
#[cfg(any(target_arch = "wasm32", test))]
mod pure {
    use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};

    use super::{KEY_LEN, NoiseError, TAG_LEN, nonce_bytes};

    pub(super) struct PureKey(ChaCha20Poly1305);

    impl PureKey {
        pub(super) fn new(key: &[u8; KEY_LEN]) -> Result<Self, NoiseError> {
            Ok(Self(ChaCha20Poly1305::new(key.into())))
        }

        pub(super) fn seal(
            &self,
            nonce: u64,
            in_out: &mut [u8],
        ) -> Result<[u8; TAG_LEN], NoiseError> {
            let tag = self
                .0
                .encrypt_in_place_detached(&nonce_bytes(nonce).into(), &[], in_out)
                .map_err(|_| NoiseError::FrameTooLarge)?;
            Ok(tag.into())
        }

        pub(super) fn open(
            &self,
            nonce: u64,
            in_out: &mut [u8],
            tag: &[u8],
        ) -> Result<(), NoiseError> {
            let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| NoiseError::DecryptFailed)?;
            self.0
                .decrypt_in_place_detached(&nonce_bytes(nonce).into(), &[], in_out, &tag.into())
                .map_err(|_| NoiseError::DecryptFailed)
        }
    }
}

impl std::fmt::Debug for SendCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendCipher")
            .field("frames", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RecvCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvCipher")
            .field("frames", &self.nonce)
            .field("buffered", &self.partial.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod tests;
