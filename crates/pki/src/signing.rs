//! The project's firmware signing keys: one per device family, because the cores verify differently.
//!
//! - **ESP8266**: RSA-2048, RSASSA-PKCS1-v1_5 over SHA-256. The core's `BearSSL::SigningVerifier`
//!   (esp8266/Arduino `cores/esp8266/Updater.cpp`, `libraries/ESP8266WiFi/src/BearSSLHelpers.cpp`)
//!   reports `length()` as the RSA modulus size and reads exactly that many signature bytes; its EC
//!   branch hashes with SHA-256 but passes a raw (not DER) signature of the same length, which
//!   `signing.py` never produces — so RSA is the one key type that verifies on every core since 2.6.0.
//! - **ESP32** (arduino-esp32 ≥ 3.3, `libraries/Update/src/Updater_Signing.cpp`): the verifier parses
//!   the key with `mbedtls_pk_parse_public_key` and checks ECDSA (DER signature, as
//!   `tools/bin_signing.py` writes it) or RSA-PSS. ECDSA P-256 with SHA-256: a 64-byte key in the
//!   firmware, a ~1 ms verify on the chip, and a signature that fits the 512-byte trailer with room.
//!
//! Private keys are 0600 in the project directory, never served and never baked; replacing one
//! moves the old pair to `retired/` so releases it signed stay recognisable.

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use rcgen::{KeyPair, PublicKeyData, SigningKey as _};
use sha2::{Digest, Sha256};

use otaforge_project::Secrecy;

use super::{PkiError, RETIRED_DIR, commit, io_err, retire, stage};

/// Which device family a signing key (and a signature format) is for.
pub use otaforge_protocol::Family;

/// What a family's signing key is: ESP8266 keys are RSA-2048 PKCS#1 v1.5 SHA-256, ESP32-family
/// keys ECDSA P-256 SHA-256 (DER). A trait because [`Family`] lives in `otaforge-protocol`.
pub trait FamilyKeys {
    /// The private key's file name in the project directory.
    fn key_file(self) -> &'static str;
    /// What the key is, in words.
    fn algorithm(self) -> &'static str;
}

impl FamilyKeys for Family {
    fn key_file(self) -> &'static str {
        match self {
            Family::Esp8266 => "signing-esp8266.key",
            Family::Esp32 => "signing-esp32.key",
        }
    }

    fn algorithm(self) -> &'static str {
        match self {
            Family::Esp8266 => "RSA-2048, PKCS#1 v1.5, SHA-256",
            Family::Esp32 => "ECDSA P-256, SHA-256",
        }
    }
}

fn rcgen_alg(family: Family) -> &'static rcgen::SignatureAlgorithm {
    match family {
        Family::Esp8266 => &rcgen::PKCS_RSA_SHA256,
        Family::Esp32 => &rcgen::PKCS_ECDSA_P256_SHA256,
    }
}

/// SHA-256 of a public key's SubjectPublicKeyInfo (DER), hex: the fingerprint releases, `key
/// show` and the config block's key are known by (the family does not enter it).
pub fn fingerprint(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

/// A fingerprint as people read it: its first 16 hex digits (what `otaforge key show` prints).
pub fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(16)]
}

/// A public signing key: what devices hold and what signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The family whose format this key signs.
    pub family: Family,
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

impl PublicKey {
    /// Parses a PEM public key (`-----BEGIN PUBLIC KEY-----`) for `family`.
    pub fn from_pem(family: Family, pem: &str) -> Result<PublicKey, PkiError> {
        let der = pem_body(pem, "PUBLIC KEY").ok_or_else(|| PkiError::CorruptKey {
            file: "public key".into(),
            why: "not a PEM public key".into(),
        })?;
        Ok(PublicKey { family, spki_der: der })
    }

    /// PEM, as `Update.installSignature` / `BearSSL::PublicKey` take it.
    pub fn to_pem(&self) -> String {
        let b64 = base64_encode(&self.spki_der);
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }

