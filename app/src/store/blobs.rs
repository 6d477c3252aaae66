//! Firmware files stored by SHA-256: written to a temporary file, fsynced, renamed. A blob never
//! changes once written, so a download in flight keeps reading the bytes it started with. Blobs
//! are 0600: only the server hands them out, to the devices allowed to have them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::StoreError;
use crate::project::{self, Secrecy, Staged};

/// The blob directory.
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Opens the directory: owner-only, like every blob in it (firmware can hold secrets), and
    /// without the staging files a killed publish left behind. Another process's publish in
    /// progress keeps its own (see [`project::remove_abandoned_staging`]).
    pub fn open(dir: &Path) -> Result<Blobs, StoreError> {
        let err = |source| StoreError::Blob { path: dir.to_path_buf(), source };
        project::ensure_dir(dir).map_err(err)?;
        project::make_private(dir).map_err(err)?;
        for entry in fs::read_dir(dir).map_err(err)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".bin") {
                project::make_file_private(&entry.path()).map_err(err)?;
            }
        }
        project::remove_abandoned_staging(dir);
        Ok(Blobs { dir: dir.to_path_buf() })
    }

    /// Where the blob with this SHA-256 lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.bin"))
    }

    /// Stores `bytes` (durably) and returns its SHA-256 as lowercase hex.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha);
        if !path.exists() {
            Staged::new(&path, bytes, Secrecy::Secret)
                .and_then(Staged::commit)
                .map_err(|source| StoreError::Blob { path: path.clone(), source })?;
        }
        Ok(sha)
    }

    /// Reads a blob and checks it still has the hash it is stored under.
    pub fn get(&self, sha256: &str) -> Result<Arc<[u8]>, StoreError> {
        let path = self.path(sha256);
        let bytes = fs::read(&path).map_err(|source| StoreError::Blob { path: path.clone(), source })?;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(StoreError::Invalid(format!(
                "{} is damaged: its content no longer matches its hash",
                path.display()
            )));
        }
        Ok(bytes.into())
    }
}
