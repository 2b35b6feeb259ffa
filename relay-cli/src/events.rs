//! Node events as the JSON lines of CONTRACT.md.

use relay_proto::Event;
use relay_proto::hop::{Direction, LimitKind};
use relay_proto::node::CircuitEnd;
use serde_json::{Value, json};

/// The contract's name of a limit.
pub(crate) fn limit_reason(kind: LimitKind) -> &'static str {
    match kind {
        LimitKind::Duration => "duration limit",
        LimitKind::Data(_) => "data limit",
    }
}

/// The JSON line for an event, if programs watching this role care about it.
pub(crate) fn to_json(event: &Event) -> Option<Value> {
    Some(match event {
        Event::ConnectionEstablished {
            peer,
            remote_addr,
            relayed,
            ..
        } => json!({
            "event": "connected",
            "peer": peer.to_string(),
            "relayed": relayed,
            "addr": remote_addr.to_string(),
        }),
        Event::ConnectionClosed { peer, error, .. } => json!({
            "event": "disconnected",
            "peer": peer.to_string(),
            "reason": error.to_string(),
        }),
        Event::ReservationAccepted {
            relay,
            expire_unix,
            addrs,
            limit,
            renewed,
        } => json!({
            "event": "reservation",
            "status": if *renewed { "renewed" } else { "accepted" },
            "relay": relay.to_string(),
            "expires_unix": expire_unix,
            "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "limit": {
                "duration_s": limit.duration.map(|d| d.as_secs()),
                "data_bytes": limit.data,
            },
        }),
        Event::ReservationRefused { relay, status } => json!({
            "event": "reservation",
            "status": "refused",
            "relay": relay.to_string(),
            "reason": status.as_str_name(),
        }),
        Event::ReservationLost { relay, reason } => json!({
            "event": "reservation",
            "status": "lost",
            "relay": relay.to_string(),
            "reason": format!("{reason:?}"),
        }),
        Event::RelayedLimitReached { peer, kind, .. } => json!({
            "event": "circuit",
            "status": "closed",
            "peer": peer.to_string(),
            "reason": limit_reason(*kind),
        }),
        Event::RelayReservationAccepted {
            peer,
            expire_unix,
            renewed,
        } => json!({
            "event": "relay_reservation",
            "status": if *renewed { "renewed" } else { "accepted" },
            "peer": peer.to_string(),
            "expires_unix": expire_unix,
        }),
        Event::RelayReservationRefused { peer, refusal } => json!({
            "event": "relay_reservation",
            "status": "refused",
            "peer": peer.to_string(),
            "code": refusal.status_code(),
            "reason": refusal.to_string(),
        }),
        Event::RelayReservationEnded { peer } => json!({
            "event": "relay_reservation",
            "status": "ended",
            "peer": peer.to_string(),
        }),
        Event::RelayCircuitOpened { circuit, src, dst } => json!({
            "event": "relay_circuit",
            "status": "opened",
            "id": circuit.as_u64(),
            "src": src.to_string(),
            "dst": dst.to_string(),
        }),
        Event::RelayCircuitRefused {
            src,
            dst,
            status,
            refusal,
        } => json!({
            "event": "relay_circuit",
            "status": "refused",
            "src": src.to_string(),
            "dst": dst.to_string(),
            "code": status.as_str_name(),
            "reason": refusal.map(|r| r.to_string()),
        }),
        Event::RelayCircuitClosed {
            circuit,
            src,
            dst,
            bytes_src_to_dst,
            bytes_dst_to_src,
            duration,
            reason,
        } => {
            json!({
                "event": "relay_circuit",
                "status": "closed",
                "id": circuit.as_u64(),
                "src": src.to_string(),
                "dst": dst.to_string(),
                "bytes_src_to_dst": bytes_src_to_dst,
                "bytes_dst_to_src": bytes_dst_to_src,
                "seconds": duration.as_secs_f64(),
                "reason": match reason {
                    CircuitEnd::Closed => "closed",
                    CircuitEnd::Reset => "reset",
                    CircuitEnd::Limit(LimitKind::Duration) => "duration limit",
                    CircuitEnd::Limit(LimitKind::Data(Direction::SrcToDst)) => "data limit (src to dst)",
                    CircuitEnd::Limit(LimitKind::Data(Direction::DstToSrc)) => "data limit (dst to src)",
                },
            })
        }
        Event::HolePunchSucceeded {
            peer,
            attempt,
            elapsed,
            rtt,
            addr,
            ..
        } => json!({
            "event": "hole_punch",
            "peer": peer.to_string(),
            "result": "success",
            "transport": "tcp",
            "attempt": attempt,
            "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            "addr": addr.to_string(),
            "rtt_ms": rtt.map(|r| r.as_secs_f64() * 1000.0),
        }),
        Event::HolePunchFailed {
            peer,
            attempts,
            reason,
            ..
        } => json!({
            "event": "hole_punch",
            "peer": peer.to_string(),
            "result": "failure",
            "attempts": attempts,
            "error": reason.to_string(),
            "reason": reason.as_str(),
        }),
        Event::AutoRelay(event) => crate::autorelay::to_json(event),
        Event::RelayAbuse { key, ban } => json!({
            "event": "relay_abuse",
            "key": format!("{key:?}"),
            "ban_s": ban.as_secs(),
        }),
        _ => return None,
    })
}
