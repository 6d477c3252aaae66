//! The one rule for which version an image carries, used by bake, inspect, the CLI and the app.
//!
//! A device reports the version its running firmware was given: the reference firmware reports
//! its baked config block's version when the block is baked (else `ota_config.h`'s, which no tool
//! can read back from a binary), and an ESP-IDF app reports its app descriptor's. So the baked
//! block wins, then the app descriptor; an Arduino image with neither carries none.

use super::config_block;
use super::image::ImageInfo;
use otaforge_protocol::version::{Version, VersionError};

/// Where a carried version was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// The baked config block.
    ConfigBlock,
    /// The ESP-IDF app descriptor.
    AppDescriptor,
}

impl VersionSource {
    /// For messages: "the config block", "the app descriptor".
    pub fn words(self) -> &'static str {
        match self {
            VersionSource::ConfigBlock => "its baked config block",
            VersionSource::AppDescriptor => "its ESP-IDF app descriptor",
        }
    }
}

/// The version `image` carries and where it was found; `None` when it carries none.
pub fn carried_version(image: &[u8], info: Option<&ImageInfo>) -> Option<(String, VersionSource)> {
    if let Ok(Some(baked)) = config_block::read(image)
        && !baked.version.trim().is_empty()
    {
        return Some((baked.version.trim().to_string(), VersionSource::ConfigBlock));
    }
    let desc = info?.app_desc.as_ref()?;
    let v = desc.version.trim();
    (!v.is_empty()).then(|| (v.to_string(), VersionSource::AppDescriptor))
}

/// Why the version of a release could not be settled.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionChoiceError {
    #[error("no version given and the image does not carry one: pass one (--version 1.4.2)")]
    None,
    #[error(
        "the version typed ({typed}) contradicts the image's: it carries {carried} in {}; devices running it will report {carried}. Leave the version out, or bake the image with --version {typed}",
        .found_in.words()
    )]
    Contradicts { typed: String, carried: String, found_in: VersionSource },
    #[error("version: {0}")]
    Invalid(#[from] VersionError),
}

/// The version a release of `image` carries: the typed one must agree with the image's (numerically:
/// `v1.2.0` equals `1.2.0`); with none typed, the image's; with neither, an error.
pub fn choose_version(
    image: &[u8],
    info: Option<&ImageInfo>,
    typed: Option<&str>,
) -> Result<Version, VersionChoiceError> {
    let typed = typed.map(str::trim).filter(|t| !t.is_empty());
    match (typed, carried_version(image, info)) {
        (None, None) => Err(VersionChoiceError::None),
        (Some(t), None) => Ok(Version::parse(t)?),
        (None, Some((c, _))) => Ok(Version::parse(&c)?),
        (Some(t), Some((c, source))) => {
            let typed_v = Version::parse(t)?;
            match Version::parse(&c) {
                Ok(cv) if cv == typed_v => Ok(typed_v),
                _ => Err(VersionChoiceError::Contradicts {
                    typed: t.to_string(),
                    carried: c,
                    found_in: source,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chip, ImageBuilder, inspect};

    #[test]
    fn the_app_descriptor_counts_and_a_contradiction_is_refused() {
        let image = ImageBuilder::for_chip(Chip::Esp32).version("1.1.0").build();
        let info = inspect(&image).unwrap();
        assert_eq!(
            carried_version(&image, Some(&info)),
            Some(("1.1.0".into(), VersionSource::AppDescriptor))
        );
        assert_eq!(choose_version(&image, Some(&info), None).unwrap().to_string(), "1.1.0");
        assert_eq!(choose_version(&image, Some(&info), Some("v1.1.0")).unwrap().to_string(), "v1.1.0");
        let err = choose_version(&image, Some(&info), Some("2.0.0")).unwrap_err();
        assert!(err.to_string().contains("2.0.0") && err.to_string().contains("1.1.0"), "{err}");
    }

    #[test]
    fn the_baked_block_wins_over_the_descriptor() {
        let mut image = ImageBuilder::for_chip(Chip::Esp32).version("9.9.9").target_size(40_000).build();
        config_block::reserve(&mut image).unwrap();
        let settings = config_block::BakedSettings {
            host: "ota.lan".into(),
            port: 3443,
            path: "/update".into(),
            version: "1.2.0".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into(),
            poll_interval_s: 60,
            tls_rx_buffer: 16384,
            tls_tx_buffer: 512,
            ..Default::default()
        };
        let baked = config_block::bake(&image, &settings).unwrap();
        let info = inspect(&baked).unwrap();
        assert_eq!(carried_version(&baked, Some(&info)).unwrap().1, VersionSource::ConfigBlock);
        assert_eq!(choose_version(&baked, Some(&info), None).unwrap().to_string(), "1.2.0");
    }

    #[test]
    fn an_arduino_image_without_a_block_needs_a_typed_version() {
        let image = ImageBuilder::arduino_esp8266().build();
        let info = inspect(&image).unwrap();
        assert_eq!(choose_version(&image, Some(&info), None), Err(VersionChoiceError::None));
        assert_eq!(choose_version(&image, Some(&info), Some("1.0")).unwrap().to_string(), "1.0");
    }
}
