//! Trust material shared by the update server and the devices.
//!
//! Default: a private CA (baked into firmware) signs a server certificate (served by `otaforge serve`),
//! so the server certificate can be renewed without touching devices. Pin-leaf mode reproduces the
//! tutorial's single self-signed certificate, with the warning it deserves.
//!
//! The project directory holds `ca.pem`, `ca.key`, `server.pem`, `server.key`. Keys are mode 0600.
//! Existing material is never overwritten unless asked; what is replaced moves to `retired/`.

pub mod export;
pub mod host;
pub mod inspect;
pub mod issue;
pub mod local;
pub mod signing;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rcgen::{KeyPair, PublicKeyData};
use time::OffsetDateTime;

pub use host::{Host, HostError};
pub use inspect::{CertInfo, Warning, Which};
pub use issue::{CertAndKey, DEFAULT_SERVER_DAYS, IssueRequest, KeyKind, TrustMode};

use otaforge_project::{self as project, Secrecy, Staged};

/// CA certificate file name.
pub const CA_CERT: &str = "ca.pem";
/// CA private key file name.
pub const CA_KEY: &str = "ca.key";
/// Server certificate file name.
pub const SERVER_CERT: &str = "server.pem";
/// Server private key file name.
pub const SERVER_KEY: &str = "server.key";
/// Where replaced material is moved, one timestamped folder per replacement.
pub const RETIRED_DIR: &str = "retired";

/// Everything that can go wrong with trust material, each naming what to do.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("no host given: name at least one host or IP address devices will use")]
    NoHosts,
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{0} days is not a usable validity: give 1 to 36500")]
    BadDays(u32),
    #[error("could not generate the certificate: {0}")]
    Generate(String),
    #[error("{file} is not a valid certificate: {why}")]
    CorruptCert { file: String, why: String },
    #[error("{file} is not a valid private key: {why}")]
    CorruptKey { file: String, why: String },
    #[error(
        "{dir} holds only part of the certificate material ({missing} is missing): restore it, or use --force to start over"
    )]
    Incomplete { dir: PathBuf, missing: &'static str },
    #[error(
        "{dir} already holds certificates; nothing was changed. To renew the server certificate use \"cert renew\". To replace the CA use --force: devices that trust the old CA will stop updating until reflashed"
    )]
    Exists { dir: PathBuf },
    #[error("no certificates in {dir} yet: generate them first (otaforge cert new --host HOST)")]
    NoMaterial { dir: PathBuf },
    #[error(
        "this project pins one self-signed certificate, so there is no CA to renew from: a new certificate means reflashing every device (otaforge cert new --pin-leaf --force), or switch to a private CA"
    )]
    PinnedCannotRenew,
    #[error(
        "{dir} already holds a signing key; nothing was changed. Replacing it (--replace) means devices that run releases signed by it can verify only images signed by it: publish a carrier release first (otaforge key --help)"
    )]
    SigningKeyExists { dir: PathBuf },
    #[error("cannot write to {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

/// The certificate material of one project, as read from disk.
#[derive(Debug, Clone)]
pub struct Material {
    /// The private CA, or `None` in pin-leaf mode.
    pub ca: Option<CertAndKey>,
    /// The certificate and key the server presents.
    pub server: CertAndKey,
}

impl Material {
    /// How devices trust this server.
    pub fn mode(&self) -> TrustMode {
        if self.ca.is_some() { TrustMode::PrivateCa } else { TrustMode::PinLeaf }
    }

    /// The certificate baked into devices: the CA, or the pinned leaf.
    pub fn trust_anchor_pem(&self) -> &str {
        match &self.ca {
            Some(ca) => &ca.cert_pem,
            None => &self.server.cert_pem,
        }
    }

