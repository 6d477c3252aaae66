//! Stand-ins for arduino-cli and PlatformIO (no ESP toolchain can be installed where OTA Forge is
//! developed). Each is a shell script in a folder of its own, which a test hands the app as the
//! only place to look; it records every call and does what the real tool's documentation says:
//!
//! - `arduino-cli core list` prints the table (`ID Installed Latest Name`, one platform a row);
//! - `arduino-cli compile --fqbn F --output-dir D SKETCH` prints progress and leaves
//!   `D/<sketch>.ino.bin` beside the bootloader and merged images;
//! - `pio run -e ENV`, run in the project folder (the one with platformio.ini), builds the
//!   sketch PLATFORMIO_SRC_DIR names into `.pio/build/ENV/firmware.bin`.
//!
//! The "built" image is a copy of `image`.
#![allow(dead_code)] // each test uses a different part

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// A folder holding one stand-in, and the record of its calls.
pub struct FakeTool {
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl FakeTool {
    /// Where the app is to look (a PATH-style list of one folder).
    pub fn search(&self) -> OsString {
        self.dir.path().as_os_str().to_owned()
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Each call's arguments (PlatformIO's end with `cwd=…` and `src=…`).
    pub fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| l.split('\u{1f}').filter(|a| !a.is_empty()).map(str::to_string).collect())
            .collect()
    }
}

fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join(name);
    std::fs::write(&exe, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An arduino-cli with the `cores` (platform IDs) installed, whose builds produce `image`.
pub fn arduino_cli(cores: &[&str], image: &Path) -> FakeTool {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let rows: String = cores.iter().map(|c| format!("  echo '{c:<16}3.1.2     3.1.2  {c}'\n")).collect();
    let body = format!(
        r#"{{ printf '%s\037' "$@"; printf '\n'; }} >> '{log}'
if [ "$1" = core ] && [ "$2" = list ]; then
  echo 'ID              Installed Latest Name'
{rows}  exit 0
fi
if [ "$1" = compile ]; then
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --fqbn) fqbn="$2"; shift 2 ;;
      --output-dir) out="$2"; shift 2 ;;
      *) sketch="$1"; shift ;;
    esac
  done
  echo "FQBN: $fqbn"
  echo "Compiling sketch..."
  if [ ! -f "$sketch/ota_config.h" ]; then echo "$sketch/otaforge_common.h: #error Run otaforge bake --sketch first" >&2; exit 1; fi
  echo "Linking everything together... /home/user/.arduino15/packages/esp8266/tools/xtensa-lx106-elf-gcc/3.1.0-gcc10.3-e5f9fec/bin/xtensa-lx106-elf-g++ -fno-exceptions -Wl,-Map=/tmp/arduino/sketches/0123456789ABCDEF0123456789ABCDEF/otaforge.ino.map"
  name=$(basename "$sketch")
  mkdir -p "$out" && cp '{image}' "$out/$name.ino.bin" && cp '{image}' "$out/$name.ino.merged.bin" && printf boot > "$out/$name.ino.bootloader.bin" || exit 1
  echo "Sketch uses 245844 bytes (23%) of program storage space. Maximum is 1044464 bytes."
  exit 0
fi
echo "Error: unknown command \"$1\" for \"arduino-cli\"" >&2
exit 1"#,
        log = log.display(),
        image = image.display(),
    );
    script(dir.path(), "arduino-cli", &body);
    FakeTool { dir, log }
}

/// A PlatformIO whose builds produce `image`.
pub fn pio(image: &Path) -> FakeTool {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    let body = format!(
        r#"{{ printf '%s\037' "$@"; printf 'cwd=%s\037src=%s\n' "$PWD" "$PLATFORMIO_SRC_DIR"; }} >> '{log}'
if [ "$1" = run ] && [ "$2" = -e ]; then
  if [ ! -f platformio.ini ]; then echo "Error: Not a PlatformIO project. \`platformio.ini\` file has not been found in current working directory" >&2; exit 1; fi
  echo "Processing $3 (platform: espressif8266; board: $3; framework: arduino)"
  mkdir -p ".pio/build/$3" && cp '{image}' ".pio/build/$3/firmware.bin" || exit 1
  echo "========================= [SUCCESS] Took 12.34 seconds ========================="
  exit 0
fi
exit 1"#,
        log = log.display(),
        image = image.display(),
    );
    script(dir.path(), "pio", &body);
    FakeTool { dir, log }
}

/// An empty folder: no toolchain anywhere the app looks.
pub fn nowhere() -> FakeTool {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls");
    FakeTool { dir, log }
}

/// A real sketch build's stand-in (an Arduino ESP8266 image with an unbaked config block; not
/// marked synthetic, as a real build is not), written to `path`.
pub fn built_image(path: &Path) -> Vec<u8> {
    let mut image = otaforge_firmware::ImageBuilder::for_chip(otaforge_firmware::Chip::Esp8266)
        .target_size(96 * 1024)
        .build();
    otaforge_firmware::config_block::reserve(&mut image).unwrap();
    std::fs::write(path, &image).unwrap();
    image
}
