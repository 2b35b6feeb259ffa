use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::identity::keypair_from_seed;
use crate::rng::Rng;

fn initiator_key() -> Keypair {
    keypair_from_seed(1)
}

fn responder_key() -> Keypair {
    keypair_from_seed(2)
}

/// Both sides of a handshake, and message 1 as the initiator wrote it.
fn start(
    seed: u64,
    expected_responder: Option<PeerId>,
    expected_initiator: Option<PeerId>,
) -> (Handshake, Handshake, Vec<u8>) {
    let mut rng = Rng::from_u64(seed);
    let mut msg1 = Vec::new();
    let initiator = Handshake::new(
        Role::Initiator,
        &initiator_key(),
        expected_responder,
        &mut rng,
        &mut msg1,
    )
    .unwrap();
    let mut nothing = Vec::new();
    let responder = Handshake::new(
        Role::Responder,
        &responder_key(),
        expected_initiator,
        &mut rng,
        &mut nothing,
    )
    .unwrap();
    assert!(
        nothing.is_empty(),
        "the responder writes nothing before message 1"
    );
    (initiator, responder, msg1)
}

/// Feeds `bytes` in pieces ending at `cuts` (those short of its end), checking that every call but the last is
/// pending and writes nothing; returns the last call's result.
fn feed(
    handshake: &mut Handshake,
    bytes: &[u8],
    cuts: &[usize],
    out: &mut Vec<u8>,
) -> Result<HandshakeProgress, NoiseError> {
    let mut last = 0;
    for &cut in cuts {
        if cut >= bytes.len() {
            break;
        }
        let cut = cut.max(last);
        let progress = handshake.handle_input(&bytes[last..cut], out)?;
        assert!(matches!(progress, HandshakeProgress::Pending));
        assert!(out.is_empty(), "output before the whole message arrived");
        last = cut;
    }
    handshake.handle_input(&bytes[last..], out)
}

/// Two established sides and the three handshake messages.
struct Pair {
    initiator: Established,
    responder: Established,
    transcript: [Vec<u8>; 3],
}

/// Runs a handshake, cutting message `n` at the offsets `cuts[n - 1]`.
fn handshake(seed: u64, cuts: [&[usize]; 3]) -> Pair {
    let (mut initiator, mut responder, msg1) = start(seed, None, None);
    let mut msg2 = Vec::new();
    let progress = feed(&mut responder, &msg1, cuts[0], &mut msg2).unwrap();
    assert!(matches!(progress, HandshakeProgress::Pending));
    let mut msg3 = Vec::new();
    let HandshakeProgress::Done(initiator) =
        feed(&mut initiator, &msg2, cuts[1], &mut msg3).unwrap()
    else {
        panic!("the initiator is done once it has read message 2");
    };
    let mut nothing = Vec::new();
    let HandshakeProgress::Done(responder) =
        feed(&mut responder, &msg3, cuts[2], &mut nothing).unwrap()
    else {
        panic!("the responder is done once it has read message 3");
    };
    assert!(nothing.is_empty());
    Pair {
        initiator: *initiator,
        responder: *responder,
        transcript: [msg1, msg2, msg3],
    }
}

fn assert_authenticated(pair: &Pair) {
    assert_eq!(
        pair.initiator.remote_peer,
        responder_key().public().to_peer_id()
    );
    assert_eq!(
        pair.responder.remote_peer,
        initiator_key().public().to_peer_id()
    );
    assert_eq!(pair.initiator.remote_public_key, responder_key().public());
    assert_eq!(pair.responder.remote_public_key, initiator_key().public());
    assert_eq!(pair.initiator.remote_extensions, None);
    assert!(pair.initiator.rest.is_empty() && pair.responder.rest.is_empty());
}

/// Encrypts `data` on `from`, feeds the ciphertext to `to` in pieces of `sizes`
/// (repeated as needed), and returns the plaintext `to` produced.
fn transfer(from: &mut Session, to: &mut Session, data: &[u8], sizes: &[usize]) -> BytesMut {
    let mut wire = BytesMut::new();
    from.encrypt(data, &mut wire).unwrap();
    let mut plaintext = BytesMut::new();
    let mut rest = &wire[..];
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.clamp(1, rest.len()));
        to.decrypt(piece, &mut plaintext).unwrap();
        rest = tail;
    }
    plaintext
}

