//! From what the user chose (host, port, version, Wi-Fi…) plus the project's trust material to the
//! settings a device is baked with, checked the way a device will use them. The CLI and the
//! Firmware step both come through here.

use std::path::Path;

use super::config_block::BakedSettings;
use otaforge_pki::{self as pki, CertInfo, Host};

/// What the user chose; `None`/empty fields take the defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BakeForm {
    /// Update-server host; default: the first name in the server certificate.
    pub host: String,
    /// HTTPS port.
    pub port: u16,
    /// Update path.
    pub path: String,
    /// Channel; "" (what forms saved before the default channel had one name hold) is the
    /// default channel, and is baked by its name.
    pub channel: String,
    /// Version the device reports.
    pub version: String,
    /// Device name.
    pub device_name: String,
    /// Seconds between update checks.
    pub poll_interval_s: u32,
    /// BearSSL receive buffer.
    pub tls_rx_buffer: u16,
    /// BearSSL send buffer.
    pub tls_tx_buffer: u16,
    /// Wi-Fi network ("" keeps what the firmware was built with).
    pub wifi_ssid: String,
    /// Wi-Fi password.
    #[serde(skip)]
    pub wifi_password: String,
    /// Leave the project's signing key out (the firmware then installs unsigned updates).
    pub no_signing_key: bool,
}

impl Default for BakeForm {
    fn default() -> Self {
        BakeForm {
            host: String::new(),
            port: otaforge_protocol::DEFAULT_PORT,
            path: otaforge_protocol::DEFAULT_PATH.into(),
            channel: otaforge_protocol::DEFAULT_CHANNEL.into(),
            version: String::new(),
            device_name: String::new(),
            poll_interval_s: 3600,
            tls_rx_buffer: 16384,
            tls_tx_buffer: 512,
            wifi_ssid: String::new(),
            wifi_password: String::new(),
            no_signing_key: false,
        }
    }
}

/// Why the settings cannot be baked.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Host(#[from] pki::HostError),
    #[error(
        "the server certificate does not cover \"{0}\": devices would fail the name check. Renew it with this host (otaforge cert renew --host {0})"
    )]
    NotCovered(String),
    #[error("the server certificate names no host: give one with --host HOST")]
    NoHost,
    #[error("version: {0}")]
    Version(#[from] otaforge_protocol::version::VersionError),
    #[error(transparent)]
    Device(super::device_settings::DeviceSettingsError),
    #[error("cannot record the baked password's hash in the project: {0}")]
    Remember(String),
}

/// The settings to bake, with the project's trust anchor. The version may stay empty here (baking
/// into an image can keep the image's own); `require_version` refuses that.
pub fn baked_settings(
    dir: &Path,
    form: &BakeForm,
    require_version: bool,
) -> Result<BakedSettings, SettingsError> {
    let material = pki::Material::load(dir)?.ok_or_else(|| pki::PkiError::NoMaterial { dir: dir.into() })?;
    let cert = CertInfo::from_pem(&material.server.cert_pem, pki::SERVER_CERT)?;
    let host = if form.host.trim().is_empty() {
        cert.dns_sans.first().cloned().ok_or(SettingsError::NoHost)?
    } else {
        Host::parse(&form.host)?.to_string()
    };
    if !cert.coverage(&Host::parse(&host)?).by_dns_san {
        return Err(SettingsError::NotCovered(host));
    }
    if require_version || !form.version.trim().is_empty() {
        otaforge_protocol::version::Version::parse(&form.version)?;
    }
    // Publishing refuses any image that holds a password baked here; only a salted hash is kept.
    if !form.wifi_password.is_empty() {
        super::device_settings::check_password(&form.wifi_password).map_err(SettingsError::Device)?;
        super::baked_secrets::remember(dir, &form.wifi_password)
            .map_err(|e| SettingsError::Remember(e.to_string()))?;
    }
    Ok(BakedSettings {
        host,
        port: form.port,
        path: form.path.clone(),
        channel: super::config_block::channel_or_default(form.channel.trim()).to_string(),
        version: form.version.trim().to_string(),
        device_name: form.device_name.clone(),
        wifi_ssid: form.wifi_ssid.clone(),
        wifi_password: form.wifi_password.clone(),
        ca_pem: material.trust_anchor_pem().to_string(),
        poll_interval_s: form.poll_interval_s,
        tls_rx_buffer: form.tls_rx_buffer,
        tls_tx_buffer: form.tls_tx_buffer,
        baked_at: time::OffsetDateTime::now_utc().unix_timestamp().clamp(0, u32::MAX as i64) as u32,
        signing_key: Vec::new(),
    })
}

/// Bakes `form` into a prebuilt image: an empty version keeps the one the image carries (a
/// previous bake, or the ESP32 app descriptor).
pub fn bake_image(
    dir: &Path,
    image: &[u8],
    form: &BakeForm,
) -> Result<(Vec<u8>, BakedSettings), BakeImageError> {
    let mut settings = baked_settings(dir, form, false)?;
    if settings.version.is_empty() {
        let info = super::inspect(image).ok();
        settings.version =
            super::carried_version::carried_version(image, info.as_ref()).map(|(v, _)| v).unwrap_or_default();
    }
    if settings.version.is_empty() {
        return Err(BakeImageError::NoVersion);
    }
    if !form.no_signing_key {
        settings.signing_key = signing_key_for(dir, image)?;
    }
    let baked = super::config_block::bake(image, &settings)?;
    Ok((baked, settings))
}

/// The public key the image's firmware should verify updates with: the project's current key for
/// the image's chip family, when the project has one and the image's config block has room for
/// it (format 2); else none.
fn signing_key_for(dir: &Path, image: &[u8]) -> Result<Vec<u8>, BakeImageError> {
    let Ok(at) = super::config_block::locate(image) else { return Ok(Vec::new()) };
    if super::config_block::block_at(image, at).0 < 2 {
        return Ok(Vec::new());
    }
    let Some(chip) = super::inspect(image).ok().and_then(|i| i.chip) else { return Ok(Vec::new()) };
    let keys = pki::signing::load(dir).map_err(SettingsError::Pki)?;
    Ok(keys.current(super::signature::family(chip)).map(|k| k.public().spki_der).unwrap_or_default())
}

/// The signing keys `bake --sketch` compiles into `ota_config.h`: the project's current ones,
/// unless the form leaves them out.
pub fn sketch_keys(dir: &Path, form: &BakeForm) -> Result<super::source::SketchKeys, SettingsError> {
    if form.no_signing_key {
        return Ok(Default::default());
    }
    let keys = pki::signing::load(dir).map_err(SettingsError::Pki)?;
    Ok(super::source::SketchKeys::current(&keys))
}

/// Why an image could not be baked.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum BakeImageError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Config(#[from] super::config_block::ConfigError),
    #[error("the image carries no version: give one with --version (e.g. --version 1.0.0)")]
    NoVersion,
}
