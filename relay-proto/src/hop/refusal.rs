//! Why the relay refused a request: the circuit v2 status code to send, and the detail
//! (which rule or limit) for logs, metrics and events.

use std::net::IpAddr;

use crate::identity::PeerId;

use super::abuse::AbuseKey;
use super::ip::IpKey;

/// A refused RESERVE or CONNECT, one variant per circuit v2 status code it is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// `RESERVATION_REFUSED` (200): a reservation refused for lack of resources.
    #[error("reservation refused: {0}")]
    ReservationRefused(RefusalReason),
    /// `RESOURCE_LIMIT_EXCEEDED` (201): a circuit refused for lack of resources.
    #[error("resource limit exceeded: {0}")]
    ResourceLimitExceeded(RefusalReason),
    /// `PERMISSION_DENIED` (202): refused by the access control, the decision hook or a ban.
    #[error("permission denied: {0}")]
    PermissionDenied(RefusalReason),
    /// `NO_RESERVATION` (204): the target of a CONNECT holds no live reservation.
    #[error("no reservation for target {0}")]
    NoReservation(PeerId),
}

/// The circuit v2 `Status` code of `RESERVATION_REFUSED`.
pub const RESERVATION_REFUSED: u32 = 200;
/// The circuit v2 `Status` code of `RESOURCE_LIMIT_EXCEEDED`.
pub const RESOURCE_LIMIT_EXCEEDED: u32 = 201;
/// The circuit v2 `Status` code of `PERMISSION_DENIED`.
pub const PERMISSION_DENIED: u32 = 202;
/// The circuit v2 `Status` code of `NO_RESERVATION`.
pub const NO_RESERVATION: u32 = 204;

impl Refusal {
    /// The circuit v2 `Status` code to answer with.
    pub fn status_code(&self) -> u32 {
        match self {
            Self::ReservationRefused(_) => RESERVATION_REFUSED,
            Self::ResourceLimitExceeded(_) => RESOURCE_LIMIT_EXCEEDED,
            Self::PermissionDenied(_) => PERMISSION_DENIED,
            Self::NoReservation(_) => NO_RESERVATION,
        }
    }

    /// Which rule or limit refused the request.
    pub fn reason(&self) -> RefusalReason {
        match *self {
            Self::ReservationRefused(r)
            | Self::ResourceLimitExceeded(r)
            | Self::PermissionDenied(r) => r,
            Self::NoReservation(target) => RefusalReason::NoReservation(target),
        }
    }

    /// The relay service error of the seed this refusal corresponds to.
    pub fn service_error(&self) -> ServiceError {
        self.reason().service_error()
    }
}

/// The rule or limit behind a [`Refusal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum RefusalReason {
    /// The peer is on the deny list.
    #[error("peer {0} is denied")]
    DeniedPeer(PeerId),
    /// An allow list of peers is set and the peer is not on it.
    #[error("peer {0} is not on the allow list")]
    PeerNotAllowed(PeerId),
    /// The peer's IP is in a denied CIDR block.
    #[error("IP {0} is denied")]
    DeniedIp(IpAddr),
    /// An allow list of CIDR blocks is set and the peer's IP is in none of them.
    #[error("IP {0} is not on the allow list")]
    IpNotAllowed(IpAddr),
    /// The runtime's decision hook said no.
    #[error("refused by the decision hook")]
    HookDenied,
    /// The decision hook did not answer within `hop_timeout`.
    #[error("the decision hook did not answer in time")]
    HookTimedOut,
    /// The peer or its IP is banned for abuse.
    #[error("{0} is banned for abuse")]
    Banned(AbuseKey),
    /// `max_reservations` live reservations exist.
    #[error("too many reservations")]
    Reservations,
    /// `max_reservations_per_ip` live reservations come from this IP.
    #[error("too many reservations from IP {0}")]
    ReservationsForIp(IpKey),
    /// `max_reservations_per_asn` live reservations come from this autonomous system.
    #[error("too many reservations from AS{0}")]
    ReservationsForAsn(u32),
    /// `max_circuits` circuits are open.
    #[error("too many circuits")]
    Circuits,
    /// The peer (initiator or target) takes part in `max_circuits_per_peer` circuits.
    #[error("too many circuits for peer {0}")]
    CircuitsForPeer(PeerId),
    /// The peer's token bucket for this kind of request is empty.
    #[error("peer {0} is rate limited")]
    PeerRateLimited(PeerId),
    /// The IP's token bucket for this kind of request is empty.
    #[error("IP {0} is rate limited")]
    IpRateLimited(IpKey),
    /// `max_pending_asks` requests already await the decision hook.
    #[error("too many requests await the decision hook")]
    PendingAsks,
    /// The peer already has its quota of requests awaiting the decision hook.
    #[error("peer {0} has too many requests awaiting the decision hook")]
    PendingAsksForPeer(PeerId),
    /// The target of a CONNECT holds no live reservation.
    #[error("no reservation for target {0}")]
    NoReservation(PeerId),
}

