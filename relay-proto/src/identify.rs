//! The libp2p identify protocol (`/ipfs/id/1.0.0` and `/ipfs/id/push/1.0.0`).
//!
//! The side that receives an identify stream answers with one length-prefixed
//! `Identify` message and closes; a push sends the same message unasked. This module
//! encodes and decodes that message; the node decides when to send it.

use multiaddr::Multiaddr;

use crate::identity::PublicKey;
use crate::peer_record::PeerRecord;
use crate::wire::frame::{self, FrameError, FrameReader};
use crate::wire::proto::{self, Identify};

/// The identify protocol name.
pub const PROTOCOL: &str = "/ipfs/id/1.0.0";
/// The identify push protocol name.
pub const PUSH_PROTOCOL: &str = "/ipfs/id/push/1.0.0";
/// The largest identify message we accept. Signed peer records make go's larger than
/// rust-libp2p's 4 KiB limit, so we are generous.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What a peer tells about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The peer's identity key.
    pub public_key: PublicKey,
    /// The protocol family version, e.g. `/ipfs/0.1.0`.
    pub protocol_version: String,
    /// The implementation, e.g. `rust-libp2p/0.57.1`.
    pub agent_version: String,
    /// Addresses the peer listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Protocols the peer accepts on inbound streams.
    pub protocols: Vec<String>,
    /// The address the peer sees us at, if it said.
    pub observed_addr: Option<Multiaddr>,
    /// The peer's signed peer record (an RFC 0002 envelope), as sent: see
    /// [`Info::peer_record`].
    pub signed_peer_record: Option<Vec<u8>>,
}

/// Why an identify message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifyError {
    /// The length prefix was bad or too large.
    #[error("framing: {0}")]
    Frame(#[from] FrameError),
    /// The protobuf did not decode.
    #[error("malformed identify message")]
    Malformed,
    /// The message lacked the public key, or it did not decode.
    #[error("identify message has no valid public key")]
    InvalidPublicKey,
    /// The stream ended before a whole message arrived.
    #[error("stream ended before the identify message was complete")]
    Truncated,
}

impl Info {
    /// Encodes the message with its length prefix, ready to write to a stream.
    pub fn encode(&self) -> Vec<u8> {
        let message = Identify {
            protocol_version: Some(self.protocol_version.clone()),
            agent_version: Some(self.agent_version.clone()),
            public_key: Some(self.public_key.encode_protobuf()),
            listen_addrs: self.listen_addrs.iter().map(|a| a.to_vec()).collect(),
            observed_addr: self.observed_addr.as_ref().map(|a| a.to_vec()),
            protocols: self.protocols.clone(),
            signed_peer_record: self.signed_peer_record.clone(),
        };
        let mut out = Vec::new();
        frame::encode_frame(&proto::encode(&message), &mut out);
        out
    }

    /// Decodes one message body (without its length prefix). Addresses that do not
    /// parse are skipped, as other implementations do.
    pub fn decode(body: &[u8]) -> Result<Self, IdentifyError> {
        let message: Identify = proto::decode(body).map_err(|_| IdentifyError::Malformed)?;
        let public_key = message
            .public_key
            .as_deref()
            .and_then(|k| PublicKey::try_decode_protobuf(k).ok())
            .ok_or(IdentifyError::InvalidPublicKey)?;
        Ok(Info {
            public_key,
            protocol_version: message.protocol_version.unwrap_or_default(),
            agent_version: message.agent_version.unwrap_or_default(),
            listen_addrs: message
                .listen_addrs
                .into_iter()
                .filter_map(|a| Multiaddr::try_from(a).ok())
                .collect(),
            protocols: message.protocols,
            observed_addr: message
                .observed_addr
                .and_then(|a| Multiaddr::try_from(a).ok()),
            signed_peer_record: message.signed_peer_record,
        })
    }

    /// The signed peer record, if the peer sent one that verifies and is its own (signed
    /// by the identify key); its addresses are the peer's own word.
    pub fn peer_record(&self) -> Option<PeerRecord> {
        let record = PeerRecord::open(self.signed_peer_record.as_deref()?).ok()?;
        (record.peer == self.public_key.to_peer_id()).then_some(record)
    }
}

/// Collects one identify message from a stream.
#[derive(Debug)]
pub struct Reader {
    frames: FrameReader,
}

impl Default for Reader {
    fn default() -> Self {
        Self {
            frames: FrameReader::new(MAX_MESSAGE),
        }
    }
}

impl Reader {
    /// Feeds stream bytes; returns the message once whole.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Info>, IdentifyError> {
        self.frames.push(data);
        match self.frames.next_frame()? {
            Some(body) => Info::decode(&body).map(Some),
            None => Ok(None),
        }
    }

    /// The stream ended; an incomplete message is an error.
    pub fn finish(&self) -> IdentifyError {
        IdentifyError::Truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keypair_from_seed;
    use proptest::prelude::*;

    fn info() -> Info {
        let key = keypair_from_seed(3);
        let listen_addrs: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
        let record = PeerRecord {
            peer: key.public().to_peer_id(),
            seq: 7,
            addrs: listen_addrs.clone(),
        };
        Info {
            public_key: key.public(),
            protocol_version: "/ipfs/0.1.0".into(),
            agent_version: "relay/0.1.0".into(),
            listen_addrs,
            protocols: vec![PROTOCOL.into(), "/ipfs/ping/1.0.0".into()],
            observed_addr: Some("/ip4/10.0.0.1/tcp/5555".parse().unwrap()),
            signed_peer_record: Some(record.sign(&key).unwrap()),
        }
    }

    #[test]
    fn the_peer_record_is_trusted_only_from_its_peer() {
        let record = info()
            .peer_record()
            .expect("a valid record of the identify key");
        assert_eq!((record.seq, record.addrs), (7, info().listen_addrs));
        // Another peer's valid record in our identify is not ours.
        let other = keypair_from_seed(4);
        let mut forged = info();
        forged.signed_peer_record = Some(
            PeerRecord {
                peer: other.public().to_peer_id(),
                seq: 8,
                addrs: Vec::new(),
            }
            .sign(&other)
            .unwrap(),
        );
        assert_eq!(forged.peer_record(), None);
        let mut garbage = info();
        garbage.signed_peer_record = Some(vec![1, 2, 3]);
        assert_eq!(garbage.peer_record(), None);
    }

    #[test]
    fn round_trip_in_pieces() {
        let encoded = info().encode();
        let mut reader = Reader::default();
        for chunk in encoded.chunks(7) {
            if let Some(decoded) = reader.push(chunk).unwrap() {
                assert_eq!(decoded, info());
                return;
            }
        }
        panic!("message never completed");
    }

    #[test]
    fn missing_key_is_rejected() {
        let body = proto::encode(&Identify {
            agent_version: Some("x".into()),
            ..Default::default()
        });
        assert_eq!(Info::decode(&body), Err(IdentifyError::InvalidPublicKey));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Info::decode(&data);
            let _ = Reader::default().push(&data);
        }
    }
}
