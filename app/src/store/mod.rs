//! The project's durable state: releases, channels, the device inventory and request history in a
//! SQLite file, and firmware blobs stored by content hash next to it.
//!
//! SQLite runs in WAL mode so `otaforge devices` can read while `otaforge serve` writes, and every
//! change is one transaction: a publish is whole or absent, never half.

mod blobs;
mod devices;
mod flashed;
mod releases;
mod schema;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub use blobs::Blobs;
pub use devices::{Device, DeviceState, RequestRecord};
pub use flashed::FlashedImage;
pub use releases::{Channel, ChannelAuth, NewRelease, PayloadKind, Release, validate_channel};

/// File name of the database inside the project directory.
pub const DB_FILE: &str = "otaforge.db";

/// Store errors, in words that say what to do.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the project database {path} cannot be opened: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot write firmware to {path}: {source}")]
    Blob { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("no release #{0}")]
    NoSuchRelease(i64),
    #[error(
        "the database was written by a newer OTA Forge (schema {found}, this one knows {known}): upgrade OTA Forge"
    )]
    TooNew { found: i64, known: i64 },
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
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let dir_err = |source| StoreError::Blob { path: dir.into(), source };
        crate::project::ensure_dir(dir).map_err(dir_err)?;
        if let Some(mode) = crate::project::make_private(dir).map_err(dir_err)? {
            log::warn!(
                "note: {} was readable by other users (mode {mode:04o}); it is now 0700, as it holds the \
                 private keys, the device database and the firmware",
                dir.display()
            );
        }
        let path = dir.join(DB_FILE);
        let conn =
            Connection::open(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.join(format!("{DB_FILE}{suffix}"));
            crate::project::make_file_private(&file)
                .map_err(|source| StoreError::Blob { path: file, source })?;
        }
        conn.busy_timeout(BUSY_TIMEOUT)?;
        enable_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted and overwritten rows are zeroed, not left readable in free pages.
        conn.pragma_update(None, "secure_delete", "ON")?;
        if schema::migrate(&conn)? {
            // An upgrade may have replaced secrets kept in clear: move the new pages into the
            // database file so the old ones are overwritten now (best effort: readers may delay it).
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let blobs = Blobs::open(&dir.join("blobs"))?;
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

/// How long a connection waits for another's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Switches the database to WAL. On a fresh database the switch needs an exclusive lock, and SQLite
/// answers "locked" at once (without the busy timeout) while another connection switches too: try
/// again for as long as the busy timeout would have waited.
fn enable_wal(conn: &Connection) -> Result<(), StoreError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            result => return Ok(result?),
        }
    }
}

/// Seconds since the Unix epoch, as stored.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
