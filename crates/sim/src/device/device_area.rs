//! A board's own settings as the reference firmware finds them at boot (see
//! `firmware::device_settings`): the ESP8266's EEPROM sector or the ESP32's NVS namespace, read
//! from the same flash file the board boots. Settings found only in the image's baked config block
//! (images baked before device settings had an area of their own) are copied there once, as the
//! firmware does, so that the next update keeps them.

use super::flash::Flash;
use super::identity::Identity;
use otaforge_firmware::config_block::BakedSettings;
use otaforge_firmware::device_settings::{self as ds, DeviceSettings};
use otaforge_firmware::nvs;

/// What the firmware settled on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name it reports.
    pub name: String,
    /// The Wi-Fi network it joins (`None`: the one built into the firmware).
    pub wifi_ssid: Option<String>,
    /// Where the settings came from, as the boot log says it.
    pub source: &'static str,
    /// Whether they were just copied from the config block into the device area.
    pub migrated: bool,
}

/// Where the ESP8266 sketch keeps its EEPROM sector: 20 KB below the end of the flash it was built
/// for (the image header's flash size; `_EEPROM_start` is fixed at link time).
pub fn esp8266_sector(flash: &Flash, id: &Identity) -> usize {
    let built_for = flash
        .read(0, 4)
        .ok()
        .and_then(|h| match h[3] >> 4 {
            0 => Some(512 << 10),
            1 => Some(256 << 10),
            2 => Some(1 << 20),
            3 => Some(2 << 20),
            4 => Some(4 << 20),
            8 => Some(8 << 20),
            9 => Some(16 << 20),
            _ => None,
        })
        .filter(|&s| s <= flash.size())
        .unwrap_or(id.flash_size);
    ds::esp8266_address(built_for)
}

/// Reads the device area (the ESP32's `nvs` partition as its partition table places it).
pub fn read(flash: &Flash, id: &Identity) -> Option<DeviceSettings> {
    if id.chip.is_esp8266() {
        let at = esp8266_sector(flash, id);
        return DeviceSettings::decode(&flash.read(at, ds::RECORD_LEN).ok()?).ok();
    }
    let (offset, size) = nvs_partition(flash);
    DeviceSettings::from_nvs(&nvs::read_partition(&flash.read(offset, size).ok()?).ok()?)
}

/// Writes the device area as `otaforge provision` does: the ESP8266 sector, or a whole NVS
/// partition holding the `otaforge` namespace.
pub fn image_for(
    flash: &Flash,
    id: &Identity,
    settings: &DeviceSettings,
) -> Result<(usize, Vec<u8>), String> {
    if id.chip.is_esp8266() {
        let sector = settings.encode_sector().map_err(|e| e.to_string())?;
        return Ok((esp8266_sector(flash, id), sector));
    }
    let (offset, size) = nvs_partition(flash);
    Ok((offset, settings.nvs_partition(size).map_err(|e| e.to_string())?))
}

fn nvs_partition(flash: &Flash) -> (usize, usize) {
    ds::esp32_nvs_location(flash.read(super::partitions::TABLE_OFFSET, 0xC00).ok().as_deref())
}

/// What the firmware does at boot: the device area first; else settings from the baked block,
/// copied into the device area; else the name derived from the MAC and the built-in Wi-Fi.
pub fn resolve(flash: &mut Flash, id: &Identity, baked: &BakedSettings) -> Resolved {
    let named = |s: &DeviceSettings| if s.name.is_empty() { id.default_name() } else { s.name.clone() };
    if let Some(s) = read(flash, id) {
        return Resolved {
            name: named(&s),
            wifi_ssid: s.wifi.map(|w| w.ssid),
            source: "device settings area",
            migrated: false,
        };
    }
    if let Some(s) = DeviceSettings::from_baked(baked).filter(|s| s.validate().is_ok()) {
        let migrated = image_for(flash, id, &s)
            .and_then(|(at, bytes)| {
                flash.erase_range(at, bytes.len()).map_err(|e| e.to_string())?;
                flash.write(at, &bytes).map_err(|e| e.to_string())
            })
            .is_ok();
        return Resolved {
            name: named(&s),
            wifi_ssid: s.wifi.map(|w| w.ssid),
            source: "config block (copied to the device settings area)",
            migrated,
        };
    }
    Resolved { name: id.default_name(), wifi_ssid: None, source: "built in", migrated: false }
}
