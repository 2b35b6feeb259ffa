//! Reservation vouchers: a relay's signed statement that a peer holds a reservation,
//! carried in a signed envelope (RFC 0002) with domain `libp2p-relay-rsvp`.

use crate::identity::{Keypair, PeerId, PublicKey};
use crate::wire::proto::{
    self, Envelope, RELAY_RSVP_DOMAIN, RELAY_RSVP_PAYLOAD_TYPE, ReservationVoucher,
};

/// A verified voucher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    /// The relay that signed it.
    pub relay: PeerId,
    /// The peer holding the reservation.
    pub peer: PeerId,
    /// When the reservation expires, in Unix seconds.
    pub expiration: u64,
}

/// Why a voucher was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherError {
    /// The envelope or payload did not decode.
    #[error("malformed voucher")]
    Malformed,
    /// The envelope's payload type is not a reservation voucher.
    #[error("envelope does not hold a reservation voucher")]
    WrongPayloadType,
    /// The signature does not verify.
    #[error("voucher signature invalid")]
    BadSignature,
    /// It was signed by another key than the relay's, or names other peers.
    #[error("voucher does not match the reservation")]
    Mismatch,
}

impl Voucher {
    /// Signs the voucher with the relay's key, giving the envelope bytes.
    pub fn sign(&self, relay_key: &Keypair) -> Vec<u8> {
        let payload = proto::encode(&ReservationVoucher {
            relay: Some(self.relay.to_bytes()),
            peer: Some(self.peer.to_bytes()),
            expiration: Some(self.expiration),
        });
        let signed =
            proto::envelope_signing_bytes(RELAY_RSVP_DOMAIN, &RELAY_RSVP_PAYLOAD_TYPE, &payload);
        // Only an RSA key ring refuses can fail to sign; the voucher then carries an
        // empty signature, which clients reject as they would a missing voucher.
        let signature = relay_key.sign(&signed).unwrap_or_default();
        proto::encode(&Envelope {
            public_key: relay_key.public().encode_protobuf(),
            payload_type: RELAY_RSVP_PAYLOAD_TYPE.to_vec(),
            payload,
            signature,
        })
    }

    /// Verifies envelope bytes and returns the voucher they carry.
    pub fn open(envelope: &[u8]) -> Result<Voucher, VoucherError> {
        let envelope: Envelope = proto::decode(envelope).map_err(|_| VoucherError::Malformed)?;
        if envelope.payload_type != RELAY_RSVP_PAYLOAD_TYPE {
            return Err(VoucherError::WrongPayloadType);
        }
        let key = PublicKey::try_decode_protobuf(&envelope.public_key)
            .map_err(|_| VoucherError::Malformed)?;
        let signed = proto::envelope_signing_bytes(
            RELAY_RSVP_DOMAIN,
            &envelope.payload_type,
            &envelope.payload,
        );
        if !key.verify(&signed, &envelope.signature) {
            return Err(VoucherError::BadSignature);
        }
        let voucher: ReservationVoucher =
            proto::decode(&envelope.payload).map_err(|_| VoucherError::Malformed)?;
        let peer_id = |b: Option<Vec<u8>>| {
            b.and_then(|b| PeerId::from_bytes(&b).ok())
                .ok_or(VoucherError::Malformed)
        };
        let voucher = Voucher {
            relay: peer_id(voucher.relay)?,
            peer: peer_id(voucher.peer)?,
            expiration: voucher.expiration.ok_or(VoucherError::Malformed)?,
        };
        if voucher.relay != key.to_peer_id() {
            return Err(VoucherError::Mismatch);
        }
        Ok(voucher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    #[test]
    fn sign_and_open() {
        let relay = keypair_from_seed(1);
        let voucher = Voucher {
            relay: relay.public().to_peer_id(),
            peer: keypair_from_seed(2).public().to_peer_id(),
            expiration: 1_790_000_000,
        };
        let bytes = voucher.sign(&relay);
        assert_eq!(Voucher::open(&bytes), Ok(voucher.clone()));

        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(Voucher::open(&tampered).is_err());

        // Signed by another key than the relay it names.
        let forged = voucher.sign(&keypair_from_seed(3));
        assert_eq!(Voucher::open(&forged), Err(VoucherError::Mismatch));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(Voucher::open(b"\x01\x02\x03").is_err());
        assert!(Voucher::open(&[]).is_err());
    }
}
