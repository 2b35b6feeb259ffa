//! Length-prefixed frames: an unsigned varint length followed by that many bytes.
//!
//! This is the framing of multistream-select messages and of the protobuf messages of
//! circuit relay v2, DCUtR and identify. Every decoder takes a maximum frame size and
//! rejects a larger announced length as soon as the length prefix is complete, before
//! the body arrives, so a peer cannot make us buffer more than the maximum.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::varint::{self, VarintError};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is not a valid varint.
    #[error("invalid frame length prefix: {0}")]
    Varint(#[from] VarintError),
    /// The announced length exceeds the maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Length announced by the prefix.
        len: u64,
        /// Largest length accepted.
        max: usize,
    },
}

/// Appends `msg` to `out`, preceded by its length as a varint.
pub fn encode_frame(msg: &[u8], out: &mut Vec<u8>) {
    out.reserve(varint::MAX_LEN + msg.len());
    varint::encode_into(msg.len() as u64, out);
    out.extend_from_slice(msg);
}

/// Decodes one frame from the start of `input`, accepting payloads of at most `max` bytes.
///
/// Returns `Ok(None)` when `input` ends before the frame does, or
/// `Ok(Some((payload, consumed)))` where `payload` is the range of the payload within
/// `input` and `consumed` the length of the whole frame, prefix included.
pub fn decode_frame(input: &[u8], max: usize) -> Result<Option<(Range<usize>, usize)>, FrameError> {
    let Some((announced, prefix_len)) = varint::decode(input)? else {
        return Ok(None);
    };
    let len = match usize::try_from(announced) {
        Ok(len) if len <= max => len,
        _ => {
            return Err(FrameError::TooLarge {
                len: announced,
                max,
            });
        }
    };
    // `len <= max` and `prefix_len <= 9`: only a `max` near `usize::MAX` could overflow.
    let Some(end) = prefix_len.checked_add(len) else {
        return Err(FrameError::TooLarge {
            len: announced,
            max,
        });
    };
    if input.len() < end {
        return Ok(None);
    }
    Ok(Some((prefix_len..end, end)))
}

/// Accumulates received bytes and yields whole frames.
///
/// Feed bytes with [`push`](Self::push), then call [`next_frame`](Self::next_frame)
/// until it returns `Ok(None)`. After an error the byte stream is out of step and the
/// reader keeps returning that error.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    max: usize,
}

impl FrameReader {
    /// Creates a reader that accepts frames whose payload is at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Appends received bytes to the buffer.
    ///
    /// Nothing is checked here: an oversized length prefix is reported by the next call
    /// to [`next_frame`](Self::next_frame), without waiting for the frame's body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Removes and returns the payload of the next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        let Some((payload, consumed)) = decode_frame(&self.buf, self.max)? else {
            return Ok(None);
        };
        let mut frame = self.buf.split_to(consumed);
        frame.advance(payload.start);
        Ok(Some(frame.freeze()))
    }

    /// Removes and returns every buffered byte not yet returned as a frame.
    pub fn take_rest(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Number of buffered bytes not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_vector() {
        let mut out = vec![0xee];
        encode_frame(b"hello", &mut out);
        assert_eq!(out, b"\xee\x05hello");
        assert_eq!(decode_frame(&out[1..], 5), Ok(Some((1..6, 6))));
        assert_eq!(
            decode_frame(&out[1..], 4),
            Err(FrameError::TooLarge { len: 5, max: 4 })
        );
    }

    #[test]
    fn empty_frame() {
        let mut out = Vec::new();
        encode_frame(b"", &mut out);
        assert_eq!(out, [0]);
        assert_eq!(decode_frame(&out, 0), Ok(Some((1..1, 1))));
    }

    #[test]
    fn incomplete() {
        assert_eq!(decode_frame(&[], 10), Ok(None));
        assert_eq!(decode_frame(&[0x80], 1000), Ok(None));
        assert_eq!(decode_frame(&[0x03, b'a', b'b'], 10), Ok(None));
    }

    #[test]
    fn malformed_prefix_rejected() {
        assert_eq!(
            decode_frame(&[0x80, 0x00, 0x00], 10),
            Err(FrameError::Varint(VarintError::NotMinimal))
        );
        assert_eq!(
            decode_frame(&[0xff; 9], 10),
            Err(VarintError::Overflow.into())
        );
    }

    #[test]
    fn oversized_frame_rejected_before_body() {
        let mut reader = FrameReader::new(4096);
        // 4097 = [0x81, 0x20]: only the prefix has arrived.
        reader.push(&[0x81]);
        assert_eq!(reader.next_frame(), Ok(None));
        reader.push(&[0x20]);
        assert_eq!(
            reader.next_frame(),
            Err(FrameError::TooLarge {
                len: 4097,
                max: 4096
            })
        );
        // The reader stays failed.
        reader.push(b"more");
        assert!(reader.next_frame().is_err());
    }

    #[test]
    fn huge_length_rejected() {
        let mut prefix = Vec::new();
        varint::encode_into((1 << 63) - 1, &mut prefix);
        assert_eq!(
            decode_frame(&prefix, 4096),
            Err(FrameError::TooLarge {
                len: (1 << 63) - 1,
                max: 4096
            })
        );
        // With no practical maximum, the frame is simply incomplete.
        assert_eq!(decode_frame(&prefix, usize::MAX), Ok(None));
    }

    #[test]
    fn reader_yields_frames_and_rest() {
        let mut wire = Vec::new();
        encode_frame(b"one", &mut wire);
        encode_frame(b"", &mut wire);
        encode_frame(b"three", &mut wire);
        wire.extend_from_slice(b"\x09tail");
        let mut reader = FrameReader::new(16);
        reader.push(&wire);
        assert_eq!(reader.next_frame(), Ok(Some(Bytes::from_static(b"one"))));
        assert_eq!(reader.next_frame(), Ok(Some(Bytes::new())));
        assert_eq!(reader.next_frame(), Ok(Some(Bytes::from_static(b"three"))));
        assert_eq!(reader.next_frame(), Ok(None));
        assert_eq!(reader.buffered(), 5);
        assert_eq!(reader.take_rest(), Bytes::from_static(b"\x09tail"));
        assert_eq!(reader.buffered(), 0);
    }

    proptest! {
        #[test]
        fn round_trip(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
            chunk in 1usize..64,
        ) {
            let mut wire = Vec::new();
            for msg in &msgs {
                encode_frame(msg, &mut wire);
            }
            // Whole input at once.
            let mut at = 0;
            for msg in &msgs {
                let (payload, used) = decode_frame(&wire[at..], 300).unwrap().unwrap();
                prop_assert_eq!(&wire[at..][payload], &msg[..]);
                at += used;
            }
            prop_assert_eq!(at, wire.len());
            // Fed to a reader in chunks.
            let mut reader = FrameReader::new(300);
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                reader.push(piece);
                while let Some(frame) = reader.next_frame().unwrap() {
                    got.push(frame.to_vec());
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(reader.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            max in 0usize..32,
        ) {
            if let Ok(Some((payload, used))) = decode_frame(&bytes, max) {
                prop_assert!(payload.end == used && used <= bytes.len());
                prop_assert!(payload.len() <= max);
            }
            let mut reader = FrameReader::new(max);
            for piece in bytes.chunks(3) {
                reader.push(piece);
                while let Ok(Some(frame)) = reader.next_frame() {
                    prop_assert!(frame.len() <= max);
                }
            }
            let _ = reader.take_rest();
        }
    }
}
