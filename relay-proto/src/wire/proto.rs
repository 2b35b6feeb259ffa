//! Protobuf messages of the libp2p protocols this stack speaks, written by hand with
//! `prost` derives.
//!
//! Field numbers and types follow the `.proto` files of the libp2p specs: `noise`,
//! `identify`, `relay/circuit-v2`, `relay/DCUtR` and `RFC/0002-signed-envelopes`.
//! Messages use proto2 field presence: an `optional` field is an `Option`, which is
//! encoded only when `Some`. Fields the specs mark "optional for backwards compatibility
//! with proto2, always set this" (the message `type`s among them) are `Option`s too:
//! decoding does not fail when they are missing, so callers check them and treat
//! `None` as a malformed message. Enum fields are raw `i32`s, since a peer may send
//! values this code does not know; convert them with `TryFrom<i32>`.

use prost::Message;

use super::varint;

/// Largest circuit relay v2 or DCUtR message accepted, in bytes, length prefix excluded.
pub const MAX_RELAY_MESSAGE: usize = 4096;

/// Signing domain of reservation vouchers (circuit relay v2).
pub const RELAY_RSVP_DOMAIN: &str = "libp2p-relay-rsvp";

/// Envelope payload type of reservation vouchers: the multicodec `0x0302` as raw bytes,
/// as go-libp2p and js-libp2p put it on the wire.
pub const RELAY_RSVP_PAYLOAD_TYPE: [u8; 2] = [0x03, 0x02];

/// Signing domain of peer records (RFC 0003), sent in identify's `signedPeerRecord`, as
/// go-libp2p and js-libp2p sign them.
pub const PEER_RECORD_DOMAIN: &str = "libp2p-peer-record";

/// Envelope payload type of peer records: the multicodec `0x0301` as raw bytes.
pub const PEER_RECORD_PAYLOAD_TYPE: [u8; 2] = [0x03, 0x01];

/// Signing domain of rust-libp2p's own peer records ("legacy" there; its identify sends
/// and accepts only these).
pub const LEGACY_PEER_RECORD_DOMAIN: &str = "libp2p-routing-state";

/// Payload type of rust-libp2p's own peer records: a string, not a multicodec.
pub const LEGACY_PEER_RECORD_PAYLOAD_TYPE: &[u8] = b"/libp2p/routing-state-record";

/// Why a protobuf message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The bytes are not a valid encoding of the expected message.
    #[error("malformed protobuf message: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Encodes `m` into a new buffer.
pub fn encode<M: Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Appends `m` to `out`, preceded by its length as an unsigned varint.
pub fn encode_length_prefixed<M: Message>(m: &M, out: &mut Vec<u8>) {
    let len = m.encoded_len();
    out.reserve(varint::MAX_LEN + len);
    varint::encode_into(len as u64, out);
    // Encoding into a `Vec` cannot run out of space: the error case never happens.
    let _ = m.encode(out);
}

/// Decodes a message of type `M` from exactly `bytes` (no length prefix).
pub fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, ProtoError> {
    Ok(M::decode(bytes)?)
}

/// Bytes a signed envelope's signature covers (RFC 0002).
///
/// They are the domain, the payload type and the payload, each preceded by its length
/// as an unsigned varint.
pub fn envelope_signing_bytes(domain: &str, payload_type: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(3 * varint::MAX_LEN + domain.len() + payload_type.len() + payload.len());
    for part in [domain.as_bytes(), payload_type, payload] {
        varint::encode_into(part.len() as u64, &mut out);
        out.extend_from_slice(part);
    }
    out
}

/// The payload of Noise handshake messages that binds the libp2p identity (noise spec).
#[derive(Clone, PartialEq, Message)]
pub struct NoiseHandshakePayload {
    /// The sender's libp2p `PublicKey`, protobuf-encoded.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub identity_key: Option<Vec<u8>>,
    /// Signature by the identity key over `"noise-libp2p-static-key:"` and the Noise static key.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub identity_sig: Option<Vec<u8>>,
    /// Optional features announced during the handshake.
    #[prost(message, optional, tag = "4")]
    pub extensions: Option<NoiseExtensions>,
}

/// Extensions carried in a [`NoiseHandshakePayload`] (noise spec).
#[derive(Clone, PartialEq, Message)]
pub struct NoiseExtensions {
    /// Certificate hashes of WebTransport endpoints.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub webtransport_certhashes: Vec<Vec<u8>>,
    /// Stream muxers the sender supports, in order of preference (early muxer negotiation).
    #[prost(string, repeated, tag = "2")]
    pub stream_muxers: Vec<String>,
}

