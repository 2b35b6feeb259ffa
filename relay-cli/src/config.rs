//! The config file of `relay serve`: the seed's YAML schema (`node.relay.transport`,
//! `.service`, `.auto_relay`, `.hole_punch`, `.monitoring`) plus the settings of issue 3
//! (reservation TTL, rate limits, ACL, ASN table, abuse detection), the node's listen
//! addresses and key file, and where to serve metrics.
//!
//! `config/relay.example.yaml` at the top of the repository shows every field with its
//! default and a comment; it is also the [`EXAMPLE_YAML`] this module embeds. Durations
//! are written as Go writes them (`"30s"`, `"1h30m"`, `"500ms"`), see [`duration`].
//! Unknown fields are errors that name the field's path, the file, the line and the
//! column, so a typo never silently falls back to a default.
//!
//! Order of use: [`load`] (or [`FileConfig::serve_default`] without `--config`), then
//! [`FileConfig::apply`] with the command-line flags, then the conversions
//! [`FileConfig::relay_config`], [`FileConfig::asn_table`] (or both at once with
//! [`FileConfig::relay_policy`]) and [`FileConfig::node_config`].
//!
//! This module only reads files; it starts nothing.

// Used by `relay serve` once it is wired; until then only the tests use all of it.

mod auto_relay;
pub(crate) mod duration;
mod schema;
mod text;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_proto::Multiaddr;
use relay_proto::hop::{
    AbuseConfig, AclConfig, AsnParseError, AsnTable, RateLimits, RelayConfig, RelayPolicy,
};

#[allow(unused_imports)] // the module's API, for `relay serve`
pub(crate) use duration::{DurationError, GoDuration, parse_duration};
#[allow(unused_imports)] // the module's API, for `relay serve`
pub(crate) use schema::{
    AbuseSection, AclSection, AutoRelaySection, FileConfig, HolePunchSection, HookSetting,
    MonitoringSection, NodeSection, RateLimitsSection, RateSection, RelaySection, SelectionPolicy,
    ServiceSection, TransportSection,
};

/// The example config: every field, its default, and a comment. `relay serve` without
/// `--config` runs with the same values ([`FileConfig::serve_default`]).
#[allow(dead_code)] // read by the tests, which hold it equal to the embedded default
pub(crate) const EXAMPLE_YAML: &str = include_str!("../../config/relay.example.yaml");

/// Largest config file read, so that a wrong path (a device, a huge log) fails quickly.
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Largest ASN table read; the full iptoasn.com combined table is about 30 MB.
pub(crate) const MAX_ASN_TABLE_BYTES: u64 = 512 << 20;

/// Why a config cannot be used. The message names the file, the line and column or the
/// field's path, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The text is not YAML, or does not follow the schema (unknown field, wrong type,
    /// bad duration, bad multiaddr, ...).
    #[error("{origin}{}: {message}", Location(*line, *column))]
    Syntax {
        /// The file, or `<embedded>` and the like for text that is not a file.
        origin: String,
        /// The 1-based line of the problem, when known.
        line: Option<usize>,
        /// The 1-based column of the problem, when known.
        column: Option<usize>,
        /// What is wrong, with the field's path.
        message: String,
    },
    /// A value is out of its range or inconsistent with another.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, such as `node.relay.auto_relay.min_relay_peers`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The ASN table file could not be read.
    #[error("node.relay.service.asn_table: cannot read {}: {error}", path.display())]
    AsnRead {
        /// The table file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A line of the ASN table is malformed.
    #[error("node.relay.service.asn_table: {}: {error}", path.display())]
    AsnParse {
        /// The table file.
        path: PathBuf,
        /// The line and what is wrong with it.
        error: AsnParseError,
    },
    /// A problem found in a file after it was parsed.
    #[error("{}: {error}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The problem.
        error: Box<ConfigError>,
    },
}

/// `:LINE:COLUMN`, or nothing when the location is unknown.
struct Location(Option<usize>, Option<usize>);

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}"),
            (Some(line), None) => write!(f, ":{line}"),
            _ => Ok(()),
        }
    }
}

