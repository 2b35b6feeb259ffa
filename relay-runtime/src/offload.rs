//! The cipher work of each socket, on its own reader and writer tasks.
//!
//! The driver asks the node for crypto offload ([`relay_proto::Node::enable_crypto_offload`]):
//! once a connection is open the node hands out its Noise ciphers and exchanges
//! plaintext with the driver. The send cipher goes to the socket's writer task down its
//! queue, after the last ciphertext, so the writer encrypts everything behind it. The
//! receive cipher goes to the reader task through a [`Handoff`]: the reader may have
//! read ahead, and the chunks it sent as ciphertext are still on their way to the
//! driver, so the driver decrypts those with the cipher until it has caught up with the
//! reader, who takes the cipher over at exactly that byte. Each byte is decrypted once,
//! in order, by one of them.
//!
//! Both ciphers work in place. The reader decrypts frames inside the block it read
//! them into and passes slices on; it reads so that a frame never straddles two
//! blocks. The writer encrypts the node's plaintext where it lies and writes the length
//! prefixes and tags around it with vectored writes. So the bytes of a busy connection
//! are copied by neither, and the cipher work of many connections runs on as many
//! cores as the runtime has.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use relay_proto::conn::noise::split::frame_size;
use relay_proto::conn::noise::{LEN_PREFIX, MAX_FRAME, MAX_PLAINTEXT, RecvCipher, SendCipher};
use relay_proto::conn::recycle::Recycler;

/// Most bytes read from a socket in one go.
const READ_CHUNK: usize = 128 * 1024;
/// While bulk data arrives, reads go into blocks of this size, each cut into the
/// chunks read and reused once the node has handled them.
const READ_BLOCK: usize = 512 * 1024;
/// A quiet socket reads into blocks of this size, so an idle connection holds little.
const QUIET_READ_BLOCK: usize = 16 * 1024;
/// Reads of at least this many bytes count as bulk data.
const BULK_READ: usize = 16 * 1024;
/// The largest Noise frame on the wire: length prefix and body.
const WIRE_FRAME: usize = LEN_PREFIX + MAX_FRAME;

/// What a socket's writer task is given, in order.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Bytes to write as they are.
    Ciphertext(Bytes),
    /// The connection's send cipher: what follows is plaintext.
    Cipher(Box<SendCipher>),
    /// Plaintext to encrypt with the send cipher and write.
    Plaintext(BytesMut),
}

impl Outgoing {
    /// The bytes the driver counts against the socket's backlog.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Ciphertext(b) => b.len(),
            Outgoing::Cipher(_) => 0,
            Outgoing::Plaintext(b) => b.len(),
        }
    }
}

/// The receive cipher on its way from the node to the socket's reader.
#[derive(Debug, Default)]
pub(crate) struct Handoff(Mutex<HandoffState>);

#[derive(Debug, Default)]
enum HandoffState {
    /// The node still decrypts.
    #[default]
    InNode,
    /// The node handed the cipher out; it is positioned at byte `at` of the socket's
    /// input, with the start of a frame possibly buffered in it.
    Offered { cipher: Box<RecvCipher>, at: u64 },
    /// The reader owns the cipher.
    Taken,
}

/// What the driver does with ciphertext the reader sent.
#[derive(Debug)]
pub(crate) enum InFlight {
    /// The node decrypts it.
    ToNode,
    /// Decrypted here: feed this plaintext to the node.
    Decrypted(Bytes),
    /// It failed authentication, or came when it should not: close the connection.
    Failed,
}

impl Handoff {
    /// The node handed out `cipher` after the first `at` bytes of the socket.
    pub(crate) fn offer(&self, cipher: RecvCipher, at: u64) {
        *self.lock() = HandoffState::Offered {
            cipher: Box::new(cipher),
            at,
        };
    }

