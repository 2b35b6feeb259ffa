//! multistream-select 1.0: agreeing on the protocol of a connection or stream.
//!
//! Every message is a length-prefixed frame ([`super::frame`]) whose payload is UTF-8
//! text ending in `'\n'`, at most [`MAX_MESSAGE_LEN`] bytes long. Both sides first exchange [`HEADER`]. The
//! dialer then proposes protocols one at a time; the listener echoes the one it accepts
//! or answers `"na"`.
//!
//! The [`Dialer`] writes its header and first proposal in one go, without waiting for
//! the listener's header, as go-libp2p and rust-libp2p do. The [`Listener`] answers the
//! header as soon as it arrives. Neither performs I/O: they read the bytes they are
//! given and append the bytes to send to an output buffer. Bytes that follow the final
//! message belong to the negotiated protocol and are handed back in
//! [`Negotiated::Agreed`].

use bytes::Bytes;

use super::frame::{self, FrameError, FrameReader};

/// The multistream-select 1.0 header both sides send first.
pub const HEADER: &str = "/multistream/1.0.0";

/// Longest message payload accepted, trailing `'\n'` included, as in go-multistream.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Number of proposals a [`Listener`] refuses before giving up on the dialer.
pub const MAX_REFUSALS: usize = 64;

/// The listener's answer to a protocol it does not serve.
const NOT_AVAILABLE: &str = "na";

/// A request to list the listener's protocols; answered with [`NOT_AVAILABLE`].
const LIST: &str = "ls";

/// Why a negotiation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// A message was badly framed or too long.
    #[error("multistream-select framing: {0}")]
    Frame(#[from] FrameError),
    /// A message was not UTF-8 text ending in a single `'\n'`.
    #[error("multistream-select message is not a newline-terminated UTF-8 line")]
    InvalidMessage,
    /// The peer's first message was not [`HEADER`].
    #[error("unexpected multistream-select header {0:?}")]
    UnexpectedHeader(String),
    /// The listener refused every protocol the dialer proposed.
    #[error("the listener supports none of the proposed protocols")]
    NotSupported,
    /// The listener answered a proposal with neither its echo nor `"na"`.
    #[error("unexpected answer {0:?} to a protocol proposal")]
    UnexpectedAnswer(String),
    /// The dialer made more than [`MAX_REFUSALS`] proposals the listener refused.
    #[error("the dialer made more than {MAX_REFUSALS} refused proposals")]
    TooManyProposals,
    /// `handle` was called after the negotiation had ended, agreed or failed.
    #[error("the negotiation has already ended")]
    Ended,
}

/// How a negotiation stands after a call to `handle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiated {
    /// More bytes from the peer are needed.
    Pending,
    /// Both sides agreed on `protocol`.
    Agreed {
        /// The protocol agreed on.
        protocol: String,
        /// Bytes received after the final negotiation message: they belong to `protocol`.
        rest: Bytes,
    },
}

/// The side that opened the connection or stream and proposes protocols.
#[derive(Debug)]
pub struct Dialer {
    reader: FrameReader,
    /// Protocols in order of preference.
    protocols: Vec<String>,
    /// Index in `protocols` of the proposal awaiting an answer.
    proposed: usize,
    state: DialerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialerState {
    AwaitHeader,
    AwaitAnswer,
    Ended,
}

impl Dialer {
    /// Creates a dialer and writes the header and its first proposal into `out`.
    ///
    /// `protocols` are in order of preference and must be non-empty: with none, the
    /// negotiation fails with [`NegotiationError::NotSupported`] once the listener's
    /// header arrives.
    pub fn new(protocols: Vec<String>, out: &mut Vec<u8>) -> Self {
        write_message(HEADER, out);
        if let Some(first) = protocols.first() {
            write_message(first, out);
        }
        Self {
            reader: FrameReader::new(MAX_MESSAGE_LEN),
            protocols,
            proposed: 0,
            state: DialerState::AwaitHeader,
        }
    }

