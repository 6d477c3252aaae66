//! Device settings: what belongs to one board (its name, its Wi-Fi) as opposed to the fleet
//! settings every device on a channel shares (host, port, path, CA, poll interval…).
//!
//! Fleet settings travel inside the app image (its config block) and may be published: every
//! device on the channel gets the same bytes. Device settings must not: an update would give every
//! device the same name and Wi-Fi, and anyone who asks the update endpoint would read the password.
//! So they live in a flash area of their own that no OTA update and no filesystem update writes:
//!
//! - **ESP8266**: the sector the core's `EEPROM` library uses (`_EEPROM_start`), 20 KB below the
//!   end of the flash the sketch was built for. The Arduino core's `tools/boards.txt.py` lays the
//!   end of flash out as `sketch | OTA space | fs | eeprom | rf-cal | sdk-wifi`: `Updater` writes
//!   only between the running sketch and `_FS_start`, a filesystem update only `_FS_start.._FS_end`,
//!   the SDK only its RF-calibration and Wi-Fi sectors above. The sector holds one [`RECORD_LEN`]
//!   record (this module's layout, sealed with a CRC-32); the sketch reads it with
//!   `ESP.flashRead`, so a sketch that also uses `EEPROM` for its own data must not (see the
//!   firmware's README).
//! - **ESP32 family**: the NVS namespace [`NVS_NAMESPACE`] in the `nvs` partition (OTA never writes
//!   it), read by arduino-esp32's `Preferences`; [`nvs_entries`] gives what OTA Forge writes there.
//!
//! The record's layout is defined here once; [`c_header`] generates the firmware's
//! `otaforge_device_settings.h` from it and a test keeps the committed copies equal.

use std::fmt::Write as _;

use super::config_block::{BakedSettings, crc32};
use super::nvs::{self, NvsEntry, NvsValue};

/// First bytes of a record ("OTAFDEV" and a NUL).
pub const MAGIC: &[u8; 8] = b"OTAFDEV\0";
/// Bumped only for a change older firmware cannot read; new fields take `reserved` bytes and a
/// flag saying they are set, so a record stays readable by every firmware of this format.
pub const FORMAT: u16 = 1;
/// Size of the record, CRC included. The rest of the 4 KB sector stays erased (0xFF).
pub const RECORD_LEN: usize = 2048;
/// The ESP8266 flash sector size.
pub const SECTOR: usize = 4096;
/// `flags` bit: the record holds a Wi-Fi network.
pub const FLAG_WIFI: u32 = 1;

/// Longest device name (DHCP host names and the server's inventory take 31 bytes).
pub const NAME_MAX: usize = 31;
/// Longest SSID (IEEE 802.11: 32 bytes).
pub const SSID_MAX: usize = 32;
/// WPA2 passphrases are 8 to 63 characters (a 64-hex-digit PSK is also accepted).
pub const PASSWORD_RANGE: (usize, usize) = (8, 64);

/// The namespace the ESP32 firmware opens with `Preferences::begin`.
pub const NVS_NAMESPACE: &str = "otaforge";
/// NVS keys (at most 15 bytes each).
pub const NVS_KEY_FORMAT: &str = "format";
/// The device name.
pub const NVS_KEY_NAME: &str = "name";
/// The Wi-Fi network.
pub const NVS_KEY_SSID: &str = "wifi_ssid";
/// The Wi-Fi password.
pub const NVS_KEY_PASSWORD: &str = "wifi_pass";

/// A field of the record, in order, with its size in bytes.
const LAYOUT: &[(&str, FieldKind)] = &[
    ("magic", FieldKind::Bytes(8)),
    ("format", FieldKind::U16),
    ("length", FieldKind::U16),
    ("flags", FieldKind::U32),
    ("device_name", FieldKind::Text(32)),
    ("wifi_ssid", FieldKind::Text(36)),
    ("wifi_password", FieldKind::Text(68)),
];

#[derive(Clone, Copy)]
enum FieldKind {
    U16,
    U32,
    Text(usize),
    Bytes(usize),
}

impl FieldKind {
    fn size(self) -> usize {
        match self {
            FieldKind::U16 => 2,
            FieldKind::U32 => 4,
            FieldKind::Text(n) | FieldKind::Bytes(n) => n,
        }
    }
}

fn field(name: &str) -> (usize, usize) {
    let mut off = 0;
    for (n, k) in LAYOUT {
        if *n == name {
            return (off, k.size());
        }
        off += k.size();
    }
    unreachable!("no device settings field {name}")
}

