//! The config block: a fixed-size record the reference firmware reserves in flash, so the app can
//! write a device's settings (CA, host, port, path, version, Wi-Fi, name…) into a prebuilt `.bin`
//! without a compiler.
//!
//! The layout is defined here, once. [`c_header`] generates `otaforge_config_block.h` for the
//! firmware from the same table, and a test keeps the committed header equal to it.
//!
//! Block (little-endian, 3584 bytes): magic, format, length, flags, fields, zero padding, and a
//! CRC-32 (IEEE, as zlib) over everything before it. An unbaked block carries the magic, format and
//! length with `flags = 0`: the firmware then uses its compiled-in `ota_config.h` values.
//!
//! Format 2 added the public key the firmware verifies signed updates with (DER
//! SubjectPublicKeyInfo, as `BearSSL::PublicKey` and `mbedtls_pk_parse_public_key` take it). Its
//! fields are format 1's with the key appended, so every shared field keeps its offset; images
//! built from format-1 firmware are still read and baked, just never with a key.

use std::fmt::Write as _;

use super::checksums::fix_checksums;
use super::image::{ImageError, inspect};

/// The marker the app searches for (16 bytes, the struct's first field).
pub const MAGIC: &[u8; 16] = b"OTAFORGE-CONFIG\0";
/// Format version of this layout (the one OTA Forge's firmware is built with).
pub const FORMAT: u16 = 2;
/// Size of the whole block.
pub const BLOCK_LEN: usize = 3584;
/// Format 1: the same fields without the signing key, in 3072 bytes.
const FORMAT_1_LEN: usize = 3072;
/// Room for the signing key: an RSA-4096 SubjectPublicKeyInfo is 550 bytes (OTA Forge makes
/// RSA-2048, 294 bytes, and P-256, 91 bytes).
pub const SIGNING_KEY_MAX: usize = 550;
/// `flags` bit: the block holds settings (else the firmware uses its compiled-in defaults).
pub const FLAG_BAKED: u32 = 1;

/// A field's type in the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Little-endian u16.
    U16,
    /// Little-endian u32.
    U32,
    /// NUL-terminated text in a fixed array of this many bytes (at most n-1 bytes of text).
    Text(usize),
    /// Raw bytes.
    Bytes(usize),
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::U16 => 2,
            Kind::U32 => 4,
            Kind::Text(n) | Kind::Bytes(n) => n,
        }
    }
}

/// The layout, in order. Changing it means a new [`FORMAT`].
pub const LAYOUT: &[(&str, Kind)] = &[
    ("magic", Kind::Bytes(16)),
    ("format", Kind::U16),
    ("length", Kind::U16),
    ("flags", Kind::U32),
    ("baked_at", Kind::U32),
    ("port", Kind::U16),
    ("tls_rx_buffer", Kind::U16),
    ("tls_tx_buffer", Kind::U16),
    ("ca_len", Kind::U16),
    ("poll_interval_s", Kind::U32),
    ("host", Kind::Text(64)),
    ("path", Kind::Text(96)),
    ("channel", Kind::Text(32)),
    ("version", Kind::Text(32)),
    ("device_name", Kind::Text(32)),
    ("wifi_ssid", Kind::Text(36)),
    ("wifi_password", Kind::Text(68)),
    ("ca_pem", Kind::Text(2560)),
    // Format 2.
    ("signing_key_len", Kind::U16),
    ("signing_key", Kind::Bytes(SIGNING_KEY_MAX)),
];

/// Block length of each format this OTA Forge reads and bakes.
fn block_len(format: u16) -> Option<usize> {
    match format {
        1 => Some(FORMAT_1_LEN),
        2 => Some(BLOCK_LEN),
        _ => None,
    }
}

/// Byte offset and kind of a field.
pub fn field(name: &str) -> (usize, Kind) {
    let mut off = 0;
    for (n, k) in LAYOUT {
        if *n == name {
            return (off, *k);
        }
        off += k.size();
    }
    panic!("no config field {name}");
}

fn fields_len() -> usize {
    LAYOUT.iter().map(|(_, k)| k.size()).sum()
}

/// Offset of the trailing CRC-32.
pub const CRC_OFFSET: usize = BLOCK_LEN - 4;

