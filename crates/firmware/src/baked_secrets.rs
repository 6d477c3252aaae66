//! Wi-Fi passwords this project ever baked, kept only as salted hashes, so that publishing can
//! refuse an image that contains one (an `ota_config.h` build puts the password into the image's
//! read-only data in clear, and anyone who asks the update endpoint gets the image).
//!
//! Each record is (salt, length, SHA-256(salt ‖ password)). To find a password in an image, every
//! run of printable bytes at least that long is hashed at every offset, with that record's salt:
//! images are mostly binary, so this is a few thousand hashes per record, not millions. The
//! length is kept in clear (it narrows the scan); the file is 0600 like the project's keys. A
//! hash of a short password can be brute-forced by whoever can read the file: that is why it is
//! the owner's alone, and why the password itself is never stored.

use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};

use otaforge_project::{Secrecy, write_atomic};

/// The record's file in the project directory.
pub const FILE: &str = "baked-secrets.json";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Record {
    salt: String,
    len: usize,
    sha256: String,
}

fn hash(salt: &[u8], secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret);
    hex::encode(h.finalize())
}

fn load(dir: &Path) -> Vec<Record> {
    std::fs::read(dir.join(FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Remembers that `password` was baked in this project (once per password).
pub fn remember(dir: &Path, password: &str) -> std::io::Result<()> {
    if password.is_empty() {
        return Ok(());
    }
    let mut records = load(dir);
    let known = records.iter().any(|r| {
        r.len == password.len()
            && hex::decode(&r.salt).is_ok_and(|s| hash(&s, password.as_bytes()) == r.sha256)
    });
    if known {
        return Ok(());
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    records.push(Record {
        salt: hex::encode(salt),
        len: password.len(),
        sha256: hash(&salt, password.as_bytes()),
    });
    let json = serde_json::to_vec_pretty(&records).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(FILE), &json, Secrecy::Secret)
}

/// Whether `image` contains a password this project baked.
pub fn contains_baked_password(dir: &Path, image: &[u8]) -> bool {
    let records = load(dir);
    if records.is_empty() {
        return false;
    }
    let salts: Vec<(Vec<u8>, &Record)> =
        records.iter().filter_map(|r| hex::decode(&r.salt).ok().map(|s| (s, r))).collect();
    let printable = |b: u8| (0x20..0x7F).contains(&b);
    let mut i = 0;
    while i < image.len() {
        if !printable(image[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < image.len() && printable(image[i]) {
            i += 1;
        }
        let run = &image[start..i];
        for (salt, r) in &salts {
            if run.len() >= r.len && run.windows(r.len).any(|w| hash(salt, w) == r.sha256) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_remembered_password_and_keeps_no_clear_text() {
        let dir = tempfile::tempdir().unwrap();
        remember(dir.path(), "correct horse battery").unwrap();
        remember(dir.path(), "correct horse battery").unwrap();
        let file = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(!file.contains("horse"));
        assert_eq!(load(dir.path()).len(), 1, "the same password is kept once");
        let mut image = vec![0u8; 5000];
        image[1000..1021].copy_from_slice(b"correct horse battery");
        assert!(contains_baked_password(dir.path(), &image));
        image[1005] = b'X';
        assert!(!contains_baked_password(dir.path(), &image));
        assert!(!contains_baked_password(tempfile::tempdir().unwrap().path(), b"correct horse battery"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