impl RefusalReason {
    /// The relay service error of the seed this reason corresponds to.
    pub fn service_error(&self) -> ServiceError {
        match self {
            Self::DeniedPeer(_)
            | Self::PeerNotAllowed(_)
            | Self::DeniedIp(_)
            | Self::IpNotAllowed(_)
            | Self::HookDenied
            | Self::Banned(_) => ServiceError::PermissionDenied,
            Self::Circuits | Self::CircuitsForPeer(_) => ServiceError::CircuitLimitReached,
            Self::NoReservation(_) => ServiceError::InvalidReservation,
            Self::HookTimedOut
            | Self::Reservations
            | Self::ReservationsForIp(_)
            | Self::ReservationsForAsn(_)
            | Self::PeerRateLimited(_)
            | Self::IpRateLimited(_)
            | Self::PendingAsks
            | Self::PendingAsksForPeer(_) => ServiceError::ResourceLimitExceeded,
        }
    }

    /// Whether this refusal says something about the requester's behaviour, and so counts
    /// towards an abuse ban. Refusals caused by the relay being full, by the hook being
    /// slow, by a ban already in force, or by the target's own load do not.
    pub(crate) fn blames(&self, requester: PeerId) -> bool {
        match self {
            Self::Reservations | Self::Circuits | Self::PendingAsks | Self::HookTimedOut => false,
            Self::Banned(_) => false,
            Self::CircuitsForPeer(peer) => *peer == requester,
            _ => true,
        }
    }

    /// Whether this is a rate-limit or ban refusal, which floods produce by the thousand
    /// and which are therefore logged at DEBUG rather than INFO.
    pub(crate) fn is_noisy(&self) -> bool {
        matches!(
            self,
            Self::PeerRateLimited(_) | Self::IpRateLimited(_) | Self::Banned(_)
        )
    }
}

/// The seed's relay service errors (`ErrResourceLimitExceeded`, ...) that refusals map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ServiceError {
    /// A resource quota or rate was exceeded (`ErrResourceLimitExceeded`).
    #[error("resource limit exceeded")]
    ResourceLimitExceeded,
    /// The circuit limit, global or per peer, was reached (`ErrCircuitLimitReached`).
    #[error("circuit limit reached")]
    CircuitLimitReached,
    /// The target holds no valid reservation (`ErrInvalidReservation`).
    #[error("invalid reservation")]
    InvalidReservation,
    /// The access control, the decision hook or a ban refused the request.
    #[error("permission denied")]
    PermissionDenied,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    #[test]
    fn status_codes_are_the_specs() {
        let p = keypair_from_seed(1).public().to_peer_id();
        assert_eq!(
            Refusal::ReservationRefused(RefusalReason::Reservations).status_code(),
            200
        );
        assert_eq!(
            Refusal::ResourceLimitExceeded(RefusalReason::Circuits).status_code(),
            201
        );
        assert_eq!(
            Refusal::PermissionDenied(RefusalReason::HookDenied).status_code(),
            202
        );
        let none = Refusal::NoReservation(p);
        assert_eq!(none.status_code(), 204);
        assert_eq!(none.reason(), RefusalReason::NoReservation(p));
        assert_eq!(none.service_error(), ServiceError::InvalidReservation);
        assert_eq!(
            Refusal::ResourceLimitExceeded(RefusalReason::CircuitsForPeer(p)).service_error(),
            ServiceError::CircuitLimitReached
        );
        assert!(
            Refusal::ReservationRefused(RefusalReason::Reservations)
                .to_string()
                .contains("too many reservations")
        );
        let q = keypair_from_seed(2).public().to_peer_id();
        assert!(RefusalReason::CircuitsForPeer(p).blames(p));
        assert!(!RefusalReason::CircuitsForPeer(q).blames(p));
        assert!(!RefusalReason::Reservations.blames(p));
        assert!(RefusalReason::NoReservation(q).blames(p));
    }
}
