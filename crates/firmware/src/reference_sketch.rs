//! The reference firmware's sources, built into the program, and copied into a project on request.
//!
//! An installed OTA Forge has no `device-firmware/` folder beside it (the path it was compiled in
//! means nothing on the user's machine), so every file a build needs is embedded here and written
//! into `<project>/firmware/`, laid out as `device-firmware/` is, so its `platformio.ini` finds the
//! sketches. A copy never replaces a file the user changed unless asked to ([`copy`]).

use std::path::{Path, PathBuf};

use super::boards::{Family, FamilyBuild};
use otaforge_project::Secrecy;

/// The folder of a project the reference firmware is copied into.
pub const FOLDER: &str = "firmware";

/// One embedded file: where it goes under [`FOLDER`], and its text.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedFile {
    /// Path under the copy's root, `/`-separated.
    pub path: &'static str,
    /// Its bytes, as committed in `device-firmware/`.
    pub text: &'static str,
}

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        [$(EmbeddedFile { path: $path, text: include_str!(concat!("../../../device-firmware/", $path)) }),*]
    };
}

/// Everything the two sketches need to build with arduino-cli, the Arduino IDE or PlatformIO.
/// (`ota_config.h` is not among them: OTA Forge writes it from the step's settings.)
pub const FILES: [EmbeddedFile; 14] = embedded![
    "README.md",
    ".gitignore",
    "platformio.ini",
    "esp8266/otaforge_esp8266/otaforge_esp8266.ino",
    "esp8266/otaforge_esp8266/otaforge_common.h",
    "esp8266/otaforge_esp8266/otaforge_config_block.h",
    "esp8266/otaforge_esp8266/otaforge_device_settings.h",
    "esp8266/otaforge_esp8266/ota_config.h.example",
    "esp32/otaforge_esp32/otaforge_esp32.ino",
    "esp32/otaforge_esp32/otaforge_common.h",
    "esp32/otaforge_esp32/otaforge_config_block.h",
    "esp32/otaforge_esp32/otaforge_device_settings.h",
    "esp32/otaforge_esp32/ota_config.h.example",
    "esp32/otaforge_esp32/build_opt.h",
];

/// The copy's root in the project in `project`.
pub fn root(project: &Path) -> PathBuf {
    project.join(FOLDER)
}

/// The sketch folder for `family` in the copy under `project`.
pub fn sketch_dir(project: &Path, family: Family) -> PathBuf {
    let sub = match family {
        Family::Esp8266 => "esp8266",
        Family::Esp32 => "esp32",
    };
    root(project).join(sub).join(family.sketch())
}

/// What a copy found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The copy's root.
    pub root: PathBuf,
    /// Files written now.
    pub written: Vec<PathBuf>,
    /// Files already there with the reference's bytes.
    pub unchanged: usize,
    /// Files that differ from the reference (the user's edits), kept as they are.
    pub edited: Vec<PathBuf>,
    /// Files not there yet (only when nothing was written: a check).
    pub missing: Vec<PathBuf>,
}

impl CopyReport {
    /// Whether every reference file is there (edited or not).
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// What is to be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// Only look: what is missing, unchanged or edited.
    Check,
    /// Write the missing files; keep edited ones.
    Missing,
    /// Also put the reference back over edited files (the user said so).
    Overwrite,
}

/// Looks at (or writes) the reference files under `project`'s [`FOLDER`].
pub fn copy(project: &Path, mode: CopyMode) -> std::io::Result<CopyReport> {
    let root = root(project);
    let mut report = CopyReport { root: root.clone(), ..CopyReport::default() };
    for file in FILES {
        let path = file.path.split('/').fold(root.clone(), |p, part| p.join(part));
        let edited = match std::fs::read(&path) {
            Ok(bytes) if bytes == file.text.as_bytes() => {
                report.unchanged += 1;
                continue;
            }
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())));
            }
        };
        let write = match mode {
            CopyMode::Check => false,
            CopyMode::Missing => !edited,
            CopyMode::Overwrite => true,
        };
        if write {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            otaforge_project::write_atomic(&path, file.text.as_bytes(), Secrecy::Public).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
            })?;
            report.written.push(path);
        } else if edited {
            report.edited.push(path);
        } else {
            report.missing.push(path);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_writes_what_is_missing_and_keeps_edits_until_told() {
        let project = tempfile::tempdir().unwrap();
        let check = copy(project.path(), CopyMode::Check).unwrap();
        assert_eq!((check.missing.len(), check.written.len()), (FILES.len(), 0));
        let first = copy(project.path(), CopyMode::Missing).unwrap();
        assert_eq!(first.written.len(), FILES.len());
        let ino = sketch_dir(project.path(), Family::Esp8266).join("otaforge_esp8266.ino");
        assert_eq!(std::fs::read_to_string(&ino).unwrap(), FILES[3].text);
        assert!(sketch_dir(project.path(), Family::Esp32).join("build_opt.h").is_file());

        std::fs::write(&ino, "// mine\n").unwrap();
        let again = copy(project.path(), CopyMode::Missing).unwrap();
        assert_eq!((again.written.len(), again.edited.clone()), (0, vec![ino.clone()]));
        assert_eq!(std::fs::read_to_string(&ino).unwrap(), "// mine\n");
        assert!(again.complete());
        let forced = copy(project.path(), CopyMode::Overwrite).unwrap();
        assert_eq!(forced.written, std::slice::from_ref(&ino));
        assert_eq!(std::fs::read_to_string(&ino).unwrap(), FILES[3].text);
    }

    #[test]
    fn the_embedded_sketches_share_the_common_header() {
        let common = include_str!("../../../device-firmware/common/otaforge_common.h");
        for f in FILES.iter().filter(|f| f.path.ends_with("otaforge_common.h")) {
            assert_eq!(f.text, common, "{}", f.path);
        }
    }
}