    /// Feeds bytes received from the listener and writes the next proposal, if any, into `out`.
    ///
    /// `input` may hold part of a message or several messages. After `Agreed` or an
    /// error, the negotiation is over and further calls return [`NegotiationError::Ended`].
    pub fn handle(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Negotiated, NegotiationError> {
        if self.state == DialerState::Ended {
            return Err(NegotiationError::Ended);
        }
        self.reader.push(input);
        let result = self.advance(out);
        if !matches!(result, Ok(Negotiated::Pending)) {
            self.state = DialerState::Ended;
        }
        result
    }

    fn advance(&mut self, out: &mut Vec<u8>) -> Result<Negotiated, NegotiationError> {
        while let Some(message) = read_message(&mut self.reader)? {
            if self.state == DialerState::AwaitHeader {
                if message != HEADER {
                    return Err(NegotiationError::UnexpectedHeader(message));
                }
                self.state = DialerState::AwaitAnswer;
                if self.protocols.is_empty() {
                    return Err(NegotiationError::NotSupported);
                }
                continue;
            }
            let Some(proposal) = self.protocols.get(self.proposed) else {
                return Err(NegotiationError::NotSupported);
            };
            if message == *proposal {
                return Ok(Negotiated::Agreed {
                    protocol: message,
                    rest: self.reader.take_rest(),
                });
            }
            if message != NOT_AVAILABLE {
                return Err(NegotiationError::UnexpectedAnswer(message));
            }
            self.proposed += 1;
            let Some(next) = self.protocols.get(self.proposed) else {
                return Err(NegotiationError::NotSupported);
            };
            write_message(next, out);
        }
        Ok(Negotiated::Pending)
    }
}

/// The side that accepted the connection or stream and answers proposals.
#[derive(Debug)]
pub struct Listener {
    reader: FrameReader,
    /// Number of `"na"` answers sent so far.
    refusals: usize,
    state: ListenerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListenerState {
    AwaitHeader,
    AwaitProposal,
    Ended,
}

impl Default for Listener {
    fn default() -> Self {
        Self::new()
    }
}

impl Listener {
    /// Creates a listener waiting for the dialer's header.
    pub fn new() -> Self {
        Self {
            reader: FrameReader::new(MAX_MESSAGE_LEN),
            refusals: 0,
            state: ListenerState::AwaitHeader,
        }
    }

    /// Feeds bytes received from the dialer and writes the answers into `out`.
    ///
    /// `supports(name)` says whether the protocol `name` is served. The header is
    /// answered with the header, a served proposal with its echo, anything else
    /// (including `"ls"`) with `"na"`. After `Agreed` or an error, the negotiation is
    /// over and further calls return [`NegotiationError::Ended`].
    pub fn handle(
        &mut self,
        input: &[u8],
        mut supports: impl FnMut(&str) -> bool,
        out: &mut Vec<u8>,
    ) -> Result<Negotiated, NegotiationError> {
        if self.state == ListenerState::Ended {
            return Err(NegotiationError::Ended);
        }
        self.reader.push(input);
        let result = self.advance(&mut supports, out);
        if !matches!(result, Ok(Negotiated::Pending)) {
            self.state = ListenerState::Ended;
        }
        result
    }