impl ConfigError {
    /// An [`Invalid`](Self::Invalid) error.
    pub(crate) fn invalid(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.to_string(),
        }
    }

    fn in_file(self, path: &Path) -> Self {
        match self {
            Self::Syntax { .. } | Self::Read { .. } | Self::InFile { .. } => self,
            other => Self::InFile {
                path: path.to_owned(),
                error: Box::new(other),
            },
        }
    }
}

/// Command-line flags of `relay serve` that override the file (CONTRACT.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServeOverrides {
    /// `--listen MULTIADDR`, repeated; when not empty it replaces `node.listen`.
    pub(crate) listen: Vec<Multiaddr>,
    /// `--key FILE`: replaces `node.key_file`.
    pub(crate) key_file: Option<PathBuf>,
    /// `--max-reservations N`.
    pub(crate) max_reservations: Option<u32>,
    /// `--max-reservations-per-peer N`.
    pub(crate) max_reservations_per_peer: Option<u32>,
    /// `--max-circuits N`.
    pub(crate) max_circuits: Option<u32>,
    /// `--max-circuit-bytes B`.
    pub(crate) max_circuit_bytes: Option<u64>,
    /// `--max-circuit-duration SECONDS`.
    pub(crate) max_circuit_duration: Option<Duration>,
    /// `--unlimited`: lift every limit of the relay service (see [`FileConfig::apply`]).
    pub(crate) unlimited: bool,
    /// `--metrics HOST:PORT`: serve metrics there (and turn `enable_metrics` on).
    pub(crate) metrics: Option<String>,
}

/// Reads, parses and validates a config file.
///
/// Relative `node.key_file`, `node.relay.service.asn_table` and hook program
/// (`acl.hook_command`) paths are made relative to the file's directory. Errors name the file and, for syntax errors, the line and
/// column.
pub(crate) fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let read_error = |error| ConfigError::Read {
        path: path.to_owned(),
        error,
    };
    let text = read_bounded(path, MAX_CONFIG_BYTES).map_err(read_error)?;
    let mut config = FileConfig::parse(&text, &path.display().to_string())?;
    if let Some(dir) = path.parent() {
        config.resolve_relative_paths(dir);
    }
    config.validate().map_err(|e| e.in_file(path))?;
    Ok(config)
}

/// Reads a UTF-8 file of at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(text)
}

impl FileConfig {
    /// The config of `relay serve` without `--config`: the seed's defaults with the relay
    /// service enabled. [`EXAMPLE_YAML`] spells out the same values.
    pub(crate) fn serve_default() -> Self {
        let mut config = Self::default();
        config.node.relay.service.enabled = true;
        config
    }

