//! The libp2p handshake payload: the identity key and its signature over the Noise
//! static key, plus optional extensions.
//!
//! Unknown fields and extensions are skipped, as protobuf decoding does by default, so
//! newer peers can add to the payload.

use prost::Message;

use super::NoiseError;
use crate::identity::{Keypair, PeerId, PublicKey};
pub use crate::wire::proto::NoiseExtensions;
use crate::wire::proto::NoiseHandshakePayload;

/// What the identity key signs: this prefix followed by the X25519 static public key.
const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";

/// The `KeyType`s of the libp2p `PublicKey` protobuf this build verifies: ed25519 (1)
/// everywhere; RSA (0), secp256k1 (2) and ECDSA (3) on native targets.
#[cfg(not(target_arch = "wasm32"))]
const SUPPORTED_KEY_TYPES: &[i32] = &[0, 1, 2, 3];
#[cfg(target_arch = "wasm32")]
const SUPPORTED_KEY_TYPES: &[i32] = &[1];

/// Just the key type of a libp2p `PublicKey` protobuf, to tell an unsupported key
/// from a malformed one.
#[derive(Clone, PartialEq, prost::Message)]
struct KeyTypeOnly {
    #[prost(int32, optional, tag = "1")]
    key_type: Option<i32>,
}

/// The remote's identity, proven by its handshake payload.
#[derive(Debug)]
pub(super) struct RemoteIdentity {
    pub(super) public_key: PublicKey,
    pub(super) peer_id: PeerId,
    pub(super) extensions: Option<NoiseExtensions>,
}

/// Encodes the local payload: `identity`'s public key and its signature over
/// `static_public`.
pub(super) fn encode_local(
    identity: &Keypair,
    static_public: &[u8; 32],
) -> Result<Vec<u8>, NoiseError> {
    let signature = identity
        .sign(&signed_message(static_public))
        .map_err(NoiseError::Signing)?;
    let payload = NoiseHandshakePayload {
        identity_key: Some(identity.public().encode_protobuf()),
        identity_sig: Some(signature),
        extensions: None,
    };
    Ok(payload.encode_to_vec())
}

/// Decodes the remote's payload and checks its signature over `remote_static`, the
/// static key the remote used in the handshake.
pub(super) fn verify_remote(
    payload: &[u8],
    remote_static: &[u8],
) -> Result<RemoteIdentity, NoiseError> {
    let payload = NoiseHandshakePayload::decode(payload).map_err(|_| NoiseError::InvalidPayload)?;
    let (Some(key_bytes), Some(signature)) = (payload.identity_key, payload.identity_sig) else {
        return Err(NoiseError::MissingIdentity);
    };
    let public_key = decode_public_key(&key_bytes)?;
    if !public_key.verify(&signed_message(remote_static), &signature) {
        return Err(NoiseError::InvalidSignature);
    }
    Ok(RemoteIdentity {
        peer_id: public_key.to_peer_id(),
        public_key,
        extensions: payload.extensions,
    })
}

fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, NoiseError> {
    if let Ok(key) = PublicKey::try_decode_protobuf(bytes) {
        return Ok(key);
    }
    match KeyTypeOnly::decode(bytes) {
        Ok(KeyTypeOnly {
            key_type: Some(key_type),
        }) if !SUPPORTED_KEY_TYPES.contains(&key_type) => Err(NoiseError::UnsupportedKey),
        _ => Err(NoiseError::InvalidPayload),
    }
}

