//! AutoRelay: choosing relays, keeping reservations on them, and replacing lost ones.
//!
//! This module owns the decisions of a node that needs relays (the seed's
//! `node.relay.auto_relay`, the Tier 1 and Tier 2 deployments). So far: its settings
//! ([`config`]) and the quality score of a relay candidate ([`score`]).

pub mod config;
pub mod score;

pub use config::{
    Activation, AutoRelayConfig, BackoffConfig, ConfigError, Reachability, ScoreConfig,
    SelectionPolicy,
};
