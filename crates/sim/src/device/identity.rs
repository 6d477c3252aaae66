//! Who a virtual device is: chip, efuse MAC, flash chip. Everything it reports about itself in an
//! update check is derived from these, as on the real chips.

use otaforge_firmware::Chip;

/// A virtual chip's fixed facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The chip.
    pub chip: Chip,
    /// Station MAC (the efuse MAC).
    pub mac: [u8; 6],
    /// Real flash size in bytes (`getFlashChipRealSize`).
    pub flash_size: usize,
}

impl Identity {
    /// A chip of the given kind with a MAC derived from `n` (so a fleet gets distinct MACs),
    /// under Espressif's OUI, and 4 MB of flash.
    pub fn numbered(chip: Chip, n: u32) -> Identity {
        let oui: [u8; 3] = if chip.is_esp8266() { [0x18, 0xFE, 0x34] } else { [0x24, 0x0A, 0xC4] };
        let b = n.to_be_bytes();
        Identity { chip, mac: [oui[0], oui[1], oui[2], b[1], b[2], b[3]], flash_size: 4 << 20 }
    }

    /// `AA:BB:CC:DD:EE:FF`, as `WiFi.macAddress()` prints it.
    pub fn sta_mac(&self) -> String {
        mac_text(self.mac)
    }

    /// The soft-AP MAC: the ESP8266 sets bit 1 of the first byte, the ESP32 adds one to the last.
    pub fn ap_mac(&self) -> String {
        let mut m = self.mac;
        if self.chip.is_esp8266() {
            m[0] |= 0x02;
        } else {
            m[5] = m[5].wrapping_add(1);
        }
        mac_text(m)
    }

    /// `ESP.getChipId()` on the ESP8266: the last three bytes of the MAC.
    pub fn chip_id(&self) -> u32 {
        u32::from_be_bytes([0, self.mac[3], self.mac[4], self.mac[5]])
    }

    /// `ESP.getSdkVersion()` of the cores the reference firmware is built with.
    pub fn sdk_version(&self) -> &'static str {
        if self.chip.is_esp8266() { "2.2.2-dev(38a443e)" } else { "v5.4.2-25-g858a988d6e" }
    }

    /// The reference firmware's default device name, e.g. `esp8266-a1b2c3`.
    pub fn default_name(&self) -> String {
        let prefix = if self.chip.is_esp8266() { "esp8266" } else { "esp32" };
        format!("{prefix}-{:02x}{:02x}{:02x}", self.mac[3], self.mac[4], self.mac[5])
    }
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_ids() {
        let a = Identity::numbered(Chip::Esp8266, 0xA1B2C3);
        assert_eq!(a.sta_mac(), "18:FE:34:A1:B2:C3");
        assert_eq!(a.ap_mac(), "1A:FE:34:A1:B2:C3");
        assert_eq!(a.chip_id(), 0xA1B2C3);
        assert_eq!(a.default_name(), "esp8266-a1b2c3");
        let b = Identity::numbered(Chip::Esp32, 0x0000FF);
        assert_eq!(b.ap_mac(), "24:0A:C4:00:00:00");
        assert_ne!(Identity::numbered(Chip::Esp8266, 1).mac, Identity::numbered(Chip::Esp8266, 2).mac);
    }
}
