//! Reading certificates back the way a device will judge them: names, dates, keys, fingerprints,
//! and warnings a user can act on before the fleet finds the problem.

use std::fmt;
use std::net::IpAddr;

use ::time::OffsetDateTime;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use super::PkiError;
use super::host::{Host, dns_name_matches};

/// Days before expiry at which a certificate is flagged.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What one certificate says, in display-ready form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    /// Subject DN, e.g. `O=OTA Forge, CN=ota.lan`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// dNSName SANs: what BearSSL and mbedTLS 2 match against.
    pub dns_sans: Vec<String>,
    /// iPAddress SANs: what browsers, curl and rustls match against.
    pub ip_sans: Vec<IpAddr>,
    /// Start of validity.
    #[serde(with = "::time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "::time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER certificate, as colon-separated upper-case hex.
    pub sha256: String,
    /// The key, e.g. `ECDSA P-256` or `RSA 2048`.
    pub key: String,
    /// The key's strength in bits (curve size for EC).
    pub key_bits: usize,
    /// Signature algorithm, e.g. `ecdsa-with-SHA256`.
    pub signature: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// The SubjectPublicKeyInfo, DER (to match keys and issuers).
    #[serde(skip)]
    pub spki_der: Vec<u8>,
    /// The certificate, DER.
    #[serde(skip)]
    pub der: Vec<u8>,
}

impl CertInfo {
    /// Whole days until `not_after` (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }

    /// The names, as `DNS:…` and `IP:…` entries joined by ", " (empty when there are none).
    pub fn names_text(&self) -> String {
        self.dns_sans
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.ip_sans.iter().map(|i| format!("IP:{i}")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How a device connecting by `host` sees this certificate's names.
    pub fn coverage(&self, host: &Host) -> Coverage {
        let text = host.as_dns_text();
        let by_dns_san = self.dns_sans.iter().any(|p| dns_name_matches(p, &text));
        let by_ip_san = match host {
            Host::Ip(ip) => self.ip_sans.contains(ip),
            Host::Dns(_) => false,
        };
        Coverage { by_dns_san, by_ip_san }
    }

    /// Parses one PEM certificate; `file` names it in errors.
    pub fn from_pem(pem: &str, file: &str) -> Result<CertInfo, PkiError> {
        let corrupt = |why: String| PkiError::CorruptCert { file: file.to_string(), why };
        let (rest, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| corrupt(format!("not a PEM certificate ({e})")))?;
        if pem.label != "CERTIFICATE" {
            return Err(corrupt(format!("holds a \"{}\" block, not a CERTIFICATE", pem.label)));
        }
        if String::from_utf8_lossy(rest).contains("-----BEGIN") {
            return Err(corrupt("holds more than one PEM block".into()));
        }
        CertInfo::from_der(&pem.contents).map_err(corrupt)
    }

    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad DER: {e}"))?;
        if !rest.is_empty() {
            return Err(format!("{} stray bytes after the certificate", rest.len()));
        }
        let mut dns_sans = Vec::new();
        let mut ip_sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_sans.push(d.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_sans.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let (is_ca, path_len) = match cert.basic_constraints() {
            Ok(Some(bc)) => (bc.value.ca, bc.value.path_len_constraint),
            _ => (false, None),
        };
        let (key, key_bits) = describe_key(cert.public_key());
        let to_time =
            |t: &ASN1Time| OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| e.to_string());
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            dns_sans,
            ip_sans,
            not_before: to_time(&cert.validity().not_before)?,
            not_after: to_time(&cert.validity().not_after)?,
            sha256: fingerprint(der),
            key,
            key_bits,
            signature: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
            is_ca,
            path_len,
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            spki_der: cert.public_key().raw.to_vec(),
            der: der.to_vec(),
        })
    }
}

/// How a certificate's names cover one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// A dNSName matches: ESP8266 (BearSSL) and ESP32 (mbedTLS) accept the name.
    pub by_dns_san: bool,
    /// An iPAddress SAN matches: browsers, curl and rustls accept the IP.
    pub by_ip_san: bool,
}

/// SHA-256 of `der`, as `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn describe_key(spki: &SubjectPublicKeyInfo<'_>) -> (String, usize) {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            (format!("RSA {bits}"), bits)
        }
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("ECDSA P-256".into(), 256),
                Some("1.3.132.0.34") => ("ECDSA P-384".into(), 384),
                Some("1.3.132.0.35") => ("ECDSA P-521".into(), 521),
                Some(other) => (format!("EC curve {other}"), 0),
                None => ("EC (unknown curve)".into(), 0),
            }
        }
        Ok(_) | Err(_) => {
            let oid = spki.algorithm.algorithm.to_id_string();
            match oid.as_str() {
                "1.3.101.112" => ("Ed25519".into(), 256),
                _ => (format!("unsupported key ({oid})"), 0),
            }
        }
    }
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256".into(),
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384".into(),
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption".into(),
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption".into(),
        "1.2.840.113549.1.1.10" => "RSASSA-PSS".into(),
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption".into(),
        "1.3.101.112" => "Ed25519".into(),
        other => other.into(),
    }
}

/// Which certificate a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Which {
    /// The private CA.
    Ca,
    /// The server certificate.
    Server,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Which::Ca => "CA certificate",
            Which::Server => "server certificate",
        })
    }
}

