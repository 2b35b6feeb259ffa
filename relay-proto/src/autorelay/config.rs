//! Settings of AutoRelay: the seed's `node.relay.auto_relay` section, plus the candidate,
//! backoff, timing and scoring knobs the seed leaves implicit (defaults after go-libp2p's
//! `p2p/host/autorelay` where it has one).

use std::time::Duration;

use multiaddr::{Multiaddr, Protocol};

use crate::identity::PeerId;

/// Longest duration accepted in any setting (one year), so that every deadline computed
/// from `now` is representable.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Settings of the [`AutoRelay`](super::AutoRelay) state machine.
///
/// `Default` gives the seed's defaults for the fields it names.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoRelayConfig {
    // --- node.relay.auto_relay ---
    /// Whether AutoRelay may run at all (seed: `enabled`, false). When false,
    /// [`AutoRelay::start`](super::AutoRelay::start) fails with
    /// [`Error::NotEnabled`](super::Error::NotEnabled).
    pub enabled: bool,
    /// Trusted relays, each address ending in `/p2p/RELAY` (seed: `static_relay_peers`,
    /// empty). Addresses of the same relay are merged into one candidate.
    pub static_relay_peers: Vec<Multiaddr>,
    /// Whether to look for relays beyond the static ones: from the peer source and from
    /// peers seen to speak the hop protocol (seed: `enable_dynamic`, true).
    pub enable_dynamic: bool,
    /// Reservations AutoRelay strives to hold; never more are held or requested at once
    /// (seed: `max_relay_peers`, 3).
    pub max_relay_peers: usize,
    /// Reservations below which AutoRelay reports errors: while fewer are held or
    /// requested, a failed selection is an [`Error`](super::Error) event
    /// (seed: `min_relay_peers`, 1).
    pub min_relay_peers: usize,
    /// How to choose among eligible candidates (seed: `selection_policy`, quality).
    pub selection_policy: SelectionPolicy,
    /// Lowest quality score, in `[0, 1]`, of a dynamic candidate that may be chosen
    /// (seed: `quality_threshold`, 0.8). See [`score`](super::score) for the formula; a
    /// candidate nothing is known about scores 0.9. Static relays are trusted: their
    /// score orders them but does not exclude them.
    pub quality_threshold: f64,
    /// How often held relays are re-evaluated and possibly swapped for a better candidate
    /// (seed: `refresh_interval`, 30m).
    pub refresh_interval: Duration,
    /// Longest wait for the answer to [`Action::QueryPeerSource`](super::Action)
    /// (seed: `peer_source_timeout`, 30s).
    pub peer_source_timeout: Duration,
    /// Longest time one reservation attempt may take, from
    /// [`Action::Reserve`](super::Action) to the relay's acceptance, including dialing
    /// the relay (seed: `discovery_timeout`, 1m). A late attempt counts as failed.
    pub discovery_timeout: Duration,

    // --- beyond the seed ---
    /// When AutoRelay runs once started (only while the node believes itself
    /// unreachable, as go-libp2p).
    pub activation: Activation,
    /// Spare candidates (not in use, not backing off) below which the peer source is
    /// queried; during the boot delay, also the number of candidates to collect before
    /// choosing a dynamic one (4, as go-libp2p).
    pub min_candidates: usize,
    /// Most dynamic candidates remembered; static relays are not counted (20).
    pub max_candidates: usize,
    /// A dynamic candidate not seen again for this long, and not in use, is forgotten
    /// (30m, as go-libp2p).
    pub max_candidate_age: Duration,
    /// Wait after a failed attempt or a lost reservation before the relay may be chosen
    /// again: doubles with each consecutive failure up to a cap.
    pub backoff: BackoffConfig,
    /// How often candidates are aged and relays whose backoff ended are retried (10s).
    /// Failures reported as inputs are acted upon at once.
    pub detection_interval: Duration,
    /// A held relay with no sign of life (acceptance or RTT sample) for this long counts
    /// as failed with a heartbeat timeout; `None` relies on the node reporting heartbeat
    /// failures (None).
    pub heartbeat_timeout: Option<Duration>,
    /// After activation, how long to wait for `min_candidates` candidates before choosing
    /// a dynamic one; static relays may be chosen at once (3m, as go-libp2p).
    pub boot_delay: Duration,
    /// Least time between two peer source queries (30s, as go-libp2p's `minInterval`).
    pub peer_source_min_interval: Duration,
    /// On refresh, a held relay is swapped only for a candidate whose score is at least
    /// this much higher (0.1): the hysteresis that keeps advertised addresses stable.
    pub swap_margin: f64,
    /// Width of the random offset added to each candidate's score under the `quality`
    /// policy (0.05): candidates closer than this may be ordered either way, so that many
    /// clients do not pile onto one relay. Each candidate draws its offset once.
    pub quality_jitter: f64,
    /// Parameters of the quality score.
    pub score: ScoreConfig,
}

