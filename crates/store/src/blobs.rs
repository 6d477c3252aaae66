//! Firmware files stored by SHA-256: written to a temporary file, fsynced, renamed. A blob never
//! changes once written, so a download in flight keeps reading the bytes it started with. Blobs
//! are 0600: only the server hands them out, to the devices allowed to have them.
//!
//! A blob can still be damaged from outside (a disk error, a restore gone wrong, a hand edit):
//! [`Blobs::check`] and [`Blobs::load`] say how, in a [`BlobProblem`]. Hashing costs time, so what
//! a check found is remembered (for this process) under the file's identity and change times: the
//! same unchanged file is hashed once.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{StoreError, io_words};
use otaforge_project::{self as project, Secrecy, Staged};

/// The blob directory.
pub struct Blobs {
    dir: PathBuf,
}

/// Why a firmware file cannot be served. The text names the file (inside the project) and says
/// what is wrong with it; [`BlobProblem::what`] says only what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobProblem {
    /// The file is gone.
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file is there but cannot be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the system said, in words.
        why: String,
    },
    /// Shorter than the release.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes in the file.
        found: u64,
        /// Bytes the release has.
        expected: u64,
    },
    /// Longer than the release, or the right length with other content.
    Damaged {
        /// The file.
        path: PathBuf,
        /// Bytes in the file.
        found: u64,
        /// Bytes the release has.
        expected: u64,
    },
}

impl BlobProblem {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            BlobProblem::Missing { path }
            | BlobProblem::Unreadable { path, .. }
            | BlobProblem::Truncated { path, .. }
            | BlobProblem::Damaged { path, .. } => path,
        }
    }

    /// What is wrong, without the file's name: "is missing", "is truncated: 5 of 8 bytes", ….
    pub fn what(&self) -> String {
        match self {
            BlobProblem::Missing { .. } => "is missing".into(),
            BlobProblem::Unreadable { why, .. } => format!("cannot be read ({why})"),
            BlobProblem::Truncated { found, expected, .. } => {
                format!("is truncated: {found} of {expected} bytes")
            }
            BlobProblem::Damaged { found, expected, .. } if found != expected => format!(
                "is damaged: {found} bytes where the release has {expected}, so not what was published"
            ),
            BlobProblem::Damaged { .. } => "is damaged: its content no longer matches its SHA-256".into(),
        }
    }
}

impl std::fmt::Display for BlobProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Named as it lies in the project directory: blobs/<sha256>.bin.
        let path = self.path();
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        write!(f, "its firmware file blobs/{name} {}", self.what())
    }
}

impl std::error::Error for BlobProblem {}

/// What identifies one version of a file: its inode and device, size and change times. A file
/// rewritten, replaced, truncated or touched gets another stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

impl BlobStamp {
    fn of(meta: &fs::Metadata) -> BlobStamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        BlobStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
        }
    }
}

/// What checking a file found, by path, with the stamp the file had then.
type Verdicts = HashMap<PathBuf, (BlobStamp, u64, Result<(), BlobProblem>)>;

fn verdicts() -> &'static Mutex<Verdicts> {
    static VERDICTS: std::sync::OnceLock<Mutex<Verdicts>> = std::sync::OnceLock::new();
    VERDICTS.get_or_init(Default::default)
}

