//! The virtual device on a pty, held against independent flashers: esptool (PyPI) for the
//! ESP8266, the espflash library for the ESP32-C3, a host written frame by frame, and the
//! `otaforge sim serial` command; and OTA Forge's own flasher with esptool's ESP8266 stub.

mod cli;
mod esp8266_stub;
mod espflash_c3;
mod esptool;
mod frames;

use std::path::Path;
use std::time::Duration;

use otaforge_sim::serial::{Chip, Faults, SimOptions, VirtualSerialDevice};

const MAC: [u8; 6] = [0x18, 0xFE, 0x34, 0xA1, 0xB2, 0xC3];

const MINUTE: Duration = Duration::from_secs(60);

fn esp8266(dir: &Path, faults: Faults) -> VirtualSerialDevice {
    VirtualSerialDevice::spawn(SimOptions {
        chip: Chip::Esp8266,
        flash_file: Some(dir.join("flash.bin")),
        mac: Some(MAC),
        faults,
        ..SimOptions::default()
    })
    .unwrap()
}

fn esp32c3(dir: &Path) -> VirtualSerialDevice {
    VirtualSerialDevice::spawn(SimOptions {
        chip: Chip::Esp32c3,
        flash_file: Some(dir.join("c3.bin")),
        mac: Some([0x7C, 0xDF, 0xA1, 0x01, 0x02, 0x03]),
        ..SimOptions::default()
    })
    .unwrap()
}

fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Half random, half repetitive, so compression does something.
            if i % 4096 < 2048 { x as u8 } else { (i / 64) as u8 }
        })
        .collect()
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}