    fn advance(
        &mut self,
        supports: &mut impl FnMut(&str) -> bool,
        out: &mut Vec<u8>,
    ) -> Result<Negotiated, NegotiationError> {
        while let Some(message) = read_message(&mut self.reader)? {
            if self.state == ListenerState::AwaitHeader {
                if message != HEADER {
                    return Err(NegotiationError::UnexpectedHeader(message));
                }
                self.state = ListenerState::AwaitProposal;
                write_message(HEADER, out);
                continue;
            }
            if message != LIST && supports(&message) {
                write_message(&message, out);
                let rest = self.reader.take_rest();
                return Ok(Negotiated::Agreed {
                    protocol: message,
                    rest,
                });
            }
            if self.refusals >= MAX_REFUSALS {
                return Err(NegotiationError::TooManyProposals);
            }
            self.refusals += 1;
            write_message(NOT_AVAILABLE, out);
        }
        Ok(Negotiated::Pending)
    }
}

/// Appends one message: the frame of `text` followed by `'\n'`.
fn write_message(text: &str, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(text.len() + 1);
    payload.extend_from_slice(text.as_bytes());
    payload.push(b'\n');
    frame::encode_frame(&payload, out);
}

/// Takes the next complete message from `reader`, without its trailing `'\n'`.
fn read_message(reader: &mut FrameReader) -> Result<Option<String>, NegotiationError> {
    let Some(payload) = reader.next_frame()? else {
        return Ok(None);
    };
    let Some((b'\n', text)) = payload.split_last() else {
        return Err(NegotiationError::InvalidMessage);
    };
    if text.contains(&b'\n') {
        return Err(NegotiationError::InvalidMessage);
    }
    match std::str::from_utf8(text) {
        Ok(text) => Ok(Some(text.to_owned())),
        Err(_) => Err(NegotiationError::InvalidMessage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Dialer proposes `/a/1` then `/b/1`; the listener serves only `/b/1`.
    const DIALER_SENDS: &[u8] = b"\x13/multistream/1.0.0\n\x05/a/1\n\x05/b/1\napp data";
    const LISTENER_SENDS: &[u8] = b"\x13/multistream/1.0.0\n\x03na\n\x05/b/1\nreply";

    fn agreed(protocol: &str, rest: &'static [u8]) -> Negotiated {
        Negotiated::Agreed {
            protocol: protocol.to_owned(),
            rest: Bytes::from_static(rest),
        }
    }

    #[test]
    fn exchange_byte_for_byte() {
        let mut to_listener = Vec::new();
        let mut dialer = Dialer::new(names(&["/a/1", "/b/1"]), &mut to_listener);
        assert_eq!(to_listener, b"\x13/multistream/1.0.0\n\x05/a/1\n");

        let mut listener = Listener::new();
        let mut to_dialer = Vec::new();
        let state = listener
            .handle(&to_listener, |p| p == "/b/1", &mut to_dialer)
            .unwrap();
        assert_eq!(state, Negotiated::Pending);
        assert_eq!(to_dialer, b"\x13/multistream/1.0.0\n\x03na\n");

        to_listener.clear();
        assert_eq!(
            dialer.handle(&to_dialer, &mut to_listener),
            Ok(Negotiated::Pending)
        );
        assert_eq!(to_listener, b"\x05/b/1\n");

        to_dialer.clear();
        to_listener.extend_from_slice(b"app data");
        let state = listener.handle(&to_listener, |p| p == "/b/1", &mut to_dialer);
        assert_eq!(state, Ok(agreed("/b/1", b"app data")));
        assert_eq!(to_dialer, b"\x05/b/1\n");

        to_dialer.extend_from_slice(b"reply");
        let mut unused = Vec::new();
        assert_eq!(
            dialer.handle(&to_dialer, &mut unused),
            Ok(agreed("/b/1", b"reply"))
        );
        assert!(unused.is_empty());

        assert_eq!(
            dialer.handle(b"", &mut unused),
            Err(NegotiationError::Ended)
        );
        assert_eq!(
            listener.handle(b"", |_| true, &mut unused),
            Err(NegotiationError::Ended)
        );
    }

    /// The last state of a negotiation and all the bytes it wrote.
    type Outcome = (Result<Negotiated, NegotiationError>, Vec<u8>);

    /// Feeds `pieces` until the negotiation ends; returns its state and all output.
    fn feed_listener(pieces: &[&[u8]]) -> Outcome {
        let mut listener = Listener::new();
        let mut out = Vec::new();
        let mut state = Ok(Negotiated::Pending);
        for piece in pieces {
            state = listener.handle(piece, |p| p == "/b/1", &mut out);
            if state != Ok(Negotiated::Pending) {
                break;
            }
        }
        (state, out)
    }

    fn feed_dialer(pieces: &[&[u8]]) -> Outcome {
        let mut out = Vec::new();
        let mut dialer = Dialer::new(names(&["/a/1", "/b/1"]), &mut out);
        let mut state = Ok(Negotiated::Pending);
        for piece in pieces {
            state = dialer.handle(piece, &mut out);
            if state != Ok(Negotiated::Pending) {
                break;
            }
        }
        (state, out)
    }

    /// Splits `input` at every byte and checks the outcome of each split.
    ///
    /// `app_len` trailing bytes of `input` follow the negotiation: they are returned as
    /// `rest` by whichever call completes it.
    fn check_every_split(
        input: &[u8],
        app_len: usize,
        feed: fn(&[&[u8]]) -> Outcome,
        expected_out: &[u8],
    ) {
        let negotiation_len = input.len() - app_len;
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let (state, out) = feed(&[a, b]);
            let rest = if cut < negotiation_len {
                &input[negotiation_len..]
            } else {
                &input[negotiation_len..cut]
            };
            let expected = Negotiated::Agreed {
                protocol: "/b/1".into(),
                rest: Bytes::copy_from_slice(rest),
            };
            assert_eq!(state, Ok(expected), "cut at {cut}");
            assert_eq!(out, expected_out, "cut at {cut}");
        }
    }

    #[test]
    fn listener_input_split_at_every_byte() {
        let expected_out = &LISTENER_SENDS[..LISTENER_SENDS.len() - 5];
        check_every_split(DIALER_SENDS, 8, feed_listener, expected_out);
    }

    #[test]
    fn dialer_input_split_at_every_byte() {
        let expected_out = &DIALER_SENDS[..DIALER_SENDS.len() - 8];
        check_every_split(LISTENER_SENDS, 5, feed_dialer, expected_out);
    }

    #[test]
    fn one_byte_at_a_time() {
        let pieces: Vec<&[u8]> = DIALER_SENDS.chunks(1).collect();
        let (state, out) = feed_listener(&pieces);
        assert_eq!(state, Ok(agreed("/b/1", b"")));
        assert_eq!(out, LISTENER_SENDS[..LISTENER_SENDS.len() - 5]);
        let pieces: Vec<&[u8]> = LISTENER_SENDS.chunks(1).collect();
        let (state, out) = feed_dialer(&pieces);
        assert_eq!(state, Ok(agreed("/b/1", b"")));
        assert_eq!(out, DIALER_SENDS[..DIALER_SENDS.len() - 8]);
    }

    #[test]
    fn listener_answers_header_at_once() {
        let (state, out) = feed_listener(&[b"\x13/multistream/1.0.0\n"]);
        assert_eq!(state, Ok(Negotiated::Pending));
        assert_eq!(out, b"\x13/multistream/1.0.0\n");
    }

    #[test]
    fn all_refused() {
        let (state, out) = feed_dialer(&[b"\x13/multistream/1.0.0\n\x03na\n\x03na\n"]);
        assert_eq!(state, Err(NegotiationError::NotSupported));
        assert!(out.ends_with(b"\x05/b/1\n"));
    }

    #[test]
    fn empty_proposal_list() {
        let mut out = Vec::new();
        let mut dialer = Dialer::new(Vec::new(), &mut out);
        assert_eq!(out, b"\x13/multistream/1.0.0\n");
        let header = b"\x13/multistream/1.0.0\n";
        assert_eq!(
            dialer.handle(header, &mut out),
            Err(NegotiationError::NotSupported)
        );
    }

    #[test]
    fn wrong_headers() {
        let other = b"\x13/multistream/2.0.0\n";
        let (state, _) = feed_dialer(&[other]);
        let expected = NegotiationError::UnexpectedHeader("/multistream/2.0.0".into());
        assert_eq!(state, Err(expected.clone()));
        let (state, out) = feed_listener(&[other]);
        assert_eq!(state, Err(expected));
        assert!(out.is_empty());
    }

    #[test]
    fn dialer_rejects_unexpected_answer() {
        let (state, _) = feed_dialer(&[b"\x13/multistream/1.0.0\n\x05/c/1\n"]);
        assert_eq!(
            state,
            Err(NegotiationError::UnexpectedAnswer("/c/1".into()))
        );
    }

    #[test]
    fn listener_answers_ls_with_na() {
        let (state, out) = feed_listener(&[b"\x13/multistream/1.0.0\n\x03ls\n"]);
        assert_eq!(state, Ok(Negotiated::Pending));
        assert_eq!(out, b"\x13/multistream/1.0.0\n\x03na\n");
    }

    #[test]
    fn listener_bounds_refusals() {
        let mut listener = Listener::new();
        let mut out = Vec::new();
        let header = b"\x13/multistream/1.0.0\n";
        assert_eq!(
            listener.handle(header, |_| false, &mut out),
            Ok(Negotiated::Pending)
        );
        for _ in 0..MAX_REFUSALS {
            let state = listener.handle(b"\x05/x/1\n", |_| false, &mut out);
            assert_eq!(state, Ok(Negotiated::Pending));
        }
        assert_eq!(out.len(), header.len() + b"\x03na\n".len() * MAX_REFUSALS);
        let state = listener.handle(b"\x05/x/1\n", |_| false, &mut out);
        assert_eq!(state, Err(NegotiationError::TooManyProposals));
    }

    #[test]
    fn malformed_messages() {
        let header: &[u8] = b"\x13/multistream/1.0.0\n";
        let cases: &[(&[u8], NegotiationError)] = &[
            (b"\x04/a/1", NegotiationError::InvalidMessage),
            (b"\x00", NegotiationError::InvalidMessage),
            (b"\x05/a\n1\n", NegotiationError::InvalidMessage),
            (b"\x05/\xff/1\n", NegotiationError::InvalidMessage),
            (
                b"\x80\x00",
                FrameError::Varint(crate::wire::varint::VarintError::NotMinimal).into(),
            ),
            (
                b"\x81\x08",
                FrameError::TooLarge {
                    len: 1025,
                    max: MAX_MESSAGE_LEN,
                }
                .into(),
            ),
        ];
        for (bytes, error) in cases {
            let (state, _) = feed_listener(&[header, bytes]);
            assert_eq!(state.as_ref(), Err(error), "listener {bytes:?}");
            let (state, _) = feed_dialer(&[header, bytes]);
            assert_eq!(state.as_ref(), Err(error), "dialer {bytes:?}");
        }
        // A message of exactly the limit is accepted.
        let mut long = Vec::new();
        write_message(&format!("/{}", "x".repeat(MAX_MESSAGE_LEN - 2)), &mut long);
        let (state, _) = feed_listener(&[header, &long]);
        assert_eq!(state, Ok(Negotiated::Pending));
    }

    fn protocol_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/a/1".to_owned()),
            Just("/b/1".to_owned()),
            "/[a-z]{1,6}/[0-9]"
        ]
    }

