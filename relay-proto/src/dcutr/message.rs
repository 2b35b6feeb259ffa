//! DCUtR messages on the wire: length-prefixed `HolePunch` protobufs of at most
//! [`MAX_MESSAGE`] bytes whose `type` is CONNECT or SYNC.

use bytes::Bytes;
use multiaddr::Multiaddr;

use super::MAX_MESSAGE;
use crate::circuit::message::framed;
use crate::wire::frame::{FrameError, FrameReader};
use crate::wire::proto::{self, HolePunchType};

/// Why input from the DCUtR stream, or an input at the wrong time, was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcutrError {
    /// The length prefix announced more than [`MAX_MESSAGE`] bytes.
    #[error("dcutr message too large ({len} bytes, at most {MAX_MESSAGE})")]
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// The bytes were not a valid message, or its `type` was missing or unknown.
    #[error("malformed dcutr message: {0}")]
    Malformed(&'static str),
    /// A valid message that the exchange does not expect now.
    #[error("unexpected dcutr message: {0}")]
    Unexpected(&'static str),
    /// The stream ended before the exchange completed.
    #[error("dcutr stream closed before the exchange completed")]
    StreamClosed,
    /// The hole punch has ended; the input was ignored.
    #[error("the hole punch has ended")]
    Finished,
    /// The peer started an exchange beyond `max_attempts`; it was refused.
    #[error("every hole punch attempt has been used")]
    AttemptsExhausted,
}

impl From<FrameError> for DcutrError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, .. } => DcutrError::TooLarge { len },
            FrameError::Varint(_) => DcutrError::Malformed("bad length prefix"),
        }
    }
}

/// One DCUtR message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// CONNECT with the sender's addresses as binary multiaddrs, not yet checked.
    Connect(Vec<Vec<u8>>),
    /// SYNC: start dialing.
    Sync,
}

impl Message {
    /// Decodes a message body (no length prefix).
    pub fn decode(body: &[u8]) -> Result<Self, DcutrError> {
        let msg: proto::HolePunch =
            proto::decode(body).map_err(|_| DcutrError::Malformed("hole punch protobuf"))?;
        let kind = msg
            .r#type
            .and_then(|t| HolePunchType::try_from(t).ok())
            .ok_or(DcutrError::Malformed("message without a known type"))?;
        Ok(match kind {
            HolePunchType::Connect => Message::Connect(msg.obs_addrs),
            HolePunchType::Sync => Message::Sync,
        })
    }
}

/// A length-prefixed CONNECT carrying `addrs`.
pub fn encode_connect(addrs: &[Multiaddr]) -> Vec<u8> {
    framed(&proto::HolePunch {
        r#type: Some(HolePunchType::Connect as i32),
        obs_addrs: addrs.iter().map(Multiaddr::to_vec).collect(),
    })
}

/// A length-prefixed SYNC.
pub fn encode_sync() -> Vec<u8> {
    framed(&proto::HolePunch {
        r#type: Some(HolePunchType::Sync as i32),
        obs_addrs: Vec::new(),
    })
}

/// Collects DCUtR messages from the bytes of one stream, in pieces of any size.
#[derive(Debug)]
pub struct MessageReader {
    frames: FrameReader,
}

impl Default for MessageReader {
    fn default() -> Self {
        Self {
            frames: FrameReader::new(MAX_MESSAGE),
        }
    }
}

impl MessageReader {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frames.push(bytes);
    }

    /// The next whole message, if one is buffered. After an error the stream is out of
    /// step and every later call fails too.
    pub fn next_message(&mut self) -> Result<Option<Message>, DcutrError> {
        let Some(body): Option<Bytes> = self.frames.next_frame()? else {
            return Ok(None);
        };
        Message::decode(&body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::varint;

    #[test]
    fn sync_known_bytes() {
        assert_eq!(encode_sync(), [0x03, 0x08, 0xac, 0x02]);
    }

    #[test]
    fn connect_round_trips_in_pieces() {
        let addrs: Vec<Multiaddr> = vec!["/ip4/198.51.100.1/tcp/4001".parse().unwrap()];
        let mut wire = encode_connect(&addrs);
        wire.extend(encode_sync());
        let mut reader = MessageReader::default();
        let mut got = Vec::new();
        for b in &wire {
            reader.push(std::slice::from_ref(b));
            while let Some(m) = reader.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            vec![Message::Connect(vec![addrs[0].to_vec()]), Message::Sync]
        );
    }

    #[test]
    fn oversized_refused_before_the_body() {
        let mut prefix = Vec::new();
        varint::encode_into(MAX_MESSAGE as u64 + 1, &mut prefix);
        let mut reader = MessageReader::default();
        reader.push(&prefix);
        assert_eq!(
            reader.next_message(),
            Err(DcutrError::TooLarge {
                len: MAX_MESSAGE as u64 + 1
            })
        );
    }

    #[test]
    fn missing_or_unknown_type_is_malformed() {
        for body in [
            proto::encode(&proto::HolePunch {
                r#type: None,
                obs_addrs: vec![],
            }),
            proto::encode(&proto::HolePunch {
                r#type: Some(200),
                obs_addrs: vec![],
            }),
            vec![0xff, 0xff],
        ] {
            assert!(matches!(
                Message::decode(&body),
                Err(DcutrError::Malformed(_))
            ));
        }
        let mut reader = MessageReader::default();
        reader.push(&[0x80, 0x00]);
        assert_eq!(
            reader.next_message(),
            Err(DcutrError::Malformed("bad length prefix"))
        );
    }
}