impl Blobs {
    /// Opens the directory: owner-only, like every blob in it (firmware can hold secrets), and
    /// without the staging files a killed publish left behind. Another process's publish in
    /// progress keeps its own (see [`project::remove_abandoned_staging`]).
    pub fn open(dir: &Path) -> Result<Blobs, StoreError> {
        let err = |error| StoreError::Dir { path: dir.to_path_buf(), error };
        project::ensure_dir(dir).map_err(err)?;
        project::make_private(dir).map_err(err)?;
        for entry in fs::read_dir(dir).map_err(err)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".bin") {
                project::make_file_private(&entry.path())
                    .map_err(|error| StoreError::Dir { path: entry.path(), error })?;
            }
        }
        project::remove_abandoned_staging(dir);
        Ok(Blobs { dir: dir.to_path_buf() })
    }

    /// How many firmware files `dir` (a project's `blobs/`) holds; 0 when it does not exist.
    pub fn count(dir: &Path) -> usize {
        let Ok(entries) = fs::read_dir(dir) else { return 0 };
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_suffix(".bin")
                    .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            })
            .count()
    }

    /// Where the blob with this SHA-256 lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.bin"))
    }

    /// Stores `bytes` (durably) and returns its SHA-256 as lowercase hex. A file already stored
    /// under that hash is kept if it is sound and replaced if it is damaged: publishing the same
    /// firmware again repairs it.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha);
        let sound = path.exists() && self.check(&sha, bytes.len() as u64).is_ok();
        if !sound {
            Staged::new(&path, bytes, Secrecy::Secret)
                .and_then(Staged::commit)
                .map_err(|error| StoreError::Blob { path: path.clone(), error })?;
        }
        Ok(sha)
    }

    /// The stamp of the blob's file now.
    pub fn stamp(&self, sha256: &str) -> Result<BlobStamp, BlobProblem> {
        let path = self.path(sha256);
        fs::metadata(&path).map(|m| BlobStamp::of(&m)).map_err(|e| read_problem(path, &e))
    }

    /// Checks only what a glance at the file shows (no reading, no hashing): that it is there and
    /// `size` bytes long.
    pub fn glance(&self, sha256: &str, size: u64) -> Result<(), BlobProblem> {
        let path = self.path(sha256);
        let found = self.stamp(sha256)?.len;
        match found {
            _ if found < size => Err(BlobProblem::Truncated { path, found, expected: size }),
            _ if found > size => Err(BlobProblem::Damaged { path, found, expected: size }),
            _ => Ok(()),
        }
    }

    /// Checks that the blob is there, `size` bytes long and has the hash it is stored under. A
    /// file unchanged since it was last checked (in this process) is not hashed again.
    pub fn check(&self, sha256: &str, size: u64) -> Result<(), BlobProblem> {
        let path = self.path(sha256);
        let stamp = self.stamp(sha256)?;
        if let Some((s, n, verdict)) = verdicts().lock().unwrap_or_else(|p| p.into_inner()).get(&path)
            && *s == stamp
            && *n == size
        {
            return verdict.clone();
        }
        self.load(sha256, size).map(|_| ())
    }

    /// Reads the blob, checking its size and hash; returns the bytes and the file's stamp.
    pub fn load(&self, sha256: &str, size: u64) -> Result<(Arc<[u8]>, BlobStamp), BlobProblem> {
        let path = self.path(sha256);
        let read = fs::File::open(&path).and_then(|mut f| {
            let stamp = BlobStamp::of(&f.metadata()?);
            let mut bytes = Vec::with_capacity(stamp.len as usize);
            std::io::Read::read_to_end(&mut f, &mut bytes)?;
            Ok((bytes, stamp))
        });
        let (bytes, stamp) = read.map_err(|e| read_problem(path.clone(), &e))?;
        let found = bytes.len() as u64;
        let verdict = if found < size {
            Err(BlobProblem::Truncated { path: path.clone(), found, expected: size })
        } else if found != size || hex::encode(Sha256::digest(&bytes)) != sha256 {
            Err(BlobProblem::Damaged { path: path.clone(), found, expected: size })
        } else {
            Ok(())
        };
        verdicts().lock().unwrap_or_else(|p| p.into_inner()).insert(path, (stamp, size, verdict.clone()));
        verdict.map(|()| (bytes.into(), stamp))
    }

    /// Reads a blob and checks it still has the hash it is stored under (see [`Blobs::load`] to
    /// check its size too, and tell a truncated file from a damaged one).
    pub fn get(&self, sha256: &str) -> Result<Arc<[u8]>, BlobProblem> {
        let size = self.stamp(sha256)?.len;
        self.load(sha256, size).map(|(bytes, _)| bytes)
    }
}

fn read_problem(path: PathBuf, e: &std::io::Error) -> BlobProblem {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobProblem::Missing { path }
    } else {
        BlobProblem::Unreadable { path, why: io_words(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_damage_is_named_and_publishing_again_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(&dir.path().join("blobs")).unwrap();
        let bytes = vec![7u8; 10_000];
        let sha = blobs.put(&bytes).unwrap();
        let size = bytes.len() as u64;
        assert_eq!(blobs.check(&sha, size), Ok(()));
        assert_eq!(Blobs::count(&dir.path().join("blobs")), 1);

        let mut flipped = bytes.clone();
        flipped[5000] ^= 1;
        fs::write(blobs.path(&sha), &flipped).unwrap();
        let e = blobs.check(&sha, size).unwrap_err();
        assert!(matches!(e, BlobProblem::Damaged { .. }), "{e}");
        assert!(e.to_string().starts_with(&format!("its firmware file blobs/{sha}.bin is damaged")), "{e}");

        fs::write(blobs.path(&sha), &bytes[..4000]).unwrap();
        assert_eq!(blobs.glance(&sha, size).unwrap_err().what(), "is truncated: 4000 of 10000 bytes");
        assert!(matches!(blobs.check(&sha, size), Err(BlobProblem::Truncated { found: 4000, .. })));

        // The same firmware published again replaces the damaged file.
        assert_eq!(blobs.put(&bytes).unwrap(), sha);
        assert_eq!(blobs.check(&sha, size), Ok(()));

        fs::remove_file(blobs.path(&sha)).unwrap();
        assert!(matches!(blobs.check(&sha, size), Err(BlobProblem::Missing { .. })));
        assert!(matches!(blobs.get(&sha), Err(BlobProblem::Missing { .. })));
    }

    #[test]
    fn an_unchanged_file_is_not_hashed_again_and_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let bytes = vec![1u8; 4096];
        let sha = blobs.put(&bytes).unwrap();
        let (_, stamp) = blobs.load(&sha, 4096).unwrap();
        assert_eq!(blobs.stamp(&sha).unwrap(), stamp);
        // Rewritten in place with other bytes of the same length: a new stamp, so hashed again.
        let mut other = bytes.clone();
        other[0] = 2;
        fs::write(blobs.path(&sha), &other).unwrap();
        assert_ne!(blobs.stamp(&sha).unwrap(), stamp);
        assert!(matches!(blobs.check(&sha, 4096), Err(BlobProblem::Damaged { .. })));
    }
}
