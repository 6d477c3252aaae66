//! What an inspection finds: the file's format, chip, flash settings, segments, check values
//! and their verdicts, in types the inspector fills and everyone else reads.

use super::chip::Chip;
use super::gzip::GzipContents;

/// What kind of file it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// A single ESP8266 image (magic 0xE9, no extended header).
    Esp8266,
    /// The Arduino ESP8266 `.bin`: eboot at 0x0, the sketch at 0x1000, length and CRC at 0x1010.
    ArduinoEsp8266,
    /// An ESP32-family application image (ESP-IDF or arduino-esp32).
    Esp32App,
    /// A gzip'd file, which the ESP8266 updater accepts and unpacks itself.
    Gzip,
}

impl ImageFormat {
    /// A short description for people.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Esp8266 => "ESP8266 image",
            ImageFormat::ArduinoEsp8266 => "Arduino ESP8266 image (eboot + sketch)",
            ImageFormat::Esp32App => "ESP32-family app image",
            ImageFormat::Gzip => "gzip'd image",
        }
    }
}

/// SPI flash mode, header byte 2.
#[allow(missing_docs)] // the variant names are the mode names
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashMode {
    Qio,
    Qout,
    Dio,
    Dout,
}

impl FlashMode {
    /// The mode a header byte names, if it is one of the four.
    pub fn from_byte(b: u8) -> Option<FlashMode> {
        [FlashMode::Qio, FlashMode::Qout, FlashMode::Dio, FlashMode::Dout].get(usize::from(b)).copied()
    }

    /// The header byte for this mode.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// Upper-case name, e.g. `DIO`.
    pub fn name(self) -> &'static str {
        match self {
            FlashMode::Qio => "QIO",
            FlashMode::Qout => "QOUT",
            FlashMode::Dio => "DIO",
            FlashMode::Dout => "DOUT",
        }
    }
}

/// One segment: where it loads and where its data is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Segment {
    /// Address the data is loaded to (or mapped at).
    pub load_addr: u32,
    /// Data length in bytes.
    pub len: u32,
    /// File offset of the data (after the 8-byte segment header).
    pub file_offset: usize,
}

/// The one-byte XOR checksum after an image's segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Checksum {
    /// File offset of the checksum byte.
    pub offset: usize,
    /// The byte in the file.
    pub stored: u8,
    /// What the segment data gives.
    pub computed: u8,
    /// Whether they agree.
    pub valid: bool,
}

/// The ESP32 extended header, file bytes 8..24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ExtendedHeader {
    /// Flash write-protect pin (0xEE: disabled).
    pub wp_pin: u8,
    /// SPI pin drive strengths.
    pub spi_drive: [u8; 3],
    /// Chip the image is built for (see [`Chip::from_image_chip_id`]).
    pub chip_id: u16,
    /// Minimum chip revision (legacy field).
    pub min_chip_rev: u8,
    /// Minimum chip revision, major * 100 + minor.
    pub min_chip_rev_full: u16,
    /// Maximum chip revision, major * 100 + minor.
    pub max_chip_rev_full: u16,
    /// 1 when a SHA-256 follows the checksum; only 0 and 1 are valid.
    pub hash_appended: u8,
}

/// One image inside an Arduino ESP8266 file (eboot or the sketch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubImage {
    /// File offset of its header.
    pub offset: usize,
    /// Its length, header to checksum byte.
    pub len: usize,
    /// Flash mode in its header.
    pub flash_mode: Option<FlashMode>,
    /// Flash size code in its header.
    pub flash_size_code: u8,
    /// Flash frequency code in its header.
    pub flash_freq_code: u8,
    /// Entry address.
    pub entry: u32,
    /// Its segments.
    pub segments: Vec<Segment>,
    /// Its checksum.
    pub checksum: Checksum,
}

/// The Arduino ESP8266 layout's parts and its length/CRC words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArduinoInfo {
    /// The bootloader at 0x0.
    pub eboot: SubImage,
    /// The sketch at 0x1000.
    pub sketch: SubImage,
    /// Length word at 0x1010.
    pub stored_len: u32,
    /// CRC word at 0x1014.
    pub stored_crc: u32,
    /// CRC-32/MPEG-2 of the image with both words read as zero.
    pub computed_crc: u32,
    /// Whether the length word equals the image length.
    pub len_valid: bool,
    /// Whether the CRC word equals the computed CRC.
    pub crc_valid: bool,
}

/// ESP-IDF's `esp_app_desc_t` strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppDesc {
    /// Application version (`PROJECT_VER`).
    pub version: String,
    /// Project name.
    pub project_name: String,
    /// Build time.
    pub time: String,
    /// Build date.
    pub date: String,
    /// ESP-IDF version it was built with.
    pub idf_version: String,
}

