//! Settings of the relay server: the seed's `node.relay.service` and `node.relay.transport`
//! sections plus the reservation TTL, rate limits, access control and abuse detection.
//!
//! Every count, size, duration and rate in this file follows one rule: `0` means no limit
//! (for durations, `Duration::ZERO`). That is the circuit v2 rule for `Limit`, applied
//! throughout so that no field has a surprising zero.

use std::time::Duration;

use super::abuse::AbuseConfig;
use super::acl::AclConfig;
use super::rate::RateLimit;

/// Largest circuit relay v2 message, in bytes, whatever `max_message_size` says.
pub const MAX_HOP_MESSAGE_SIZE: usize = 4096;

/// Longest duration the policy accepts in any setting (one year), so that every deadline
/// it computes is representable.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Settings of the relay server (the hop side of circuit relay v2).
///
/// `Default` gives the seed's defaults; fields the seed does not name follow go-libp2p
/// where it has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    // --- node.relay.service ---
    /// Most circuits open at once across all peers (seed: `max_circuits`, 1000).
    pub max_circuits: u32,
    /// Longest life of one circuit; at the deadline both streams are reset
    /// (seed: `max_circuit_duration`, 2m). Sent to clients in `Limit.duration`.
    pub max_circuit_duration: Duration,
    /// Most bytes relayed in each direction of one circuit; one byte more and both streams
    /// are reset (seed: `max_circuit_bytes`, 1 MiB). Sent to clients in `Limit.data`.
    pub max_circuit_bytes: u64,
    /// Most live reservations across all peers (seed: `max_reservations`, 256).
    pub max_reservations: u32,
    /// Most RESERVE requests of one peer awaiting the decision hook at once
    /// (seed: `max_reservations_per_peer`, 4).
    ///
    /// A circuit v2 reservation is keyed by the reserving peer: a peer holds at most one,
    /// and another RESERVE refreshes it. So no value of this setting can let a peer hold
    /// two (go-libp2p deprecated its equivalent for that reason); what it still bounds is
    /// how many of a peer's requests may be in flight at the hook.
    pub max_reservations_per_peer: u32,
    /// Most live reservations whose peer connects from one IP (seed:
    /// `max_reservations_per_ip`, 8). IPv6 addresses count per `ipv6_prefix_len` prefix.
    pub max_reservations_per_ip: u32,
    /// Most live reservations whose peer's IP is announced by one autonomous system
    /// (seed: `max_reservations_per_asn`, 32). Applies only with an [`AsnTable`] set and
    /// only to addresses the table routes.
    ///
    /// [`AsnTable`]: super::asn::AsnTable
    pub max_reservations_per_asn: u32,
    /// Most bytes the relay holds for one direction of a circuit whose receiver does
    /// not keep up (seed: `buffer_size`, 2048): the relay's receive window on the
    /// sender's stream stops growing here, and the sender waits for credit. Yamux grants
    /// every stream 256 KiB from the start, so that is the least it can be. `0`: the
    /// connection's own maximum (`yamux::Config::max_stream_window`). Applied by the
    /// splicing layer, not by the policy.
    pub buffer_size: usize,
    /// Longest time relayed bytes may wait at the relay without the receiving side taking
    /// any of them; then the circuit is reset (seed: `max_buffer_time`, 10s). A receiver
    /// that keeps taking bytes, however slowly, is not cut off. Applied by the splicing
    /// layer, not by the policy.
    pub max_buffer_time: Duration,

    // --- node.relay.transport ---
    /// Longest time one hop request may take, from the request to the answer, including
    /// the stop stream to the target (seed: `hop_timeout`, 30s). The policy also gives the
    /// decision hook this long to answer before refusing.
    pub hop_timeout: Duration,
    /// Most circuits one peer takes part in at once, as initiator or as target
    /// (seed: `max_circuits_per_peer`, 16). It also bounds the peer's CONNECT requests
    /// awaiting the decision hook.
    pub max_circuits_per_peer: u32,
    /// Longest time a hop or stop stream may wait for its next message
    /// (seed: `stream_timeout`, 1m). Not used by the policy.
    pub stream_timeout: Duration,
    /// Largest message accepted (seed: `max_message_size`, 65536); circuit v2 messages are
    /// further capped at [`MAX_HOP_MESSAGE_SIZE`], see [`RelayConfig::hop_message_limit`].
    pub max_message_size: usize,

    // --- beyond the seed ---
    /// Life of a new or refreshed reservation (1h, as go-libp2p). Must not be zero.
    pub reservation_ttl: Duration,
    /// Prefix length under which IPv6 addresses count as one IP for per-IP limits and
    /// rate limits (64). 128 counts each address apart.
    pub ipv6_prefix_len: u8,
    /// Token-bucket rate limits on requests.
    pub rate: RateLimits,
    /// Access control: allow and deny lists, and when to ask the runtime.
    pub acl: AclConfig,
    /// Refusal counting and temporary bans.
    pub abuse: AbuseConfig,
    /// Most requests awaiting the decision hook at once (256).
    pub max_pending_asks: u32,
}