/// The settings baked into an image's config block: the fleet's (host, port, path, CA…) and, in
/// images baked before device settings had an area of their own, one device's name and Wi-Fi.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BakedSettings {
    /// Update-server host (as in the certificate).
    pub host: String,
    /// HTTPS port.
    pub port: u16,
    /// Update path, e.g. `/update`.
    pub path: String,
    /// Channel (appended to the path by the firmware when not empty). Images baked before the
    /// default channel had one name carry "" for it: [`BakedSettings::channel_name`] reads both.
    pub channel: String,
    /// Firmware version the device reports.
    pub version: String,
    /// The device's name.
    pub device_name: String,
    /// Wi-Fi network (empty: keep what the firmware was built with).
    pub wifi_ssid: String,
    /// Wi-Fi password.
    pub wifi_password: String,
    /// Trust anchor PEM (the CA).
    pub ca_pem: String,
    /// Seconds between update checks.
    pub poll_interval_s: u32,
    /// BearSSL receive buffer (ESP8266), 512..16384.
    pub tls_rx_buffer: u16,
    /// BearSSL send buffer (ESP8266), 512..16384.
    pub tls_tx_buffer: u16,
    /// Unix time of baking: the device's clock never starts earlier than this.
    pub baked_at: u32,
    /// The public key (DER SubjectPublicKeyInfo) the firmware verifies updates with; empty: the
    /// firmware installs whatever the server sends (format 2 blocks only).
    #[serde(default, with = "hex_bytes")]
    pub signing_key: Vec<u8>,
}

impl BakedSettings {
    /// The channel the image's devices poll, by its one name: [`channel_or_default`].
    pub fn channel_name(&self) -> &str {
        channel_or_default(&self.channel)
    }
}

/// A channel by its one name: `""` (what images baked before the default channel had a name
/// carry, and what polls the update path itself) is the default channel,
/// [`otaforge_protocol::DEFAULT_CHANNEL`].
pub fn channel_or_default(channel: &str) -> &str {
    if channel.is_empty() { otaforge_protocol::DEFAULT_CHANNEL } else { channel }
}

/// The key as hex in JSON (`inspect --json`, the fleet settings file).
mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// Why settings or a block could not be used.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{field} is {len} bytes long but the config block holds at most {max}")]
    TooLong { field: &'static str, len: usize, max: usize },
    #[error("{field} contains a NUL byte")]
    Nul { field: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this image has no OTA Forge config block: it was not built from the reference firmware (or an older one). Build it from device-firmware/, or bake from source with ota_config.h"
    )]
    NoBlock,
    #[error("this image holds {0} config blocks; OTA Forge cannot tell which one the firmware uses")]
    SeveralBlocks(usize),
    #[error("the config block has format {0}; this OTA Forge reads formats 1 to {FORMAT}")]
    WrongFormat(u16),
    #[error(
        "this firmware's config block is format 1, which has no room for a signing key: rebuild the firmware from device-firmware/ (format {FORMAT})"
    )]
    NoRoomForKey,
    #[error("the config block is damaged (CRC mismatch)")]
    BadCrc,
    #[error(transparent)]
    Image(#[from] ImageError),
}

