//! The relay's identity: an ed25519 keypair that persists across restarts so the
//! peer id dusk clients pin never changes.
//!
//! The file holds the raw `Keypair::to_protobuf_encoding()` bytes (68 bytes for ed25519),
//! exactly what the original dusk relay wrote, so an existing relay keeps its peer id.
//! A file that exists but does not decode is never replaced: losing it would change the
//! peer id every client has configured.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use crate::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read keypair {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "keypair file {path} exists but is not a valid libp2p keypair ({reason}); it was left untouched. \
         Restore it from a backup, or delete it to give the relay a new peer id (clients must then be reconfigured)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot create keypair {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Whether [`load_or_create`] found an existing identity or made a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Loaded,
    Created,
}

/// Loads the keypair at `path`, or creates a new ed25519 keypair there if no file exists.
pub fn load_or_create(path: &Path) -> Result<(Keypair, Origin), IdentityError> {
    match load(path) {
        Ok(keypair) => Ok((keypair, Origin::Loaded)),
        Err(IdentityError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Write {
                    path: path.to_owned(),
                    source: io::Error::other(e),
                })?;
            match fsutil::write_new_private(path, &bytes) {
                Ok(()) => Ok((keypair, Origin::Created)),
                // Another process created it between our read and our write: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(path),
                Err(source) => Err(IdentityError::Write {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Loads the keypair at `path`; never creates one.
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = fs::read(path).map_err(|source| IdentityError::Read {
        path: path.to_owned(),
        source,
    })?;
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
        path: path.to_owned(),
        reason: format!("{} bytes, {e}", bytes.len()),
    })?;
    fsutil::warn_if_readable_by_others(path);
    Ok(keypair)
}

/// The identity `dusk-relay healthcheck` dials with: derived from the relay's own key,
/// so the relay knows its probe (and keeps it out of `info` logs) without any shared
/// state. `None` for key types that cannot derive secrets.
pub fn probe_keypair(relay: &Keypair) -> Option<Keypair> {
    let secret = relay.derive_secret(b"dusk-relay healthcheck probe")?;
    Keypair::ed25519_from_bytes(secret).ok()
}
