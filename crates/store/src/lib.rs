//! The project's durable state: releases, channels, the device inventory and request history in a
//! SQLite file, and firmware blobs stored by content hash next to it.
//!
//! SQLite runs in WAL mode so `otaforge devices` can read while `otaforge serve` writes, and every
//! change is one transaction: a publish is whole or absent, never half.

mod blobs;
mod device_edits;
mod devices;
mod flashed;
mod releases;
mod schema;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub use blobs::{BlobProblem, BlobStamp, Blobs};
pub use device_edits::{USER_NAME_MAX, check_user_name};
pub use devices::{Device, DeviceState, RequestRecord, silent_since_update};
pub use flashed::FlashedImage;
pub use releases::{
    BadRow, Channel, ChannelAuth, GzipPolicy, NewRelease, PayloadKind, Release, RowKey, validate_channel,
};

/// File name of the database inside the project directory.
pub const DB_FILE: &str = "otaforge.db";

/// Store errors, in words that say what to do.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the project database {} cannot be opened: {why}", .path.display())]
    Open { path: PathBuf, why: String },
    #[error(
        "the project database {} is {state}, but {} holds {blobs} firmware file(s) published with it: \
         the releases, channels and device inventory it recorded are not there, and OTA Forge will not \
         start an empty project over them. Restore otaforge.db from a backup (with its otaforge.db-wal, \
         if the backup has one); or, to start an empty project here, move blobs/ aside first (mv {} {}.old)",
        .path.display(), .blobs_dir.display(), .blobs_dir.display(), .blobs_dir.display()
    )]
    LostDatabase { path: PathBuf, state: &'static str, blobs_dir: PathBuf, blobs: usize },
    #[error("database error: {}", sql_words(.0))]
    Sql(rusqlite::Error),
    #[error("cannot write firmware to {}: {}", .path.display(), io_words(.error))]
    Blob { path: PathBuf, error: std::io::Error },
    #[error("cannot use the project directory {}: {}", .path.display(), io_words(.error))]
    Dir { path: PathBuf, error: std::io::Error },
    #[error(
        "release #{release} cannot be used: {problem}. Restore that file from a backup (publishing the \
         same firmware file again also restores it)"
    )]
    Firmware { release: i64, problem: BlobProblem },
    #[error("{0}")]
    BadRow(BadRow),
    #[error("{0}")]
    Invalid(String),
    #[error("no release #{0}")]
    NoSuchRelease(i64),
    #[error(
        "release #{release} is not signed and channel {channel} takes only signed releases: publish the file again with --sign"
    )]
    Unsigned { release: i64, channel: String },
    #[error(
        "the database was written by a newer OTA Forge (schema {found}, this one knows {known}): upgrade OTA Forge"
    )]
    TooNew { found: i64, known: i64 },
}

// Not `#[from]`: rusqlite's error repeats its own message as its source, and error chains would
// print it twice.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Sql(e)
    }
}

/// An SQLite error in words, once (rusqlite's text often repeats SQLite's code name).
fn sql_words(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, Some(msg)) if msg.is_empty() => code.to_string(),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        rusqlite::Error::SqliteFailure(code, None) => code.to_string(),
        other => other.to_string(),
    }
}

/// An I/O error in words that say what is wrong, with the system's own text after them.
pub(crate) fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let words = match e.kind() {
        K::NotFound => "it does not exist",
        K::PermissionDenied => "permission denied (it belongs to another user, or is not writable)",
        K::ReadOnlyFilesystem => "it is on a read-only file system",
        K::StorageFull => "the disk is full",
        K::QuotaExceeded => "the disk quota is used up",
        K::FileTooLarge => "the file is larger than this file system or this process may write",
        _ => return e.to_string(),
    };
    format!("{words} ({e})")
}

/// The project's store: one SQLite connection plus the blob directory.
pub struct Store {
    conn: Connection,
    blobs: Blobs,
    dir: PathBuf,
}

