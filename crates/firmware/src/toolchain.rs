//! Finding arduino-cli or PlatformIO, telling a newcomer how to install them and the ESP cores,
//! and noticing a missing core before a build fails on it.
//!
//! Where to look is a parameter ([`find_toolchains`]), so a test points it at a folder holding a
//! stand-in without touching the process's PATH. The install commands follow each tool's own
//! documentation (arduino-cli's installation page, PlatformIO's installer script, the cores'
//! Boards Manager URLs); [`missing_core`] reads `arduino-cli core list`, whose table starts each
//! row with the platform ID (`esp8266:esp8266  3.1.2  3.1.2  esp8266`).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::boards::{self, Family, FamilyBuild};
use super::source::Toolchain;

/// The ESP8266 core's Boards Manager index (esp8266/Arduino's README).
pub const ESP8266_INDEX_URL: &str = "https://arduino.esp8266.com/stable/package_esp8266com_index.json";
/// The ESP32 core's Boards Manager index, stable releases (arduino-esp32's documentation).
pub const ESP32_INDEX_URL: &str = "https://espressif.github.io/arduino-esp32/package_esp32_index.json";

/// The Boards Manager URL arduino-cli needs to find `family`'s core.
pub fn index_url(family: Family) -> &'static str {
    match family {
        Family::Esp8266 => ESP8266_INDEX_URL,
        Family::Esp32 => ESP32_INDEX_URL,
    }
}

/// The default places to look: PATH, then where the install hints put the tools when PATH may
/// not have them yet (a new `~/.local/bin` joins PATH only at the next login; Homebrew's folders
/// are not on a macOS app's PATH), and where PlatformIO's installer (and the PlatformIO IDE) put
/// `pio` without adding it to PATH.
pub fn default_search_path() -> OsString {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" }) {
        let home = Path::new(&home);
        if !cfg!(windows) {
            dirs.push(home.join(".local").join("bin"));
        }
        let penv = home.join(".platformio").join("penv");
        dirs.push(penv.join(if cfg!(windows) { "Scripts" } else { "bin" }));
    }
    if cfg!(target_os = "macos") {
        // An app started from the Finder gets a PATH without Homebrew's folders.
        dirs.extend(["/opt/homebrew/bin", "/usr/local/bin"].map(PathBuf::from));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

/// Each toolchain found in `search` (a PATH-style list), arduino-cli first; for each kind the first
/// folder that has it wins, as a shell would pick.
pub fn find_toolchains(search: &OsStr) -> Vec<Toolchain> {
    let exe = |name: &str| format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let first = |name: &str| std::env::split_paths(search).map(|d| d.join(exe(name))).find(|p| p.is_file());
    let mut found = Vec::new();
    if let Some(p) = first("arduino-cli") {
        found.push(Toolchain::ArduinoCli(p));
    }
    if let Some(p) = first("pio") {
        found.push(Toolchain::PlatformIo(p));
    }
    found
}

impl Toolchain {
    /// The executable.
    pub fn exe(&self) -> &Path {
        match self {
            Toolchain::ArduinoCli(p) | Toolchain::PlatformIo(p) => p,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &'static str {
        match self {
            Toolchain::ArduinoCli(_) => "arduino-cli",
            Toolchain::PlatformIo(_) => "PlatformIO",
        }
    }
}

/// The platforms (`vendor:architecture`) an arduino-cli has installed, from `arduino-cli core list`.
pub fn installed_cores(arduino_cli: &Path) -> Result<Vec<String>, String> {
    let out = Command::new(arduino_cli)
        .args(["core", "list"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", arduino_cli.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`arduino-cli core list` failed: {}", err.trim()));
    }
    Ok(parse_core_list(&String::from_utf8_lossy(&out.stdout)))
}

/// The platform IDs in `arduino-cli core list`'s table: the first column of each row, the only
/// one shaped `vendor:architecture` (the header is `ID Installed Latest Name`; with nothing
/// installed it prints "No platforms installed.").
pub fn parse_core_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|id| {
            let parts: Vec<&str> = id.split(':').collect();
            parts.len() == 2 && parts.iter().all(|p| !p.is_empty())
        })
        .map(str::to_string)
        .collect()
}

/// A core the board needs and arduino-cli does not have, with the command that installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCore {
    /// The platform, e.g. `esp32:esp32`.
    pub platform: String,
    /// The exact command to run.
    pub command: String,
}

impl MissingCore {
    /// In words, with the command.
    pub fn message(&self) -> String {
        format!(
            "arduino-cli has no {} core installed, so it cannot build for this board. Install it with:  {}",
            self.platform, self.command
        )
    }
}

/// The core `fqbn` needs when it is not among `installed` (`None`: installed, or not an FQBN).
pub fn missing_core(fqbn: &str, installed: &[String]) -> Option<MissingCore> {
    let platform = boards::platform_of(fqbn)?;
    if installed.contains(&platform) {
        return None;
    }
    let command = match Family::ALL.into_iter().find(|f| f.platform() == platform) {
        Some(family) => family.install_core_command(),
        None => format!("arduino-cli core install {platform}"),
    };
    Some(MissingCore { platform, command })
}

