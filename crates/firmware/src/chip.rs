//! The chips OTA Forge updates, and every per-chip fact the firmware code needs, kept in one table
//! (`Chip::facts`) so that adding a chip is one row, not a hunt through parsers and flashers.
//!
//! Sources: esptool's `targets/*.py` (image chip ids, flash-size codes, bootloader offsets) and
//! ESP-IDF's partition defaults (first app at 0x10000).

use std::fmt;
use std::str::FromStr;

/// An Espressif chip family member.
#[allow(missing_docs)] // the variant names are the chip names
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chip {
    Esp8266,
    Esp32,
    Esp32S2,
    Esp32S3,
    Esp32C2,
    Esp32C3,
    Esp32C5,
    Esp32C6,
    Esp32C61,
    Esp32H2,
    Esp32P4,
}

/// The facts about one chip, as one row.
struct Facts {
    /// Marketing name, e.g. `ESP32-C3`.
    name: &'static str,
    /// Lower-case name without separators, as accepted on the command line and in JSON.
    slug: &'static str,
    /// `chip_id` in the ESP32 extended image header; `None` on the ESP8266 (no extended header).
    image_chip_id: Option<u16>,
    /// Flash offset of the second-stage bootloader.
    bootloader_offset: u32,
    /// Flash offset of the first (or only) application.
    app_offset: u32,
}

/// Why a chip name was refused.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipError {
    #[error("\"{0}\" is not a chip OTA Forge knows: use one of {list}", list = Chip::slug_list())]
    Unknown(String),
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

impl Chip {
    /// Every chip, ESP8266 first.
    pub const ALL: [Chip; 11] = [
        Chip::Esp8266,
        Chip::Esp32,
        Chip::Esp32S2,
        Chip::Esp32S3,
        Chip::Esp32C2,
        Chip::Esp32C3,
        Chip::Esp32C5,
        Chip::Esp32C6,
        Chip::Esp32C61,
        Chip::Esp32H2,
        Chip::Esp32P4,
    ];

    /// The one table of per-chip facts.
    const fn facts(self) -> Facts {
        const fn row(name: &'static str, slug: &'static str, id: Option<u16>, boot: u32, app: u32) -> Facts {
            Facts { name, slug, image_chip_id: id, bootloader_offset: boot, app_offset: app }
        }
        match self {
            // Arduino ESP8266 images hold eboot and the sketch and are flashed whole at 0x0.
            Chip::Esp8266 => row("ESP8266", "esp8266", None, 0x0, 0x0),
            Chip::Esp32 => row("ESP32", "esp32", Some(0), 0x1000, 0x10000),
            Chip::Esp32S2 => row("ESP32-S2", "esp32s2", Some(2), 0x1000, 0x10000),
            Chip::Esp32C3 => row("ESP32-C3", "esp32c3", Some(5), 0x0, 0x10000),
            Chip::Esp32S3 => row("ESP32-S3", "esp32s3", Some(9), 0x0, 0x10000),
            Chip::Esp32C2 => row("ESP32-C2", "esp32c2", Some(12), 0x0, 0x10000),
            Chip::Esp32C6 => row("ESP32-C6", "esp32c6", Some(13), 0x0, 0x10000),
            Chip::Esp32H2 => row("ESP32-H2", "esp32h2", Some(16), 0x0, 0x10000),
            Chip::Esp32P4 => row("ESP32-P4", "esp32p4", Some(18), 0x2000, 0x10000),
            Chip::Esp32C61 => row("ESP32-C61", "esp32c61", Some(20), 0x0, 0x10000),
            Chip::Esp32C5 => row("ESP32-C5", "esp32c5", Some(23), 0x2000, 0x10000),
        }
    }

