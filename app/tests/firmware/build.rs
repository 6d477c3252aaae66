//! `otaforge bake --sketch … --build` with a stand-in arduino-cli on the command's PATH (no ESP
//! toolchain exists where OTA Forge is developed): the same board and core checks as the app, and
//! arduino-cli's documented `compile --fqbn F --output-dir D SKETCH`, whose `D/<sketch>.ino.bin`
//! is the image.

use crate::support;

use std::path::Path;

use otaforge_firmware::boards::{Family, FamilyBuild};
use otaforge_firmware::reference_sketch::{self, CopyMode};
use support::{Project, otaforge, run};

/// An arduino-cli with only the ESP8266 core: it records its calls and "builds" `image`.
fn fake_arduino_cli(bin: &Path, image: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let log = bin.join("calls");
    let body = format!(
        r#"#!/bin/sh
printf '%s ' "$@" >> '{log}'; echo >> '{log}'
if [ "$1" = core ]; then printf 'ID              Installed Latest Name\nesp8266:esp8266 3.1.2     3.1.2  esp8266\n'; exit 0; fi
while [ $# -gt 0 ]; do case "$1" in --output-dir) out="$2"; shift 2 ;; --fqbn) shift 2 ;; *) sketch="$1"; shift ;; esac; done
echo "Compiling sketch..."
mkdir -p "$out" && cp '{image}' "$out/$(basename "$sketch").ino.bin"
"#,
        log = log.display(),
        image = image.display()
    );
    std::fs::write(bin.join("arduino-cli"), body).unwrap();
    std::fs::set_permissions(bin.join("arduino-cli"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_cli_builds_with_arduino_cli_and_names_a_missing_core() {
    let p = Project::new();
    let tools = tempfile::tempdir().unwrap();
    let image = tools.path().join("image.bin");
    std::fs::write(&image, otaforge_firmware::ImageBuilder::arduino_esp8266().target_size(8192).build())
        .unwrap();
    fake_arduino_cli(tools.path(), &image);
    reference_sketch::copy(p.path(), CopyMode::Missing).unwrap();
    let cli = |sketch: &Path, board: &str| {
        let mut c = otaforge(p.path());
        c.args(["bake", "--version", "1.0.0", "--build", "--board", board, "--sketch"]).arg(sketch);
        c.env("PATH", format!("{}:/usr/bin:/bin", tools.path().display())).env("HOME", tools.path());
        run(&mut c)
    };

    let sketch = reference_sketch::sketch_dir(p.path(), Family::Esp8266);
    let (o, stdout, stderr) = cli(&sketch, "esp8266:esp8266:d1_mini");
    assert!(o.status.success(), "{stdout}{stderr}");
    let bin = sketch.join("build/esp8266.esp8266.d1_mini/otaforge_esp8266.ino.bin");
    assert!(stdout.contains(&format!("Built {}", bin.display())), "{stdout}");
    let calls = std::fs::read_to_string(tools.path().join("calls")).unwrap();
    let out = sketch.join("build/esp8266.esp8266.d1_mini");
    assert!(
        calls.contains(&format!(
            "compile --fqbn esp8266:esp8266:d1_mini --output-dir {} {}",
            out.display(),
            sketch.display()
        )),
        "{calls}"
    );

    let esp32 = reference_sketch::sketch_dir(p.path(), Family::Esp32);
    let (o, _, stderr) = cli(&esp32, "esp32:esp32:esp32c3");
    assert!(!o.status.success());
    assert!(stderr.contains(&Family::Esp32.install_core_command()), "{stderr}");
}
