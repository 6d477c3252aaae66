//! The reference firmware in device-firmware/ holds together, as far as a host can tell.
//!
//! No ESP toolchain is used (none is available where OTA Forge is developed). Instead each sketch
//! is compiled by g++ as C++ (`-fsyntax-only -Wall -Wextra -Werror`, then once to an object at
//! -O2 for the warnings that need the optimiser) against the stub headers in
//! device-firmware/host-check/, which declare, with the real cores' signatures, only the APIs the
//! sketches call. The `ota_config.h` comes from OTA Forge's own generator, and one test runs the
//! real `otaforge bake --sketch`. This catches syntax and type errors, wrong API names and
//! signatures, format-string mistakes and a stale config-block header; it says nothing about
//! what the real cores do at run time.
//!
//! The config block is checked for real: its initialiser is compiled and run on the host and
//! must be byte for byte the unbaked block the app searches for, and the header's reader must
//! accept a block the app baked and refuse a damaged one. So is the device settings record: the
//! ESP8266 sketch's own record builder, compiled on the host, must write exactly what the app's
//! `DeviceSettings::encode` writes, and the name each sketch puts into the update URL must be
//! percent-encoded.
//!
//! Signed updates are run too: each whole sketch is compiled into a harness that defines the
//! stubbed core functions its boot and check code reach, recording what the sketch hands them,
//! and the executable is baked the way OTA Forge bakes an image. The tests see which key the
//! sketch gave the core's verifier (from the config block, from ota_config.h, or none), that the
//! verifier is installed when the update runs, and what the sketch logs when the updater refuses
//! a signature.
//!
//! The two sketches share their common code through `otaforge_common.h`, hand-written, whose master
//! copy is in device-firmware/common/ and which each sketch folder carries byte for byte (the
//! Arduino IDE compiles only the files in the sketch folder). The checks on a sketch's source read
//! its .ino together with that copy: what one build of the sketch compiles.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::device_settings::{self, DeviceSettings, Wifi};
use otaforge_firmware::source;
use otaforge_pki::signing::{self, Family, PublicKey};
use support::{otaforge, run};

struct Sketch {
    /// Folder and file name.
    name: &'static str,
    /// Folder under device-firmware/.
    dir: &'static str,
    /// What the core defines.
    define: &'static str,
    /// Stub headers for that core, under device-firmware/.
    stubs: &'static str,
    /// LED_BUILTIN variants to compile ("" = the board defines none).
    leds: &'static [&'static str],
    /// Build flags of other configurations the core has, each compiled once (syntax only); one
    /// string per configuration, its flags separated by spaces.
    variants: &'static [&'static str],
}

/// The device settings header, next to the config block's in each sketch folder.
const DEVICE_SETTINGS_H: &str = "otaforge_device_settings.h";

/// The code both sketches share (hand-written): the master in device-firmware/common/, a copy in
/// each sketch folder.
const COMMON_H: &str = "otaforge_common.h";

const ESP8266: Sketch = Sketch {
    name: "otaforge_esp8266",
    dir: "esp8266/otaforge_esp8266",
    define: "ESP8266",
    stubs: "host-check/esp8266",
    // nodemcu (GPIO2), generic (GPIO1, the TX pin the sketch must leave alone), none.
    leds: &["", "2", "1"],
    // Flash size "Mapping defined by Hardware and Sketch": the EEPROM sector comes from flash_hal.h.
    variants: &["-DFLASH_MAP_SUPPORT=1"],
};

const ESP32: Sketch = Sketch {
    name: "otaforge_esp32",
    dir: "esp32/otaforge_esp32",
    define: "ESP32",
    stubs: "host-check/esp32",
    leds: &["", "8"],
    // Signed updates: a build with UPDATE_SIGN (build_opt.h) on a core that has the signing API,
    // and one on a core without it (3.2: no UPDATE_ERROR_SIGN, no verifier classes).
    variants: &["-DUPDATE_SIGN", "-DUPDATE_SIGN -DHOSTCHECK_ESP_ARDUINO_VERSION_MINOR=2"],
};

const SKETCHES: [&Sketch; 2] = [&ESP8266, &ESP32];

/// A P-256 CA certificate (basicConstraints CA:TRUE), made for this test; public data only.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIB1jCCAXygAwIBAgIUJkMh1OAxVh0NZvE7fd9idL7MJmswCgYIKoZIzj0EAwIw
NzESMBAGA1UECgwJT1RBIEZvcmdlMSEwHwYDVQQDDBhPVEEgRm9yZ2Ugc2tldGNo
LXRlc3QgQ0EwHhcNMjYxMTI1MjE1MTEwWhcNMzYxMTIyMjE1MTEwWjA3MRIwEAYD
VQQKDAlPVEEgRm9yZ2UxITAfBgNVBAMMGE9UQSBGb3JnZSBza2V0Y2gtdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABHcjwlznXm1YYUmMCKnWCoL8NKKA
GuG/otKYSXmEbWg1aSVyKQTdt2Uxps0sZ+HZSdLfL1GeA2XomydsMYTB9k2jZjBk
MB0GA1UdDgQWBBTheeggDh7XxokduBkDmHxFFtP7ZTAfBgNVHSMEGDAWgBTheegg
Dh7XxokduBkDmHxFFtP7ZTASBgNVHRMBAf8ECDAGAQH/AgEAMA4GA1UdDwEB/wQE
AwIBBjAKBggqhkjOPQQDAgNIADBFAiAFrErMHIFbFFUUYPUldCm+9QWzvSgov7zi
zKT5xYOdugIhAK8iQLjs3GpJm77rpU//pMbfKKaM7cVMd64OA5P0XVyM
-----END CERTIFICATE-----
";

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-firmware")
}

/// Ordinary settings, as `otaforge bake --sketch` would write them.
fn plain_settings() -> BakedSettings {
    BakedSettings {
        host: "ota.example.lan".into(),
        port: 3443,
        path: "/update".into(),
        channel: String::new(),
        version: "1.4.2".into(),
        device_name: String::new(),
        wifi_ssid: "HomeNet".into(),
        wifi_password: "correct horse battery staple".into(),
        ca_pem: TEST_CA_PEM.into(),
        poll_interval_s: 3600,
        tls_rx_buffer: 16384,
        tls_tx_buffer: 512,
        baked_at: 1_767_225_600,
        signing_key: Vec::new(),
    }
}