    proptest! {
        #[test]
        fn pair_agrees_on_first_supported(
            proposals in proptest::collection::vec(protocol_name(), 1..6),
            served in proptest::collection::vec(protocol_name(), 0..4),
            chunk in 1usize..32,
        ) {
            let mut to_listener = Vec::new();
            let mut dialer = Dialer::new(proposals.clone(), &mut to_listener);
            let mut listener = Listener::new();
            let mut to_dialer = Vec::new();
            let mut dialer_result = Ok(Negotiated::Pending);
            let mut listener_result = Ok(Negotiated::Pending);
            // Alternate turns until neither side has anything left to send.
            while !to_listener.is_empty() || !to_dialer.is_empty() {
                for piece in std::mem::take(&mut to_listener).chunks(chunk) {
                    if listener_result == Ok(Negotiated::Pending) {
                        listener_result =
                            listener.handle(piece, |p| served.iter().any(|s| s == p), &mut to_dialer);
                    }
                }
                for piece in std::mem::take(&mut to_dialer).chunks(chunk) {
                    if dialer_result == Ok(Negotiated::Pending) {
                        dialer_result = dialer.handle(piece, &mut to_listener);
                    }
                }
            }
            match proposals.iter().find(|p| served.contains(p)) {
                Some(p) => {
                    let expected = Negotiated::Agreed { protocol: p.clone(), rest: Bytes::new() };
                    prop_assert_eq!(dialer_result, Ok(expected.clone()));
                    prop_assert_eq!(listener_result, Ok(expected));
                }
                None => {
                    prop_assert_eq!(dialer_result, Err(NegotiationError::NotSupported));
                    prop_assert_eq!(listener_result, Ok(Negotiated::Pending));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            with_header in any::<bool>(),
            chunk in 1usize..16,
        ) {
            let mut input = Vec::new();
            if with_header {
                write_message(HEADER, &mut input);
            }
            input.extend_from_slice(&bytes);
            let mut out = Vec::new();
            let mut dialer = Dialer::new(names(&["/a/1"]), &mut out);
            let mut listener = Listener::new();
            for piece in input.chunks(chunk) {
                let _ = dialer.handle(piece, &mut out);
                let _ = listener.handle(piece, |p| p.len() % 2 == 0, &mut out);
            }
        }
    }
}