impl BakedSettings {
    /// Checks every value against the block's limits and the devices' rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in self.texts() {
            let (_, kind) = field(name);
            let Kind::Text(n) = kind else { unreachable!() };
            if value.len() >= n {
                return Err(ConfigError::TooLong { field: name, len: value.len(), max: n - 1 });
            }
            if value.contains('\0') {
                return Err(ConfigError::Nul { field: name });
            }
        }
        if self.host.is_empty() {
            return Err(ConfigError::Invalid("the host is empty".into()));
        }
        if self.port == 0 {
            return Err(ConfigError::Invalid("the port is 0".into()));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::Invalid(format!("the path \"{}\" must start with '/'", self.path)));
        }
        if !self.ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ConfigError::Invalid("the CA is not a PEM certificate".into()));
        }
        for (name, v) in [("tls_rx_buffer", self.tls_rx_buffer), ("tls_tx_buffer", self.tls_tx_buffer)] {
            if !(512..=16384).contains(&v) {
                return Err(ConfigError::Invalid(format!("{name} is {v}; BearSSL takes 512 to 16384")));
            }
        }
        if self.poll_interval_s < 10 {
            return Err(ConfigError::Invalid("poll intervals under 10 s would flood the server".into()));
        }
        if self.signing_key.len() > SIGNING_KEY_MAX {
            return Err(ConfigError::TooLong {
                field: "signing_key",
                len: self.signing_key.len(),
                max: SIGNING_KEY_MAX,
            });
        }
        // DER SEQUENCE: a PEM or a raw modulus here would make every update fail to verify.
        if !self.signing_key.is_empty() && self.signing_key[0] != 0x30 {
            return Err(ConfigError::Invalid("the signing key is not a DER public key".into()));
        }
        Ok(())
    }

    fn texts(&self) -> [(&'static str, &str); 8] {
        [
            ("host", &self.host),
            ("path", &self.path),
            ("channel", &self.channel),
            ("version", &self.version),
            ("device_name", &self.device_name),
            ("wifi_ssid", &self.wifi_ssid),
            ("wifi_password", &self.wifi_password),
            ("ca_pem", &self.ca_pem),
        ]
    }

    /// The baked block, in the current format.
    pub fn encode(&self) -> Result<Vec<u8>, ConfigError> {
        self.encode_as(FORMAT)
    }

    /// The baked block in `format` (the one the image's firmware was built with).
    pub fn encode_as(&self, format: u16) -> Result<Vec<u8>, ConfigError> {
        self.validate()?;
        if format < 2 && !self.signing_key.is_empty() {
            return Err(ConfigError::NoRoomForKey);
        }
        let mut b = empty_block(format, FLAG_BAKED).ok_or(ConfigError::WrongFormat(format))?;
        put_u32(&mut b, "baked_at", self.baked_at);
        put_u16(&mut b, "port", self.port);
        put_u16(&mut b, "tls_rx_buffer", self.tls_rx_buffer);
        put_u16(&mut b, "tls_tx_buffer", self.tls_tx_buffer);
        put_u16(&mut b, "ca_len", self.ca_pem.len() as u16);
        put_u32(&mut b, "poll_interval_s", self.poll_interval_s);
        for (name, value) in self.texts() {
            let (off, _) = field(name);
            b[off..off + value.len()].copy_from_slice(value.as_bytes());
        }
        if format >= 2 {
            put_u16(&mut b, "signing_key_len", self.signing_key.len() as u16);
            let (off, _) = field("signing_key");
            b[off..off + self.signing_key.len()].copy_from_slice(&self.signing_key);
        }
        seal(&mut b);
        Ok(b)
    }

    /// Reads a baked block (`None` for an unbaked one).
    pub fn decode(block: &[u8]) -> Result<Option<BakedSettings>, ConfigError> {
        if block.len() < 20 || &block[..16] != MAGIC {
            return Err(ConfigError::NoBlock);
        }
        let format = get_u16(block, "format");
        let len = block_len(format).ok_or(ConfigError::WrongFormat(format))?;
        if block.len() < len {
            return Err(ConfigError::NoBlock);
        }
        let crc_at = len - 4;
        // An unbaked block comes from the compiler, which cannot compute its CRC: only baked
        // blocks are sealed.
        if get_u32(block, "flags") & FLAG_BAKED == 0 {
            return Ok(None);
        }
        if crc32(&block[..crc_at]) != u32::from_le_bytes(block[crc_at..len].try_into().unwrap()) {
            return Err(ConfigError::BadCrc);
        }
        let signing_key = if format >= 2 {
            let n = get_u16(block, "signing_key_len") as usize;
            let (off, _) = field("signing_key");
            if n > SIGNING_KEY_MAX {
                return Err(ConfigError::Invalid(format!("the signing key length {n} exceeds its field")));
            }
            block[off..off + n].to_vec()
        } else {
            Vec::new()
        };
        Ok(Some(BakedSettings {
            host: get_text(block, "host"),
            port: get_u16(block, "port"),
            path: get_text(block, "path"),
            channel: get_text(block, "channel"),
            version: get_text(block, "version"),
            device_name: get_text(block, "device_name"),
            wifi_ssid: get_text(block, "wifi_ssid"),
            wifi_password: get_text(block, "wifi_password"),
            ca_pem: get_text(block, "ca_pem"),
            poll_interval_s: get_u32(block, "poll_interval_s"),
            tls_rx_buffer: get_u16(block, "tls_rx_buffer"),
            tls_tx_buffer: get_u16(block, "tls_tx_buffer"),
            baked_at: get_u32(block, "baked_at"),
            signing_key,
        }))
    }
}

