//! The reader and writer halves against a real Noise session: reads of every size,
//! the cipher handed over at every point, and the writer's frames on the wire.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use relay_proto::conn::noise::{Handshake, HandshakeProgress, Role, Session};
use relay_proto::identity::keypair_from_seed;
use relay_proto::rng::Rng;

use super::*;

/// Both ends of an established Noise session.
fn sessions(seed: u64) -> (Session, Session) {
    let mut rng = Rng::from_u64(seed);
    let (mut m1, mut m2, mut m3) = (Vec::new(), Vec::new(), Vec::new());
    let mut initiator = Handshake::new(
        Role::Initiator,
        &keypair_from_seed(1),
        None,
        &mut rng,
        &mut m1,
    )
    .unwrap();
    let mut responder = Handshake::new(
        Role::Responder,
        &keypair_from_seed(2),
        None,
        &mut rng,
        &mut Vec::new(),
    )
    .unwrap();
    responder.handle_input(&m1, &mut m2).unwrap();
    let HandshakeProgress::Done(a) = initiator.handle_input(&m2, &mut m3).unwrap() else {
        panic!("initiator not done");
    };
    let HandshakeProgress::Done(b) = responder.handle_input(&m3, &mut Vec::new()).unwrap() else {
        panic!("responder not done");
    };
    (a.session, b.session)
}

fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::from_u64(seed);
    let mut data = vec![0; len];
    rng.fill(&mut data);
    data
}

/// Encrypts `plaintext` in writes of assorted sizes (small and whole frames).
fn wire(session: &mut Session, plaintext: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut rest = plaintext;
    while !rest.is_empty() {
        let len = match rng.below(4) {
            0 => 1 + rng.below(100) as usize,
            1 => MAX_PLAINTEXT,
            _ => 1 + rng.below(3 * MAX_PLAINTEXT as u64) as usize,
        }
        .min(rest.len());
        session.encrypt(&rest[..len], &mut out).unwrap();
        rest = &rest[len..];
    }
    out.to_vec()
}

/// Plays a socket's reader and the driver: the node (a session's receive half)
/// decrypts until it has taken `handover` bytes, then hands its cipher out; the
/// reader reads in sizes `rng` picks and the driver handles its chunks `lag` reads
/// behind. Returns the plaintext in the order the node got it.
fn receive(wire: &[u8], mut node: Session, handover: usize, lag: usize, rng: &mut Rng) -> Vec<u8> {
    let handoff = Handoff::default();
    let mut reader = Reader::default();
    let mut queue: VecDeque<Read> = VecDeque::new();
    let mut node_taken = 0usize;
    let mut offered = false;
    let mut plaintext = Vec::new();
    let mut pos = 0;
    let mut drive = |queue: &mut VecDeque<Read>, keep: usize, node: &mut Session| {
        while queue.len() > keep {
            match queue.pop_front().unwrap() {
                Read::Ciphertext(chunk) => match handoff.in_flight(&chunk) {
                    InFlight::ToNode => {
                        assert!(!offered);
                        let mut out = BytesMut::new();
                        node.decrypt(&chunk, &mut out).unwrap();
                        plaintext.extend_from_slice(&out);
                        node_taken += chunk.len();
                    }
                    InFlight::Decrypted(out) => plaintext.extend_from_slice(&out),
                    InFlight::Failed => panic!("in-flight ciphertext failed"),
                },
                Read::Plaintext(frames) => {
                    assert!(offered);
                    for frame in frames {
                        plaintext.extend_from_slice(&frame);
                    }
                }
            }
            if !offered && node_taken >= handover {
                offered = true;
                let placeholder = sessions(0).0;
                let (_, recv) = std::mem::replace(node, placeholder).into_halves();
                handoff.offer(recv, node_taken as u64);
            }
        }
    };
    while pos < wire.len() {
        let room = reader.room();
        assert!(!room.is_empty());
        let want = 1 + rng.below(200_000) as usize;
        let n = room.len().min(want).min(wire.len() - pos);
        room[..n].copy_from_slice(&wire[pos..pos + n]);
        pos += n;
        queue.push_back(reader.commit(n, &handoff).unwrap());
        drive(&mut queue, lag, &mut node);
    }
    drive(&mut queue, 0, &mut node);
    // Whatever the reader still holds is the start of a frame: nothing at the end.
    let _ = &mut node;
    plaintext
}