/// Something a user should fix or know before devices depend on this material.
/// (Field meanings are in the variant docs and the `Display` text.)
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Warning {
    /// Past `notAfter`.
    Expired { which: Which, days_ago: i64 },
    /// Before `notBefore`.
    NotYetValid { which: Which },
    /// Fewer than [`EXPIRY_WARNING_DAYS`] left.
    ExpiresSoon { which: Which, days: i64 },
    /// A host devices will use is not in the certificate in a form devices match.
    HostNotCovered { host: String },
    /// An IP SAN without the matching DNS SAN: ESP devices will reject the name.
    IpWithoutDnsSan { ip: IpAddr },
    /// RSA under 2048 bits, or a key the devices cannot use.
    WeakKey { which: Which, key: String },
    /// An algorithm BearSSL does not verify (RSA-PSS, Ed25519, SHA-1).
    UnsupportedSignature { which: Which, signature: String },
    /// Pin-leaf mode: devices trust this exact certificate.
    PinnedLeaf { days_left: i64 },
    /// The server certificate was not signed by the CA in the project.
    NotSignedByCa,
    /// The CA file is not a CA (no CA:TRUE): BearSSL would pin it instead.
    CaWithoutCaFlag,
    /// The private key file does not belong to the certificate.
    KeyMismatch { which: Which },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Expired { which, days_ago } => write!(
                f,
                "The {which} expired {days_ago} day(s) ago: devices refuse it (BearSSL error 54). {}",
                if *which == Which::Server {
                    "Renew the server certificate."
                } else {
                    "Replace the CA and reflash the devices."
                }
            ),
            Warning::NotYetValid { which } => {
                write!(f, "The {which} is not valid yet: check this computer's clock.")
            }
            Warning::ExpiresSoon { which, days } => write!(
                f,
                "The {which} expires in {days} day(s). {}",
                if *which == Which::Server {
                    "Renew it now; devices keep working."
                } else {
                    "Plan a new CA and reflash devices before then."
                }
            ),
            Warning::HostNotCovered { host } => write!(
                f,
                "Devices connecting to \"{host}\" will fail the name check (BearSSL error 56): the certificate has no DNS name for it. Renew with this host added."
            ),
            Warning::IpWithoutDnsSan { ip } => write!(
                f,
                "{ip} is only an IP entry: ESP8266 and ESP32 match DNS entries only and will reject it. Renew so it is also a DNS entry."
            ),
            Warning::WeakKey { which, key } => write!(
                f,
                "The {which} uses {key}: too weak or unsupported on devices. Use ECDSA P-256 or RSA 2048."
            ),
            Warning::UnsupportedSignature { which, signature } => {
                write!(f, "The {which} is signed with {signature}, which ESP devices do not verify.")
            }
            Warning::PinnedLeaf { days_left } => write!(
                f,
                "Pin-leaf mode: devices trust this exact certificate. When it expires (in {days_left} days) or is replaced, every device must be reflashed over USB. A private CA avoids this."
            ),
            Warning::NotSignedByCa => write!(
                f,
                "The server certificate was not signed by the project's CA: devices with this CA will refuse it (BearSSL error 62). Renew the server certificate."
            ),
            Warning::CaWithoutCaFlag => write!(
                f,
                "ca.pem is not marked CA:TRUE, so BearSSL treats it as a pinned certificate and rejects every server certificate it signed."
            ),
            Warning::KeyMismatch { which } => {
                write!(f, "The {which}'s private key file does not belong to it: TLS handshakes will fail.")
            }
        }
    }
}

impl Warning {
    /// True for problems that break devices now (as opposed to advice).
    pub fn is_blocking(&self) -> bool {
        !matches!(self, Warning::ExpiresSoon { .. } | Warning::PinnedLeaf { .. })
    }
}

/// Date checks, key strength and signature algorithm for one certificate.
pub fn certificate_warnings(which: Which, info: &CertInfo, now: OffsetDateTime) -> Vec<Warning> {
    let mut out = Vec::new();
    let days = info.days_left(now);
    if now > info.not_after {
        out.push(Warning::Expired { which, days_ago: (now - info.not_after).whole_days() });
    } else if now < info.not_before {
        out.push(Warning::NotYetValid { which });
    } else if days < EXPIRY_WARNING_DAYS {
        out.push(Warning::ExpiresSoon { which, days });
    }
    let weak = if info.key.starts_with("RSA") {
        info.key_bits < 2048 || info.key_bits > 4096
    } else {
        !info.key.starts_with("ECDSA")
    };
    if weak {
        out.push(Warning::WeakKey { which, key: info.key.clone() });
    }
    if matches!(info.signature.as_str(), "RSASSA-PSS" | "Ed25519" | "sha1WithRSAEncryption") {
        out.push(Warning::UnsupportedSignature { which, signature: info.signature.clone() });
    }
    out
}

/// Name checks of the server certificate against the hosts devices will use.
pub fn name_warnings(server: &CertInfo, hosts: &[Host]) -> Vec<Warning> {
    let mut out = Vec::new();
    for ip in &server.ip_sans {
        let text = ip.to_string();
        if !server.dns_sans.iter().any(|d| d.eq_ignore_ascii_case(&text)) {
            out.push(Warning::IpWithoutDnsSan { ip: *ip });
        }
    }
    for host in hosts {
        if !server.coverage(host).by_dns_san
            && !out.iter().any(|w| matches!(w, Warning::IpWithoutDnsSan { ip } if Host::Ip(*ip) == *host))
        {
            out.push(Warning::HostNotCovered { host: host.to_string() });
        }
    }
    out
}

/// True when `cert` carries a valid signature made by `issuer`'s key.
pub fn is_signed_by(cert: &CertInfo, issuer: &CertInfo) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(&cert.der) else { return false };
    let Ok((_, issuer)) = X509Certificate::from_der(&issuer.der) else { return false };
    cert.issuer().as_raw() == issuer.subject().as_raw()
        && cert.verify_signature(Some(issuer.public_key())).is_ok()
}
