//! esptool 5.6 against the virtual ESP8266: identify, write with and without the stub, read
//! back, verify, and what it sees when the device misbehaves on purpose.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use otaforge_sim::serial::{DeviceState, FailCommand, Faults, SimOptions, VirtualSerialDevice, frame::op};

use super::{MINUTE, esp8266, pseudo_random, write_tmp};
use crate::support;

/// esptool 5.6 from PyPI: CI installs it and sets ESPTOOL. Missing, the test fails (it must never
/// pass without having run).
pub(crate) fn esptool_path() -> PathBuf {
    match std::env::var_os("ESPTOOL") {
        Some(p) => PathBuf::from(p),
        None => panic!(
            "ESPTOOL is not set: these tests drive the virtual device with esptool 5.6 from PyPI. \
             Run scripts/test, or set ESPTOOL=/path/to/esptool (e.g. target/esptool-venv/bin/esptool)"
        ),
    }
}

/// Runs esptool against the device with no reset (a pty has no DTR/RTS) and a hard time limit,
/// so a hang fails the test. Returns (success, stdout + stderr).
fn esptool(dev: &VirtualSerialDevice, args: &[&str], limit: Duration) -> (bool, String) {
    let mut cmd = Command::new(esptool_path());
    cmd.arg("--port").arg(dev.pty_path()).args(["--before", "no-reset", "--after", "no-reset"]).args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().expect("start esptool");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("esptool {args:?} hung for {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    (status.success(), out)
}

#[test]
fn esptool_identifies_the_virtual_esp8266() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let (ok, out) = esptool(&dev, &["--no-stub", "chip-id"], MINUTE);
    assert!(ok, "{out}");
    assert!(out.contains("ESP8266EX"), "{out}");
    assert!(out.contains("18:fe:34:a1:b2:c3"), "{out}");
    // The chip id is MAC bytes 3..6 as the SDK's system_get_chip_id() reads them.
    assert!(out.to_lowercase().contains("0x00a1b2c3"), "{out}");

    let (ok, out) = esptool(&dev, &["flash-id"], MINUTE);
    assert!(ok, "{out}");
    assert!(out.contains("Stub flasher running"), "{out}");
    assert!(out.contains("Detected flash size: 4MB"), "{out}");
    assert!(out.contains("Manufacturer: ef"), "{out}");
    // esptool left the stub with a reboot into the ROM.
    assert_eq!(dev.status().state, DeviceState::Rom);
}

#[test]
fn esptool_flash_size_follows_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let dev = VirtualSerialDevice::spawn(SimOptions {
        flash_file: Some(dir.path().join("flash.bin")),
        flash_size: 1 << 20,
        ..SimOptions::default()
    })
    .unwrap();
    let (ok, out) = esptool(&dev, &["--no-stub", "flash-id"], MINUTE);
    assert!(ok, "{out}");
    assert!(out.contains("Detected flash size: 1MB"), "{out}");
    assert_eq!(std::fs::metadata(dev.flash_path()).unwrap().len(), 1 << 20);
}

#[test]
fn esptool_writes_reads_back_and_verifies_with_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let image = support::esp8266_image(300_000, 7);
    let img = dir.path().join("f.bin");
    std::fs::write(&img, &image).unwrap();
    let img = img.to_str().unwrap();

    let (ok, out) = esptool(&dev, &["write-flash", "0x0", img], MINUTE);
    assert!(ok, "{out}");
    assert!(out.contains("Hash of data verified"), "{out}");
    let flash = std::fs::read(dev.flash_path()).unwrap();
    assert_eq!(&flash[..image.len()], &image[..], "the flash file holds the image byte for byte");
    assert!(
        flash[image.len().next_multiple_of(0x1000)..].iter().all(|&b| b == 0xFF),
        "nothing else was written"
    );
    assert!(dev.status().commands.contains(&op::FLASH_DEFL_DATA), "the stub took compressed data");

    let back = dir.path().join("back.bin");
    let (ok, out) =
        esptool(&dev, &["read-flash", "0x0", &image.len().to_string(), back.to_str().unwrap()], MINUTE);
    assert!(ok, "{out}");
    assert_eq!(std::fs::read(&back).unwrap(), image);

    let (ok, out) = esptool(&dev, &["verify-flash", "0x0", img], MINUTE);
    assert!(ok, "{out}");
    assert!(out.contains("digest matched"), "{out}");

    // And verification does fail when the flash differs.
    let (ok, out) = esptool(&dev, &["verify-flash", "0x1000", img], MINUTE);
    assert!(!ok, "{out}");
    assert!(out.contains("Verification failed"), "{out}");
}

