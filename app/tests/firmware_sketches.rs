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
//! accept a block the app baked and refuse a damaged one.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use otaforge::firmware::config_block::{self, DeviceSettings};
use otaforge::firmware::source;
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
}

const ESP8266: Sketch = Sketch {
    name: "otaforge_esp8266",
    dir: "esp8266/otaforge_esp8266",
    define: "ESP8266",
    stubs: "host-check/esp8266",
    // nodemcu (GPIO2), generic (GPIO1, the TX pin the sketch must leave alone), none.
    leds: &["", "2", "1"],
};

const ESP32: Sketch = Sketch {
    name: "otaforge_esp32",
    dir: "esp32/otaforge_esp32",
    define: "ESP32",
    stubs: "host-check/esp32",
    leds: &["", "8"],
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
fn plain_settings() -> DeviceSettings {
    DeviceSettings {
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
    }
}

/// Awkward settings: a channel, an IP host, small buffers, and text C would misread unescaped.
fn awkward_settings() -> DeviceSettings {
    DeviceSettings {
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
    }
}

/// A temporary folder holding the sketch as `<name>.cpp` (what the Arduino builder compiles),
/// the committed config-block header and, when given, `ota_config.h`.
fn stage(sketch: &Sketch, ota_config_h: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = firmware_dir().join(sketch.dir);
    std::fs::copy(src.join(format!("{}.ino", sketch.name)), dir.path().join(format!("{}.cpp", sketch.name)))
        .unwrap();
    std::fs::copy(src.join(source::CONFIG_BLOCK_H), dir.path().join(source::CONFIG_BLOCK_H)).unwrap();
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

/// Syntax-only with every LED variant, then one full compile to an object at -O2.
fn check_all_variants(sketch: &Sketch, dir: &Path, what: &str) {
    for led in sketch.leds {
        let mut extra = vec!["-fsyntax-only".to_string()];
        if !led.is_empty() {
            extra.push(format!("-DHOSTCHECK_LED_BUILTIN={led}"));
        }
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
fn sketches_pass_the_host_check_with_generated_settings() {
    for sketch in SKETCHES {
        for (what, settings) in
            [("plain settings", plain_settings()), ("awkward settings", awkward_settings())]
        {
            let header = source::ota_config_h(&settings).expect("valid settings");
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
        let header = source::ota_config_h(&plain_settings()).unwrap();
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
        let text =
            std::fs::read_to_string(firmware_dir().join(sketch.dir).join(format!("{}.ino", sketch.name)))
                .unwrap();
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

    for sketch in SKETCHES {
        // A fresh copy of the sketch folder, as a user would have it: the .ino, nothing generated.
        let folder = tempfile::tempdir().unwrap();
        let sketch_dir = folder.path().join(sketch.name);
        std::fs::create_dir(&sketch_dir).unwrap();
        let ino = format!("{}.ino", sketch.name);
        std::fs::copy(firmware_dir().join(sketch.dir).join(&ino), sketch_dir.join(&ino)).unwrap();

        let (out, stdout, err) =
            run(otaforge(project.path()).arg("bake").arg("--sketch").arg(&sketch_dir).args([
                "--version",
                "3.1.0",
                "--device-name",
                "hall",
                "--wifi-ssid",
                "HomeNet",
                "--wifi-password",
                "secret",
                "--tls-rx",
                "1024",
            ]));
        assert!(out.status.success(), "bake --sketch: {err}");
        assert!(stdout.contains(source::OTA_CONFIG_H), "{stdout}");
        let ota_config_h = std::fs::read_to_string(sketch_dir.join(source::OTA_CONFIG_H)).unwrap();
        assert!(ota_config_h.contains("#define OTA_HOST \"ota.test\""), "{ota_config_h}");
        let block_h = std::fs::read_to_string(sketch_dir.join(source::CONFIG_BLOCK_H)).unwrap();
        assert_eq!(block_h, config_block::c_header());

        // Compile what bake wrote, exactly as it sits in the sketch folder.
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(sketch_dir.join(&ino), dir.path().join(format!("{}.cpp", sketch.name))).unwrap();
        for file in [source::OTA_CONFIG_H, source::CONFIG_BLOCK_H] {
            std::fs::copy(sketch_dir.join(file), dir.path().join(file)).unwrap();
        }
        check_all_variants(sketch, dir.path(), "otaforge bake --sketch");
    }
}
