//! Private files and directories: a daemon's data directory is 0700 and
//! what holds state or secrets in it (the database, keys, tickets, the pid
//! file) is 0600, whether the daemon made them or found them already there
//! with a looser mode. If it cannot make them so, it says why and stops.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot make {path} private ({what}): {source}; make it owned by the user this runs as, \
     or choose another --data directory"
)]
pub struct PrivateError {
    pub path: PathBuf,
    pub what: &'static str,
    pub source: io::Error,
}

fn err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> PrivateError + 'a {
    move |source| PrivateError {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Creates `dir` (and its parents) if missing, then makes it mode 0700.
/// An existing directory that is shared — `/`, one with the sticky bit
/// (like `/tmp`), or one another user owns — is refused, not chmodded:
/// it was not meant to be the daemon's alone.
pub fn private_dir(dir: &Path) -> Result<(), PrivateError> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = fs::metadata(dir) {
        let shared = |why: &str| PrivateError {
            path: dir.to_path_buf(),
            what: "check",
            source: io::Error::other(format!("{why}; give the daemon a directory of its own")),
        };
        if dir.parent().is_none() {
            return Err(shared("it is the root directory"));
        }
        if meta.permissions().mode() & 0o1000 != 0 {
            return Err(shared("it is a shared directory (sticky bit)"));
        }
        if effective_uid().is_some_and(|me| me != meta.uid()) {
            return Err(shared(&format!("it belongs to user {}", meta.uid())));
        }
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err(dir, "create"))?;
    set_mode(dir, 0o700)
}

/// This process's effective user id, from `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

/// Makes `file` mode 0600 if it exists (a missing file is fine: whoever
/// creates it later does so in a private directory).
pub fn private_file(file: &Path) -> Result<(), PrivateError> {
    match fs::symlink_metadata(file) {
        Ok(m) if m.file_type().is_symlink() => Err(PrivateError {
            path: file.to_path_buf(),
            what: "check",
            source: io::Error::other("it is a symbolic link; replace it with the file itself"),
        }),
        Ok(_) => set_mode(file, 0o600),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(file, "check")(e)),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PrivateError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err(path, "chmod"))?;
    let now = fs::metadata(path)
        .map_err(err(path, "check"))?
        .permissions()
        .mode()
        & 0o777;
    if now != mode {
        return Err(PrivateError {
            path: path.to_path_buf(),
            what: "chmod",
            source: io::Error::other(format!("its mode is still {now:04o}")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_modes_are_tightened_and_missing_files_are_fine() {
        let dir = std::env::temp_dir().join(format!("skr8tr-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.join("db");
        fs::write(&file, "x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        private_dir(&dir).unwrap();
        private_file(&file).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        private_file(&dir.join("missing")).unwrap();
        let nested = dir.join("a/b");
        private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        // Shared directories are refused, not chmodded.
        for shared in [Path::new("/"), Path::new("/tmp")] {
            let e = private_dir(shared).unwrap_err().to_string();
            assert!(e.contains("a directory of its own"), "{e}");
        }
        let tmp = fs::metadata("/tmp").unwrap().permissions().mode();
        assert_eq!(tmp & 0o1777, 0o1777, "left alone");
        std::os::unix::fs::symlink(&file, dir.join("link")).unwrap();
        let e = private_file(&dir.join("link")).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
