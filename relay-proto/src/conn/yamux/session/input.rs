//! Inbound bytes: frame decoding and the session's reaction to each frame.
//!
//! Input may be split anywhere. Only a partial header (at most 11 bytes) is buffered;
//! Data payloads are delivered as they arrive, as slices of the input, so a frame's
//! body never accumulates or is copied here. Every Data frame is checked against the stream's receive window when its
//! header arrives, which bounds what a peer can make us process for a stream.

use std::time::Instant;

use bytes::Bytes;

use super::super::frame::{Flags, FrameType, HEADER_LEN, Header};
use super::super::stream::Stream;
use super::super::{Event, Mode, StreamId, YamuxError};
use super::{Session, push};

/// Where the decoder is within the inbound byte stream.
#[derive(Debug, Clone, Copy)]
pub(super) enum Decoder {
    /// Collecting a header; `filled` bytes of it are in `buf`.
    Header {
        buf: [u8; HEADER_LEN],
        filled: usize,
    },
    /// Inside a Data frame's payload.
    Body {
        /// Where the payload goes; `None` discards it (unknown or reset stream).
        stream: Option<StreamId>,
        /// Payload bytes still to come.
        remaining: u32,
        /// The frame carried FIN, applied once the payload is complete.
        fin: bool,
    },
}

impl Default for Decoder {
    fn default() -> Self {
        Self::Header {
            buf: [0; HEADER_LEN],
            filled: 0,
        }
    }
}

impl Session {
    /// Feeds decrypted bytes, split anywhere.
    ///
    /// On a protocol violation by the peer this returns the error and the session is
    /// dead: a GoAway with the protocol-error code is queued, which the caller may
    /// still flush with [`poll_transmit`](Self::poll_transmit) before closing the
    /// connection. Later calls return [`YamuxError::SessionClosed`].
    ///
    /// The bytes are copied once; [`handle_bytes`](Self::handle_bytes) takes them
    /// without a copy.
    pub fn handle_input(&mut self, now: Instant, input: &[u8]) -> Result<(), YamuxError> {
        self.handle_bytes(now, &Bytes::copy_from_slice(input))
    }

