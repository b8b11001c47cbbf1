//! Writing the relay's few files safely: atomically, with owner-only permissions, and
//! never over an existing file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Creates `path` holding `bytes`, readable by the owner only (0600), atomically: the data
/// is written and synced to a temporary file in the same directory, then renamed into
/// place, so a crash leaves either no file or the whole file. Fails with `AlreadyExists`
/// instead of replacing an existing file. Parent directories are created (0700).
///
/// The temporary file has a random name and is created exclusively (`O_CREAT|O_EXCL`,
/// which never follows a symlink): a name known in advance would let anyone who can
/// write to the directory plant a link there and have the keypair written through it.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private(path, bytes, Existing::Keep)
}

/// Like [`write_new_private`], but replaces `path` if it exists (atomically: readers see
/// the old file or the new one, never a mix). For files the relay itself renews.
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_private(path, bytes, Existing::Replace)
}

enum Existing {
    Keep,
    Replace,
}

fn write_private(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ));
    }
    // Mode 0600, removed again if anything below fails.
    let mut tmp = tempfile::Builder::new()
        .prefix(".")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match existing {
        // rename(2) with RENAME_NOREPLACE (or link + unlink where that is missing): never
        // clobbers, unlike a plain rename.
        Existing::Keep => tmp.persist_noclobber(path).map_err(|e| e.error)?,
        Existing::Replace => tmp.persist(path).map_err(|e| e.error)?,
    };
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Creates `dir` and its parents, owner-only (0700) where they are new.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Secrets should be owner-only; say so (without changing the file) if they are not.
pub fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "secret file is readable by group or others; run chmod 600 on it"
                );
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_symlink_planted_at_the_old_temporary_name_is_neither_followed_nor_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("write victim");
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).expect("keys dir");
        // The name the relay once used, predictable from the file name and its pid.
        let planted = keys.join(format!(".keypair.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("plant a symlink");

        let path = keys.join("keypair");
        write_new_private(&path, b"secret").expect("write the keypair");
        assert_eq!(fs::read(&victim).expect("victim"), b"precious");
        let meta = fs::symlink_metadata(&path).expect("keypair");
        assert!(meta.file_type().is_file(), "a regular file, not a link");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).expect("keypair"), b"secret");
        // Nothing of ours is left beside it (the planted link is the attacker's).
        let mut left: Vec<_> = fs::read_dir(&keys)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                planted.file_name().expect("name"),
                path.file_name().expect("name")
            ]
        );
    }

    #[test]
    fn an_existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keypair");
        fs::write(&path, b"first").expect("write");
        let error = write_new_private(&path, b"second").expect_err("the file exists");
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).expect("read"), b"first");
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