    /// The chip's name as Espressif writes it, e.g. `ESP32-C3`.
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// The short lower-case name used on the command line and in JSON, e.g. `esp32c3`.
    pub fn slug(self) -> &'static str {
        self.facts().slug
    }

    /// The chip an ESP32-family image header's `chip_id` names, if OTA Forge knows it.
    pub fn from_image_chip_id(id: u16) -> Option<Chip> {
        Chip::ALL.into_iter().find(|c| c.image_chip_id() == Some(id))
    }

    /// The `chip_id` written in this chip's image headers; `None` for the ESP8266, whose images
    /// have no extended header.
    pub fn image_chip_id(self) -> Option<u16> {
        self.facts().image_chip_id
    }

    /// Whether this is the ESP8266 (a different image layout, updater and flash-size table).
    pub fn is_esp8266(self) -> bool {
        self == Chip::Esp8266
    }

    /// Flash offset of the second-stage bootloader.
    pub fn bootloader_offset(self) -> u32 {
        self.facts().bootloader_offset
    }

    /// Flash offset of the application image: 0x10000 on the ESP32 family (the default partition
    /// table), 0x0 on the ESP8266, whose Arduino images carry their bootloader with them.
    pub fn app_offset(self) -> u32 {
        self.facts().app_offset
    }

    /// Flash size in bytes for the size code in the high nibble of image header byte 3, or
    /// `None` for a code this chip's table does not have.
    pub fn flash_size_from_code(self, code: u8) -> Option<u64> {
        if self.is_esp8266() {
            // 5 and 6 are the "-c1" variants of 2 MB and 4 MB (a different SDK partition map).
            match code {
                0 => Some(512 * KIB),
                1 => Some(256 * KIB),
                2 => Some(MIB),
                3 | 5 => Some(2 * MIB),
                4 | 6 => Some(4 * MIB),
                8 => Some(8 * MIB),
                9 => Some(16 * MIB),
                _ => None,
            }
        } else {
            (code <= 7).then(|| MIB << code)
        }
    }

    /// The accepted names, for messages.
    fn slug_list() -> String {
        Chip::ALL.iter().map(|c| c.slug()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Chip {
    type Err = ChipError;

    /// Accepts `esp32c3`, `ESP32-C3`, `esp32_c3` and the like.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted: String =
            s.trim().chars().filter(|c| !matches!(c, '-' | '_' | ' ')).flat_map(char::to_lowercase).collect();
        Chip::ALL
            .into_iter()
            .find(|c| c.slug() == wanted)
            .ok_or_else(|| ChipError::Unknown(s.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_chip_ids_round_trip() {
        for chip in Chip::ALL {
            match chip.image_chip_id() {
                Some(id) => assert_eq!(Chip::from_image_chip_id(id), Some(chip)),
                None => assert!(chip.is_esp8266()),
            }
        }
        assert_eq!(Chip::from_image_chip_id(0), Some(Chip::Esp32));
        assert_eq!(Chip::from_image_chip_id(5), Some(Chip::Esp32C3));
        assert_eq!(Chip::from_image_chip_id(23), Some(Chip::Esp32C5));
        for unknown in [1, 3, 4, 6, 7, 8, 11, 0xFFFF] {
            assert_eq!(Chip::from_image_chip_id(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn names_parse_back() {
        for chip in Chip::ALL {
            assert_eq!(chip.name().parse::<Chip>(), Ok(chip));
            assert_eq!(chip.slug().parse::<Chip>(), Ok(chip));
            assert_eq!(chip.to_string(), chip.name());
        }
        assert_eq!("esp32-c3".parse(), Ok(Chip::Esp32C3));
        assert_eq!(" ESP32_S3 ".parse(), Ok(Chip::Esp32S3));
        assert_eq!("Esp8266".parse(), Ok(Chip::Esp8266));
        assert_eq!("esp32c61".parse(), Ok(Chip::Esp32C61));
        let err = "esp31".parse::<Chip>().unwrap_err();
        assert!(err.to_string().contains("\"esp31\" is not a chip"), "{err}");
        assert!(err.to_string().contains("esp32c3"), "{err}");
    }

    #[test]
    fn serde_uses_the_slug() {
        assert_eq!(serde_json::to_string(&Chip::Esp32C3).unwrap(), "\"esp32c3\"");
        assert_eq!(serde_json::from_str::<Chip>("\"esp8266\"").unwrap(), Chip::Esp8266);
        for chip in Chip::ALL {
            assert_eq!(serde_json::to_string(&chip).unwrap(), format!("\"{}\"", chip.slug()));
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(Chip::Esp32.bootloader_offset(), 0x1000);
        assert_eq!(Chip::Esp32S2.bootloader_offset(), 0x1000);
        for c in [Chip::Esp32C2, Chip::Esp32C3, Chip::Esp32C6, Chip::Esp32C61, Chip::Esp32H2, Chip::Esp32S3] {
            assert_eq!(c.bootloader_offset(), 0, "{c}");
        }
        assert_eq!(Chip::Esp32C5.bootloader_offset(), 0x2000);
        assert_eq!(Chip::Esp32P4.bootloader_offset(), 0x2000);
        assert_eq!(Chip::Esp8266.app_offset(), 0);
        assert!(Chip::ALL.iter().filter(|c| !c.is_esp8266()).all(|c| c.app_offset() == 0x10000));
    }

    #[test]
    fn flash_sizes() {
        let e = Chip::Esp8266;
        assert_eq!(e.flash_size_from_code(0), Some(512 * KIB));
        assert_eq!(e.flash_size_from_code(1), Some(256 * KIB));
        assert_eq!(e.flash_size_from_code(2), Some(MIB));
        assert_eq!(e.flash_size_from_code(5), Some(2 * MIB));
        assert_eq!(e.flash_size_from_code(6), Some(4 * MIB));
        assert_eq!(e.flash_size_from_code(9), Some(16 * MIB));
        assert_eq!(e.flash_size_from_code(7), None);
        assert_eq!(e.flash_size_from_code(10), None);
        let c3 = Chip::Esp32C3;
        assert_eq!(c3.flash_size_from_code(0), Some(MIB));
        assert_eq!(c3.flash_size_from_code(2), Some(4 * MIB));
        assert_eq!(c3.flash_size_from_code(7), Some(128 * MIB));
        assert_eq!(c3.flash_size_from_code(8), None);
        assert_eq!(c3.flash_size_from_code(0xFF), None);
    }
}
