//! The limits a relay puts on relayed connections, and their reading from the wire.

use std::time::Duration;

use crate::wire::proto;

/// Limits of one relayed connection. `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Limit {
    /// How long the relayed connection may last.
    pub duration: Option<Duration>,
    /// How many bytes may be relayed in each direction (the spec counts per direction).
    pub data: Option<u64>,
}

/// Durations above this many units on the wire are taken as milliseconds.
///
/// The spec puts `Limit.duration` in seconds; js-libp2p writes milliseconds (its default
/// of two minutes arrives as 120000). A relay that limits circuits to more than a day
/// is implausible, while any js-libp2p limit of a second or more is at least 1000, so
/// values above one day are read as milliseconds when the sender's implementation is
/// unknown.
pub const MILLISECONDS_THRESHOLD: u32 = 86_400;

impl Limit {
    /// No limit at all.
    pub const NONE: Limit = Limit {
        duration: None,
        data: None,
    };

    /// Reads a limit from the wire. `0` or a missing field means no limit.
    /// `duration_in_ms` says the sender is known to write milliseconds (js-libp2p);
    /// otherwise [`MILLISECONDS_THRESHOLD`] decides.
    pub fn from_wire(limit: Option<&proto::Limit>, duration_in_ms: bool) -> Self {
        let Some(limit) = limit else {
            return Limit::NONE;
        };
        let duration = match limit.duration {
            None | Some(0) => None,
            Some(d) if duration_in_ms || d > MILLISECONDS_THRESHOLD => {
                Some(Duration::from_millis(u64::from(d)))
            }
            Some(d) => Some(Duration::from_secs(u64::from(d))),
        };
        let data = limit.data.filter(|&d| d != 0);
        Limit { duration, data }
    }

    /// The wire form (seconds, as the spec says); `None` when there is no limit.
    pub fn to_wire(&self) -> Option<proto::Limit> {
        if self.duration.is_none() && self.data.is_none() {
            return None;
        }
        Some(proto::Limit {
            // A limit under one second still limits: round up rather than write 0 (none).
            duration: self.duration.map(|d| {
                u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(u32::MAX)
            }),
            data: self.data,
        })
    }

    /// Whether there is any limit.
    pub fn is_limited(&self) -> bool {
        self.duration.is_some() || self.data.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(duration: Option<u32>, data: Option<u64>) -> proto::Limit {
        proto::Limit { duration, data }
    }

    #[test]
    fn zero_and_missing_mean_unlimited() {
        assert_eq!(Limit::from_wire(None, false), Limit::NONE);
        assert_eq!(
            Limit::from_wire(Some(&wire(Some(0), Some(0))), false),
            Limit::NONE
        );
        assert_eq!(
            Limit::from_wire(Some(&wire(None, None)), false),
            Limit::NONE
        );
    }

    #[test]
    fn seconds_and_js_milliseconds() {
        let go = Limit::from_wire(Some(&wire(Some(120), Some(131072))), false);
        assert_eq!(go.duration, Some(Duration::from_secs(120)));
        assert_eq!(go.data, Some(131072));
        let js = Limit::from_wire(Some(&wire(Some(120_000), None)), false);
        assert_eq!(js.duration, Some(Duration::from_secs(120)));
        let js_known = Limit::from_wire(Some(&wire(Some(5_000), None)), true);
        assert_eq!(js_known.duration, Some(Duration::from_secs(5)));
    }

    #[test]
    fn to_wire_round_trips() {
        let limit = Limit {
            duration: Some(Duration::from_secs(120)),
            data: Some(1 << 17),
        };
        assert_eq!(Limit::from_wire(limit.to_wire().as_ref(), false), limit);
        assert_eq!(Limit::NONE.to_wire(), None);
        let short = Limit {
            duration: Some(Duration::from_millis(10)),
            data: None,
        };
        assert_eq!(short.to_wire().unwrap().duration, Some(1));
    }
}