const CRC_OFFSET: usize = RECORD_LEN - 4;

/// One board's own settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceSettings {
    /// The name it reports (empty: the firmware derives one from its MAC).
    pub name: String,
    /// Wi-Fi network and password; `None` keeps what the firmware was built with.
    pub wifi: Option<Wifi>,
}

/// A Wi-Fi network to join.
#[derive(Clone, PartialEq, Eq)]
pub struct Wifi {
    /// The network name.
    pub ssid: String,
    /// Its WPA2 passphrase (empty for an open network).
    pub password: String,
}

impl std::fmt::Debug for Wifi {
    /// Never prints the password (settings end up in logs and error reports).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wifi").field("ssid", &self.ssid).field("password", &"…").finish()
    }
}

/// Why device settings cannot be used.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceSettingsError {
    #[error("the device name is {0} bytes; at most {NAME_MAX}")]
    NameTooLong(usize),
    #[error(
        "the device name \"{0}\" may hold only letters, digits and '-' (it is the board's DHCP host name)"
    )]
    NameChars(String),
    #[error("the Wi-Fi network name is empty")]
    NoSsid,
    #[error("the Wi-Fi network name is {0} bytes; Wi-Fi allows at most {SSID_MAX}")]
    SsidTooLong(usize),
    #[error(
        "the Wi-Fi password is {0} characters; WPA2 takes 8 to 63 (or a 64-digit hex key). An open network has no password: leave it out (on the command line: --open-network)"
    )]
    PasswordLength(usize),
    #[error("the Wi-Fi password holds a character a device cannot send (control or non-ASCII)")]
    PasswordChars,
    #[error("no device settings here: the area is blank")]
    Blank,
    #[error("the device settings record is damaged ({0})")]
    Damaged(&'static str),
    #[error("the device settings record has format {0}; this OTA Forge reads format {FORMAT}")]
    WrongFormat(u16),
    #[error("the NVS partition: {0}")]
    Nvs(String),
}

/// Checks a Wi-Fi password the way WPA2 does: 8–63 printable ASCII characters, or 64 hex digits.
pub fn check_password(password: &str) -> Result<(), DeviceSettingsError> {
    let n = password.len();
    if n == 64 && password.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    if !password.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(DeviceSettingsError::PasswordChars);
    }
    if !(PASSWORD_RANGE.0..PASSWORD_RANGE.1).contains(&n) {
        return Err(DeviceSettingsError::PasswordLength(password.chars().count()));
    }
    Ok(())
}

