//! The boards the reference firmware is built for, as each toolchain names them: an FQBN for
//! arduino-cli, an environment of `device-firmware/platformio.ini` for PlatformIO. A newcomer
//! picks "NodeMCU" from a list instead of learning either naming.

use super::source::Toolchain;
use super::toolchain;

/// The chip family a board belongs to: which reference sketch it builds, and which Arduino core.
pub use otaforge_protocol::Family;

/// How a family's firmware is built: its reference sketch and its Arduino core. A trait because
/// [`Family`] lives in `otaforge-protocol`, which knows no toolchain.
pub trait FamilyBuild {
    /// The reference sketch's folder (and `.ino`) name.
    fn sketch(self) -> &'static str;
    /// The arduino-cli platform (`vendor:architecture`) that builds it.
    fn platform(self) -> &'static str;
    /// One command that installs the core: `--additional-urls` lets arduino-cli find it
    /// without editing its configuration first (the index is downloaded when missing).
    fn install_core_command(self) -> String;
}

impl FamilyBuild for Family {
    fn sketch(self) -> &'static str {
        match self {
            Family::Esp8266 => "otaforge_esp8266",
            Family::Esp32 => "otaforge_esp32",
        }
    }

    fn platform(self) -> &'static str {
        match self {
            Family::Esp8266 => "esp8266:esp8266",
            Family::Esp32 => "esp32:esp32",
        }
    }

    fn install_core_command(self) -> String {
        format!(
            "arduino-cli core install {} --additional-urls {}",
            self.platform(),
            toolchain::index_url(self)
        )
    }
}

/// A board in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// What the board is sold as.
    pub name: &'static str,
    /// Its chip family.
    pub family: Family,
    /// Its FQBN (arduino-cli, Arduino IDE).
    pub fqbn: &'static str,
    /// Its environment in the reference `platformio.ini`, if it has one there.
    pub pio_env: Option<&'static str>,
}

/// The common boards, ESP8266 first (the FQBNs are the cores' `boards.txt` names; the
/// environments are those `device-firmware/platformio.ini` defines).
pub const BOARDS: [Board; 6] = [
    Board {
        name: "NodeMCU 1.0 (ESP-12E), NodeMCU v2",
        family: Family::Esp8266,
        fqbn: "esp8266:esp8266:nodemcuv2",
        pio_env: Some("nodemcuv2"),
    },
    Board {
        name: "WeMos / LOLIN D1 mini",
        family: Family::Esp8266,
        fqbn: "esp8266:esp8266:d1_mini",
        pio_env: Some("d1_mini"),
    },
    Board {
        name: "Generic ESP8266 (ESP-01, ESP-12)",
        family: Family::Esp8266,
        fqbn: "esp8266:esp8266:generic",
        pio_env: None,
    },
    Board {
        name: "ESP32 Dev Module",
        family: Family::Esp32,
        fqbn: "esp32:esp32:esp32",
        pio_env: Some("esp32dev"),
    },
    Board { name: "ESP32-S3 Dev Module", family: Family::Esp32, fqbn: "esp32:esp32:esp32s3", pio_env: None },
    Board {
        name: "ESP32-C3 Dev Module",
        family: Family::Esp32,
        fqbn: "esp32:esp32:esp32c3",
        pio_env: Some("esp32-c3-devkitm-1"),
    },
];

impl Board {
    /// What `tc` calls this board, if it can build it as configured.
    pub fn target(&self, tc: &Toolchain) -> Option<&'static str> {
        match tc {
            Toolchain::ArduinoCli(_) => Some(self.fqbn),
            Toolchain::PlatformIo(_) => self.pio_env,
        }
    }
}

/// The listed board a target names: an FQBN (board options after it allowed) or an environment.
pub fn find(target: &str) -> Option<&'static Board> {
    let target = target.trim();
    let fqbn: String = target.split(':').take(3).collect::<Vec<_>>().join(":");
    BOARDS.iter().find(|b| b.fqbn == fqbn || b.pio_env == Some(target))
}

/// The family a target builds for: a listed board's, or an FQBN's platform (`esp8266:esp8266:…`).
pub fn family_of(target: &str) -> Option<Family> {
    if let Some(b) = find(target) {
        return Some(b.family);
    }
    let platform = platform_of(target)?;
    Family::ALL.into_iter().find(|f| f.platform() == platform)
}

/// The arduino-cli platform (`vendor:architecture`) of an FQBN, or `None` for what is not one.
pub fn platform_of(fqbn: &str) -> Option<String> {
    let parts: Vec<&str> = fqbn.trim().split(':').collect();
    (parts.len() >= 3 && parts[..3].iter().all(|p| !p.is_empty() && !p.contains(char::is_whitespace)))
        .then(|| format!("{}:{}", parts[0], parts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_found_by_either_name_and_options_do_not_hide_a_board() {
        assert_eq!(find("esp8266:esp8266:nodemcuv2:xtal=160").unwrap().name, BOARDS[0].name);
        assert_eq!(find("esp32-c3-devkitm-1").unwrap().fqbn, "esp32:esp32:esp32c3");
        assert!(find("arduino:avr:uno").is_none());
        assert_eq!(family_of("esp32:esp32:lolin_s2_mini"), Some(Family::Esp32));
        assert_eq!(family_of("arduino:avr:uno"), None);
        assert_eq!(platform_of("esp8266:esp8266:generic:eesz=4M"), Some("esp8266:esp8266".into()));
        assert_eq!(platform_of("nodemcuv2"), None);
        let pio = Toolchain::PlatformIo("pio".into());
        assert_eq!(BOARDS[0].target(&pio), Some("nodemcuv2"));
        assert_eq!(BOARDS[4].target(&pio), None, "no ESP32-S3 environment in platformio.ini");
    }
}