/// Awkward settings: a channel, an IP host, small buffers, and text C would misread unescaped.
fn awkward_settings() -> BakedSettings {
    BakedSettings {
        host: "192.168.1.70".into(),
        port: 443,
        path: "/fw/update".into(),
        channel: "beta".into(),
        version: "2.0.0-rc.1".into(),
        device_name: "kitchen \"sensor\" \\ 1??=".into(),
        wifi_ssid: "Café %s %n".into(),
        wifi_password: "p\"w\\d?\t".into(),
        ca_pem: TEST_CA_PEM.into(),
        poll_interval_s: 10,
        tls_rx_buffer: 512,
        tls_tx_buffer: 512,
        baked_at: 1_767_225_600,
        signing_key: Vec::new(),
    }
}

/// A temporary folder holding the sketch as `<name>.cpp` (what the Arduino builder compiles),
/// the committed config-block, device-settings and shared headers and, when given, `ota_config.h`.
fn stage(sketch: &Sketch, ota_config_h: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = firmware_dir().join(sketch.dir);
    std::fs::copy(src.join(format!("{}.ino", sketch.name)), dir.path().join(format!("{}.cpp", sketch.name)))
        .unwrap();
    for header in [source::CONFIG_BLOCK_H, DEVICE_SETTINGS_H, COMMON_H] {
        std::fs::copy(src.join(header), dir.path().join(header)).unwrap();
    }
    if let Some(text) = ota_config_h {
        std::fs::write(dir.path().join(source::OTA_CONFIG_H), text).unwrap();
    }
    dir
}

fn gxx() -> Command {
    Command::new("g++")
}

fn gxx_output(cmd: &mut Command) -> Output {
    cmd.output().expect("g++ is needed for the firmware host check (scripts/test installs it)")
}

