//! The `/noise` security handshake and transport encryption of libp2p.
//!
//! libp2p runs `Noise_XX_25519_ChaChaPoly_SHA256` with an empty prologue (libp2p/specs
//! `noise/README.md`). Every handshake and transport message travels in a frame of a
//! 2-byte big-endian length followed by that many bytes. The initiator's first message
//! carries only its ephemeral key; the responder's reply and the initiator's final
//! message each carry a protobuf payload with the sender's libp2p identity key and its
//! signature over `"noise-libp2p-static-key:"` followed by the sender's X25519 static
//! key. A node keeps one static key for all its handshakes ([`LocalStatic`]), as go-
//! and rust-libp2p do (one per transport); [`Handshake::new`] makes a fresh one.
//!
//! This module owns one connection's handshake ([`Handshake`]) and, once it is done,
//! the encryption of its byte stream ([`Session`]). It performs no I/O: bytes from the
//! socket go in, bytes for the socket come out. Its only randomness is the [`Rng`]
//! the caller passes to [`Handshake::new`], so the same seed gives the same bytes.

// `NoiseError::PeerIdMismatch` holds two PeerIds (80 bytes each) by value, as the
// connection layer matches on them; the size only costs on the error path.
#![allow(clippy::result_large_err)]

mod crypto;
mod payload;
mod session;
pub mod split;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use snow::HandshakeState;

use crate::identity::{Keypair, PeerId, PublicKey};
use crate::rng::Rng;

pub use payload::NoiseExtensions;
pub use session::Session;
pub use split::{RecvCipher, SealedFrame, SendCipher};

/// The protocol id negotiated with multistream-select before the handshake.
pub const PROTOCOL: &str = "/noise";

/// The largest Noise message, and so the largest frame body, in bytes.
pub const MAX_FRAME: usize = 65535;

/// The most plaintext one transport frame carries: a frame less the 16-byte tag.
pub const MAX_PLAINTEXT: usize = MAX_FRAME - TAG_LEN;

/// The length of the ChaCha20-Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;

/// The length of the length prefix of every frame.
pub const LEN_PREFIX: usize = 2;

/// The Noise protocol name libp2p uses.
const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// The most a handshake message adds to its payload: an ephemeral key, an encrypted
/// static key, and the payload's tag.
const HANDSHAKE_OVERHEAD: usize = 32 + (32 + TAG_LEN) + TAG_LEN;

/// Which side of the handshake the local peer plays.
///
/// The dialer is usually the initiator; after a DCUtR TCP simultaneous open the roles
/// come from the hole-punching protocol instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the first handshake message.
    Initiator,
    /// Answers the first handshake message.
    Responder,
}

/// Why a Noise handshake or session failed. Every error is fatal to the connection.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The Noise state machine refused an operation, e.g. a message too short to hold
    /// the keys it must carry.
    #[error("noise protocol error: {0}")]
    Snow(String),
    /// The remote's handshake payload is not a valid payload protobuf, or its identity
    /// key is malformed.
    #[error("the remote's handshake payload is malformed")]
    InvalidPayload,
    /// The remote's identity signature does not cover the static key it used.
    #[error("the remote's signature over its static key does not verify")]
    InvalidSignature,
    /// The remote's handshake payload lacks its identity key or signature.
    #[error("the remote's handshake payload lacks its identity key or signature")]
    MissingIdentity,
    /// The remote's identity key is of a type this build does not support.
    #[error("the remote's identity key type is not supported")]
    UnsupportedKey,
    /// The remote proved an identity other than the one dialed.
    #[error("expected remote peer {expected}, but it is {actual}")]
    PeerIdMismatch {
        /// The peer the local side meant to reach.
        expected: PeerId,
        /// The peer the remote proved to be.
        actual: PeerId,
    },
    /// A local message does not fit in one Noise frame.
    #[error("message does not fit in a Noise frame of {MAX_FRAME} bytes")]
    FrameTooLarge,
    /// A message failed authentication: it was altered, truncated or replayed.
    #[error("a Noise message failed authentication")]
    DecryptFailed,
    /// The remote sent bytes that the handshake's message order does not allow here.
    #[error("the remote sent data out of the handshake's message order")]
    HandshakeMessageOutOfOrder,
    /// [`Handshake::handle_input`] was called after the handshake finished or failed.
    #[error("the handshake has already finished or failed")]
    HandshakeFinished,
    /// A direction sent or received 2^64-1 frames, which Noise forbids.
    #[error("the Noise nonce is exhausted")]
    NonceExhausted,
    /// [`RecvCipher::decrypt_frame`] was called while [`RecvCipher::decrypt`] still
    /// held the start of a frame: the byte stream would be decrypted out of order.
    #[error("transport bytes buffered by the cipher were not taken over")]
    BufferedInput,
    /// Signing the local handshake payload with the identity key failed.
    #[error("signing the handshake payload failed")]
    Signing(#[source] libp2p_identity::SigningError),
}

