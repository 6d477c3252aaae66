//! Inspection, stage 2: deciding what an 0xE9 file is (a single ESP8266 image, the Arduino eboot + sketch layout, or an
//! ESP32 app) and turning the walk over it into an [`ImageInfo`]; and naming what a file that is
//! not an image at all most likely is.

use super::chip::Chip;
use super::digest::{
    ARDUINO_CRC_OFFSET, ARDUINO_LEN_OFFSET, arduino_crc, md5_hex, normalized_md5, sha256_hex,
};
use super::image_info::{AppDesc, ArduinoInfo, FlashMode, ImageError, ImageFormat, ImageInfo, SubImage};
use super::walk::{RawImage, extended_header_plausible, is_esp32_addr, is_esp8266_addr, parse_image, u32_at};
use otaforge_protocol::Family;

/// Where the sketch starts in an Arduino ESP8266 image.
const ARDUINO_SKETCH_OFFSET: usize = 0x1000;
/// `esp_app_desc_t` magic word.
const APP_DESC_MAGIC: u32 = 0xABCD_5432;
/// Where `esp_app_desc_t` sits: after the 24-byte header and the first 8-byte segment header.
const APP_DESC_OFFSET: usize = 0x20;
/// Plausible lengths of an ESP8266 signature (appended with a trailing u32 length).
const SIGNATURE_LENS: std::ops::RangeInclusive<usize> = 64..=1024;

/// An image as read one way (ESP8266 or ESP32), before hashing and reporting.
struct Reading {
    main: RawImage,
    eboot: Option<RawImage>,
    arduino_crc: Option<u32>,
}

impl Reading {
    fn all_checks_pass(&self, bytes: &[u8]) -> bool {
        let eboot_ok = self.eboot.as_ref().is_none_or(|e| e.checksum.valid);
        let crc_ok = self.arduino_crc.is_none_or(|crc| {
            u32_at(bytes, ARDUINO_CRC_OFFSET) == Some(crc)
                && u32_at(bytes, ARDUINO_LEN_OFFSET).is_some_and(|l| l as usize == self.main.end)
        });
        let hash_flag_ok = self.main.ext.is_none_or(|h| h.hash_appended <= 1);
        self.main.checksum.valid
            && self.main.sha256_valid != Some(false)
            && hash_flag_ok
            && eboot_ok
            && crc_ok
    }
}

fn read_as(bytes: &[u8], family: Family) -> Result<Reading, ImageError> {
    if family == Family::Esp32 {
        let main = parse_image(bytes, 0, true, "the image", false)?;
        return Ok(Reading { main, eboot: None, arduino_crc: None });
    }
    let first = parse_image(bytes, 0, false, "the image", false)?;
    if first.end <= ARDUINO_SKETCH_OFFSET && bytes.get(ARDUINO_SKETCH_OFFSET) == Some(&0xE9) {
        let sketch = parse_image(bytes, ARDUINO_SKETCH_OFFSET, false, "the sketch image", true)?;
        // Arduino sketches start with .irom0.text, whose first 8 bytes are the length and CRC words.
        let has_slots =
            sketch.segments.first().is_some_and(|s| s.file_offset == ARDUINO_LEN_OFFSET && s.len >= 8);
        if has_slots {
            let crc = arduino_crc(bytes.get(..sketch.end).unwrap_or(bytes));
            return Ok(Reading { main: sketch, eboot: Some(first), arduino_crc: Some(crc) });
        }
    }
    Ok(Reading { main: first, eboot: None, arduino_crc: None })
}

