//! The fleet secret: a file every node of a fleet holds (`DUSK_RELAY_MESH_KEY_FILE`),
//! from which the mesh's private-network key is derived. A node without it cannot
//! complete a mesh handshake, and a node with another key fails every one.

use std::path::Path;

use libp2p::pnet::PreSharedKey;
use sha2::{Digest, Sha256};

use super::FleetError;

/// Fewer bytes than this are not a secret worth the name (`openssl rand -hex 32`
/// writes 64).
pub const MIN_SECRET_BYTES: usize = 32;

/// Separates this use of the secret from any other an operator might make of it.
const CONTEXT: &[u8] = b"dusk-relay fleet mesh PSK v1\0";

/// The mesh key derived from the file at `path`. Surrounding whitespace (the newline
/// `openssl rand -hex 32 > file` leaves) does not count.
pub fn load(path: &Path) -> Result<PreSharedKey, FleetError> {
    let error = |reason: String| FleetError::Key {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(error(format!(
            "{} bytes; a fleet secret needs at least {MIN_SECRET_BYTES} random bytes \
             (e.g. `openssl rand -hex 32 > {}`)",
            secret.len(),
            path.display()
        )));
    }
    crate::fsutil::warn_if_readable_by_others(path);
    Ok(derive(secret))
}

fn derive(secret: &[u8]) -> PreSharedKey {
    let mut hash = Sha256::new();
    hash.update(CONTEXT);
    hash.update(secret);
    PreSharedKey::new(hash.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_missing_secrets_are_refused_and_whitespace_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.key");
        assert!(load(&path).is_err());
        std::fs::write(&path, format!("{}\n", "ab".repeat(15))).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("30 bytes"), "{err}");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        let with_newline = load(&path).unwrap();
        std::fs::write(&path, "ab".repeat(32)).unwrap();
        let fingerprint = |k: PreSharedKey| k.fingerprint().to_string();
        assert_eq!(fingerprint(load(&path).unwrap()), fingerprint(with_newline));
        std::fs::write(&path, "cd".repeat(32)).unwrap();
        assert_ne!(fingerprint(load(&path).unwrap()), fingerprint(with_newline));
    }
}
