//! Reading and writing hop and stop messages: length-prefixed protobuf, at most
//! [`MAX_RELAY_MESSAGE`] bytes, with required fields checked.

use crate::wire::frame::{FrameError, FrameReader};
use crate::wire::proto::{
    self, HopMessage, HopType, MAX_RELAY_MESSAGE, Status, StopMessage, StopType,
};

/// Why a relay message was rejected; each maps to the status the spec answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The length prefix announced more than 4096 bytes.
    #[error("relay message too large ({len} bytes, at most {MAX_RELAY_MESSAGE})")]
    TooLarge {
        /// The announced length.
        len: u64,
    },
    /// The bytes were not a valid message, or a required field was missing.
    #[error("malformed relay message: {0}")]
    Malformed(&'static str),
    /// A valid message that is not allowed here.
    #[error("unexpected relay message: {0}")]
    Unexpected(&'static str),
    /// The stream ended before a whole message arrived.
    #[error("stream ended mid-message")]
    Truncated,
}

impl MessageError {
    /// The status to answer with.
    pub fn status(&self) -> Status {
        match self {
            MessageError::Unexpected(_) => Status::UnexpectedMessage,
            _ => Status::MalformedMessage,
        }
    }
}

impl From<FrameError> for MessageError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, .. } => MessageError::TooLarge { len },
            FrameError::Varint(_) => MessageError::Malformed("bad length prefix"),
        }
    }
}

/// Collects one length-prefixed relay message from a stream.
#[derive(Debug)]
pub struct MessageReader {
    frames: FrameReader,
}

impl Default for MessageReader {
    fn default() -> Self {
        Self {
            frames: FrameReader::new(MAX_RELAY_MESSAGE),
        }
    }
}

impl MessageReader {
    /// Feeds stream bytes; returns the message body once whole.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<bytes::Bytes>, MessageError> {
        self.frames.push(data);
        Ok(self.frames.next_frame()?)
    }

    /// Bytes received after the message (relayed data that followed it).
    pub fn take_rest(&mut self) -> bytes::Bytes {
        self.frames.take_rest()
    }
}

/// A hop message whose `type` is known.
pub fn decode_hop(body: &[u8]) -> Result<(HopType, HopMessage), MessageError> {
    let msg: HopMessage =
        proto::decode(body).map_err(|_| MessageError::Malformed("hop protobuf"))?;
    let kind = msg
        .r#type
        .and_then(|t| HopType::try_from(t).ok())
        .ok_or(MessageError::Malformed("hop message without a known type"))?;
    Ok((kind, msg))
}

/// A hop STATUS answer: its status and the whole message; any other type is
/// unexpected, a missing or unknown status malformed.
pub fn decode_hop_status(body: &[u8]) -> Result<(Status, HopMessage), MessageError> {
    let (kind, msg) = decode_hop(body)?;
    if kind != HopType::Status {
        return Err(MessageError::Unexpected("expected STATUS"));
    }
    Ok((status_of(msg.status)?, msg))
}

/// A stop message whose `type` is known.
pub fn decode_stop(body: &[u8]) -> Result<(StopType, StopMessage), MessageError> {
    let msg: StopMessage =
        proto::decode(body).map_err(|_| MessageError::Malformed("stop protobuf"))?;
    let kind = msg
        .r#type
        .and_then(|t| StopType::try_from(t).ok())
        .ok_or(MessageError::Malformed("stop message without a known type"))?;
    Ok((kind, msg))
}

/// The status of a STATUS message; a missing or unknown status is malformed.
pub fn status_of(status: Option<i32>) -> Result<Status, MessageError> {
    status
        .and_then(|s| Status::try_from(s).ok())
        .ok_or(MessageError::Malformed(
            "status message without a known status",
        ))
}

/// A length-prefixed hop STATUS message.
pub fn hop_status(status: Status) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_length_prefixed(
        &HopMessage {
            r#type: Some(HopType::Status as i32),
            status: Some(status as i32),
            ..Default::default()
        },
        &mut out,
    );
    out
}

/// A length-prefixed stop STATUS message.
pub fn stop_status(status: Status) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_length_prefixed(
        &StopMessage {
            r#type: Some(StopType::Status as i32),
            status: Some(status as i32),
            ..Default::default()
        },
        &mut out,
    );
    out
}

/// Any message, length-prefixed.
pub fn framed<M: prost::Message>(msg: &M) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_length_prefixed(msg, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_is_refused_before_the_body() {
        let mut reader = MessageReader::default();
        let mut prefix = Vec::new();
        crate::wire::varint::encode_into(4097, &mut prefix);
        assert_eq!(
            reader.push(&prefix),
            Err(MessageError::TooLarge { len: 4097 })
        );
    }

    #[test]
    fn missing_type_is_malformed() {
        let body = proto::encode(&HopMessage::default());
        assert_eq!(
            decode_hop(&body).unwrap_err().status(),
            Status::MalformedMessage
        );
        let body = proto::encode(&HopMessage {
            r#type: Some(77),
            ..Default::default()
        });
        assert!(decode_hop(&body).is_err());
    }

    #[test]
    fn status_round_trip() {
        let mut reader = MessageReader::default();
        let body = reader
            .push(&hop_status(Status::NoReservation))
            .unwrap()
            .unwrap();
        let (kind, msg) = decode_hop(&body).unwrap();
        assert_eq!(kind, HopType::Status);
        assert_eq!(status_of(msg.status), Ok(Status::NoReservation));
    }
}
