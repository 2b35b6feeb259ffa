//! One link: latency, jitter, loss, bandwidth with a drop-tail queue, up or down.

use std::time::Duration;

use crate::net::DropReason;
use crate::rng::SimRng;
use crate::time::SimTime;

/// The properties of a link, the same in both directions.
///
/// A packet entering a link waits for the packets ahead of it to be serialized (at
/// `bandwidth_bps`), is serialized, then propagates for `latency` plus a uniformly
/// random extra in `0..=jitter`. Packets never overtake each other on a link: an
/// arrival earlier than the previous one's is moved to it. Loss is decided per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkParams {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Maximum extra delay, drawn uniformly per packet.
    pub jitter: Duration,
    /// Loss probability in parts per million (capped at 1 000 000).
    pub loss_ppm: u32,
    /// Bits per second; `None` (or 0) for infinite bandwidth: no serialization, no queue.
    pub bandwidth_bps: Option<u64>,
    /// Bytes the queue holds before it drops arriving packets.
    pub queue_bytes: u64,
}

impl LinkParams {
    /// A loss-free link of infinite bandwidth with the given one-way latency.
    pub const fn new(latency: Duration) -> Self {
        Self {
            latency,
            jitter: Duration::ZERO,
            loss_ppm: 0,
            bandwidth_bps: None,
            queue_bytes: 256 * 1024,
        }
    }

    /// A link with no delay at all.
    pub const fn instant() -> Self {
        Self::new(Duration::ZERO)
    }

    /// With a jitter.
    pub const fn with_jitter(self, jitter: Duration) -> Self {
        Self { jitter, ..self }
    }

    /// With a loss probability in percent (clamped to 0..=100; NaN means 0).
    pub fn with_loss_percent(self, percent: f64) -> Self {
        let ppm = if percent.is_nan() {
            0.0
        } else {
            (percent * 10_000.0).clamp(0.0, 1e6)
        };
        Self {
            loss_ppm: ppm as u32,
            ..self
        }
    }

    /// With a bandwidth in bits per second (0 means infinite) and a queue size.
    pub const fn with_bandwidth(self, bits_per_second: u64, queue_bytes: u64) -> Self {
        let bandwidth_bps = if bits_per_second == 0 {
            None
        } else {
            Some(bits_per_second)
        };
        Self {
            bandwidth_bps,
            queue_bytes,
            ..self
        }
    }
}

impl Default for LinkParams {
    /// [`LinkParams::instant`].
    fn default() -> Self {
        Self::instant()
    }
}

/// The two directions of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Direction {
    /// From the host or NAT side onto the network.
    Up,
    /// From the network to the host or NAT side.
    Down,
}

/// Queue and ordering state of one direction.
#[derive(Debug, Clone, Copy, Default)]
struct Lane {
    /// The instant the last queued packet finishes serializing.
    busy_until: SimTime,
    /// The arrival time of the last packet sent.
    last_arrival: SimTime,
}

/// The mutable state of a link.
#[derive(Debug, Clone)]
pub(crate) struct LinkState {
    pub(crate) params: LinkParams,
    pub(crate) up: bool,
    /// Incremented when the link goes down: packets in flight from an older epoch are lost.
    pub(crate) epoch: u32,
    lanes: [Lane; 2],
}

impl LinkState {
    pub(crate) fn new(params: LinkParams) -> Self {
        Self {
            params,
            up: true,
            epoch: 0,
            lanes: [Lane::default(); 2],
        }
    }

    /// Takes the link down or up. Going down loses everything in flight.
    pub(crate) fn set_up(&mut self, up: bool) {
        if self.up && !up {
            self.epoch = self.epoch.wrapping_add(1);
            self.lanes = [Lane::default(); 2];
        }
        self.up = up;
    }