    /// Loads the material in `dir`; `None` when there is none yet. Every file is parsed, so a
    /// corrupt or mismatched file is reported here rather than at the first device handshake.
    pub fn load(dir: &Path) -> Result<Option<Material>, PkiError> {
        let read = |name: &'static str| -> Result<Option<String>, PkiError> {
            let path = dir.join(name);
            match fs::read(&path) {
                Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                    if name.ends_with(".key") {
                        PkiError::CorruptKey { file: name.into(), why: "not PEM text".into() }
                    } else {
                        PkiError::CorruptCert { file: name.into(), why: "not PEM text".into() }
                    }
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(PkiError::Io { path, source: e }),
            }
        };
        let files = [read(CA_CERT)?, read(CA_KEY)?, read(SERVER_CERT)?, read(SERVER_KEY)?];
        let incomplete = |missing| PkiError::Incomplete { dir: dir.to_path_buf(), missing };
        let [ca_cert, ca_key, server_cert, server_key] = files;
        let ca = match (ca_cert, ca_key) {
            (Some(cert_pem), Some(key_pem)) => Some(CertAndKey { cert_pem, key_pem }),
            (None, None) => None,
            (Some(_), None) => return Err(incomplete(CA_KEY)),
            (None, Some(_)) => return Err(incomplete(CA_CERT)),
        };
        let server = match (server_cert, server_key) {
            (Some(cert_pem), Some(key_pem)) => CertAndKey { cert_pem, key_pem },
            (None, None) if ca.is_none() => return Ok(None),
            (Some(_), _) => return Err(incomplete(SERVER_KEY)),
            (None, _) => return Err(incomplete(SERVER_CERT)),
        };
        let material = Material { ca, server };
        material.parse()?;
        Ok(Some(material))
    }

    /// Parses every file; returns the CA (if any) and server certificate details.
    fn parse(&self) -> Result<(Option<CertInfo>, CertInfo), PkiError> {
        let ca = match &self.ca {
            Some(ca) => {
                parse_key(&ca.key_pem, CA_KEY)?;
                Some(CertInfo::from_pem(&ca.cert_pem, CA_CERT)?)
            }
            None => None,
        };
        parse_key(&self.server.key_pem, SERVER_KEY)?;
        Ok((ca, CertInfo::from_pem(&self.server.cert_pem, SERVER_CERT)?))
    }

    /// Everything a user needs to judge this material, checked against `hosts` devices will use.
    pub fn report(&self, dir: &Path, hosts: &[Host], now: OffsetDateTime) -> Result<CertReport, PkiError> {
        let (ca, server) = self.parse()?;
        let mut warnings = Vec::new();
        if let Some(ca_info) = &ca {
            warnings.extend(inspect::certificate_warnings(Which::Ca, ca_info, now));
            if !ca_info.is_ca {
                warnings.push(Warning::CaWithoutCaFlag);
            }
            if !inspect::is_signed_by(&server, ca_info) {
                warnings.push(Warning::NotSignedByCa);
            }
        }
        warnings.extend(inspect::certificate_warnings(Which::Server, &server, now));
        warnings.extend(inspect::name_warnings(&server, hosts));
        if ca.is_none() {
            warnings.push(Warning::PinnedLeaf { days_left: server.days_left(now) });
        }
        if let Some(ca_pair) = &self.ca
            && let Some(ca_info) = &ca
            && !key_matches(&ca_pair.key_pem, ca_info)
        {
            warnings.push(Warning::KeyMismatch { which: Which::Ca });
        }
        if !key_matches(&self.server.key_pem, &server) {
            warnings.push(Warning::KeyMismatch { which: Which::Server });
        }
        let mut covered: Vec<Host> = server.dns_sans.iter().filter_map(|d| Host::parse(d).ok()).collect();
        for h in hosts {
            if !covered.contains(h) {
                covered.push(h.clone());
            }
        }
        Ok(CertReport { dir: dir.to_path_buf(), mode: self.mode(), ca, server, hosts: covered, warnings })
    }
}

fn parse_key(pem: &str, file: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::CorruptKey { file: file.into(), why: e.to_string() })
}

fn key_matches(key_pem: &str, cert: &CertInfo) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|k| k.subject_public_key_info() == cert.spki_der)
}

/// A project's certificates, checked and ready to show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertReport {
    /// The project directory.
    pub dir: PathBuf,
    /// CA or pinned leaf.
    pub mode: TrustMode,
    /// The private CA (absent in pin-leaf mode).
    pub ca: Option<CertInfo>,
    /// The server certificate.
    pub server: CertInfo,
    /// Hosts the server certificate names, plus the ones asked about.
    pub hosts: Vec<Host>,
    /// Problems and advice, most serious first.
    pub warnings: Vec<Warning>,
}

impl CertReport {
    /// The fingerprint of what devices trust (CA, or the pinned leaf).
    pub fn anchor_fingerprint(&self) -> &str {
        &self.ca.as_ref().unwrap_or(&self.server).sha256
    }
}

