//! Peers that run AutoRelay: a peer's `auto_relay` checked and resolved into the
//! node's [`AutoRelayConfig`].
//!
//! The node runs AutoRelay itself, as under a real runtime: it is started when the
//! node boots (again after every restart or join), reserves on the relays it chooses,
//! and notices a failed relay only by its own means: the connection closing (a killed
//! relay's reset) or a heartbeat ping unanswered (a crashed, silent relay). The
//! simulator never tells a node that a relay died; it only looks at the node's
//! current relays to wait for them (`await_relays`), to name one (`{relay_of: b}`) and
//! to measure the time from a relay's failure to the next reservation AutoRelay adds.

use relay_proto::autorelay::{Activation, AutoRelayConfig, SelectionPolicy};

use super::nat_spec;
use super::spec::{ActivationName, AutoRelaySpec, PolicyName};

/// A peer's AutoRelay, resolved.
#[derive(Debug, Clone)]
pub(crate) struct AutoRelayPlan {
    /// The node's settings, `enabled`, without the static relays' addresses (they
    /// depend on the trial's world).
    pub(crate) config: AutoRelayConfig,
    /// The static relays, as host indices, in the order written.
    pub(crate) static_relays: Vec<usize>,
}

/// Checks and resolves `spec` (`what` names it in errors); `relay` looks a relay's
/// name up.
pub(crate) fn plan(
    spec: &AutoRelaySpec,
    what: &str,
    relay: impl Fn(&str) -> Result<usize, String>,
) -> Result<AutoRelayPlan, String> {
    let mut static_relays = Vec::new();
    for name in &spec.static_relays {
        let i = relay(name).map_err(|e| format!("{what}.static_relays: {e}"))?;
        if static_relays.contains(&i) {
            return Err(format!("{what}.static_relays: `{name}` is listed twice"));
        }
        static_relays.push(i);
    }
    let enable_dynamic = spec.enable_dynamic.unwrap_or(false);
    if static_relays.is_empty() && !enable_dynamic {
        return Err(format!(
            "{what}: no static relays, and enable_dynamic is off: nothing to reserve on"
        ));
    }
    let mut config = AutoRelayConfig {
        enabled: true,
        enable_dynamic,
        ..AutoRelayConfig::default()
    };
    if let Some(n) = spec.max_relay_peers {
        config.max_relay_peers = n;
    }
    if let Some(n) = spec.min_relay_peers {
        config.min_relay_peers = n;
    }
    if let Some(p) = spec.selection_policy {
        config.selection_policy = match p {
            PolicyName::Quality => SelectionPolicy::Quality,
            PolicyName::Random => SelectionPolicy::Random,
            PolicyName::RoundRobin => SelectionPolicy::RoundRobin,
        };
    }
    if let Some(a) = spec.activation {
        config.activation = match a {
            ActivationName::WhenPrivate => Activation::WhenPrivate,
            ActivationName::Always => Activation::Always,
        };
    }
    if let Some(s) = spec.backoff_s {
        let initial = nat_spec::seconds(s, &format!("{what}.backoff_s"))?;
        config.backoff.initial = initial;
        config.backoff.max = config.backoff.max.max(initial);
    }
    config.validate().map_err(|e| format!("{what}: {e}"))?;
    Ok(AutoRelayPlan {
        config,
        static_relays,
    })
}