/// Token-bucket rate limits on RESERVE and CONNECT requests, per peer and per IP.
///
/// Each request that passes the access control takes one token from its peer's bucket and
/// one from its IP's; if either is empty it is refused, and neither is taken. Refused
/// requests cost tokens too, so a peer hammering a full relay is slowed down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// RESERVE requests per peer (4 at once, then one per minute). A well-behaved client
    /// refreshes a few times per reservation TTL.
    pub reservations_per_peer: RateLimit,
    /// RESERVE requests per IP (16 at once, then one per 15s): several peers may share a
    /// NAT'd address.
    pub reservations_per_ip: RateLimit,
    /// CONNECT requests per initiating peer (32 at once, then one per second).
    pub circuits_per_peer: RateLimit,
    /// CONNECT requests per initiating IP (64 at once, then four per second).
    pub circuits_per_ip: RateLimit,
    /// Most peers or IPs tracked by each of the four limiters, and by each of the abuse
    /// detector's counters and its bans (16384; at least 1). See
    /// [`KeyedLimiter`](super::rate::KeyedLimiter) for what happens when it is full.
    pub max_tracked_keys: usize,
}

/// Why a [`RelayConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `reservation_ttl` is zero: every reservation would be expired when granted.
    #[error("reservation_ttl must not be zero")]
    ZeroReservationTtl,
    /// `ipv6_prefix_len` is above 128.
    #[error("ipv6_prefix_len {0} is above 128")]
    Ipv6PrefixTooLong(u8),
    /// A duration, or the time a rate limit takes to refill, exceeds [`MAX_DURATION`].
    #[error("{0} is longer than one year")]
    TooLong(&'static str),
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_circuits: 1000,
            max_circuit_duration: Duration::from_secs(120),
            max_circuit_bytes: 1 << 20,
            max_reservations: 256,
            max_reservations_per_peer: 4,
            max_reservations_per_ip: 8,
            max_reservations_per_asn: 32,
            buffer_size: 2048,
            max_buffer_time: Duration::from_secs(10),
            hop_timeout: Duration::from_secs(30),
            max_circuits_per_peer: 16,
            stream_timeout: Duration::from_secs(60),
            max_message_size: 65536,
            reservation_ttl: Duration::from_secs(3600),
            ipv6_prefix_len: 64,
            rate: RateLimits::default(),
            acl: AclConfig::default(),
            abuse: AbuseConfig::default(),
            max_pending_asks: 256,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            reservations_per_peer: RateLimit::new(4, Duration::from_secs(60)),
            reservations_per_ip: RateLimit::new(16, Duration::from_secs(15)),
            circuits_per_peer: RateLimit::new(32, Duration::from_secs(1)),
            circuits_per_ip: RateLimit::new(64, Duration::from_millis(250)),
            max_tracked_keys: 16384,
        }
    }
}