fn frame_count(len: usize) -> usize {
    len.div_ceil(MAX_PLAINTEXT)
}

#[test]
fn message_sizes_match_the_pattern() {
    let pair = handshake(1, [&[], &[], &[]]);
    let [msg1, msg2, msg3] = &pair.transcript;
    assert_eq!(msg1.len(), LEN_PREFIX + 32);
    assert_eq!(&msg1[..2], &32u16.to_be_bytes());
    // msg2: e, encrypted s, encrypted payload; msg3: encrypted s, encrypted payload.
    assert_eq!(msg2.len() - msg3.len(), 32);
    assert_authenticated(&pair);
}

#[test]
fn handshake_completes_with_every_split() {
    let whole = handshake(5, [&[], &[], &[]]);
    for message in 0..3 {
        for cut in 0..=whole.transcript[message].len() {
            let mut cuts: [&[usize]; 3] = [&[], &[], &[]];
            let at = [cut];
            cuts[message] = &at;
            let pair = handshake(5, cuts);
            assert_eq!(pair.transcript, whole.transcript);
            assert_authenticated(&pair);
        }
    }
}

#[test]
fn handshake_completes_fed_byte_by_byte() {
    let cuts: Vec<usize> = (0..300).collect();
    let pair = handshake(6, [&cuts, &cuts, &cuts]);
    assert_authenticated(&pair);
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let mut a = handshake(9, [&[], &[], &[]]);
    let mut b = handshake(9, [&[], &[], &[]]);
    assert_eq!(a.transcript, b.transcript);
    let (mut wire_a, mut wire_b) = (BytesMut::new(), BytesMut::new());
    a.initiator.session.encrypt(b"same", &mut wire_a).unwrap();
    b.initiator.session.encrypt(b"same", &mut wire_b).unwrap();
    assert_eq!(wire_a, wire_b);

    let c = handshake(10, [&[], &[], &[]]);
    assert_ne!(a.transcript[0], c.transcript[0]);
    assert_ne!(a.transcript[1], c.transcript[1]);
}

#[test]
fn static_keys_are_fresh_per_handshake() {
    let mut rng = Rng::from_u64(11);
    let mut first = Vec::new();
    let mut second = Vec::new();
    Handshake::new(
        Role::Initiator,
        &initiator_key(),
        None,
        &mut rng,
        &mut first,
    )
    .unwrap();
    Handshake::new(
        Role::Initiator,
        &initiator_key(),
        None,
        &mut rng,
        &mut second,
    )
    .unwrap();
    assert_ne!(first, second);
}

#[test]
fn expected_peers_are_accepted() {
    let (mut initiator, mut responder, msg1) = start(
        12,
        Some(responder_key().public().to_peer_id()),
        Some(initiator_key().public().to_peer_id()),
    );
    let mut msg2 = Vec::new();
    responder.handle_input(&msg1, &mut msg2).unwrap();
    let mut msg3 = Vec::new();
    let progress = initiator.handle_input(&msg2, &mut msg3).unwrap();
    assert!(matches!(progress, HandshakeProgress::Done(_)));
    let progress = responder.handle_input(&msg3, &mut Vec::new()).unwrap();
    assert!(matches!(progress, HandshakeProgress::Done(_)));
}

#[test]
fn initiator_rejects_an_unexpected_responder() {
    let wrong = keypair_from_seed(99).public().to_peer_id();
    let (mut initiator, mut responder, msg1) = start(13, Some(wrong), None);
    let mut msg2 = Vec::new();
    responder.handle_input(&msg1, &mut msg2).unwrap();
    let mut msg3 = Vec::new();
    let error = initiator.handle_input(&msg2, &mut msg3).unwrap_err();
    let NoiseError::PeerIdMismatch { expected, actual } = error else {
        panic!("expected a PeerId mismatch, got {error:?}");
    };
    assert_eq!(expected, wrong);
    assert_eq!(actual, responder_key().public().to_peer_id());
    assert!(
        msg3.is_empty(),
        "message 3 must not be sent to the wrong peer"
    );
    let error = initiator.handle_input(&[], &mut msg3).unwrap_err();
    assert!(matches!(error, NoiseError::HandshakeFinished), "{error:?}");
}

