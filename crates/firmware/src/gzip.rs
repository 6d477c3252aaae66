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
/// standard 32 KiB window (what `gzip -9`, which the core's documentation uses, makes), padded to
/// a whole number of 32-bit words (see [`pad_to_words`]).
pub fn compress(image: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(image.len() / 2), flate2::Compression::best());
    encoder.write_all(image).expect("writing into a Vec cannot fail");
    pad_to_words(encoder.finish().expect("writing into a Vec cannot fail"))
}

/// gzip header flags (RFC 1952, 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
/// Subfield ID of the padding (RFC 1952, 2.3.1.1: any two bytes not registered).
const PADDING_ID: [u8; 2] = *b"OF";

/// Makes a gzip file's length a multiple of four by adding an extra field (FEXTRA) of the right
/// size to its header, so a signature appended to it starts word-aligned.
///
/// Why: the ESP8266 Updater hashes a signed file by reading flash in 32-bit words; for a file
/// whose length is not a multiple of four every released core (up to 3.1.2) hashes some bytes
/// of the signature too, and refuses three of four signed gzip'd updates (esp8266/Arduino
/// PR #9109, merged after 3.1.2). eboot's decompressor (uzlib's `uzlib_gzip_parse_header`) skips
/// an extra field, the unpacked bytes and the trailer's ISIZE are unchanged. A file that already
/// has an extra field or a header CRC is returned as it is.
pub fn pad_to_words(mut gz: Vec<u8>) -> Vec<u8> {
    if gz.len().is_multiple_of(4) || gz.len() < 18 || !is_gzip(&gz) || gz[3] & (FEXTRA | FHCRC) != 0 {
        return gz;
    }
    // XLEN (2) + SI1 SI2 (2) + LEN (2) + data: 6 + k bytes.
    let k = (4 - (gz.len() + 6) % 4) % 4;
    let mut extra = Vec::with_capacity(6 + k);
    extra.extend_from_slice(&((4 + k) as u16).to_le_bytes());
    extra.extend_from_slice(&PADDING_ID);
    extra.extend_from_slice(&(k as u16).to_le_bytes());
    extra.resize(6 + k, 0);
    gz[3] |= FEXTRA;
    // The extra field comes right after the 10-byte fixed header, before any file name.
    gz.splice(10..10, extra);
    gz
}
