//! The project directory: where a user's certificates, releases and device store live, the one way
//! files are written there (whole or not at all), who owns what is half-written, and which process
//! may serve it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    ///
    /// The name carries this process's PID and the file stays locked while it is open, so another
    /// process cleaning up ([`remove_abandoned_staging`]) can tell it is in use.
    pub fn new(dest: &Path, bytes: &[u8], secrecy: Secrecy) -> std::io::Result<Staged> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let prefix = format!("{STAGING_PREFIX}{}-", std::process::id());
        let mut temp = tempfile::Builder::new().prefix(&prefix).tempfile_in(dir)?;
        if !try_lock(temp.as_file())? {
            return Err(std::io::Error::other("a fresh staging file is locked by someone else"));
        }
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

/// How staging files are named: `.staging-<pid>-<random>`.
pub const STAGING_PREFIX: &str = ".staging-";

/// A staging file whose lock is free may still be in the instant between its creation and its
/// locking; past this age (or once its process is gone) it is certainly abandoned.
const STAGING_GRACE: Duration = Duration::from_secs(3600);

/// Removes the staging files in `dir` that a killed or crashed writer left behind, and only those:
/// a file is abandoned when nobody holds its lock and the process named in it no longer runs (or
/// it is older than an hour: PIDs are reused, and names without one come from older versions).
pub fn remove_abandoned_staging(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else { continue };
        let Ok(file) = fs::File::open(entry.path()) else { continue };
        if !try_lock(&file).unwrap_or(false) {
            continue; // being written right now
        }
        let owner = rest.split_once('-').and_then(|(pid, _)| pid.parse::<u32>().ok());
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STAGING_GRACE));
        if old || owner.is_some_and(|pid| !process_runs(pid)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Takes the exclusive advisory lock (flock) on an open file without waiting: false if another
/// open file (in this process or another) holds it. The kernel drops it when the holder dies.
fn try_lock(file: &fs::File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(unix)]
fn process_runs(pid: u32) -> bool {
    use nix::errno::Errno;
    let Ok(pid) = i32::try_from(pid) else { return false };
    // Signal 0 only asks whether the process exists; EPERM means it does, as another user.
    !matches!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

#[cfg(not(unix))]
fn process_runs(_pid: u32) -> bool {
    true // only the age tells there
}

/// A role in a project (serving it) that one process at a time may hold: an flock'd file in the
/// project directory holding the holder's PID. Released when dropped, or by the kernel when the
/// process dies, so a crash never locks a project for good.
#[derive(Debug)]
pub struct ProjectLock {
    _file: fs::File,
}

/// Why a [`ProjectLock`] could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it (its PID, when the lock file names one).
    #[error("held by {}", .pid.map_or("another process".to_string(), |p| format!("process {p}")))]
    Held {
        /// The holder's PID.
        pid: Option<u32>,
    },
    /// The lock file could not be opened.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl ProjectLock {
    /// Takes the lock named `name` in `dir`, without waiting.
    pub fn acquire(dir: &Path, name: &str) -> Result<ProjectLock, LockError> {
        let path = dir.join(name);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut options = fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        if !try_lock(&file).map_err(io)? {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held { pid: text.trim().parse().ok() });
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(ProjectLock { _file: file })
    }
}

/// Makes an existing project directory readable by its owner only (it holds the private keys,
/// the device database and the firmware). Returns the looser mode it had, so the caller can say
/// that it changed it.
pub fn make_private(dir: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            return Ok(Some(mode));
        }
    }
    let _ = dir;
    Ok(None)
}

/// Tightens an existing file to owner-only (0600) if it is looser; a missing file is fine.
pub fn make_file_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Gone in between is fine too (SQLite deletes -wal and -shm as the last connection closes).
        let tightened = match fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match tightened {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let _ = path;
    Ok(())
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
    fn only_abandoned_staging_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob.bin");
        // In use by this (running) process: kept, although its lock is what says so.
        let live = Staged::new(&dest, b"live", Secrecy::Secret).unwrap();
        // Left by a process that has exited: removed.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead = dir.path().join(format!("{STAGING_PREFIX}{}-abc", gone.id()));
        fs::write(&dead, b"partial").unwrap();
        // Its PID runs (ours) and nobody locks it, but it is fresh: possibly just created.
        let fresh = dir.path().join(format!("{STAGING_PREFIX}{}-def", std::process::id()));
        fs::write(&fresh, b"partial").unwrap();
        remove_abandoned_staging(dir.path());
        assert!(!dead.exists());
        assert!(fresh.exists());
        live.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"live");
    }

    #[test]
    fn a_project_lock_is_held_once_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = ProjectLock::acquire(dir.path(), "serve.lock").unwrap();
        match ProjectLock::acquire(dir.path(), "serve.lock") {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        drop(lock);
        ProjectLock::acquire(dir.path(), "serve.lock").unwrap();
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
