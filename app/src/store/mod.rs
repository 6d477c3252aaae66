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

use rusqlite::Connection;

pub use blobs::Blobs;
pub use devices::{Device, DeviceState, RequestRecord};
pub use flashed::FlashedImage;
pub use releases::{Channel, NewRelease, PayloadKind, Release, validate_channel};

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
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        crate::project::ensure_dir(dir).map_err(|source| StoreError::Blob { path: dir.into(), source })?;
        let path = dir.join(DB_FILE);
        let conn =
            Connection::open(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&conn)?;
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

/// Seconds since the Unix epoch, as stored.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