    /// For the driver: ciphertext the reader sent before it took the cipher.
    pub(crate) fn in_flight(&self, ciphertext: &[u8]) -> InFlight {
        let mut state = self.lock();
        match &mut *state {
            HandoffState::InNode => InFlight::ToNode,
            HandoffState::Offered { cipher, at } => {
                *at += ciphertext.len() as u64;
                let mut plaintext = BytesMut::new();
                match cipher.decrypt(ciphertext, &mut plaintext) {
                    Ok(()) => InFlight::Decrypted(plaintext.freeze()),
                    Err(_) => InFlight::Failed,
                }
            }
            HandoffState::Taken => InFlight::Failed,
        }
    }

    /// For the reader: the cipher, if it was offered at exactly `offset`, the byte the
    /// reader reads next; ciphertext before it has all been decrypted then.
    fn take_at(&self, offset: u64) -> Option<Box<RecvCipher>> {
        let mut state = self.lock();
        if !matches!(&*state, HandoffState::Offered { at, .. } if *at == offset) {
            return None;
        }
        match std::mem::replace(&mut *state, HandoffState::Taken) {
            HandoffState::Offered { cipher, .. } => Some(cipher),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HandoffState> {
        // A panic while holding it leaves a consistent state: every arm is complete.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A socket's reading side: the block it reads into, and the receive cipher once
/// handed over.
#[derive(Debug)]
pub(crate) struct Reader {
    /// Bytes read and not passed on yet (the start of a frame, when decrypting), then
    /// zeroed room to read into.
    buf: BytesMut,
    /// How many bytes at the front of `buf` were read and not passed on.
    filled: usize,
    blocks: Recycler,
    block: usize,
    /// Bytes read from the socket so far.
    offset: u64,
    cipher: Option<Box<RecvCipher>>,
}

/// What one read gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// Ciphertext for the node (or for the driver, see [`Handoff`]).
    Ciphertext(Bytes),
    /// Decrypted frames, in order; none while a frame is incomplete.
    Plaintext(Vec<Bytes>),
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            filled: 0,
            blocks: Recycler::default(),
            block: QUIET_READ_BLOCK,
            offset: 0,
            cipher: None,
        }
    }
}

impl Reader {
    /// Where to read next: room in the block, as much as may be read at once.
    pub(crate) fn room(&mut self) -> &mut [u8] {
        let len = self.prepare();
        &mut self.buf[self.filled..self.filled + len]
    }

    /// Takes `n` bytes just read into [`Reader::room`]; passes on what it can.
    pub(crate) fn commit(&mut self, n: usize, handoff: &Handoff) -> io::Result<Read> {
        let at = self.offset;
        self.offset += n as u64;
        self.filled += n;
        let bulk = n >= BULK_READ;
        if bulk {
            self.block = READ_BLOCK;
        }
        if self.cipher.is_none() {
            let Some(mut cipher) = handoff.take_at(at) else {
                // Until the cipher comes, everything read is passed on as it is.
                let chunk = self.buf.split_to(self.filled).freeze();
                self.filled = 0;
                if !bulk {
                    self.quiet();
                }
                return Ok(Read::Ciphertext(chunk));
            };
            // The start of a frame the node or the driver decrypted up to goes in
            // front of this read.
            let buffered = cipher.take_buffered();
            if !buffered.is_empty() {
                let read = self.buf.split_to(self.filled);
                self.new_block(&[&buffered, &read], 0);
            }
            self.cipher = Some(cipher);
        }
        let Some(cipher) = &mut self.cipher else {
            return Ok(Read::Plaintext(Vec::new()));
        };
        let mut frames = Vec::new();
        while let Some(size) = frame_size(&self.buf[..self.filled]).filter(|s| *s <= self.filled) {
            let mut frame = self.buf.split_to(size);
            self.filled -= size;
            match cipher.decrypt_frame(&mut frame) {
                Ok(Some(plaintext)) => frames.push(plaintext),
                Ok(None) => return Err(io::Error::other("a whole frame was not decrypted")),
                Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
            }
        }
        if !bulk {
            self.quiet();
        }
        Ok(Read::Plaintext(frames))
    }