impl NoiseError {
    fn from_snow(error: snow::Error) -> Self {
        match error {
            snow::Error::Decrypt => Self::DecryptFailed,
            other => Self::Snow(other.to_string()),
        }
    }
}

/// What [`Handshake::handle_input`] achieved.
#[derive(Debug)]
pub enum HandshakeProgress {
    /// More input from the remote is needed.
    Pending,
    /// The handshake completed; the connection is now encrypted with the session inside.
    Done(Box<Established>),
}

/// A completed handshake: the encrypted session and the remote's proven identity.
#[derive(Debug)]
pub struct Established {
    /// The transport encryption of the connection.
    pub session: Session,
    /// The remote's PeerId, derived from its identity key.
    pub remote_peer: PeerId,
    /// The remote's identity key, whose signature over its static key was verified.
    pub remote_public_key: PublicKey,
    /// The extensions the remote announced in its handshake payload, if any.
    pub remote_extensions: Option<NoiseExtensions>,
    /// Ciphertext that arrived after the final handshake message, in the same input:
    /// feed it to [`Session::decrypt`] before anything read later.
    pub rest: Bytes,
}

/// A node's Noise static key with the handshake payload that goes with it: its libp2p
/// identity key and the identity's signature over the static key. Made once, it saves
/// every handshake a key generation and a signature. Cheap to clone.
#[derive(Clone)]
pub struct LocalStatic(Arc<LocalStaticInner>);

struct LocalStaticInner {
    secret: [u8; 32],
    payload: Vec<u8>,
}

impl std::fmt::Debug for LocalStatic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStatic").finish_non_exhaustive()
    }
}

impl LocalStatic {
    /// Draws a static key from `rng` and signs it with `identity`.
    pub fn generate(identity: &Keypair, rng: &mut Rng) -> Result<Self, NoiseError> {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret);
        let public = crypto::x25519_public_key(&secret)?;
        let payload = payload::encode_local(identity, &public)?;
        if payload.len() + HANDSHAKE_OVERHEAD > MAX_FRAME {
            return Err(NoiseError::FrameTooLarge);
        }
        Ok(Self(Arc::new(LocalStaticInner { secret, payload })))
    }
}

/// One connection's Noise XX handshake, fed with socket bytes until it is done.
///
/// The initiator writes message 1 in [`Handshake::new`], reads message 2 and writes
/// message 3 in the same [`Handshake::handle_input`] call that returns
/// [`HandshakeProgress::Done`]. The responder writes message 2 when it has read
/// message 1 and is done when it has read message 3.
pub struct Handshake {
    role: Role,
    /// The Noise state; `None` once the handshake finished or failed.
    state: Option<HandshakeState>,
    step: Step,
    /// The static key and the payload sent with it.
    local: LocalStatic,
    expected_remote: Option<PeerId>,
    /// Received bytes not yet consumed as a complete frame.
    received: BytesMut,
}

/// The handshake message a [`Handshake`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Responder: the initiator's ephemeral key.
    Message1,
    /// Initiator: the responder's keys and identity.
    Message2,
    /// Responder: the initiator's static key and identity.
    Message3,
}

