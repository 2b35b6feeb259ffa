//! External port allocation: preserving, sequential or random (RFC 4787 section 4.2).

use std::collections::BTreeMap;

use super::config::{PortAllocation, PortRange};
use crate::packet::Protocol;
use crate::rng::SimRng;

/// Attempts at a random port before scanning for a free one.
const RANDOM_TRIES: u32 = 32;

/// Picks external ports for new mappings.
#[derive(Debug, Clone)]
pub(crate) struct PortAllocator {
    policy: PortAllocation,
    range: PortRange,
    next: BTreeMap<Protocol, u16>,
}

impl PortAllocator {
    pub(crate) fn new(policy: PortAllocation, range: PortRange) -> Self {
        Self {
            policy,
            range,
            next: BTreeMap::new(),
        }
    }

    /// A free port for a mapping of `internal_port`, or `None` when every port in the
    /// range is taken. `taken` says whether a port is in use.
    pub(crate) fn allocate(
        &mut self,
        protocol: Protocol,
        internal_port: u16,
        rng: &mut SimRng,
        taken: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        match self.policy {
            PortAllocation::Preserve => {
                if self.range.contains(internal_port) && !taken(internal_port) {
                    return Some(internal_port);
                }
                self.random(rng, &taken)
            }
            PortAllocation::Sequential => {
                let start = *self.next.get(&protocol).unwrap_or(&self.range.lo());
                let port = self.scan_from(start, &taken)?;
                let next = if port >= self.range.hi() {
                    self.range.lo()
                } else {
                    port + 1
                };
                self.next.insert(protocol, next);
                Some(port)
            }
            PortAllocation::Random => self.random(rng, &taken),
        }
    }

    fn random(&self, rng: &mut SimRng, taken: &impl Fn(u16) -> bool) -> Option<u16> {
        let (lo, hi) = (u64::from(self.range.lo()), u64::from(self.range.hi()));
        for _ in 0..RANDOM_TRIES {
            let port = u16::try_from(rng.range_inclusive(lo, hi)).unwrap_or(self.range.lo());
            if !taken(port) {
                return Some(port);
            }
        }
        let start = u16::try_from(rng.range_inclusive(lo, hi)).unwrap_or(self.range.lo());
        self.scan_from(start, taken)
    }

    /// The first free port at or after `start`, wrapping around the range once.
    fn scan_from(&self, start: u16, taken: &impl Fn(u16) -> bool) -> Option<u16> {
        let start = if self.range.contains(start) {
            start
        } else {
            self.range.lo()
        };
        let mut port = start;
        for _ in 0..self.range.len() {
            if !taken(port) {
                return Some(port);
            }
            port = if port >= self.range.hi() {
                self.range.lo()
            } else {
                port + 1
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preserve_falls_back_when_taken() {
        let mut a = PortAllocator::new(PortAllocation::Preserve, PortRange::new(1000, 2000));
        let mut rng = SimRng::new(1);
        assert_eq!(
            a.allocate(Protocol::Tcp, 1500, &mut rng, |_| false),
            Some(1500)
        );
        let p = a
            .allocate(Protocol::Tcp, 1500, &mut rng, |p| p == 1500)
            .unwrap();
        assert!(p != 1500 && (1000..=2000).contains(&p));
        // Out of range: never preserved.
        let p = a.allocate(Protocol::Tcp, 80, &mut rng, |_| false).unwrap();
        assert!((1000..=2000).contains(&p));
    }

    #[test]
    fn sequential_wraps_and_skips() {
        let mut a = PortAllocator::new(PortAllocation::Sequential, PortRange::new(10, 12));
        let mut rng = SimRng::new(1);
        let got: Vec<_> = (0..4)
            .map(|_| a.allocate(Protocol::Udp, 0, &mut rng, |p| p == 11))
            .collect();
        assert_eq!(got, [Some(10), Some(12), Some(10), Some(12)]);
        assert_eq!(a.allocate(Protocol::Udp, 0, &mut rng, |_| true), None);
    }

    #[test]
    fn random_finds_the_last_free_port() {
        let mut a = PortAllocator::new(PortAllocation::Random, PortRange::new(1, 1000));
        let mut rng = SimRng::new(3);
        assert_eq!(
            a.allocate(Protocol::Tcp, 0, &mut rng, |p| p != 777),
            Some(777)
        );
    }
}
