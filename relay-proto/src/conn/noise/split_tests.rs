//! The split ciphers against snow's own ChaCha20-Poly1305, and their in-place paths.

use bytes::{Bytes, BytesMut};
use snow::params::CipherChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::*;
use crate::conn::noise::{MAX_FRAME, MAX_PLAINTEXT};

const KEY: [u8; KEY_LEN] = [7; KEY_LEN];

fn pair() -> (SendCipher, RecvCipher) {
    (
        SendCipher::new(&KEY).unwrap(),
        RecvCipher::new(&KEY).unwrap(),
    )
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Frames as snow's transport would write them, frame `n` under nonce `n`.
fn snow_frames(plaintexts: &[&[u8]]) -> Vec<u8> {
    let mut cipher = DefaultResolver
        .resolve_cipher(&CipherChoice::ChaChaPoly)
        .unwrap();
    cipher.set(&KEY);
    let mut wire = Vec::new();
    for (n, plaintext) in plaintexts.iter().enumerate() {
        let mut body = vec![0; plaintext.len() + TAG_LEN];
        let len = cipher.encrypt(n as u64, &[], plaintext, &mut body);
        wire.extend_from_slice(&(len as u16).to_be_bytes());
        wire.extend_from_slice(&body[..len]);
    }
    wire
}

#[test]
fn frames_match_snow_byte_for_byte() {
    let (a, b) = (data(1000), data(MAX_PLAINTEXT));
    let expected = snow_frames(&[&a, &b, &[]]);
    let (mut send, _) = pair();
    let mut wire = BytesMut::new();
    send.encrypt(&a, &mut wire).unwrap();
    send.encrypt(&b, &mut wire).unwrap();
    // The in-place path writes the same frame.
    let mut body = Vec::new();
    let sealed = send.seal_in_place(&mut body).unwrap();
    wire.extend_from_slice(&sealed.prefix);
    wire.extend_from_slice(&body);
    wire.extend_from_slice(&sealed.tag);
    assert_eq!(&wire[..], &expected[..]);
    assert_eq!(send.frames(), 3);
}

#[test]
fn snow_frames_decrypt_in_place_and_by_copy() {
    let (a, b) = (data(5), data(MAX_PLAINTEXT));
    let wire = snow_frames(&[&a, &b]);

    let (_, mut recv) = pair();
    let mut buf = BytesMut::from(&wire[..]);
    let first = recv.decrypt_frame(&mut buf).unwrap().unwrap();
    let second = recv.decrypt_frame(&mut buf).unwrap().unwrap();
    assert_eq!((&first[..], &second[..]), (&a[..], &b[..]));
    assert!(buf.is_empty());
    assert_eq!(recv.decrypt_frame(&mut buf).unwrap(), None);

    let (_, mut recv) = pair();
    let mut out = BytesMut::new();
    for piece in wire.chunks(777) {
        recv.decrypt(piece, &mut out).unwrap();
    }
    assert_eq!(out.len(), a.len() + b.len());
    assert_eq!(&out[..5], &a[..]);
    assert_eq!(recv.frames(), 2);
}

#[test]
fn a_frame_begun_by_copy_is_finished_in_place() {
    let (mut send, mut recv) = pair();
    let payload = data(3000);
    let mut wire = BytesMut::new();
    send.encrypt(&payload[..1000], &mut wire).unwrap();
    send.encrypt(&payload[1000..], &mut wire).unwrap();
    // The copying path sees the first frame and part of the second ...
    let cut = 1000 + 18 + 700;
    let mut out = BytesMut::new();
    recv.decrypt(&wire[..cut], &mut out).unwrap();
    assert_eq!(&out[..], &payload[..1000]);
    // ... so the in-place path refuses until the buffered start is taken over.
    let mut rest = BytesMut::from(&wire[cut..]);
    assert!(matches!(
        recv.decrypt_frame(&mut rest),
        Err(NoiseError::BufferedInput)
    ));
    let mut buf = BytesMut::from(&recv.take_buffered()[..]);
    buf.extend_from_slice(&rest);
    let second = recv.decrypt_frame(&mut buf).unwrap().unwrap();
    assert_eq!(&second[..], &payload[1000..]);
}

#[test]
fn plaintext_shares_the_read_buffer() {
    let (mut send, mut recv) = pair();
    let mut wire = BytesMut::new();
    send.encrypt(&data(100), &mut wire).unwrap();
    let start = wire.as_ptr() as usize;
    let plaintext: Bytes = recv.decrypt_frame(&mut wire).unwrap().unwrap();
    assert_eq!(plaintext.as_ptr() as usize, start + LEN_PREFIX);
}

#[test]
fn tampering_fails_and_stays_failed() {
    let (mut send, mut recv) = pair();
    let mut wire = BytesMut::new();
    send.encrypt(b"one", &mut wire).unwrap();
    send.encrypt(b"two", &mut wire).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    assert_eq!(&recv.decrypt_frame(&mut wire).unwrap().unwrap()[..], b"one");
    assert!(matches!(
        recv.decrypt_frame(&mut wire),
        Err(NoiseError::DecryptFailed)
    ));
    assert!(recv.has_failed());
    let mut good = BytesMut::new();
    send.encrypt(b"three", &mut good).unwrap();
    assert!(recv.decrypt_frame(&mut good).is_err());
    assert!(recv.decrypt(&good, &mut BytesMut::new()).is_err());
}

#[test]
fn oversized_and_short_frames_are_refused() {
    let (mut send, mut recv) = pair();
    let mut body = vec![0; MAX_PLAINTEXT + 1];
    assert!(matches!(
        send.seal_in_place(&mut body),
        Err(NoiseError::FrameTooLarge)
    ));
    assert_eq!(send.frames(), 0, "a refused frame takes no nonce");
    let mut short = BytesMut::from(&[0u8, 3, 1, 2, 3][..]);
    assert!(recv.decrypt_frame(&mut short).is_err());
}

#[test]
fn size_of_the_front_frame() {
    assert_eq!(frame_size(&[]), None);
    assert_eq!(frame_size(&[1]), None);
    assert_eq!(frame_size(&[0, 20]), Some(22));
    assert_eq!(frame_size(&[0, 20, 0, 0, 0]), Some(22));
    assert_eq!(frame_size(&[0, 0]), Some(2));
    let full = u16::MAX.to_be_bytes();
    assert_eq!(frame_size(&full), Some(LEN_PREFIX + MAX_FRAME));
}

#[test]
fn the_last_nonce_is_never_used() {
    let (mut send, mut recv) = pair();
    send.nonce = u64::MAX - 1;
    let mut body = *b"last";
    assert!(send.seal_in_place(&mut body).is_ok());
    assert!(matches!(
        send.seal_in_place(&mut body),
        Err(NoiseError::NonceExhausted)
    ));
    recv.nonce = u64::MAX;
    let mut frame = BytesMut::from(&[0u8, 16][..]);
    frame.extend_from_slice(&[0; 16]);
    assert!(matches!(
        recv.decrypt_frame(&mut frame),
        Err(NoiseError::NonceExhausted)
    ));
}

#[test]
fn the_wasm_cipher_agrees_with_ring() {
    let pure = super::pure::PureKey::new(&KEY).unwrap();
    let native = Key::new(&KEY).unwrap();
    for (nonce, len) in [
        (0u64, 0usize),
        (1, 1),
        (7, 1000),
        (u64::MAX - 1, MAX_PLAINTEXT),
    ] {
        let plaintext = data(len);
        let (mut a, mut b) = (plaintext.clone(), plaintext.clone());
        let tag_a = pure.seal(nonce, &mut a).unwrap();
        let tag_b = native.seal(nonce, &mut b).unwrap();
        assert_eq!((&a, tag_a), (&b, tag_b), "nonce {nonce}, {len} bytes");
        pure.open(nonce, &mut b, &tag_b).unwrap();
        assert_eq!(b, plaintext);
        assert!(pure.open(nonce + 1, &mut a, &tag_a).is_err());
    }
}
