//! `node.relay.auto_relay` as relay-proto's [`AutoRelayConfig`].

use relay_proto::autorelay::{self, AutoRelayConfig};

use super::schema::{FileConfig, SelectionPolicy};

impl FileConfig {
    /// The AutoRelay settings: the seed's fields from `node.relay.auto_relay`, the rest
    /// relay-proto's defaults. Call [`validate`](Self::validate) first; values it
    /// accepts but relay-proto refuses (a duration over a year) fail when the node is
    /// made, with the field named.
    pub(crate) fn auto_relay_config(&self) -> AutoRelayConfig {
        let a = &self.node.relay.auto_relay;
        AutoRelayConfig {
            enabled: a.enabled,
            static_relay_peers: a.static_relay_peers.clone(),
            enable_dynamic: a.enable_dynamic,
            max_relay_peers: a.max_relay_peers as usize,
            min_relay_peers: a.min_relay_peers as usize,
            selection_policy: match a.selection_policy {
                SelectionPolicy::Quality => autorelay::SelectionPolicy::Quality,
                SelectionPolicy::Random => autorelay::SelectionPolicy::Random,
                SelectionPolicy::RoundRobin => autorelay::SelectionPolicy::RoundRobin,
            },
            quality_threshold: a.quality_threshold,
            refresh_interval: a.refresh_interval.get(),
            peer_source_timeout: a.peer_source_timeout.get(),
            discovery_timeout: a.discovery_timeout.get(),
            ..AutoRelayConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_relay_protos() {
        let file = FileConfig::default();
        assert_eq!(file.auto_relay_config(), AutoRelayConfig::default());
    }
}