    /// SHA-256 of the SubjectPublicKeyInfo, hex: how releases record who signed them.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.spki_der)
    }

    /// Checks `signature` over `message` as the family's device does.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let alg: &dyn sig::VerificationAlgorithm = match self.family {
            Family::Esp8266 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Family::Esp32 => &sig::ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, &self.spki_der).verify(message, signature).is_ok()
    }

    /// The key as a C header, the way `tools/signing.py --mode header` / `bin_signing.py` emit one.
    pub fn to_c_header(&self) -> String {
        let guard = match self.family {
            Family::Esp8266 => "OTAFORGE_SIGNING_KEY_ESP8266",
            Family::Esp32 => "OTAFORGE_SIGNING_KEY_ESP32",
        };
        let mut out = format!(
            "// OTA Forge firmware signing public key ({}, {}).\n// Fingerprint (SHA-256 of the key): {}\n// Public: safe to bake into firmware.\n#pragma once\nstatic const char {guard}_PEM[] =\n",
            self.family,
            self.family.algorithm(),
            self.fingerprint()
        );
        for line in self.to_pem().lines() {
            out.push_str(&format!("    \"{line}\\n\"\n"));
        }
        out.push_str(";\n");
        out
    }
}

/// A private signing key, loaded from the project directory.
pub struct PrivateKey {
    family: Family,
    key: KeyPair,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "PrivateKey({}, {})", self.family, self.public().fingerprint())
    }
}

impl PrivateKey {
    /// The family this key signs for.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey { family: self.family, spki_der: self.key.subject_public_key_info() }
    }

    /// Signs `message` in the family's algorithm (the hash is part of the algorithm).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.key.sign(message).map_err(|e| PkiError::Generate(e.to_string()))
    }
}

/// The project's signing keys as found on disk.
#[derive(Debug, Default)]
pub struct Keys {
    /// The current key of each family that has one.
    pub current: Vec<PrivateKey>,
    /// Public halves of replaced keys, newest first, with the folder each was retired into.
    pub retired: Vec<(PathBuf, PublicKey)>,
}

impl Keys {
    /// The current key for `family`, if the project has one.
    pub fn current(&self, family: Family) -> Option<&PrivateKey> {
        self.current.iter().find(|k| k.family == family)
    }

    /// Whose key made a signature with this public-key fingerprint.
    pub fn signer(&self, fingerprint: &str) -> Signer {
        if self.current.iter().any(|k| k.public().fingerprint() == fingerprint) {
            Signer::Current
        } else if self.retired.iter().any(|(_, k)| k.fingerprint() == fingerprint) {
            Signer::Retired
        } else {
            Signer::Unknown
        }
    }

    /// The private half of any key this project has for `family`, current or retired, by its
    /// fingerprint: a carrier release is signed by the retired key the fleet still trusts.
    pub fn private(&self, family: Family, fingerprint: &str) -> Result<Option<KeyRef<'_>>, PkiError> {
        if let Some(k) = self.current(family).filter(|k| k.public().fingerprint() == fingerprint) {
            return Ok(Some(KeyRef::Current(k)));
        }
        for (folder, public) in &self.retired {
            if public.family == family && public.fingerprint() == fingerprint {
                return Ok(read_key(&folder.join(family.key_file()), family)?.map(KeyRef::Retired));
            }
        }
        Ok(None)
    }

    /// Every public key this project has ever used for `family`, current first.
    pub fn all_public(&self, family: Family) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> =
            self.current.iter().filter(|k| k.family == family).map(PrivateKey::public).collect();
        keys.extend(self.retired.iter().filter(|(_, k)| k.family == family).map(|(_, k)| k.clone()));
        keys
    }
}

/// A private key found by [`Keys::private`]: the current one (already loaded) or a retired one
/// (read from `retired/` for this use).
#[derive(Debug)]
pub enum KeyRef<'a> {
    /// The family's current key.
    Current(&'a PrivateKey),
    /// A replaced key.
    Retired(PrivateKey),
}

impl std::ops::Deref for KeyRef<'_> {
    type Target = PrivateKey;
    fn deref(&self) -> &PrivateKey {
        match self {
            KeyRef::Current(k) => k,
            KeyRef::Retired(k) => k,
        }
    }
}

