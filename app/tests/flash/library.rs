//! The flasher (library) against virtual devices on real ptys: what lands in the simulated flash
//! is the image, byte for byte, for both chip families.

use std::time::{Duration, Instant};

use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_flash::{self as flash, Cancel, FlashRequest, FlashUpdate, Phase, StubSource, Verification};
use otaforge_sim::serial::{self as sim, SimOptions, VirtualSerialDevice};

fn device(chip: sim::Chip) -> VirtualSerialDevice {
    VirtualSerialDevice::spawn(SimOptions { chip, ..SimOptions::default() }).expect("virtual device starts")
}

fn port(d: &VirtualSerialDevice) -> String {
    d.pty_path().display().to_string()
}

/// Through the ROM alone (the stub path: `serial::esp8266_stub`).
#[test]
fn esp8266_image_lands_at_zero_byte_for_byte() {
    let dev = device(sim::Chip::Esp8266);
    let image = ImageBuilder::arduino_esp8266().target_size(300 * 1024).seed(7).version("1.2.3").build();
    let mut req = FlashRequest::new(port(&dev), image.clone());
    req.connect_timeout = Duration::from_secs(5);
    req.stub = StubSource::None;
    let mut updates = Vec::new();
    let started = Instant::now();
    let outcome = flash::flash(&req, &Cancel::new(), &mut |u| updates.push(u)).expect("flash works");
    eprintln!("ESP8266: {} in {:?}", outcome.summary(), started.elapsed());
    let flash = dev.flash_contents();
    assert_eq!(&flash[..image.len()], &image[..], "the simulated flash holds the image at 0x0");
    assert_eq!(outcome.board.chip, Chip::Esp8266);
    assert_eq!(outcome.verification, Verification::ServerWillConfirm);
    assert!(
        outcome.board.mac.as_deref().is_some_and(|m| m.starts_with("18:FE:34:")),
        "{:?}",
        outcome.board.mac
    );
    assert_eq!(outcome.board.flash_size, Some(4 << 20));
    // Progress is in image bytes and ends at the total.
    let last =
        updates.iter().rev().find_map(|u| if let FlashUpdate::Progress(p) = u { Some(*p) } else { None });
    let last = last.expect("progress was reported");
    assert_eq!((last.written, last.total), (image.len() as u64, image.len() as u64));
    for phase in [Phase::Connect, Phase::Erase, Phase::Write, Phase::Reset] {
        assert!(updates.contains(&FlashUpdate::Phase(phase)), "{phase:?} reported");
    }
    assert_eq!(dev.status().state, sim::DeviceState::RunningFirmware, "the new firmware runs");
}

#[test]
fn esp32c3_app_lands_at_0x10000_byte_for_byte() {
    let dev = device(sim::Chip::Esp32c3);
    let image =
        ImageBuilder::esp32_app(Chip::Esp32C3).target_size(200 * 1024).seed(3).version("2.0.0").build();
    let mut req = FlashRequest::new(port(&dev), image.clone());
    req.connect_timeout = Duration::from_secs(5);
    let mut updates = Vec::new();
    let outcome = flash::flash(&req, &Cancel::new(), &mut |u| updates.push(u)).expect("flash works");
    eprintln!("ESP32-C3: {}", outcome.summary());
    for u in &updates {
        if !matches!(u, FlashUpdate::Progress(_)) {
            eprintln!("  {u:?}");
        }
    }
    let flash = dev.flash_contents();
    assert_eq!(&flash[0x10000..0x10000 + image.len()], &image[..], "the app is at 0x10000");
    assert_eq!(outcome.board.chip, Chip::Esp32C3);
    assert_eq!(outcome.verification, Verification::Verified);
    assert!(updates.contains(&FlashUpdate::Phase(Phase::Verify)));
    let st = dev.status();
    eprintln!("cmds tail: {:02x?} baud {}", &st.commands[st.commands.len().saturating_sub(20)..], st.baud);
    assert_eq!(dev.status().state, sim::DeviceState::RunningFirmware, "the new firmware runs");
}

#[test]
fn identify_names_the_board_and_writes_nothing() {
    for (chip, ours) in [(sim::Chip::Esp8266, Chip::Esp8266), (sim::Chip::Esp32c3, Chip::Esp32C3)] {
        let dev = VirtualSerialDevice::spawn(SimOptions {
            chip,
            mac: Some([0x18, 0xFE, 0x34, 1, 2, 3]),
            flash_size: 2 << 20,
            ..SimOptions::default()
        })
        .unwrap();
        let board =
            flash::identify(&port(&dev), Duration::from_secs(5), &Cancel::new(), &mut |_| {}).unwrap();
        assert_eq!(board.chip, ours);
        assert_eq!(board.mac.as_deref(), Some("18:FE:34:01:02:03"), "{chip:?}");
        assert_eq!(board.flash_size, Some(2 << 20), "{chip:?}");
        assert!(dev.flash_contents().iter().all(|&b| b == 0xFF), "nothing written");
        let commands = dev.status().commands;
        for op in [sim::frame::op::FLASH_DATA, sim::frame::op::FLASH_DEFL_DATA, sim::frame::op::MEM_BEGIN] {
            assert!(!commands.contains(&op), "{chip:?}: no {op:#x} (no write, no stub)");
        }
        // The board is still in its bootloader: it can be flashed next.
        let image = if ours.is_esp8266() {
            ImageBuilder::arduino_esp8266().target_size(16 * 1024).build()
        } else {
            ImageBuilder::esp32_app(ours).target_size(16 * 1024).build()
        };
        let mut req = FlashRequest::new(port(&dev), image);
        req.connect_timeout = Duration::from_secs(5);
        flash::flash(&req, &Cancel::new(), &mut |_| {}).expect("flash after identify");
    }
}

#[test]
fn erase_all_clears_the_rest_of_the_flash() {
    let dev = device(sim::Chip::Esp32c3);
    // Something written earlier, far from the app.
    let mut req = FlashRequest::new(port(&dev), vec![0x5A; 8192]);
    req.offset = Some(0x20_0000);
    req.connect_timeout = Duration::from_secs(5);
    flash::flash(&req, &Cancel::new(), &mut |_| {}).unwrap();
    assert_eq!(dev.flash_contents()[0x20_0000], 0x5A);
    crate::reset_to_bootloader(&dev);

    let image = ImageBuilder::esp32_app(Chip::Esp32C3).target_size(64 * 1024).build();
    let mut req = FlashRequest::new(port(&dev), image.clone());
    req.erase_all = true;
    req.connect_timeout = Duration::from_secs(5);
    let mut phases = Vec::new();
    flash::flash(&req, &Cancel::new(), &mut |u| {
        if let FlashUpdate::Phase(p) = u {
            phases.push(p)
        }
    })
    .unwrap();
    let flash = dev.flash_contents();
    assert!(phases.contains(&Phase::Erase));
    assert!(flash[0x20_0000..0x20_2000].iter().all(|&b| b == 0xFF), "erased");
    assert_eq!(&flash[0x10000..0x10000 + image.len()], &image[..]);
}
