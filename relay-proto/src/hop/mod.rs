//! The circuit relay v2 server's policy: who may reserve, who may connect, and how much.
//!
//! This module owns the relay server's admission decisions and usage accounting as pure
//! data structures: reservations with their expiry, circuits with their limits, per-IP and
//! per-ASN counts, token-bucket rate limits, an access control list with an optional
//! decision hook answered by the runtime, and abuse detection. It does not read or write
//! streams, encode messages or sign vouchers: the hop/stop protocol handling calls
//! [`RelayPolicy`] and acts on its answers.
//!
//! Like the rest of relay-proto it reads no clock: every call takes `now: Instant`, and
//! wall time (reservation expiry is Unix seconds on the wire) is passed in as `unix_now`.
//! After every call, drain [`RelayPolicy::poll_event`] and re-arm the timer from
//! [`RelayPolicy::poll_timeout`]; call [`RelayPolicy::handle_timeout`] when it fires.
//!
//! Files: [`config`] (settings), [`policy`] (admission state), [`reservations`],
//! [`circuits`], [`rate`] (token buckets), [`acl`], [`ip`] (CIDRs, per-IP keys), [`asn`]
//! (ip2asn table), [`abuse`], [`hook`] (asking the runtime), [`refusal`] (status codes).

pub mod abuse;
pub mod acl;
pub mod asn;
pub mod circuits;
pub mod config;
pub mod hook;
pub mod ip;
pub mod policy;
pub mod rate;
pub mod refusal;
pub mod reservations;

pub use abuse::{AbuseConfig, AbuseKey};
pub use acl::{AclConfig, HookMode};
pub use asn::{AsnParseError, AsnTable};
pub use circuits::{CircuitError, CircuitId, CircuitInfo, Direction, Limit, LimitHit, LimitKind};
pub use config::{ConfigError, RateLimits, RelayConfig};
pub use hook::{HookQuery, HookRequest, Ticket};
pub use ip::{Cidr, CidrError, IpKey};
pub use policy::{
    Admission, Answered, CircuitGrant, Grant, PolicyEvent, RelayPolicy, ReservationGrant,
    ResourceUsage, UnknownTicket,
};
pub use rate::{KeyedLimiter, RateLimit, TokenBucket};
pub use refusal::{Refusal, RefusalReason, ServiceError};
pub use reservations::ReservationInfo;

use crate::map::{Map, Set};

/// Decrements a count, removing it at zero so that count tables hold only live keys.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut Map<K, u32>, key: K) {
    if let hashbrown::hash_map::Entry::Occupied(mut e) = counts.entry(key) {
        *e.get_mut() = e.get().saturating_sub(1);
        if *e.get() == 0 {
            e.remove();
        }
    }
}

/// The base instant of a test; tests offset every other instant from it.
#[cfg(test)]
fn test_base() -> std::time::Instant {
    crate::test_now()
}
