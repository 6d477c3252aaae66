//! Making certificates that BearSSL (ESP8266) and mbedTLS (ESP32) accept.
//!
//! The rules come from what the devices check (see the reference notes on TLS on ESP):
//! a CA is only a CA anchor to BearSSL with `CA:TRUE`; only dNSName SANs are matched, so an IP host
//! is written both as an IP SAN and as a DNS SAN holding its text; device clocks drift, so
//! `notBefore` is backdated; signatures are never RSA-PSS.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::PkiError;
use super::host::Host;

/// Days a server certificate is valid by default: the 825-day ceiling clients have long applied.
pub const DEFAULT_SERVER_DAYS: u32 = 825;
/// Days the private CA is valid: about ten years, the life of a device in the field.
pub const DEFAULT_CA_DAYS: u32 = 3652;
/// How far `notBefore` is moved into the past, so a device whose clock lags still accepts a fresh cert.
pub const BACKDATE: Duration = Duration::days(1);

/// The key algorithm for new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum KeyKind {
    /// ECDSA P-256 with SHA-256: small, fast on the device, supported by BearSSL and mbedTLS.
    #[default]
    EcdsaP256,
    /// RSA-2048 with PKCS#1 v1.5 SHA-256, as the tutorial made.
    Rsa2048,
}

impl KeyKind {
    /// A short user-facing name.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::Rsa2048 => "RSA 2048",
        }
    }

    fn algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    fn generate(self) -> Result<KeyPair, PkiError> {
        KeyPair::generate_for(self.algorithm()).map_err(|e| PkiError::Generate(e.to_string()))
    }
}

/// How devices trust the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum TrustMode {
    /// A private CA is baked into the firmware; the server certificate can be renewed freely.
    #[default]
    PrivateCa,
    /// The tutorial's way: devices pin one self-signed server certificate. When it expires, or is
    /// replaced, every device must be reflashed over USB.
    PinLeaf,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM. Never served, never baked into firmware.
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The hosts the server is reached by; the first one becomes the CN.
    pub hosts: Vec<Host>,
    /// Key algorithm for new keys.
    pub key: KeyKind,
    /// CA or pinned leaf.
    pub mode: TrustMode,
    /// Validity of the server certificate in days.
    pub server_days: u32,
}

impl IssueRequest {
    /// A request with the defaults for the given hosts.
    pub fn new(hosts: Vec<Host>) -> Self {
        IssueRequest {
            hosts,
            key: KeyKind::default(),
            mode: TrustMode::default(),
            server_days: DEFAULT_SERVER_DAYS,
        }
    }

    fn validate(&self) -> Result<(), PkiError> {
        if self.hosts.is_empty() {
            return Err(PkiError::NoHosts);
        }
        if self.server_days == 0 || self.server_days > 36_500 {
            return Err(PkiError::BadDays(self.server_days));
        }
        Ok(())
    }
}

/// A freshly issued set: the CA (absent in pin-leaf mode) and the server certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The private CA; `None` in pin-leaf mode.
    pub ca: Option<CertAndKey>,
    /// The server certificate and key.
    pub server: CertAndKey,
}

/// Issues a new private CA and a server certificate signed by it, or one pinned leaf.
pub fn issue(req: &IssueRequest) -> Result<Issued, PkiError> {
    req.validate()?;
    let now = OffsetDateTime::now_utc();
    match req.mode {
        TrustMode::PrivateCa => {
            let ca_key = req.key.generate()?;
            let ca_params = ca_params(now);
            let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
            let ca = CertAndKey { cert_pem: ca_cert.pem(), key_pem: ca_key.serialize_pem() };
            let issuer = Issuer::new(ca_params, ca_key);
            let server = issue_server(req, &issuer, now)?;
            Ok(Issued { ca: Some(ca), server })
        }
        TrustMode::PinLeaf => {
            let key = req.key.generate()?;
            let mut params = server_params(req, now)?;
            params.use_authority_key_identifier_extension = false;
            let cert = params.self_signed(&key).map_err(gen_err)?;
            Ok(Issued { ca: None, server: CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() } })
        }
    }
}

/// Issues a new server certificate (with a new key) from an existing CA.
pub fn renew_server(ca: &CertAndKey, req: &IssueRequest) -> Result<CertAndKey, PkiError> {
    req.validate()?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| PkiError::CorruptKey { file: "ca.key".into(), why: e.to_string() })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| PkiError::CorruptCert { file: "ca.pem".into(), why: e.to_string() })?;
    issue_server(req, &issuer, OffsetDateTime::now_utc())
}

fn issue_server(
    req: &IssueRequest,
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
) -> Result<CertAndKey, PkiError> {
    let key = req.key.generate()?;
    let params = server_params(req, now)?;
    let cert = params.signed_by(&key, issuer).map_err(gen_err)?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn ca_params(now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "OTA Forge");
    // A distinct name per CA: BearSSL finds the anchor by issuer DN, so two CAs with one name
    // would make "wrong CA baked" look like a signature error instead of "not trusted".
    let id: u32 = rand::random();
    dn.push(DnType::CommonName, format!("OTA Forge private CA {id:08x}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(DEFAULT_CA_DAYS as i64);
    p.serial_number = Some(random_serial());
    p
}

fn server_params(req: &IssueRequest, now: OffsetDateTime) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "OTA Forge");
    dn.push(DnType::CommonName, req.hosts[0].as_dns_text());
    p.distinguished_name = dn;
    p.subject_alt_names = subject_alt_names(&req.hosts)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = match req.key {
        KeyKind::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
        KeyKind::Rsa2048 => {
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]
        }
    };
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(req.server_days as i64);
    p.serial_number = Some(random_serial());
    Ok(p)
}

/// Every host as a dNSName; every IP host also as an iPAddress. Duplicates are dropped.
fn subject_alt_names(hosts: &[Host]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = Vec::new();
    let mut push = |san: SanType| {
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    for host in hosts {
        let dns = host
            .as_dns_text()
            .try_into()
            .map_err(|e: rcgen::Error| PkiError::Generate(format!("{host}: {e}")))?;
        push(SanType::DnsName(dns));
        if let Host::Ip(ip) = host {
            push(SanType::IpAddress(*ip));
        }
    }
    Ok(sans)
}

/// A positive 16-byte serial number, random so no two certificates share one.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn gen_err(e: rcgen::Error) -> PkiError {
    PkiError::Generate(e.to_string())
}
