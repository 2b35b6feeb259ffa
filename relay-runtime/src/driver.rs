//! The event loop: one task owning the [`Node`], in priority order commands, sockets,
//! timer; plus a reader and a writer task per socket.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::channel::{mpsc, oneshot};
use futures::future::{Fuse, FutureExt};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::{SinkExt, StreamExt};
use relay_proto::conn::offload::TransportCiphers;
use relay_proto::identity::PeerId;
use relay_proto::node::addr::tcp_multiaddr;
use relay_proto::node::{Event, Input, Node, Output};
use relay_proto::{ConnectionId, StreamRef};

use crate::offload::{self, Handoff, InFlight, Outgoing, Read};
use crate::socket::{BoxReader, BoxWriter};
use crate::stream::{SharedState, StreamCommand, StreamState, WRITE_BUFFER};
use crate::{BoxFuture, BoxSocket, Command, Error, Listener, Runtime, Shared, Stream};

/// Most queued chunks written with one vectored write.
const WRITE_BATCH: usize = 64;
/// Once this many bytes wait for a socket's writer, application writes on its
/// connection are held back until half of them are written. The muxer's windows let a
/// fast writer queue megabytes; this keeps the queue (and the memory it pins) short,
/// and the writer's application feels the socket's pace.
const WRITE_BACKLOG: usize = 512 * 1024;
/// Socket events (reads, accepted and connected sockets) waiting for the driver.
const SOCKET_EVENTS: usize = 8;

