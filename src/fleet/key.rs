//! The fleet secret: a file every node of a fleet holds (`DUSK_RELAY_MESH_KEY_FILE`),
//! from which the mesh's handshake key is derived. A node without it cannot complete a
//! mesh handshake, and a node with another fleet's fails every one.
//!
//! The key is the mesh's noise handshake *prologue*: noise mixes the prologue into the
//! handshake hash that every handshake message is authenticated with, so two ends with
//! different prologues fail at the first encrypted handshake message, before either
//! end has sent or accepted anything else. libp2p's private networks (pnet) would do
//! the same with a second cipher over every byte: measured with `dusk-relay-bench
//! --scenario fleet`, pnet's XSalsa20 took 37 % of a node's CPU (BENCHMARKS.md,
//! "Fleet"), while the prologue costs nothing after the handshake.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::FleetError;

/// Fewer bytes than this are not a secret worth the name (`openssl rand -hex 32`
/// writes 64).
pub const MIN_SECRET_BYTES: usize = 32;

/// Separates this use of the secret from any other an operator might make of it.
const CONTEXT: &[u8] = b"dusk-relay fleet mesh handshake v1\0";

/// What the nodes of one fleet share: the key their mesh handshakes are bound to.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetKey([u8; 32]);

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetKey({})", self.fingerprint())
    }
}

impl FleetKey {
    /// The noise prologue of every mesh handshake.
    pub fn prologue(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// A short hash that tells operators whether two nodes hold the same secret,
    /// without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"dusk-relay fleet key fingerprint\0");
        hash.update(self.0);
        hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The mesh key derived from the file at `path`. Surrounding whitespace (the newline
/// `openssl rand -hex 32 > file` leaves) does not count.
pub fn load(path: &Path) -> Result<FleetKey, FleetError> {
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

fn derive(secret: &[u8]) -> FleetKey {
    let mut hash = Sha256::new();
    hash.update(CONTEXT);
    hash.update(secret);
    FleetKey(hash.finalize().into())
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
        assert_eq!(load(&path).unwrap(), with_newline);
        std::fs::write(&path, "cd".repeat(32)).unwrap();
        let other = load(&path).unwrap();
        assert_ne!(other, with_newline);
        assert_ne!(other.fingerprint(), with_newline.fingerprint());
        assert!(!format!("{other:?}").contains(&format!("{:02x}", other.0[0]).repeat(2)));
    }
}
