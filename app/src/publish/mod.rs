//! Publishing a firmware file: every check a device would make, made before anything is stored,
//! so a wrong `.bin` is refused with a reason instead of failing on the fleet.

use crate::firmware::image::{self, ImageInfo};
use crate::store::{NewRelease, PayloadKind, Release, Store, StoreError, validate_channel};
use crate::version::{Version, VersionError};

/// Largest file accepted: the biggest ESP flash chip.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;

/// The default channel devices poll at `/update`.
pub const DEFAULT_CHANNEL: &str = "stable";

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Channel to publish to.
    pub channel: String,
    /// Sketch or filesystem image.
    pub kind: PayloadKind,
    /// The version; `None` takes it from the ESP32 app descriptor when there is one.
    pub version: Option<String>,
    /// Free text shown with the release.
    pub notes: String,
    /// The original file name, for display.
    pub file_name: String,
}

impl PublishRequest {
    /// A sketch release for a channel.
    pub fn sketch(channel: &str, version: Option<&str>) -> Self {
        PublishRequest {
            channel: channel.to_string(),
            kind: PayloadKind::Sketch,
            version: version.map(str::to_string),
            notes: String::new(),
            file_name: String::new(),
        }
    }
}

/// Why a publish was refused. Nothing was stored.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {0} bytes; no ESP flash holds more than 16 MiB")]
    TooLarge(usize),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error("the image is damaged: {}", .0.join("; "))]
    Damaged(Vec<String>),
    #[error("no version given and the image does not carry one: pass a version (e.g. --version 1.4.2)")]
    NoVersion,
    #[error("version: {0}")]
    Version(#[from] VersionError),
    #[error(
        "version {new} is not newer than {current}, which channel \"{channel}\" serves now: devices would never take it. Publish a higher version, or roll back the channel instead"
    )]
    NotNewer { new: String, current: String, channel: String },
    #[error(
        "channel \"{channel}\" serves {current} images; this one is for {new}. Publish it to a channel of its own"
    )]
    WrongChip { channel: String, current: String, new: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a file would become if published: the inspection and the version it would carry.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The image inspection (None for filesystem images, which have no header).
    pub image: Option<ImageInfo>,
    /// The version the release would carry.
    pub version: Version,
}

/// Runs every check without storing anything (the GUI shows the result before the user confirms).
pub fn check(store: &Store, bytes: &[u8], req: &PublishRequest) -> Result<Checked, PublishError> {
    validate_channel(&req.channel)?;
    if bytes.is_empty() {
        return Err(PublishError::Empty);
    }
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(PublishError::TooLarge(bytes.len()));
    }
    let info = match req.kind {
        PayloadKind::Sketch => {
            let info = image::inspect(bytes)?;
            let problems = info.problems();
            if !problems.is_empty() {
                return Err(PublishError::Damaged(problems));
            }
            Some(info)
        }
        PayloadKind::Filesystem => None,
    };
    let raw_version = match (&req.version, info.as_ref().and_then(|i| i.app_desc.as_ref())) {
        (Some(v), _) => v.clone(),
        (None, Some(desc)) if !desc.version.trim().is_empty() => desc.version.clone(),
        _ => return Err(PublishError::NoVersion),
    };
    let version = Version::parse(&raw_version)?;
    if let Some(channel) = store.channel(&req.channel)? {
        let current = match req.kind {
            PayloadKind::Sketch => channel.current_sketch,
            PayloadKind::Filesystem => channel.current_fs,
        };
        if let Some(id) = current {
            let current = store.release(id)?;
            if let Ok(cv) = Version::parse(&current.version)
                && version <= cv
            {
                return Err(PublishError::NotNewer {
                    new: version.to_string(),
                    current: current.version,
                    channel: req.channel.clone(),
                });
            }
            // Exact chip, not family: an ESP32 image does not boot on an ESP32-C3, and the
            // devices' headers do not say which ESP32 they are.
            let new_chip = info.as_ref().and_then(|i| i.chip).map(|c| c.name().to_string());
            if let (Some(new), Some(old)) = (new_chip, current.chip)
                && new != old
            {
                return Err(PublishError::WrongChip { channel: req.channel.clone(), current: old, new });
            }
        }
    }
    Ok(Checked { image: info, version })
}

/// Checks and stores a release, making it the channel's current one.
pub fn publish(store: &mut Store, bytes: &[u8], req: &PublishRequest) -> Result<Release, PublishError> {
    let checked = check(store, bytes, req)?;
    let release = store.publish(NewRelease {
        channel: req.channel.clone(),
        kind: req.kind,
        version: checked.version.to_string(),
        chip: checked.image.as_ref().and_then(|i| i.chip).map(|c| c.name().to_string()),
        bytes,
        md5: image::md5_hex(bytes),
        md5_normalized: image::normalized_md5(bytes),
        flash_size: checked.image.as_ref().and_then(|i| i.flash_size_bytes),
        file_name: req.file_name.clone(),
        notes: req.notes.clone(),
    })?;
    Ok(release)
}

/// "ESP8266" or "ESP32" (all ESP32-family chips share the HTTPUpdate protocol).
pub fn family(chip_name: &str) -> &'static str {
    if chip_name.eq_ignore_ascii_case("ESP8266") { "ESP8266" } else { "ESP32" }
}