    /// Puts a packet of `size` bytes on the link at `now`: its arrival time, or why it
    /// is lost.
    pub(crate) fn transmit(
        &mut self,
        now: SimTime,
        dir: Direction,
        size: usize,
        rng: &mut SimRng,
    ) -> Result<SimTime, DropReason> {
        if !self.up {
            return Err(DropReason::LinkDown);
        }
        let params = self.params;
        let lane = &mut self.lanes[dir as usize];
        let mut start = now;
        let mut serialization = Duration::ZERO;
        if let Some(bps) = params.bandwidth_bps.filter(|&bps| bps > 0) {
            let backlog = lane.busy_until.saturating_since(now);
            let backlog_bytes = backlog.as_nanos().saturating_mul(u128::from(bps)) / 8_000_000_000;
            if backlog_bytes.saturating_add(size as u128) > u128::from(params.queue_bytes) {
                return Err(DropReason::QueueFull);
            }
            let nanos = (size as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bps));
            serialization = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            start = start.max(lane.busy_until);
            lane.busy_until = start + serialization;
        }
        if rng.chance_ppm(params.loss_ppm) {
            return Err(DropReason::Loss);
        }
        let jitter_nanos = u64::try_from(params.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rng.range_inclusive(0, jitter_nanos));
        let arrival = (start + serialization + params.latency + jitter).max(lane.last_arrival);
        lane.last_arrival = arrival;
        Ok(arrival)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_and_serialization() {
        let params = LinkParams::new(Duration::from_millis(10)).with_bandwidth(8_000_000, 10_000);
        let mut link = LinkState::new(params);
        let mut rng = SimRng::new(1);
        // 1000 bytes at 1 MB/s: 1 ms each.
        let a = link
            .transmit(SimTime::ZERO, Direction::Up, 1000, &mut rng)
            .unwrap();
        let b = link
            .transmit(SimTime::ZERO, Direction::Up, 1000, &mut rng)
            .unwrap();
        assert_eq!(a, SimTime::from_millis(11));
        assert_eq!(b, SimTime::from_millis(12));
        // The other direction has its own queue.
        let c = link
            .transmit(SimTime::ZERO, Direction::Down, 1000, &mut rng)
            .unwrap();
        assert_eq!(c, SimTime::from_millis(11));
    }

    #[test]
    fn queue_overflows() {
        let params = LinkParams::new(Duration::ZERO).with_bandwidth(8_000, 2_500);
        let mut link = LinkState::new(params);
        let mut rng = SimRng::new(1);
        assert!(
            link.transmit(SimTime::ZERO, Direction::Up, 1000, &mut rng)
                .is_ok()
        );
        assert!(
            link.transmit(SimTime::ZERO, Direction::Up, 1000, &mut rng)
                .is_ok()
        );
        assert_eq!(
            link.transmit(SimTime::ZERO, Direction::Up, 1000, &mut rng),
            Err(DropReason::QueueFull)
        );
    }

    #[test]
    fn jitter_never_reorders_and_down_links_drop() {
        let params =
            LinkParams::new(Duration::from_millis(5)).with_jitter(Duration::from_millis(5));
        let mut link = LinkState::new(params);
        let mut rng = SimRng::new(7);
        let mut last = SimTime::ZERO;
        for i in 0..100 {
            let t = link
                .transmit(SimTime::from_nanos(i * 1000), Direction::Up, 100, &mut rng)
                .unwrap();
            assert!(t >= last);
            last = t;
        }
        link.set_up(false);
        assert_eq!(
            link.transmit(last, Direction::Up, 1, &mut rng),
            Err(DropReason::LinkDown)
        );
        assert_eq!(link.epoch, 1);
    }

    #[test]
    fn loss_percent_clamps() {
        assert_eq!(
            LinkParams::instant().with_loss_percent(f64::NAN).loss_ppm,
            0
        );
        assert_eq!(
            LinkParams::instant().with_loss_percent(250.0).loss_ppm,
            1_000_000
        );
        assert_eq!(
            LinkParams::instant().with_loss_percent(1.5).loss_ppm,
            15_000
        );
    }
}