impl Store {
    /// Opens (creating and migrating if needed) the store in a project directory.
    ///
    /// Everything in it is made owner-only on the way: the directory 0700 (with a note when it was
    /// looser), the database and its -wal and -shm files 0600 (SQLite gives new -wal and -shm files
    /// the database's mode).
    ///
    /// A database that is missing or empty while `blobs/` holds firmware is refused before
    /// anything is written ([`StoreError::LostDatabase`]): creating a new one would silently start
    /// an empty project over the old one's files. A failure to open says what is wrong (a
    /// read-only directory, a full disk, another file in the database's place) in words.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE);
        let blobs_dir = dir.join("blobs");
        let blob_count = Blobs::count(&blobs_dir);
        if blob_count > 0 {
            let state = match std::fs::metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("missing"),
                Ok(m) if m.len() == 0 => Some("empty"),
                _ => None,
            };
            if let Some(state) = state {
                return Err(StoreError::LostDatabase { path, state, blobs_dir, blobs: blob_count });
            }
        }
        let dir_err = |error| StoreError::Dir { path: dir.into(), error };
        otaforge_project::ensure_dir(dir).map_err(dir_err)?;
        if let Some(mode) = otaforge_project::make_private(dir).map_err(dir_err)? {
            log::warn!(
                "note: {} was readable by other users (mode {mode:04o}); it is now 0700, as it holds the \
                 private keys, the device database and the firmware",
                dir.display()
            );
        }
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::Open { path: path.clone(), why: explain(dir, &path, None, &e) })?;
        let fail = |e: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            why: explain(dir, &path, Some(&conn), &e),
        };
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.join(format!("{DB_FILE}{suffix}"));
            otaforge_project::make_file_private(&file)
                .map_err(|error| StoreError::Dir { path: file, error })?;
        }
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        if blob_count > 0 {
            // A database file with no tables at all is as empty as a zero-length one.
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(fail)?;
            if tables == 0 {
                return Err(StoreError::LostDatabase {
                    path: path.clone(),
                    state: "empty",
                    blobs_dir,
                    blobs: blob_count,
                });
            }
        }
        enable_wal(&conn).map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(fail)?;
        // Deleted and overwritten rows are zeroed, not left readable in free pages.
        conn.pragma_update(None, "secure_delete", "ON").map_err(fail)?;
        let migrated = match schema::migrate(&conn) {
            Ok(m) => m,
            Err(StoreError::Sql(e)) => return Err(fail(e)),
            Err(other) => return Err(other),
        };
        if migrated {
            // An upgrade may have replaced secrets kept in clear: move the new pages into the
            // database file so the old ones are overwritten now (best effort: readers may delay it).
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let blobs = Blobs::open(&blobs_dir)?;
        Ok(Store { conn, blobs, dir: dir.to_path_buf() })
    }

    /// The project directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob store.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// A counter SQLite bumps whenever another connection commits: cheap change detection.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "data_version", |r| r.get(0))?)
    }
}

/// Why the database in `dir` could not be opened, in words: what the directory and the disk are
/// like (a full disk or a read-only directory show up in SQLite as "disk I/O error", "xShmMap" or
/// "unable to open database file"), else what SQLite's error means.
fn explain(dir: &Path, path: &Path, conn: Option<&Connection>, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode as C;
    let shown = dir.display();
    let code = e.sqlite_error_code();
    match code {
        Some(C::NotADatabase) => {
            return "it is not an SQLite database (damaged, or another file saved under its name): \
                    restore otaforge.db from a backup"
                .to_string();
        }
        Some(C::DatabaseCorrupt) => return "it is damaged: restore otaforge.db from a backup".to_string(),
        Some(C::DatabaseBusy | C::DatabaseLocked) => {
            return "another process keeps it locked (for longer than 5 s): try again when it is done"
                .to_string();
        }
        _ => {}
    }
    let full = |free: Option<u64>| {
        let free = free.map(|f| format!(" ({f} bytes free)")).unwrap_or_default();
        format!(
            "the disk holding {shown} is full{free}: SQLite cannot create the files it needs beside the \
             database. Free some space on it, then try again"
        )
    };
    if let Some(free) = nearly_full(dir) {
        return full(Some(free));
    }
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        match errno_of(dir, path, conn) {
            Some(Errno::EROFS) => {
                return format!(
                    "{shown} is on a read-only file system, and OTA Forge writes there even to read (SQLite \
                     keeps otaforge.db-wal and otaforge.db-shm beside the database). Make it writable \
                     (mount it read-write), or copy the project to a writable place and use --dir"
                );
            }
            Some(Errno::EACCES | Errno::EPERM) => {
                return format!(
                    "{shown} or the database in it is not writable by this user, and OTA Forge writes there \
                     even to read (SQLite keeps otaforge.db-wal and otaforge.db-shm beside the database). \
                     Run as the user who owns the project, or fix its owner and permissions"
                );
            }
            Some(Errno::ENOSPC) => return full(None),
            Some(Errno::EDQUOT) => {
                return format!(
                    "this user's disk quota on {shown} is used up: free some space, then try again"
                );
            }
            _ => {}
        }
    }
    #[cfg(not(unix))]
    let _ = conn;
    match code {
        Some(C::ReadOnly) => format!("it is read-only: make {} writable", path.display()),
        Some(C::DiskFull) => full(None),
        Some(C::SystemIoFailure) => format!(
            "the disk reported an error while reading or writing it ({}): check the disk holding {shown}",
            sql_words(e)
        ),
        Some(C::CannotOpen) => format!(
            "SQLite cannot open or create it or the otaforge.db-wal and otaforge.db-shm files beside it \
             ({}): check that {shown} exists, is a directory and is writable",
            sql_words(e)
        ),
        _ => sql_words(e),
    }
}

