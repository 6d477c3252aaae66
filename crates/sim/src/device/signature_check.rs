//! The signature check a core's updater makes when the firmware installed a verifier, step by step
//! as the core takes it, so a virtual board refuses exactly what a real one refuses. The reference
//! firmware installs one when its config block holds a signing key ([`installed`]); with none it
//! installs nothing and the updater behaves as before (MD5 only).
//!
//! **ESP8266** (esp8266/Arduino master, 2026: `cores/esp8266/Updater.cpp` `UpdaterClass::end`,
//! `_writeBuffer`, `begin`; `libraries/ESP8266WiFi/src/BearSSLHelpers.cpp` `SigningVerifier`):
//! - With a verifier the MD5 is neither computed nor checked (`begin` skips `_md5.begin()`,
//!   `_writeBuffer` skips `_md5.add`, `end` compares `_target_md5` only in the branch without a
//!   verifier): x-MD5 is still parsed (a malformed one is still -105) but never compared.
//! - After the whole body arrived (`isFinished`, or the stream error comes first), `end` reads the
//!   last four bytes *from flash* as the signature length and requires it to equal
//!   `verifier->length()` (the RSA modulus size: 256 for RSA-2048; 0 for a key BearSSL cannot
//!   parse, which then fails the `verify` call) and the file to hold it plus the word; then it
//!   hashes, with SHA-256, the first `size - sigLen - 4` bytes *as they are in flash* — after
//!   `_writeBuffer` rewrote header byte 2 to the chip's flash mode (not for gzip), so an image
//!   signed for another flash mode fails — and checks PKCS#1 v1.5 (`br_rsa_pkcs1_vrfy` and a
//!   compare of the hash). Any failure of any step is `UPDATE_ERROR_SIGN` (12); `printError` says
//!   `ERROR[12]: Signature verification failed`, so `getLastErrorString()` is
//!   `Update error: ERROR[12]: Signature verification failed`.
//! - An unsigned file therefore fails at the length word (its last four bytes are image bytes,
//!   which would have to read as 256) and gets the same 12.
//! - Only then `_verifyEnd` (magic byte, flash size of the new image) runs, and `_size` becomes
//!   the length without the trailer: eboot's copy command (`ACTION_COPY_RAW`, `args[2]`) covers
//!   the image alone. For a gzip'd update that matters twice: the hash covers the gzip bytes, and
//!   eboot (`bootloaders/eboot/eboot.c` `copy_raw`) reads the unpacked size from the last four
//!   bytes of the range it is given — the gzip's ISIZE only because the trailer was cut off.
//!   (eboot copies whole sectors, so the trailer's bytes may follow the image at 0x0; nothing
//!   reads them: `getSketchSize()` walks the header, and `getSketchMD5()` hashes that many bytes
//!   — the image, as written, with the chip's flash mode in byte 2.)
//! - Released cores (≤ 3.1.2) hash the last partial 128-byte chunk with
//!   `flashRead(uint32_t*, len)`, which refuses a length that is not a multiple of four and leaves
//!   the buffer as the previous chunk left it: a gzip'd signed file whose gzip part is not a
//!   multiple of four bytes long fails with 12 on them (esp8266/Arduino PR #9109, fixed after
//!   3.1.2). A virtual board follows master, as [`super::codes`] does.
//!
//! **ESP32** (arduino-esp32 built with `UPDATE_SIGN`, 3.3: `libraries/Update/src/Updater.cpp`
//! `installSignature`, `begin`, `_writeBuffer`, `end`; `Updater_Signing.cpp`
//! `UpdaterECDSAVerifier::verify`):
//! - `installSignature` fixes the trailer at 512 bytes whatever the key; `begin` refuses a size
//!   below it with `UPDATE_ERROR_SIZE` (5, "Bad Size Given") before it looks for a partition.
//! - `_writeBuffer` hashes (SHA-256) the bytes it receives, up to `size - 512`; the whole file,
//!   trailer included, is written to the OTA slot and fed to the MD5.
//! - `end` checks x-MD5 first (7, over the whole file), then reads the last 512 bytes back from
//!   the partition and hands them to the verifier, which takes the DER SEQUENCE's length from its
//!   header (`mbedtls_asn1_get_tag`; the whole 512 when that does not parse) and ignores the rest
//!   — padding is not checked — then `mbedtls_pk_verify` (ECDSA P-256 for the ESP32 family's key).
//!   A failure is `UPDATE_ERROR_SIGN` (14), "Signature Verification Failed"; `HTTPUpdate` reports
//!   it as "Update error: Signature Verification Failed" (`runUpdate` calls `abort()` only
//!   after a failed `writeStream`, so the error keeps its own words, as error 7 does).
//!   Only then `_verifyEnd` writes the first 16 bytes and asks `esp_ota_set_boot_partition`.
//! - What boots is the app image in the slot; `getSketchSize()`/`getSketchMD5()` cover the image
//!   `esp_image_verify` measures (header, segments, checksum, appended SHA-256): not the trailer.
//! - arduino-esp32 ≤ 3.3.7 lost the verifier in `begin` (`_reset()` zeroes `_signatureSize`), so
//!   it checked nothing and installed unsigned images (espressif/arduino-esp32 issue #12422, fixed
//!   after). A virtual board checks, as the fixed core does.
//!
//! The cryptography is the project's ([`otaforge_firmware::signature::verify`] for the ESP8266
//! layout, [`PublicKey::verify`] for the ESP32 trailer the core reads its own way).

