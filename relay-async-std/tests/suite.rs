//! The shared integration suite on async-std (tasks on async-std's executor, sockets
//! and timers on async-io) and on smol's executor.

use relay_async_std::AsyncIo;
use relay_tests::suite;

fn async_std_runtime() -> AsyncIo {
    AsyncIo::with_spawner(|future| {
        async_std::task::spawn(future);
    })
}

macro_rules! on_async_std {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            async_std::task::block_on(suite::$name(async_std_runtime()));
        }
    )*};
}

on_async_std!(
    connect_identify_ping,
    large_echo,
    concurrent_streams,
    unknown_protocol,
    wrong_peer_id,
    bad_peers_are_dropped,
    perf_round_trip,
    hole_punch_on_loopback,
    auto_relay_with_peer_source,
    auto_relay_not_enabled,
);

#[test]
fn connect_identify_ping_on_smol() {
    smol::block_on(suite::connect_identify_ping(AsyncIo::default()));
}
