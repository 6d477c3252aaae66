//! Inspection, stage 1 (after `image::inspect` saw 0xE9): the bounds-checked walk over one 0xE9 image: header, optional extended header, segments,
//! padding, checksum and optional SHA-256. Every read goes through `get`, every offset through
//! checked arithmetic, so no input can make it panic.

use sha2::{Digest, Sha256};

use super::digest::{ARDUINO_LEN_OFFSET, CHECKSUM_SEED, xor_all};
use super::image_info::{Checksum, ExtendedHeader, ImageError, Segment};

/// Most segments an image may have (ESP-IDF's `ESP_IMAGE_MAX_SEGMENTS`; Arduino sketches use 5).
pub const MAX_SEGMENTS: usize = 16;

/// Size of the common image header.
const HEADER_LEN: usize = 8;
/// Size of the common header plus the ESP32 extended header.
const EXTENDED_HEADER_LEN: usize = 24;

/// Little-endian u32 at `off`, if the bytes are there.
pub fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let s = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

/// Little-endian u16 at `off`, if the bytes are there.
pub fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    let s = bytes.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

/// Whether an address is where ESP8266 segments load: DRAM, IRAM, or flash-mapped IROM.
pub fn is_esp8266_addr(addr: u32) -> bool {
    matches!(addr, 0x3FFE_8000..=0x3FFF_FFFF | 0x4010_0000..=0x4010_FFFF | 0x4020_0000..=0x402F_FFFF)
}

/// Whether an address is where ESP32-family segments load (DROM, DRAM, IRAM, IROM, RTC/LP memory
/// of any family member). Broad on purpose: it only breaks ties with the ESP8266 reading.
pub fn is_esp32_addr(addr: u32) -> bool {
    matches!(
        addr,
        0x3C00_0000..=0x3DFF_FFFF        // S3/C3/C2 DROM
            | 0x3F00_0000..=0x3FFF_FFFF  // ESP32/S2 DROM, DRAM of all
            | 0x4000_0000..=0x404F_FFFF  // IRAM, ESP32/S2 IROM, P4 flash
            | 0x4080_0000..=0x408F_FFFF  // C5/C6/C61/H2 SRAM
            | 0x4200_0000..=0x43FF_FFFF  // IROM/DROM of the RISC-V chips
            | 0x4800_0000..=0x4BFF_FFFF  // P4 DROM
            | 0x4FF0_0000..=0x501F_FFFF  // P4 L2MEM, RTC/LP memory
            | 0x600F_E000..=0x600F_FFFF // S3 RTC fast memory
    )
}

/// Whether bytes 8..24 read as a plausible ESP32 extended header. Bytes past the end of a cut
/// file do not count against it, so a truncated ESP32 image is still reported as one.
pub fn extended_header_plausible(bytes: &[u8]) -> bool {
    let known_chip = u16_at(bytes, 12).and_then(super::chip::Chip::from_image_chip_id).is_some();
    let reserved_zero = bytes.iter().skip(19).take(4).all(|&b| b == 0);
    let hash_flag_ok = bytes.get(23).is_none_or(|&b| b <= 1);
    known_chip && reserved_zero && hash_flag_ok
}

/// One image as found in the file; offsets are absolute file offsets.
#[derive(Debug, Clone)]
pub struct RawImage {
    /// Where the image starts in the file.
    pub base: usize,
    /// Header byte 2.
    pub mode_byte: u8,
    /// Header byte 3: size code << 4 | frequency code.
    pub size_freq: u8,
    /// Entry address.
    pub entry: u32,
    /// The ESP32 extended header, when read as one.
    pub ext: Option<ExtendedHeader>,
    /// The segments.
    pub segments: Vec<Segment>,
    /// The checksum byte.
    pub checksum: Checksum,
    /// Whether the appended SHA-256 matches, when there is one.
    pub sha256_valid: Option<bool>,
    /// One past the last byte of the image (checksum, or SHA-256 when appended).
    pub end: usize,
    /// Things worth telling that do not make the image invalid.
    pub warnings: Vec<String>,
}

fn truncated(what: String, need: usize, bytes: &[u8], at: usize) -> ImageError {
    ImageError::Truncated { what, need, have: bytes.len().saturating_sub(at) }
}

