//! The relay's identity persists: same peer id across restarts, the original relay's
//! file format, owner-only permissions, and a corrupt file is never replaced.

mod support;

use std::os::unix::fs::PermissionsExt;

use dusk_relay::identity::{self, IdentityError, Origin};
use dusk_relay::{Relay, RelayError};
use support::*;

/// A keypair file as the original dusk relay wrote it: the 68 bytes of
/// `Keypair::to_protobuf_encoding()` for an ed25519 key, and the peer id it had.
const ORIGINAL_KEYPAIR_HEX: &str = "08011240b1bafdb744d419d45e79cf36967c4c342898f051c964607068ccdaae83a72a2cf81bdfb2ffc96ab7038f4907bfefa113826f43f81ba4357dd1583956a2f61896";
const ORIGINAL_PEER_ID: &str = "12D3KooWSWsvsTCeXfwmQKCgQbQM7eRFULMea66nDK2XWdCGmWi9";

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test]
async fn identity_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_relay_in(dir.path(), |_| {}).await;
    let peer_id = first.peer_id;
    let certificate = first.certificate_chain.clone();
    first.shutdown().await;

    let second = start_relay_in(dir.path(), |_| {}).await;
    assert_eq!(second.peer_id, peer_id);
    assert_eq!(
        second.certificate_chain, certificate,
        "the self-signed WSS certificate is reused"
    );

    // And the restarted relay still serves reservations under that id.
    let mut client = Client::new(Some(second.certificate_chain[0].to_vec())).await;
    client.reserve(&relay_addr(&second, Transport::Tcp)).await;
}

#[test]
fn new_keypair_is_68_bytes_owner_only_in_a_created_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/dusk-relay/keypair");
    let (keypair, origin) = identity::load_or_create(&path).unwrap();
    assert_eq!(origin, Origin::Created);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 68);
    assert_eq!(bytes, keypair.to_protobuf_encoding().unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Nothing but the keypair is left in the directory (no temp files).
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(entries.len(), 1);

    let (again, origin) = identity::load_or_create(&path).unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(again.public(), keypair.public());
}

#[test]
fn keypair_written_by_the_original_relay_keeps_its_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keypair");
    std::fs::write(&path, from_hex(ORIGINAL_KEYPAIR_HEX)).unwrap();
    let (keypair, origin) = identity::load_or_create(&path).unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(keypair.public().to_peer_id().to_string(), ORIGINAL_PEER_ID);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        from_hex(ORIGINAL_KEYPAIR_HEX)
    );
}

#[tokio::test]
async fn corrupt_keypair_stops_the_relay_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keypair");
    let mut corrupt = from_hex(ORIGINAL_KEYPAIR_HEX);
    corrupt.truncate(40);
    std::fs::write(&path, &corrupt).unwrap();

    let error = Relay::bind(test_config(dir.path()))
        .await
        .err()
        .expect("bind must fail");
    match &error {
        RelayError::Identity(IdentityError::Corrupt { path: reported, .. }) => {
            assert_eq!(reported, &path)
        }
        other => panic!("unexpected error: {other}"),
    }
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("delete"), "says how to reset: {message}");
    assert_eq!(std::fs::read(&path).unwrap(), corrupt);
}