/// Loads and checks the project's material; `None` if there is none yet.
pub fn load(dir: &Path, hosts: &[Host]) -> Result<Option<CertReport>, PkiError> {
    match Material::load(dir)? {
        Some(m) => m.report(dir, hosts, OffsetDateTime::now_utc()).map(Some),
        None => Ok(None),
    }
}

/// Makes new material. Refuses when material exists unless `force`; with `force` the old files move
/// to `retired/<time>/` so nothing is lost.
pub fn generate(dir: &Path, req: &IssueRequest, force: bool) -> Result<CertReport, PkiError> {
    if !force && any_material(dir) {
        return Err(PkiError::Exists { dir: dir.to_path_buf() });
    }
    let issued = issue::issue(req)?;
    project::ensure_dir(dir).map_err(io_err(dir))?;
    let mut staged = Vec::new();
    if let Some(ca) = &issued.ca {
        staged.push(stage(dir, CA_CERT, &ca.cert_pem, Secrecy::Public)?);
        staged.push(stage(dir, CA_KEY, &ca.key_pem, Secrecy::Secret)?);
    }
    staged.push(stage(dir, SERVER_CERT, &issued.server.cert_pem, Secrecy::Public)?);
    staged.push(stage(dir, SERVER_KEY, &issued.server.key_pem, Secrecy::Secret)?);
    retire(dir, &[CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY])?;
    commit(staged, dir)?;
    let material = Material { ca: issued.ca, server: issued.server };
    material.report(dir, &req.hosts, OffsetDateTime::now_utc())
}

/// Issues a new server certificate from the project's CA. `hosts` defaults to the current
/// certificate's names; the key kind stays what it was. Devices keep working: they trust the CA.
pub fn renew(dir: &Path, hosts: Option<Vec<Host>>, days: u32) -> Result<CertReport, PkiError> {
    let material = Material::load(dir)?.ok_or_else(|| PkiError::NoMaterial { dir: dir.to_path_buf() })?;
    let Some(ca) = &material.ca else { return Err(PkiError::PinnedCannotRenew) };
    let current = CertInfo::from_pem(&material.server.cert_pem, SERVER_CERT)?;
    let hosts = match hosts {
        Some(h) if !h.is_empty() => h,
        _ => current.dns_sans.iter().filter_map(|d| Host::parse(d).ok()).collect(),
    };
    let key = if current.key.starts_with("RSA") { KeyKind::Rsa2048 } else { KeyKind::EcdsaP256 };
    let req = IssueRequest { hosts, key, mode: TrustMode::PrivateCa, server_days: days };
    let server = issue::renew_server(ca, &req)?;
    let staged = vec![
        stage(dir, SERVER_CERT, &server.cert_pem, Secrecy::Public)?,
        stage(dir, SERVER_KEY, &server.key_pem, Secrecy::Secret)?,
    ];
    retire(dir, &[SERVER_CERT, SERVER_KEY])?;
    commit(staged, dir)?;
    let material = Material { ca: material.ca, server };
    material.report(dir, &req.hosts, OffsetDateTime::now_utc())
}

fn any_material(dir: &Path) -> bool {
    [CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY].iter().any(|f| dir.join(f).exists())
}

fn stage(dir: &Path, name: &str, text: &str, secrecy: Secrecy) -> Result<Staged, PkiError> {
    let path = dir.join(name);
    Staged::new(&path, text.as_bytes(), secrecy).map_err(io_err(&path))
}

fn commit(staged: Vec<Staged>, dir: &Path) -> Result<(), PkiError> {
    for s in staged {
        s.commit().map_err(io_err(dir))?;
    }
    Ok(())
}

/// Moves the named files that exist into a new `retired/<UTC time>/` folder.
pub(crate) fn retire(dir: &Path, names: &[&str]) -> Result<(), PkiError> {
    let present: Vec<&&str> = names.iter().filter(|n| dir.join(n).exists()).collect();
    if present.is_empty() {
        return Ok(());
    }
    let stamp = OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z-[subsecond digits:6]"
        ))
        .unwrap_or_else(|_| "unknown-time".into());
    let to = dir.join(RETIRED_DIR).join(stamp);
    project::ensure_dir(&to).map_err(io_err(&to))?;
    for name in present {
        fs::rename(dir.join(name), to.join(name)).map_err(io_err(&to))?;
    }
    Ok(())
}