/// The identify message a peer sends about itself (identify spec).
#[derive(Clone, PartialEq, Message)]
pub struct Identify {
    /// Protocol family version, such as `"ipfs/0.1.0"`.
    #[prost(string, optional, tag = "5")]
    pub protocol_version: Option<String>,
    /// Free-form implementation name and version.
    #[prost(string, optional, tag = "6")]
    pub agent_version: Option<String>,
    /// The sender's libp2p `PublicKey`, protobuf-encoded.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub public_key: Option<Vec<u8>>,
    /// Addresses the sender listens on, as binary multiaddrs.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub listen_addrs: Vec<Vec<u8>>,
    /// The receiver's address as the sender observes it, as a binary multiaddr.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub observed_addr: Option<Vec<u8>>,
    /// Protocols the sender supports.
    #[prost(string, repeated, tag = "3")]
    pub protocols: Vec<String>,
    /// A signed envelope holding the sender's peer record.
    #[prost(bytes = "vec", optional, tag = "8")]
    pub signed_peer_record: Option<Vec<u8>>,
}

/// A message of the circuit relay v2 hop protocol, between a client and the relay.
#[derive(Clone, PartialEq, Message)]
pub struct HopMessage {
    /// The kind of message, a [`HopType`]. `None` on the wire is a malformed message.
    #[prost(enumeration = "HopType", optional, tag = "1")]
    pub r#type: Option<i32>,
    /// The peer to connect to (CONNECT) or the peer that connected (STATUS).
    #[prost(message, optional, tag = "2")]
    pub peer: Option<Peer>,
    /// The reservation granted, in the STATUS answer to a RESERVE.
    #[prost(message, optional, tag = "3")]
    pub reservation: Option<Reservation>,
    /// Limits the relay applies to relayed connections.
    #[prost(message, optional, tag = "4")]
    pub limit: Option<Limit>,
    /// The outcome of a request, a [`Status`].
    #[prost(enumeration = "Status", optional, tag = "5")]
    pub status: Option<i32>,
}

/// Kind of a [`HopMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HopType {
    /// A client asks the relay for a reservation.
    Reserve = 0,
    /// A client asks the relay to connect it to a peer.
    Connect = 1,
    /// The relay answers a request.
    Status = 2,
}

/// A message of the circuit relay v2 stop protocol, from the relay to the target peer.
#[derive(Clone, PartialEq, Message)]
pub struct StopMessage {
    /// The kind of message, a [`StopType`]. `None` on the wire is a malformed message.
    #[prost(enumeration = "StopType", optional, tag = "1")]
    pub r#type: Option<i32>,
    /// The peer that initiated the relayed connection.
    #[prost(message, optional, tag = "2")]
    pub peer: Option<Peer>,
    /// Limits the relay applies to this connection.
    #[prost(message, optional, tag = "3")]
    pub limit: Option<Limit>,
    /// The target's answer, a [`Status`].
    #[prost(enumeration = "Status", optional, tag = "4")]
    pub status: Option<i32>,
}

/// Kind of a [`StopMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StopType {
    /// The relay asks the target to accept a relayed connection.
    Connect = 0,
    /// The target answers.
    Status = 1,
}

/// A peer in a circuit relay v2 message.
#[derive(Clone, PartialEq, Message)]
pub struct Peer {
    /// The peer id, as bytes. `None` on the wire is a malformed message.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub id: Option<Vec<u8>>,
    /// The peer's addresses, as binary multiaddrs.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
}

/// A reservation granted by a relay.
#[derive(Clone, PartialEq, Message)]
pub struct Reservation {
    /// Expiry time in Unix seconds (UTC). `None` on the wire is a malformed message.
    #[prost(uint64, optional, tag = "1")]
    pub expire: Option<u64>,
    /// Relay addresses the reserving peer may advertise, as binary multiaddrs.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub addrs: Vec<Vec<u8>>,
    /// The reservation voucher: a signed [`Envelope`] holding a [`ReservationVoucher`].
    #[prost(bytes = "vec", optional, tag = "3")]
    pub voucher: Option<Vec<u8>>,
}

/// Limits a relay applies to one relayed connection. Missing or `0` means no limit.
#[derive(Clone, PartialEq, Message)]
pub struct Limit {
    /// Longest duration of the connection, in seconds by the spec (js-libp2p sends
    /// milliseconds).
    #[prost(uint32, optional, tag = "1")]
    pub duration: Option<u32>,
    /// Most bytes relayed in each direction.
    #[prost(uint64, optional, tag = "2")]
    pub data: Option<u64>,
}