/// g++ on the staged sketch with the stubs of `stubs_of`'s core, defining `define`.
fn host_check(sketch: &Sketch, dir: &Path, stubs_of: &Sketch, define: &str, extra: &[String]) -> Output {
    let mut cmd = gxx();
    cmd.args(["-std=gnu++17", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(firmware_dir().join(stubs_of.stubs))
        .arg(format!("-D{define}"))
        .args(extra)
        .arg(dir.join(format!("{}.cpp", sketch.name)));
    gxx_output(&mut cmd)
}

fn assert_compiles(sketch: &Sketch, dir: &Path, extra: &[String], what: &str) {
    let out = host_check(sketch, dir, sketch, sketch.define, extra);
    assert!(
        out.status.success(),
        "{} ({what}, {extra:?}) fails the host check:\n{}",
        sketch.name,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Syntax-only with every LED variant and core configuration, then one full compile to an object
/// at -O2.
fn check_all_variants(sketch: &Sketch, dir: &Path, what: &str) {
    for led in sketch.leds {
        let mut extra = vec!["-fsyntax-only".to_string()];
        if !led.is_empty() {
            extra.push(format!("-DHOSTCHECK_LED_BUILTIN={led}"));
        }
        assert_compiles(sketch, dir, &extra, what);
    }
    for variant in sketch.variants {
        let mut extra = vec!["-fsyntax-only".to_string()];
        extra.extend(variant.split_whitespace().map(str::to_string));
        assert_compiles(sketch, dir, &extra, what);
    }
    let object = dir.join("sketch.o");
    let extra = vec!["-O2".to_string(), "-c".to_string(), "-o".to_string(), object.display().to_string()];
    assert_compiles(sketch, dir, &extra, what);
}

#[test]
fn each_sketch_folder_carries_the_generated_config_block_header() {
    let expected = config_block::c_header();
    for sketch in SKETCHES {
        let path = firmware_dir().join(sketch.dir).join(source::CONFIG_BLOCK_H);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == expected,
            "{} differs from what OTA Forge generates: regenerate it with `cargo run -q -- config-block-header > {}`",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn each_sketch_folder_carries_the_common_header_byte_for_byte() {
    let master_path = firmware_dir().join("common").join(COMMON_H);
    let master = std::fs::read(&master_path).unwrap_or_else(|e| panic!("{}: {e}", master_path.display()));
    assert!(!master.is_empty(), "{} is empty", master_path.display());
    for sketch in SKETCHES {
        let path = firmware_dir().join(sketch.dir).join(COMMON_H);
        let copy = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            copy == master,
            "{} differs from {}: edit the one in common/ and copy it: cp {} {}",
            path.display(),
            master_path.display(),
            master_path.display(),
            path.display()
        );
        // The copy is what the sketch compiles.
        let ino =
            std::fs::read_to_string(firmware_dir().join(sketch.dir).join(format!("{}.ino", sketch.name)))
                .unwrap();
        assert!(ino.contains(&format!("#include \"{COMMON_H}\"")), "{} must include {COMMON_H}", sketch.name);
    }
}

#[test]
fn sketches_pass_the_host_check_with_generated_settings() {
    for sketch in SKETCHES {
        for (what, settings) in
            [("plain settings", plain_settings()), ("awkward settings", awkward_settings())]
        {
            let header = source::ota_config_h(&settings, &Default::default()).expect("valid settings");
            let dir = stage(sketch, Some(&header));
            check_all_variants(sketch, dir.path(), what);
        }
    }
}

#[test]
fn sketches_pass_the_host_check_with_the_example_config() {
    for sketch in SKETCHES {
        let example = firmware_dir().join(sketch.dir).join("ota_config.h.example");
        let text = std::fs::read_to_string(&example).unwrap();
        let dir = stage(sketch, Some(&text));
        check_all_variants(sketch, dir.path(), "ota_config.h.example");
    }
}

#[test]
fn without_ota_config_h_the_build_stops_and_names_the_bake_command() {
    for sketch in SKETCHES {
        let dir = stage(sketch, None);
        let out = host_check(sketch, dir.path(), sketch, sketch.define, &["-fsyntax-only".into()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} compiled without ota_config.h", sketch.name);
        assert!(err.contains("ota_config.h is missing") && err.contains("otaforge bake --sketch"), "{err}");
    }
}

#[test]
fn each_sketch_refuses_the_other_chip() {
    for (sketch, other) in [(&ESP8266, &ESP32), (&ESP32, &ESP8266)] {
        let header = source::ota_config_h(&plain_settings(), &Default::default()).unwrap();
        let dir = stage(sketch, Some(&header));
        let out = host_check(sketch, dir.path(), other, other.define, &["-fsyntax-only".into()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} compiled for {}", sketch.name, other.define);
        assert!(err.contains(&format!("{} is for {} boards", sketch.name, sketch.define)), "{err}");
    }
}

/// The `{ ... }` initialiser of `OTAFORGE_CONFIG` in a sketch, and the declaration line.
fn block_initialiser(text: &str) -> (&str, &str) {
    let decl_at = text
        .find("static const otaforge_config_block_t OTAFORGE_CONFIG")
        .expect("the sketch declares the config block");
    let line_end = decl_at + text[decl_at..].find('\n').unwrap();
    let open = decl_at + text[decl_at..].find("= {").expect("an initialiser") + 2;
    // Match braces, skipping comments (the initialiser has no strings but the magic macro).
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, open);
    loop {
        if text[i..].starts_with("/*") {
            i += text[i..].find("*/").unwrap() + 2;
            continue;
        }
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return (&text[decl_at..line_end], &text[open..=i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
}

#[test]
fn config_block_initialiser_is_the_unbaked_block_and_the_reader_checks_baked_ones() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join(source::CONFIG_BLOCK_H), config_block::c_header()).unwrap();

    // A block the app baked, and the same block with one byte of the CA changed.
    let baked = plain_settings().encode().unwrap();
    std::fs::write(work.path().join("baked.bin"), &baked).unwrap();
    let mut damaged = baked.clone();
    damaged[config_block::field("ca_pem").0 + 40] ^= 0x01;
    std::fs::write(work.path().join("damaged.bin"), &damaged).unwrap();

    for sketch in SKETCHES {
        let text = sketch_text(sketch);
        let (decl, init) = block_initialiser(&text);
        assert!(decl.contains("__attribute__((used, aligned(4)))"), "{decl}");
        if sketch.define == "ESP8266" {
            assert!(decl.contains("PROGMEM"), "the ESP8266 block must live in flash: {decl}");
            assert!(
                text.contains("memcpy_P(block, configBlockInFlash()"),
                "the ESP8266 sketch reads the block with memcpy_P"
            );
        }
        assert!(text.contains(r#"asm volatile("" : "+r"(p));"#), "the block's address must be laundered");
        assert!(
            text.contains("otaforge_config_is_baked(block)"),
            "the sketch must check the block with the header's reader"
        );
        // The magic may exist once in the image: only the macro in the initialiser, never a literal.
        assert!(
            !text.contains("OTAFORGE-CONFIG"),
            "{}: a second copy of the magic would confuse the app",
            sketch.name
        );
        assert_eq!(text.matches("OTAFORGE_CONFIG_MAGIC").count(), 1, "{}", sketch.name);

        let harness = format!(
            r#"#include <stdio.h>
#include "otaforge_config_block.h"

static const otaforge_config_block_t OTAFORGE_CONFIG __attribute__((used, aligned(4))) = {init};

int main(int argc, char **argv) {{
    if (argc < 2) {{
        const unsigned char *p = (const unsigned char *)&OTAFORGE_CONFIG;
        for (size_t i = 0; i < sizeof OTAFORGE_CONFIG; i++) printf("%02x", p[i]);
        printf("\n%d\n", otaforge_config_is_baked(&OTAFORGE_CONFIG));
        return 0;
    }}
    static otaforge_config_block_t block;
    FILE *f = fopen(argv[1], "rb");
    if (!f || fread(&block, 1, sizeof block, f) != sizeof block) return 2;
    fclose(f);
    printf("%d\n", otaforge_config_is_baked(&block));
    return 0;
}}
"#
        );
        let src = work.path().join(format!("{}_block.cpp", sketch.name));
        let exe = work.path().join(format!("{}_block", sketch.name));
        std::fs::write(&src, harness).unwrap();
        let out = gxx_output(
            gxx().args(["-std=gnu++17", "-Wall", "-Wextra", "-Werror", "-O1", "-o"]).arg(&exe).arg(&src),
        );
        assert!(
            out.status.success(),
            "{}: the block harness does not build:\n{}",
            sketch.name,
            String::from_utf8_lossy(&out.stderr)
        );

        let out = Command::new(&exe).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next().unwrap(),
            hex::encode(config_block::unbaked_block()),
            "{}: the compiled block is not the unbaked block the app searches for",
            sketch.name
        );
        assert_eq!(lines.next(), Some("0"), "{}: an unbaked block must read as not baked", sketch.name);

        for (file, expected) in [("baked.bin", "1"), ("damaged.bin", "0")] {
            let out = Command::new(&exe).arg(work.path().join(file)).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                expected,
                "{}: reading {file}",
                sketch.name
            );
        }
    }
}

#[test]
fn bake_from_source_then_host_check() {
    let project = tempfile::tempdir().unwrap();
    let (out, _, err) =
        run(otaforge(project.path()).args(["cert", "new", "--host", "ota.test", "--key", "ecdsa"]));
    assert!(out.status.success(), "cert new: {err}");
    let (out, _, err) = run(otaforge(project.path()).args(["key", "new"]));
    assert!(out.status.success(), "key new: {err}");
    let keys = signing::load(project.path()).unwrap();

    for sketch in SKETCHES {
        // A fresh copy of the sketch folder, as a user would have it: the .ino, the shared code and
        // the committed device settings header (the layout of the board's own settings), nothing
        // generated.
        let folder = tempfile::tempdir().unwrap();
        let sketch_dir = folder.path().join(sketch.name);
        std::fs::create_dir(&sketch_dir).unwrap();
        let ino = format!("{}.ino", sketch.name);
        for file in [ino.as_str(), COMMON_H, DEVICE_SETTINGS_H] {
            std::fs::copy(firmware_dir().join(sketch.dir).join(file), sketch_dir.join(file)).unwrap();
        }

        let password_file = folder.path().join("wifi.txt");
        std::fs::write(&password_file, "correct horse\n").unwrap();
        let (out, stdout, err) = run(otaforge(project.path())
            .arg("bake")
            .arg("--sketch")
            .arg(&sketch_dir)
            .args([
                "--version",
                "3.1.0",
                "--device-name",
                "hall",
                "--wifi-ssid",
                "HomeNet",
                "--wifi-password-file",
            ])
            .arg(&password_file)
            .args(["--tls-rx", "1024"]));
        assert!(out.status.success(), "bake --sketch: {err}");
        assert!(stdout.contains(source::OTA_CONFIG_H), "{stdout}");
        let ota_config_h = std::fs::read_to_string(sketch_dir.join(source::OTA_CONFIG_H)).unwrap();
        assert!(ota_config_h.contains("#define OTA_HOST \"ota.test\""), "{ota_config_h}");
        // The project's public signing keys are compiled in (the block carries none before
        // `bake --image`), never a private one.
        assert!(stdout.contains("Compiled in the project's public signing key"), "{stdout}");
        for family in Family::ALL {
            let pem = keys.current(family).unwrap().public().to_pem();
            assert!(ota_config_h.contains(&pem), "{family:?} key missing:\n{ota_config_h}");
        }
        assert!(!ota_config_h.contains("PRIVATE KEY"), "{ota_config_h}");
        let block_h = std::fs::read_to_string(sketch_dir.join(source::CONFIG_BLOCK_H)).unwrap();
        assert_eq!(block_h, config_block::c_header());

        // Compile what bake wrote, exactly as it sits in the sketch folder.
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(sketch_dir.join(&ino), dir.path().join(format!("{}.cpp", sketch.name))).unwrap();
        for file in [source::OTA_CONFIG_H, source::CONFIG_BLOCK_H, DEVICE_SETTINGS_H, COMMON_H] {
            std::fs::copy(sketch_dir.join(file), dir.path().join(file)).unwrap();
        }
        check_all_variants(sketch, dir.path(), "otaforge bake --sketch");
    }
}

/// The text of the function whose definition starts with `head`, up to its closing brace
/// (comments, string and character literals are skipped while matching braces).
fn function_source<'a>(text: &'a str, head: &str) -> &'a str {
    let start = text.find(head).unwrap_or_else(|| panic!("the sketch defines {head}"));
    let bytes = text.as_bytes();
    let mut i = start + text[start..].find('{').expect("a function body");
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i += text[i..].find('\n').unwrap();
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += text[i..].find("*/").unwrap() + 2;
                continue;
            }
            quote @ (b'"' | b'\'') => {
                i += 1;
                while bytes[i] != quote {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[start..=i];
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced braces after {head}");
}

/// The sketch's own source: its .ino followed by the copy of the shared header in its folder (the
/// generated headers and ota_config.h left out), so the checks below hold wherever the code sits.
fn sketch_text(sketch: &Sketch) -> String {
    let dir = firmware_dir().join(sketch.dir);
    let mut text = std::fs::read_to_string(dir.join(format!("{}.ino", sketch.name))).unwrap();
    text.push('\n');
    text.push_str(&std::fs::read_to_string(dir.join(COMMON_H)).unwrap());
    text
}

/// Compiles `source` (C++, with the sketch folder's two headers next to it) to an executable.
fn build_harness(sketch: &Sketch, work: &Path, name: &str, source: &str) -> PathBuf {
    for header in [source::CONFIG_BLOCK_H, DEVICE_SETTINGS_H] {
        std::fs::copy(firmware_dir().join(sketch.dir).join(header), work.join(header)).unwrap();
    }
    let src = work.join(format!("{name}.cpp"));
    let exe = work.join(name);
    std::fs::write(&src, source).unwrap();
    let out = gxx_output(
        gxx().args(["-std=gnu++17", "-Wall", "-Wextra", "-Werror", "-O1", "-o"]).arg(&exe).arg(&src),
    );
    assert!(out.status.success(), "{name} does not build:\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

/// The headers in the order the sketches include them.
const HARNESS_INCLUDES: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "otaforge_config_block.h"
#ifndef OTAFORGE_CRC32_DEFINED
#define OTAFORGE_CRC32_DEFINED
#endif
#include "otaforge_device_settings.h"
"#;

#[test]
fn esp8266_sketch_writes_the_device_record_the_app_encodes() {
    let text = sketch_text(&ESP8266);
    let fill = function_source(&text, "static void fillDeviceRecord(");
    let harness = format!(
        r#"{HARNESS_INCLUDES}
{fill}

int main(int argc, char **argv) {{
    static otaforge_device_settings_t rec;
    if (argc == 5 && strcmp(argv[1], "fill") == 0) {{
        fillDeviceRecord(&rec, argv[2], argv[3], argv[4]);
        const unsigned char *p = (const unsigned char *)&rec;
        for (size_t i = 0; i < sizeof rec; i++) printf("%02x", p[i]);
        printf("\n%d\n", otaforge_device_settings_valid(&rec));
        return 0;
    }}
    if (argc == 3 && strcmp(argv[1], "valid") == 0) {{
        FILE *f = fopen(argv[2], "rb");
        if (!f || fread(&rec, 1, sizeof rec, f) != sizeof rec) return 2;
        fclose(f);
        printf("%d\n", otaforge_device_settings_valid(&rec));
        return 0;
    }}
    return 1;
}}
"#
    );
    let work = tempfile::tempdir().unwrap();
    let exe = build_harness(&ESP8266, work.path(), "device_record", &harness);

    let wifi = |ssid: &str, password: &str| Some(Wifi { ssid: ssid.into(), password: password.into() });
    let cases = [
        DeviceSettings { name: "kitchen".into(), wifi: wifi("home-net", "correct horse") },
        DeviceSettings { name: "hall".into(), wifi: None },
        // No name (the board derives one), an open network with a non-ASCII name.
        DeviceSettings { name: String::new(), wifi: wifi("Café net", "") },
        // Every field at its longest.
        DeviceSettings {
            name: "n".repeat(device_settings::NAME_MAX),
            wifi: wifi(&"s".repeat(32), &"p".repeat(63)),
        },
        DeviceSettings { name: "X-1".into(), wifi: wifi("x", &"ab".repeat(32)) },
    ];
    for settings in &cases {
        let expected = settings.encode().expect("valid settings");
        let (ssid, password) =
            settings.wifi.as_ref().map_or(("", ""), |w| (w.ssid.as_str(), w.password.as_str()));
        let out = Command::new(&exe).args(["fill", settings.name.as_str(), ssid, password]).output().unwrap();
        assert!(out.status.success(), "{settings:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next().unwrap(),
            hex::encode(&expected),
            "{settings:?}: the sketch's record differs from DeviceSettings::encode"
        );
        assert_eq!(lines.next(), Some("1"), "{settings:?}: the header must accept the record it sealed");
    }

    // The header's check on records the app wrote: whole, damaged, and the erased sector.
    let record = cases[0].encode().unwrap();
    let mut damaged = record.clone();
    damaged[20] ^= 0x01;
    let sector = cases[0].encode_sector().unwrap();
    let blank = vec![0xFFu8; device_settings::RECORD_LEN];
    for (name, bytes, expected) in [
        ("record.bin", &record[..], "1"),
        ("sector.bin", &sector[..], "1"),
        ("damaged.bin", &damaged[..], "0"),
        ("blank.bin", &blank[..], "0"),
    ] {
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new(&exe).arg("valid").arg(&path).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected, "{name}");
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn sketches_percent_encode_the_name_they_send_in_the_update_url() {
    for sketch in SKETCHES {
        let text = sketch_text(sketch);
        assert!(
            text.contains("appendPercentEncoded(out, cap, settings.deviceName)"),
            "{}: the update URL must carry the device name",
            sketch.name
        );
        let encode = function_source(&text, "static bool appendPercentEncoded(");
        let harness = format!(
            r#"{HARNESS_INCLUDES}
{encode}

int main(int argc, char **argv) {{
    if (argc != 4) return 1;
    char out[512];
    snprintf(out, sizeof out, "%s", argv[1]);
    const size_t cap = (size_t)strtoul(argv[3], NULL, 10);
    if (cap > sizeof out) return 1;
    if (!appendPercentEncoded(out, cap, argv[2])) {{
        puts("(does not fit)");
        return 0;
    }}
    puts(out);
    return 0;
}}
"#
        );
        let work = tempfile::tempdir().unwrap();
        let exe = build_harness(sketch, work.path(), "percent", &harness);
        let prefix = "https://ota.test:3443/update?name=";
        for name in ["kitchen-1", "esp8266-a1b2c3", "Hall-Sensor-2", "a b/ü?&=#%+", "~._"] {
            let out = Command::new(&exe).args([prefix, name, "512"]).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                format!("{prefix}{}", percent_encoded(name)),
                "{}: {name:?}",
                sketch.name
            );
        }
        // A URL that does not fit is refused, not cut short.
        let fits = prefix.len() + "kitchen".len() + 1;
        for (cap, expected) in [(fits, format!("{prefix}kitchen")), (fits - 1, "(does not fit)".to_string())]
        {
            let out = Command::new(&exe).args([prefix, "kitchen", &cap.to_string()]).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                expected,
                "{}: cap {cap}",
                sketch.name
            );
        }
    }
}

#[test]
fn esp32_sketch_keeps_a_new_image_on_trial_until_it_checks_in() {
    let text = sketch_text(&ESP32);
    // initArduino() declares the hook in a C file: a definition with C++ linkage would compile
    // (here and on the device) and change nothing, so every image would be confirmed at boot.
    assert!(text.contains("extern \"C\" bool verifyRollbackLater() { return true; }"), "C linkage");
    for call in [
        "esp_ota_get_state_partition(running, &state)",
        "esp_ota_mark_app_valid_cancel_rollback()",
        "esp_ota_mark_app_invalid_rollback_and_reboot()",
        "client.setHandshakeTimeout(OTA_TLS_HANDSHAKE_TIMEOUT_S)",
        "prefs.begin(OTAFORGE_NVS_NAMESPACE, true)",
    ] {
        assert!(text.contains(call), "the ESP32 sketch calls {call}");
    }
    let esp8266 = sketch_text(&ESP8266);
    assert!(
        !esp8266.contains("EEPROM.begin") && !esp8266.contains("<EEPROM.h>"),
        "the ESP8266 sketch keeps its device settings in the EEPROM sector and must not use the EEPROM library"
    );
}

// ---------------------------------------------------------------------------------------------
// Signed updates, run on the host.
//
// The whole sketch is compiled into one harness, inside an anonymous namespace: its functions then
// have internal linkage, so only the code `main` reaches is emitted and needs the stubbed core
// functions defined. The harness defines those the boot and check steps call; the signing ones
// print what the sketch handed them ("record: " lines) and Serial prints the sketch's log. The
// executable is then baked as `otaforge bake --image` bakes an image: its one unbaked config block
// is found and replaced, so the sketch's own loadSettings() reads the block, through the laundered
// pointer, like the device reads flash. `main` runs the boot steps (settings, then the signature
// check's set-up) and one update check, whose update fails with the error code given.

/// What every run harness defines after the sketch, whichever the core: the error to fail with,
/// the records, and the String, Serial and ESP parts both cores declare alike.
const RUN_COMMON: &str = r##"
static int updateError;  // what the update returns: 0 up to date, else failed with this code

static void record(const char *what, const void *bytes, size_t n) {
    printf("record: %s ", what);
    for (size_t i = 0; i < n; i++) printf("%02x", ((const unsigned char *)bytes)[i]);
    printf("\n");
}

String &String::operator=(const String &) { return *this; }
String &String::operator=(const char *) { return *this; }
String &String::operator=(const __FlashStringHelper *) { return *this; }
String::String(const String &) {}
String::String(const __FlashStringHelper *) {}
String::~String() {}
unsigned int String::length() const { return 0; }
const char *String::c_str() const { return ""; }

size_t Print::printf(const char *format, ...) {
    va_list args;
    va_start(args, format);
    const int n = vprintf(format, args);
    va_end(args);
    return n < 0 ? 0 : (size_t)n;
}
size_t Print::println() { return (size_t)::printf("\n"); }
void HardwareSerial::flush() {}
HardwareSerial Serial;
void EspClass::restart() { ::printf("record: restart\n"); exit(0); }
uint32_t EspClass::getFreeHeap() { return 40000; }
EspClass ESP;
"##;

/// The run: the boot steps that pick the key and set up the check, then one update check.
const RUN_MAIN: &str = r##"
int main(int argc, char **argv) {
    updateError = argc > 1 ? atoi(argv[1]) : 0;
    loadSettings();
    setUpSignedUpdates();
    checkForUpdate("https://ota.test:3443/update");
    return 0;
}
"##;

/// The ESP8266 run harness: the sketch, then (after [`RUN_COMMON`]) the ESP8266 core functions
/// its steps reach.
const RUN_ESP8266: [&str; 2] = [
    r##"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <Arduino.h>
#include <ESP8266WiFi.h>
#include <ESP8266httpUpdate.h>
#include <Updater.h>

namespace {
#include "otaforge_esp8266.cpp"
}
"##,
    r##"
static const void *keyMade, *verifierMade, *installedHash, *installedVerifier;

String::String() {}
String::String(const char *) {}
size_t Print::printf_P(PGM_P format, ...) {
    va_list args;
    va_start(args, format);
    const int n = vprintf(format, args);
    va_end(args);
    return n < 0 ? 0 : (size_t)n;
}
uint32_t EspClass::getMaxFreeBlockSize() { return 30000; }
void *memcpy_P(void *dest, PGM_VOID_P src, size_t n) { return memcpy(dest, src, n); }
size_t strlen_P(PGM_P s) { return strlen(s); }

BearSSL::X509List::X509List(const char *) {}
BearSSL::X509List::~X509List() {}
size_t BearSSL::X509List::getCount() const { return 1; }
WiFiClient::WiFiClient() {}
WiFiClient::~WiFiClient() {}
BearSSL::WiFiClientSecure::WiFiClientSecure() {}
BearSSL::WiFiClientSecure::~WiFiClientSecure() {}
void BearSSL::WiFiClientSecure::setTrustAnchors(const X509List *) {}
void BearSSL::WiFiClientSecure::setX509Time(time_t) {}
void BearSSL::WiFiClientSecure::setBufferSizes(int, int) {}
int BearSSL::WiFiClientSecure::getLastSSLError(char *, size_t) { return 0; }

// The signing plug-ins and the Updater's hook.
BearSSL::PublicKey::PublicKey(const char *pemKey) { keyMade = this; record("public-key pem", pemKey, strlen(pemKey)); }
BearSSL::PublicKey::PublicKey(const uint8_t *derKey, size_t derLen) { keyMade = this; record("public-key der", derKey, derLen); }
BearSSL::PublicKey::~PublicKey() {}
bool BearSSL::PublicKey::isRSA() const { return true; }
void BearSSL::HashSHA256::begin() {}
void BearSSL::HashSHA256::add(const void *, uint32_t) {}
void BearSSL::HashSHA256::end() {}
int BearSSL::HashSHA256::len() { return 32; }
const void *BearSSL::HashSHA256::hash() { return nullptr; }
const unsigned char *BearSSL::HashSHA256::oid() { return nullptr; }
BearSSL::SigningVerifier::SigningVerifier(PublicKey *pubKey) {
    verifierMade = this;
    printf("record: verifier key=%d\n", keyMade != nullptr && (const void *)pubKey == keyMade);
}
BearSSL::SigningVerifier::~SigningVerifier() {}
uint32_t BearSSL::SigningVerifier::length() { return 256; }
bool BearSSL::SigningVerifier::verify(UpdaterHashClass *, const void *, uint32_t) { return false; }
UpdaterClass::UpdaterClass() {}
UpdaterClass::~UpdaterClass() {}
void UpdaterClass::installSignature(UpdaterHashClass *hash, UpdaterVerifyClass *verify) {
    installedHash = hash;
    installedVerifier = verify;
}
UpdaterClass Update;

// The update: what the Updater holds when it runs.
t_httpUpdate_return ESP8266HTTPUpdate::update(WiFiClient &, const String &, const String &) {
    const bool sha256 = dynamic_cast<BearSSL::HashSHA256 *>((UpdaterHashClass *)installedHash) != nullptr;
    printf("record: update hash=%d verifier=%d\n", sha256,
           installedVerifier != nullptr && installedVerifier == verifierMade);
    return updateError != 0 ? HTTP_UPDATE_FAILED : HTTP_UPDATE_NO_UPDATES;
}
int ESP8266HTTPUpdate::getLastError() { return updateError; }
String ESP8266HTTPUpdate::getLastErrorString() { return String(); }
ESP8266HTTPUpdate ESPhttpUpdate;
"##,
];

/// The ESP32 run harness: the sketch, then (after [`RUN_COMMON`]) the arduino-esp32 functions its
/// steps reach.
const RUN_ESP32: [&str; 2] = [
    r##"
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <Arduino.h>
#include <WiFi.h>
#include <WiFiClientSecure.h>
#include <HTTPUpdate.h>
#include <Update.h>
#include <esp_arduino_version.h>
#include <Preferences.h>
#include <esp_ota_ops.h>

// The sketch sets the system clock when SNTP is late: never the host's.
static int hostcheckSetTime(const struct timeval *, const void *) { return 0; }
#define settimeofday hostcheckSetTime

namespace {
#include "otaforge_esp32.cpp"
}
"##,
    r##"
static const void *verifierMade, *installedVerifier;

String::String(const char *) {}
uint32_t EspClass::getMaxAllocHeap() { return 100000; }
unsigned long millis() { return 0; }
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void) { return ESP_OK; }
const char *esp_err_to_name(esp_err_t) { return "ESP_OK"; }
NetworkClient::NetworkClient() {}
NetworkClient::~NetworkClient() {}
NetworkClientSecure::NetworkClientSecure() {}
NetworkClientSecure::~NetworkClientSecure() {}
int NetworkClientSecure::lastError(char *, const size_t) { return 0; }
void NetworkClientSecure::setCACert(const char *) {}
void NetworkClientSecure::setHandshakeTimeout(unsigned long) {}

// The Update library's signing hook and verifier (in builds that have them).
UpdateClass::UpdateClass() {}
UpdateClass Update;
#if OTA_CHECKS_SIGNATURES
bool UpdateClass::installSignature(UpdaterVerifyClass *sign) {
    installedVerifier = sign;
    return true;
}
UpdaterECDSAVerifier::UpdaterECDSAVerifier(const uint8_t *pubkey, size_t pubkeyLen, int hashType) {
    verifierMade = this;
    char what[64];
    snprintf(what, sizeof what, "ecdsa-verifier hash=%d", hashType);
    record(what, pubkey, pubkeyLen);
}
UpdaterECDSAVerifier::~UpdaterECDSAVerifier() {}
bool UpdaterECDSAVerifier::verify(SHA2Builder *, const void *, size_t) { return false; }
int UpdaterECDSAVerifier::getHashType() const { return HASH_SHA256; }
#endif

// The update: what Update holds when it runs.
t_httpUpdate_return HTTPUpdate::update(NetworkClient &, const String &, const String &, HTTPUpdateRequestCB) {
    printf("record: update verifier=%d\n", installedVerifier != nullptr && installedVerifier == verifierMade);
    return updateError != 0 ? HTTP_UPDATE_FAILED : HTTP_UPDATE_NO_UPDATES;
}
int HTTPUpdate::getLastError() { return updateError; }
String HTTPUpdate::getLastErrorString() { return String(); }
HTTPUpdate httpUpdate;
"##,
];

/// The sketch's log and the stubs' records from one run.
struct SketchRun {
    log: String,
    records: Vec<String>,
}

/// Builds `sketch` into its run harness with `ota_config_h` (and `files` next to it), bakes
/// `block` into the executable when given, and runs it with the update failing with `error`.
fn run_sketch(
    sketch: &Sketch,
    ota_config_h: &str,
    files: &[(&str, String)],
    block: Option<&[u8]>,
    flags: &[&str],
    error: i32,
) -> SketchRun {
    let dir = stage(sketch, Some(ota_config_h));
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let [head, defs] = if sketch.define == "ESP8266" { RUN_ESP8266 } else { RUN_ESP32 };
    let src = dir.path().join("run_harness.cpp");
    std::fs::write(&src, [head, RUN_COMMON, defs, RUN_MAIN].concat()).unwrap();
    let exe = dir.path().join("run_harness");
    let out = gxx_output(
        gxx()
            .args(["-std=gnu++17", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function", "-O1"])
            .arg(format!("-D{}", sketch.define))
            .args(flags)
            .arg("-I")
            .arg(firmware_dir().join(sketch.stubs))
            .arg("-o")
            .arg(&exe)
            .arg(&src),
    );
    assert!(
        out.status.success(),
        "{}: the run harness does not build ({flags:?}):\n{}",
        sketch.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = match block {
        Some(block) => bake_executable(&exe, block),
        None => exe,
    };
    let out = Command::new(&exe).arg(error.to_string()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: the run harness failed:\n{stdout}", sketch.name);
    let mut run = SketchRun { log: String::new(), records: Vec::new() };
    for line in stdout.lines() {
        match line.strip_prefix("record: ") {
            Some(r) => run.records.push(r.to_string()),
            None => {
                run.log.push_str(line);
                run.log.push('\n');
            }
        }
    }
    run
}

/// A copy of the executable `exe` with its one unbaked config block replaced by `block`, as
/// `otaforge bake --image` does to a built image.
fn bake_executable(exe: &Path, block: &[u8]) -> PathBuf {
    let mut bytes = std::fs::read(exe).unwrap();
    let unbaked = config_block::unbaked_block();
    assert_eq!(block.len(), unbaked.len());
    let found: Vec<usize> = (0..=bytes.len() - unbaked.len())
        .filter(|&i| {
            bytes[i..i + 16] == config_block::MAGIC[..] && bytes[i..i + unbaked.len()] == unbaked[..]
        })
        .collect();
    assert_eq!(found.len(), 1, "the executable must hold the unbaked block once");
    bytes[found[0]..found[0] + block.len()].copy_from_slice(block);
    let baked = exe.with_extension("baked");
    std::fs::write(&baked, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&baked, std::fs::Permissions::from_mode(0o755)).unwrap();
    baked
}

/// Two projects' signing keys, made once: `[ESP8266, ESP32]` of project 0, then of project 1.
fn test_keys() -> &'static [PublicKey; 4] {
    static KEYS: OnceLock<[PublicKey; 4]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || {
            let dir = tempfile::tempdir().unwrap();
            let keys = signing::generate(dir.path(), &Family::ALL, false).expect("signing keys");
            Family::ALL.map(|f| keys.current(f).expect("a key of each family").public())
        };
        let [a, b] = make();
        let [c, d] = make();
        [a, b, c, d]
    })
}

/// The sketch's family key of project `project` (0 or 1).
fn key_for(sketch: &Sketch, project: usize) -> &'static PublicKey {
    let family = if sketch.define == "ESP8266" { 0 } else { 1 };
    &test_keys()[2 * project + family]
}

/// The core's UPDATE_ERROR_SIGN.
fn sign_error(sketch: &Sketch) -> i32 {
    if sketch.define == "ESP8266" { 12 } else { 14 }
}

/// Build flags with which the sketch can check signatures (ESP32: the Update library built with
/// UPDATE_SIGN, on the stubs' default core, 3.3.8).
fn signing_flags(sketch: &Sketch) -> &'static [&'static str] {
    if sketch.define == "ESP8266" { &[] } else { &["-DUPDATE_SIGN"] }
}

/// ota_config.h as `otaforge bake --sketch` writes it, with `key` compiled in the way
/// ota_config.h.example shows (the header `otaforge key export --c-header` writes).
fn ota_config_with_key(key: &PublicKey) -> (String, (&'static str, String)) {
    let array = match key.family {
        Family::Esp8266 => "OTAFORGE_SIGNING_KEY_ESP8266_PEM",
        Family::Esp32 => "OTAFORGE_SIGNING_KEY_ESP32_PEM",
    };
    let header = source::ota_config_h(&plain_settings(), &Default::default()).unwrap()
        + &format!("#include \"otaforge_signing_key.h\"\n#define OTA_SIGNING_KEY_PEM {array}\n");
    (header, ("otaforge_signing_key.h", key.to_c_header()))
}

/// What the stubs record when the sketch installs a check with `key` (as the verifier got it).
fn installed_with(sketch: &Sketch, key: &str) -> Vec<String> {
    if sketch.define == "ESP8266" {
        vec![key.to_string(), "verifier key=1".into(), "update hash=1 verifier=1".into()]
    } else {
        vec![key.to_string(), "update verifier=1".into()]
    }
}

#[test]
fn sketches_check_updates_against_the_key_baked_into_the_config_block() {
    for sketch in SKETCHES {
        let text = sketch_text(sketch);
        assert!(function_source(&text, "void setup()").contains("setUpSignedUpdates();"), "{}", sketch.name);

        let key = key_for(sketch, 0);
        let baked = BakedSettings { signing_key: key.spki_der.clone(), ..plain_settings() };
        let block = baked.encode().unwrap();
        // Another project's key compiled in: the baked one wins.
        let (ota_config_h, key_h) = ota_config_with_key(key_for(sketch, 1));
        let run = run_sketch(
            sketch,
            &ota_config_h,
            &[key_h],
            Some(&block),
            signing_flags(sketch),
            sign_error(sketch),
        );

        let der = hex::encode(&key.spki_der);
        let made = if sketch.define == "ESP8266" {
            format!("public-key der {der}")
        } else {
            format!("ecdsa-verifier hash=0 {der}") // HASH_SHA256
        };
        assert_eq!(run.records, installed_with(sketch, &made), "{}:\n{}", sketch.name, run.log);
        assert!(
            run.log.contains(&format!(
                "[otaforge] update signatures: key baked into the config block ({} bytes, DER); every update must be signed by it",
                key.spki_der.len()
            )),
            "{}:\n{}",
            sketch.name,
            run.log
        );
        assert!(
            run.log.contains(&format!(
                "[otaforge] update refused: the signature does not match this device's signing key (UPDATE_ERROR_SIGN {})",
                sign_error(sketch)
            )),
            "{}:\n{}",
            sketch.name,
            run.log
        );
    }
}

#[test]
fn sketches_without_a_key_install_no_signature_check_and_say_so() {
    let baked_without_key = plain_settings().encode().unwrap();
    for sketch in SKETCHES {
        let ota_config_h = source::ota_config_h(&plain_settings(), &Default::default()).unwrap();
        for block in [None, Some(&baked_without_key[..])] {
            let run = run_sketch(sketch, &ota_config_h, &[], block, signing_flags(sketch), 0);
            let nothing =
                if sketch.define == "ESP8266" { "update hash=0 verifier=0" } else { "update verifier=0" };
            assert_eq!(run.records, [nothing], "{} (baked: {}):\n{}", sketch.name, block.is_some(), run.log);
            assert!(
                run.log.contains(
                    "[otaforge] update signatures: no key configured, so updates are NOT signature-checked"
                ),
                "{}:\n{}",
                sketch.name,
                run.log
            );
            assert!(run.log.contains("check: up to date"), "{}:\n{}", sketch.name, run.log);
        }
    }
}

#[test]
fn sketches_use_the_key_compiled_into_ota_config_h_when_the_block_has_none() {
    let baked_without_key = plain_settings().encode().unwrap();
    for sketch in SKETCHES {
        let key = key_for(sketch, 0);
        let (by_hand, key_h) = ota_config_with_key(key);
        // As `otaforge bake --sketch` writes it: both families' keys, the compiler picks its own.
        let keys = source::SketchKeys {
            esp8266: Some(key_for(&ESP8266, 0).to_pem()),
            esp32: Some(key_for(&ESP32, 0).to_pem()),
        };
        let generated = source::ota_config_h(&plain_settings(), &keys).unwrap();
        let pem = key.to_pem();
        let made = if sketch.define == "ESP8266" {
            format!("public-key pem {}", hex::encode(&pem))
        } else {
            // mbedtls_pk_parse_public_key takes PEM with its NUL counted.
            format!("ecdsa-verifier hash=0 {}00", hex::encode(&pem))
        };
        let headers = [(&by_hand, std::slice::from_ref(&key_h)), (&generated, &[][..])];
        for ((ota_config_h, extra), block) in
            headers.into_iter().flat_map(|h| [(h, None), (h, Some(&baked_without_key[..]))])
        {
            let run =
                run_sketch(sketch, ota_config_h, extra, block, signing_flags(sketch), sign_error(sketch));
            assert_eq!(
                run.records,
                installed_with(sketch, &made),
                "{} (baked: {}):\n{}",
                sketch.name,
                block.is_some(),
                run.log
            );
            assert!(
                run.log.contains(&format!(
                    "[otaforge] update signatures: key compiled in (OTA_SIGNING_KEY_PEM in ota_config.h, {} bytes of PEM)",
                    pem.len()
                )),
                "{}:\n{}",
                sketch.name,
                run.log
            );
        }
    }
}

#[test]
fn esp32_sketch_with_a_key_its_build_cannot_check_installs_no_update() {
    let key = key_for(&ESP32, 0);
    let block = BakedSettings { signing_key: key.spki_der.clone(), ..plain_settings() }.encode().unwrap();
    let ota_config_h = source::ota_config_h(&plain_settings(), &Default::default()).unwrap();
    // Without UPDATE_SIGN (no verifier classes), and on 3.3.7 (the API is there, but begin() drops
    // the verifier).
    for flags in [&[][..], &["-DUPDATE_SIGN", "-DHOSTCHECK_ESP_ARDUINO_VERSION_PATCH=7"][..]] {
        let run = run_sketch(&ESP32, &ota_config_h, &[], Some(&block), flags, 0);
        assert!(
            run.records.is_empty(),
            "{flags:?}: no verifier and no update: {:?}\n{}",
            run.records,
            run.log
        );
        assert!(
            run.log.contains(&format!(
                "[otaforge] update signatures: key baked into the config block ({} bytes, DER); but this build",
                key.spki_der.len()
            )) && run.log.contains("cannot check signatures, so NO update is installed"),
            "{flags:?}:\n{}",
            run.log
        );
        assert!(run.log.contains("[otaforge] check: skipped:"), "{flags:?}:\n{}", run.log);
    }
}

#[test]
fn esp32_builds_compile_the_cores_signature_check_in() {
    // The Arduino IDE and arduino-cli pass build_opt.h to every file of the build, the core's
    // Update library included; without UPDATE_SIGN it has no verifier and the sketch refuses
    // every update once a key is baked (see esp32_sketch_with_a_key_its_build_cannot_check...).
    let opt = std::fs::read_to_string(firmware_dir().join(ESP32.dir).join("build_opt.h")).unwrap();
    assert_eq!(opt.split_whitespace().collect::<Vec<_>>(), ["-DUPDATE_SIGN"], "{opt}");
    assert!(!firmware_dir().join(ESP8266.dir).join("build_opt.h").exists());
    // PlatformIO reads platformio.ini instead: every ESP32 environment extends esp32_common.
    let ini = std::fs::read_to_string(firmware_dir().join("platformio.ini")).unwrap();
    let section = ini.split("[esp32_common]").nth(1).unwrap().split("\n[").next().unwrap();
    assert!(section.lines().any(|l| l.trim() == "build_flags = -DUPDATE_SIGN"), "{section}");
    for env in ini.split("\n[env:").skip(1) {
        let name = env.lines().next().unwrap();
        if name.contains("esp32") {
            assert!(env.contains("extends = esp32_common"), "{name}");
        }
    }
}
