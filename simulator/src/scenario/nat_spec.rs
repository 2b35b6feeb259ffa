//! NAT descriptions of a scenario file turned into [`NatConfig`] chains.

use std::time::Duration;

use super::spec::{Dependence, NatCustom, NatItem, NatSpec, PortsName, SynName};
use crate::nat::{
    FilteringBehavior, InboundSynPolicy, MappingBehavior, NatConfig, NatPreset, PortAllocation,
    PortRange, Timeouts,
};

/// A resolved NAT chain, innermost first (empty: public), and its label for reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// `public`, a preset name, a custom label, or labels joined by `+`.
    pub label: String,
    /// The NATs, innermost first.
    pub nats: Vec<NatConfig>,
}

/// The name of the empty chain.
pub(crate) const PUBLIC: &str = "public";

/// Resolves a NAT description, or says what is wrong with it.
pub fn resolve(spec: &NatSpec) -> Result<Chain, String> {
    match spec {
        NatSpec::One(NatItem::Preset(name)) if name == PUBLIC => Ok(Chain {
            label: PUBLIC.to_owned(),
            nats: Vec::new(),
        }),
        NatSpec::One(item) => {
            let (label, nat) = item_config(item)?;
            Ok(Chain {
                label,
                nats: vec![nat],
            })
        }
        NatSpec::Chain(items) => {
            if items.is_empty() {
                return Err("an empty NAT chain: write `public`".to_owned());
            }
            let mut labels = Vec::new();
            let mut nats = Vec::new();
            for item in items {
                let (label, nat) = item_config(item)?;
                labels.push(label);
                nats.push(nat);
            }
            Ok(Chain {
                label: labels.join("+"),
                nats,
            })
        }
    }
}

/// A preset by name.
pub(crate) fn preset(name: &str) -> Result<NatPreset, String> {
    NatPreset::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = NatPreset::ALL.iter().map(|p| p.name()).collect();
            format!(
                "unknown NAT `{name}`: expected public or one of {}",
                names.join(", ")
            )
        })
}

fn item_config(item: &NatItem) -> Result<(String, NatConfig), String> {
    match item {
        NatItem::Preset(name) if name == PUBLIC => {
            Err("`public` cannot be part of a NAT chain".to_owned())
        }
        NatItem::Preset(name) => Ok((name.clone(), preset(name)?.config())),
        NatItem::Custom(custom) => custom_config(custom),
    }
}

fn custom_config(c: &NatCustom) -> Result<(String, NatConfig), String> {
    let base = match &c.preset {
        Some(name) => preset(name)?.config(),
        None => NatConfig::full_cone(),
    };
    let mut nat = base;
    if let Some(m) = c.mapping {
        nat.mapping = match m {
            Dependence::EndpointIndependent => MappingBehavior::EndpointIndependent,
            Dependence::AddressDependent => MappingBehavior::AddressDependent,
            Dependence::AddressAndPortDependent => MappingBehavior::AddressAndPortDependent,
        };
    }
    if let Some(f) = c.filtering {
        nat.filtering = match f {
            Dependence::EndpointIndependent => FilteringBehavior::EndpointIndependent,
            Dependence::AddressDependent => FilteringBehavior::AddressDependent,
            Dependence::AddressAndPortDependent => FilteringBehavior::AddressAndPortDependent,
        };
    }
    if let Some(p) = c.ports {
        nat.ports = match p {
            PortsName::Preserve => PortAllocation::Preserve,
            PortsName::Sequential => PortAllocation::Sequential,
            PortsName::Random => PortAllocation::Random,
        };
    }
    if let Some([lo, hi]) = c.port_range {
        nat.port_range = PortRange::new(lo, hi);
    }
    if let Some(h) = c.hairpinning {
        nat.hairpinning = h;
    }
    if let Some(s) = c.inbound_syn {
        nat.inbound_syn = match s {
            SynName::Drop => InboundSynPolicy::Drop,
            SynName::Rst => InboundSynPolicy::Rst,
            SynName::Icmp => InboundSynPolicy::Icmp,
        };
    }
    if let Some(t) = &c.timeouts {
        nat.timeouts = Timeouts {
            udp: seconds(t.udp_s, "timeouts.udp_s")?,
            tcp_established: seconds(t.tcp_established_s, "timeouts.tcp_established_s")?,
            tcp_transitory: seconds(t.tcp_transitory_s, "timeouts.tcp_transitory_s")?,
        };
    }
    let label = match &c.name {
        Some(name) => name.clone(),
        None => format!(
            "{}/{}",
            mapping_short(nat.mapping),
            filtering_short(nat.filtering)
        ),
    };
    Ok((label, nat))
}

/// A non-negative, finite number of seconds.
pub(crate) fn seconds(s: f64, what: &str) -> Result<Duration, String> {
    if (0.0..1e10).contains(&s) {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!(
            "{what}: {s} is not a number of seconds between 0 and 1e10"
        ))
    }
}

/// EIM/ADM/APDM, as RFC 4787 abbreviates them, without the M.
fn mapping_short(m: MappingBehavior) -> &'static str {
    match m {
        MappingBehavior::EndpointIndependent => "EI",
        MappingBehavior::AddressDependent => "AD",
        MappingBehavior::AddressAndPortDependent => "APD",
    }
}

/// EIF/ADF/APDF without the F.
fn filtering_short(f: FilteringBehavior) -> &'static str {
    match f {
        FilteringBehavior::EndpointIndependent => "EI",
        FilteringBehavior::AddressDependent => "AD",
        FilteringBehavior::AddressAndPortDependent => "APD",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Chain, String> {
        let spec: NatSpec = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        resolve(&spec)
    }

    #[test]
    fn presets_chains_and_custom() {
        assert_eq!(parse("public").unwrap().nats, vec![]);
        assert_eq!(
            parse("symmetric").unwrap().nats,
            vec![NatConfig::symmetric()]
        );
        let chain = parse("[full_cone, symmetric]").unwrap();
        assert_eq!(chain.label, "full_cone+symmetric");
        assert_eq!(
            chain.nats,
            vec![NatConfig::full_cone(), NatConfig::symmetric()]
        );
        let custom =
            parse("{mapping: address_dependent, filtering: address_dependent, ports: random}")
                .unwrap();
        assert_eq!(custom.label, "AD/AD");
        assert_eq!(custom.nats[0].mapping, MappingBehavior::AddressDependent);
        assert_eq!(custom.nats[0].ports, PortAllocation::Random);
        let linux = parse("{preset: linux_default, inbound_syn: drop, name: quiet}").unwrap();
        assert_eq!(linux.label, "quiet");
        assert_eq!(
            linux.nats[0],
            NatConfig::linux_default().with_inbound_syn(InboundSynPolicy::Drop)
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse("fool_cone").unwrap_err().contains("fool_cone"));
        assert!(parse("[public, symmetric]").is_err());
        assert!(parse("[]").is_err());
        assert!(parse("{mapping: sideways}").is_err());
        assert!(parse("{colour: blue}").is_err());
    }
}