fn signed_message(static_public: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(STATIC_KEY_DOMAIN.len() + static_public.len());
    message.extend_from_slice(STATIC_KEY_DOMAIN);
    message.extend_from_slice(static_public);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;

    /// A protobuf field: `tag` with wire type 2 (length-delimited), then `bytes`.
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2, u8::try_from(bytes.len()).unwrap()];
        out.extend_from_slice(bytes);
        out
    }

    fn signed_payload(static_public: &[u8; 32]) -> Vec<u8> {
        encode_local(&keypair_from_seed(3), static_public).unwrap()
    }

    #[test]
    fn local_payload_verifies() {
        let remote = verify_remote(&signed_payload(&[7; 32]), &[7; 32]).unwrap();
        assert_eq!(remote.peer_id, keypair_from_seed(3).public().to_peer_id());
        assert_eq!(remote.extensions, None);
    }

    #[test]
    fn signature_over_another_static_key_is_rejected() {
        let error = verify_remote(&signed_payload(&[7; 32]), &[8; 32]).unwrap_err();
        assert!(matches!(error, NoiseError::InvalidSignature), "{error:?}");
    }

    #[test]
    fn unknown_fields_and_extensions_are_tolerated() {
        let mut payload = signed_payload(&[7; 32]);
        // The deprecated `data` field 3, and an unknown field 9.
        payload.extend(field(3, b"early data"));
        payload.extend(field(9, b"from the future"));
        let mut extensions = field(2, b"/yamux/1.0.0");
        extensions.extend(field(1, &[0x12, 0x20]));
        extensions.extend(field(7, b"unknown extension"));
        payload.extend(field(4, &extensions));

        let remote = verify_remote(&payload, &[7; 32]).unwrap();
        let extensions = remote.extensions.unwrap();
        assert_eq!(extensions.stream_muxers, ["/yamux/1.0.0"]);
        assert_eq!(extensions.webtransport_certhashes, [vec![0x12, 0x20]]);
    }

    #[test]
    fn missing_identity_is_rejected() {
        let error = verify_remote(&[], &[7; 32]).unwrap_err();
        assert!(matches!(error, NoiseError::MissingIdentity), "{error:?}");
    }

    #[test]
    fn unknown_key_types_are_unsupported() {
        // KeyType 9 does not exist.
        let mut key = vec![0x08, 0x09];
        key.extend(field(2, &[2; 33]));
        let mut payload = field(1, &key);
        payload.extend(field(2, &[0; 64]));
        let error = verify_remote(&payload, &[7; 32]).unwrap_err();
        assert!(matches!(error, NoiseError::UnsupportedKey), "{error:?}");
    }

    #[test]
    fn a_malformed_key_of_a_known_type_is_invalid() {
        // KeyType secp256k1 (2) with 33 bytes that are not a compressed point (0x05).
        let mut key = vec![0x08, 0x02];
        key.extend(field(2, &[5; 33]));
        let mut payload = field(1, &key);
        payload.extend(field(2, &[0; 64]));
        let error = verify_remote(&payload, &[7; 32]).unwrap_err();
        assert!(matches!(error, NoiseError::InvalidPayload), "{error:?}");
    }

    /// Peers with secp256k1, ECDSA and RSA identities (go-libp2p and older IPFS nodes)
    /// prove themselves like ed25519 ones.
    #[test]
    fn every_key_type_of_libp2p_verifies() {
        let rsa_der = include_bytes!("testdata/rsa-2048.pk8");
        use libp2p_identity::{ecdsa, secp256k1};
        let secp = secp256k1::SecretKey::try_from_bytes([7u8; 32]).expect("secp256k1 key");
        let p256 = ecdsa::SecretKey::try_from_bytes([9u8; 32]).expect("P-256 key");
        for keypair in [
            Keypair::from(secp256k1::Keypair::from(secp)),
            Keypair::from(ecdsa::Keypair::from(p256)),
            Keypair::rsa_from_pkcs8(&mut rsa_der.to_vec()).expect("RSA test key"),
        ] {
            let payload = encode_local(&keypair, &[7; 32]).unwrap();
            let remote = verify_remote(&payload, &[7; 32]).unwrap();
            assert_eq!(remote.peer_id, keypair.public().to_peer_id());
            let error = verify_remote(&payload, &[8; 32]).unwrap_err();
            assert!(matches!(error, NoiseError::InvalidSignature), "{error:?}");
        }
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        let error = verify_remote(&[0xff, 0xff], &[7; 32]).unwrap_err();
        assert!(matches!(error, NoiseError::InvalidPayload), "{error:?}");
        // An ed25519 key of the wrong length.
        let mut key = vec![0x08, 0x01];
        key.extend(field(2, &[1; 31]));
        let mut payload = field(1, &key);
        payload.extend(field(2, &[0; 64]));
        let error = verify_remote(&payload, &[7; 32]).unwrap_err();
        assert!(matches!(error, NoiseError::InvalidPayload), "{error:?}");
    }
}