/// How to choose among eligible candidates. Relays used last come first in every policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SelectionPolicy {
    /// Highest score first; near-ties broken by a per-candidate random offset.
    #[default]
    Quality,
    /// Uniformly at random among eligible candidates.
    Random,
    /// In turn: each choice starts after the candidate chosen last, in the order the
    /// candidates became known.
    RoundRobin,
}

impl SelectionPolicy {
    /// The policy named as in the seed: `quality`, `random` or `round_robin`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "quality" => Some(Self::Quality),
            "random" => Some(Self::Random),
            "round_robin" => Some(Self::RoundRobin),
            _ => None,
        }
    }

    /// The seed's name of the policy.
    pub fn name(self) -> &'static str {
        match self {
            Self::Quality => "quality",
            Self::Random => "random",
            Self::RoundRobin => "round_robin",
        }
    }
}

/// When AutoRelay holds reservations once started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// Only while [`Reachability::Private`]: a publicly reachable node needs no relay.
    #[default]
    WhenPrivate,
    /// Whatever the reachability.
    Always,
}

/// What the node believes about its own reachability (from AutoNAT or the application).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Reachability {
    /// Not known yet.
    #[default]
    Unknown,
    /// Other peers can dial us directly.
    Public,
    /// Behind a NAT or firewall: reachable only through relays.
    Private,
}

/// Exponential backoff after failures: `initial · 2^(n-1)`, at most `max`, for the `n`th
/// consecutive failure of a relay. A granted reservation resets `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Wait after the first failure (30s).
    pub initial: Duration,
    /// Longest wait (1h, go-libp2p's fixed backoff).
    pub max: Duration,
}

/// Parameters of the quality score; see [`score`](super::score) for the formula.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreConfig {
    /// The RTT at which the latency term is one half (500ms).
    pub rtt_reference: Duration,
    /// The held time that one lost reservation costs, and the prior's weight in the
    /// uptime term (10m).
    pub uptime_reference: Duration,
    /// Reservation and uptime history loses half its weight over this time, so that a
    /// relay that failed long ago can score well again (1h).
    pub history_half_life: Duration,
}

