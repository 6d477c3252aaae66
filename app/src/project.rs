//! The project directory: where a user's certificates (and later releases and the device store) live,
//! and the one way files are written there — whole or not at all.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the default project directory (as `--dir` does).
pub const DIR_ENV: &str = "OTAFORGE_DIR";

/// The default project directory: the platform data directory, e.g. `~/.local/share/otaforge`.
pub fn default_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "otaforge")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("otaforge-project"))
}

/// File permissions for what is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// Readable by everyone (certificates).
    Public,
    /// Readable by the owner only, mode 0600 (private keys).
    Secret,
}

/// A file prepared next to its destination, fsynced, waiting to be renamed into place.
///
/// Staging every file of a change first means a full disk or a permission error surfaces before
/// anything the user already had is touched.
pub struct Staged {
    temp: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl Staged {
    /// Writes `bytes` into a temporary file in `dest`'s directory.
    pub fn new(dest: &Path, bytes: &[u8], secrecy: Secrecy) -> std::io::Result<Staged> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let mut temp = tempfile::Builder::new().prefix(".staging-").tempfile_in(dir)?;
        set_mode(temp.as_file(), secrecy)?;
        temp.write_all(bytes)?;
        temp.as_file().sync_all()?;
        Ok(Staged { temp, dest: dest.to_path_buf() })
    }

    /// Renames the file into place (atomic on the same filesystem).
    pub fn commit(self) -> std::io::Result<()> {
        let dest = self.dest;
        self.temp.persist(&dest).map_err(|e| e.error)?;
        sync_dir(dest.parent().unwrap_or(Path::new(".")));
        Ok(())
    }
}

/// Writes one file atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8], secrecy: Secrecy) -> std::io::Result<()> {
    Staged::new(dest, bytes, secrecy)?.commit()
}

/// Creates the directory (and parents) if needed; on Unix the leaf gets mode 0700 because it holds keys.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &fs::File, secrecy: Secrecy) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match secrecy {
        Secrecy::Public => 0o644,
        Secrecy::Secret => 0o600,
    };
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _secrecy: Secrecy) -> std::io::Result<()> {
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Makes the rename durable; not all platforms can open a directory, and failing here
    // cannot undo the rename, so errors are ignored.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_atomic(&path, b"one", Secrecy::Secret).unwrap();
        write_atomic(&path, b"two", Secrecy::Secret).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // No staging files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn dropped_stage_leaves_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        write_atomic(&path, b"old", Secrecy::Public).unwrap();
        drop(Staged::new(&path, b"new", Secrecy::Public).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
