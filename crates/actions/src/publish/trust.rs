//! Whether the devices that install an image can still reach this server afterwards: the CA it
//! trusts, and the host, port, path and channel it polls. An image that fails here installs fine
//! and then never checks in again (every later TLS handshake or request fails), so it is refused
//! before it is stored.

use std::path::Path;

use otaforge_firmware::config_block::BakedSettings;
use otaforge_pki::{self as pki, CertInfo, Host};
use otaforge_protocol::endpoint::Endpoint;

/// What the image would do to devices that install it, when it is wrong.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error(
        "the image trusts another CA ({image}) than this project's ({project}): devices that install it fail every later TLS handshake and never update again. Bake it with this project's CA (otaforge bake)"
    )]
    OtherCa { image: String, project: String },
    #[error(
        "the image polls host \"{host}\", which this server's certificate does not cover ({covered}): devices that install it fail the name check. Bake it with one of those hosts, or renew the certificate (otaforge cert renew --host {host})"
    )]
    HostNotCovered { host: String, covered: String },
    #[error(
        "the image polls port {image}, but this project's server listens on {server} ({recorded}): devices that install it would never reach it. Bake it with --port {server} (behind a router or proxy that forwards {image}: otaforge serve --public-port {image})"
    )]
    OtherPort { image: u16, server: u16, recorded: String },
    #[error(
        "the image polls path \"{image}\", but this project's server answers at \"{server}\": devices that install it would get 404. Bake it with --path {server}"
    )]
    OtherPath { image: String, server: String },
    #[error(
        "the image polls channel \"{image}\", not \"{channel}\": devices that install it would move to \"{image}\". Publish it there (--channel {image}), or bake it with --channel {channel}"
    )]
    OtherChannel { image: String, channel: String },
}

/// Checks the image's trust settings against the project; returns what could not be checked
/// (as warnings) when the image carries no readable settings.
pub fn check(
    dir: &Path,
    bytes: &[u8],
    baked: Option<&BakedSettings>,
    channel: &str,
) -> Result<Vec<String>, TrustError> {
    let mut warnings = Vec::new();
    let material = pki::Material::load(dir).ok().flatten();
    let project_ca =
        material.as_ref().and_then(|m| CertInfo::from_pem(m.trust_anchor_pem(), "trust anchor").ok());
    let server_cert =
        material.as_ref().and_then(|m| CertInfo::from_pem(&m.server.cert_pem, pki::SERVER_CERT).ok());

    // The CA: the baked block's, else PEM text in the image (ota_config.h's OTA_CA_PEM).
    let image_cas: Vec<CertInfo> = match baked {
        Some(b) => pems(b.ca_pem.as_bytes()),
        None => pems(bytes),
    };
    match (&project_ca, image_cas.is_empty()) {
        (_, true) => warnings.push(
            "The image carries no readable CA (no baked config block, no PEM text): OTA Forge cannot check that devices will still trust this server after installing it.".into(),
        ),
        (None, false) => warnings.push("This project has no certificates yet: the image's CA was not checked.".into()),
        (Some(ca), false) => {
            if !image_cas.iter().any(|c| c.sha256 == ca.sha256) {
                return Err(TrustError::OtherCa { image: describe(&image_cas[0]), project: describe(ca) });
            }
        }
    }

    let Some(b) = baked else {
        warnings.push(
            "The image has no baked config block: its host, port, path and channel (from ota_config.h) could not be checked.".into(),
        );
        return Ok(warnings);
    };
    if let Some(cert) = &server_cert
        && let Ok(host) = Host::parse(&b.host)
        && !cert.coverage(&host).by_dns_san
    {
        return Err(TrustError::HostNotCovered { host: b.host.clone(), covered: cert.dns_sans.join(", ") });
    }
    match Endpoint::load(dir) {
        Some(ep) => {
            if ep.port != b.port {
                return Err(TrustError::OtherPort {
                    image: b.port,
                    server: ep.port,
                    recorded: format!("as its last start recorded in {}", otaforge_protocol::endpoint::FILE),
                });
            }
            if ep.path.trim_end_matches('/') != b.path.trim_end_matches('/') {
                return Err(TrustError::OtherPath { image: b.path.clone(), server: ep.path });
            }
        }
        None => warnings.push(
            "The server has not run in this project yet: the image's port and path were not checked against it.".into(),
        ),
    }
    // An image baked before the default channel had one name carries "" for it.
    let image_channel = b.channel_name();
    if image_channel != channel {
        return Err(TrustError::OtherChannel { image: image_channel.into(), channel: channel.into() });
    }
    Ok(warnings)
}

/// Every certificate written as PEM text in `bytes`.
fn pems(bytes: &[u8]) -> Vec<CertInfo> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, BEGIN) {
        let Some(len) = find(&rest[start..], END) else { break };
        let pem = &rest[start..start + len + END.len()];
        if let Ok(text) = std::str::from_utf8(pem)
            && let Ok(info) = CertInfo::from_pem(text, "image")
        {
            out.push(info);
        }
        rest = &rest[start + len + END.len()..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn describe(c: &CertInfo) -> String {
    let short: String = c.sha256.chars().take(23).collect();
    format!("{}, SHA-256 {short}…", c.subject)
}
