//! Signed updates, laid out exactly as each core's updater reads them.
//!
//! - **ESP8266** (esp8266/Arduino ≥ 2.6.0, `cores/esp8266/Updater.cpp`, `Updater::end`): the file is
//!   `image || signature || uint32_le(signature length)`. The updater reads the last four bytes as
//!   the length, requires it to equal `verifier->length()` (256 for RSA-2048), hashes the first
//!   `size - length - 4` bytes with SHA-256 and checks RSASSA-PKCS1-v1_5; a mismatch ends the update
//!   with `UPDATE_ERROR_SIGN` (12). A gzip'd update is signed after compressing: the hash covers the
//!   gzip bytes as written to flash.
//! - **ESP32** (arduino-esp32 ≥ 3.3, `libraries/Update/src/Updater.cpp`): with a verifier installed,
//!   the last 512 bytes are the signature (ECDSA DER, zero-padded) and the hash covers everything
//!   before them; a mismatch is `UPDATE_ERROR_SIGN` (14).
//!
//! The ESP8266 updater hashes what it wrote to flash, after it rewrote the header's flash-mode byte
//! to the chip's running mode: sign images built for the mode the boards run (the Arduino default).

use otaforge_pki::signing::{Family, PrivateKey, PublicKey};

use crate::Chip;

/// The signing family of a chip: the ESP8266 core's format, or arduino-esp32's.
pub fn family(chip: Chip) -> Family {
    if chip.is_esp8266() { Family::Esp8266 } else { Family::Esp32 }
}

/// The public key an image's firmware verifies its updates with, if it verifies any: the key
/// baked into its config block, else one of `known` compiled into it (`ota_config.h`, as DER or
/// PEM, which is how `otaforge key export` hands it over). `image` is the plain image (not gzip'd).
///
/// This is what the server uses to offer a device only releases it can install: a device running
/// this image refuses anything not signed by this key.
pub fn trusted_key(image: &[u8], family: Family, known: &[PublicKey]) -> Option<PublicKey> {
    if let Ok(Some(baked)) = crate::config_block::read(image)
        && !baked.signing_key.is_empty()
    {
        return Some(PublicKey { family, spki_der: baked.signing_key });
    }
    known.iter().find(|k| contains(image, &k.spki_der) || contains(image, k.to_pem().as_bytes())).cloned()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Size of the arduino-esp32 signature trailer (`UPDATE_SIGNATURE_SIZE` / bin_signing.py).
pub const ESP32_TRAILER: usize = 512;
/// Largest signature length word the ESP8266 format can carry sensibly (RSA-4096).
const ESP8266_MAX_SIG: usize = 512;
/// The ESP8266 core's error code for a refused signature (`UPDATE_ERROR_SIGN`).
pub const ESP8266_UPDATE_ERROR_SIGN: u8 = 12;
/// arduino-esp32's error code for a refused signature (`UPDATE_ERROR_SIGN`).
pub const ESP32_UPDATE_ERROR_SIGN: u8 = 14;

/// A signed file split into what was signed and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    /// The bytes the device hashes (the image, or the gzip'd image).
    pub body: &'a [u8],
    /// The signature as the verifier receives it (padding removed).
    pub signature: &'a [u8],
}

/// Appends a signature in `key`'s family's format.
pub fn sign(image: &[u8], key: &PrivateKey) -> Result<Vec<u8>, otaforge_pki::PkiError> {
    let signature = key.sign(image)?;
    let mut out = Vec::with_capacity(image.len() + ESP32_TRAILER + 4);
    out.extend_from_slice(image);
    match key.family() {
        Family::Esp8266 => {
            out.extend_from_slice(&signature);
            out.extend_from_slice(&(signature.len() as u32).to_le_bytes());
        }
        Family::Esp32 => {
            out.extend_from_slice(&signature);
            out.resize(image.len() + ESP32_TRAILER, 0);
        }
    }
    Ok(out)
}

