//! Writing an image's check values back after its bytes changed (a baked config block, a test's
//! patch): each checksum byte, the Arduino length and CRC words, an ESP32 image's SHA-256.

use sha2::{Digest, Sha256};

use super::digest::{ARDUINO_CRC_OFFSET, ARDUINO_LEN_OFFSET, CHECKSUM_SEED, arduino_crc, xor_all};
use super::image::{ImageError, Segment, inspect};

/// Recomputes, in place, every check value the image carries: each checksum byte, the Arduino
/// length and CRC words, and an ESP32 image's appended SHA-256. The layout must still read (see
/// [`inspect`]); gzip'd files are left alone. A signature appended to an ESP8266 image is not
/// touched and no longer matches once the image has changed.
pub fn fix_checksums(image: &mut [u8]) -> Result<(), ImageError> {
    let info = inspect(image)?;
    if let Some(a) = &info.arduino {
        write_checksum(image, &a.eboot.segments, a.eboot.checksum.offset, false);
        write_checksum(image, &a.sketch.segments, a.sketch.checksum.offset, true);
        if let Some(whole) = image.get_mut(..info.image_len) {
            write_arduino_words(whole);
        }
    } else if let Some(c) = info.checksum {
        write_checksum(image, &info.segments, c.offset, false);
        if info.extended_header.is_some_and(|h| h.hash_appended == 1) {
            let end = c.offset + 1;
            let digest = Sha256::digest(image.get(..end).unwrap_or(&[]));
            if let Some(slot) = image.get_mut(end..end + 32) {
                slot.copy_from_slice(&digest);
            }
        }
    }
    Ok(())
}

/// Writes the checksum of `segments` at `offset`. `sketch`: the Arduino convention, which reads
/// the length and CRC words at 0x1010 as zero.
fn write_checksum(image: &mut [u8], segments: &[Segment], offset: usize, sketch: bool) {
    let mut sum = CHECKSUM_SEED;
    for s in segments {
        let end = s.file_offset.saturating_add(s.len as usize);
        sum ^= image.get(s.file_offset..end).map_or(0, xor_all);
    }
    if sketch {
        sum ^= image.get(ARDUINO_LEN_OFFSET..ARDUINO_LEN_OFFSET + 8).map_or(0, xor_all);
    }
    if let Some(b) = image.get_mut(offset) {
        *b = sum;
    }
}

/// Stores the Arduino length (the whole slice) and CRC words.
pub(crate) fn write_arduino_words(image: &mut [u8]) {
    let len = image.len() as u32;
    let crc = arduino_crc(image);
    if let Some(slot) = image.get_mut(ARDUINO_LEN_OFFSET..ARDUINO_CRC_OFFSET + 4) {
        slot[..4].copy_from_slice(&len.to_le_bytes());
        slot[4..].copy_from_slice(&crc.to_le_bytes());
    }
}
