//! The hole-punching oracle: from two NAT chains and a transport, whether a direct
//! connection can be established by DCUtR-style simultaneous dialing.
//!
//! # The experiment it predicts
//!
//! Peers A and B sit behind chains of NATs (innermost first; an empty chain is a
//! public host). Each opens a connection to a public relay from its punch port `pX`
//! and learns its observed address `OX` (what the relay sees). Then, at the same
//! instant, each dials the other's observed address from `pX`:
//! - TCP: both `connect(pX -> O_other)` while listening on `pX` (SO_REUSEPORT).
//! - QUIC: A (the dialer) sends Initials to `OB`; B sends punch datagrams to `OA` and,
//!   as QUIC server, answers an Initial at its source address. A's QUIC client only
//!   accepts packets from `OB`, the address it dialed.
//!
//! # Assumptions
//!
//! - Each NAT has one external address and chains are disjoint (no shared NAT, so no
//!   hairpinning). The relay's address is neither peer's.
//! - Each peer's first packet leaves its own chain before the other's first packet
//!   arrives there: the LAN side of a chain is faster than the Internet between the
//!   peers. Retransmissions repeat the same race with the same outcome.
//! - Mappings made towards the relay are alive during the punch.
//!
//! # Derivation
//!
//! Write `X'` for the external endpoint (after X's whole chain) of X's punch flow
//! `pX -> O_other`.
//!
//! 1. **Stable**: `X' == OX` iff every NAT of X's chain maps endpoint-independently. The
//!    relay flow and the punch flow have different destination addresses, so any
//!    address-dependent or address-and-port-dependent NAT gives the punch flow a
//!    mapping of its own, and every NAT above it sees a new internal endpoint, hence a
//!    new mapping too. ADM and APDM do not differ here. (RFC 4787 section 4.1.)
//! 2. **Admits**: a packet from source `S` to `OX` (the peer dials the observed address)
//!    travels X's chain outside-in through the relay flow's mappings. An inbound
//!    packet keeps its source, so each NAT filters on `S` itself (RFC 4787 section 5).
//!    The relay-flow mapping of NAT `i` is also the punch flow's mapping iff NATs
//!    `1..=i` (counted from the inside) are all endpoint-independent; only then did X's
//!    own punch packet, which left first, add `O_other` to that mapping's filter.
//!    `S` always has `O_other`'s address; it has its port iff the other side is
//!    stable. So NAT `i` lets the packet through iff it filters
//!    endpoint-independently, or its mapping is shared and it filters by address, or
//!    its mapping is shared, it filters by address and port, and `S == O_other`.
//! 3. **TCP** (a kernel: a segment goes to the connection with its exact 4-tuple, else
//!    a SYN goes to the listener; a SYN-ACK or ACK from an unknown endpoint is answered
//!    with RST):
//!    - Both stable: each SYN comes from the address the other dialed and finds every
//!      filter open (rule 2 with `S == O_other` and all mappings shared). The SYNs
//!      cross: simultaneous open, both sides report `Connected`.
//!    - Neither stable: every packet from B comes from a `B'` or `B''`, never from `OB`,
//!      so A's dialing connection never hears from its peer; a SYN reaching A's
//!      listener makes a connection whose SYN-ACK, if it reaches B at all, meets a
//!      connection expecting another ISN (or a listener, which resets a SYN-ACK). No
//!      handshake completes.
//!    - A stable, B not (and symmetrically): B's SYN comes from `B'`; if A admits it
//!      (rule 2 with `S != OB`), A's listener accepts and answers from `OA`, which B's
//!      punch mapping was opened for; B's dialing connection gets the SYN-ACK it expects:
//!      A reports `Accepted`, B `Connected`. If A does not admit it, nothing from B ever
//!      reaches A's sockets. If A admits it *and* B admits A's SYN (possible only when
//!      B's non-EIM NATs filter endpoint-independently), both handshakes run at once
//!      with four different ISNs and RSTs race each other: the outcome depends on
//!      timing and the oracle says [`Verdict::Undetermined`]. (Simultaneous and
//!      lossless, the handshakes reset each other; when the stable side's SYN is lost,
//!      its listener's handshake completes alone and the punch succeeds.)
//! 4. **QUIC**: A's client accepts only packets from `OB`, and B answers from the punch
//!    flow's mapping `B'`, so B must be stable. A's Initial, from `A'`, must then pass
//!    B's chain (rule 2 with `S == OA` iff A is stable); B's answer to `A'` comes from
//!    `OB`, which A's punch mapping sent to, so it passes A's chain.
//!
//! Consequences for the presets: every pair of cone NATs (full, restricted, port
//! restricted, Linux) and public hosts connects by simultaneous open; symmetric with
//! symmetric never connects; symmetric against full cone, restricted cone or public
//! connects over TCP with the cone side accepting, and fails against port-restricted
//! cone and Linux (address-and-port-dependent filtering); over QUIC a symmetric dialer
//! A succeeds against a full or restricted cone B, and a symmetric B never succeeds.