/// Tells an ESP8266 image from an ESP32 one: the ESP32 reading needs a plausible extended header,
/// and each reading's first segment should load where that family loads segments. Ties, and a
/// first reading that fails, fall back to the other reading only if it passes every check.
pub fn inspect_e9(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    let esp8266_score = 2 * u8::from(u32_at(bytes, 8).is_some_and(is_esp8266_addr));
    let esp32_score = 2 * u8::from(extended_header_plausible(bytes))
        + u8::from(u32_at(bytes, 24).is_some_and(is_esp32_addr));
    let order = if esp32_score > esp8266_score {
        [Family::Esp32, Family::Esp8266]
    } else {
        [Family::Esp8266, Family::Esp32]
    };
    let first = read_as(bytes, order[0]);
    let reading = match first {
        Ok(r) if r.all_checks_pass(bytes) => r,
        first => match read_as(bytes, order[1]) {
            Ok(r) if r.all_checks_pass(bytes) => r,
            _ => first?,
        },
    };
    Ok(report(bytes, reading))
}

fn sub_image(raw: &RawImage) -> SubImage {
    SubImage {
        offset: raw.base,
        len: raw.end - raw.base,
        flash_mode: FlashMode::from_byte(raw.mode_byte),
        flash_size_code: raw.size_freq >> 4,
        flash_freq_code: raw.size_freq & 0x0F,
        entry: raw.entry,
        segments: raw.segments.clone(),
        checksum: raw.checksum,
    }
}

fn report(bytes: &[u8], reading: Reading) -> ImageInfo {
    let Reading { main, eboot, arduino_crc } = reading;
    let size = bytes.len();
    let mut warnings = Vec::new();
    let (format, chip) = match (&main.ext, &eboot) {
        (Some(h), _) => (ImageFormat::Esp32App, Chip::from_image_chip_id(h.chip_id)),
        (None, Some(_)) => (ImageFormat::ArduinoEsp8266, Some(Chip::Esp8266)),
        (None, None) => (ImageFormat::Esp8266, Some(Chip::Esp8266)),
    };
    if let Some(h) = main.ext.filter(|_| chip.is_none()) {
        warnings.push(format!("the header names chip id {}, which OTA Forge does not know", h.chip_id));
    }
    if format == ImageFormat::Esp8266 {
        warnings.push(
            "this ESP8266 image has no eboot bootloader in front of it; the Arduino updater copies the file \
             to flash offset 0, so a device would lose its bootloader (and further updates) or not boot: \
             publish the Arduino .bin, which holds eboot and the sketch"
                .into(),
        );
    }

    // Flash settings come from offset 0: eboot's header in an Arduino file.
    let head = eboot.as_ref().unwrap_or(&main);
    let flash_mode = FlashMode::from_byte(head.mode_byte);
    if flash_mode.is_none() {
        warnings.push(format!(
            "flash mode byte is {}; known modes are 0 QIO, 1 QOUT, 2 DIO, 3 DOUT",
            head.mode_byte
        ));
    }
    let size_code = head.size_freq >> 4;
    let flash_size_bytes = chip.unwrap_or(Chip::Esp32).flash_size_from_code(size_code);
    if flash_size_bytes.is_none() {
        warnings.push(format!("flash size code {size_code} is not one the chip's flash-size table has"));
    }

    let arduino = eboot.as_ref().map(|e| {
        if e.mode_byte != main.mode_byte || e.size_freq != main.size_freq {
            warnings.push(
                "eboot and the sketch headers disagree on flash settings; the chip uses eboot's".into(),
            );
        }
        let padding = bytes.get(e.end..ARDUINO_SKETCH_OFFSET).unwrap_or(&[]);
        if padding.iter().any(|&b| b != 0xAA) {
            warnings.push("the gap between eboot and the sketch is not the usual 0xAA filler".into());
        }
        let stored_len = u32_at(bytes, ARDUINO_LEN_OFFSET).unwrap_or(0);
        let stored_crc = u32_at(bytes, ARDUINO_CRC_OFFSET).unwrap_or(0);
        let computed_crc = arduino_crc.unwrap_or(0);
        ArduinoInfo {
            eboot: sub_image(e),
            sketch: sub_image(&main),
            stored_len,
            stored_crc,
            computed_crc,
            len_valid: stored_len as usize == main.end,
            crc_valid: stored_crc == computed_crc,
        }
    });
    if let Some(e) = &eboot {
        warnings.extend(e.warnings.iter().map(|w| w.replace("of the image", "of eboot")));
    }
    warnings.extend(main.warnings.iter().cloned());

    let app_desc = main.ext.and_then(|_| app_desc(bytes));
    if main.ext.is_some() && app_desc.is_none() {
        warnings.push(
            "there is no ESP-IDF app descriptor at 0x20, so the version cannot be read from the image; \
             is this a bootloader or a merged flash image rather than the app .bin?"
                .into(),
        );
    }

    let signature_len = signature_len(bytes, main.end).filter(|_| format != ImageFormat::Esp32App);
    let trailing = size - main.end;
    if signature_len.is_none() && trailing > 0 {
        let tail = bytes.get(main.end..).unwrap_or(&[]);
        warnings.push(if tail.iter().all(|&b| b == 0xFF) {
            format!("{trailing} bytes of 0xFF padding follow the image; devices download them but never run them")
        } else {
            format!(
                "{trailing} bytes that are not part of the image follow it (a merged flash image, or something appended?)"
            )
        });
    }

    let checksum_valid = main.checksum.valid && eboot.as_ref().is_none_or(|e| e.checksum.valid);
    ImageInfo {
        format,
        chip,
        flash_mode,
        flash_size_code: Some(size_code),
        flash_size_bytes,
        flash_freq_code: Some(head.size_freq & 0x0F),
        entry: Some(main.entry),
        segments: main.segments.clone(),
        checksum: Some(main.checksum),
        checksum_valid: Some(checksum_valid),
        sha256_valid: main.sha256_valid,
        extended_header: main.ext,
        arduino,
        app_desc,
        image_len: main.end,
        gzip: None,
        signature_len,
        size,
        md5: md5_hex(bytes),
        normalized_md5: normalized_md5(bytes),
        sha256: sha256_hex(bytes),
        warnings,
    }
}

