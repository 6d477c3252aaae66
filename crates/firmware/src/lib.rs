//! Firmware images: reading and checking what users publish before any device sees it.
//!
//! Users hand OTA Forge whatever their build produced: an Arduino ESP8266 `.bin` (eboot plus
//! sketch), a gzip'd one, a signed one, an ESP32 app image, or by mistake an ELF, a ZIP or an HTML
//! error page. [`inspect`] tells which, for which chip, and whether every checksum holds, with
//! reasons a user can act on. [`synth`] builds valid (and deliberately broken) images for tests,
//! virtual devices and the demo, so nothing depends on a real toolchain.
//!
//! Format facts come from esptool's image-format documentation, the Arduino ESP8266 core's
//! `elf2bin.py` and `Esp.cpp`, and ESP-IDF's `esp_app_desc_t`; the code is written from those facts.

pub mod baked_secrets;
pub mod boards;
pub mod carried_version;
mod checksums;
pub mod chip;
pub mod config_block;
pub mod device_settings;
pub mod digest;
pub mod gzip;
pub mod image;
mod image_info;
mod layout;
pub mod nvs;
pub mod reference_sketch;
pub mod settings;
pub mod signature;
pub mod source;
pub mod synth;
pub mod toolchain;
pub mod virtual_only;
mod walk;

pub use checksums::fix_checksums;
pub use chip::{Chip, ChipError};
pub use image::{
    AppDesc, ArduinoInfo, Checksum, ExtendedHeader, FlashMode, ImageError, ImageFormat, ImageInfo,
    MAX_FILE_SIZE, Segment, SubImage, device_md5s, inspect, md5_hex, md5_with_flash_mode, normalized_md5,
};
pub use synth::ImageBuilder;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

/// An image and the settings baked into it: what the Firmware step shows before and after baking.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FirmwareReport {
    /// The inspection.
    pub image: ImageInfo,
    /// The config block: baked settings, unbaked (`Ok(None)`), or why there is none.
    pub config: Result<Option<config_block::BakedSettings>, String>,
}

/// Inspects an image and reads its config block.
pub fn report(bytes: &[u8]) -> Result<FirmwareReport, ImageError> {
    Ok(FirmwareReport {
        image: inspect(bytes)?,
        config: config_block::read(bytes).map_err(|e| e.to_string()),
    })
}