#[test]
fn responder_rejects_an_unexpected_initiator() {
    let wrong = keypair_from_seed(99).public().to_peer_id();
    let (mut initiator, mut responder, msg1) = start(14, None, Some(wrong));
    let mut msg2 = Vec::new();
    responder.handle_input(&msg1, &mut msg2).unwrap();
    let mut msg3 = Vec::new();
    initiator.handle_input(&msg2, &mut msg3).unwrap();
    let error = responder.handle_input(&msg3, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(error, NoiseError::PeerIdMismatch { expected, .. } if expected == wrong),
        "{error:?}"
    );
}

#[test]
fn tampered_message_2_is_rejected() {
    let (_, mut responder, msg1) = start(15, None, None);
    let mut msg2 = Vec::new();
    responder.handle_input(&msg1, &mut msg2).unwrap();
    for index in 0..msg2.len() {
        for bit in [0x01, 0x80] {
            let (mut initiator, _, _) = start(15, None, None);
            let mut tampered = msg2.clone();
            tampered[index] ^= bit;
            let mut msg3 = Vec::new();
            let result = initiator.handle_input(&tampered, &mut msg3);
            if index < LEN_PREFIX {
                // A changed length either waits for more bytes or cuts the message.
                assert!(!matches!(result, Ok(HandshakeProgress::Done(_))));
            } else {
                assert!(result.is_err(), "bit flip at {index} accepted");
            }
            assert!(msg3.is_empty());
        }
    }
}

#[test]
fn tampered_message_3_is_rejected() {
    let pair = handshake(16, [&[], &[], &[]]);
    let [msg1, _, msg3] = &pair.transcript;
    for index in LEN_PREFIX..msg3.len() {
        let (_, mut responder, _) = start(16, None, None);
        responder.handle_input(msg1, &mut Vec::new()).unwrap();
        let mut tampered = msg3.clone();
        tampered[index] ^= 0x04;
        assert!(responder.handle_input(&tampered, &mut Vec::new()).is_err());
    }
}

#[test]
fn bytes_after_message_1_or_2_are_out_of_order() {
    let (mut initiator, mut responder, msg1) = start(17, None, None);
    let mut msg2 = Vec::new();
    let mut early = msg1.clone();
    early.push(0);
    let (_, mut other_responder, _) = start(17, None, None);
    let error = other_responder.handle_input(&early, &mut msg2).unwrap_err();
    assert!(
        matches!(error, NoiseError::HandshakeMessageOutOfOrder),
        "{error:?}"
    );

    responder.handle_input(&msg1, &mut msg2).unwrap();
    msg2.extend_from_slice(&[0, 0]);
    let error = initiator.handle_input(&msg2, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(error, NoiseError::HandshakeMessageOutOfOrder),
        "{error:?}"
    );
}

#[test]
fn early_data_after_message_3_is_handed_over() {
    let (mut initiator, mut responder, msg1) = start(18, None, None);
    let mut msg2 = Vec::new();
    responder.handle_input(&msg1, &mut msg2).unwrap();
    let mut wire = Vec::new();
    let HandshakeProgress::Done(mut initiator) = initiator.handle_input(&msg2, &mut wire).unwrap()
    else {
        panic!("initiator not done");
    };
    let mut data = BytesMut::new();
    initiator
        .session
        .encrypt(b"/yamux/1.0.0\n", &mut data)
        .unwrap();
    wire.extend_from_slice(&data);

    let HandshakeProgress::Done(mut responder) =
        responder.handle_input(&wire, &mut Vec::new()).unwrap()
    else {
        panic!("responder not done");
    };
    assert_eq!(responder.rest, data);
    let mut plaintext = BytesMut::new();
    responder
        .session
        .decrypt(&responder.rest, &mut plaintext)
        .unwrap();
    assert_eq!(&plaintext[..], b"/yamux/1.0.0\n");
}

