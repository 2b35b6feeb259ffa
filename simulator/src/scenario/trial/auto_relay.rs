//! Steps around AutoRelay peers: failing a relay (`crash`, `kill`), waiting for a peer
//! to hold its reservations (`await_relays`), naming one of its relays
//! (`{relay_of: b}`), and the failover measured in between.
//!
//! What the simulator reads of a node is only what an application could: its current
//! relays. Whether a relay is up is the simulator's knowledge, used to judge the node
//! (a relay that is down does not count towards `await_relays`), never told to it.

use std::time::Duration;

use relay_proto::autorelay;
use relay_proto::node::Event;

use super::Trial;
use crate::node::NodeEvent;
use crate::scenario::spec::{HostRef, Pick};

/// How a host fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Silently, as a machine that loses power or hangs.
    Crash,
    /// As a killed process: connections reset, new ones refused.
    Kill,
}

impl Trial<'_, '_> {
    /// The host a step names: by name, or one of a peer's AutoRelay relays now.
    pub(super) fn resolve(&self, r: &HostRef) -> Result<usize, String> {
        let (peer, pick) = match r {
            HostRef::Named(name) => return Ok(self.slot(name)),
            HostRef::RelayOf { peer, pick } => (self.slot(peer), *pick),
        };
        let relays = self.current_relays(peer);
        let chosen = match pick {
            Pick::Oldest => relays.first(),
            Pick::Newest => relays.last(),
        };
        chosen.copied().ok_or_else(|| {
            format!(
                "{} holds no reservation through auto relay",
                self.plan.hosts[peer].name
            )
        })
    }

    /// The hosts `peer`'s AutoRelay holds reservations on, in the order granted.
    fn current_relays(&self, peer: usize) -> Vec<usize> {
        let Some(node) = self.nw.node(self.hosts[peer]) else {
            return Vec::new();
        };
        node.auto_relay_current_relays()
            .iter()
            .filter_map(|id| self.peers.get(id).copied())
            .collect()
    }

    /// Of `peer`'s current relays, those that are up.
    fn live_relays(&self, peer: usize) -> usize {
        self.current_relays(peer)
            .into_iter()
            .filter(|&r| self.nw.node(self.hosts[r]).is_some())
            .count()
    }

    /// Crashes or kills a host. Every AutoRelay peer that held a reservation on it
    /// starts a failover measurement, and the next `connect` counts as a re-dial.
    pub(super) fn fail(&mut self, i: usize, how: Failure) -> Result<(), String> {
        let now = self.nw.now();
        let holders: Vec<usize> = (0..self.hosts.len())
            .filter(|&p| self.plan.hosts[p].auto_relay.is_some())
            .filter(|&p| self.current_relays(p).contains(&i))
            .collect();
        self.relay_bytes_gone += self.relayed_bytes_of(i);
        let host = self.hosts[i];
        match how {
            Failure::Crash => self.nw.crash(host),
            Failure::Kill => self.nw.kill(host),
        }
        .map_err(|e| e.to_string())?;
        self.result
            .failed_hosts
            .push(self.plan.hosts[i].name.clone());
        for p in holders {
            // A second failure while one is being measured joins that measurement.
            if let std::collections::btree_map::Entry::Vacant(v) = self.failover_since.entry(p) {
                v.insert(now);
                self.result.relay_failures += 1;
            }
            self.result.redial = Some(false);
        }
        Ok(())
    }

    /// Waits until `peer` holds `count` reservations on relays that are up.
    pub(super) fn await_relays(
        &mut self,
        peer: usize,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        if self.live_relays(peer) >= count {
            return Ok(());
        }
        let result = self.wait(timeout, |t, _| {
            (t.live_relays(peer) >= count).then_some(Ok(()))
        });
        result.map_err(|e| {
            format!(
                "{e}: {} holds {} of {count} reservations",
                self.plan.hosts[peer].name,
                self.live_relays(peer)
            )
        })
    }

    /// Notes the first reservation an AutoRelay peer adds after one of its relays
    /// failed: the failover time.
    pub(super) fn observe_auto_relay(&mut self, at: usize, e: &NodeEvent) {
        if let Event::AutoRelay(autorelay::Event::RelayAdded { .. }) = &e.event
            && let Some(since) = self.failover_since.remove(&at)
        {
            self.result.failovers.push(e.at.saturating_since(since));
        }
    }

    /// Each AutoRelay peer and the relays it holds now, by name.
    pub(super) fn auto_relay_summary(&self) -> Vec<(String, Vec<String>)> {
        (0..self.hosts.len())
            .filter(|&p| self.plan.hosts[p].auto_relay.is_some())
            .map(|p| {
                let names = self.current_relays(p);
                let names = names
                    .into_iter()
                    .map(|r| self.plan.hosts[r].name.clone())
                    .collect();
                (self.plan.hosts[p].name.clone(), names)
            })
            .collect()
    }

    /// A connect step succeeded: after a relay failure, the re-dial did.
    pub(super) fn connected(&mut self) {
        if self.result.redial == Some(false) {
            self.result.redial = Some(true);
        }
    }
}