use crate::nat::{FilteringBehavior, MappingBehavior, NatConfig};

/// The transport used for the direct connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// TCP simultaneous open, both sides listening on their punch port.
    Tcp,
    /// QUIC over UDP: A dials, B sends punch packets and answers as server.
    Quic,
}

/// One of the two peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The peer that dials (DCUtR's A).
    A,
    /// The peer behind the relay that starts the upgrade (DCUtR's B).
    B,
}

/// How one side's TCP connection came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Opened {
    /// By its own connect (plain or simultaneous open).
    Dialed,
    /// By its listener.
    Accepted,
}

/// The direct connection that forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DirectPath {
    /// A TCP connection; how each side opened it.
    Tcp {
        /// A's side.
        a: Opened,
        /// B's side.
        b: Opened,
    },
    /// A QUIC connection, A the client.
    Quic,
}

/// The oracle's prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// A direct connection forms, this way.
    Direct(DirectPath),
    /// No direct connection can form.
    NoDirect,
    /// The outcome depends on timing (see the module docs, rule 3).
    Undetermined,
}

impl Verdict {
    /// Whether a direct connection is predicted (`None` if undetermined).
    pub fn is_direct(self) -> Option<bool> {
        match self {
            Verdict::Direct(_) => Some(true),
            Verdict::NoDirect => Some(false),
            Verdict::Undetermined => None,
        }
    }
}

/// What matters about one side's chain for hole punching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Every NAT maps endpoint-independently: the punch flow leaves from the observed
    /// address (rule 1).
    pub stable: bool,
    /// A packet to the observed address from the peer's observed address passes
    /// (rule 2, exact source).
    pub admits_observed_peer: bool,
    /// A packet to the observed address from another port of the peer's address
    /// passes (rule 2, same address only).
    pub admits_other_peer_port: bool,
}

impl Profile {
    /// The profile of a chain, innermost NAT first (empty: a public host).
    pub fn of(chain: &[NatConfig]) -> Self {
        Self {
            stable: chain
                .iter()
                .all(|n| n.mapping == MappingBehavior::EndpointIndependent),
            admits_observed_peer: admits(chain, true),
            admits_other_peer_port: admits(chain, false),
        }
    }

    fn admits(self, exact_source: bool) -> bool {
        if exact_source {
            self.admits_observed_peer
        } else {
            self.admits_other_peer_port
        }
    }
}

/// Rule 2: does a packet from the peer reach this side's host at its observed address?
fn admits(chain: &[NatConfig], exact_source: bool) -> bool {
    let mut shared = true;
    chain.iter().all(|nat| {
        shared &= nat.mapping == MappingBehavior::EndpointIndependent;
        match nat.filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => shared,
            FilteringBehavior::AddressAndPortDependent => shared && exact_source,
        }
    })
}