#[test]
fn esptool_writes_through_the_rom_without_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    // Something already in flash after the image: the ROM's erase-size bug would wipe it if the
    // host did not compensate, and the simulated ROM erases exactly as the real one does.
    let after = 0x50000;
    {
        let (ok, out) = esptool(
            &dev,
            &[
                "write-flash",
                &format!("{after:#x}"),
                write_tmp(dir.path(), "keep.bin", &[0x42; 0x1000]).as_str(),
            ],
            MINUTE,
        );
        assert!(ok, "{out}");
    }
    let image = support::esp8266_image(300_000, 9);
    let img = write_tmp(dir.path(), "f.bin", &image);
    let before = dev.status().commands.len();
    let (ok, out) = esptool(&dev, &["--no-stub", "write-flash", "0x0", &img], MINUTE);
    assert!(ok, "{out}");
    let ops = dev.status().commands[before..].to_vec();
    assert!(ops.contains(&op::FLASH_DATA), "{ops:x?}");
    assert!(!ops.contains(&op::MEM_END) && !ops.contains(&op::FLASH_DEFL_DATA), "no stub: {ops:x?}");
    let flash = dev.flash_contents();
    assert_eq!(&flash[..image.len()], &image[..]);
    assert_eq!(
        &flash[after..after + 0x1000],
        &[0x42; 0x1000][..],
        "the ROM erased only what it was asked to"
    );
    assert_eq!(std::fs::read(dev.flash_path()).unwrap(), flash);
    // verify-flash needs MD5, which only the stub has: esptool uploads it and checks.
    let (ok, out) = esptool(&dev, &["verify-flash", "0x0", &img], MINUTE);
    assert!(ok, "{out}");
}

#[test]
fn esptool_gives_up_when_the_device_stops_answering() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { stop_answering_after_blocks: Some(3), ..Faults::default() });
    let img = write_tmp(dir.path(), "f.bin", &support::esp8266_image(200_000, 1));
    let (ok, out) = esptool(&dev, &["--no-stub", "write-flash", "0x0", &img], Duration::from_secs(120));
    assert!(!ok, "{out}");
    assert!(
        ["Timed out", "No serial data received", "No more data to read"].iter().any(|m| out.contains(m)),
        "{out}"
    );
    assert_eq!(dev.status().state, DeviceState::Hung);
    assert_eq!(dev.status().flash_blocks, 3);
    // A reset brings it back.
    crate::reset_to_bootloader(&dev);
    let (ok, out) = esptool(&dev, &["--no-stub", "chip-id"], MINUTE);
    assert!(ok, "{out}");
}

#[test]
fn esptool_sees_the_device_unplugged_mid_write() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { close_after_blocks: Some(2), ..Faults::default() });
    let img = write_tmp(dir.path(), "f.bin", &support::esp8266_image(200_000, 2));
    let (ok, out) = esptool(&dev, &["write-flash", "0x0", &img], MINUTE);
    assert!(!ok, "{out}");
    assert_eq!(dev.status().state, DeviceState::Gone);
}

#[test]
fn esptool_reports_the_error_status_the_device_sends() {
    let dir = tempfile::tempdir().unwrap();
    let fail = FailCommand { op: op::FLASH_BEGIN, after: 0, code: None };
    let dev = esp8266(dir.path(), Faults { fail_command: Some(fail), ..Faults::default() });
    let img = write_tmp(dir.path(), "f.bin", &[0xAA; 0x2000]);
    let (ok, out) = esptool(&dev, &["--no-stub", "write-flash", "0x0", &img], MINUTE);
    assert!(!ok, "{out}");
    assert!(out.contains("Failed to enter flash download mode"), "{out}");
    assert!(out.contains("0106"), "ROM status 01, error 06: {out}");
}

#[test]
fn esptool_notices_a_device_that_is_another_chip() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { report_magic: Some(0x00F0_1D83), ..Faults::default() });
    let (ok, out) = esptool(&dev, &["--chip", "esp8266", "--no-stub", "chip-id"], MINUTE);
    assert!(!ok, "{out}");
    assert!(out.contains("ESP32"), "{out}");
}

#[test]
fn esptool_verification_catches_flash_that_does_not_keep_data() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { corrupt_writes: true, ..Faults::default() });
    let img = write_tmp(dir.path(), "f.bin", &support::esp8266_image(100_000, 3));
    let (ok, out) = esptool(&dev, &["write-flash", "0x0", &img], MINUTE);
    assert!(!ok, "{out}");
    assert!(out.contains("MD5") || out.contains("verif"), "{out}");
}

#[test]
fn throttling_moves_bytes_no_faster_than_the_baud_rate() {
    // A lower bound only (a slow machine cannot make it fail): 64 KB through the ROM at
    // 115200 baud is at least 65536 * 10 / 115200 = 5.7 s on the wire.
    let dir = tempfile::tempdir().unwrap();
    let dev = VirtualSerialDevice::spawn(SimOptions {
        flash_file: Some(dir.path().join("flash.bin")),
        throttle: true,
        ..SimOptions::default()
    })
    .unwrap();
    let img = write_tmp(dir.path(), "f.bin", &pseudo_random(0x10000, 4));
    let start = Instant::now();
    let (ok, out) = esptool(&dev, &["--no-stub", "write-flash", "0x0", &img], Duration::from_secs(120));
    assert!(ok, "{out}");
    assert!(start.elapsed() >= Duration::from_millis(5_700), "{:?}", start.elapsed());
}