/// Bytes free on the disk holding `dir`, when that is too little for SQLite to start (its -shm
/// file alone takes 32 KiB).
fn nearly_full(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let s = nix::sys::statvfs::statvfs(dir).ok()?;
        let free = (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64);
        if free < 128 * 1024 {
            return Some(free);
        }
    }
    let _ = dir;
    None
}

/// What the system said when SQLite failed (when SQLite kept it), else what asking whether the
/// directory and the database are writable says.
#[cfg(unix)]
fn errno_of(dir: &Path, path: &Path, conn: Option<&Connection>) -> Option<nix::errno::Errno> {
    use nix::unistd::{AccessFlags, access};
    let writable = |p: &Path| access(p, AccessFlags::W_OK).err();
    if let Some(e) = writable(dir) {
        return Some(e);
    }
    if path.exists()
        && let Some(e) = writable(path)
    {
        return Some(e);
    }
    // SAFETY: the handle is valid for as long as `conn` is borrowed; the call only reads a field.
    let errno = conn.map(|c| unsafe { rusqlite::ffi::sqlite3_system_errno(c.handle()) }).unwrap_or(0);
    (errno != 0).then(|| nix::errno::Errno::from_raw(errno))
}

/// How long a connection waits for another's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Switches the database to WAL. On a fresh database the switch needs an exclusive lock, and SQLite
/// answers "locked" at once (without the busy timeout) while another connection switches too: try
/// again for as long as the busy timeout would have waited.
fn enable_wal(conn: &Connection) -> Result<(), rusqlite::Error> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            result => return result,
        }
    }
}

/// Seconds since the Unix epoch, as stored.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_with_firmware() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let bytes = vec![0xE9u8; 8192];
        store
            .publish(NewRelease {
                channel: "stable".into(),
                kind: PayloadKind::Sketch,
                version: "1.0".into(),
                chip: None,
                bytes: &bytes,
                md5: String::new(),
                md5_normalized: String::new(),
                flash_size: None,
                file_name: String::new(),
                notes: String::new(),
                signed_by: None,
                trusts: None,
            })
            .unwrap();
        dir
    }

    fn remove_db(dir: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{DB_FILE}{suffix}")));
        }
    }

    #[test]
    fn a_lost_database_beside_firmware_is_refused_and_not_recreated() {
        let dir = project_with_firmware();
        remove_db(dir.path());
        let e = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(e, StoreError::LostDatabase { state: "missing", blobs: 1, .. }), "{e}");
        assert!(!dir.path().join(DB_FILE).exists());

        std::fs::write(dir.path().join(DB_FILE), b"").unwrap();
        let e = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(e, StoreError::LostDatabase { state: "empty", .. }), "{e}");
        assert_eq!(std::fs::metadata(dir.path().join(DB_FILE)).unwrap().len(), 0);

        // A valid SQLite file without a single table is as empty.
        remove_db(dir.path());
        let db = Connection::open(dir.path().join(DB_FILE)).unwrap();
        db.execute_batch("CREATE TABLE t (x); DROP TABLE t;").unwrap();
        drop(db);
        let e = Store::open(dir.path()).err().expect("refused");
        assert!(matches!(e, StoreError::LostDatabase { state: "empty", .. }), "{e}");
        assert!(e.to_string().contains("backup") && e.to_string().contains("mv "), "{e}");
    }

    #[test]
    fn another_file_in_the_database_place_is_said_to_be_one() {
        let dir = project_with_firmware();
        remove_db(dir.path());
        std::fs::write(dir.path().join(DB_FILE), vec![b'x'; 8192]).unwrap();
        let e = Store::open(dir.path()).err().expect("refused").to_string();
        assert!(e.contains("not an SQLite database") && e.contains("backup"), "{e}");
    }

    #[test]
    fn rows_that_cannot_be_read_are_named_and_the_rest_is_read() {
        let dir = project_with_firmware();
        let store = Store::open(dir.path()).unwrap();
        store.conn.execute("UPDATE releases SET size = 'lots' WHERE id = 1", []).unwrap();
        store.conn.execute("INSERT INTO channels (name) VALUES ('beta')", []).unwrap();
        store.conn.execute("UPDATE channels SET paused = X'00' WHERE name = 'beta'", []).unwrap();
        let (good, bad) = store.read_releases(None).unwrap();
        assert!(good.is_empty());
        assert_eq!(bad[0].key, RowKey::Release(1));
        assert_eq!(
            bad[0].to_string(),
            "release #1 cannot be read from the database (its \"size\" column holds text where a whole number belongs)"
        );
        let (good, bad) = store.read_channels().unwrap();
        assert_eq!(good.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["stable"]);
        assert_eq!(bad[0].key, RowKey::Channel("beta".into()));
        let e = store.release(1).unwrap_err().to_string();
        assert!(e.starts_with("release #1 cannot be read"), "{e}");
        assert!(store.channel("beta").unwrap_err().to_string().contains("binary data"));
    }
}