/// Walks one image starting at `base`. `name` says which ("the image", "the sketch image") in
/// messages. `extended`: read the 16-byte ESP32 extended header. `crc_slots`: this is an Arduino
/// sketch, whose checksum was computed while its length and CRC words at 0x1010 were still zero.
pub fn parse_image(
    bytes: &[u8],
    base: usize,
    extended: bool,
    name: &str,
    crc_slots: bool,
) -> Result<RawImage, ImageError> {
    let header_len = if extended { EXTENDED_HEADER_LEN } else { HEADER_LEN };
    let header = base
        .checked_add(header_len)
        .and_then(|end| bytes.get(base..end))
        .ok_or_else(|| truncated(format!("the header of {name}"), header_len, bytes, base))?;
    let count = usize::from(header[1]);
    if count == 0 {
        return Err(ImageError::NoSegments);
    }
    if count > MAX_SEGMENTS {
        return Err(ImageError::TooManySegments { count });
    }
    let entry = u32_at(header, 4).unwrap_or(0);
    let ext = extended.then(|| ExtendedHeader {
        wp_pin: header[8],
        spi_drive: [header[9], header[10], header[11]],
        chip_id: u16_at(header, 12).unwrap_or(0),
        min_chip_rev: header[14],
        min_chip_rev_full: u16_at(header, 15).unwrap_or(0),
        max_chip_rev_full: u16_at(header, 17).unwrap_or(0),
        hash_appended: header[23],
    });

    let mut warnings = Vec::new();
    let mut segments = Vec::with_capacity(count);
    let mut xor = 0u8;
    let mut pos = base + header_len;
    for n in 1..=count {
        let seg_header = bytes
            .get(pos..pos.saturating_add(8))
            .filter(|h| h.len() == 8)
            .ok_or_else(|| truncated(format!("the header of segment {n} of {name}"), 8, bytes, pos))?;
        let load_addr = u32_at(seg_header, 0).unwrap_or(0);
        let len = u32_at(seg_header, 4).unwrap_or(0);
        pos += 8;
        let len_usize = usize::try_from(len).unwrap_or(usize::MAX);
        let data = pos
            .checked_add(len_usize)
            .and_then(|end| bytes.get(pos..end))
            .ok_or_else(|| truncated(format!("segment {n} of {name}"), len_usize, bytes, pos))?;
        xor ^= xor_all(data);
        if !len.is_multiple_of(4) {
            warnings.push(format!("segment {n} of {name} holds {len} bytes, not a multiple of 4"));
        }
        segments.push(Segment { load_addr, len, file_offset: pos });
        pos += len_usize;
    }

    // Zero padding up to 15 mod 16 (counted from the image start), then the checksum byte.
    let checksum_offset = base + ((pos - base) | 15);
    let stored = *bytes.get(checksum_offset).ok_or_else(|| {
        truncated(
            format!("the padding and checksum after the segments of {name}"),
            checksum_offset + 1 - pos,
            bytes,
            pos,
        )
    })?;
    let plain = CHECKSUM_SEED ^ xor;
    let computed = match (crc_slots, segments.first()) {
        (true, Some(s)) if s.file_offset == ARDUINO_LEN_OFFSET && s.len >= 8 => {
            plain ^ bytes.get(ARDUINO_LEN_OFFSET..ARDUINO_LEN_OFFSET + 8).map_or(0, xor_all)
        }
        _ => plain,
    };
    // An Arduino sketch's checksum may also have been recomputed with its words filled in.
    let valid = stored == computed || stored == plain;
    let checksum = Checksum { offset: checksum_offset, stored, computed, valid };

    let mut end = checksum_offset + 1;
    let mut sha256_valid = None;
    if ext.is_some_and(|h| h.hash_appended == 1) {
        let digest = bytes
            .get(end..end + 32)
            .ok_or_else(|| truncated(format!("the SHA-256 appended to {name}"), 32, bytes, end))?;
        let covered = bytes.get(base..end).unwrap_or(&[]);
        sha256_valid = Some(Sha256::digest(covered).as_slice() == digest);
        end += 32;
    }

    Ok(RawImage {
        base,
        mode_byte: header[2],
        size_freq: header[3],
        entry,
        ext,
        segments,
        checksum,
        sha256_valid,
        end,
        warnings,
    })
}
