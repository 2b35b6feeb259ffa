//! One session fed hand-made frames: protocol violations and edge cases.

use super::{base, data_frame, frame, pattern, transmitted};
use crate::conn::yamux::frame::{Flags, FrameType, GO_AWAY_PROTOCOL_ERROR, Header};
use crate::conn::yamux::{Config, Event, INITIAL_WINDOW, Mode, Session, StreamId, YamuxError};

fn assert_violation(mode: Mode, input: &[u8], expected: YamuxError) {
    let now = base();
    let mut s = Session::new(mode, Config::default(), now);
    transmitted(&mut s);
    assert_eq!(s.handle_input(now, input), Err(expected));
    assert!(s.is_closed());
    let sent = transmitted(&mut s);
    assert_eq!(sent.last(), Some(&Header::go_away(GO_AWAY_PROTOCOL_ERROR)));
    assert_eq!(
        s.handle_input(now, &frame(FrameType::Ping, Flags::SYN, 0, 1)),
        Err(YamuxError::SessionClosed)
    );
}

#[test]
fn protocol_violations_end_the_session() {
    let mut bad_version = frame(FrameType::Ping, Flags::SYN, 0, 1);
    bad_version[0] = 1;
    assert_violation(
        Mode::Server,
        &bad_version,
        YamuxError::UnsupportedVersion(1),
    );
    let mut bad_type = frame(FrameType::Ping, Flags::SYN, 0, 1);
    bad_type[1] = 9;
    assert_violation(Mode::Server, &bad_type, YamuxError::InvalidFrameType(9));
    // Server receiving a SYN with the server's own (even) parity, and vice versa.
    let even = frame(FrameType::WindowUpdate, Flags::SYN, 2, 0);
    assert_violation(Mode::Server, &even, YamuxError::InvalidStreamId);
    let odd = frame(FrameType::WindowUpdate, Flags::SYN, 1, 0);
    assert_violation(Mode::Client, &odd, YamuxError::InvalidStreamId);
    assert_violation(
        Mode::Server,
        &frame(FrameType::Data, Flags::NONE, 0, 0),
        YamuxError::InvalidStreamId,
    );
    assert_violation(
        Mode::Server,
        &frame(FrameType::Ping, Flags::SYN, 3, 0),
        YamuxError::InvalidStreamId,
    );

    // More than the window, announced by a header alone.
    let over = frame(FrameType::Data, Flags::SYN, 1, INITIAL_WINDOW + 1);
    assert_violation(Mode::Server, &over, YamuxError::ReceiveWindowExceeded);
    // More than the window across frames.
    let mut two = data_frame(Flags::SYN, 1, &vec![0; 200 * 1024]);
    two.extend(frame(FrameType::Data, Flags::NONE, 1, 100 * 1024));
    assert_violation(Mode::Server, &two, YamuxError::ReceiveWindowExceeded);
    // Longer than any window could be, even for an unknown stream.
    let huge = frame(FrameType::Data, Flags::NONE, 5, 16 * 1024 * 1024 + 1);
    assert_violation(Mode::Server, &huge, YamuxError::FrameTooLarge);

    let mut reuse = frame(FrameType::WindowUpdate, Flags::SYN, 1, 0);
    reuse.extend(frame(FrameType::WindowUpdate, Flags::RST, 1, 0));
    reuse.extend(frame(FrameType::WindowUpdate, Flags::SYN, 1, 0));
    assert_violation(Mode::Server, &reuse, YamuxError::StreamIdReused);
}

#[test]
fn input_split_anywhere_gives_same_result() {
    let mut input = data_frame(Flags::SYN, 1, &pattern(8, 5000));
    input.extend(frame(FrameType::Ping, Flags::SYN, 0, 42));
    input.extend(data_frame(Flags::FIN, 1, &pattern(9, 3000)));
    for chunk in [1, 5, 11, 12, 13, 4096, input.len()] {
        let now = base();
        let mut s = Session::new(Mode::Server, Config::default(), now);
        for piece in input.chunks(chunk) {
            s.handle_input(now, piece).unwrap();
        }
        let mut got = Vec::new();
        let mut finished = false;
        while let Some(e) = s.poll_event() {
            match e {
                Event::Data { data, .. } => got.extend_from_slice(&data),
                Event::Finished(StreamId(1)) => finished = true,
                _ => {}
            }
        }
        let mut want = pattern(8, 5000);
        want.extend(pattern(9, 3000));
        assert_eq!(got, want, "chunk {chunk}");
        assert!(finished);
    }
}

#[test]
fn pings_are_answered_first_and_stray_pongs_ignored() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    transmitted(&mut s);
    s.handle_input(now, &frame(FrameType::WindowUpdate, Flags::SYN, 1, 0))
        .unwrap();
    transmitted(&mut s);
    assert_eq!(s.write(StreamId(1), b"queued data"), Ok(11));
    s.handle_input(now, &frame(FrameType::Ping, Flags::SYN, 0, 77))
        .unwrap();
    s.handle_input(now, &frame(FrameType::Ping, Flags::ACK, 0, 12345))
        .unwrap();
    let sent = transmitted(&mut s);
    assert_eq!(sent[0], Header::ping(Flags::ACK, 77));
    assert_eq!(sent[1].frame_type, FrameType::Data);
    assert_eq!(s.rtt(), None);
}

#[test]
fn ping_floods_are_bounded() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    transmitted(&mut s);
    let flood: Vec<u8> = (0..10_000)
        .flat_map(|i| frame(FrameType::Ping, Flags::SYN, 0, i))
        .collect();
    s.handle_input(now, &flood).unwrap();
    assert_eq!(
        transmitted(&mut s).len(),
        Config::default().max_pending_pongs
    );
}

#[test]
fn late_frames_for_unknown_streams_are_ignored() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    let mut input = data_frame(Flags::NONE, 7, b"late");
    input.extend(frame(FrameType::WindowUpdate, Flags::NONE, 9, 1000));
    input.extend(frame(FrameType::WindowUpdate, Flags::RST, 11, 0));
    s.handle_input(now, &input).unwrap();
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.num_streams(), 0);
}

#[test]
fn data_after_fin_resets_only_that_stream() {
    let now = base();
    let mut s = Session::new(Mode::Server, Config::default(), now);
    let mut input = data_frame(Flags::SYN | Flags::FIN, 1, b"a");
    input.extend(data_frame(Flags::NONE, 1, b"b"));
    s.handle_input(now, &input).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(events.last(), Some(&Event::Reset(StreamId(1))));
    assert!(!s.is_closed());
    assert!(transmitted(&mut s).contains(&Header::window_update(StreamId(1), Flags::RST, 0)));
}

#[test]
fn writes_split_into_capped_frames() {
    let now = base();
    let huge = Config {
        max_frame_payload: usize::MAX,
        ..Config::default()
    };
    for (config, sizes) in [
        (Config::default(), vec![65536; 4]),
        (huge, vec![INITIAL_WINDOW]),
    ] {
        let mut s = Session::new(Mode::Client, config, now);
        let id = s.open_stream().unwrap();
        transmitted(&mut s);
        let n = s.write(id, &vec![1; 300 * 1024]).unwrap();
        assert_eq!(n, INITIAL_WINDOW as usize);
        let lengths: Vec<u32> = transmitted(&mut s).iter().map(|h| h.length).collect();
        assert_eq!(lengths, sizes);
        assert_eq!(s.write(id, b"more"), Ok(0));
    }
}
