//! The ESP chip family a device, an image or a signing key belongs to. One type, because the
//! server's updater detection, the firmware baker and the signing keys must never disagree on it;
//! what only one layer needs (key files, Arduino cores, header prefixes) stays in that layer.

use std::fmt;

/// An ESP chip family: the ESP8266, or the ESP32 family (ESP32, -S2, -S3, -C3, -C6, …), whose
/// chips share one Arduino core, one updater and one signature format.
///
/// Serde uses the variant names (`"Esp8266"`, `"Esp32"`), as the server's `DeviceRequest` and the
/// firmware's board family always did; the store keeps [`Family::name`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Family {
    /// ESP8266: the esp8266/Arduino core, `ESP8266httpUpdate`.
    Esp8266,
    /// The ESP32 family: arduino-esp32, `HTTPUpdate`.
    Esp32,
}

impl Family {
    /// Both families, ESP8266 first (the order keys and boards are listed in).
    pub const ALL: [Family; 2] = [Family::Esp8266, Family::Esp32];

    /// "ESP8266" or "ESP32": in messages, and as the store records a device's family.
    pub fn name(self) -> &'static str {
        match self {
            Family::Esp8266 => "ESP8266",
            Family::Esp32 => "ESP32",
        }
    }

    /// The family of a chip as releases name it ("ESP8266", "ESP32-C3", …): anything but the
    /// ESP8266 is of the ESP32 family.
    pub fn of_chip_name(chip: &str) -> Family {
        if chip.eq_ignore_ascii_case("ESP8266") { Family::Esp8266 } else { Family::Esp32 }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_formats_already_out_there_stay_exactly_as_they_are() {
        // Serde (the server's DeviceRequest, the firmware's board family): the variant names.
        for (family, json) in [(Family::Esp8266, "\"Esp8266\""), (Family::Esp32, "\"Esp32\"")] {
            assert_eq!(serde_json::to_string(&family).unwrap(), json);
            assert_eq!(serde_json::from_str::<Family>(json).unwrap(), family);
        }
        // The store's `devices.family` column, messages and `key show`: the name.
        assert_eq!((Family::Esp8266.name(), Family::Esp8266.to_string()), ("ESP8266", "ESP8266".into()));
        assert_eq!((Family::Esp32.name(), Family::Esp32.to_string()), ("ESP32", "ESP32".into()));
        assert_eq!(Family::ALL, [Family::Esp8266, Family::Esp32]);
    }

    #[test]
    fn every_chip_but_the_esp8266_is_of_the_esp32_family() {
        assert_eq!(Family::of_chip_name("esp8266"), Family::Esp8266);
        assert_eq!(Family::of_chip_name("ESP32-C3"), Family::Esp32);
        assert_eq!(Family::of_chip_name("ESP32"), Family::Esp32);
    }
}