/// The signature length when the file is `image || signature || u32_le(signature length)`.
fn signature_len(bytes: &[u8], image_end: usize) -> Option<usize> {
    let n = u32_at(bytes, bytes.len().checked_sub(4)?)? as usize;
    (SIGNATURE_LENS.contains(&n) && image_end.checked_add(n)?.checked_add(4)? == bytes.len()).then_some(n)
}

fn app_desc(bytes: &[u8]) -> Option<AppDesc> {
    if u32_at(bytes, APP_DESC_OFFSET)? != APP_DESC_MAGIC {
        return None;
    }
    let text = |off: usize, len: usize| -> Option<String> {
        let field = bytes.get(APP_DESC_OFFSET + off..APP_DESC_OFFSET + off + len)?;
        let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
        Some(String::from_utf8_lossy(&field[..end]).into_owned())
    };
    Some(AppDesc {
        version: text(0x10, 32)?,
        project_name: text(0x30, 32)?,
        time: text(0x50, 16)?,
        date: text(0x60, 16)?,
        idf_version: text(0x70, 32)?,
    })
}

/// Names what a non-image file is, for the common mistakes.
pub fn foreign(bytes: &[u8]) -> ImageError {
    let first_byte = bytes.first().copied().unwrap_or(0);
    if bytes.starts_with(b"\x7FELF") {
        return ImageError::Elf;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return ImageError::Zip;
    }
    if bytes.starts_with(b"UF2\n") {
        return ImageError::Uf2;
    }
    if first_byte == 0xEA {
        return ImageError::Esp8266V2;
    }
    if bytes.iter().take(16).all(|&b| b == 0xFF) {
        return ImageError::BlankStart;
    }
    let sample = bytes.get(..bytes.len().min(512)).unwrap_or(bytes);
    let sample = sample.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(sample);
    let text = match std::str::from_utf8(sample) {
        Ok(s) => Some(s),
        // A multi-byte character cut by the sample's end is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&sample[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(t) if !t.is_empty() && t.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            let t = t.trim_start();
            if t.starts_with('<') {
                ImageError::Html
            } else {
                let start: String = t.lines().next().unwrap_or("").chars().take(40).collect();
                ImageError::Text { start }
            }
        }
        _ => ImageError::NotAnImage { first_byte },
    }
}
