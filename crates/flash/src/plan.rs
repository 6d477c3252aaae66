//! What to write, and where: read the file before touching the board, so a wrong or damaged
//! file is refused with nothing written.
//!
//! - Arduino ESP8266 `.bin` (eboot + sketch): 0x0.
//! - ESP32-family app image: 0x10000 (the default partition table's first app).
//! - ESP32-family bootloader alone: the chip's bootloader offset (0x1000 on ESP32/S2, 0x0 on
//!   C3/S3/C2/C6/H2, 0x2000 on C5/P4).
//! - Merged image (bootloader + partition table + app, as `esptool merge-bin` writes): 0x0.
//! - ELF (esp-hal, ESP-IDF): espflash turns it into bootloader + partition table + app.
//! - Anything else only with an explicit offset (a filesystem image, say).

use super::diagnosis::FlashError;
use otaforge_firmware::{self as firmware, Chip, ImageError, ImageFormat, config_block};

/// Magic of an ESP-IDF partition table entry.
const PARTITION_MAGIC: [u8; 2] = [0xAA, 0x50];
/// Where ESP-IDF's partition table lives.
const PARTITION_TABLE_OFFSET: usize = 0x8000;
/// Where the first app of the default partition table lives.
const APP_OFFSET: usize = 0x10000;

/// What the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ImageKind {
    /// An ESP8266 image (Arduino eboot + sketch, or a plain one).
    Esp8266,
    /// An ESP32-family application image.
    App,
    /// An ESP32-family second-stage bootloader.
    Bootloader,
    /// Bootloader, partition table and app in one file, written at 0x0.
    Merged,
    /// An ELF file; the bootloader, partition table and app are made from it after connecting.
    Elf,
    /// Bytes written as they are, at the offset the user gave.
    Raw,
}

/// A checked image and where it goes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What the file is.
    pub kind: ImageKind,
    /// The chip the image is built for, when the file says.
    pub chip: Option<Chip>,
    /// Flash offset (unused for ELF files).
    pub offset: u32,
    /// The bytes.
    pub data: Vec<u8>,
    /// The firmware version the image carries (config block or app descriptor).
    pub version: Option<String>,
    /// Things worth saying that do not stop the flash.
    pub warnings: Vec<String>,
}

impl Plan {
    /// "ESP32-C3 app image at 0x10000".
    pub fn describe(&self) -> String {
        let chip = self.chip.map(|c| format!("{c} ")).unwrap_or_default();
        match self.kind {
            ImageKind::Esp8266 => format!("{chip}image at 0x{:x}", self.offset),
            ImageKind::App => format!("{chip}app image at 0x{:x}", self.offset),
            ImageKind::Bootloader => format!("{chip}bootloader at 0x{:x}", self.offset),
            ImageKind::Merged => {
                format!("{chip}merged image (bootloader, partitions, app) at 0x{:x}", self.offset)
            }
            ImageKind::Elf => "ELF file (bootloader, partition table and app made from it)".into(),
            ImageKind::Raw => format!("{} bytes at 0x{:x}, as they are", self.data.len(), self.offset),
        }
    }