#[test]
fn transport_splits_large_writes_into_frames() {
    let mut pair = handshake(19, [&[], &[], &[]]);
    let data: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let mut wire = BytesMut::new();
    pair.initiator.session.encrypt(&data, &mut wire).unwrap();
    assert_eq!(
        wire.len(),
        data.len() + frame_count(data.len()) * (LEN_PREFIX + TAG_LEN)
    );
    assert_eq!(&wire[..2], &u16::MAX.to_be_bytes());

    let mut plaintext = BytesMut::new();
    pair.responder
        .session
        .decrypt(&wire, &mut plaintext)
        .unwrap();
    assert_eq!(&plaintext[..], &data[..]);

    let mut empty = BytesMut::new();
    pair.initiator.session.encrypt(&[], &mut empty).unwrap();
    assert!(empty.is_empty());
}

#[test]
fn tampered_transport_frame_ends_the_session() {
    let mut pair = handshake(20, [&[], &[], &[]]);
    let mut wire = BytesMut::new();
    pair.initiator.session.encrypt(b"one", &mut wire).unwrap();
    pair.initiator.session.encrypt(b"two", &mut wire).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let mut plaintext = BytesMut::new();
    let error = pair
        .responder
        .session
        .decrypt(&wire, &mut plaintext)
        .unwrap_err();
    assert!(matches!(error, NoiseError::DecryptFailed), "{error:?}");
    assert_eq!(&plaintext[..], b"one");
    let error = pair
        .responder
        .session
        .decrypt(&[], &mut plaintext)
        .unwrap_err();
    assert!(matches!(error, NoiseError::DecryptFailed), "{error:?}");
}

#[test]
fn replayed_and_short_frames_fail() {
    let mut pair = handshake(21, [&[], &[], &[]]);
    let mut wire = BytesMut::new();
    pair.initiator.session.encrypt(b"once", &mut wire).unwrap();
    let mut plaintext = BytesMut::new();
    pair.responder
        .session
        .decrypt(&wire, &mut plaintext)
        .unwrap();
    assert!(
        pair.responder
            .session
            .decrypt(&wire, &mut plaintext)
            .is_err()
    );

    let mut pair = handshake(22, [&[], &[], &[]]);
    let short = [0, 15].into_iter().chain([0; 15]).collect::<Vec<u8>>();
    assert!(
        pair.responder
            .session
            .decrypt(&short, &mut plaintext)
            .is_err()
    );
    let mut pair = handshake(23, [&[], &[], &[]]);
    assert!(
        pair.responder
            .session
            .decrypt(&[0, 0], &mut plaintext)
            .is_err()
    );
}