/// The block the reference firmware is built with: magic, format, length, no settings, no CRC
/// (exactly what the C initializer in the firmware produces).
pub fn unbaked_block() -> Vec<u8> {
    empty_block(FORMAT, 0).expect("the current format")
}

/// The unbaked block of an older format: for tests of images built from older firmware.
pub fn unbaked_block_of(format: u16) -> Option<Vec<u8>> {
    empty_block(format, 0)
}

fn empty_block(format: u16, flags: u32) -> Option<Vec<u8>> {
    let len = block_len(format)?;
    let mut b = vec![0u8; len];
    b[..16].copy_from_slice(MAGIC);
    put_u16(&mut b, "format", format);
    put_u16(&mut b, "length", len as u16);
    put_u32(&mut b, "flags", flags);
    Some(b)
}

fn seal(b: &mut [u8]) {
    let crc_at = b.len() - 4;
    let crc = crc32(&b[..crc_at]);
    b[crc_at..].copy_from_slice(&crc.to_le_bytes());
}

fn put_u16(b: &mut [u8], name: &str, v: u16) {
    let (off, _) = field(name);
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], name: &str, v: u32) {
    let (off, _) = field(name);
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn get_u16(b: &[u8], name: &str) -> u16 {
    let (off, _) = field(name);
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn get_u32(b: &[u8], name: &str) -> u32 {
    let (off, _) = field(name);
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn get_text(b: &[u8], name: &str) -> String {
    let (off, kind) = field(name);
    let raw = &b[off..off + kind.size()];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320, init and final xor 0xFFFFFFFF).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Offsets of every config block (by magic, a known format and its length) in an image.
pub fn find_blocks(image: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 20 <= image.len() {
        match image[i..].windows(16).position(|w| w == MAGIC) {
            Some(p) => {
                let at = i + p;
                if at + 20 <= image.len()
                    && let Some(len) = block_len(u16::from_le_bytes([image[at + 16], image[at + 17]]))
                    && at + len <= image.len()
                    && u16::from_le_bytes([image[at + 18], image[at + 19]]) as usize == len
                {
                    out.push(at);
                }
                i = at + 1;
            }
            None => break,
        }
    }
    out
}

/// The one config block of an image.
pub fn locate(image: &[u8]) -> Result<usize, ConfigError> {
    match find_blocks(image).as_slice() {
        [] => Err(ConfigError::NoBlock),
        [one] => Ok(*one),
        many => Err(ConfigError::SeveralBlocks(many.len())),
    }
}

/// Reads the settings baked into an image (`None`: the block is there but unbaked).
pub fn read(image: &[u8]) -> Result<Option<BakedSettings>, ConfigError> {
    let at = locate(image)?;
    BakedSettings::decode(&image[at..])
}

/// The format and length of the block at `at` (found by [`locate`]).
pub fn block_at(image: &[u8], at: usize) -> (u16, usize) {
    let format = u16::from_le_bytes([image[at + 16], image[at + 17]]);
    (format, block_len(format).expect("located blocks have a known format"))
}

/// Writes `settings` into the image's config block and fixes every checksum the image carries
/// (segment checksum, Arduino length/CRC, ESP32 SHA-256). Returns the patched copy; the input is
/// checked first, so a damaged image is refused rather than "repaired".
pub fn bake(image: &[u8], settings: &BakedSettings) -> Result<Vec<u8>, ConfigError> {
    let info = inspect(image)?;
    let problems = info.problems();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(format!("the image is damaged: {}", problems.join("; "))));
    }
    let at = locate(image)?;
    let (format, len) = block_at(image, at);
    let block = settings.encode_as(format)?;
    let mut out = image.to_vec();
    out[at..at + len].copy_from_slice(&block);
    fix_checksums(&mut out)?;
    Ok(out)
}

/// Puts an unbaked block into the first (Arduino: `.irom0.text`; ESP32: DROM) segment of a built
/// image, as the reference firmware's linker does, and fixes checksums. For tests, the demo and
/// virtual devices.
pub fn reserve(image: &mut [u8]) -> Result<usize, ConfigError> {
    reserve_as(image, FORMAT)
}

/// [`reserve`] with a block of an older `format`, as older reference firmware carries.
pub fn reserve_as(image: &mut [u8], format: u16) -> Result<usize, ConfigError> {
    let block = empty_block(format, 0).ok_or(ConfigError::WrongFormat(format))?;
    let info = inspect(image)?;
    let seg = info
        .segments
        .iter()
        // The block starts 512 bytes in; a synthetic marker may follow it.
        .find(|s| s.len as usize >= 512 + block.len() + 64)
        .ok_or_else(|| ConfigError::Invalid("no segment is large enough for a config block".into()))?;
    // Skip the start of the segment (Arduino keeps its length/CRC words there; ESP32 its app
    // descriptor), and keep the block 4-byte aligned.
    let at = (seg.file_offset + 512).next_multiple_of(4);
    image[at..at + block.len()].copy_from_slice(&block);
    fix_checksums(image)?;
    Ok(at)
}

/// zlib's CRC-32 in C, shared by the generated headers (guarded: a sketch includes both).
pub const C_CRC32: &str = r#"#ifndef OTAFORGE_CRC32_DEFINED
#define OTAFORGE_CRC32_DEFINED
/* zlib's CRC-32 (reflected, polynomial 0xEDB88320). */
static inline uint32_t otaforge_crc32(const uint8_t *data, size_t len) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return ~crc;
}
#endif
"#;

