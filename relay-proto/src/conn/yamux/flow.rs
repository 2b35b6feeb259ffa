//! Receive-window accounting and auto-tuning for one stream.
//!
//! The receiver grants the sender credit. Credit comes back to the sender when the
//! application has consumed at least half of the stream's window. If that happens within
//! two round trips of the previous grant, the window is the bottleneck, so it doubles,
//! up to a per-stream maximum and within a connection-wide budget: the window follows
//! the bandwidth-delay product instead of staying at the protocol's 256 KiB.
//!
//! Invariant: `credit + pending <= window`. The bytes in neither are in flight to the
//! application (delivered or about to be) and come back through [`ReceiveWindow::consume`].

use std::time::{Duration, Instant};

/// The initial window of every stream in each direction, fixed by the protocol.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// The connection-wide budget shared by all streams' receive windows.
#[derive(Debug, Clone)]
pub(crate) struct WindowBudget {
    /// Sum of the windows of all live streams.
    granted: u64,
    /// Upper bound for `granted` when a window grows; `None` means unbounded.
    limit: Option<u64>,
}

impl WindowBudget {
    /// A budget with nothing granted yet.
    pub(crate) fn new(limit: Option<usize>) -> Self {
        Self {
            granted: 0,
            limit: limit.map(|l| l as u64),
        }
    }

    /// Accounts a new stream's initial window. Initial windows are mandated by the
    /// protocol, so they count against the budget but are never refused.
    pub(crate) fn open(&mut self) {
        self.granted = self.granted.saturating_add(u64::from(INITIAL_WINDOW));
    }

    /// Returns a removed stream's window to the budget.
    pub(crate) fn release(&mut self, window: u32) {
        self.granted = self.granted.saturating_sub(u64::from(window));
    }

    /// How many more bytes of window may be granted.
    fn room(&self) -> u64 {
        match self.limit {
            Some(limit) => limit.saturating_sub(self.granted),
            None => u64::MAX,
        }
    }
}

/// The receive side of one stream's flow control.
#[derive(Debug, Clone)]
pub(crate) struct ReceiveWindow {
    /// The current window size: the most the peer may have outstanding.
    window: u32,
    /// How many more bytes the peer may send before it needs more credit.
    credit: u32,
    /// Bytes consumed by the application but not yet granted back.
    pending: u32,
    /// When credit was last granted (or the stream was opened).
    last_update: Instant,
}

impl ReceiveWindow {
    /// A fresh window of the protocol's initial size.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            window: INITIAL_WINDOW,
            credit: INITIAL_WINDOW,
            pending: 0,
            last_update: now,
        }
    }

    /// The current window size.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    /// Takes `len` bytes of credit for an arriving data frame; `false` if the peer
    /// exceeded its credit.
    pub(crate) fn receive(&mut self, len: u32) -> bool {
        match self.credit.checked_sub(len) {
            Some(rest) => {
                self.credit = rest;
                true
            }
            None => false,
        }
    }

    /// Records that the application consumed `n` bytes. More than was received is
    /// clamped, so a confused caller cannot inflate the window.
    pub(crate) fn consume(&mut self, n: usize) {
        let outstanding = self
            .window
            .saturating_sub(self.credit)
            .saturating_sub(self.pending);
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(outstanding);
        self.pending = self.pending.saturating_add(n);
    }

    /// If enough was consumed, the credit to grant now (possibly after growing the
    /// window). The caller sends it in a WindowUpdate frame.
    pub(crate) fn poll_update(
        &mut self,
        now: Instant,
        rtt: Option<Duration>,
        max_window: u32,
        budget: &mut WindowBudget,
    ) -> Option<u32> {
        if self.pending < self.window / 2 || self.pending == 0 {
            return None;
        }
        let since = now.saturating_duration_since(self.last_update);
        if let Some(rtt) = rtt
            && since < rtt.saturating_mul(2)
        {
            let target = self.window.saturating_mul(2).min(max_window);
            let room = u32::try_from(budget.room()).unwrap_or(u32::MAX);
            let grown = target
                .min(self.window.saturating_add(room))
                .max(self.window);
            let extra = grown.saturating_sub(self.window);
            if extra > 0 {
                tracing::trace!(
                    from = self.window,
                    to = grown,
                    "yamux: receive window grows"
                );
                budget.granted = budget.granted.saturating_add(u64::from(extra));
                self.window = grown;
            }
            self.pending = self.pending.saturating_add(extra);
        }
        let delta = self.pending;
        self.credit = self.credit.saturating_add(delta);
        self.pending = 0;
        self.last_update = now;
        Some(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_after_half_consumed() {
        let t0 = crate::test_now();
        let mut budget = WindowBudget::new(None);
        budget.open();
        let mut w = ReceiveWindow::new(t0);
        assert!(w.receive(INITIAL_WINDOW));
        assert!(!w.receive(1));
        w.consume(INITIAL_WINDOW as usize / 2 - 1);
        assert_eq!(w.poll_update(t0, None, u32::MAX, &mut budget), None);
        w.consume(1);
        assert_eq!(
            w.poll_update(t0, None, u32::MAX, &mut budget),
            Some(INITIAL_WINDOW / 2)
        );
        // Consuming more than was received is clamped.
        w.consume(usize::MAX);
        assert_eq!(
            w.poll_update(t0, None, u32::MAX, &mut budget),
            Some(INITIAL_WINDOW / 2)
        );
        assert_eq!(w.window(), INITIAL_WINDOW);
    }

    #[test]
    fn grows_within_rtt_and_caps() {
        let t0 = crate::test_now();
        let rtt = Some(Duration::from_millis(100));
        let mut budget = WindowBudget::new(Some(3 * INITIAL_WINDOW as usize / 2 + 1024));
        budget.open();
        let mut w = ReceiveWindow::new(t0);
        assert!(w.receive(INITIAL_WINDOW));
        w.consume(INITIAL_WINDOW as usize);
        let t1 = t0 + Duration::from_millis(150);
        // Budget allows only half a window more.
        let delta = w.poll_update(t1, rtt, 4 * INITIAL_WINDOW, &mut budget);
        assert_eq!(delta, Some(INITIAL_WINDOW + INITIAL_WINDOW / 2 + 1024));
        assert_eq!(w.window(), INITIAL_WINDOW + INITIAL_WINDOW / 2 + 1024);
        // Too slow: no growth.
        assert!(w.receive(w.window()));
        w.consume(usize::MAX);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            w.poll_update(t2, rtt, 4 * INITIAL_WINDOW, &mut budget),
            Some(w.window())
        );
    }
}