/// Predicts the punch between A behind `a` and B behind `b` (chains innermost first).
pub fn predict(a: &[NatConfig], b: &[NatConfig], transport: Transport) -> Verdict {
    let (pa, pb) = (Profile::of(a), Profile::of(b));
    match transport {
        Transport::Tcp => predict_tcp(pa, pb),
        Transport::Quic => {
            if pb.stable && pb.admits(pa.stable) {
                Verdict::Direct(DirectPath::Quic)
            } else {
                Verdict::NoDirect
            }
        }
    }
}

/// Predicts the hole punch as DCUtR runs it in relay-proto's node, over the path
/// [`predict`] finds.
///
/// DCUtR fixes the security roles of a TCP punch: A is the client (Noise initiator), B
/// the server, whatever the socket says. The node gives a connection its listener
/// accepts that role only if it comes from an address the peer announced in its
/// CONNECT (its observed address); any other inbound connection is an ordinary one, in
/// the server role. So where [`predict`] has A's listener accept B's SYN (B's NAT maps
/// the punch flow anew, so the SYN comes from another port than B announced), both ends
/// run the handshake as servers and no direct connection forms. The other paths are
/// unchanged: in a simultaneous open both sides dialed, and where B accepts, B is the
/// server DCUtR wants.
///
/// Before any exchange B dials A's public listen addresses, if A has some, as an
/// ordinary dial: a public A (empty chain) is always reached that way, A accepting.
/// QUIC is not run by the node; its prediction is [`predict`]'s.
pub fn predict_dcutr(a: &[NatConfig], b: &[NatConfig], transport: Transport) -> Verdict {
    if a.is_empty() && transport == Transport::Tcp {
        return Verdict::Direct(DirectPath::Tcp {
            a: Opened::Accepted,
            b: Opened::Dialed,
        });
    }
    match predict(a, b, transport) {
        Verdict::Direct(DirectPath::Tcp {
            a: Opened::Accepted,
            ..
        }) => Verdict::NoDirect,
        v => v,
    }
}

fn predict_tcp(pa: Profile, pb: Profile) -> Verdict {
    let dialed_both = DirectPath::Tcp {
        a: Opened::Dialed,
        b: Opened::Dialed,
    };
    match (pa.stable, pb.stable) {
        (true, true) => Verdict::Direct(dialed_both),
        (false, false) => Verdict::NoDirect,
        (true, false) => one_stable(
            pa,
            pb,
            DirectPath::Tcp {
                a: Opened::Accepted,
                b: Opened::Dialed,
            },
        ),
        (false, true) => one_stable(
            pb,
            pa,
            DirectPath::Tcp {
                a: Opened::Dialed,
                b: Opened::Accepted,
            },
        ),
    }
}