/// Outcome of a circuit relay v2 request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Status {
    /// Zero value, never sent.
    Unused = 0,
    /// The request succeeded.
    Ok = 100,
    /// The relay refused the reservation.
    ReservationRefused = 200,
    /// The relay or the target is out of resources.
    ResourceLimitExceeded = 201,
    /// The request is not allowed.
    PermissionDenied = 202,
    /// The relay could not reach the target.
    ConnectionFailed = 203,
    /// The target has no reservation with the relay.
    NoReservation = 204,
    /// The request could not be decoded or lacked a required field.
    MalformedMessage = 400,
    /// The request was not expected at this point.
    UnexpectedMessage = 401,
}

/// The payload of a reservation voucher envelope (circuit relay v2 `Voucher`).
#[derive(Clone, PartialEq, Message)]
pub struct ReservationVoucher {
    /// Peer id of the relay, as bytes.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub relay: Option<Vec<u8>>,
    /// Peer id of the reserving peer, as bytes.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub peer: Option<Vec<u8>>,
    /// Expiry time in Unix seconds (UTC).
    #[prost(uint64, optional, tag = "3")]
    pub expiration: Option<u64>,
}

/// A DCUtR hole punching message, exchanged over a relayed connection.
#[derive(Clone, PartialEq, Message)]
pub struct HolePunch {
    /// The kind of message, a [`HolePunchType`]. Required by the spec: `None` on the
    /// wire is a malformed message.
    #[prost(enumeration = "HolePunchType", optional, tag = "1")]
    pub r#type: Option<i32>,
    /// The sender's observed addresses, as binary multiaddrs.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub obs_addrs: Vec<Vec<u8>>,
}

/// Kind of a [`HolePunch`] message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum HolePunchType {
    /// Exchange of observed addresses.
    Connect = 100,
    /// The signal to start dialing.
    Sync = 300,
}

/// A peer record (RFC 0003): the addresses a peer says it can be reached at, with a
/// sequence number that grows with every new record.
///
/// A proto3 message: empty fields are left out of the encoding.
#[derive(Clone, PartialEq, Message)]
pub struct PeerRecordMessage {
    /// The peer's id, as bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub peer_id: Vec<u8>,
    /// Larger in every newer record of the peer.
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// The addresses.
    #[prost(message, repeated, tag = "3")]
    pub addresses: Vec<PeerRecordAddress>,
}

/// One address of a [`PeerRecordMessage`].
#[derive(Clone, PartialEq, Message)]
pub struct PeerRecordAddress {
    /// A binary multiaddr.
    #[prost(bytes = "vec", tag = "1")]
    pub multiaddr: Vec<u8>,
}

/// A signed envelope (RFC 0002): a typed payload with its signer's key and signature.
///
/// A proto3 message: empty fields are left out of the encoding.
#[derive(Clone, PartialEq, Message)]
pub struct Envelope {
    /// The signer's libp2p `PublicKey`, protobuf-encoded.
    #[prost(bytes = "vec", tag = "1")]
    pub public_key: Vec<u8>,
    /// Multicodec naming the payload's type, such as [`RELAY_RSVP_PAYLOAD_TYPE`].
    #[prost(bytes = "vec", tag = "2")]
    pub payload_type: Vec<u8>,
    /// The signed payload.
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// Signature over [`envelope_signing_bytes`] of the domain, payload type and payload.
    #[prost(bytes = "vec", tag = "5")]
    pub signature: Vec<u8>,
}

