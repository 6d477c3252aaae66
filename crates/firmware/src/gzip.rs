//! gzip'd ESP8266 updates: reading what is inside, and making them.
//!
//! The ESP8266 core (≥ 2.7.0, esp8266/Arduino PR #6820) accepts an update whose first bytes are
//! `1f 8b`: `Updater::_verifyEnd` then skips its flash-size check ("GZIP, just assume OK") and eboot
//! unpacks the file with uzlib at the next boot, taking the unpacked size from the gzip trailer's
//! last four bytes. So nothing on the device checks the image inside before it is written over the
//! running sketch: the inspector unpacks it (bounded) and checks it as the chip would.

use std::io::{Read, Write};

use super::image::MAX_FILE_SIZE;

/// What the inspector found inside a gzip'd file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GzipContents {
    /// Size of the unpacked image, when it unpacked within [`MAX_FILE_SIZE`].
    pub unpacked_len: Option<usize>,
    /// The size the gzip trailer states (ISIZE, little-endian): the length eboot copies.
    pub trailer_len: u32,
    /// Why the file does not unpack into something eboot would install, if it does not.
    pub error: Option<String>,
}

impl GzipContents {
    /// How much smaller the `packed_len`-byte file is than the image inside, in percent.
    pub fn percent_saved(&self, packed_len: usize) -> Option<f64> {
        self.unpacked_len.map(|n| 100.0 * (1.0 - packed_len as f64 / n.max(1) as f64))
    }
}

/// Whether the file starts with the gzip magic, as the ESP8266 Updater tells them apart.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Unpacks a gzip'd file, reading at most [`MAX_FILE_SIZE`] + 1 bytes of output, so a file that
/// expands to a gigabyte costs 16 MiB of memory and a fraction of a second, not the machine.
///
/// Returns the unpacked bytes (when they fit and the stream is sound) and what was found.
pub fn unpack(bytes: &[u8]) -> (Option<Vec<u8>>, GzipContents) {
    let trailer_len = bytes
        .get(bytes.len().saturating_sub(4)..)
        .and_then(|t| t.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0);
    let mut contents = GzipContents { unpacked_len: None, trailer_len, error: None };
    // eboot unpacks one gzip member; a single-member decoder reads as it does, and checks the
    // trailer's CRC-32 and length (which eboot copies) against what it unpacked.
    let mut out = Vec::new();
    let limit = MAX_FILE_SIZE as u64 + 1;
    let read = flate2::read::GzDecoder::new(bytes).take(limit).read_to_end(&mut out);
    if let Err(e) = read {
        contents.error =
            Some(format!("the gzip'd file does not unpack ({e}): eboot would leave the device unbootable"));
        return (None, contents);
    }
    if out.len() > MAX_FILE_SIZE {
        contents.error = Some(format!(
            "the gzip'd file unpacks to more than {} MiB, more than any flash OTA Forge targets",
            MAX_FILE_SIZE >> 20
        ));
        return (None, contents);
    }
    contents.unpacked_len = Some(out.len());
    (Some(out), contents)
}

/// Compresses an image the way eboot can unpack it: one gzip member, deflate at level 9 with the
/// standard 32 KiB window (what `gzip -9`, which the core's documentation uses, makes).
pub fn compress(image: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(image.len() / 2), flate2::Compression::best());
    encoder.write_all(image).expect("writing into a Vec cannot fail");
    encoder.finish().expect("writing into a Vec cannot fail")
}
