//! Reservation vouchers (circuit relay v2 spec, "Reservation Vouchers"): the relay's
//! signed word that a peer holds a reservation on it until a time. A signed envelope
//! with domain `libp2p-relay-rsvp` and payload type multicodec 0x0302, holding a
//! `ReservationVoucher { relay, peer, expiration }`, signed with the relay's key. go-
//! and nim-libp2p send one with every accepted RESERVE; libp2p-relay 0.22 sends none.

use libp2p::core::signed_envelope::{DecodingError, ReadPayloadError};
use libp2p::core::SignedEnvelope;
use libp2p::identity::{Keypair, SigningError};
use libp2p::PeerId;
use prost::Message as _;

use super::proto::ReservationVoucher;

/// The envelope's domain separation string.
pub const DOMAIN: &str = "libp2p-relay-rsvp";

/// The envelope's payload type: multicodec 0x0302 as an unsigned varint.
pub const PAYLOAD_TYPE: [u8; 2] = [0x03, 0x02];

/// A voucher's content, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    pub relay: PeerId,
    pub peer: PeerId,
    /// Unix time (seconds) the reservation expires.
    pub expiration: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    #[error("not a signed envelope: {0}")]
    Envelope(#[from] DecodingError),
    #[error("not a reservation voucher: {0}")]
    Payload(#[from] ReadPayloadError),
    #[error("the voucher's payload does not decode: {0}")]
    Message(#[from] prost::DecodeError),
    #[error("the voucher holds an invalid peer id")]
    PeerId,
    #[error("the voucher is not signed by the relay it names")]
    SignerIsNotRelay,
}

/// The voucher for `peer`'s reservation on the relay whose key is `relay_key`, expiring
/// at `expiration` (Unix seconds): the bytes of the signed envelope that go into the
/// reservation.
pub fn sign(relay_key: &Keypair, peer: PeerId, expiration: u64) -> Result<Vec<u8>, SigningError> {
    let payload = ReservationVoucher {
        relay: relay_key.public().to_peer_id().to_bytes(),
        peer: peer.to_bytes(),
        expiration,
    }
    .encode_to_vec();
    let envelope = SignedEnvelope::new(relay_key, DOMAIN.into(), PAYLOAD_TYPE.to_vec(), payload)?;
    Ok(envelope.into_protobuf_encoding())
}

/// Checks a voucher as a client would: domain, payload type, signature, and that the
/// relay it names is the one that signed it.
pub fn open(bytes: &[u8]) -> Result<Voucher, VoucherError> {
    let envelope = SignedEnvelope::from_protobuf_encoding(bytes)?;
    let (payload, signer) = envelope.payload_and_signing_key(DOMAIN.into(), &PAYLOAD_TYPE)?;
    let message = ReservationVoucher::decode(payload)?;
    let peer_id = |bytes: &[u8]| PeerId::from_bytes(bytes).map_err(|_| VoucherError::PeerId);
    let voucher = Voucher {
        relay: peer_id(&message.relay)?,
        peer: peer_id(&message.peer)?,
        expiration: message.expiration,
    };
    if signer.to_peer_id() != voucher.relay {
        return Err(VoucherError::SignerIsNotRelay);
    }
    Ok(voucher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_voucher_opens_to_what_was_signed() {
        let relay = Keypair::generate_ed25519();
        let peer = PeerId::random();
        let bytes = sign(&relay, peer, 1_800_000_000).unwrap();
        assert_eq!(
            open(&bytes).unwrap(),
            Voucher {
                relay: relay.public().to_peer_id(),
                peer,
                expiration: 1_800_000_000,
            }
        );
    }

    #[test]
    fn a_voucher_naming_another_relay_than_its_signer_is_refused() {
        let signer = Keypair::generate_ed25519();
        let payload = ReservationVoucher {
            relay: PeerId::random().to_bytes(),
            peer: PeerId::random().to_bytes(),
            expiration: 1,
        }
        .encode_to_vec();
        let envelope =
            SignedEnvelope::new(&signer, DOMAIN.into(), PAYLOAD_TYPE.to_vec(), payload).unwrap();
        let err = open(&envelope.into_protobuf_encoding()).unwrap_err();
        assert!(matches!(err, VoucherError::SignerIsNotRelay), "{err}");
    }

    #[test]
    fn another_domain_or_payload_type_is_not_a_voucher() {
        let relay = Keypair::generate_ed25519();
        let payload = ReservationVoucher {
            relay: relay.public().to_peer_id().to_bytes(),
            peer: PeerId::random().to_bytes(),
            expiration: 1,
        }
        .encode_to_vec();
        for (domain, payload_type) in [
            ("libp2p-routing-state", PAYLOAD_TYPE.to_vec()),
            (DOMAIN, vec![0x03, 0x01]),
        ] {
            let envelope =
                SignedEnvelope::new(&relay, domain.into(), payload_type, payload.clone()).unwrap();
            let err = open(&envelope.into_protobuf_encoding()).unwrap_err();
            assert!(matches!(err, VoucherError::Payload(_)), "{err}");
        }
        assert!(matches!(
            open(b"not an envelope"),
            Err(VoucherError::Envelope(_))
        ));
    }
}