    /// Parses YAML text without validating it; `origin` names it in errors (a path, or
    /// something like `<embedded>`). An empty document gives the defaults; so does a
    /// section left empty (`auto_relay:` with nothing under it).
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        match serde_yaml::from_str::<Option<Self>>(text) {
            Ok(config) => Ok(config.unwrap_or_default()),
            Err(error) => Err(syntax_error(origin, &error)),
        }
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    #[allow(dead_code)] // part of the config API; used by tests and embedders
    pub(crate) fn from_yaml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config = Self::parse(text, origin)?;
        config
            .validate()
            .map_err(|e| e.in_file(Path::new(origin)))?;
        Ok(config)
    }

    /// The config as YAML, every field written (for showing the effective config).
    #[allow(dead_code)] // part of the config API; used by tests and embedders
    pub(crate) fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml::to_string(self).map_err(|e| ConfigError::invalid("node", e))
    }

    /// Applies the command-line flags of `relay serve` on top of the file.
    ///
    /// `unlimited` is applied first and lifts every limit of the relay service: data and
    /// duration of circuits, circuit counts (total and per peer), reservation counts
    /// (total, per peer, per IP, per ASN), request rate limits and abuse bans. The access
    /// control lists stay. Explicit limit flags are applied after it, so
    /// `--unlimited --max-circuits 10` limits circuits only. Call
    /// [`validate`](Self::validate) (or a conversion, which validates) afterwards.
    pub(crate) fn apply(&mut self, overrides: ServeOverrides) {
        let node = &mut self.node;
        if !overrides.listen.is_empty() {
            node.listen = overrides.listen;
        }
        if let Some(key) = overrides.key_file {
            node.key_file = Some(key);
        }
        let transport = &mut node.relay.transport;
        let service = &mut node.relay.service;
        if overrides.unlimited {
            service.max_circuit_bytes = 0;
            service.max_circuit_duration = GoDuration::ZERO;
            service.max_circuits = 0;
            transport.max_circuits_per_peer = 0;
            service.max_reservations = 0;
            service.max_reservations_per_peer = 0;
            service.max_reservations_per_ip = 0;
            service.max_reservations_per_asn = 0;
            let rate = &mut service.rate_limits;
            rate.reservations_per_peer = RateSection::OFF;
            rate.reservations_per_ip = RateSection::OFF;
            rate.circuits_per_peer = RateSection::OFF;
            rate.circuits_per_ip = RateSection::OFF;
            service.abuse.ban = GoDuration::ZERO;
        }
        if let Some(n) = overrides.max_reservations {
            service.max_reservations = n;
        }
        if let Some(n) = overrides.max_reservations_per_peer {
            service.max_reservations_per_peer = n;
        }
        if let Some(n) = overrides.max_circuits {
            service.max_circuits = n;
        }
        if let Some(b) = overrides.max_circuit_bytes {
            service.max_circuit_bytes = b;
        }
        if let Some(d) = overrides.max_circuit_duration {
            service.max_circuit_duration = d.into();
        }
        if let Some(addr) = overrides.metrics {
            let monitoring = &mut node.relay.monitoring;
            monitoring.metrics_listen = Some(addr);
            monitoring.enable_metrics = true;
        }
    }

    /// Where to serve metrics: `metrics_listen` when `enable_metrics` is on.
    pub(crate) fn metrics_listen(&self) -> Option<&str> {
        let monitoring = &self.node.relay.monitoring;
        monitoring
            .metrics_listen
            .as_deref()
            .filter(|_| monitoring.enable_metrics)
    }

    /// The relay server's settings (`node.relay.service` and `.transport`), validated.
    ///
    /// The ASN table is not part of [`RelayConfig`]: load it with
    /// [`asn_table`](Self::asn_table), or build the whole policy with
    /// [`relay_policy`](Self::relay_policy).
    pub(crate) fn relay_config(&self) -> Result<RelayConfig, ConfigError> {
        self.validate()?;
        Ok(self.relay_config_unchecked())
    }

    /// The ASN table named by `node.relay.service.asn_table`, read and parsed; `None`
    /// when none is configured. A malformed line is reported with its line number.
    pub(crate) fn asn_table(&self) -> Result<Option<AsnTable>, ConfigError> {
        let Some(path) = &self.node.relay.service.asn_table else {
            return Ok(None);
        };
        let text =
            read_bounded(path, MAX_ASN_TABLE_BYTES).map_err(|error| ConfigError::AsnRead {
                path: path.clone(),
                error,
            })?;
        AsnTable::parse(&text)
            .map(Some)
            .map_err(|error| ConfigError::AsnParse {
                path: path.clone(),
                error,
            })
    }

    /// The relay server's admission policy: [`relay_config`](Self::relay_config) with
    /// the ASN table loaded.
    #[allow(dead_code)] // part of the config API; used by tests and embedders
    pub(crate) fn relay_policy(&self) -> Result<RelayPolicy, ConfigError> {
        let config = self.relay_config()?;
        let table = self.asn_table()?;
        let policy = RelayPolicy::new(config).map_err(validate::relay_error)?;
        Ok(match table {
            Some(table) => policy.with_asn_table(table),
            None => policy,
        })
    }

    /// The node's settings that the file sets: connection limit, upgrade timeout, streams
    /// per connection, ping interval and timeout. Everything else keeps relay-proto's
    /// defaults.
    pub(crate) fn node_config(&self) -> relay_proto::node::Config {
        let node = &self.node;
        let defaults = relay_proto::node::Config::default();
        let mut connection = defaults.connection.clone();
        connection.upgrade_timeout = node.upgrade_timeout.get();
        connection.yamux.max_streams = node.max_streams;
        relay_proto::node::Config {
            connection,
            ping: relay_proto::ping::PingConfig {
                interval: (!node.ping_interval.is_zero()).then(|| node.ping_interval.get()),
                timeout: node.ping_timeout.get(),
            },
            max_connections: node.max_connections,
            hole_punch: self.hole_punch_config(),
            ..defaults
        }
    }

    /// [`HolePunchConfig`](relay_proto::dcutr::HolePunchConfig) from
    /// `node.relay.hole_punch`; the fields the seed does not name keep their defaults.
    pub(crate) fn hole_punch_config(&self) -> relay_proto::dcutr::HolePunchConfig {
        let section = &self.node.relay.hole_punch;
        relay_proto::dcutr::HolePunchConfig {
            enabled: section.enabled,
            max_attempts: section.max_attempts,
            attempt_timeout: section.attempt_timeout.get(),
            direct_dial_attempts: section.direct_dial_attempts,
            sync_timeout: section.sync_timeout.get(),
            enable_tcp_hole_punch: section.enable_tcp_hole_punch,
            enable_dcutr: section.enable_dcutr,
            concurrent_limit: section.concurrent_limit,
            allow_private_addrs: section.allow_private_addrs,
            allow_loopback_addrs: section.allow_loopback_addrs,
            relayed_close_grace: section.relayed_close_grace.get(),
            ..Default::default()
        }
    }

    /// [`RelayConfig`] from the sections, without validation.
    fn relay_config_unchecked(&self) -> RelayConfig {
        let transport = &self.node.relay.transport;
        let service = &self.node.relay.service;
        let rate = &service.rate_limits;
        let acl = &service.acl;
        RelayConfig {
            max_circuits: service.max_circuits,
            max_circuit_duration: service.max_circuit_duration.get(),
            max_circuit_bytes: service.max_circuit_bytes,
            max_reservations: service.max_reservations,
            max_reservations_per_peer: service.max_reservations_per_peer,
            max_reservations_per_ip: service.max_reservations_per_ip,
            max_reservations_per_asn: service.max_reservations_per_asn,
            buffer_size: service.buffer_size,
            max_buffer_time: service.max_buffer_time.get(),
            hop_timeout: transport.hop_timeout.get(),
            max_circuits_per_peer: transport.max_circuits_per_peer,
            stream_timeout: transport.stream_timeout.get(),
            max_message_size: transport.max_message_size,
            reservation_ttl: service.reservation_ttl.get(),
            ipv6_prefix_len: service.ipv6_prefix_len,
            rate: RateLimits {
                reservations_per_peer: rate.reservations_per_peer.into(),
                reservations_per_ip: rate.reservations_per_ip.into(),
                circuits_per_peer: rate.circuits_per_peer.into(),
                circuits_per_ip: rate.circuits_per_ip.into(),
                max_tracked_keys: rate.max_tracked_keys,
            },
            acl: AclConfig {
                allow_peers: acl.allow_peers.clone(),
                deny_peers: acl.deny_peers.clone(),
                allow_cidrs: acl.allow_cidrs.clone(),
                deny_cidrs: acl.deny_cidrs.clone(),
                hook: acl.hook.into(),
            },
            abuse: AbuseConfig {
                refusals: service.abuse.refusals.into(),
                ban: service.abuse.ban.get(),
            },
            max_pending_asks: service.max_pending_asks,
        }
    }

    /// Makes relative file paths in the config relative to `dir`.
    fn resolve_relative_paths(&mut self, dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        if let Some(key) = &mut self.node.key_file {
            resolve(key);
        }
        if let Some(table) = &mut self.node.relay.service.asn_table {
            resolve(table);
        }
        // A hook program given as a relative path (`./acl-hook.sh`, `hooks/acl`) lives
        // beside the file; a bare name (`relay-acl`) is looked up on PATH.
        if let Some(program) = self.node.relay.service.acl.hook_command.first_mut() {
            let path = Path::new(program.as_str());
            if path.is_relative() && path.components().count() > 1 {
                *program = dir.join(path).display().to_string();
            }
        }
    }
}

/// A [`ConfigError::Syntax`] from serde_yaml's error, its location split out.
fn syntax_error(origin: &str, error: &serde_yaml::Error) -> ConfigError {
    let location = error.location();
    let line = location.as_ref().map(serde_yaml::Location::line);
    let column = location.as_ref().map(serde_yaml::Location::column);
    let mut message = error.to_string();
    if let (Some(line), Some(column)) = (line, column) {
        // The location is in front of the message already.
        message = message.replace(&format!(" at line {line} column {column}"), "");
    }
    ConfigError::Syntax {
        origin: origin.to_owned(),
        line,
        column,
        message,
    }
}
