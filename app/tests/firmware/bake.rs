//! Baking without a compiler, checked by independent readers: esptool (PyPI) reads the patched
//! images, the firmware's own C header reads the baked block, the host C++ compiler compiles the
//! generated ota_config.h, and the CLI does it all as a user would.

mod nvs;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::{Chip, ImageBuilder, source};
use support::{Project, otaforge, run};

fn settings(ca_pem: &str) -> BakedSettings {
    BakedSettings {
        host: "ota.test".into(),
        port: 3443,
        path: "/update".into(),
        channel: "beta".into(),
        version: "2.1.0".into(),
        device_name: "porch \"light\"".into(),
        wifi_ssid: "home".into(),
        wifi_password: "pa\\ss?".into(),
        ca_pem: ca_pem.into(),
        poll_interval_s: 600,
        tls_rx_buffer: 512,
        tls_tx_buffer: 512,
        baked_at: 1_790_000_000,
        signing_key: Vec::new(),
    }
}

/// A reference-firmware-like image: built, with an unbaked config block reserved.
fn reference_image(chip: Chip) -> Vec<u8> {
    let mut img = ImageBuilder::for_chip(chip).target_size(250_000).build();
    config_block::reserve(&mut img).unwrap();
    img
}

/// esptool from PyPI, installed by the README's test command (scripts/test) into a venv.
fn esptool() -> PathBuf {
    if let Some(p) = std::env::var_os("ESPTOOL") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/esptool-venv/bin/esptool");
    assert!(
        venv.is_file(),
        "esptool is missing: run scripts/test (it installs esptool from PyPI into target/esptool-venv)"
    );
    venv
}

fn image_info(chip: &str, file: &Path) -> String {
    let out = Command::new(esptool()).args(["--chip", chip, "image-info"]).arg(file).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "esptool image-info failed:\n{text}");
    text
}

#[test]
fn esptool_accepts_every_baked_image() {
    let p = Project::new();
    let s = settings(&p.ca_pem);
    for chip in [Chip::Esp8266, Chip::Esp32, Chip::Esp32C3, Chip::Esp32S3] {
        let baked = config_block::bake(&reference_image(chip), &s).unwrap();
        let file = p.path().join(format!("{}.bin", chip.slug()));
        std::fs::write(&file, &baked).unwrap();
        if chip.is_esp8266() {
            // The file starts with eboot, which the ROM boots.
            assert!(image_info("esp8266", &file).contains("(valid)"));
            // The sketch at 0x1000: its checksum is computed, as the core's elf2bin does, with the
            // length/CRC words at 0x1010 still zero (the core fills them in afterwards).
            let mut sketch = baked[0x1000..].to_vec();
            sketch[0x10..0x18].fill(0);
            let sketch_file = p.path().join("sketch.bin");
            std::fs::write(&sketch_file, &sketch).unwrap();
            let text = image_info("esp8266", &sketch_file);
            assert!(
                text.contains("Checksum:") && text.contains("(valid)") && !text.contains("invalid"),
                "{text}"
            );
        } else {
            let text = image_info(chip.slug(), &file);
            assert!(!text.contains("invalid"), "{chip:?}:\n{text}");
            assert!(
                text.contains("Validation hash") && text.matches("(valid)").count() >= 2,
                "{chip:?}:\n{text}"
            );
        }
        assert_eq!(config_block::read(&baked).unwrap(), Some(s.clone()));
    }
}

