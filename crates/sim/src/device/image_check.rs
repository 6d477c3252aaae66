//! The checks a chip makes before it runs an image, and no more: the boot ROM and bootloaders
//! check the checksum byte (and on the ESP32 the chip id and the appended SHA-256); they never
//! compute MD5s or the Arduino CRC. Kept this lean because a fleet boots thousands of times
//! (the full [`otaforge_firmware::inspect`] is what publishing uses).

use sha2::{Digest, Sha256};

use otaforge_firmware::Chip;
use otaforge_firmware::config_block::{BakedSettings, ConfigError, MAGIC};
use otaforge_firmware::digest::{ARDUINO_LEN_OFFSET, CHECKSUM_SEED, xor_all};

/// Checks the image whose header is at `at` in `bytes` (header `header_len` bytes: 8 for the
/// ESP8266, 24 for the ESP32 family); returns the offset just past its checksum byte.
/// `arduino_sketch`: the Arduino sketch convention, whose checksum reads the length and CRC
/// words at 0x1010 as zero.
fn checksum(bytes: &[u8], at: usize, header_len: usize, arduino_sketch: bool) -> Result<usize, String> {
    let head = bytes.get(at..at + header_len).ok_or("the image header is cut off")?;
    if head[0] != 0xE9 {
        return Err(format!("invalid magic byte 0x{:02x} (nothing flashed here?)", head[0]));
    }
    let mut pos = at + header_len;
    let mut sum = CHECKSUM_SEED;
    for i in 0..head[1] {
        let seg = bytes.get(pos..pos + 8).ok_or_else(|| format!("segment {i}'s header is cut off"))?;
        let len = u32::from_le_bytes([seg[4], seg[5], seg[6], seg[7]]) as usize;
        let data = bytes.get(pos + 8..pos + 8 + len).ok_or_else(|| format!("segment {i} is cut off"))?;
        sum ^= xor_all(data);
        pos += 8 + len;
    }
    if arduino_sketch {
        sum ^= bytes.get(ARDUINO_LEN_OFFSET..ARDUINO_LEN_OFFSET + 8).map_or(0, xor_all);
    }
    let at_sum = pos | 15;
    let stored = *bytes.get(at_sum).ok_or("the checksum byte is cut off")?;
    if stored != sum {
        return Err(format!("checksum failed: calculated 0x{sum:02x}, read 0x{stored:02x}"));
    }
    Ok(at_sum + 1)
}

/// An Arduino ESP8266 image (eboot at 0x0, the sketch at 0x1000): both checksums.
pub fn check_esp8266(bytes: &[u8]) -> Result<(), String> {
    checksum(bytes, 0, 8, false).map_err(|e| format!("eboot: {e}"))?;
    checksum(bytes, 0x1000, 8, true).map_err(|e| format!("the sketch: {e}"))?;
    Ok(())
}

/// An ESP32-family app image for `chip`: chip id, checksum, appended SHA-256.
pub fn check_esp32(bytes: &[u8], chip: Chip) -> Result<(), String> {
    let head = bytes.get(..24).ok_or("the image header is cut off")?;
    let id = u16::from_le_bytes([head[12], head[13]]);
    if head[0] == 0xE9 && Some(id) != chip.image_chip_id() {
        let found =
            Chip::from_image_chip_id(id).map_or_else(|| format!("chip id {id}"), |c| c.name().to_string());
        return Err(format!("mismatch chip ID, expected {}, found {found}", chip.name()));
    }
    let end = checksum(bytes, 0, 24, false)?;
    match head[23] {
        0 => Ok(()),
        1 => {
            let stored = bytes.get(end..end + 32).ok_or("the appended SHA-256 is cut off")?;
            if Sha256::digest(&bytes[..end]).as_slice() != stored {
                return Err("image hash failed - image is corrupt".into());
            }
            Ok(())
        }
        n => Err(format!("header byte 23 is {n} (only 0 and 1 are valid)")),
    }
}

/// The firmware's settings from its config block (the first one; the firmware knows its own
/// block's address, so it never searches). Blocks are 4-byte aligned, as the firmware declares
/// them.
pub fn settings(image: &[u8]) -> Result<Option<BakedSettings>, ConfigError> {
    let head = u64::from_le_bytes(MAGIC[..8].try_into().expect("16-byte magic"));
    let mut at = 0;
    while at + 20 <= image.len() {
        if u64::from_le_bytes(image[at..at + 8].try_into().expect("8 bytes")) == head
            && image[at..at + 16] == MAGIC[..]
        {
            return BakedSettings::decode(&image[at..]);
        }
        at += 4;
    }
    Err(ConfigError::NoBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::reference_image;
    use otaforge_firmware::config_block;

    #[test]
    fn agrees_with_the_inspector() {
        for chip in [Chip::Esp8266, Chip::Esp32, Chip::Esp32C3] {
            let good = reference_image(chip, "1.0.0", 40_000);
            let check = |b: &[u8]| if chip.is_esp8266() { check_esp8266(b) } else { check_esp32(b, chip) };
            assert_eq!(check(&good), Ok(()), "{chip}");
            assert_eq!(
                settings(&good).map_err(|e| e.to_string()),
                config_block::read(&good).map_err(|e| e.to_string())
            );
            // Every single-byte change the inspector calls a problem, the chip refuses too.
            for at in [0x1000 + 40, good.len() - 40, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x01;
                let inspector =
                    otaforge_firmware::inspect(&bad).map(|i| i.problems().is_empty()).unwrap_or(false);
                if !inspector {
                    assert!(check(&bad).is_err(), "{chip} byte {at}");
                }
            }
        }
        let c3 = reference_image(Chip::Esp32C3, "1.0.0", 40_000);
        assert!(check_esp32(&c3, Chip::Esp32).unwrap_err().contains("expected ESP32, found ESP32-C3"));
    }
}