/// Who made a signature, as far as this project knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    /// The project's current key.
    Current,
    /// A key this project replaced (it is in `retired/`).
    Retired,
    /// No key of this project's.
    Unknown,
}

/// Loads the project's signing keys (none is fine: signing is opt-in).
pub fn load(dir: &Path) -> Result<Keys, PkiError> {
    let mut keys = Keys::default();
    for family in Family::ALL {
        if let Some(key) = read_key(&dir.join(family.key_file()), family)? {
            keys.current.push(key);
        }
    }
    let retired_root = dir.join(RETIRED_DIR);
    let mut folders: Vec<PathBuf> = fs::read_dir(&retired_root)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    folders.sort();
    folders.reverse();
    for folder in folders {
        for family in Family::ALL {
            if let Ok(Some(key)) = read_key(&folder.join(family.key_file()), family) {
                keys.retired.push((folder.clone(), key.public()));
            }
        }
    }
    Ok(keys)
}

fn read_key(path: &Path, family: Family) -> Result<Option<PrivateKey>, PkiError> {
    let pem = match fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let file = path.display().to_string();
    let key = KeyPair::from_pem_and_sign_algo(&pem, rcgen_alg(family))
        .map_err(|e| PkiError::CorruptKey { file, why: e.to_string() })?;
    Ok(Some(PrivateKey { family, key }))
}

/// Makes a new signing key for each of `families`. An existing key is kept unless `replace`; a
/// replaced key moves to `retired/` (devices running releases signed by it keep needing it: rotate
/// through a carrier release, see `otaforge key --help`).
pub fn generate(dir: &Path, families: &[Family], replace: bool) -> Result<Keys, PkiError> {
    otaforge_project::ensure_dir(dir).map_err(io_err(dir))?;
    let existing: Vec<Family> =
        families.iter().copied().filter(|f| dir.join(f.key_file()).exists()).collect();
    if !existing.is_empty() && !replace {
        return Err(PkiError::SigningKeyExists { dir: dir.to_path_buf() });
    }
    let mut staged = Vec::new();
    for family in families {
        let key = KeyPair::generate_for(rcgen_alg(*family)).map_err(|e| PkiError::Generate(e.to_string()))?;
        staged.push(stage(dir, family.key_file(), &key.serialize_pem(), Secrecy::Secret)?);
    }
    let names: Vec<&str> = existing.iter().map(|f| f.key_file()).collect();
    retire(dir, &names)?;
    commit(staged, dir)?;
    load(dir)
}

fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    base64_decode(&pem[start..stop])
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_sign_and_verify_and_a_replaced_key_is_retired() {
        let dir = tempfile_dir();
        let keys = generate(&dir, &Family::ALL, false).unwrap();
        for family in Family::ALL {
            let key = keys.current(family).unwrap();
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &fs::metadata(dir.join(family.key_file())).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "{family} key mode");
            let signature = key.sign(b"firmware").unwrap();
            assert!(key.public().verify(b"firmware", &signature));
            assert!(!key.public().verify(b"firmwarE", &signature));
            let round = PublicKey::from_pem(family, &key.public().to_pem()).unwrap();
            assert_eq!(round, key.public());
        }
        assert_eq!(keys.current(Family::Esp8266).unwrap().sign(b"x").unwrap().len(), 256);

        assert!(matches!(generate(&dir, &[Family::Esp8266], false), Err(PkiError::SigningKeyExists { .. })));
        let old = keys.current(Family::Esp8266).unwrap().public().fingerprint();
        let new = generate(&dir, &[Family::Esp8266], true).unwrap();
        assert_ne!(new.current(Family::Esp8266).unwrap().public().fingerprint(), old);
        assert_eq!(new.signer(&old), Signer::Retired);
        assert_eq!(new.signer(&"0".repeat(64)), Signer::Unknown);
        assert_eq!(new.all_public(Family::Esp8266).len(), 2);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 200) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "otaforge-signing-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }
}