/// Why an [`AutoRelayConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `max_relay_peers` is zero.
    #[error("max_relay_peers must be at least 1")]
    NoRelays,
    /// `min_relay_peers` exceeds `max_relay_peers`.
    #[error("min_relay_peers {min} exceeds max_relay_peers {max}")]
    MinAboveMax {
        /// `min_relay_peers`.
        min: usize,
        /// `max_relay_peers`.
        max: usize,
    },
    /// `min_candidates` exceeds `max_candidates`.
    #[error("min_candidates {min} exceeds max_candidates {max}")]
    MinCandidatesAboveMax {
        /// `min_candidates`.
        min: usize,
        /// `max_candidates`.
        max: usize,
    },
    /// A fraction (`quality_threshold`, `swap_margin`, `quality_jitter`) is not in `[0, 1]`.
    #[error("{0} must be a number in [0, 1]")]
    NotAFraction(&'static str),
    /// A duration that must not be zero is zero.
    #[error("{0} must not be zero")]
    Zero(&'static str),
    /// A duration exceeds [`MAX_DURATION`].
    #[error("{0} is longer than one year")]
    TooLong(&'static str),
    /// `backoff.initial` exceeds `backoff.max`.
    #[error("backoff.initial exceeds backoff.max")]
    BackoffInitialAboveMax,
    /// A static relay address does not end in `/p2p/RELAY`.
    #[error("static relay address {0} names no relay peer (/p2p/...)")]
    StaticRelayWithoutPeer(Multiaddr),
}

impl Default for AutoRelayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            static_relay_peers: Vec::new(),
            enable_dynamic: true,
            max_relay_peers: 3,
            min_relay_peers: 1,
            selection_policy: SelectionPolicy::Quality,
            quality_threshold: 0.8,
            refresh_interval: Duration::from_secs(30 * 60),
            peer_source_timeout: Duration::from_secs(30),
            discovery_timeout: Duration::from_secs(60),
            activation: Activation::WhenPrivate,
            min_candidates: 4,
            max_candidates: 20,
            max_candidate_age: Duration::from_secs(30 * 60),
            backoff: BackoffConfig::default(),
            detection_interval: Duration::from_secs(10),
            heartbeat_timeout: None,
            boot_delay: Duration::from_secs(3 * 60),
            peer_source_min_interval: Duration::from_secs(30),
            swap_margin: 0.1,
            quality_jitter: 0.05,
            score: ScoreConfig::default(),
        }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            rtt_reference: Duration::from_millis(500),
            uptime_reference: Duration::from_secs(10 * 60),
            history_half_life: Duration::from_secs(3600),
        }
    }
}

impl AutoRelayConfig {
    /// Checks that the settings can be used; [`AutoRelay::new`](super::AutoRelay::new)
    /// calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_relay_peers == 0 {
            return Err(ConfigError::NoRelays);
        }
        if self.min_relay_peers > self.max_relay_peers {
            return Err(ConfigError::MinAboveMax {
                min: self.min_relay_peers,
                max: self.max_relay_peers,
            });
        }
        if self.min_candidates > self.max_candidates {
            return Err(ConfigError::MinCandidatesAboveMax {
                min: self.min_candidates,
                max: self.max_candidates,
            });
        }
        for (name, value) in [
            ("quality_threshold", self.quality_threshold),
            ("swap_margin", self.swap_margin),
            ("quality_jitter", self.quality_jitter),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::NotAFraction(name));
            }
        }
        let durations = [
            ("refresh_interval", self.refresh_interval, true),
            ("peer_source_timeout", self.peer_source_timeout, true),
            ("discovery_timeout", self.discovery_timeout, true),
            ("max_candidate_age", self.max_candidate_age, true),
            ("backoff.initial", self.backoff.initial, true),
            ("backoff.max", self.backoff.max, true),
            ("detection_interval", self.detection_interval, true),
            (
                "heartbeat_timeout",
                self.heartbeat_timeout.unwrap_or(Duration::from_secs(1)),
                true,
            ),
            ("boot_delay", self.boot_delay, false),
            (
                "peer_source_min_interval",
                self.peer_source_min_interval,
                false,
            ),
            ("score.rtt_reference", self.score.rtt_reference, true),
            ("score.uptime_reference", self.score.uptime_reference, true),
            (
                "score.history_half_life",
                self.score.history_half_life,
                true,
            ),
        ];
        for (name, value, nonzero) in durations {
            if nonzero && value.is_zero() {
                return Err(ConfigError::Zero(name));
            }
            if value > MAX_DURATION {
                return Err(ConfigError::TooLong(name));
            }
        }
        if self.backoff.initial > self.backoff.max {
            return Err(ConfigError::BackoffInitialAboveMax);
        }
        self.static_relays()?;
        Ok(())
    }

    /// The static relays, each with its addresses in the order configured.
    pub fn static_relays(&self) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, ConfigError> {
        let mut relays: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for addr in &self.static_relay_peers {
            let Some(peer) = peer_of(addr) else {
                return Err(ConfigError::StaticRelayWithoutPeer(addr.clone()));
            };
            match relays.iter_mut().find(|(p, _)| *p == peer) {
                Some((_, addrs)) => addrs.push(addr.clone()),
                None => relays.push((peer, vec![addr.clone()])),
            }
        }
        Ok(relays)
    }
}