/// Rule 3 with one stable side: the stable side accepts the other's SYN, unless the
/// other side also admits the stable side's SYN, which makes it a race.
fn one_stable(stable: Profile, moving: Profile, path: DirectPath) -> Verdict {
    let stable_admits = stable.admits(false);
    let moving_admits = moving.admits(true);
    match (stable_admits, moving_admits) {
        (true, false) => Verdict::Direct(path),
        (false, _) => Verdict::NoDirect,
        (true, true) => Verdict::Undetermined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::NatPreset;

    fn tcp(a: NatPreset, b: NatPreset) -> Verdict {
        predict(&[a.config()], &[b.config()], Transport::Tcp)
    }

    #[test]
    fn cones_punch_by_simultaneous_open() {
        let cones = [
            NatPreset::FullCone,
            NatPreset::RestrictedCone,
            NatPreset::PortRestrictedCone,
            NatPreset::LinuxDefault,
        ];
        for a in cones {
            for b in cones {
                assert_eq!(
                    tcp(a, b),
                    Verdict::Direct(DirectPath::Tcp {
                        a: Opened::Dialed,
                        b: Opened::Dialed
                    })
                );
            }
        }
    }

    #[test]
    fn symmetric_needs_an_address_filter_on_the_other_side() {
        use NatPreset::*;
        let accepted_by_a = Verdict::Direct(DirectPath::Tcp {
            a: Opened::Accepted,
            b: Opened::Dialed,
        });
        assert_eq!(tcp(FullCone, Symmetric), accepted_by_a);
        assert_eq!(tcp(RestrictedCone, Symmetric), accepted_by_a);
        assert_eq!(tcp(PortRestrictedCone, Symmetric), Verdict::NoDirect);
        assert_eq!(tcp(LinuxDefault, Symmetric), Verdict::NoDirect);
        assert_eq!(tcp(Symmetric, Symmetric), Verdict::NoDirect);
        assert_eq!(
            predict(&[], &[Symmetric.config()], Transport::Tcp),
            accepted_by_a,
            "a public host accepts"
        );
    }

    #[test]
    fn quic_roles_matter() {
        use NatPreset::*;
        let quic =
            |a: NatPreset, b: NatPreset| predict(&[a.config()], &[b.config()], Transport::Quic);
        assert_eq!(quic(Symmetric, FullCone), Verdict::Direct(DirectPath::Quic));
        assert_eq!(
            quic(Symmetric, RestrictedCone),
            Verdict::Direct(DirectPath::Quic)
        );
        assert_eq!(quic(Symmetric, PortRestrictedCone), Verdict::NoDirect);
        assert_eq!(quic(FullCone, Symmetric), Verdict::NoDirect);
        assert_eq!(
            quic(PortRestrictedCone, LinuxDefault),
            Verdict::Direct(DirectPath::Quic)
        );
    }

    #[test]
    fn dcutr_roles_close_the_path_where_a_accepts() {
        use NatPreset::*;
        let dcutr = |a: NatPreset, b: NatPreset| {
            predict_dcutr(&[a.config()], &[b.config()], Transport::Tcp)
        };
        assert_eq!(dcutr(FullCone, Symmetric), Verdict::NoDirect);
        assert_eq!(dcutr(RestrictedCone, Symmetric), Verdict::NoDirect);
        assert_eq!(
            dcutr(Symmetric, FullCone),
            Verdict::Direct(DirectPath::Tcp {
                a: Opened::Dialed,
                b: Opened::Accepted
            })
        );
        assert_eq!(dcutr(LinuxDefault, FullCone), tcp(LinuxDefault, FullCone));
        assert_eq!(
            predict_dcutr(&[], &[Symmetric.config()], Transport::Tcp),
            Verdict::Direct(DirectPath::Tcp {
                a: Opened::Accepted,
                b: Opened::Dialed
            }),
            "a public A is reached by B's unilateral dial"
        );
    }

    #[test]
    fn chains_compose() {
        use NatPreset::*;
        // An inner EIM NAT with an outer symmetric one is symmetric.
        let chain = [FullCone.config(), Symmetric.config()];
        assert!(!Profile::of(&chain).stable);
        assert_eq!(
            predict(&[FullCone.config()], &chain, Transport::Tcp).is_direct(),
            Some(true)
        );
        assert_eq!(
            predict(&[PortRestrictedCone.config()], &chain, Transport::Tcp),
            Verdict::NoDirect
        );
        // Two cones in a row behave as the stricter cone.
        let cones = [FullCone.config(), PortRestrictedCone.config()];
        let p = Profile::of(&cones);
        assert!(p.stable && p.admits_observed_peer && !p.admits_other_peer_port);
        // An inner EIM filter stays open behind an outer APDM with EIF: the inner
        // mapping is shared with the punch flow.
        let open_outer = NatConfig {
            filtering: FilteringBehavior::EndpointIndependent,
            ..NatConfig::symmetric()
        };
        let p = Profile::of(&[PortRestrictedCone.config(), open_outer]);
        assert!(!p.stable && p.admits_observed_peer && !p.admits_other_peer_port);
    }
}
