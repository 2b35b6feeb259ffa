//! The Yamux frame header: twelve bytes in front of every frame.
//!
//! ```text
//! version u8 | type u8 | flags u16 BE | stream id u32 BE | length u32 BE
//! ```
//!
//! This module owns only the header codec. It knows nothing of streams or windows;
//! what `length` means depends on the frame type (see [`FrameType`]).

use super::{StreamId, YamuxError};

/// Length of a frame header in bytes.
pub const HEADER_LEN: usize = 12;

/// The only protocol version Yamux defines.
pub const VERSION: u8 = 0;

/// GoAway code: normal termination.
pub const GO_AWAY_NORMAL: u32 = 0;
/// GoAway code: the peer violated the protocol.
pub const GO_AWAY_PROTOCOL_ERROR: u32 = 1;
/// GoAway code: an internal error of the sender.
pub const GO_AWAY_INTERNAL_ERROR: u32 = 2;

/// The kind of a frame, which says what its `length` field means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// Stream data; `length` bytes of payload follow the header.
    Data,
    /// Send-window credit for a stream; `length` is the credit delta.
    WindowUpdate,
    /// A session ping; `length` is an opaque value echoed in the response.
    Ping,
    /// Session termination; `length` is the error code.
    GoAway,
}

impl FrameType {
    /// The type's byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Data => 0,
            Self::WindowUpdate => 1,
            Self::Ping => 2,
            Self::GoAway => 3,
        }
    }

    /// Parses the type byte.
    pub fn from_u8(byte: u8) -> Result<Self, YamuxError> {
        match byte {
            0 => Ok(Self::Data),
            1 => Ok(Self::WindowUpdate),
            2 => Ok(Self::Ping),
            3 => Ok(Self::GoAway),
            other => Err(YamuxError::InvalidFrameType(other)),
        }
    }
}

/// The flags of a frame header, a set of bits. Unknown bits are kept, not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// No flag set.
    pub const NONE: Self = Self(0);
    /// Opens a stream, or marks a ping request.
    pub const SYN: Self = Self(1);
    /// Acknowledges a stream opening, or marks a ping response.
    pub const ACK: Self = Self(2);
    /// Half-closes the sender's direction of a stream.
    pub const FIN: Self = Self(4);
    /// Resets a stream at once.
    pub const RST: Self = Self(8);

    /// Whether every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A decoded frame header. The version is implicit: only version 0 decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the frame is.
    pub frame_type: FrameType,
    /// SYN, ACK, FIN, RST.
    pub flags: Flags,
    /// The stream the frame belongs to; 0 for Ping and GoAway.
    pub stream: StreamId,
    /// Payload length, window delta, ping value or GoAway code, by frame type.
    pub length: u32,
}

impl Header {
    /// A Data header announcing `length` payload bytes.
    pub fn data(stream: StreamId, flags: Flags, length: u32) -> Self {
        Self {
            frame_type: FrameType::Data,
            flags,
            stream,
            length,
        }
    }

    /// A WindowUpdate header granting `delta` bytes of credit.
    pub fn window_update(stream: StreamId, flags: Flags, delta: u32) -> Self {
        Self {
            frame_type: FrameType::WindowUpdate,
            flags,
            stream,
            length: delta,
        }
    }

    /// A Ping header; `flags` is SYN for a request, ACK for a response.
    pub fn ping(flags: Flags, value: u32) -> Self {
        Self {
            frame_type: FrameType::Ping,
            flags,
            stream: StreamId(0),
            length: value,
        }
    }

    /// A GoAway header carrying `code`.
    pub fn go_away(code: u32) -> Self {
        Self {
            frame_type: FrameType::GoAway,
            flags: Flags::NONE,
            stream: StreamId(0),
            length: code,
        }
    }

    /// Encodes the header into its twelve wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.frame_type.to_u8();
        out[2..4].copy_from_slice(&self.flags.0.to_be_bytes());
        out[4..8].copy_from_slice(&self.stream.0.to_be_bytes());
        out[8..12].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// Decodes twelve wire bytes, rejecting an unknown version or frame type.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, YamuxError> {
        let [version, ty, f0, f1, s0, s1, s2, s3, l0, l1, l2, l3] = *bytes;
        if version != VERSION {
            return Err(YamuxError::UnsupportedVersion(version));
        }
        Ok(Self {
            frame_type: FrameType::from_u8(ty)?,
            flags: Flags(u16::from_be_bytes([f0, f1])),
            stream: StreamId(u32::from_be_bytes([s0, s1, s2, s3])),
            length: u32::from_be_bytes([l0, l1, l2, l3]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_bytes() {
        let h = Header::data(StreamId(3), Flags::SYN | Flags::FIN, 0x0102_0304);
        assert_eq!(h.encode(), [0, 0, 0, 5, 0, 0, 0, 3, 1, 2, 3, 4]);
        let p = Header::ping(Flags::ACK, 7);
        assert_eq!(p.encode(), [0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
    }

    #[test]
    fn rejects_version_and_type() {
        let mut b = Header::go_away(1).encode();
        b[0] = 1;
        assert_eq!(Header::decode(&b), Err(YamuxError::UnsupportedVersion(1)));
        b[0] = 0;
        b[1] = 4;
        assert_eq!(Header::decode(&b), Err(YamuxError::InvalidFrameType(4)));
    }

    fn any_type() -> impl Strategy<Value = FrameType> {
        prop_oneof![
            Just(FrameType::Data),
            Just(FrameType::WindowUpdate),
            Just(FrameType::Ping),
            Just(FrameType::GoAway),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(ty in any_type(), flags: u16, stream: u32, length: u32) {
            let h = Header { frame_type: ty, flags: Flags(flags), stream: StreamId(stream), length };
            prop_assert_eq!(Header::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn decode_never_panics(bytes: [u8; HEADER_LEN]) {
            if let Ok(h) = Header::decode(&bytes) {
                prop_assert_eq!(h.encode(), bytes);
            }
        }
    }
}