use otaforge_firmware::Chip;
use otaforge_firmware::config_block::BakedSettings;
use otaforge_firmware::signature::{self, SignatureError};
use otaforge_pki::signing::PublicKey;

use super::flash::Flash;

/// arduino-esp32's signature trailer: `installSignature` sets `_signatureSize = 512`.
pub const ESP32_SIGNATURE_SIZE: usize = 512;

/// The verifier the reference firmware installs before it updates: the key in the running
/// firmware's config block, in the chip's family's format; none when the block holds no key.
pub fn installed(chip: Chip, settings: &BakedSettings) -> Option<PublicKey> {
    (!settings.signing_key.is_empty())
        .then(|| PublicKey { family: signature::family(chip), spki_der: settings.signing_key.clone() })
}

/// The ESP8266 `end()` with a verifier, on the `size` bytes written at `start`: the length of the
/// image without its trailer (what eboot is told to copy), or why the updater refused (always
/// error 12 on the device).
pub fn esp8266_end(
    flash: &Flash,
    start: usize,
    size: usize,
    key: &PublicKey,
) -> Result<usize, SignatureError> {
    // The core reads the flash, not what it received: byte 2 is the chip's flash mode by now.
    let written = flash.read(start, size).map_err(|_| SignatureError::Mismatch)?;
    // `signature::verify` takes the core's steps: the length word must be the key's signature
    // length, then PKCS#1 v1.5 over SHA-256 of what precedes the signature. (It also calls a file
    // unsigned when nothing but the trailer would be left; the core would hash an empty image
    // there, and refuse it as surely.)
    signature::verify(&written, key)?;
    let word = u32::from_le_bytes(written[size - 4..].try_into().expect("four bytes")) as usize;
    Ok(size - 4 - word)
}

/// The ESP32 `end()`'s signature step for the `size` bytes in the slot at `offset`, whose first
/// 16 bytes (`held`) the updater has not written yet (the trailer is read back from the flash, as
/// the core reads it).
pub fn esp32_end(
    flash: &Flash,
    offset: usize,
    size: usize,
    held: &[u8],
    key: &PublicKey,
) -> Result<(), SignatureError> {
    let body_len = size.checked_sub(ESP32_SIGNATURE_SIZE).ok_or(SignatureError::Unsigned)?;
    let mut body = flash.read(offset, body_len).map_err(|_| SignatureError::Mismatch)?;
    let n = held.len().min(body_len);
    body[..n].copy_from_slice(&held[..n]);
    let trailer =
        flash.read(offset + body_len, ESP32_SIGNATURE_SIZE).map_err(|_| SignatureError::Mismatch)?;
    let len = der_sequence_len(&trailer);
    if key.verify(&body, &trailer[..len.unwrap_or(ESP32_SIGNATURE_SIZE)]) {
        Ok(())
    } else if len.is_none() {
        Err(SignatureError::Unsigned)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `UpdaterECDSAVerifier::verify`'s length: the SEQUENCE's header plus its stated length when
/// `mbedtls_asn1_get_tag` parses it within the buffer (mbedTLS `library/asn1parse.c`: short form,
/// or 1 to 4 length bytes; the length must fit in what follows).
fn der_sequence_len(buf: &[u8]) -> Option<usize> {
    const SEQUENCE: u8 = 0x30; // MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE
    if *buf.first()? != SEQUENCE {
        return None;
    }
    let first = *buf.get(1)?;
    let (len, header) = if first & 0x80 == 0 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7F) as usize;
        if n == 0 || n > 4 || buf.len() - 1 <= n {
            return None;
        }
        (buf[2..2 + n].iter().fold(0usize, |a, b| a << 8 | *b as usize), 2 + n)
    };
    (len <= buf.len() - header).then_some(header + len)
}

#[cfg(test)]
mod tests;