    /// Makes room to read and says how much to read.
    ///
    /// Decrypting in place needs each frame whole in one block. A bulk block therefore
    /// takes reads only while they leave room for a whole frame behind them, then reads
    /// just up to the end of the frame begun, so that a new block starts on a frame
    /// boundary. Only a quiet socket's small block may have to move the start of a
    /// frame to a new block.
    fn prepare(&mut self) -> usize {
        let front = &self.buf[..self.filled];
        // How far the frame begun at the front reaches, as far as known.
        let front_end = match frame_size(front) {
            _ if front.is_empty() => 0,
            Some(size) => size,
            // The length prefix is incomplete: the next byte tells more.
            None => front.len() + 1,
        };
        if self.buf.len() == self.filled || self.buf.len() < front_end {
            let carried = self.buf.split_to(self.filled);
            self.new_block(&[&carried], front_end);
        }
        if self.cipher.is_some() && self.buf.len() >= 2 * WIRE_FRAME {
            let free = self.buf.len() - self.filled;
            let len = free
                .saturating_sub(WIRE_FRAME)
                .max(front_end.saturating_sub(self.filled));
            if len > 0 {
                return len.min(READ_CHUNK);
            }
            // Nothing begun, and too little room left for a whole frame.
            self.new_block(&[], 0);
        }
        (self.buf.len() - self.filled).min(READ_CHUNK)
    }

    /// Moves on to a fresh (or reused) zeroed block of at least `min_size` bytes,
    /// holding `carried` at its front as bytes read and not passed on.
    fn new_block(&mut self, carried: &[&[u8]], min_size: usize) {
        let carried_len: usize = carried.iter().map(|c| c.len()).sum();
        let size = self.block.max(min_size).max(carried_len + 1);
        // The rest of the used-up block is retired, to be reused once its chunks are gone.
        self.buf.clear();
        self.blocks.reserve(&mut self.buf, size, size);
        for part in carried {
            self.buf.extend_from_slice(part);
        }
        self.filled = carried_len;
        let capacity = self.buf.capacity();
        self.buf.resize(capacity, 0);
    }

    /// After a small read: a socket that was busy lets its bulk blocks go (each once
    /// its chunks are handled) and reads into small blocks again.
    fn quiet(&mut self) {
        if self.block != READ_BLOCK || self.filled > 0 {
            return;
        }
        self.block = QUIET_READ_BLOCK;
        self.blocks.clear();
        self.buf = BytesMut::new();
    }
}

/// A socket's writing side: the send cipher once handed over, and room for the frame
/// prefixes and tags it writes around the encrypted bytes.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    cipher: Option<Box<SendCipher>>,
    trailers: BytesMut,
}

/// Room for this many prefixes and tags is allocated at once.
const TRAILER_BLOCK: usize = 128 * (LEN_PREFIX + relay_proto::conn::noise::TAG_LEN);

impl Writer {
    /// Turns what the driver queued into chunks to write, in order, encrypting
    /// plaintext in place.
    pub(crate) fn push(&mut self, item: Outgoing, out: &mut VecDeque<Bytes>) -> io::Result<()> {
        match item {
            Outgoing::Ciphertext(bytes) => out.push_back(bytes),
            Outgoing::Cipher(cipher) => self.cipher = Some(cipher),
            Outgoing::Plaintext(mut plaintext) => {
                let Some(cipher) = &mut self.cipher else {
                    return Err(io::Error::other("plaintext before the send cipher"));
                };
                while !plaintext.is_empty() {
                    let mut body = plaintext.split_to(plaintext.len().min(MAX_PLAINTEXT));
                    let sealed = cipher
                        .seal_in_place(&mut body)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if self.trailers.capacity() < sealed.prefix.len() + sealed.tag.len() {
                        self.trailers = BytesMut::with_capacity(TRAILER_BLOCK);
                    }
                    self.trailers.extend_from_slice(&sealed.prefix);
                    out.push_back(self.trailers.split().freeze());
                    out.push_back(body.freeze());
                    self.trailers.extend_from_slice(&sealed.tag);
                    out.push_back(self.trailers.split().freeze());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
