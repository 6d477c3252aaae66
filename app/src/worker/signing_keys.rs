//! The project's update-signing keys as the Certificate step shows them: public halves only (a
//! private key never leaves the worker), one per chip family.

use std::path::Path;

use otaforge_pki::signing::{self, Family, Keys};

/// One family's current signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyInfo {
    /// The chip family whose devices verify with it.
    pub family: Family,
    /// SHA-256 of the public key, hex (what `otaforge key show` and `releases` print).
    pub fingerprint: String,
    /// The public key, PEM: what a sketch compiles in.
    pub pem: String,
    /// How many keys of this family were replaced (kept in `retired/`).
    pub retired: usize,
}

fn view(keys: &Keys) -> Vec<SigningKeyInfo> {
    Family::ALL
        .into_iter()
        .filter_map(|family| {
            let public = keys.current(family)?.public();
            Some(SigningKeyInfo {
                family,
                fingerprint: public.fingerprint(),
                pem: public.to_pem(),
                retired: keys.retired.iter().filter(|(_, k)| k.family == family).count(),
            })
        })
        .collect()
}

/// The keys the project has now.
pub fn load(dir: &Path) -> Result<Vec<SigningKeyInfo>, otaforge_pki::PkiError> {
    signing::load(dir).map(|k| view(&k))
}

/// New keys for both families; `replace` retires the current ones (a key rotation: see
/// `otaforge key new --help`).
pub fn generate(dir: &Path, replace: bool) -> Result<Vec<SigningKeyInfo>, otaforge_pki::PkiError> {
    signing::generate(dir, &Family::ALL, replace)?;
    load(dir)
}