/// `otaforge_config_block.h`: the same layout as a packed C struct, with the CRC and a reader, for
/// the firmware.
pub fn c_header() -> String {
    let mut h = String::new();
    h.push_str("/* Generated by OTA Forge from crates/firmware/src/config_block.rs; do not edit.\n");
    h.push_str(" * The config block OTA Forge writes a device's settings into, without a compiler.\n");
    h.push_str(" * A test keeps this file equal to what OTA Forge generates. */\n");
    h.push_str("#ifndef OTAFORGE_CONFIG_BLOCK_H\n#define OTAFORGE_CONFIG_BLOCK_H\n\n");
    h.push_str("#include <stdint.h>\n#include <stddef.h>\n\n");
    let _ = writeln!(h, "#define OTAFORGE_CONFIG_MAGIC \"{}\"", String::from_utf8_lossy(&MAGIC[..15]));
    let _ = writeln!(h, "#define OTAFORGE_CONFIG_FORMAT {FORMAT}");
    let _ = writeln!(h, "#define OTAFORGE_CONFIG_LENGTH {BLOCK_LEN}");
    let _ = writeln!(h, "#define OTAFORGE_CONFIG_FLAG_BAKED {FLAG_BAKED}u\n");
    h.push_str("typedef struct __attribute__((packed)) {\n");
    for (name, kind) in LAYOUT {
        let _ = match kind {
            Kind::U16 => writeln!(h, "    uint16_t {name};"),
            Kind::U32 => writeln!(h, "    uint32_t {name};"),
            Kind::Text(n) => writeln!(h, "    char {name}[{n}];"),
            Kind::Bytes(n) => writeln!(h, "    uint8_t {name}[{n}];"),
        };
    }
    let _ = writeln!(h, "    uint8_t reserved[{}];", CRC_OFFSET - fields_len());
    h.push_str("    uint32_t crc32; /* zlib CRC-32 of every byte before it */\n");
    h.push_str("} otaforge_config_block_t;\n\n");
    h.push_str("#ifdef __cplusplus\nstatic_assert(sizeof(otaforge_config_block_t) == OTAFORGE_CONFIG_LENGTH, \"config block size\");\n");
    h.push_str("#else\n_Static_assert(sizeof(otaforge_config_block_t) == OTAFORGE_CONFIG_LENGTH, \"config block size\");\n#endif\n\n");
    h.push_str(C_CRC32);
    h.push_str(
        r#"
/* 1 when `block` (a copy in RAM) holds baked settings with a good CRC; 0 to use the compiled-in
 * defaults. */
static inline int otaforge_config_is_baked(const otaforge_config_block_t *block) {
    if (block->format != OTAFORGE_CONFIG_FORMAT || block->length != OTAFORGE_CONFIG_LENGTH) return 0;
    if ((block->flags & OTAFORGE_CONFIG_FLAG_BAKED) == 0) return 0;
    if (otaforge_crc32((const uint8_t *)block, offsetof(otaforge_config_block_t, crc32)) != block->crc32) return 0;
    if (block->signing_key_len > sizeof block->signing_key) return 0;
    return block->host[sizeof block->host - 1] == 0 && block->ca_pem[sizeof block->ca_pem - 1] == 0;
}

#endif /* OTAFORGE_CONFIG_BLOCK_H */
"#,
    );
    h
}

#[cfg(test)]
mod tests;
