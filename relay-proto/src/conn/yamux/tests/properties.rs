//! Property tests: arbitrary input never panics and never breaks the limits.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;

use super::base;
use crate::conn::yamux::{Config, Event, Mode, Session};

/// A frame that is mostly well formed, to reach deep into the state machine.
fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    (0u8..5, 0u16..16, 0u32..8, 0u32..300, any::<bool>()).prop_map(|(ty, flags, id, len, big)| {
        let length = if big { len.wrapping_mul(4099) } else { len };
        let mut f = vec![0, ty];
        f.extend(flags.to_be_bytes());
        f.extend(id.to_be_bytes());
        f.extend(length.to_be_bytes());
        if ty == 0 {
            f.extend(std::iter::repeat_n(0xAB, length.min(300) as usize));
        }
        f
    })
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), split in 1usize..64) {
        let now = base();
        for mode in [Mode::Client, Mode::Server] {
            let mut s = Session::new(mode, Config::default(), now);
            for piece in bytes.chunks(split) {
                if s.handle_input(now, piece).is_err() {
                    break;
                }
            }
            while s.poll_event().is_some() {}
            s.poll_transmit(&mut BytesMut::new());
        }
    }

    #[test]
    fn random_frames_never_panic_and_keep_limits(
        frames in proptest::collection::vec(arb_frame(), 0..64),
        split in 1usize..40,
    ) {
        let now = base();
        let config = Config { max_streams: 3, ..Config::default() };
        let mut s = Session::new(Mode::Server, config, now);
        let input: Vec<u8> = frames.concat();
        let mut open = BTreeSet::new();
        for (i, piece) in input.chunks(split).enumerate() {
            let t = now + Duration::from_millis(i as u64);
            let result = s.handle_input(t, piece);
            while let Some(e) = s.poll_event() {
                match e {
                    Event::InboundStream(id) => { open.insert(id); }
                    Event::Data { stream, data } => s.consumed(t, stream, data.len()),
                    _ => {}
                }
            }
            for &id in &open {
                let _ = s.write(id, b"reply");
                prop_assert!(s.receive_window(id).is_none_or(|w| w <= 16 * 1024 * 1024));
            }
            prop_assert!(s.num_streams() <= 3);
            s.poll_transmit(&mut BytesMut::new());
            if result.is_err() {
                prop_assert!(s.is_closed());
                break;
            }
        }
    }
}