#[test]
fn handshake_after_done_is_an_error() {
    let (mut initiator, mut responder, msg1) = start(24, None, None);
    let mut msg2 = Vec::new();
    responder.handle_input(&msg1, &mut msg2).unwrap();
    initiator.handle_input(&msg2, &mut Vec::new()).unwrap();
    let error = initiator.handle_input(&[], &mut Vec::new()).unwrap_err();
    assert!(matches!(error, NoiseError::HandshakeFinished), "{error:?}");
    assert!(format!("{initiator:?}").contains("finished: true"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn handshake_completes_with_random_splits(
        seed in any::<u64>(),
        cuts1 in proptest::collection::vec(0usize..40, 0..6),
        cuts2 in proptest::collection::vec(0usize..250, 0..6),
        cuts3 in proptest::collection::vec(0usize..250, 0..6),
    ) {
        let sorted = |mut cuts: Vec<usize>| { cuts.sort_unstable(); cuts };
        let (cuts1, cuts2, cuts3) = (sorted(cuts1), sorted(cuts2), sorted(cuts3));
        let pair = handshake(seed, [&cuts1, &cuts2, &cuts3]);
        assert_authenticated(&pair);
    }

    #[test]
    fn garbage_never_panics_a_handshake(
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4),
        seed in any::<u64>(),
    ) {
        let (mut initiator, mut responder, _) = start(seed, None, None);
        let mut out = Vec::new();
        for piece in &garbage {
            let _ = initiator.handle_input(piece, &mut out);
            let _ = responder.handle_input(piece, &mut out);
        }
    }

    #[test]
    fn garbage_after_a_valid_message_never_panics(
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (_, mut responder, msg1) = start(25, None, None);
        let mut out = Vec::new();
        responder.handle_input(&msg1, &mut out).unwrap();
        let mut framed = u16::try_from(garbage.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&garbage);
        prop_assert!(responder.handle_input(&framed, &mut out).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn transport_round_trips_with_random_splits(
        seed in any::<u64>(),
        len in 0usize..=200 * 1024,
        sizes in proptest::collection::vec(1usize..70_000, 1..8),
    ) {
        let mut pair = handshake(seed, [&[], &[], &[]]);
        let data: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(seed | 1) as u8).collect();
        let received = transfer(&mut pair.initiator.session, &mut pair.responder.session, &data, &sizes);
        prop_assert_eq!(&received[..], &data[..]);
        let received = transfer(&mut pair.responder.session, &mut pair.initiator.session, &data, &sizes);
        prop_assert_eq!(&received[..], &data[..]);
        // The sessions stay in step after any split.
        let received = transfer(&mut pair.initiator.session, &mut pair.responder.session, b"next", &[1]);
        prop_assert_eq!(&received[..], b"next");
    }

    #[test]
    fn garbage_never_panics_a_session(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 1..5),
    ) {
        let mut pair = handshake(26, [&[], &[], &[]]);
        let mut out = BytesMut::new();
        for piece in &pieces {
            let _ = pair.responder.session.decrypt(piece, &mut out);
        }
        prop_assert!(out.is_empty());
    }
}

/// One shared static key serves many handshakes: each completes, authenticates the
/// identity that signed the key, and draws its own ephemeral key.
#[test]
fn a_shared_static_key_serves_several_handshakes() {
    let mut rng = Rng::from_u64(7);
    let local = LocalStatic::generate(&responder_key(), &mut rng).unwrap();
    let mut ephemerals = Vec::new();
    for seed in 0..3u8 {
        let mut msg1 = Vec::new();
        let mut initiator = Handshake::new(
            Role::Initiator,
            &keypair_from_seed(10 + seed),
            Some(responder_key().public().to_peer_id()),
            &mut rng,
            &mut msg1,
        )
        .unwrap();
        let mut nothing = Vec::new();
        let mut responder =
            Handshake::with_static(Role::Responder, &local, None, &mut rng, &mut nothing).unwrap();
        let mut msg2 = Vec::new();
        assert!(matches!(
            responder.handle_input(&msg1, &mut msg2).unwrap(),
            HandshakeProgress::Pending
        ));
        // Message 2 starts with the responder's ephemeral key.
        ephemerals.push(msg2[LEN_PREFIX..LEN_PREFIX + 32].to_vec());
        let mut msg3 = Vec::new();
        let HandshakeProgress::Done(mut i) = initiator.handle_input(&msg2, &mut msg3).unwrap()
        else {
            panic!("the initiator is done after message 2");
        };
        assert_eq!(i.remote_peer, responder_key().public().to_peer_id());
        let HandshakeProgress::Done(mut r) =
            responder.handle_input(&msg3, &mut Vec::new()).unwrap()
        else {
            panic!("the responder is done after message 3");
        };
        assert_eq!(
            r.remote_peer,
            keypair_from_seed(10 + seed).public().to_peer_id()
        );
        let mut wire = BytesMut::new();
        i.session
            .encrypt(b"over a shared static key", &mut wire)
            .unwrap();
        let mut plain = BytesMut::new();
        r.session.decrypt(&wire, &mut plain).unwrap();
        assert_eq!(&plain[..], b"over a shared static key");
    }
    ephemerals.sort();
    ephemerals.dedup();
    assert_eq!(
        ephemerals.len(),
        3,
        "every handshake has its own ephemeral key"
    );
}