/// The peer named by the last `/p2p/` component of `addr`.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last()? {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    fn relay_addr(seed: u8, port: u16) -> Multiaddr {
        let peer = keypair_from_seed(seed).public().to_peer_id();
        format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}")
            .parse()
            .unwrap()
    }

    #[test]
    fn defaults_are_the_seeds() {
        let c = AutoRelayConfig::default();
        assert!(!c.enabled && c.enable_dynamic && c.static_relay_peers.is_empty());
        assert_eq!((c.max_relay_peers, c.min_relay_peers), (3, 1));
        assert_eq!(c.selection_policy, SelectionPolicy::Quality);
        assert_eq!(c.quality_threshold, 0.8);
        assert_eq!(c.refresh_interval, Duration::from_secs(1800));
        assert_eq!(c.peer_source_timeout, Duration::from_secs(30));
        assert_eq!(c.discovery_timeout, Duration::from_secs(60));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn policy_names_round_trip() {
        for p in [
            SelectionPolicy::Quality,
            SelectionPolicy::Random,
            SelectionPolicy::RoundRobin,
        ] {
            assert_eq!(SelectionPolicy::from_name(p.name()), Some(p));
        }
        assert_eq!(SelectionPolicy::from_name("fastest"), None);
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = |f: fn(&mut AutoRelayConfig)| {
            let mut c = AutoRelayConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.max_relay_peers = 0), ConfigError::NoRelays);
        assert!(matches!(
            bad(|c| c.min_relay_peers = 4),
            ConfigError::MinAboveMax { min: 4, max: 3 }
        ));
        assert!(matches!(
            bad(|c| c.min_candidates = 30),
            ConfigError::MinCandidatesAboveMax { .. }
        ));
        assert_eq!(
            bad(|c| c.quality_threshold = f64::NAN),
            ConfigError::NotAFraction("quality_threshold")
        );
        assert_eq!(
            bad(|c| c.swap_margin = 1.5),
            ConfigError::NotAFraction("swap_margin")
        );
        assert_eq!(
            bad(|c| c.detection_interval = Duration::ZERO),
            ConfigError::Zero("detection_interval")
        );
        assert_eq!(
            bad(|c| c.heartbeat_timeout = Some(Duration::ZERO)),
            ConfigError::Zero("heartbeat_timeout")
        );
        assert_eq!(
            bad(|c| c.refresh_interval = MAX_DURATION * 2),
            ConfigError::TooLong("refresh_interval")
        );
        assert_eq!(
            bad(|c| c.backoff.initial = Duration::from_secs(7200)),
            ConfigError::BackoffInitialAboveMax
        );
        assert!(matches!(
            bad(|c| c.static_relay_peers = vec!["/ip4/1.2.3.4/tcp/1".parse().unwrap()]),
            ConfigError::StaticRelayWithoutPeer(_)
        ));
    }

    #[test]
    fn static_relays_group_addresses_by_peer() {
        let c = AutoRelayConfig {
            static_relay_peers: vec![relay_addr(1, 1), relay_addr(2, 2), relay_addr(1, 3)],
            ..AutoRelayConfig::default()
        };
        let relays = c.static_relays().unwrap();
        assert_eq!(relays.len(), 2);
        assert_eq!(relays[0].1, vec![relay_addr(1, 1), relay_addr(1, 3)]);
        assert_eq!(relays[1].1, vec![relay_addr(2, 2)]);
    }
}
