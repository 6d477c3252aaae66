//! Tests of building from source, with stand-ins for the toolchains.
use super::*;

#[test]
fn platformio_builds_the_project_with_the_sketch_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = dir.path().join("esp8266/otaforge_esp8266");
    std::fs::create_dir_all(&sketch).unwrap();
    std::fs::write(dir.path().join("platformio.ini"), "[env:nodemcuv2]\n").unwrap();
    let c = build_command(&Toolchain::PlatformIo("pio".into()), &sketch, "nodemcuv2");
    assert_eq!(c.get_current_dir(), Some(dir.path()));
    let src = c.get_envs().find(|(k, _)| *k == "PLATFORMIO_SRC_DIR").and_then(|(_, v)| v).unwrap();
    assert_eq!(Path::new(src), sketch.canonicalize().unwrap());
    let c = build_command(&Toolchain::ArduinoCli("arduino-cli".into()), &sketch, "esp8266:esp8266:nodemcuv2");
    let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let out = sketch.join("build/esp8266.esp8266.nodemcuv2");
    assert_eq!(args[..4], ["compile", "--fqbn", "esp8266:esp8266:nodemcuv2", "--output-dir"]);
    assert_eq!(args[4..], [out.display().to_string(), sketch.display().to_string()]);
}

/// A stand-in for arduino-cli: `core list` prints the real table with the cores given, and
/// anything else runs `body` (e.g. prints progress and writes a .bin where the real one does).
#[cfg(unix)]
fn fake_arduino_cli(dir: &Path, cores: &[&str], body: &str) -> Toolchain {
    use std::os::unix::fs::PermissionsExt;
    let exe = dir.join("arduino-cli");
    let rows: String = cores.iter().map(|c| format!("echo '{c:<16}1.0.0     1.0.0  {c}'; ")).collect();
    let list =
        format!("if [ \"$1\" = core ]; then echo 'ID              Installed Latest Name'; {rows}exit 0; fi");
    std::fs::write(&exe, format!("#!/bin/sh\n{list}\n{body}\n")).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    Toolchain::ArduinoCli(exe)
}

#[cfg(unix)]
#[test]
fn builds_stream_their_log_and_return_the_new_bin() {
    let dir = tempfile::tempdir().unwrap();
    let sketch = dir.path().join("s");
    std::fs::create_dir(&sketch).unwrap();
    let tc = fake_arduino_cli(
        dir.path(),
        &["esp8266:esp8266"],
        "echo Compiling sketch...; echo warning: x >&2; d=\"$5\"; mkdir -p \"$d\"; echo bin > \"$d/s.ino.bin\"; echo > \"$d/s.ino.bootloader.bin\"; echo Done",
    );
    let mut lines = Vec::new();
    let bin =
        build(&tc, &sketch, "esp8266:esp8266:nodemcuv2", &mut |l| lines.push(l), &AtomicBool::new(false))
            .unwrap();
    assert!(bin.ends_with("build/esp8266.esp8266.nodemcuv2/s.ino.bin"), "{}", bin.display());
    assert!(lines.contains(&"Compiling sketch...".to_string()) && lines.contains(&"warning: x".to_string()));
    assert!(lines.contains(&"Done".to_string()));

    let failing = fake_arduino_cli(dir.path(), &["x:y"], "echo 'error: no such board'; exit 3");
    let r = build(&failing, &sketch, "x:y:z", &mut |_| {}, &AtomicBool::new(false));
    assert!(matches!(r, Err(SourceError::BuildFailed(Some(3)))), "{r:?}");
}

#[cfg(unix)]
#[test]
fn cancel_stops_a_running_build_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let tc = fake_arduino_cli(dir.path(), &["a:b"], "echo started; sleep 30; echo never");
    let cancel = AtomicBool::new(false);
    let t = std::time::Instant::now();
    let mut lines = Vec::new();
    // Cancelled once the tool has said it started, as a user presses Cancel on a running build.
    let mut on_line = |l: String| {
        if l == "started" {
            cancel.store(true, Ordering::Relaxed);
        }
        lines.push(l);
    };
    let r = build(&tc, dir.path(), "a:b:c", &mut on_line, &cancel);
    assert!(matches!(r, Err(SourceError::Cancelled)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "cancel took {:?}", t.elapsed());
    assert_eq!(lines, ["started"]);
}

/// A board whose core arduino-cli lacks is refused before the compiler runs, naming the command.
#[cfg(unix)]
#[test]
fn a_missing_core_is_named_before_anything_is_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("compiled");
    let tc = fake_arduino_cli(dir.path(), &["esp8266:esp8266"], &format!("touch {}", marker.display()));
    let r = build(&tc, dir.path(), "esp32:esp32:esp32", &mut |_| {}, &AtomicBool::new(false));
    let Err(SourceError::MissingCore(why)) = r else { panic!("{r:?}") };
    assert!(why.contains("arduino-cli core install esp32:esp32 --additional-urls https://espressif.github.io/arduino-esp32/package_esp32_index.json"), "{why}");
    assert!(!marker.exists(), "nothing was compiled");
}