    /// Refuses an image built for another chip than the board's.
    pub fn check_chip(&self, board: Chip) -> Result<(), FlashError> {
        match self.chip {
            Some(image) if image != board => Err(FlashError::WrongChip { image, board }),
            _ if self.kind == ImageKind::Elf && board.is_esp8266() => Err(FlashError::BadImage(
                "This is an ELF file, and the ESP8266 cannot be flashed from one: flash the .bin the build makes next to it."
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses an image that would run past the end of the board's flash.
    pub fn check_fits(&self, flash_size: Option<u64>) -> Result<(), FlashError> {
        match flash_size {
            Some(flash)
                if self.kind != ImageKind::Elf && u64::from(self.offset) + self.data.len() as u64 > flash =>
            {
                Err(FlashError::TooBig { size: self.data.len() as u64, offset: self.offset, flash })
            }
            _ => Ok(()),
        }
    }
}

/// Reads `data` and decides where it goes; `offset` overrides the decision.
pub fn plan(data: Vec<u8>, offset: Option<u32>) -> Result<Plan, FlashError> {
    if data.is_empty() {
        return Err(FlashError::BadImage("The file is empty: nothing to flash.".into()));
    }
    let version = config_block::read(&data).ok().flatten().map(|s| s.version).filter(|v| !v.is_empty());
    let mut plan = match firmware::inspect(&data) {
        Ok(info) => {
            let problems = info.problems();
            if !problems.is_empty() && offset.is_none() {
                return Err(FlashError::BadImage(format!(
                    "The image is damaged, so nothing was written: {}.",
                    problems.join("; ")
                )));
            }
            let version = version.or_else(|| info.app_desc.as_ref().map(|d| d.version.clone()));
            match info.format {
                ImageFormat::Gzip => {
                    return Err(FlashError::BadImage(
                        "This is a gzip'd image, which only the ESP8266 updater unpacks over the air: flash the plain .bin over USB."
                            .into(),
                    ));
                }
                ImageFormat::Esp8266 | ImageFormat::ArduinoEsp8266 => Plan {
                    kind: ImageKind::Esp8266,
                    chip: Some(Chip::Esp8266),
                    offset: 0,
                    data,
                    version,
                    warnings: info.warnings,
                },
                ImageFormat::Esp32App => {
                    let (kind, at) = if is_merged_at(&data, 0) {
                        (ImageKind::Merged, 0)
                    } else if info.app_desc.is_none() && info.image_len < PARTITION_TABLE_OFFSET {
                        let chip = info.chip.unwrap_or(Chip::Esp32);
                        (ImageKind::Bootloader, chip.bootloader_offset())
                    } else {
                        (ImageKind::App, APP_OFFSET as u32)
                    };
                    let mut warnings = info.warnings;
                    if info.chip.is_none() {
                        warnings.push(
                            "The image names a chip OTA Forge does not know; it is written unchecked.".into(),
                        );
                    }
                    Plan { kind, chip: info.chip, offset: at, data, version, warnings }
                }
            }
        }
        Err(ImageError::Elf) => {
            Plan { kind: ImageKind::Elf, chip: None, offset: 0, data, version: None, warnings: vec![] }
        }
        Err(ImageError::BlankStart) if is_merged_at(&data, 0x1000) => {
            // ESP32 and ESP32-S2 merged images start with 4 KiB of blank flash.
            let chip = firmware::inspect(&data[0x1000..]).ok().and_then(|i| i.chip);
            Plan { kind: ImageKind::Merged, chip, offset: 0, data, version, warnings: vec![] }
        }
        Err(e) => match offset {
            Some(at) => {
                Plan { kind: ImageKind::Raw, chip: None, offset: at, data, version: None, warnings: vec![] }
            }
            None => {
                return Err(FlashError::BadImage(format!(
                    "This file cannot be flashed as firmware: {e}. (To write a data image such as a filesystem, give its flash offset.)"
                )));
            }
        },
    };
    if let Some(at) = offset {
        if plan.kind == ImageKind::Elf {
            return Err(FlashError::BadImage(
                "An ELF file is placed by its own partition table; leave out the offset.".into(),
            ));
        }
        if at != plan.offset {
            plan.warnings.push(format!(
                "Written at 0x{at:x} as asked (this {} would go to 0x{:x}).",
                noun(plan.kind),
                plan.offset
            ));
        }
        plan.offset = at;
    }
    if plan.offset % 0x1000 != 0 {
        return Err(FlashError::BadImage(format!(
            "Offset 0x{:x} is not at the start of a 4 KiB flash sector; flash offsets are multiples of 0x1000.",
            plan.offset
        )));
    }
    Ok(plan)
}

fn noun(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::Esp8266 | ImageKind::App => "image",
        ImageKind::Bootloader => "bootloader",
        ImageKind::Merged => "merged image",
        ImageKind::Elf | ImageKind::Raw => "file",
    }
}

/// A bootloader at `boot`, a partition table at 0x8000 and an app at 0x10000.
fn is_merged_at(data: &[u8], boot: usize) -> bool {
    data.len() > APP_OFFSET
        && data.get(boot) == Some(&0xE9)
        && data.get(PARTITION_TABLE_OFFSET..PARTITION_TABLE_OFFSET + 2) == Some(&PARTITION_MAGIC[..])
        && data.get(APP_OFFSET) == Some(&0xE9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use otaforge_firmware::ImageBuilder;

    #[test]
    fn esp8266_goes_to_zero() {
        let img = ImageBuilder::arduino_esp8266().target_size(64 * 1024).seed(1).build();
        let p = plan(img, None).unwrap();
        assert_eq!((p.kind, p.chip, p.offset), (ImageKind::Esp8266, Some(Chip::Esp8266), 0));
    }

    #[test]
    fn esp32_app_goes_to_0x10000() {
        let img = ImageBuilder::esp32_app(Chip::Esp32C3).target_size(100 * 1024).version("2.1.0").build();
        let p = plan(img, None).unwrap();
        assert_eq!((p.kind, p.chip, p.offset), (ImageKind::App, Some(Chip::Esp32C3), 0x10000));
        assert_eq!(p.version.as_deref(), Some("2.1.0"));
        assert!(p.describe().contains("ESP32-C3 app image at 0x10000"), "{}", p.describe());
    }

    #[test]
    fn bootloader_goes_to_the_chips_offset() {
        for (chip, at) in [(Chip::Esp32, 0x1000), (Chip::Esp32C3, 0x0), (Chip::Esp32P4, 0x2000)] {
            let img = ImageBuilder::esp32_app(chip).app_desc(None).target_size(20 * 1024).build();
            let p = plan(img, None).unwrap();
            assert_eq!((p.kind, p.offset), (ImageKind::Bootloader, at), "{chip}");
        }
    }

    #[test]
    fn merged_images_go_to_zero() {
        let boot = ImageBuilder::esp32_app(Chip::Esp32C3).app_desc(None).target_size(16 * 1024).build();
        let app = ImageBuilder::esp32_app(Chip::Esp32C3).target_size(64 * 1024).build();
        let mut merged = vec![0xFF; 0x10000];
        merged[..boot.len()].copy_from_slice(&boot);
        merged[0x8000..0x8002].copy_from_slice(&PARTITION_MAGIC);
        merged.extend_from_slice(&app);
        let p = plan(merged, None).unwrap();
        assert_eq!((p.kind, p.chip, p.offset), (ImageKind::Merged, Some(Chip::Esp32C3), 0));

        // ESP32: the bootloader sits at 0x1000, so the file starts blank.
        let boot = ImageBuilder::esp32_app(Chip::Esp32).app_desc(None).target_size(16 * 1024).build();
        let mut merged = vec![0xFF; 0x10000];
        merged[0x1000..0x1000 + boot.len()].copy_from_slice(&boot);
        merged[0x8000..0x8002].copy_from_slice(&PARTITION_MAGIC);
        merged.extend_from_slice(&ImageBuilder::esp32_app(Chip::Esp32).target_size(64 * 1024).build());
        let p = plan(merged, None).unwrap();
        assert_eq!((p.kind, p.chip, p.offset), (ImageKind::Merged, Some(Chip::Esp32), 0));
    }

    #[test]
    fn refusals() {
        let e = plan(b"<html><body>404</body></html>".to_vec(), None).unwrap_err();
        assert!(e.to_string().contains("HTML page"), "{e}");
        let gz = vec![0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert!(plan(gz, None).unwrap_err().to_string().contains("gzip'd"));
        assert!(plan(Vec::new(), None).unwrap_err().to_string().contains("empty"));
        let mut bad = ImageBuilder::esp32_app(Chip::Esp32C3).target_size(8 * 1024).build();
        let n = bad.len();
        bad[n - 40] ^= 0xFF;
        assert!(plan(bad, None).unwrap_err().to_string().contains("damaged"));
        let img = ImageBuilder::arduino_esp8266().target_size(8 * 1024).build();
        assert!(plan(img, Some(0x1234)).unwrap_err().to_string().contains("multiples of 0x1000"));
    }

    #[test]
    fn raw_needs_an_offset_and_offsets_override() {
        let fs = vec![0x42u8; 8192];
        assert!(plan(fs.clone(), None).is_err());
        let p = plan(fs, Some(0x30_0000)).unwrap();
        assert_eq!((p.kind, p.offset, p.chip), (ImageKind::Raw, 0x30_0000, None));
        let img = ImageBuilder::esp32_app(Chip::Esp32C3).target_size(8 * 1024).build();
        let p = plan(img, Some(0x20000)).unwrap();
        assert_eq!(p.offset, 0x20000);
        assert!(p.warnings.iter().any(|w| w.contains("would go to 0x10000")));
    }

    #[test]
    fn elf_files_go_through_espflash_but_not_to_an_esp8266() {
        let mut elf = vec![0x7F, b'E', b'L', b'F', 1, 1, 1, 0];
        elf.resize(4096, 0);
        let p = plan(elf.clone(), None).unwrap();
        assert_eq!(p.kind, ImageKind::Elf);
        assert!(p.check_chip(Chip::Esp32C3).is_ok());
        assert!(p.check_chip(Chip::Esp8266).unwrap_err().to_string().contains("flash the .bin"));
        assert!(plan(elf, Some(0x10000)).unwrap_err().to_string().contains("leave out the offset"));
    }

    #[test]
    fn chip_and_size_checks() {
        let p = plan(ImageBuilder::esp32_app(Chip::Esp32C3).target_size(8 * 1024).build(), None).unwrap();
        assert!(p.check_chip(Chip::Esp32C3).is_ok());
        let e = p.check_chip(Chip::Esp8266).unwrap_err();
        assert_eq!(e, FlashError::WrongChip { image: Chip::Esp32C3, board: Chip::Esp8266 });
        assert!(p.check_fits(Some(4 << 20)).is_ok());
        assert!(matches!(p.check_fits(Some(0x10000)), Err(FlashError::TooBig { .. })));
    }
}