impl DeviceSettings {
    /// Checks every value against the record's limits and Wi-Fi's rules.
    pub fn validate(&self) -> Result<(), DeviceSettingsError> {
        if self.name.len() > NAME_MAX {
            return Err(DeviceSettingsError::NameTooLong(self.name.len()));
        }
        if !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(DeviceSettingsError::NameChars(self.name.clone()));
        }
        if let Some(w) = &self.wifi {
            if w.ssid.is_empty() {
                return Err(DeviceSettingsError::NoSsid);
            }
            if w.ssid.len() > SSID_MAX {
                return Err(DeviceSettingsError::SsidTooLong(w.ssid.len()));
            }
            if !w.password.is_empty() {
                check_password(&w.password)?;
            }
        }
        Ok(())
    }

    /// The settings a baked config block carried before device settings had an area of their
    /// own (what the firmware migrates at boot); `None` when it carried none.
    pub fn from_baked(baked: &BakedSettings) -> Option<DeviceSettings> {
        let wifi = (!baked.wifi_ssid.is_empty())
            .then(|| Wifi { ssid: baked.wifi_ssid.clone(), password: baked.wifi_password.clone() });
        (wifi.is_some() || !baked.device_name.is_empty())
            .then(|| DeviceSettings { name: baked.device_name.clone(), wifi })
    }

    /// The ESP8266 record ([`RECORD_LEN`] bytes, sealed).
    pub fn encode(&self) -> Result<Vec<u8>, DeviceSettingsError> {
        self.validate()?;
        let mut b = vec![0u8; RECORD_LEN];
        put(&mut b, "magic", MAGIC);
        put(&mut b, "format", &FORMAT.to_le_bytes());
        put(&mut b, "length", &(RECORD_LEN as u16).to_le_bytes());
        let flags = if self.wifi.is_some() { FLAG_WIFI } else { 0 };
        put(&mut b, "flags", &flags.to_le_bytes());
        put(&mut b, "device_name", self.name.as_bytes());
        if let Some(w) = &self.wifi {
            put(&mut b, "wifi_ssid", w.ssid.as_bytes());
            put(&mut b, "wifi_password", w.password.as_bytes());
        }
        let crc = crc32(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// The whole ESP8266 sector: the record, then erased flash.
    pub fn encode_sector(&self) -> Result<Vec<u8>, DeviceSettingsError> {
        let mut sector = self.encode()?;
        sector.resize(SECTOR, 0xFF);
        Ok(sector)
    }

    /// Reads a record the way the firmware does (magic, format, length, CRC).
    pub fn decode(b: &[u8]) -> Result<DeviceSettings, DeviceSettingsError> {
        if b.len() < RECORD_LEN {
            return Err(DeviceSettingsError::Damaged("too short"));
        }
        if b[..RECORD_LEN].iter().all(|&x| x == 0xFF) {
            return Err(DeviceSettingsError::Blank);
        }
        if &b[..8] != MAGIC {
            return Err(DeviceSettingsError::Damaged("no magic: something else uses this sector"));
        }
        let format = u16::from_le_bytes([b[8], b[9]]);
        if format != FORMAT {
            return Err(DeviceSettingsError::WrongFormat(format));
        }
        if u16::from_le_bytes([b[10], b[11]]) as usize != RECORD_LEN {
            return Err(DeviceSettingsError::Damaged("wrong length"));
        }
        if crc32(&b[..CRC_OFFSET]) != u32::from_le_bytes(b[CRC_OFFSET..RECORD_LEN].try_into().unwrap()) {
            return Err(DeviceSettingsError::Damaged("CRC mismatch"));
        }
        let flags = u32::from_le_bytes(b[12..16].try_into().unwrap());
        let wifi = (flags & FLAG_WIFI != 0)
            .then(|| Wifi { ssid: text(b, "wifi_ssid"), password: text(b, "wifi_password") });
        Ok(DeviceSettings { name: text(b, "device_name"), wifi })
    }

    /// What OTA Forge writes into the ESP32's NVS namespace [`NVS_NAMESPACE`].
    pub fn nvs_entries(&self) -> Result<Vec<NvsEntry>, DeviceSettingsError> {
        self.validate()?;
        let entry = |key: &str, value| NvsEntry::new(NVS_NAMESPACE, key, value);
        let mut out = vec![
            entry(NVS_KEY_FORMAT, NvsValue::U8(FORMAT as u8)),
            entry(NVS_KEY_NAME, NvsValue::Str(self.name.clone())),
        ];
        if let Some(w) = &self.wifi {
            out.push(entry(NVS_KEY_SSID, NvsValue::Str(w.ssid.clone())));
            out.push(entry(NVS_KEY_PASSWORD, NvsValue::Str(w.password.clone())));
        }
        Ok(out)
    }

    /// A whole `nvs` partition of `size` bytes holding these settings (what provisioning writes;
    /// other namespaces on the board are not kept).
    pub fn nvs_partition(&self, size: usize) -> Result<Vec<u8>, DeviceSettingsError> {
        nvs::write_partition(&self.nvs_entries()?, size).map_err(|e| DeviceSettingsError::Nvs(e.to_string()))
    }

    /// Reads the namespace back as the ESP32 firmware does with `Preferences`: nothing without the
    /// format key; a missing name is empty; a missing SSID keeps the built-in Wi-Fi.
    pub fn from_nvs(entries: &[NvsEntry]) -> Option<DeviceSettings> {
        let get = |key: &str| entries.iter().rev().find(|e| e.namespace == NVS_NAMESPACE && e.key == key);
        get(NVS_KEY_FORMAT)?;
        let text = |key: &str| match get(key).map(|e| &e.value) {
            Some(NvsValue::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let name = text(NVS_KEY_NAME).unwrap_or_default();
        let wifi = text(NVS_KEY_SSID)
            .filter(|s| !s.is_empty())
            .map(|ssid| Wifi { ssid, password: text(NVS_KEY_PASSWORD).unwrap_or_default() });
        Some(DeviceSettings { name, wifi })
    }
}

/// Where the `nvs` partition is: as the partition table `table` (0xC00 bytes read at 0x8000)
/// places it, else arduino-esp32's default (0x9000, 20 KB).
pub fn esp32_nvs_location(table: Option<&[u8]>) -> (usize, usize) {
    table.and_then(nvs::find_nvs_partition).unwrap_or(nvs::DEFAULT_NVS)
}

/// Where an ESP8266 sketch built for a `flash_size`-byte chip keeps its `EEPROM` sector: 20 KB
/// below the end (`eeprom_start` in the core's `boards.txt.py`, e.g. 0x3FB000 on 4 MB).
pub fn esp8266_address(flash_size: usize) -> usize {
    flash_size - 0x5000
}

fn put(b: &mut [u8], name: &str, value: &[u8]) {
    let (off, size) = field(name);
    debug_assert!(value.len() <= size);
    b[off..off + value.len()].copy_from_slice(value);
}

fn text(b: &[u8], name: &str) -> String {
    let (off, size) = field(name);
    let raw = &b[off..off + size];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// `otaforge_device_settings.h`: the record as a packed C struct, with its check, and the NVS
/// names, for the firmware.
pub fn c_header() -> String {
    let mut h = String::new();
    h.push_str("/* Generated by OTA Forge from crates/firmware/src/device_settings.rs; do not edit.\n");
    h.push_str(" * One board's own settings (name, Wi-Fi), kept outside the app image so that updates\n");
    h.push_str(" * never replace them. A test keeps this file equal to what OTA Forge generates. */\n");
    h.push_str("#ifndef OTAFORGE_DEVICE_SETTINGS_H\n#define OTAFORGE_DEVICE_SETTINGS_H\n\n");
    h.push_str("#include <stdint.h>\n#include <stddef.h>\n#include <string.h>\n\n");
    let _ = writeln!(h, "#define OTAFORGE_DEVICE_MAGIC \"{}\"", String::from_utf8_lossy(&MAGIC[..7]));
    let _ = writeln!(h, "#define OTAFORGE_DEVICE_FORMAT {FORMAT}");
    let _ = writeln!(h, "#define OTAFORGE_DEVICE_LENGTH {RECORD_LEN}");
    let _ = writeln!(h, "#define OTAFORGE_DEVICE_FLAG_WIFI {FLAG_WIFI}u");
    h.push_str("/* ESP8266: the record sits at the start of the EEPROM sector (_EEPROM_start). */\n");
    h.push_str("/* ESP32: Preferences namespace and keys. */\n");
    let _ = writeln!(h, "#define OTAFORGE_NVS_NAMESPACE \"{NVS_NAMESPACE}\"");
    let _ = writeln!(h, "#define OTAFORGE_NVS_KEY_FORMAT \"{NVS_KEY_FORMAT}\"");
    let _ = writeln!(h, "#define OTAFORGE_NVS_KEY_NAME \"{NVS_KEY_NAME}\"");
    let _ = writeln!(h, "#define OTAFORGE_NVS_KEY_SSID \"{NVS_KEY_SSID}\"");
    let _ = writeln!(h, "#define OTAFORGE_NVS_KEY_PASSWORD \"{NVS_KEY_PASSWORD}\"\n");
    h.push_str("typedef struct __attribute__((packed)) {\n");
    let mut used = 0;
    for (name, kind) in LAYOUT {
        let _ = match kind {
            FieldKind::U16 => writeln!(h, "    uint16_t {name};"),
            FieldKind::U32 => writeln!(h, "    uint32_t {name};"),
            FieldKind::Text(n) => writeln!(h, "    char {name}[{n}];"),
            FieldKind::Bytes(n) => writeln!(h, "    uint8_t {name}[{n}];"),
        };
        used += kind.size();
    }
    let _ = writeln!(h, "    uint8_t reserved[{}]; /* zero; later fields go here */", CRC_OFFSET - used);
    h.push_str("    uint32_t crc32; /* zlib CRC-32 of every byte before it */\n");
    h.push_str("} otaforge_device_settings_t;\n\n");
    h.push_str("#ifdef __cplusplus\nstatic_assert(sizeof(otaforge_device_settings_t) == OTAFORGE_DEVICE_LENGTH, \"device settings size\");\n");
    h.push_str("#else\n_Static_assert(sizeof(otaforge_device_settings_t) == OTAFORGE_DEVICE_LENGTH, \"device settings size\");\n#endif\n\n");
    h.push_str(super::config_block::C_CRC32);
    h.push_str(
        r#"
/* 1 when `s` (a copy in RAM) is a whole record of this format with a good CRC and terminated
 * texts; 0 otherwise (blank or foreign sector: use the image's settings). */
static inline int otaforge_device_settings_valid(const otaforge_device_settings_t *s) {
    if (memcmp(s->magic, OTAFORGE_DEVICE_MAGIC, sizeof s->magic) != 0) return 0;
    if (s->format != OTAFORGE_DEVICE_FORMAT || s->length != OTAFORGE_DEVICE_LENGTH) return 0;
    if (otaforge_crc32((const uint8_t *)s, offsetof(otaforge_device_settings_t, crc32)) != s->crc32) return 0;
    return s->device_name[sizeof s->device_name - 1] == 0 && s->wifi_ssid[sizeof s->wifi_ssid - 1] == 0 &&
           s->wifi_password[sizeof s->wifi_password - 1] == 0;
}

/* Fills magic, format, length and the CRC of a record whose fields are set (the firmware uses
 * this once, to move settings found in an older image's config block into the record). */
static inline void otaforge_device_settings_seal(otaforge_device_settings_t *s) {
    memcpy(s->magic, OTAFORGE_DEVICE_MAGIC, sizeof s->magic);
    s->format = OTAFORGE_DEVICE_FORMAT;
    s->length = OTAFORGE_DEVICE_LENGTH;
    s->crc32 = otaforge_crc32((const uint8_t *)s, offsetof(otaforge_device_settings_t, crc32));
}

#endif /* OTAFORGE_DEVICE_SETTINGS_H */
"#,
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kitchen() -> DeviceSettings {
        DeviceSettings {
            name: "kitchen".into(),
            wifi: Some(Wifi { ssid: "home-net".into(), password: "correct horse".into() }),
        }
    }

    #[test]
    fn record_round_trips_and_is_sealed() {
        let rec = kitchen().encode().unwrap();
        assert_eq!(rec.len(), RECORD_LEN);
        assert_eq!(DeviceSettings::decode(&rec).unwrap(), kitchen());
        let mut bad = rec.clone();
        bad[20] ^= 1;
        assert_eq!(DeviceSettings::decode(&bad), Err(DeviceSettingsError::Damaged("CRC mismatch")));
        assert_eq!(DeviceSettings::decode(&[0xFF; SECTOR]), Err(DeviceSettingsError::Blank));
        let sector = kitchen().encode_sector().unwrap();
        assert_eq!(sector.len(), SECTOR);
        assert!(sector[RECORD_LEN..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn name_only_keeps_the_built_in_wifi() {
        let s = DeviceSettings { name: "hall".into(), wifi: None };
        assert_eq!(DeviceSettings::decode(&s.encode().unwrap()).unwrap().wifi, None);
    }

    #[test]
    fn wpa2_rules() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password(&"a".repeat(63)).is_ok());
        assert!(check_password(&"ab".repeat(32)).is_ok(), "64 hex digits are a PSK");
        assert_eq!(check_password("x"), Err(DeviceSettingsError::PasswordLength(1)));
        assert_eq!(check_password(&"g".repeat(64)), Err(DeviceSettingsError::PasswordLength(64)));
        assert_eq!(check_password("abcdefg\u{7}h"), Err(DeviceSettingsError::PasswordChars));
        let mut s = kitchen();
        s.name = "kitchen sink".into();
        assert!(matches!(s.validate(), Err(DeviceSettingsError::NameChars(_))));
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert!(!format!("{:?}", kitchen()).contains("horse"));
    }

    #[test]
    fn eeprom_sector_addresses_match_the_core() {
        // boards.txt.py: 4M → 0x3FB000, 1M → 0xFB000, 512K → 0x7B000.
        assert_eq!(esp8266_address(4 << 20), 0x3FB000);
        assert_eq!(esp8266_address(1 << 20), 0xFB000);
        assert_eq!(esp8266_address(512 << 10), 0x7B000);
    }

    #[test]
    fn nvs_round_trip() {
        let image = kitchen().nvs_partition(0x5000).unwrap();
        let entries = nvs::read_partition(&image).unwrap();
        assert_eq!(DeviceSettings::from_nvs(&entries), Some(kitchen()));
        assert_eq!(DeviceSettings::from_nvs(&[]), None);
    }

    #[test]
    fn committed_header_is_generated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../device-firmware");
        for path in [
            "common/otaforge_device_settings.h",
            "esp8266/otaforge_esp8266/otaforge_device_settings.h",
            "esp32/otaforge_esp32/otaforge_device_settings.h",
        ] {
            let committed = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
            assert!(
                committed == c_header(),
                "{path} differs from c_header(): run `otaforge device-settings-header > {path}`"
            );
        }
    }
}