/// Everything [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// The kind of file.
    pub format: ImageFormat,
    /// The chip it is for; `None` for gzip'd files and unknown chip ids.
    pub chip: Option<Chip>,
    /// Flash mode in the header at offset 0 (the one the boot ROM reads and the updater rewrites).
    pub flash_mode: Option<FlashMode>,
    /// Flash size code (high nibble of header byte 3) at offset 0.
    pub flash_size_code: Option<u8>,
    /// Flash size that code means for the chip.
    pub flash_size_bytes: Option<u64>,
    /// Flash frequency code (low nibble of header byte 3) at offset 0.
    pub flash_freq_code: Option<u8>,
    /// Entry address of the application (the sketch, for Arduino files).
    pub entry: Option<u32>,
    /// The application's segments (the sketch's, for Arduino files).
    pub segments: Vec<Segment>,
    /// The application's checksum byte.
    pub checksum: Option<Checksum>,
    /// Whether every checksum byte in the file is right (eboot's too); `None` for gzip.
    pub checksum_valid: Option<bool>,
    /// Whether the appended SHA-256 is right; `None` when there is none.
    pub sha256_valid: Option<bool>,
    /// The ESP32 extended header.
    pub extended_header: Option<ExtendedHeader>,
    /// The Arduino parts and CRC.
    pub arduino: Option<ArduinoInfo>,
    /// ESP-IDF app descriptor, when present.
    pub app_desc: Option<AppDesc>,
    /// Length of the image proper, without signature or trailing bytes.
    pub image_len: usize,
    /// What is inside a gzip'd file (its image's own fields fill the ones above).
    pub gzip: Option<GzipContents>,
    /// Length of an appended ESP8266 signature (`image || signature || u32 length`).
    pub signature_len: Option<usize>,
    /// File size.
    pub size: usize,
    /// MD5 of the whole file, lower-case hex.
    pub md5: String,
    /// MD5 with the flash-mode byte set to 0 (see [`normalized_md5`]).
    pub normalized_md5: String,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Things worth knowing that do not make the image invalid.
    pub warnings: Vec<String>,
}

/// Why a file is not a firmware image OTA Forge can read.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is only {len} bytes long, too short to be a firmware image")]
    TooSmall { len: usize },
    #[error(
        "the file is {len} bytes long; firmware images are at most 16 MiB (the largest flash OTA Forge handles)"
    )]
    TooLarge { len: usize },
    #[error(
        "not an ESP firmware image: it starts with 0x{first_byte:02X} where ESP images start with 0xE9 (or 0x1F 0x8B when gzip'd)"
    )]
    NotAnImage { first_byte: u8 },
    #[error("this is an ELF file, not a firmware image: publish the .bin the build produces next to it")]
    Elf,
    #[error("this is a ZIP archive, not a firmware image: unpack it and publish the .bin inside")]
    Zip,
    #[error(
        "this is a UF2 file for USB drag-and-drop flashing, not a firmware image: publish the .bin instead"
    )]
    Uf2,
    #[error(
        "this is an HTML page, not a firmware image: the download probably returned an error or login page instead of the file"
    )]
    Html,
    #[error(
        "this is a text file, not a firmware image (it starts with \"{start}\"): publish the .bin the build produces"
    )]
    Text { start: String },
    #[error(
        "this is an ESP8266 \"v2\" image (it starts with 0xEA) for the Espressif SDK bootloader; OTA Forge updates Arduino images, which start with 0xE9"
    )]
    Esp8266V2,
    #[error(
        "the file starts with blank flash (0xFF): it looks like a flash dump or merged image; publish the application .bin instead"
    )]
    BlankStart,
    #[error(
        "the image header says it has {count} segments; ESP images have at most 16, so this is not a valid image"
    )]
    TooManySegments { count: usize },
    #[error("the image header says it has no segments, so there is nothing to run")]
    NoSegments,
    #[error("the file ends too soon: {what} needs {need} {} but only {have} {} left", bytes(*.need), are(*.have))]
    Truncated { what: String, need: usize, have: usize },
}

fn bytes(n: usize) -> &'static str {
    if n == 1 { "byte" } else { "bytes" }
}

fn are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}

impl ImageInfo {
    /// Every failed check, in plain words; empty when the image is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let bad_sum = |whose: &str, c: &Checksum| {
            format!(
                "{whose} checksum byte is 0x{:02x} but the segments give 0x{:02x}: the image is corrupt",
                c.stored, c.computed
            )
        };
        if let Some(a) = &self.arduino {
            if !a.eboot.checksum.valid {
                out.push(bad_sum("eboot's", &a.eboot.checksum));
            }
            if !a.sketch.checksum.valid {
                out.push(bad_sum("the sketch's", &a.sketch.checksum));
            }
            if !a.len_valid {
                out.push(format!(
                    "the length stored at 0x1010 is {} but the image is {} bytes: the file was cut or changed after the build",
                    a.stored_len, self.image_len
                ));
            }
            if !a.crc_valid {
                out.push(format!(
                    "the CRC-32 stored at 0x1014 is 0x{:08x} but the file gives 0x{:08x}: the image is corrupt",
                    a.stored_crc, a.computed_crc
                ));
            }
        } else if let Some(c) = self.checksum.filter(|c| !c.valid) {
            out.push(bad_sum("the", &c));
        }
        if let Some(h) = self.extended_header.filter(|h| h.hash_appended > 1) {
            out.push(format!(
                "header byte 23 (SHA-256 appended) is {}, but only 0 and 1 are valid: the bootloader refuses this image",
                h.hash_appended
            ));
        }
        if let Some(error) = self.gzip.as_ref().and_then(|g| g.error.clone()) {
            out.push(error);
        }
        if self.gzip.is_some() && self.chip.is_some_and(|c| c != Chip::Esp8266) {
            out.push(
                "the image inside the gzip'd file is for an ESP32-family chip, whose updater accepts only plain images (first byte 0xE9): publish the .bin unpacked".into(),
            );
        }
        if self.sha256_valid == Some(false) {
            out.push(
                "the SHA-256 appended to the image does not match its contents: the image is corrupt".into(),
            );
        }
        out
    }

    /// Whether every check passed.
    pub fn is_valid(&self) -> bool {
        self.problems().is_empty()
    }
}