    /// Feeds decrypted bytes, split anywhere, as [`handle_input`](Self::handle_input)
    /// does, without copying: stream data is delivered as slices of `input`, so a
    /// [`Event::Data`] keeps the memory of its input alive until it is dropped.
    pub fn handle_bytes(&mut self, now: Instant, input: &Bytes) -> Result<(), YamuxError> {
        self.now = now;
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        let mut pos = 0;
        while pos < input.len() {
            let rest = &input[pos..];
            match self.decoder {
                Decoder::Header { mut buf, filled } => {
                    let header_bytes = if filled == 0 && rest.len() >= HEADER_LEN {
                        pos += HEADER_LEN;
                        let mut bytes = [0; HEADER_LEN];
                        bytes.copy_from_slice(&rest[..HEADER_LEN]);
                        bytes
                    } else {
                        let take = (HEADER_LEN - filled).min(rest.len());
                        pos += take;
                        buf[filled..filled + take].copy_from_slice(&rest[..take]);
                        if filled + take < HEADER_LEN {
                            self.decoder = Decoder::Header {
                                buf,
                                filled: filled + take,
                            };
                            break;
                        }
                        buf
                    };
                    self.decoder = Decoder::default();
                    let result = Header::decode(&header_bytes).and_then(|h| self.on_header(now, h));
                    if let Err(error) = result {
                        return Err(self.fail(error));
                    }
                }
                Decoder::Body {
                    stream,
                    remaining,
                    fin,
                } => {
                    let n = rest.len().min(remaining as usize);
                    // `n <= remaining`, so this neither truncates nor underflows.
                    let remaining = remaining - n as u32;
                    if let Some(id) = stream
                        && self.streams.contains_key(&id)
                    {
                        let data = input.slice(pos..pos + n);
                        self.events.push_back(Event::Data { stream: id, data });
                    }
                    pos += n;
                    if remaining > 0 {
                        self.decoder = Decoder::Body {
                            stream,
                            remaining,
                            fin,
                        };
                    } else {
                        self.decoder = Decoder::default();
                        if let (Some(id), true) = (stream, fin) {
                            self.on_remote_fin(id);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn on_header(&mut self, now: Instant, header: Header) -> Result<(), YamuxError> {
        tracing::trace!(?header, "yamux: frame in");
        match header.frame_type {
            FrameType::Data | FrameType::WindowUpdate => self.on_stream_frame(now, header),
            FrameType::Ping => self.on_ping(now, header),
            FrameType::GoAway => self.on_go_away(header),
        }
    }

    fn on_stream_frame(&mut self, now: Instant, h: Header) -> Result<(), YamuxError> {
        let id = h.stream;
        if id.0 == 0 {
            return Err(YamuxError::InvalidStreamId);
        }
        let is_data = h.frame_type == FrameType::Data;
        if is_data && h.length > self.max_stream_window {
            return Err(YamuxError::FrameTooLarge);
        }
        let known = if h.flags.contains(Flags::SYN) {
            self.on_syn(now, id)?
        } else {
            self.streams.contains_key(&id)
        };
        // The payload of a Data frame is discarded unless a live stream accepts it.
        let mut target = None;
        if known && h.flags.contains(Flags::RST) {
            self.remove_stream(id);
            self.events.push_back(Event::Reset(id));
        } else if let Some(s) = self.streams.get_mut(&id) {
            if h.flags.contains(Flags::ACK) && s.outbound && !s.acked {
                s.acked = true;
                self.events.push_back(Event::OutboundAccepted(id));
            }
            if !is_data {
                if s.add_send_credit(h.length) {
                    self.events.push_back(Event::Writable(id));
                }
            } else if s.remote_fin {
                if h.length > 0 {
                    // Data after FIN: the stream is unusable, the session is not.
                    tracing::debug!(stream = %id, "yamux: data after FIN, resetting stream");
                    self.remove_stream(id);
                    push(&mut self.data, Header::window_update(id, Flags::RST, 0));
                    self.events.push_back(Event::Reset(id));
                }
            } else if !s.recv.receive(h.length) {
                return Err(YamuxError::ReceiveWindowExceeded);
            } else if h.length > 0 {
                target = Some(id);
                self.rtt.on_activity();
            }
        }
        let fin = h.flags.contains(Flags::FIN);
        if is_data && h.length > 0 {
            self.decoder = Decoder::Body {
                stream: target,
                remaining: h.length,
                fin,
            };
        } else if fin {
            self.on_remote_fin(id);
        }
        Ok(())
    }

    /// Handles a SYN from the peer; returns whether the stream was accepted.
    fn on_syn(&mut self, now: Instant, id: StreamId) -> Result<bool, YamuxError> {
        let odd = id.0 & 1 == 1;
        let ours = match self.mode {
            Mode::Client => odd,
            Mode::Server => !odd,
        };
        if ours {
            return Err(YamuxError::InvalidStreamId);
        }
        if self.streams.contains_key(&id) || self.recently_closed.contains(&id) {
            return Err(YamuxError::StreamIdReused);
        }
        if self.local_go_away || self.streams.len() >= self.config.max_streams {
            tracing::debug!(stream = %id, "yamux: refusing inbound stream");
            self.remember_closed(id);
            push(&mut self.control, Header::window_update(id, Flags::RST, 0));
            return Ok(false);
        }
        self.streams.insert(id, Stream::new(false, now));
        self.budget.open();
        push(&mut self.control, Header::window_update(id, Flags::ACK, 0));
        self.events.push_back(Event::InboundStream(id));
        Ok(true)
    }

    fn on_remote_fin(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.remote_fin {
            return;
        }
        s.remote_fin = true;
        let done = s.is_done();
        self.events.push_back(Event::Finished(id));
        if done {
            self.remove_stream(id);
        }
    }

    fn on_ping(&mut self, now: Instant, h: Header) -> Result<(), YamuxError> {
        if h.stream.0 != 0 {
            return Err(YamuxError::InvalidStreamId);
        }
        if h.flags.contains(Flags::SYN) {
            if self.pending_pongs < self.config.max_pending_pongs {
                self.pending_pongs += 1;
                push(&mut self.control, Header::ping(Flags::ACK, h.length));
            }
        } else if h.flags.contains(Flags::ACK)
            && let Some(rtt) = self.rtt.on_pong(now, h.length)
        {
            self.events.push_back(Event::Rtt(rtt));
        }
        Ok(())
    }

    fn on_go_away(&mut self, h: Header) -> Result<(), YamuxError> {
        if h.stream.0 != 0 {
            return Err(YamuxError::InvalidStreamId);
        }
        if !self.remote_go_away {
            tracing::debug!(code = h.length, "yamux: peer sent go-away");
            self.remote_go_away = true;
            self.events.push_back(Event::GoAway { code: h.length });
        }
        Ok(())
    }
}