#[test]
fn every_byte_is_decrypted_once_in_order_whatever_the_handover() {
    let mut rng = Rng::from_u64(7);
    for round in 0..40u64 {
        let (mut a, b) = sessions(round + 1);
        let data = payload(200_000 + rng.below(600_000) as usize, round);
        let bytes = wire(&mut a, &data, &mut rng);
        let handover = rng.below(bytes.len() as u64 / 2) as usize;
        let lag = rng.below(4) as usize;
        let got = receive(&bytes, b, handover, lag, &mut rng);
        assert_eq!(got.len(), data.len(), "round {round}");
        assert!(got == data, "round {round}: plaintext differs");
    }
}

#[test]
fn bulk_reads_keep_frames_whole_without_copies() {
    // With the cipher from the start, every frame of a bulk stream is decrypted in
    // the block it was read into: the plaintext of consecutive frames of one block
    // lies in that block, one frame overhead apart.
    let (mut a, b) = sessions(3);
    let data = payload(4 * 1024 * 1024, 3);
    let mut wire_bytes = BytesMut::new();
    a.encrypt(&data, &mut wire_bytes).unwrap();
    let handoff = Handoff::default();
    handoff.offer(b.into_halves().1, 0);
    let mut reader = Reader::default();
    let mut pos = 0;
    let mut frames: Vec<Bytes> = Vec::new();
    while pos < wire_bytes.len() {
        let room = reader.room();
        let n = room.len().min(wire_bytes.len() - pos);
        room[..n].copy_from_slice(&wire_bytes[pos..pos + n]);
        pos += n;
        if let Read::Plaintext(got) = reader.commit(n, &handoff).unwrap() {
            frames.extend(got);
        }
    }
    let total: usize = frames.iter().map(Bytes::len).sum();
    assert_eq!(total, data.len());
    let adjacent = frames
        .windows(2)
        .filter(|w| w[0].as_ptr() as usize + w[0].len() + 18 == w[1].as_ptr() as usize)
        .count();
    // All but the first frame of each block follow their predecessor in place.
    let blocks = data.len() / (READ_BLOCK - WIRE_FRAME) + 2;
    assert!(
        adjacent + blocks >= frames.len(),
        "{adjacent} of {}",
        frames.len()
    );
}

#[test]
fn corrupt_frames_fail_the_read() {
    let (mut a, b) = sessions(4);
    let mut bytes = BytesMut::new();
    a.encrypt(b"hello", &mut bytes).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    let handoff = Handoff::default();
    handoff.offer(b.into_halves().1, 0);
    let mut reader = Reader::default();
    let room = reader.room();
    room[..bytes.len()].copy_from_slice(&bytes);
    assert!(reader.commit(bytes.len(), &handoff).is_err());
}

#[test]
fn the_writer_frames_what_a_session_reads() {
    let (a, mut b) = sessions(5);
    let (send, _) = a.into_halves();
    let mut writer = Writer::default();
    let mut out = VecDeque::new();
    writer
        .push(Outgoing::Ciphertext(Bytes::from_static(b"")), &mut out)
        .unwrap();
    assert!(
        writer
            .push(Outgoing::Plaintext(BytesMut::from(&b"early"[..])), &mut out)
            .is_err(),
        "plaintext before the cipher is refused"
    );
    writer
        .push(Outgoing::Cipher(Box::new(send)), &mut out)
        .unwrap();
    let data = payload(3 * MAX_PLAINTEXT + 5, 5);
    writer
        .push(Outgoing::Plaintext(BytesMut::from(&data[..])), &mut out)
        .unwrap();
    writer
        .push(Outgoing::Plaintext(BytesMut::from(&b"tail"[..])), &mut out)
        .unwrap();
    let bytes: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
    let mut plaintext = BytesMut::new();
    b.decrypt(&bytes, &mut plaintext).unwrap();
    assert_eq!(&plaintext[..data.len()], &data[..]);
    assert_eq!(&plaintext[data.len()..], b"tail");
}
