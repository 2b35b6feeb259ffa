//! The shared integration suite on tokio.

use relay_tests::suite;
use relay_tokio::Tokio;

macro_rules! on_tokio {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            suite::$name(Tokio::current()).await;
        }
    )*};
}

on_tokio!(
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
