//! Application streams: `AsyncRead + AsyncWrite` over a node's muxed streams.
//!
//! Reads come from a buffer the driver fills; consumed bytes are reported back in
//! batches so the peer's send window reopens, and reads made while the driver has not
//! taken the last report yet add to it without another message. Writes collect in a buffer the driver
//! takes from and feeds to the node as the send window allows; at most [`WRITE_BUFFER`]
//! bytes wait per stream, which is the backpressure a writer feels. Writes made while
//! the driver has not taken the previous ones yet cost no message to it.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use futures::channel::mpsc;
use futures::io::{AsyncRead, AsyncWrite};
use relay_proto::StreamRef;
use relay_proto::conn::recycle::Recycler;
use relay_proto::identity::PeerId;

use crate::Command;

/// Bytes a writer may have queued in the driver before `poll_write` waits.
pub(crate) const WRITE_BUFFER: usize = 256 * 1024;
/// Consumed bytes are reported to the node in batches of at least this size.
const CONSUME_BATCH: usize = 32 * 1024;
/// While bulk data is written, the write buffer grows in blocks of at least this size,
/// reused once the node has taken their bytes.
const WRITE_BLOCK: usize = 64 * 1024;
/// Writes of at least this many bytes count as bulk data.
const BULK_WRITE: usize = 16 * 1024;

/// What a stream asks of the driver.
#[derive(Debug)]
pub(crate) enum StreamCommand {
    /// Bytes wait in [`StreamState::write_buf`].
    Write(StreamRef),
    /// Bytes wait in [`StreamState::consumed`].
    Consumed(StreamRef),
    Close(StreamRef),
    Reset(StreamRef),
    Dropped(StreamRef),
}

/// The state a stream shares with the driver.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) recv: VecDeque<Bytes>,
    pub(crate) recv_eof: bool,
    pub(crate) reset: bool,
    pub(crate) read_waker: Option<Waker>,
    /// Bytes handed to the driver but not yet accepted by the node.
    pub(crate) write_pending: usize,
    pub(crate) write_waker: Option<Waker>,
    /// Bytes written and not taken by the driver yet.
    write_buf: BytesMut,
    /// Used-up blocks of `write_buf`.
    write_blocks: Recycler,
    /// A [`StreamCommand::Write`] is on its way to the driver.
    write_queued: bool,
    /// Bytes read and not reported to the node yet.
    consumed: usize,
    /// A [`StreamCommand::Consumed`] is on its way to the driver.
    consume_queued: bool,
}

impl StreamState {
    pub(crate) fn wake_reader(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    pub(crate) fn wake_writer(&mut self) {
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    /// Takes the bytes written since the last call, for the driver.
    pub(crate) fn take_writes(&mut self) -> Option<Bytes> {
        self.write_queued = false;
        if self.write_buf.is_empty() {
            return None;
        }
        let chunk = self.write_buf.split().freeze();
        if chunk.len() < BULK_WRITE {
            // Light traffic: let the bulk blocks go with their last chunks.
            self.write_buf = BytesMut::new();
            self.write_blocks.clear();
        }
        Some(chunk)
    }

    /// Takes the bytes read since the last call, for the driver to report.
    pub(crate) fn take_consumed(&mut self) -> usize {
        self.consume_queued = false;
        std::mem::take(&mut self.consumed)
    }

    /// Forgets bytes written and not taken, as a reset does.
    pub(crate) fn discard_writes(&mut self) {
        self.write_buf = BytesMut::new();
        self.write_blocks.clear();
    }
}

pub(crate) type SharedState = Arc<Mutex<StreamState>>;

/// A bidirectional stream to a peer, negotiated for one protocol.
///
/// Closing ([`AsyncWrite::poll_close`]) finishes our side; the peer may still send.
/// Dropping an unclosed stream finishes it after pending writes and discards whatever
/// the peer sends afterwards.
#[derive(Debug)]
pub struct Stream {
    id: StreamRef,
    peer: PeerId,
    protocol: String,
    state: SharedState,
    commands: mpsc::UnboundedSender<Command>,
    closed: bool,
}

impl Stream {
    pub(crate) fn new(
        id: StreamRef,
        peer: PeerId,
        protocol: String,
        state: SharedState,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Self {
        Self {
            id,
            peer,
            protocol,
            state,
            commands,
            closed: false,
        }
    }

    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The negotiated protocol.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The node's id of this stream.
    pub fn id(&self) -> StreamRef {
        self.id
    }

    /// Resets the stream in both directions.
    pub fn reset(mut self) {
        self.closed = true;
        self.send(StreamCommand::Reset(self.id));
    }

    fn send(&self, command: StreamCommand) {
        let _ = self.commands.unbounded_send(Command::Stream(command));
    }

    /// Counts `read` bytes consumed; says whether to tell the driver (which takes the
    /// count when it gets to it): at a batch's worth, or when nothing is left to read.
    fn count_consumed(state: &mut StreamState, read: usize, drained: bool) -> bool {
        state.consumed += read;
        let due = state.consumed > 0 && (drained || state.consumed >= CONSUME_BATCH);
        due && !std::mem::replace(&mut state.consume_queued, true)
    }
}

fn broken_pipe(reset: bool) -> io::Error {
    if reset {
        io::Error::new(io::ErrorKind::ConnectionReset, "stream reset")
    } else {
        io::Error::new(io::ErrorKind::BrokenPipe, "stream closed")
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut state = this.state.lock().expect("not poisoned");
        let mut read = 0;
        while read < buf.len() {
            let Some(front) = state.recv.front_mut() else {
                break;
            };
            let n = front.len().min(buf.len() - read);
            buf[read..read + n].copy_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                state.recv.pop_front();
            }
            read += n;
        }
        if read > 0 {
            let drained = state.recv.is_empty();
            let notify = Self::count_consumed(&mut state, read, drained);
            drop(state);
            if notify {
                this.send(StreamCommand::Consumed(this.id));
            }
            return Poll::Ready(Ok(read));
        }
        if state.reset {
            return Poll::Ready(Err(broken_pipe(true)));
        }
        if state.recv_eof || buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        state.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(broken_pipe(false)));
        }
        let mut state = self.state.lock().expect("not poisoned");
        if state.reset {
            return Poll::Ready(Err(broken_pipe(true)));
        }
        if state.write_pending >= WRITE_BUFFER {
            state.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(WRITE_BUFFER - state.write_pending);
        let StreamState {
            write_buf,
            write_blocks,
            ..
        } = &mut *state;
        if n >= BULK_WRITE {
            write_blocks.reserve(write_buf, n, WRITE_BLOCK);
        }
        write_buf.extend_from_slice(&buf[..n]);
        state.write_pending += n;
        let notify = !std::mem::replace(&mut state.write_queued, true);
        drop(state);
        if notify {
            self.send(StreamCommand::Write(self.id));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state.lock().expect("not poisoned");
        if state.reset {
            return Poll::Ready(Err(broken_pipe(true)));
        }
        if state.write_pending > 0 {
            state.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        // Queue the FIN behind pending writes: the driver keeps per-stream order.
        self.closed = true;
        self.send(StreamCommand::Close(self.id));
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The driver reports what was read along with what was not.
        self.send(StreamCommand::Dropped(self.id));
    }
}
