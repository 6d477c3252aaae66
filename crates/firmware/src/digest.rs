//! The digests and check values ESP images carry or are compared by: the one-byte XOR checksum,
//! the Arduino CRC-32 at 0x1014, and the MD5 devices report for their running sketch.
//!
//! The ESP8266 updater rewrites header byte 2 (flash mode) on the device to the chip's own mode, so
//! a device's reported MD5 matches the release's only with that byte set the device's way:
//! [`md5_with_flash_mode`] gives the MD5 a release has on a device running in a given mode.

use md5::Md5;
use sha2::{Digest, Sha256};

/// Seed of the ESP image checksum (`ESP_CHECKSUM_MAGIC`).
pub const CHECKSUM_SEED: u8 = 0xEF;

/// File offset of the Arduino length word; the CRC word follows at 0x1014.
pub const ARDUINO_LEN_OFFSET: usize = 0x1010;

/// File offset of the Arduino CRC word.
pub const ARDUINO_CRC_OFFSET: usize = 0x1014;

/// XOR of all bytes (the image checksum is `CHECKSUM_SEED` XOR this over every segment's data).
pub fn xor_all(data: &[u8]) -> u8 {
    // Eight bytes at a time: a 16 MiB image is checked in milliseconds even in debug builds.
    let mut chunks = data.chunks_exact(8);
    let mut wide = 0u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        wide ^= u64::from_le_bytes(word);
    }
    let folded = wide.to_le_bytes().iter().fold(0u8, |acc, b| acc ^ b);
    chunks.remainder().iter().fold(folded, |acc, b| acc ^ b)
}

/// CRC-32/MPEG-2 lookup table: poly 0x04C11DB7, MSB first.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Continues a CRC-32/MPEG-2 over more data (start with `0xFFFF_FFFF`; there is no final XOR).
pub fn crc32_mpeg2_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)];
    }
    crc
}

/// CRC-32/MPEG-2 (init 0xFFFFFFFF, poly 0x04C11DB7, MSB first, no final XOR): the CRC the
/// Arduino ESP8266 core stores at 0x1014 and checks in `ESP.checkFlashCRC()`.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    crc32_mpeg2_update(0xFFFF_FFFF, data)
}

/// The Arduino CRC of `image` (eboot + sketch, exactly the image's bytes): CRC-32/MPEG-2 of the
/// whole of it with the length and CRC words at 0x1010..0x1018 read as zeros.
pub fn arduino_crc(image: &[u8]) -> u32 {
    let Some(head) = image.get(..ARDUINO_LEN_OFFSET) else { return crc32_mpeg2(image) };
    let crc = crc32_mpeg2_update(0xFFFF_FFFF, head);
    let slots = image.len().min(ARDUINO_LEN_OFFSET + 8) - ARDUINO_LEN_OFFSET;
    let crc = crc32_mpeg2_update(crc, &[0u8; 8][..slots]);
    crc32_mpeg2_update(crc, image.get(ARDUINO_LEN_OFFSET + 8..).unwrap_or(&[]))
}

/// MD5 of the whole file, lower-case hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// MD5 of the file as it reads back from a device whose flash runs in mode `mode` (0 QIO, 1 QOUT,
/// 2 DIO, 3 DOUT): byte 2 replaced by `mode` when the file is a plain ESP image (starts with 0xE9;
/// the updater leaves gzip'd images alone). Lower-case hex.
pub fn md5_with_flash_mode(bytes: &[u8], mode: u8) -> String {
    match bytes {
        [0xE9, b1, _, rest @ ..] => {
            let mut md5 = Md5::new();
            md5.update([0xE9, *b1, mode]);
            md5.update(rest);
            hex::encode(md5.finalize())
        }
        _ => md5_hex(bytes),
    }
}

/// Every MD5 a device running `image` may report: the file's, and the file's with each flash mode
/// the bootloader or updater may have written into header byte 2. Sorted, no repeats. The server
/// recognises a release by these and a flash is confirmed by them: one list for both.
pub fn device_md5s(image: &[u8]) -> Vec<String> {
    let mut md5s = vec![md5_hex(image)];
    md5s.extend((0..4u8).map(|mode| md5_with_flash_mode(image, mode)));
    md5s.sort();
    md5s.dedup();
    md5s
}

/// MD5 with the flash-mode byte set to 0, so two copies of an image that differ only by the mode
/// the updater wrote compare equal. Lower-case hex.
pub fn normalized_md5(bytes: &[u8]) -> String {
    md5_with_flash_mode(bytes, 0)
}

/// SHA-256 of the whole file, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_mpeg2() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        assert_eq!(crc32_mpeg2(b""), 0xFFFF_FFFF);
        let split = crc32_mpeg2_update(crc32_mpeg2(b"1234"), b"56789");
        assert_eq!(split, 0x0376_E6E7);
    }

    #[test]
    fn arduino_crc_reads_the_slots_as_zero() {
        let mut image = vec![0x5Au8; 0x1100];
        image[ARDUINO_LEN_OFFSET..ARDUINO_LEN_OFFSET + 8].fill(0);
        let zeroed = crc32_mpeg2(&image);
        image[ARDUINO_LEN_OFFSET..ARDUINO_LEN_OFFSET + 8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(arduino_crc(&image), zeroed);
        // Short inputs never panic.
        for len in [0, 1, 0x1010, 0x1013, 0x1017, 0x1018] {
            let _ = arduino_crc(&image[..len]);
        }
    }

    #[test]
    fn xor_matches_a_plain_fold() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + i / 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 1000, 1001] {
            let plain = data[..len].iter().fold(0u8, |a, b| a ^ b);
            assert_eq!(xor_all(&data[..len]), plain, "{len}");
        }
    }

    #[test]
    fn md5_helpers() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let dio = [0xE9, 3, 2, 0x40, 1, 2, 3, 4];
        let mut qio = dio;
        qio[2] = 0;
        assert_eq!(normalized_md5(&dio), md5_hex(&qio));
        assert_eq!(normalized_md5(&qio), md5_hex(&qio));
        assert_eq!(md5_with_flash_mode(&qio, 2), md5_hex(&dio));
        let md5s = device_md5s(&qio);
        assert!(md5s.contains(&md5_hex(&qio)) && md5s.contains(&md5_hex(&dio)), "{md5s:?}");
        assert!((4..=5).contains(&md5s.len()), "{md5s:?}");
        assert_eq!(device_md5s(b"not an image"), [md5_hex(b"not an image")]);
        // Not an ESP image: untouched.
        assert_eq!(normalized_md5(&[0x1F, 0x8B, 8, 0]), md5_hex(&[0x1F, 0x8B, 8, 0]));
        assert_eq!(normalized_md5(&[0xE9, 1]), md5_hex(&[0xE9, 1]));
    }
}
