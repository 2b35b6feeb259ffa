//! Range and consistency checks of a parsed config, each error naming the field's path.
//!
//! Rules: counts that bound a resource follow relay-proto's convention (`0` is no limit)
//! unless a zero could not work (at least one listen address, connection, stream, attempt
//! or relay); timeouts and intervals outside the relay service must not be zero; no
//! duration may exceed one year; shares (thresholds) lie in 0..=1.

use std::time::Duration;

use relay_proto::hop::config::MAX_DURATION;
use relay_proto::node::addr::peer_of;

use super::{ConfigError, FileConfig, GoDuration, HookSetting};

impl FileConfig {
    /// Checks every range and consistency rule; returns the first problem found.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_node()?;
        self.validate_transport()?;
        self.validate_service()?;
        self.validate_auto_relay()?;
        self.validate_hole_punch()?;
        self.validate_monitoring()?;
        self.relay_config_unchecked()
            .validate()
            .map_err(relay_error)
    }

    fn validate_node(&self) -> Result<(), ConfigError> {
        let node = &self.node;
        if node.listen.is_empty() {
            return Err(ConfigError::invalid(
                "node.listen",
                "needs at least one address, e.g. /ip4/0.0.0.0/tcp/4001",
            ));
        }
        for (i, addr) in node.listen.iter().enumerate() {
            if peer_of(addr).is_some() {
                return Err(ConfigError::invalid(
                    format!("node.listen[{i}]"),
                    format_args!("{addr} has a /p2p/ part; a listen address names no peer"),
                ));
            }
        }
        at_least_one("node.max_connections", node.max_connections as u64)?;
        at_least_one("node.max_streams", node.max_streams as u64)?;
        positive("node.upgrade_timeout", node.upgrade_timeout)?;
        positive("node.ping_timeout", node.ping_timeout)?;
        at_most_a_year("node.ping_interval", node.ping_interval)
    }

    fn validate_transport(&self) -> Result<(), ConfigError> {
        let transport = &self.node.relay.transport;
        at_least_one("node.relay.transport.max_hops", transport.max_hops.into())?;
        positive("node.relay.transport.dial_timeout", transport.dial_timeout)
    }

    fn validate_service(&self) -> Result<(), ConfigError> {
        let service = &self.node.relay.service;
        at_least_one("node.relay.service.buffer_size", service.buffer_size as u64)?;
        at_least_one(
            "node.relay.service.rate_limits.max_tracked_keys",
            service.rate_limits.max_tracked_keys as u64,
        )?;
        let acl = &service.acl;
        match (acl.hook, acl.hook_command.first()) {
            (HookSetting::Off, Some(_)) => {
                return Err(ConfigError::invalid(
                    "node.relay.service.acl.hook_command",
                    "is set but acl.hook is `off`; set acl.hook to reservations, circuits \
                     or both, or remove the command",
                ));
            }
            (hook, None) if hook != HookSetting::Off => {
                return Err(ConfigError::invalid(
                    "node.relay.service.acl.hook",
                    "asks a decision hook but acl.hook_command is empty; `relay serve` \
                     answers the hook by running that program",
                ));
            }
            (_, Some(program)) if program.is_empty() => {
                return Err(ConfigError::invalid(
                    "node.relay.service.acl.hook_command",
                    "names an empty program",
                ));
            }
            _ => {}
        }
        if service
            .asn_table
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid(
                "node.relay.service.asn_table",
                "is an empty path; remove the field to run without an ASN table",
            ));
        }
        Ok(())
    }

    fn validate_auto_relay(&self) -> Result<(), ConfigError> {
        let auto = &self.node.relay.auto_relay;
        for (i, addr) in auto.static_relay_peers.iter().enumerate() {
            if peer_of(addr).is_none() {
                return Err(ConfigError::invalid(
                    format!("node.relay.auto_relay.static_relay_peers[{i}]"),
                    format_args!("{addr} must end with /p2p/<relay peer id>"),
                ));
            }
        }
        at_least_one(
            "node.relay.auto_relay.max_relay_peers",
            auto.max_relay_peers.into(),
        )?;
        if auto.min_relay_peers > auto.max_relay_peers {
            return Err(ConfigError::invalid(
                "node.relay.auto_relay.min_relay_peers",
                format_args!(
                    "{} is greater than max_relay_peers ({})",
                    auto.min_relay_peers, auto.max_relay_peers
                ),
            ));
        }
        share(
            "node.relay.auto_relay.quality_threshold",
            auto.quality_threshold,
        )?;
        positive(
            "node.relay.auto_relay.refresh_interval",
            auto.refresh_interval,
        )?;
        positive(
            "node.relay.auto_relay.peer_source_timeout",
            auto.peer_source_timeout,
        )?;
        positive(
            "node.relay.auto_relay.discovery_timeout",
            auto.discovery_timeout,
        )?;
        if auto.enabled && !auto.enable_dynamic && auto.static_relay_peers.is_empty() {
            return Err(ConfigError::invalid(
                "node.relay.auto_relay",
                "is enabled with enable_dynamic false and no static_relay_peers: \
                 it has no relay to choose from",
            ));
        }
        Ok(())
    }

    fn validate_hole_punch(&self) -> Result<(), ConfigError> {
        let punch = &self.node.relay.hole_punch;
        at_least_one(
            "node.relay.hole_punch.max_attempts",
            punch.max_attempts.into(),
        )?;
        at_least_one(
            "node.relay.hole_punch.direct_dial_attempts",
            punch.direct_dial_attempts.into(),
        )?;
        at_least_one(
            "node.relay.hole_punch.concurrent_limit",
            punch.concurrent_limit.into(),
        )?;
        positive(
            "node.relay.hole_punch.attempt_timeout",
            punch.attempt_timeout,
        )?;
        positive("node.relay.hole_punch.sync_timeout", punch.sync_timeout)
    }

    fn validate_monitoring(&self) -> Result<(), ConfigError> {
        let monitoring = &self.node.relay.monitoring;
        positive(
            "node.relay.monitoring.metrics_interval",
            monitoring.metrics_interval,
        )?;
        share(
            "node.relay.monitoring.circuit_limit_threshold",
            monitoring.circuit_limit_threshold,
        )?;
        share(
            "node.relay.monitoring.bandwidth_limit_threshold",
            monitoring.bandwidth_limit_threshold,
        )?;
        share(
            "node.relay.monitoring.error_rate_threshold",
            monitoring.error_rate_threshold,
        )?;
        if let Some(addr) = &monitoring.metrics_listen {
            check_host_port(addr)
                .map_err(|m| ConfigError::invalid("node.relay.monitoring.metrics_listen", m))?;
        }
        Ok(())
    }
}