/// Finds a signature trailer of `family`'s format, if the file ends with one.
///
/// ESP8266 files say so themselves (a plausible length word before which the signature fits); an
/// ESP32 trailer is recognised by a DER ECDSA signature followed by zero padding.
pub fn split(family: Family, bytes: &[u8]) -> Option<Signed<'_>> {
    match family {
        Family::Esp8266 => {
            let n = bytes.len();
            let len = u32::from_le_bytes(bytes.get(n.checked_sub(4)?..)?.try_into().ok()?) as usize;
            if !(64..=ESP8266_MAX_SIG).contains(&len) || len + 4 >= n {
                return None;
            }
            Some(Signed { body: &bytes[..n - 4 - len], signature: &bytes[n - 4 - len..n - 4] })
        }
        Family::Esp32 => {
            let start = bytes.len().checked_sub(ESP32_TRAILER)?;
            let trailer = &bytes[start..];
            let der_len = der_sequence_len(trailer)?;
            trailer[der_len..]
                .iter()
                .all(|b| *b == 0)
                .then_some(Signed { body: &bytes[..start], signature: &trailer[..der_len] })
        }
    }
}

/// Whether `bytes` verify against `key` the way the device checks them.
///
/// For the ESP8266 this is the updater's check step by step: the length word must equal the key's
/// signature length, then PKCS#1 v1.5 over SHA-256 of the body.
pub fn verify(bytes: &[u8], key: &PublicKey) -> Result<(), SignatureError> {
    let signed = split(key.family, bytes).ok_or(SignatureError::Unsigned)?;
    if key.family == Family::Esp8266 && signed.signature.len() != rsa_modulus_len(key) {
        return Err(SignatureError::WrongLength {
            found: signed.signature.len(),
            expected: rsa_modulus_len(key),
        });
    }
    if key.verify(signed.body, signed.signature) { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// Why a device would refuse a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature trailer.
    #[error("the image is not signed")]
    Unsigned,
    /// The ESP8266 length word does not match the key.
    #[error("the signature is {found} bytes but the key's signatures are {expected}")]
    WrongLength {
        /// Length word in the file.
        found: usize,
        /// What the verifier expects.
        expected: usize,
    },
    /// Signature does not match the image or was made by another key.
    #[error("the signature does not match the image, or was made by another key")]
    Mismatch,
}

/// RSA modulus length in bytes, read from the SubjectPublicKeyInfo (what BearSSL's
/// `SigningVerifier::length()` returns).
fn rsa_modulus_len(key: &PublicKey) -> usize {
    // SPKI: SEQ { SEQ { oid, null }, BIT STRING { 00, SEQ { INTEGER n, INTEGER e } } }. The
    // modulus INTEGER is the first 0x02 after the BIT STRING's inner SEQUENCE header.
    let der = &key.spki_der;
    let Some(bit) = der.windows(2).position(|w| w == [0x03, 0x82] || w == [0x03, 0x81]) else {
        return 0;
    };
    let mut i = bit + 2 + (der[bit + 1] & 0x7f) as usize + 1; // past BIT STRING header and 00
    i += 1; // SEQUENCE tag
    i += header_len_bytes(der.get(i).copied().unwrap_or(0));
    if der.get(i) != Some(&0x02) {
        return 0;
    }
    i += 1;
    let (len, skip) = der_len(&der[i..]).unwrap_or((0, 0));
    let body = &der[i + skip..(i + skip + len).min(der.len())];
    body.iter().skip_while(|b| **b == 0).count()
}

fn header_len_bytes(first: u8) -> usize {
    if first & 0x80 == 0 { 1 } else { 1 + (first & 0x7f) as usize }
}

fn der_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    if first & 0x80 == 0 {
        return Some((first as usize, 1));
    }
    let n = (first & 0x7f) as usize;
    let len = bytes.get(1..1 + n)?.iter().fold(0usize, |a, b| a << 8 | *b as usize);
    Some((len, 1 + n))
}

/// Total length of a DER SEQUENCE at the start of `bytes`, if there is one that fits.
fn der_sequence_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&0x30) {
        return None;
    }
    let (len, skip) = der_len(&bytes[1..])?;
    let total = 1 + skip + len;
    (len >= 8 && total <= bytes.len()).then_some(total)
}
