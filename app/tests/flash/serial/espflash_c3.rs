//! The espflash 4.7 library against the virtual ESP32-C3, with and without its stub.

use std::time::Duration;

use espflash::connection::{Connection, ResetAfterOperation, ResetBeforeOperation};
use espflash::flasher::Flasher;
use espflash::target::{Chip as EspChip, DefaultProgressCallback};
use otaforge_sim::serial::{DeviceState, VirtualSerialDevice, frame::op};

use super::{esp32c3, pseudo_random};
use crate::support;

/// espflash on the ESP32-C3 over a pty: no reset lines; stay in the stub afterwards so the same
/// session can read back.
fn espflash_connect(dev: &VirtualSerialDevice, use_stub: bool, after: ResetAfterOperation) -> Flasher {
    let port = serialport::new(dev.pty_path().to_string_lossy(), 115_200)
        .timeout(Duration::from_secs(3))
        .open_native()
        .expect("open the pty");
    let info =
        serialport::UsbPortInfo { vid: 0, pid: 0, serial_number: None, manufacturer: None, product: None };
    let conn = Connection::new(port, info, after, ResetBeforeOperation::NoReset, 115_200);
    Flasher::connect(conn, use_stub, true, false, Some(EspChip::Esp32c3), None).expect("espflash connects")
}

#[test]
fn espflash_writes_checks_and_reads_back_an_esp32c3_with_its_stub() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp32c3(dir.path());
    let mut flasher = espflash_connect(&dev, true, ResetAfterOperation::NoResetNoStub);
    let info = flasher.device_info().unwrap();
    assert_eq!(info.chip, EspChip::Esp32c3);
    assert_eq!(info.revision, Some((0, 4)));
    assert_eq!(info.mac_address.as_deref(), Some("7c:df:a1:01:02:03"));
    assert_eq!(info.flash_size, espflash::flasher::FlashSize::_4Mb);
    assert_eq!(dev.status().state, DeviceState::Stub);

    let image = pseudo_random(1 << 20, 5);
    flasher.write_bin_to_flash(0x10000, &image, &mut DefaultProgressCallback).unwrap();
    let flash = std::fs::read(dev.flash_path()).unwrap();
    assert_eq!(&flash[0x10000..0x10000 + image.len()], &image[..]);
    assert!(flash[..0x10000].iter().all(|&b| b == 0xFF));

    let md5 = flasher.checksum_md5(0x10000, image.len() as u32).unwrap();
    assert_eq!(format!("{md5:032x}"), support::md5_hex(&image));

    let back = dir.path().join("back.bin");
    flasher.read_flash(0x10000, image.len() as u32, 0x1000, 64, back.clone()).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), image);

    flasher.change_baud(921_600).unwrap();
    assert_eq!(dev.status().state, DeviceState::Stub);
    let md5 = flasher.checksum_md5(0x10000, 0x1000).unwrap();
    assert_eq!(format!("{md5:032x}"), support::md5_hex(&image[..0x1000]));
    assert_eq!(dev.status().baud, 921_600);
}

#[test]
fn espflash_writes_an_esp32c3_through_its_rom() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp32c3(dir.path());
    let mut flasher = espflash_connect(&dev, false, ResetAfterOperation::NoReset);
    assert_eq!(dev.status().state, DeviceState::Rom);
    let image = pseudo_random(300_000, 6);
    flasher.write_bin_to_flash(0x10000, &image, &mut DefaultProgressCallback).unwrap();
    assert_eq!(&dev.flash_contents()[0x10000..0x10000 + image.len()], &image[..]);
    // The ROM answers MD5 in hex; espflash reads it either way.
    let md5 = flasher.checksum_md5(0x10000, image.len() as u32).unwrap();
    assert_eq!(format!("{md5:032x}"), support::md5_hex(&image));
    assert!(!dev.status().commands.contains(&op::MEM_END), "no stub was uploaded");
    // The C3 ROM (unlike the ESP8266's) changes baud rate too.
    flasher.change_baud(460_800).unwrap();
    let md5 = flasher.checksum_md5(0x10000, 0x1000).unwrap();
    assert_eq!(format!("{md5:032x}"), support::md5_hex(&image[..0x1000]));
    assert_eq!(dev.status().baud, 460_800);
    assert_eq!(dev.status().state, DeviceState::Rom);
}