/// Checks that `addr` has the form `HOST:PORT` (`127.0.0.1:9090`, `[::1]:9090`,
/// `localhost:9090`).
pub(crate) fn check_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is not HOST:PORT, e.g. 127.0.0.1:9090"));
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("{addr:?} has no host; write e.g. 127.0.0.1:9090"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("{addr:?} has no valid port (0-65535)"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(format!(
            "{addr:?}: write an IPv6 host in brackets, e.g. [::1]:9090"
        ));
    }
    Ok(())
}

/// The field's path of a [`relay_proto::hop::ConfigError`], as an [`ConfigError::Invalid`].
pub(super) fn relay_error(error: relay_proto::hop::ConfigError) -> ConfigError {
    use relay_proto::hop::ConfigError as E;
    match error {
        E::ZeroReservationTtl => {
            ConfigError::invalid("node.relay.service.reservation_ttl", "must not be zero")
        }
        E::Ipv6PrefixTooLong(n) => ConfigError::invalid(
            "node.relay.service.ipv6_prefix_len",
            format_args!("{n} is above 128"),
        ),
        E::TooLong(name) => {
            let field = match name {
                "hop_timeout" | "stream_timeout" => format!("node.relay.transport.{name}"),
                _ => match name.strip_prefix("rate.") {
                    Some(rate) => format!("node.relay.service.rate_limits.{rate}"),
                    None => format!("node.relay.service.{name}"),
                },
            };
            ConfigError::invalid(field, "is longer than one year")
        }
    }
}

fn at_least_one(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(field, "must be at least 1"));
    }
    Ok(())
}

fn positive(field: &str, value: GoDuration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(
            field,
            "must be longer than zero, e.g. \"30s\"",
        ));
    }
    at_most_a_year(field, value)
}

fn at_most_a_year(field: &str, value: GoDuration) -> Result<(), ConfigError> {
    let value: Duration = value.into();
    if value > MAX_DURATION {
        return Err(ConfigError::invalid(
            field,
            format_args!("{} is longer than one year", GoDuration(value)),
        ));
    }
    Ok(())
}

fn share(field: &str, value: f64) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(ConfigError::invalid(
            field,
            format_args!("{value} is not a share from 0 to 1"),
        ));
    }
    Ok(())
}
