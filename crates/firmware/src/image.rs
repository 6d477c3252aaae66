//! Reading a firmware file the way the chip and the updater will: which format it is, which chip
//! it is for, and whether every checksum, CRC and hash in it holds, so a broken or wrong file is
//! refused at publish time with a reason, not discovered when devices stop booting.
//!
//! [`inspect`] never panics and does bounded work: files over [`MAX_FILE_SIZE`] are refused by
//! length alone, segment counts are capped at 16, and gzip'd files are unpacked into at most 16 MiB.
//!
//! The stages: this entry point tells the format by the first bytes; `walk` reads one 0xE9 image's
//! structure, bounds-checked; `layout` decides which layout it is (ESP8266, Arduino eboot + sketch,
//! ESP32 app) and fills the `image_info` types.

use super::gzip;
use super::layout::{foreign, inspect_e9};

pub use super::digest::{device_md5s, md5_hex, md5_with_flash_mode, normalized_md5, sha256_hex};
pub use super::image_info::{
    AppDesc, ArduinoInfo, Checksum, ExtendedHeader, FlashMode, ImageError, ImageFormat, ImageInfo, Segment,
    SubImage,
};

/// Largest file accepted: 16 MiB, the largest flash OTA Forge targets.
pub const MAX_FILE_SIZE: usize = 16 * 1024 * 1024;

/// Smallest ESP image: an 8-byte header and one 8-byte segment header.
const MIN_IMAGE_SIZE: usize = 16;
/// Smallest gzip file: 10-byte header and 8-byte trailer.
const MIN_GZIP_SIZE: usize = 18;

/// Reads a firmware file. Never panics; refuses anything it cannot read with a reason.
pub fn inspect(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let len = bytes.len();
    if len == 0 {
        return Err(ImageError::Empty);
    }
    if len > MAX_FILE_SIZE {
        return Err(ImageError::TooLarge { len });
    }
    match bytes {
        [0xE9, ..] if len < MIN_IMAGE_SIZE => Err(ImageError::TooSmall { len }),
        [0xE9, ..] => inspect_e9(bytes),
        [0x1F] | [0x1F, 0x8B, ..] if len < MIN_GZIP_SIZE => Err(ImageError::TooSmall { len }),
        [0x1F, 0x8B, ..] => Ok(inspect_gzip(bytes)),
        _ => Err(foreign(bytes)),
    }
}

/// A gzip'd file is reported by what is inside it, since nothing on the device checks that before
/// eboot writes it over the running sketch: chip, flash settings and checksums are the unpacked
/// image's; size and digests are the file's (what is served, and what the updater's free-space
/// check counts).
fn inspect_gzip(bytes: &[u8]) -> ImageInfo {
    let (unpacked, mut contents) = gzip::unpack(bytes);
    let mut warnings = Vec::new();
    let inner = match unpacked.as_deref().map(inspect) {
        Some(Ok(info)) if info.format == ImageFormat::Gzip => {
            contents.error.get_or_insert_with(|| {
                "the gzip'd file holds another gzip'd file; eboot unpacks once".into()
            });
            None
        }
        Some(Ok(info)) => Some(info),
        Some(Err(e)) => {
            contents.error.get_or_insert_with(|| {
                format!("the image inside the gzip'd file is not one the chip runs: {e}")
            });
            None
        }
        None => None,
    };
    if let Some(inner) = &inner {
        warnings.push(format!(
            "gzip'd: {} bytes unpack to a {} of {} bytes ({:.0}% smaller); the device skips its flash-size check for gzip'd updates, so OTA Forge checked the image inside, and needs an ESP8266 core ≥ 2.7.0 to unpack it",
            bytes.len(),
            inner.format.name(),
            inner.size,
            contents.percent_saved(bytes.len()).unwrap_or(0.0)
        ));
        warnings.extend(inner.warnings.iter().cloned());
    }
    let base = inner.unwrap_or_else(|| ImageInfo {
        format: ImageFormat::Gzip,
        chip: None,
        flash_mode: None,
        flash_size_code: None,
        flash_size_bytes: None,
        flash_freq_code: None,
        entry: None,
        segments: Vec::new(),
        checksum: None,
        checksum_valid: None,
        sha256_valid: None,
        extended_header: None,
        arduino: None,
        app_desc: None,
        image_len: 0,
        gzip: None,
        signature_len: None,
        size: 0,
        md5: String::new(),
        normalized_md5: String::new(),
        sha256: String::new(),
        warnings: Vec::new(),
    });
    ImageInfo {
        format: ImageFormat::Gzip,
        image_len: bytes.len(),
        gzip: Some(contents),
        size: bytes.len(),
        md5: md5_hex(bytes),
        normalized_md5: normalized_md5(bytes),
        sha256: sha256_hex(bytes),
        warnings,
        ..base
    }
}
