//! Signed peer records (libp2p RFC 0003): a peer's addresses, signed by its identity
//! key in an envelope (RFC 0002), sent in identify's `signedPeerRecord`. A receiver can
//! trust the addresses as the peer's own word.
//!
//! Interop trap: go- and js-libp2p sign with domain `libp2p-peer-record` and payload type
//! `0x0301`; rust-libp2p's identify (0.48) signs and accepts only its older domain
//! `libp2p-routing-state` with the payload type `/libp2p/routing-state-record` as a
//! string. We sign the former and accept both; rust-libp2p ignores ours and falls back
//! to the plain `listenAddrs`, as it does with go's.

use multiaddr::Multiaddr;

use crate::identity::{Keypair, PeerId, PublicKey};
use crate::wire::proto::{
    self, Envelope, LEGACY_PEER_RECORD_DOMAIN, LEGACY_PEER_RECORD_PAYLOAD_TYPE, PEER_RECORD_DOMAIN,
    PEER_RECORD_PAYLOAD_TYPE, PeerRecordAddress, PeerRecordMessage,
};

/// A peer record: who, which version, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// The peer the record is about; the envelope must be signed by its key.
    pub peer: PeerId,
    /// Larger in every newer record of the peer.
    pub seq: u64,
    /// The addresses the peer says it is reachable at.
    pub addrs: Vec<Multiaddr>,
}

/// Why a signed peer record was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRecordError {
    /// The envelope or the record did not decode.
    #[error("malformed peer record")]
    Malformed,
    /// The envelope holds something other than a peer record.
    #[error("envelope does not hold a peer record")]
    WrongPayloadType,
    /// The signature does not verify.
    #[error("peer record signature invalid")]
    BadSignature,
    /// The record names another peer than the key that signed it.
    #[error("peer record signed by another peer than it names")]
    Mismatch,
    /// The key cannot sign (an RSA key the platform's ring refuses).
    #[error("cannot sign the peer record")]
    CannotSign,
}

impl PeerRecord {
    /// Signs the record with `key`, which must be the record's peer's, giving the
    /// envelope bytes.
    pub fn sign(&self, key: &Keypair) -> Result<Vec<u8>, PeerRecordError> {
        if key.public().to_peer_id() != self.peer {
            return Err(PeerRecordError::Mismatch);
        }
        let payload = proto::encode(&PeerRecordMessage {
            peer_id: self.peer.to_bytes(),
            seq: self.seq,
            addresses: self
                .addrs
                .iter()
                .map(|a| PeerRecordAddress {
                    multiaddr: a.to_vec(),
                })
                .collect(),
        });
        let signed =
            proto::envelope_signing_bytes(PEER_RECORD_DOMAIN, &PEER_RECORD_PAYLOAD_TYPE, &payload);
        let signature = key.sign(&signed).map_err(|_| PeerRecordError::CannotSign)?;
        Ok(proto::encode(&Envelope {
            public_key: key.public().encode_protobuf(),
            payload_type: PEER_RECORD_PAYLOAD_TYPE.to_vec(),
            payload,
            signature,
        }))
    }

    /// Verifies envelope bytes and returns the record they carry, in the standard form
    /// or rust-libp2p's. Addresses that do not parse are skipped, as in identify.
    pub fn open(envelope: &[u8]) -> Result<PeerRecord, PeerRecordError> {
        let envelope: Envelope = proto::decode(envelope).map_err(|_| PeerRecordError::Malformed)?;
        let domain = if envelope.payload_type == PEER_RECORD_PAYLOAD_TYPE {
            PEER_RECORD_DOMAIN
        } else if envelope.payload_type == LEGACY_PEER_RECORD_PAYLOAD_TYPE {
            LEGACY_PEER_RECORD_DOMAIN
        } else {
            return Err(PeerRecordError::WrongPayloadType);
        };
        let key = PublicKey::try_decode_protobuf(&envelope.public_key)
            .map_err(|_| PeerRecordError::Malformed)?;
        let signed =
            proto::envelope_signing_bytes(domain, &envelope.payload_type, &envelope.payload);
        if !key.verify(&signed, &envelope.signature) {
            return Err(PeerRecordError::BadSignature);
        }
        let record: PeerRecordMessage =
            proto::decode(&envelope.payload).map_err(|_| PeerRecordError::Malformed)?;
        let peer = PeerId::from_bytes(&record.peer_id).map_err(|_| PeerRecordError::Malformed)?;
        if peer != key.to_peer_id() {
            return Err(PeerRecordError::Mismatch);
        }
        Ok(PeerRecord {
            peer,
            seq: record.seq,
            addrs: record
                .addresses
                .into_iter()
                .filter_map(|a| Multiaddr::try_from(a.multiaddr).ok())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identity::keypair_from_seed;

    fn record(seed: u8) -> PeerRecord {
        PeerRecord {
            peer: keypair_from_seed(seed).public().to_peer_id(),
            seq: 1_790_000_000_000,
            addrs: vec![
                "/ip4/198.51.100.7/tcp/4001".parse().unwrap(),
                "/ip6/2001:db8::7/tcp/4001".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn sign_and_open() {
        let r = record(1);
        let bytes = r.sign(&keypair_from_seed(1)).unwrap();
        assert_eq!(PeerRecord::open(&bytes), Ok(r));
    }

    #[test]
    fn tampering_and_forgery_are_caught() {
        let r = record(1);
        let bytes = r.sign(&keypair_from_seed(1)).unwrap();
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(PeerRecord::open(&tampered).is_err());
        // Nobody signs a record of another peer.
        assert_eq!(
            r.sign(&keypair_from_seed(2)),
            Err(PeerRecordError::Mismatch)
        );
        // A voucher envelope is not a peer record.
        let voucher = crate::circuit::voucher::Voucher {
            relay: keypair_from_seed(1).public().to_peer_id(),
            peer: keypair_from_seed(2).public().to_peer_id(),
            expiration: 1,
        }
        .sign(&keypair_from_seed(1));
        assert_eq!(
            PeerRecord::open(&voucher),
            Err(PeerRecordError::WrongPayloadType)
        );
    }

    /// The bytes of a record go-libp2p would sign are the RFC's: a known envelope
    /// layout (key, payload type, payload, signature at field 5).
    #[test]
    fn envelope_layout() {
        let bytes = record(3).sign(&keypair_from_seed(3)).unwrap();
        let envelope: Envelope = proto::decode(&bytes).unwrap();
        assert_eq!(envelope.payload_type, [0x03, 0x01]);
        let message: PeerRecordMessage = proto::decode(&envelope.payload).unwrap();
        assert_eq!(message.seq, 1_790_000_000_000);
        assert_eq!(message.addresses.len(), 2);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PeerRecord::open(&bytes);
        }
    }
}
