//! Unsigned varints as the multiformats `unsigned-varint` spec defines them.
//!
//! A value is written as little-endian groups of 7 bits, one group per byte, the high
//! bit of each byte set when another byte follows (LEB128). The spec adds two rules that
//! decoding enforces:
//! - an encoding is at most [`MAX_SPEC_LEN`] (9) bytes long, so at most 63 bits;
//! - an encoding is minimal: the last byte of a multi-byte encoding is not `0x00`.
//!
//! Encoding never fails. Values of 2^63 and above need 10 bytes, which the spec does
//! not allow: [`encode`] still writes them as plain LEB128, and [`decode`] rejects them
//! with [`VarintError::Overflow`]. Lengths and tags in libp2p never come near that.

/// Size of a buffer that holds the encoding of any `u64`.
pub const MAX_LEN: usize = 10;

/// Longest encoding the multiformats spec allows: 9 bytes, 63 bits of value.
pub const MAX_SPEC_LEN: usize = 9;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VarintError {
    /// The encoding is longer than 9 bytes, so its value would exceed 63 bits.
    #[error("varint longer than {MAX_SPEC_LEN} bytes")]
    Overflow,
    /// The encoding ends in a zero group: a shorter encoding of the same value exists.
    #[error("varint is not minimally encoded")]
    NotMinimal,
}

/// Writes `n` into `buf` and returns the encoded bytes, a prefix of `buf`.
pub fn encode(n: u64, buf: &mut [u8; MAX_LEN]) -> &[u8] {
    let mut rest = n;
    let mut len = 0;
    for slot in buf.iter_mut() {
        len += 1;
        // Truncation keeps the low 7 bits, which is the group being written.
        let group = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            *slot = group;
            break;
        }
        *slot = group | 0x80;
    }
    &buf[..len]
}

/// Appends the encoding of `n` to `out`.
pub fn encode_into(n: u64, out: &mut Vec<u8>) {
    let mut buf = [0; MAX_LEN];
    out.extend_from_slice(encode(n, &mut buf));
}

/// Number of bytes [`encode`] writes for `n`: 1 to 10.
pub fn encoded_len(n: u64) -> usize {
    let bits = 64 - n.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Decodes one varint from the start of `input`.
///
/// Returns `Ok(None)` when `input` ends before the varint does (feed more bytes and call
/// again), or `Ok(Some((value, bytes_consumed)))`. An encoding that has already run past
/// 9 bytes is rejected at once, without waiting for its end.
pub fn decode(input: &[u8]) -> Result<Option<(u64, usize)>, VarintError> {
    let mut value = 0u64;
    for (i, &byte) in input.iter().take(MAX_SPEC_LEN).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(VarintError::NotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if input.len() >= MAX_SPEC_LEN {
        return Err(VarintError::Overflow);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(n, &mut out);
        out
    }

    #[test]
    fn known_vectors() {
        // Examples from the multiformats unsigned-varint README.
        let vectors: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (255, &[0xff, 0x01]),
            (300, &[0xac, 0x02]),
            (16384, &[0x80, 0x80, 0x01]),
            (
                (1 << 63) - 1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            ),
        ];
        for &(n, bytes) in vectors {
            assert_eq!(enc(n), bytes, "encode {n}");
            assert_eq!(encoded_len(n), bytes.len(), "encoded_len {n}");
            assert_eq!(decode(bytes), Ok(Some((n, bytes.len()))), "decode {n}");
        }
    }

    #[test]
    fn u64_max_takes_ten_bytes_and_is_rejected() {
        let bytes = enc(u64::MAX);
        assert_eq!(bytes.len(), MAX_LEN);
        assert_eq!(encoded_len(u64::MAX), MAX_LEN);
        assert_eq!(decode(&bytes), Err(VarintError::Overflow));
        assert_eq!(decode(&enc(1 << 63)), Err(VarintError::Overflow));
    }

    #[test]
    fn incomplete_needs_more() {
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(decode(&[0x80]), Ok(None));
        assert_eq!(decode(&[0xff; 8]), Ok(None));
    }

    #[test]
    fn overlong_rejected_before_end() {
        assert_eq!(decode(&[0x80; 9]), Err(VarintError::Overflow));
        assert_eq!(decode(&[0x81; 12]), Err(VarintError::Overflow));
    }

    #[test]
    fn non_minimal_rejected() {
        assert_eq!(decode(&[0x80, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(decode(&[0x81, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(decode(&[0xac, 0x82, 0x00]), Err(VarintError::NotMinimal));
        // A lone zero byte is the minimal encoding of 0.
        assert_eq!(decode(&[0x00, 0x00]), Ok(Some((0, 1))));
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        assert_eq!(decode(&[0xac, 0x02, 0xff, 0x01]), Ok(Some((300, 2))));
    }

    proptest! {
        #[test]
        fn round_trip(n in 0u64..(1 << 63), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = enc(n);
            let len = bytes.len();
            prop_assert_eq!(len, encoded_len(n));
            let mut buf = [0; MAX_LEN];
            prop_assert_eq!(encode(n, &mut buf), &bytes[..]);
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(decode(&bytes), Ok(Some((n, len))));
            // Every strict prefix asks for more bytes.
            for cut in 0..len {
                prop_assert_eq!(decode(&bytes[..cut]), Ok(None));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(Some((n, used))) = decode(&bytes) {
                // Whatever decodes is the one minimal encoding of its value.
                prop_assert_eq!(enc(n), &bytes[..used]);
            }
        }
    }
}
