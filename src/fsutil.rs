//! Writing the relay's few files safely: atomically, with owner-only permissions, and
//! never over an existing file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Creates `path` holding `bytes`, readable by the owner only (0600), atomically: the data
/// is written and synced to a temporary file in the same directory, then linked into
/// place, so a crash leaves either no file or the whole file. Fails with `AlreadyExists`
/// instead of replacing an existing file. Parent directories are created (0700).
pub fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_synced(&tmp, bytes).and_then(|()| {
        // hard_link fails if `path` exists, unlike rename: never clobber.
        fs::hard_link(&tmp, path)
    });
    let _ = fs::remove_file(&tmp);
    result?;
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
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