/// Returns `Pending` once, letting other tasks on the executor run.
struct YieldNow(bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

enum SocketEvent {
    Accepted {
        socket: BoxSocket,
        local: SocketAddr,
        remote: SocketAddr,
    },
    Connected {
        conn: ConnectionId,
        socket: BoxSocket,
        local: SocketAddr,
    },
    DialFailed {
        conn: ConnectionId,
        error: io::Error,
    },
    Data {
        conn: ConnectionId,
        bytes: Bytes,
    },
    /// Frames the reader decrypted with the connection's receive cipher.
    Decrypted {
        conn: ConnectionId,
        frames: Vec<Bytes>,
    },
    Eof {
        conn: ConnectionId,
    },
    /// A socket's writer caught up after the driver held writes back.
    Drained {
        conn: ConnectionId,
    },
}

/// A socket, as the driver sees it.
struct Writer {
    queue: mpsc::UnboundedSender<Outgoing>,
    backlog: Arc<Backlog>,
    /// Where the receive cipher goes to the reader.
    handoff: Arc<Handoff>,
    /// Ciphertext bytes read from the socket and handled here.
    delivered: u64,
}

/// What waits for a socket's writer task.
#[derive(Debug, Default)]
struct Backlog {
    /// Bytes queued and not written yet.
    bytes: AtomicUsize,
    /// The driver holds writes back and waits for [`SocketEvent::Drained`].
    waiting: AtomicBool,
}

impl Backlog {
    /// Whether the driver should hold writes back; if so, the writer sends
    /// [`SocketEvent::Drained`] once half the backlog is written.
    fn congested(&self) -> bool {
        if self.bytes.load(Ordering::SeqCst) < WRITE_BACKLOG {
            return false;
        }
        self.waiting.store(true, Ordering::SeqCst);
        // The writer may have caught up before it could see the flag.
        let caught_up = self.bytes.load(Ordering::SeqCst) < WRITE_BACKLOG / 2;
        !(caught_up && self.waiting.swap(false, Ordering::SeqCst))
    }

    /// Records `n` bytes written; whether the driver waits for word of it.
    fn written(&self, n: usize) -> bool {
        let left = self.bytes.fetch_sub(n, Ordering::SeqCst) - n;
        left < WRITE_BACKLOG / 2 && self.waiting.swap(false, Ordering::SeqCst)
    }
}

#[derive(Debug, Default)]
struct StreamEntry {
    state: SharedState,
    /// Writes the send window has not taken yet, in order.
    pending: VecDeque<Bytes>,
    close_requested: bool,
    closed: bool,
    remote_finished: bool,
    dropped: bool,
}

struct Driver<R: Runtime> {
    runtime: R,
    node: Node,
    commands: mpsc::UnboundedSender<Command>,
    sockets: mpsc::Sender<SocketEvent>,
    writers: std::collections::HashMap<ConnectionId, Writer>,
    streams: std::collections::HashMap<StreamRef, StreamEntry>,
    acceptors: std::collections::HashMap<String, mpsc::UnboundedSender<Stream>>,
    dials: std::collections::HashMap<ConnectionId, oneshot::Sender<Result<PeerId, Error>>>,
    /// Sockets still connecting; a send (or the drop of the driver) abandons the connect.
    connecting: std::collections::HashMap<ConnectionId, oneshot::Sender<()>>,
    opens: std::collections::HashMap<StreamRef, oneshot::Sender<Result<Stream, Error>>>,
    pings:
        std::collections::HashMap<ConnectionId, VecDeque<oneshot::Sender<Result<Duration, Error>>>>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    reservations:
        std::collections::HashMap<PeerId, Vec<oneshot::Sender<Result<crate::Reservation, Error>>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

pub(crate) fn start<R: Runtime>(
    runtime: R,
    mut node: Node,
    listeners: Vec<Box<dyn Listener>>,
    commands_rx: mpsc::UnboundedReceiver<Command>,
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
) -> io::Result<()> {
    let (sockets, sockets_rx) = mpsc::channel(SOCKET_EVENTS);
    let now = Instant::now();
    // Each socket's reader and writer task decrypt and encrypt its bytes, so the cipher
    // work spreads over the runtime's threads.
    node.enable_crypto_offload();
    for listener in listeners {
        let local = listener.local_addr()?;
        node.add_listen_addr(now, tcp_multiaddr(local));
        runtime.spawn(Box::pin(accept_loop(listener, sockets.clone())));
    }
    while node.poll_output().is_some() {}
    *shared.listen_addrs.lock().expect("not poisoned") = node.listen_addrs().to_vec();
    let driver = Driver {
        runtime: runtime.clone(),
        node,
        commands,
        sockets,
        writers: Default::default(),
        streams: Default::default(),
        acceptors: Default::default(),
        dials: Default::default(),
        connecting: Default::default(),
        opens: Default::default(),
        pings: Default::default(),
        subscribers: Vec::new(),
        reservations: Default::default(),
        shutdown: None,
    };
    runtime.spawn(Box::pin(driver.run(commands_rx, sockets_rx)));
    Ok(())
}

async fn accept_loop(mut listener: Box<dyn Listener>, mut sockets: mpsc::Sender<SocketEvent>) {
    loop {
        match listener.accept().await {
            Ok((socket, local, remote)) => {
                if sockets
                    .send(SocketEvent::Accepted {
                        socket,
                        local,
                        remote,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                if sockets.is_closed() {
                    return;
                }
            }
        }
    }
}

async fn read_loop(
    conn: ConnectionId,
    mut reader: BoxReader,
    mut sockets: mpsc::Sender<SocketEvent>,
    stop: oneshot::Receiver<()>,
    handoff: Arc<Handoff>,
) {
    let mut stop = stop.fuse();
    let mut state = offload::Reader::default();
    loop {
        let room = state.room();
        let n = futures::select_biased! {
            _ = stop => return,
            r = reader.read(room).fuse() => r.unwrap_or(0),
        };
        let event = if n == 0 {
            SocketEvent::Eof { conn }
        } else {
            match state.commit(n, &handoff) {
                Ok(Read::Ciphertext(bytes)) => SocketEvent::Data { conn, bytes },
                Ok(Read::Plaintext(frames)) if frames.is_empty() => continue,
                Ok(Read::Plaintext(frames)) => SocketEvent::Decrypted { conn, frames },
                Err(error) => {
                    tracing::debug!(%conn, %error, "reading the socket failed");
                    SocketEvent::Eof { conn }
                }
            }
        };
        let eof = matches!(event, SocketEvent::Eof { .. });
        if sockets.send(event).await.is_err() || eof {
            return;
        }
    }
}

async fn write_loop(
    conn: ConnectionId,
    mut writer: BoxWriter,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<Backlog>,
    mut sockets: mpsc::Sender<SocketEvent>,
    stop_reader: oneshot::Sender<()>,
) {
    let mut batch = VecDeque::new();
    let mut crypto = offload::Writer::default();
    while let Some(item) = queue.next().await {
        let mut len = item.len();
        let mut pushed = crypto.push(item, &mut batch);
        // What else is queued already goes out with it, in one system call.
        while pushed.is_ok() && batch.len() < WRITE_BATCH {
            match queue.try_recv() {
                Ok(item) => {
                    len += item.len();
                    pushed = crypto.push(item, &mut batch);
                }
                Err(_) => break,
            }
        }
        if let Err(error) = pushed {
            tracing::debug!(%conn, %error, "cannot write to the socket");
            break;
        }
        if write_batch(&mut writer, &mut batch).await.is_err() {
            break;
        }
        if backlog.written(len) && sockets.send(SocketEvent::Drained { conn }).await.is_err() {
            break;
        }
    }
    let _ = writer.close().await;
    let _ = stop_reader.send(());
}

/// Writes every chunk of `batch`, in order, with vectored writes.
async fn write_batch(writer: &mut BoxWriter, batch: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !batch.is_empty() {
        let mut slices = [io::IoSlice::new(&[]); WRITE_BATCH];
        let count = batch.len().min(WRITE_BATCH);
        for (slice, chunk) in slices.iter_mut().zip(batch.iter()) {
            *slice = io::IoSlice::new(chunk);
        }
        let mut written = writer.write_vectored(&slices[..count]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(front) = batch.front_mut() else {
                break;
            };
            if written < front.len() {
                front.advance(written);
                break;
            }
            written -= front.len();
            batch.pop_front();
        }
    }
    Ok(())
}

impl<R: Runtime> Driver<R> {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut sockets: mpsc::Receiver<SocketEvent>,
    ) {
        let mut deadline: Option<Instant> = None;
        let mut timer: Fuse<BoxFuture<()>> = Fuse::terminated();
        loop {
            let next = self.node.poll_timeout();
            if next != deadline {
                deadline = next;
                timer = match next {
                    Some(at) => self.runtime.sleep_until(at).fuse(),
                    None => Fuse::terminated(),
                };
            }
            futures::select_biased! {
                command = commands.next() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                event = sockets.next() => {
                    if let Some(event) = event {
                        self.on_socket(event);
                    }
                }
                _ = timer => {
                    deadline = None;
                    let now = Instant::now();
                    self.node.handle_timeout(now);
                    if self.node.poll_timeout().is_some_and(|next| next <= now) {
                        // A deadline that does not move would spin this task; let the
                        // socket tasks run before looking again.
                        tracing::debug!("timer re-armed in the past");
                        YieldNow(false).await;
                    }
                }
            }
            self.drain();
            if self.shutdown.is_some() && self.node.num_connections() == 0 {
                self.writers.clear();
                if let Some(reply) = self.shutdown.take() {
                    let _ = reply.send(());
                }
                return;
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Inspect(f) => f(&mut self.node, now),
            Command::Reserve { addr, reply } => match self.node.reserve(now, addr) {
                Ok(relay) => self.reservations.entry(relay).or_default().push(reply),
                Err(error) => {
                    let _ = reply.send(Err(Error::Reservation(error.to_string())));
                }
            },
            Command::Dial { addr, reply } => match self.node.dial(now, addr) {
                Ok(conn) => {
                    self.dials.insert(conn, reply);
                }
                Err(error) => {
                    let _ = reply.send(Err(error.into()));
                }
            },
            Command::OpenStream {
                peer,
                protocol,
                reply,
            } => {
                let Some(&conn) = self.node.connections_to(&peer).first() else {
                    let _ = reply.send(Err(Error::NotConnected(peer)));
                    return;
                };
                match self.node.open_stream(now, conn, &protocol) {
                    Ok(stream) => {
                        self.opens.insert(stream, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(Error::Stream(error.to_string())));
                    }
                }
            }
            Command::Accept { protocol, sender } => {
                self.node.register_protocol(protocol.clone());
                self.acceptors.insert(protocol, sender);
            }
            Command::Ping { peer, reply } => {
                let Some(&conn) = self.node.connections_to(&peer).first() else {
                    let _ = reply.send(Err(Error::NotConnected(peer)));
                    return;
                };
                match self.node.ping(now, conn, 1) {
                    Ok(()) => self.pings.entry(conn).or_default().push_back(reply),
                    Err(error) => {
                        let _ = reply.send(Err(Error::Ping(error.to_string())));
                    }
                }
            }
            Command::Subscribe { sender } => self.subscribers.push(sender),
            Command::Disconnect { peer } => {
                for conn in self.node.connections_to(&peer).to_vec() {
                    self.node.close(now, conn);
                }
            }
            Command::Shutdown { reply } => {
                for conn in self.node.connection_ids().collect::<Vec<_>>() {
                    self.node.close(now, conn);
                }
                self.shutdown = Some(reply);
            }
            Command::Stream(command) => self.on_stream_command(now, command),
        }
    }

    fn on_stream_command(&mut self, now: Instant, command: StreamCommand) {
        match command {
            StreamCommand::Write(stream) => self.flush_writes(now, stream),
            StreamCommand::Consumed(stream) => {
                let Some(entry) = self.streams.get(&stream) else {
                    return;
                };
                let n = entry.state.lock().expect("not poisoned").take_consumed();
                if n > 0 {
                    self.node.stream_consumed(now, stream, n);
                }
            }
            StreamCommand::Close(stream) => {
                let Some(entry) = self.streams.get_mut(&stream) else {
                    return;
                };
                entry.close_requested = true;
                self.flush_writes(now, stream);
            }
            StreamCommand::Reset(stream) => {
                self.streams.remove(&stream);
                let _ = self.node.stream_reset(now, stream);
            }
            StreamCommand::Dropped(stream) => {
                let Some(entry) = self.streams.get_mut(&stream) else {
                    return;
                };
                entry.dropped = true;
                entry.close_requested = true;
                // What was read and not reported yet, and whatever arrived and was never
                // read, goes back to the peer's window.
                let mut state = entry.state.lock().expect("not poisoned");
                let unread: usize = state.recv.drain(..).map(|b| b.len()).sum();
                let consumed = unread + state.take_consumed();
                drop(state);
                if consumed > 0 {
                    self.node.stream_consumed(now, stream, consumed);
                }
                self.flush_writes(now, stream);
            }
        }
    }

    /// Feeds a stream's pending writes to the node as far as its send window and its
    /// socket's backlog allow.
    fn flush_writes(&mut self, now: Instant, stream: StreamRef) {
        let congested = self
            .writers
            .get(&stream.conn)
            .is_some_and(|w| w.backlog.congested());
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let written = entry.state.lock().expect("not poisoned").take_writes();
        entry.pending.extend(written);
        let mut accepted = 0;
        while let Some(front) = entry.pending.front_mut().filter(|_| !congested) {
            match self.node.stream_write(now, stream, front) {
                Ok(0) => break,
                Ok(n) => {
                    accepted += n;
                    front.advance(n);
                    if front.is_empty() {
                        entry.pending.pop_front();
                    }
                }
                Err(error) => {
                    tracing::debug!(?stream, %error, "stream write failed");
                    entry.pending.clear();
                    let mut state = entry.state.lock().expect("not poisoned");
                    state.reset = true;
                    state.write_pending = 0;
                    state.discard_writes();
                    state.wake_writer();
                    state.wake_reader();
                    return;
                }
            }
        }
        if accepted > 0 {
            let mut state = entry.state.lock().expect("not poisoned");
            state.write_pending -= accepted;
            if state.write_pending < WRITE_BUFFER {
                state.wake_writer();
            }
        }
        if entry.pending.is_empty() && entry.close_requested && !entry.closed {
            entry.closed = true;
            let _ = self.node.stream_close(now, stream);
        }
        self.retire_stream(stream);
    }

    /// Forgets a stream that is finished both ways and whose handle is gone.
    fn retire_stream(&mut self, stream: StreamRef) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|e| e.dropped && e.closed && e.remote_finished)
        {
            self.streams.remove(&stream);
        }
    }

    fn on_socket(&mut self, event: SocketEvent) {
        let now = Instant::now();
        match event {
            SocketEvent::Accepted {
                socket,
                local,
                remote,
            } => match self.node.accept(now, local, remote) {
                Ok(conn) => self.attach(conn, socket),
                Err(error) => tracing::info!(%remote, %error, "refused inbound connection"),
            },
            SocketEvent::Connected {
                conn,
                socket,
                local,
            } => {
                self.connecting.remove(&conn);
                if self.node.connection_info(conn).is_none() {
                    // The node gave the connection up while it was connecting.
                    return;
                }
                self.attach(conn, socket);
                self.node.handle_input(
                    now,
                    Input::Connected {
                        conn,
                        local_addr: local,
                    },
                );
            }
            SocketEvent::DialFailed { conn, error } => {
                self.connecting.remove(&conn);
                self.node.handle_input(
                    now,
                    Input::DialFailed {
                        conn,
                        error: error.to_string(),
                    },
                );
            }
            SocketEvent::Data { conn, bytes } => {
                let in_flight = match self.writers.get_mut(&conn) {
                    Some(writer) => {
                        writer.delivered += bytes.len() as u64;
                        writer.handoff.in_flight(&bytes)
                    }
                    None => InFlight::ToNode,
                };
                let input = match in_flight {
                    InFlight::ToNode => Input::Received {
                        conn,
                        bytes: &bytes,
                    },
                    InFlight::Decrypted(bytes) => Input::Decrypted { conn, bytes },
                    InFlight::Failed => Input::Closed { conn },
                };
                self.node.handle_input(now, input);
            }
            SocketEvent::Decrypted { conn, frames } => {
                for bytes in frames {
                    self.node
                        .handle_input(now, Input::Decrypted { conn, bytes });
                }
            }
            SocketEvent::Eof { conn } => self.node.handle_input(now, Input::Closed { conn }),
            SocketEvent::Drained { conn } => {
                let held: Vec<StreamRef> = self
                    .streams
                    .iter()
                    .filter(|(s, e)| s.conn == conn && !e.pending.is_empty())
                    .map(|(s, _)| *s)
                    .collect();
                for stream in held {
                    self.flush_writes(now, stream);
                }
            }
        }
    }

    fn attach(&mut self, conn: ConnectionId, socket: BoxSocket) {
        let (reader, writer) = self.runtime.split(socket);
        let (queue, queue_rx) = mpsc::unbounded();
        let (stop, stop_rx) = oneshot::channel();
        let backlog = Arc::new(Backlog::default());
        let handoff = Arc::new(Handoff::default());
        self.writers.insert(
            conn,
            Writer {
                queue,
                backlog: backlog.clone(),
                handoff: handoff.clone(),
                delivered: 0,
            },
        );
        self.runtime.spawn(Box::pin(read_loop(
            conn,
            reader,
            self.sockets.clone(),
            stop_rx,
            handoff,
        )));
        self.runtime.spawn(Box::pin(write_loop(
            conn,
            writer,
            queue_rx,
            backlog,
            self.sockets.clone(),
            stop,
        )));
    }

    fn drain(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Transmit { conn, data } => self.write(conn, Outgoing::Ciphertext(data)),
                Output::TransmitPlain { conn, data } => self.write(conn, Outgoing::Plaintext(data)),
                Output::Offload { conn, ciphers } => {
                    if let Some(writer) = self.writers.get(&conn) {
                        let TransportCiphers { send, recv } = *ciphers;
                        writer.handoff.offer(recv, writer.delivered);
                        let _ = writer
                            .queue
                            .unbounded_send(Outgoing::Cipher(Box::new(send)));
                    }
                }
                Output::Dial { conn, addr, from } => {
                    let mut sockets = self.sockets.clone();
                    let connect = crate::reuse::dial(&self.runtime, addr, from);
                    let (cancel, cancelled) = oneshot::channel::<()>();
                    self.connecting.insert(conn, cancel);
                    self.runtime.spawn(Box::pin(async move {
                        futures::pin_mut!(connect);
                        let result = match futures::future::select(connect, cancelled).await {
                            futures::future::Either::Left((result, _)) => result,
                            // Abandoned: dropping the connect closes its socket.
                            futures::future::Either::Right(_) => return,
                        };
                        let event = match result {
                            Ok((socket, local)) => SocketEvent::Connected {
                                conn,
                                socket,
                                local,
                            },
                            Err(error) => SocketEvent::DialFailed { conn, error },
                        };
                        let _ = sockets.send(event).await;
                    }));
                }
                Output::Close { conn } => {
                    self.writers.remove(&conn);
                    if let Some(cancel) = self.connecting.remove(&conn) {
                        let _ = cancel.send(());
                    }
                }
                Output::Event(event) => self.on_event(event),
            }
        }
    }

    /// Queues bytes for a socket's writer.
    fn write(&self, conn: ConnectionId, item: Outgoing) {
        if let Some(writer) = self.writers.get(&conn) {
            writer.backlog.bytes.fetch_add(item.len(), Ordering::SeqCst);
            let _ = writer.queue.unbounded_send(item);
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match &event {
            Event::ConnectionEstablished { conn, peer, .. } => {
                if let Some(reply) = self.dials.remove(conn) {
                    let _ = reply.send(Ok(*peer));
                }
            }
            Event::DialFailed { conn, error, .. } => {
                if let Some(reply) = self.dials.remove(conn) {
                    let _ = reply.send(Err(Error::Dial(error.clone())));
                }
            }
            Event::ConnectionClosed { conn, .. } => {
                for reply in self.pings.remove(conn).unwrap_or_default() {
                    let _ = reply.send(Err(Error::Ping("connection closed".into())));
                }
                let conn = *conn;
                self.opens.retain(|s, _| s.conn != conn);
                self.streams.retain(|s, entry| {
                    if s.conn != conn {
                        return true;
                    }
                    let mut state = entry.state.lock().expect("not poisoned");
                    state.reset = true;
                    state.wake_reader();
                    state.wake_writer();
                    false
                });
            }
            Event::ReservationAccepted {
                relay,
                expire_unix,
                addrs,
                limit,
                ..
            } => {
                for reply in self.reservations.remove(relay).unwrap_or_default() {
                    let _ = reply.send(Ok(crate::Reservation {
                        relay: *relay,
                        expire_unix: *expire_unix,
                        addrs: addrs.clone(),
                        limit: *limit,
                    }));
                }
            }
            Event::ReservationRefused { relay, status } => {
                for reply in self.reservations.remove(relay).unwrap_or_default() {
                    let _ = reply.send(Err(Error::Reservation(format!("refused: {status:?}"))));
                }
            }
            Event::ReservationLost { relay, reason } => {
                for reply in self.reservations.remove(relay).unwrap_or_default() {
                    let _ = reply.send(Err(Error::Reservation(format!("{reason:?}"))));
                }
            }
            Event::Ping { conn, result, .. } => {
                if let Some(reply) = self.pings.get_mut(conn).and_then(VecDeque::pop_front) {
                    let _ = reply.send(result.map_err(|e| Error::Ping(e.to_string())));
                }
            }
            Event::InboundStream {
                stream,
                peer,
                protocol,
            } => {
                let handle = self.new_stream(*stream, *peer, protocol.clone());
                let delivered = match self.acceptors.get(protocol) {
                    Some(sender) => sender.unbounded_send(handle).is_ok(),
                    None => false,
                };
                if !delivered {
                    // Dropping the handle above finished the stream; refuse it outright.
                    self.streams.remove(stream);
                    let _ = self.node.stream_reset(now, *stream);
                }
            }
            Event::StreamOpened {
                stream,
                peer,
                protocol,
            } => {
                let handle = self.new_stream(*stream, *peer, protocol.clone());
                match self.opens.remove(stream) {
                    Some(reply) => {
                        if let Err(Ok(handle)) = reply.send(Ok(handle)) {
                            drop(handle);
                        }
                    }
                    None => drop(handle),
                }
            }
            Event::StreamOpenFailed { stream, error } => {
                if let Some(reply) = self.opens.remove(stream) {
                    let _ = reply.send(Err(Error::Stream(error.to_string())));
                }
            }
            Event::StreamData { stream, data } => match self.streams.get(stream) {
                Some(entry) if !entry.dropped => {
                    let mut state = entry.state.lock().expect("not poisoned");
                    state.recv.push_back(data.clone());
                    state.wake_reader();
                }
                _ => self.node.stream_consumed(now, *stream, data.len()),
            },
            Event::StreamFinished { stream } => {
                if let Some(entry) = self.streams.get_mut(stream) {
                    entry.remote_finished = true;
                    let mut state = entry.state.lock().expect("not poisoned");
                    state.recv_eof = true;
                    state.wake_reader();
                }
                self.retire_stream(*stream);
            }
            Event::StreamReset { stream } => {
                if let Some(entry) = self.streams.remove(stream) {
                    let mut state = entry.state.lock().expect("not poisoned");
                    state.reset = true;
                    state.wake_reader();
                    state.wake_writer();
                }
            }
            Event::StreamWritable { stream } => self.flush_writes(now, *stream),
            _ => {}
        }
        if !matches!(
            event,
            Event::StreamData { .. } | Event::StreamWritable { .. }
        ) {
            self.subscribers
                .retain(|s| s.unbounded_send(event.clone()).is_ok());
        }
    }

    fn new_stream(&mut self, id: StreamRef, peer: PeerId, protocol: String) -> Stream {
        let state = Arc::new(Mutex::new(StreamState::default()));
        self.streams.insert(
            id,
            StreamEntry {
                state: state.clone(),
                ..Default::default()
            },
        );
        Stream::new(id, peer, protocol, state, self.commands.clone())
    }
}