impl Handshake {
    /// Starts a handshake; as initiator writes message 1 (framed) into `out`.
    ///
    /// `identity` signs the fresh static key; if `expected_remote` is given, the
    /// handshake fails unless the remote proves to be that peer. The handshake forks
    /// its own generator from `rng` for its static and ephemeral keys.
    pub fn new(
        role: Role,
        identity: &Keypair,
        expected_remote: Option<PeerId>,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<Self, NoiseError> {
        let mut handshake_rng = rng.fork();
        let local = LocalStatic::generate(identity, &mut handshake_rng)?;
        Self::start(role, local, expected_remote, handshake_rng, out)
    }

    /// Starts a handshake with the static key `local` (shared by many handshakes), as
    /// [`Handshake::new`] does with a fresh one. The ephemeral key comes from a
    /// generator forked from `rng`.
    pub fn with_static(
        role: Role,
        local: &LocalStatic,
        expected_remote: Option<PeerId>,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) -> Result<Self, NoiseError> {
        Self::start(role, local.clone(), expected_remote, rng.fork(), out)
    }

    fn start(
        role: Role,
        local: LocalStatic,
        expected_remote: Option<PeerId>,
        rng: Rng,
        out: &mut Vec<u8>,
    ) -> Result<Self, NoiseError> {
        let params = NOISE_PARAMS.parse().map_err(NoiseError::from_snow)?;
        let builder = snow::Builder::with_resolver(params, crypto::resolver(rng))
            .local_private_key(&local.0.secret)
            .map_err(NoiseError::from_snow)?;
        let (state, step) = match role {
            Role::Initiator => (builder.build_initiator(), Step::Message2),
            Role::Responder => (builder.build_responder(), Step::Message1),
        };
        let mut state = state.map_err(NoiseError::from_snow)?;
        if role == Role::Initiator {
            // Message 1 is `e` alone: libp2p sends no payload before keys are agreed.
            write_message(&mut state, &[], out)?;
        }

        Ok(Self {
            role,
            state: Some(state),
            step,
            local,
            expected_remote,
            received: BytesMut::new(),
        })
    }

    /// Feeds bytes from the socket (any split); writes framed handshake messages to send into `out`.
    ///
    /// Returns [`HandshakeProgress::Done`] once the remote is authenticated. Any error
    /// ends the handshake: later calls fail with [`NoiseError::HandshakeFinished`].
    pub fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<HandshakeProgress, NoiseError> {
        let Some(mut state) = self.state.take() else {
            return Err(NoiseError::HandshakeFinished);
        };
        self.received.extend_from_slice(input);
        let Some(frame_len) = complete_frame_len(&self.received) else {
            self.state = Some(state);
            return Ok(HandshakeProgress::Pending);
        };
        let frame = &self.received[LEN_PREFIX..LEN_PREFIX + frame_len];
        let mut payload = vec![0u8; frame_len];
        let payload_len = state
            .read_message(frame, &mut payload)
            .map_err(NoiseError::from_snow)?;
        payload.truncate(payload_len);
        self.received.advance(LEN_PREFIX + frame_len);

        match self.step {
            Step::Message1 => {
                // Message 1 carries no libp2p payload; whatever is there is ignored.
                // The initiator cannot send more before it has read message 2.
                if !self.received.is_empty() {
                    return Err(NoiseError::HandshakeMessageOutOfOrder);
                }
                write_message(&mut state, &self.local.0.payload, out)?;
                self.step = Step::Message3;
                self.state = Some(state);
                Ok(HandshakeProgress::Pending)
            }
            Step::Message2 => {
                // The responder cannot send more before it has read message 3.
                if !self.received.is_empty() {
                    return Err(NoiseError::HandshakeMessageOutOfOrder);
                }
                let remote = self.verify_remote(&state, &payload)?;
                write_message(&mut state, &self.local.0.payload, out)?;
                self.finish(state, remote)
            }
            Step::Message3 => {
                let remote = self.verify_remote(&state, &payload)?;
                self.finish(state, remote)
            }
        }
    }

    /// Checks the remote's payload against the static key it sent.
    fn verify_remote(
        &self,
        state: &HandshakeState,
        payload: &[u8],
    ) -> Result<payload::RemoteIdentity, NoiseError> {
        let remote_static = state
            .get_remote_static()
            .ok_or_else(|| NoiseError::Snow("no remote static key after its message".into()))?;
        let remote = payload::verify_remote(payload, remote_static)?;
        if let Some(expected) = self.expected_remote
            && expected != remote.peer_id
        {
            return Err(NoiseError::PeerIdMismatch {
                expected,
                actual: remote.peer_id,
            });
        }
        Ok(remote)
    }

    fn finish(
        &mut self,
        state: HandshakeState,
        remote: payload::RemoteIdentity,
    ) -> Result<HandshakeProgress, NoiseError> {
        let mut state = state;
        if !state.is_handshake_finished() {
            return Err(NoiseError::Snow("handshake finished early".into()));
        }
        // Noise's Split(): the initiator sends with the first key, the responder with
        // the second. The transport ciphers are our own, so they can work in place.
        let (first, second) = state.dangerously_get_raw_split();
        let (send, recv) = match self.role {
            Role::Initiator => (first, second),
            Role::Responder => (second, first),
        };
        let session = Session::new(SendCipher::new(&send)?, RecvCipher::new(&recv)?);
        tracing::debug!(role = ?self.role, remote = %remote.peer_id, "noise handshake done");
        Ok(HandshakeProgress::Done(Box::new(Established {
            session,
            remote_peer: remote.peer_id,
            remote_public_key: remote.public_key,
            remote_extensions: remote.extensions,
            rest: self.received.split().freeze(),
        })))
    }
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("step", &self.step)
            .field("finished", &self.state.is_none())
            .field("expected_remote", &self.expected_remote)
            .field("buffered", &self.received.len())
            .finish_non_exhaustive()
    }
}

/// The body length of the frame at the start of `buf`, if all of it has arrived.
fn complete_frame_len(buf: &[u8]) -> Option<usize> {
    let prefix = buf.get(..LEN_PREFIX)?;
    let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    (buf.len() >= LEN_PREFIX + len).then_some(len)
}

/// Writes the next handshake message with `payload`, framed, to `out`.
fn write_message(
    state: &mut HandshakeState,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), NoiseError> {
    let start = out.len();
    let room = (payload.len() + HANDSHAKE_OVERHEAD).min(MAX_FRAME);
    out.resize(start + LEN_PREFIX + room, 0);
    let written = match state.write_message(payload, &mut out[start + LEN_PREFIX..]) {
        Ok(written) => written,
        Err(error) => {
            out.truncate(start);
            return Err(NoiseError::from_snow(error));
        }
    };
    let Ok(len) = u16::try_from(written) else {
        out.truncate(start);
        return Err(NoiseError::FrameTooLarge);
    };
    out[start..start + LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
    out.truncate(start + LEN_PREFIX + written);
    Ok(())
}