impl RateLimits {
    /// No rate limits at all (`max_tracked_keys` keeps its default: the abuse detector
    /// uses it too).
    pub fn off() -> Self {
        Self {
            reservations_per_peer: RateLimit::OFF,
            reservations_per_ip: RateLimit::OFF,
            circuits_per_peer: RateLimit::OFF,
            circuits_per_ip: RateLimit::OFF,
            ..Self::default()
        }
    }
}

impl RelayConfig {
    /// The largest hop or stop message to accept: `max_message_size` capped at 4096.
    pub fn hop_message_limit(&self) -> usize {
        match self.max_message_size {
            0 => MAX_HOP_MESSAGE_SIZE,
            n => n.min(MAX_HOP_MESSAGE_SIZE),
        }
    }

    /// Checks that the settings can be used.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.reservation_ttl.is_zero() {
            return Err(ConfigError::ZeroReservationTtl);
        }
        if self.ipv6_prefix_len > 128 {
            return Err(ConfigError::Ipv6PrefixTooLong(self.ipv6_prefix_len));
        }
        let durations = [
            ("max_circuit_duration", Some(self.max_circuit_duration)),
            ("max_buffer_time", Some(self.max_buffer_time)),
            ("hop_timeout", Some(self.hop_timeout)),
            ("stream_timeout", Some(self.stream_timeout)),
            ("reservation_ttl", Some(self.reservation_ttl)),
            ("abuse.ban", Some(self.abuse.ban)),
            ("abuse.refusals", self.abuse.refusals.fill_time()),
            (
                "rate.reservations_per_peer",
                self.rate.reservations_per_peer.fill_time(),
            ),
            (
                "rate.reservations_per_ip",
                self.rate.reservations_per_ip.fill_time(),
            ),
            (
                "rate.circuits_per_peer",
                self.rate.circuits_per_peer.fill_time(),
            ),
            (
                "rate.circuits_per_ip",
                self.rate.circuits_per_ip.fill_time(),
            ),
        ];
        for (name, duration) in durations {
            if duration.is_none_or(|d| d > MAX_DURATION) {
                return Err(ConfigError::TooLong(name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds_and_valid() {
        let c = RelayConfig::default();
        assert_eq!(c.max_circuits, 1000);
        assert_eq!(c.max_circuit_duration, Duration::from_secs(120));
        assert_eq!(c.max_circuit_bytes, 1_048_576);
        assert_eq!(c.max_reservations, 256);
        assert_eq!(c.max_reservations_per_peer, 4);
        assert_eq!(c.max_reservations_per_ip, 8);
        assert_eq!(c.max_reservations_per_asn, 32);
        assert_eq!(c.buffer_size, 2048);
        assert_eq!(c.max_buffer_time, Duration::from_secs(10));
        assert_eq!(c.hop_timeout, Duration::from_secs(30));
        assert_eq!(c.max_circuits_per_peer, 16);
        assert_eq!(c.stream_timeout, Duration::from_secs(60));
        assert_eq!(c.reservation_ttl, Duration::from_secs(3600));
        assert_eq!(c.hop_message_limit(), 4096);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn invalid_settings_are_refused() {
        let mut c = RelayConfig {
            reservation_ttl: Duration::ZERO,
            ..RelayConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroReservationTtl));
        c.reservation_ttl = Duration::from_secs(1);
        c.ipv6_prefix_len = 129;
        assert_eq!(c.validate(), Err(ConfigError::Ipv6PrefixTooLong(129)));
        c.ipv6_prefix_len = 128;
        c.hop_timeout = Duration::MAX;
        assert_eq!(c.validate(), Err(ConfigError::TooLong("hop_timeout")));
        c.hop_timeout = Duration::ZERO;
        c.rate.circuits_per_ip = RateLimit::new(u32::MAX, Duration::from_secs(1));
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooLong("rate.circuits_per_ip"))
        );
        c.rate = RateLimits::off();
        assert_eq!(c.validate(), Ok(()));
        c.max_message_size = 100;
        assert_eq!(c.hop_message_limit(), 100);
    }
}