/// The desktop systems install hints are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux.
    Linux,
    /// macOS.
    MacOs,
    /// Windows.
    Windows,
}

impl Os {
    /// The system this was built for (Linux hints for other Unixes).
    pub fn current() -> Os {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Os::Linux => "Linux",
            Os::MacOs => "macOS",
            Os::Windows => "Windows",
        }
    }
}

/// How to get one tool on one system: commands to run, then a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallHint {
    /// "arduino-cli" or "PlatformIO".
    pub tool: &'static str,
    /// Commands, in order.
    pub commands: Vec<String>,
    /// What else to know.
    pub note: &'static str,
}

/// How to install arduino-cli (with both ESP cores) and PlatformIO on `os`.
pub fn install_hints(os: Os) -> Vec<InstallHint> {
    let get_cli: &[&str] = match os {
        // The script refuses a BINDIR that does not exist yet.
        Os::Linux => &[
            "mkdir -p ~/.local/bin",
            "curl -fsSL https://raw.githubusercontent.com/arduino/arduino-cli/master/install.sh | BINDIR=~/.local/bin sh",
        ],
        Os::MacOs => &["brew install arduino-cli"],
        Os::Windows => &["winget install ArduinoSA.CLI"],
    };
    let cores = Family::ALL.map(Family::install_core_command);
    let arduino = InstallHint {
        tool: "arduino-cli",
        commands: get_cli.iter().map(|c| c.to_string()).chain(cores).collect(),
        note: match os {
            Os::Linux => {
                "The script puts arduino-cli in ~/.local/bin; OTA Forge looks there, your terminal once it is on PATH."
            }
            Os::MacOs => "Homebrew puts it on your PATH.",
            Os::Windows => "Open a new terminal (and restart OTA Forge) so the new PATH is seen.",
        },
    };
    let platformio = InstallHint {
        tool: "PlatformIO",
        commands: match os {
            Os::MacOs => vec!["brew install platformio".into()],
            Os::Linux => vec![
                "curl -fsSL -o get-platformio.py https://raw.githubusercontent.com/platformio/platformio-core-installer/master/get-platformio.py".into(),
                "python3 get-platformio.py".into(),
            ],
            Os::Windows => vec![
                "curl.exe -fsSL -o get-platformio.py https://raw.githubusercontent.com/platformio/platformio-core-installer/master/get-platformio.py".into(),
                "python get-platformio.py".into(),
            ],
        },
        note: "The ESP8266 and ESP32 platforms download by themselves at the first build (a few hundred MB). \
               The installer puts pio in ~/.platformio/penv, where OTA Forge looks for it too.",
    };
    vec![arduino, platformio]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_list_table_yields_platform_ids() {
        let table = "ID              Installed Latest Name\nesp8266:esp8266 3.1.2     3.1.2  esp8266\n\
                     arduino:avr     1.8.6     1.8.6  Arduino AVR Boards\n";
        assert_eq!(parse_core_list(table), ["esp8266:esp8266", "arduino:avr"]);
        assert!(parse_core_list("No platforms installed.\n").is_empty());
        let installed = parse_core_list(table);
        assert_eq!(missing_core("esp8266:esp8266:d1_mini", &installed), None);
        let esp32 = missing_core("esp32:esp32:esp32s3", &installed).unwrap();
        assert_eq!(
            esp32.command,
            format!("arduino-cli core install esp32:esp32 --additional-urls {ESP32_INDEX_URL}")
        );
        assert_eq!(missing_core("nodemcuv2", &installed), None, "an environment name is not an FQBN");
    }

    #[test]
    fn toolchains_are_found_only_where_asked() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let search = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert!(find_toolchains(&search).is_empty());
        let exe = |d: &Path, n: &str| d.join(format!("{n}{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(exe(b.path(), "pio"), "").unwrap();
        std::fs::write(exe(b.path(), "arduino-cli"), "").unwrap();
        std::fs::write(exe(a.path(), "arduino-cli"), "").unwrap();
        let found = find_toolchains(&search);
        assert_eq!(
            found,
            [
                Toolchain::ArduinoCli(exe(a.path(), "arduino-cli")),
                Toolchain::PlatformIo(exe(b.path(), "pio"))
            ]
        );
    }

    #[test]
    fn every_system_gets_both_tools_and_both_cores() {
        for os in [Os::Linux, Os::MacOs, Os::Windows] {
            let hints = install_hints(os);
            let text: String = hints.iter().flat_map(|h| h.commands.clone()).collect::<Vec<_>>().join("\n");
            assert!(text.contains(ESP8266_INDEX_URL) && text.contains(ESP32_INDEX_URL), "{text}");
            assert_eq!(hints.iter().map(|h| h.tool).collect::<Vec<_>>(), ["arduino-cli", "PlatformIO"]);
        }
    }
}
