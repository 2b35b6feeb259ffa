//! The circuit relay v2 server's policy: who may reserve, who may connect, and how much.
//!
//! This module owns the relay server's admission decisions and usage accounting as pure
//! data structures: reservations with their expiry, circuits with their limits, per-IP and
//! per-ASN counts, token-bucket rate limits, an access control list with an optional
//! decision hook answered by the runtime, and abuse detection. It does not read or write
//! streams, encode messages or sign vouchers: the hop/stop protocol handling calls
//! `RelayPolicy` and acts on its answers.
//!
//! Like the rest of relay-proto it reads no clock: every call takes `now: Instant`, and
//! wall time (reservation expiry is Unix seconds on the wire) is passed in as `unix_now`.
//! After every call, drain `RelayPolicy::poll_event` and re-arm the timer from
//! `RelayPolicy::poll_timeout`; call `RelayPolicy::handle_timeout` when it fires.
//!
//! Files: [`rate`] (token buckets), [`ip`] (CIDRs, per-IP keys), [`asn`] (ip2asn table).

pub mod asn;
pub mod ip;
pub mod rate;

pub use asn::{AsnParseError, AsnTable};
pub use ip::{Cidr, CidrError, IpKey};
pub use rate::{KeyedLimiter, RateLimit, TokenBucket};

/// A hash map with a fixed, unseeded hasher (switchable to `crate::map::Map`).
type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

/// The base instant of a test; tests offset every other instant from it.
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the one clock read, in tests only
fn test_base() -> std::time::Instant {
    std::time::Instant::now()
}
