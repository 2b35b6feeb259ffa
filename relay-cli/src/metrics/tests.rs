//! Tests of the metrics: names in the exposition, event methods, the HTTP server over
//! loopback, and the alerts.

use std::sync::Arc;
use std::time::Duration;

use relay_proto::hop::{AbuseKey, IpKey, Refusal, RefusalReason, ResourceUsage};
use relay_proto::identity::keypair_from_seed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::http::respond;
use super::*;

fn peer(n: u8) -> relay_proto::identity::PeerId {
    keypair_from_seed(n).public().to_peer_id()
}

fn text(metrics: &Metrics) -> String {
    metrics.encode(false).unwrap()
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix) && line[prefix.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn encoding_names_every_metric() {
    let metrics = Metrics::default();
    // Refusals by reason appear with their first event; every other series exists at 0.
    metrics.circuit_refused(&Refusal::ResourceLimitExceeded(RefusalReason::Circuits));
    let text = text(&metrics);
    for name in [
        "relay_reservations_active",
        "relay_reservations_accepted",
        "relay_reservations_refreshed",
        "relay_reservations_ended",
        "relay_reservations_refused",
        "relay_circuits_active",
        "relay_circuits_opened",
        "relay_circuits_refused",
        "relay_circuits_closed",
        "relay_circuit_duration_seconds",
        "relay_circuit_bytes",
        "relay_relayed_bytes",
        "relay_refusals",
        "relay_abuse_bans",
        "relay_abuse_banned",
        "relay_connections_active",
        "relay_connections_established",
        "relay_hole_punch_attempts",
        "relay_hole_punch_successes",
        "relay_hole_punch_failures",
        "relay_hole_punch_time_to_direct_seconds",
        "relay_autorelay_relays",
        "relay_autorelay_relay_changes",
        "relay_ping_rtt_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
    }
    assert!(!text.contains("# EOF"), "0.0.4 text has no EOF marker");
    assert!(metrics.encode(true).unwrap().ends_with("# EOF\n"));
}

#[test]
fn relay_service_events_update_their_metrics() {
    let metrics = Metrics::default();
    metrics.reservation_accepted();
    metrics.reservation_accepted();
    metrics.reservation_refreshed();
    metrics.reservation_ended();
    metrics.reservation_refused(&Refusal::ReservationRefused(RefusalReason::Reservations));
    metrics.reservation_refused(&Refusal::PermissionDenied(RefusalReason::DeniedPeer(peer(
        1,
    ))));
    metrics.circuit_opened();
    metrics.circuit_opened();
    metrics.circuit_refused(&Refusal::NoReservation(peer(2)));
    metrics.bytes_relayed(Direction::SrcToDst, 1000);
    metrics.bytes_relayed(Direction::DstToSrc, 24);
    metrics.circuit_closed(
        CircuitCloseReason::DataLimit,
        1000,
        24,
        Duration::from_millis(1500),
    );
    metrics.circuit_closed(LimitKind::Duration.into(), 0, 0, Duration::from_secs(120));
    metrics.circuit_closed(CircuitCloseReason::Normal, 0, 0, Duration::ZERO);
    metrics.abuse_banned(&AbuseKey::Peer(peer(3)));
    metrics.abuse_banned(&AbuseKey::Ip(IpKey::new("10.0.0.1".parse().unwrap(), 64)));

    let text = text(&metrics);
    let expect = [
        ("relay_reservations_active", 1.0),
        ("relay_reservations_accepted_total", 2.0),
        ("relay_reservations_refreshed_total", 1.0),
        ("relay_reservations_ended_total", 1.0),
        (
            "relay_reservations_refused_total{status=\"RESERVATION_REFUSED\"}",
            1.0,
        ),
        (
            "relay_reservations_refused_total{status=\"PERMISSION_DENIED\"}",
            1.0,
        ),
        ("relay_circuits_opened_total", 2.0),
        ("relay_circuits_active", 0.0),
        (
            "relay_circuits_refused_total{status=\"NO_RESERVATION\"}",
            1.0,
        ),
        ("relay_circuits_closed_total{reason=\"data_limit\"}", 1.0),
        (
            "relay_circuits_closed_total{reason=\"duration_limit\"}",
            1.0,
        ),
        ("relay_circuits_closed_total{reason=\"normal\"}", 1.0),
        (
            "relay_relayed_bytes_total{direction=\"src_to_dst\"}",
            1000.0,
        ),
        ("relay_relayed_bytes_total{direction=\"dst_to_src\"}", 24.0),
        ("relay_circuit_duration_seconds_count", 3.0),
        ("relay_circuit_duration_seconds_sum", 121.5),
        ("relay_circuit_bytes_count{direction=\"src_to_dst\"}", 3.0),
        (
            "relay_refusals_total{request=\"reserve\",reason=\"max_reservations\"}",
            1.0,
        ),
        (
            "relay_refusals_total{request=\"reserve\",reason=\"denied_peer\"}",
            1.0,
        ),
        (
            "relay_refusals_total{request=\"connect\",reason=\"no_reservation\"}",
            1.0,
        ),
        ("relay_abuse_bans_total{kind=\"peer\"}", 1.0),
        ("relay_abuse_bans_total{kind=\"ip\"}", 1.0),
        ("relay_abuse_banned", 2.0),
    ];
    for (prefix, value) in expect {
        assert_eq!(sample(&text, prefix), Some(value), "{prefix} in:\n{text}");
    }
    assert_eq!(metrics.total_relayed_bytes(), 1024);
    assert_eq!(metrics.request_outcomes(), (5, 3));

    metrics.sync_usage(&ResourceUsage {
        reservations: 7,
        circuits: 3,
        banned: 1,
        ..ResourceUsage::default()
    });
    let text = super::tests::text(&metrics);
    assert_eq!(sample(&text, "relay_reservations_active"), Some(7.0));
    assert_eq!(sample(&text, "relay_circuits_active"), Some(3.0));
    assert_eq!(sample(&text, "relay_abuse_banned"), Some(1.0));
}

#[test]
fn other_events_update_their_metrics() {
    let metrics = Metrics::default();
    metrics.connection_established(Endpoint::Listener, Transport::Tcp);
    metrics.connection_established(Endpoint::Listener, Transport::Tcp);
    metrics.connection_established(Endpoint::Dialer, Transport::Relayed);
    metrics.connection_closed(Endpoint::Listener, Transport::Tcp);
    metrics.connection_closed(Endpoint::Dialer, Transport::Quic);
    metrics.hole_punch_started();
    metrics.hole_punch_started();
    metrics.hole_punch_succeeded(Duration::from_millis(412));
    metrics.hole_punch_failed(PunchFailure::NatTypeIncompatible);
    metrics.autorelay_relay_added();
    metrics.autorelay_relay_added();
    metrics.autorelay_relay_removed();
    metrics.ping_rtt(Duration::from_micros(800), false);
    metrics.ping_rtt(Duration::from_millis(30), true);

    let text = text(&metrics);
    let expect = [
        (
            "relay_connections_active{direction=\"inbound\",transport=\"tcp\"}",
            1.0,
        ),
        (
            "relay_connections_established_total{direction=\"inbound\",transport=\"tcp\"}",
            2.0,
        ),
        (
            "relay_connections_active{direction=\"outbound\",transport=\"relayed\"}",
            1.0,
        ),
        (
            "relay_connections_active{direction=\"outbound\",transport=\"quic\"}",
            0.0,
        ),
        ("relay_hole_punch_attempts_total", 2.0),
        ("relay_hole_punch_successes_total", 1.0),
        (
            "relay_hole_punch_failures_total{reason=\"nat_type_incompatible\"}",
            1.0,
        ),
        ("relay_hole_punch_time_to_direct_seconds_count", 1.0),
        ("relay_hole_punch_time_to_direct_seconds_sum", 0.412),
        ("relay_autorelay_relays", 1.0),
        ("relay_autorelay_relay_changes_total{change=\"added\"}", 2.0),
        (
            "relay_autorelay_relay_changes_total{change=\"removed\"}",
            1.0,
        ),
        ("relay_ping_rtt_seconds_count{path=\"direct\"}", 1.0),
        ("relay_ping_rtt_seconds_count{path=\"relayed\"}", 1.0),
    ];
    for (prefix, value) in expect {
        assert_eq!(sample(&text, prefix), Some(value), "{prefix} in:\n{text}");
    }
    metrics.set_autorelay_relays(3);
    assert_eq!(
        sample(&super::tests::text(&metrics), "relay_autorelay_relays"),
        Some(3.0)
    );
}

#[test]
fn untracked_groups_stay_at_zero_and_gauges_never_go_negative() {
    let metrics = Metrics::new(Tracking {
        circuits: false,
        bandwidth: false,
        latency: false,
    });
    metrics.circuit_opened();
    metrics.bytes_relayed(Direction::SrcToDst, 5);
    metrics.circuit_closed(CircuitCloseReason::Reset, 5, 0, Duration::from_secs(1));
    metrics.circuit_closed(CircuitCloseReason::Reset, 5, 0, Duration::from_secs(1));
    metrics.reservation_ended();
    metrics.autorelay_relay_removed();
    metrics.ping_rtt(Duration::from_millis(1), false);
    let text = text(&metrics);
    assert_eq!(sample(&text, "relay_circuits_active"), Some(0.0));
    assert_eq!(sample(&text, "relay_reservations_active"), Some(0.0));
    assert_eq!(sample(&text, "relay_autorelay_relays"), Some(0.0));
    assert_eq!(
        sample(&text, "relay_circuit_duration_seconds_count"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "relay_relayed_bytes_total{direction=\"src_to_dst\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "relay_ping_rtt_seconds_count{path=\"direct\"}"),
        Some(0.0)
    );
    assert_eq!(metrics.total_relayed_bytes(), 0);
    let monitoring = crate::config::MonitoringSection {
        track_latency_stats: false,
        ..Default::default()
    };
    let from_config = Metrics::from_config(&monitoring);
    from_config.ping_rtt(Duration::from_millis(1), false);
    assert_eq!(
        sample(
            &super::tests::text(&from_config),
            "relay_ping_rtt_seconds_count{path=\"direct\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn every_refusal_reason_has_a_label() {
    let ip = "1.2.3.4".parse().unwrap();
    let key = IpKey::new(ip, 64);
    let reasons = [
        RefusalReason::DeniedPeer(peer(1)),
        RefusalReason::PeerNotAllowed(peer(1)),
        RefusalReason::DeniedIp(ip),
        RefusalReason::IpNotAllowed(ip),
        RefusalReason::HookDenied,
        RefusalReason::HookTimedOut,
        RefusalReason::Banned(AbuseKey::Ip(key)),
        RefusalReason::Reservations,
        RefusalReason::ReservationsForIp(key),
        RefusalReason::ReservationsForAsn(1),
        RefusalReason::Circuits,
        RefusalReason::CircuitsForPeer(peer(1)),
        RefusalReason::PeerRateLimited(peer(1)),
        RefusalReason::IpRateLimited(key),
        RefusalReason::PendingAsks,
        RefusalReason::PendingAsksForPeer(peer(1)),
        RefusalReason::NoReservation(peer(1)),
    ];
    let labels: std::collections::BTreeSet<_> = reasons.iter().map(reason_label).collect();
    assert_eq!(labels.len(), reasons.len(), "labels are distinct");
    assert!(
        labels
            .iter()
            .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
    assert_eq!(
        status_label(&Refusal::ResourceLimitExceeded(RefusalReason::Circuits)),
        "RESOURCE_LIMIT_EXCEEDED"
    );
}

#[test]
fn requests_are_routed() {
    let metrics = Metrics::default();
    let get = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &metrics);
    assert_eq!((get.code, get.content_type), (200, TEXT_CONTENT_TYPE));
    assert!(String::from_utf8_lossy(&get.body).contains("relay_circuits_active"));
    assert_eq!(get.content_length, get.body.len());

    let query = respond(b"GET /metrics?x=1 HTTP/1.0\n\n", &metrics);
    assert_eq!(query.code, 200);

    let om = respond(
        b"GET /metrics HTTP/1.1\r\naccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        &metrics,
    );
    assert_eq!(om.content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(om.body.ends_with(b"# EOF\n"));

    let head = respond(b"HEAD /metrics HTTP/1.1\r\n\r\n", &metrics);
    assert_eq!(head.code, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.content_length, get.content_length);

    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET /metrics/ HTTP/1.1\r\n\r\n",
        b"GET /metricsx HTTP/1.1\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\n\r\n",
        b"DELETE /x HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(respond(request, &metrics).code, 404, "{request:?}");
    }
    for request in [
        &b"\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/2 extra\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"G\xffT /metrics HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        assert_eq!(respond(request, &metrics).code, 400, "{request:?}");
    }
}

proptest::proptest! {
    #[test]
    fn any_request_head_gets_an_answer(head in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let metrics = Metrics::default();
        let response = respond(&head, &metrics);
        proptest::prop_assert!(matches!(response.code, 200 | 400 | 404));
    }

    #[test]
    fn http_like_heads_get_an_answer(head in "(GET|HEAD|POST|get|) ?/?[a-z?=/]{0,12} ?(HTTP/1\\.[01])?(\r?\n[A-Za-z-]{0,8}: ?[a-z/;=.-]{0,30}){0,3}\r?\n\r?\n") {
        let metrics = Metrics::default();
        let response = respond(head.as_bytes(), &metrics);
        proptest::prop_assert!(matches!(response.code, 200 | 400 | 404));
    }
}

/// Sends `request`, reads until the server closes, returns the response.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the server answers and closes")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn the_server_answers_over_loopback() {
    let metrics = Arc::new(Metrics::default());
    metrics.circuit_opened();
    let server = serve_metrics("127.0.0.1:0", Arc::clone(&metrics))
        .await
        .unwrap();
    let addr = server.local_addr();

    let response = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert_eq!(sample(body, "relay_circuits_opened_total"), Some(1.0));

    let response = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{response}"
    );

    server.shutdown();
}

#[tokio::test]
async fn garbage_does_not_stop_the_server() {
    let metrics = Arc::new(Metrics::default());
    let server = serve_metrics("127.0.0.1:0", Arc::clone(&metrics))
        .await
        .unwrap();
    let addr = server.local_addr();

    // Binary junk with a blank line: 400.
    let response = exchange(addr, b"\x00\x01\x02\xff\xfe\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request"),
        "{response}"
    );

    // An endless head: 431 once the limit is passed.
    let huge = vec![b'A'; MAX_REQUEST_HEAD + 100];
    let response = exchange(addr, &huge).await;
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");

    // A client that connects, sends half a request and leaves.
    {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metr").await.unwrap();
    }
    // A client that connects and says nothing.
    let idle = TcpStream::connect(addr).await.unwrap();

    // The server still answers.
    let response = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    drop(idle);
    server.shutdown();
}

#[tokio::test]
async fn binding_a_bad_address_is_an_error() {
    let metrics = Arc::new(Metrics::default());
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    assert!(serve_metrics(addr, Arc::clone(&metrics)).await.is_err());
    assert!(serve_metrics("127.0.0.1", metrics).await.is_err());
}

fn thresholds() -> AlertThresholds {
    AlertThresholds {
        circuit_limit: 0.9,
        bandwidth_limit: 0.8,
        error_rate: 0.1,
    }
}

#[test]
fn circuit_alert_fires_above_the_threshold_and_clears() {
    let metrics = Metrics::default();
    let mut alerts = Alerts::new(thresholds(), 10, 0);
    let t0 = Instant::now();
    for _ in 0..9 {
        metrics.circuit_opened();
    }
    assert_eq!(alerts.check(t0, &metrics), vec![]);
    metrics.circuit_opened();
    assert_eq!(
        alerts.check(t0 + Duration::from_secs(60), &metrics),
        vec![Alert::CircuitLimit {
            active: 10,
            max: 10
        }]
    );
    metrics.circuit_closed(CircuitCloseReason::Normal, 0, 0, Duration::ZERO);
    assert_eq!(
        alerts.check(t0 + Duration::from_secs(120), &metrics),
        vec![]
    );

    // No limit: no alert.
    let mut unlimited = Alerts::new(thresholds(), 0, 0);
    assert_eq!(unlimited.check(t0, &metrics), vec![]);
}

#[test]
fn bandwidth_alert_measures_between_checks() {
    let metrics = Metrics::default();
    let mut alerts = Alerts::new(thresholds(), 0, 1000);
    let t0 = Instant::now();
    metrics.bytes_relayed(Direction::SrcToDst, 1_000_000);
    assert_eq!(
        alerts.check(t0, &metrics),
        vec![],
        "the first check samples"
    );
    metrics.bytes_relayed(Direction::SrcToDst, 40_000);
    metrics.bytes_relayed(Direction::DstToSrc, 8_000);
    assert_eq!(alerts.check(t0 + Duration::from_secs(60), &metrics), vec![]);
    metrics.bytes_relayed(Direction::DstToSrc, 48_060);
    assert_eq!(
        alerts.check(t0 + Duration::from_secs(120), &metrics),
        vec![Alert::Bandwidth {
            bytes_per_second: 801.0,
            capacity: 1000
        }]
    );
    // Unknown capacity: no alert.
    let mut off = Alerts::new(thresholds(), 0, 0);
    off.check(t0, &metrics);
    metrics.bytes_relayed(Direction::DstToSrc, u64::MAX / 2);
    assert_eq!(off.check(t0 + Duration::from_secs(1), &metrics), vec![]);
}

#[test]
fn error_rate_alert_needs_enough_requests() {
    let metrics = Metrics::default();
    let config = crate::config::FileConfig::serve_default();
    let mut alerts = Alerts::from_config(&config);
    let t0 = Instant::now();
    alerts.check(t0, &metrics);
    let refusal = Refusal::ReservationRefused(RefusalReason::Reservations);
    // 5 refused of 10: a high rate, but too few requests to count.
    for _ in 0..5 {
        metrics.reservation_accepted();
        metrics.reservation_refused(&refusal);
    }
    assert_eq!(alerts.check(t0 + Duration::from_secs(60), &metrics), vec![]);
    // 2 refused of 20: at 10%, not above it.
    for _ in 0..18 {
        metrics.circuit_opened();
    }
    metrics.circuit_refused(&refusal);
    metrics.circuit_refused(&refusal);
    assert_eq!(
        alerts.check(t0 + Duration::from_secs(120), &metrics),
        vec![]
    );
    // 3 refused of 20.
    for _ in 0..17 {
        metrics.reservation_refreshed();
    }
    for _ in 0..3 {
        metrics.circuit_refused(&refusal);
    }
    let fired = alerts.check(t0 + Duration::from_secs(180), &metrics);
    assert_eq!(
        fired,
        vec![Alert::ErrorRate {
            refused: 3,
            requests: 20
        }]
    );
    assert_eq!(fired[0].to_string(), "3 of 20 relay requests were refused");
}

#[tokio::test]
async fn run_alerts_checks_every_interval() {
    let metrics = Arc::new(Metrics::default());
    for _ in 0..10 {
        metrics.circuit_opened();
    }
    let task = tokio::spawn(run_alerts(
        Alerts::new(thresholds(), 10, 0),
        Arc::clone(&metrics),
        Duration::ZERO,
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished());
    task.abort();
}