impl Status {
    /// The status as the circuit v2 `.proto` file names it, e.g. `RESERVATION_REFUSED`.
    pub fn as_str_name(&self) -> &'static str {
        match self {
            Status::Unused => "UNUSED",
            Status::Ok => "OK",
            Status::ReservationRefused => "RESERVATION_REFUSED",
            Status::ResourceLimitExceeded => "RESOURCE_LIMIT_EXCEEDED",
            Status::PermissionDenied => "PERMISSION_DENIED",
            Status::ConnectionFailed => "CONNECTION_FAILED",
            Status::NoReservation => "NO_RESERVATION",
            Status::MalformedMessage => "MALFORMED_MESSAGE",
            Status::UnexpectedMessage => "UNEXPECTED_MESSAGE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    #[test]
    fn known_vectors() {
        let reserve = HopMessage {
            r#type: Some(HopType::Reserve as i32),
            ..Default::default()
        };
        // Proto2 presence: a zero `type` that is set is still written.
        assert_eq!(encode(&reserve), [0x08, 0x00]);
        assert_eq!(encode(&HopMessage::default()), [] as [u8; 0]);

        let status = HopMessage {
            r#type: Some(HopType::Status as i32),
            status: Some(Status::Ok as i32),
            limit: Some(Limit {
                duration: Some(120),
                data: Some(1 << 17),
            }),
            ..Default::default()
        };
        let bytes = encode(&status);
        assert_eq!(
            bytes,
            [
                0x08, 0x02, 0x22, 0x06, 0x08, 0x78, 0x10, 0x80, 0x80, 0x08, 0x28, 0x64
            ]
        );
        assert_eq!(decode::<HopMessage>(&bytes), Ok(status));

        let punch = HolePunch {
            r#type: Some(HolePunchType::Sync as i32),
            obs_addrs: vec![],
        };
        assert_eq!(encode(&punch), [0x08, 0xac, 0x02]);

        let mut framed = Vec::new();
        encode_length_prefixed(&punch, &mut framed);
        assert_eq!(framed, [0x03, 0x08, 0xac, 0x02]);

        let stop = StopMessage {
            r#type: Some(StopType::Connect as i32),
            ..Default::default()
        };
        assert_eq!(decode::<StopMessage>(&[0x08, 0x00]), Ok(stop));
    }

    #[test]
    fn missing_type_decodes_as_none() {
        let hop = decode::<HopMessage>(&[0x28, 0x64]).unwrap();
        assert_eq!(hop.r#type, None);
        assert_eq!(hop.status(), Status::Ok);
    }

    #[test]
    fn unknown_enum_values_are_kept() {
        let hop = decode::<HopMessage>(&[0x08, 0x07]).unwrap();
        assert_eq!(hop.r#type, Some(7));
        assert!(HopType::try_from(7).is_err());
    }

    #[test]
    fn envelope_signing_bytes_layout() {
        let bytes = envelope_signing_bytes(RELAY_RSVP_DOMAIN, &RELAY_RSVP_PAYLOAD_TYPE, b"abc");
        let mut expected = vec![17];
        expected.extend_from_slice(b"libp2p-relay-rsvp");
        expected.extend_from_slice(&[2, 0x03, 0x02, 3]);
        expected.extend_from_slice(b"abc");
        assert_eq!(bytes, expected);
    }

    #[test]
    fn envelope_field_numbers() {
        let envelope = Envelope {
            public_key: vec![0xaa],
            payload_type: vec![0xbb],
            payload: vec![0xcc],
            signature: vec![0xdd],
        };
        let bytes = encode(&envelope);
        assert_eq!(
            bytes,
            [0x0a, 1, 0xaa, 0x12, 1, 0xbb, 0x1a, 1, 0xcc, 0x2a, 1, 0xdd]
        );
    }

    #[test]
    fn malformed_bytes_rejected() {
        // Field 2 of `Peer` announces 5 bytes, 1 follows.
        assert!(decode::<Peer>(&[0x12, 0x05, 0x00]).is_err());
        // Wire type 7 does not exist.
        assert!(decode::<Limit>(&[0x0f]).is_err());
        // `stream_muxers` must be UTF-8.
        assert!(decode::<NoiseExtensions>(&[0x12, 0x01, 0xff]).is_err());
    }

    fn blob() -> impl Strategy<Value = Vec<u8>> {
        vec(any::<u8>(), 0..40)
    }

    fn peer() -> impl Strategy<Value = Peer> {
        (option::of(blob()), vec(blob(), 0..3)).prop_map(|(id, addrs)| Peer { id, addrs })
    }

    fn limit() -> impl Strategy<Value = Limit> {
        (option::of(any::<u32>()), option::of(any::<u64>()))
            .prop_map(|(duration, data)| Limit { duration, data })
    }

    fn reservation() -> impl Strategy<Value = Reservation> {
        (
            option::of(any::<u64>()),
            vec(blob(), 0..3),
            option::of(blob()),
        )
            .prop_map(|(expire, addrs, voucher)| Reservation {
                expire,
                addrs,
                voucher,
            })
    }

    /// Any `i32`, including values outside the enum, which must survive a round trip.
    fn enum_value() -> impl Strategy<Value = Option<i32>> {
        option::of(prop_oneof![Just(0), Just(100), Just(300), any::<i32>()])
    }

    fn hop() -> impl Strategy<Value = HopMessage> {
        (
            enum_value(),
            option::of(peer()),
            option::of(reservation()),
            option::of(limit()),
            enum_value(),
        )
            .prop_map(|(r#type, peer, reservation, limit, status)| HopMessage {
                r#type,
                peer,
                reservation,
                limit,
                status,
            })
    }

    fn stop() -> impl Strategy<Value = StopMessage> {
        (
            enum_value(),
            option::of(peer()),
            option::of(limit()),
            enum_value(),
        )
            .prop_map(|(r#type, peer, limit, status)| StopMessage {
                r#type,
                peer,
                limit,
                status,
            })
    }

    fn noise() -> impl Strategy<Value = NoiseHandshakePayload> {
        let extensions = (vec(blob(), 0..3), vec(".{0,12}", 0..3)).prop_map(
            |(webtransport_certhashes, stream_muxers)| NoiseExtensions {
                webtransport_certhashes,
                stream_muxers,
            },
        );
        (
            option::of(blob()),
            option::of(blob()),
            option::of(extensions),
        )
            .prop_map(
                |(identity_key, identity_sig, extensions)| NoiseHandshakePayload {
                    identity_key,
                    identity_sig,
                    extensions,
                },
            )
    }

    fn identify() -> impl Strategy<Value = Identify> {
        (
            (
                option::of(".{0,12}"),
                option::of(".{0,12}"),
                option::of(blob()),
            ),
            (
                vec(blob(), 0..3),
                option::of(blob()),
                vec(".{0,12}", 0..3),
                option::of(blob()),
            ),
        )
            .prop_map(
                |(
                    (protocol_version, agent_version, public_key),
                    (listen_addrs, observed_addr, protocols, signed_peer_record),
                )| Identify {
                    protocol_version,
                    agent_version,
                    public_key,
                    listen_addrs,
                    observed_addr,
                    protocols,
                    signed_peer_record,
                },
            )
    }

    fn voucher() -> impl Strategy<Value = ReservationVoucher> {
        (
            option::of(blob()),
            option::of(blob()),
            option::of(any::<u64>()),
        )
            .prop_map(|(relay, peer, expiration)| ReservationVoucher {
                relay,
                peer,
                expiration,
            })
    }

    fn hole_punch() -> impl Strategy<Value = HolePunch> {
        (enum_value(), vec(blob(), 0..3))
            .prop_map(|(r#type, obs_addrs)| HolePunch { r#type, obs_addrs })
    }

    fn envelope() -> impl Strategy<Value = Envelope> {
        (blob(), blob(), blob(), blob()).prop_map(
            |(public_key, payload_type, payload, signature)| Envelope {
                public_key,
                payload_type,
                payload,
                signature,
            },
        )
    }

    /// Checks that `m` survives encoding, bare and length-prefixed.
    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(
        m: &M,
    ) -> Result<(), TestCaseError> {
        let bytes = encode(m);
        prop_assert_eq!(&decode::<M>(&bytes)?, m);
        let mut framed = Vec::new();
        encode_length_prefixed(m, &mut framed);
        let (payload, used) = super::super::frame::decode_frame(&framed, usize::MAX)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .ok_or_else(|| TestCaseError::fail("incomplete frame"))?;
        prop_assert_eq!(used, framed.len());
        prop_assert_eq!(&framed[payload], &bytes[..]);
        Ok(())
    }

    proptest! {
        #[test]
        fn hop_round_trip(m in hop()) { round_trip(&m)?; }

        #[test]
        fn stop_round_trip(m in stop()) { round_trip(&m)?; }

        #[test]
        fn noise_round_trip(m in noise()) { round_trip(&m)?; }

        #[test]
        fn identify_round_trip(m in identify()) { round_trip(&m)?; }

        #[test]
        fn voucher_round_trip(m in voucher()) { round_trip(&m)?; }

        #[test]
        fn hole_punch_round_trip(m in hole_punch()) { round_trip(&m)?; }

        #[test]
        fn envelope_round_trip(m in envelope()) { round_trip(&m)?; }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..128)) {
            let _ = decode::<NoiseHandshakePayload>(&bytes);
            let _ = decode::<NoiseExtensions>(&bytes);
            let _ = decode::<Identify>(&bytes);
            let _ = decode::<HopMessage>(&bytes);
            let _ = decode::<StopMessage>(&bytes);
            let _ = decode::<Peer>(&bytes);
            let _ = decode::<Reservation>(&bytes);
            let _ = decode::<Limit>(&bytes);
            let _ = decode::<ReservationVoucher>(&bytes);
            let _ = decode::<HolePunch>(&bytes);
            let _ = decode::<Envelope>(&bytes);
        }
    }
}