#[test]
fn the_firmwares_c_header_reads_what_the_app_baked() {
    let p = Project::new();
    let s = settings(&p.ca_pem);
    let baked = config_block::bake(&reference_image(Chip::Esp8266), &s).unwrap();
    let at = config_block::locate(&baked).unwrap();
    let dir = p.path();
    std::fs::write(dir.join("baked.blk"), &baked[at..at + config_block::BLOCK_LEN]).unwrap();
    std::fs::write(dir.join("unbaked.blk"), config_block::unbaked_block()).unwrap();
    let mut corrupt = baked[at..at + config_block::BLOCK_LEN].to_vec();
    corrupt[100] ^= 1;
    std::fs::write(dir.join("corrupt.blk"), corrupt).unwrap();
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("../device-firmware/common");
    std::fs::write(
        dir.join("read.c"),
        r#"#include <stdio.h>
#include <stdlib.h>
#include "otaforge_config_block.h"
int main(int argc, char **argv) {
    static otaforge_config_block_t b;
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (argc < 2 || !f || fread(&b, 1, sizeof b, f) != sizeof b) return 2;
    if (!otaforge_config_is_baked(&b)) { puts("defaults"); return 0; }
    printf("%s|%u|%s|%s|%s|%s|%u|%u|%u|%u\n", b.host, b.port, b.path, b.channel, b.version, b.device_name,
           (unsigned)b.poll_interval_s, (unsigned)b.tls_rx_buffer, (unsigned)b.ca_len, (unsigned)b.baked_at);
    fputs(b.ca_pem, stdout);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.join("read");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&header)
        .arg(dir.join("read.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success(), "the config-block header does not compile as C11");
    let read =
        |f: &str| String::from_utf8(Command::new(&exe).arg(dir.join(f)).output().unwrap().stdout).unwrap();
    let out = read("baked.blk");
    let (first, pem) = out.split_once('\n').unwrap();
    assert_eq!(
        first,
        format!("ota.test|3443|/update|beta|2.1.0|porch \"light\"|600|512|{}|1790000000", p.ca_pem.len())
    );
    assert_eq!(pem, p.ca_pem, "the CA reads back byte for byte");
    assert_eq!(read("unbaked.blk").trim(), "defaults");
    assert_eq!(read("corrupt.blk").trim(), "defaults", "a damaged block falls back to the defaults");
}

#[test]
fn ota_config_h_compiles_and_holds_the_ca_byte_for_byte() {
    let p = Project::new();
    let s = settings(&p.ca_pem);
    let dir = p.path();
    std::fs::write(dir.join("ota_config.h"), source::ota_config_h(&s, &Default::default()).unwrap()).unwrap();
    std::fs::write(
        dir.join("main.cpp"),
        r#"#include <cstdio>
#include "ota_config.h"
int main() {
    std::printf("%s|%d|%s|%s|%s|%s|%d|%d|%d|%s|%s|%ld\n", OTA_HOST, OTA_PORT, OTA_PATH, OTA_CHANNEL, OTA_VERSION,
                OTA_DEVICE_NAME, OTA_POLL_INTERVAL_S, OTA_TLS_RX_BUFFER, OTA_TLS_TX_BUFFER, OTA_WIFI_SSID,
                OTA_WIFI_PASSWORD, (long)OTA_BUILD_TIME);
    std::fputs(OTA_CA_PEM, stdout);
}
"#,
    )
    .unwrap();
    let exe = dir.join("main");
    let status = Command::new("c++")
        .args(["-std=gnu++17", "-Wall", "-Werror", "-I"])
        .arg(dir)
        .arg(dir.join("main.cpp"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap();
    assert!(status.success());
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let (first, pem) = out.split_once('\n').unwrap();
    assert_eq!(first, "ota.test|3443|/update|beta|2.1.0|porch \"light\"|600|512|512|home|pa\\ss?|1790000000");
    assert_eq!(pem, p.ca_pem);
}

#[test]
fn bake_cli_from_image_and_from_sketch() {
    let p = Project::new();
    let dir = p.path();
    let input = dir.join("reference.bin");
    std::fs::write(&input, reference_image(Chip::Esp8266)).unwrap();
    let out = dir.join("kitchen.bin");
    let (o, stdout, stderr) = run(otaforge(dir)
        .args(["bake", "--image"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .args(["--device-name", "kitchen", "--version", "1.0.0", "--host", "127.0.0.1"]));
    assert!(o.status.success(), "{stdout}{stderr}");
    let (o, info, _) = run(otaforge(dir).arg("inspect").arg(&out));
    assert!(o.status.success(), "{info}");
    assert!(info.contains("baked: 127.0.0.1:3443/update version 1.0.0 name \"kitchen\""), "{info}");
    assert!(info.contains("Checksum:   valid"), "{info}");
    // An image holding one device's name is for flashing that device, never for publishing.
    let (o, _, stderr) = run(otaforge(dir).arg("publish").arg(&out).args(["--version", "1.0.0"]));
    assert!(!o.status.success() && stderr.contains("device name \"kitchen\""), "{stderr}");
    let generic = dir.join("generic.bin");
    let (o, stdout, stderr) = run(otaforge(dir)
        .args(["bake", "--image"])
        .arg(&input)
        .arg("--out")
        .arg(&generic)
        .args(["--version", "1.0.0", "--host", "127.0.0.1"]));
    assert!(o.status.success(), "{stdout}{stderr}");
    let (o, _, stderr) = run(otaforge(dir).arg("publish").arg(&generic));
    assert!(o.status.success(), "publishing the generic image: {stderr}");

    // A host the server certificate does not cover is refused before anything is written.
    let (o, _, stderr) = run(otaforge(dir)
        .args(["bake", "--image"])
        .arg(&input)
        .arg("--out")
        .arg(dir.join("x.bin"))
        .args(["--host", "elsewhere.test", "--version", "1.0.0"]));
    assert!(!o.status.success() && stderr.contains("does not cover"), "{stderr}");
    // An image without a config block, a name too long for the block.
    let plain = dir.join("plain.bin");
    std::fs::write(&plain, ImageBuilder::arduino_esp8266().target_size(50_000).build()).unwrap();
    let (o, _, stderr) = run(otaforge(dir)
        .args(["bake", "--image"])
        .arg(&plain)
        .arg("--out")
        .arg(dir.join("y.bin"))
        .args(["--version", "1.0.0"]));
    assert!(!o.status.success() && stderr.contains("no OTA Forge config block"), "{stderr}");
    let long = "n".repeat(40);
    let (o, _, stderr) = run(otaforge(dir)
        .args(["bake", "--image"])
        .arg(&input)
        .arg("--out")
        .arg(dir.join("z.bin"))
        .args(["--version", "1.0.0", "--device-name", &long]));
    assert!(!o.status.success() && stderr.contains("device_name is 40 bytes"), "{stderr}");
    for f in ["x.bin", "y.bin", "z.bin"] {
        assert!(!dir.join(f).exists(), "{f} written despite the error");
    }

    // From source: a sketch folder gets ota_config.h and the block header.
    let sketch = dir.join("mysketch");
    std::fs::create_dir(&sketch).unwrap();
    std::fs::write(sketch.join("mysketch.ino"), "void setup() {}\nvoid loop() {}\n").unwrap();
    let (o, stdout, stderr) = run(otaforge(dir).args(["bake", "--sketch"]).arg(&sketch).args([
        "--version",
        "1.2.0",
        "--wifi-ssid",
        "home",
        "--open-network",
    ]));
    assert!(o.status.success(), "{stdout}{stderr}");
    let h = std::fs::read_to_string(sketch.join("ota_config.h")).unwrap();
    assert!(h.contains("#define OTA_VERSION \"1.2.0\"") && h.contains(&p.ca_pem));
    assert_eq!(
        std::fs::read_to_string(sketch.join("otaforge_config_block.h")).unwrap(),
        config_block::c_header()
    );
    let (o, _, stderr) = run(otaforge(dir).args(["bake", "--sketch"]).arg(dir).args(["--version", "1.2.0"]));
    assert!(!o.status.success() && stderr.contains("not a sketch folder"), "{stderr}");
}

/// `sim reference-image` says what its output is good for: a virtual board, not a real one.
#[test]
fn the_cli_reference_image_says_it_runs_only_on_virtual_boards() {
    let p = Project::new();
    let out = p.path().join("ref.bin");
    let (o, stdout, stderr) = run(otaforge(p.path()).args(["sim", "reference-image", "--out"]).arg(&out));
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("only on OTA Forge's virtual boards") && stdout.contains("device-firmware/"),
        "{stdout}"
    );
    let image = std::fs::read(&out).unwrap();
    assert!(config_block::locate(&image).is_ok(), "the image has one config block to bake");
    // The file says so too: whoever inspects it later is told.
    let (o, stdout, stderr) = run(otaforge(p.path()).arg("inspect").arg(&out));
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Runs on:    virtual boards only"), "{stdout}");
    let (_, json, _) = run(otaforge(p.path()).args(["inspect", "--json"]).arg(&out));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["virtual_boards_only"], true);
    // A baked copy is no more real.
    let baked = p.path().join("baked.bin");
    let (o, _, stderr) = run(otaforge(p.path())
        .args(["bake", "--image"])
        .arg(&out)
        .arg("--out")
        .arg(&baked)
        .args(["--channel", "demo", "--version", "1.0.0"]));
    assert!(o.status.success(), "{stderr}");
    let (_, stdout, _) = run(otaforge(p.path()).arg("inspect").arg(&baked));
    assert!(stdout.contains("virtual boards only"), "{stdout}");
}
