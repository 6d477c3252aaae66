//! A flash that goes wrong ends in the right diagnosis, in words, within seconds: no panic, no
//! hang. The faults come from virtual devices on real ptys (a board that stops answering, a
//! cable pulled mid-write, an error status, a board that reports another chip, flash that does
//! not keep what it is told) and from the port itself (missing, busy, silent).

use std::time::{Duration, Instant};

use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_flash::{self as flash, Cancel, FlashError, FlashRequest, FlashUpdate, StubSource};
use otaforge_sim::serial::{self as sim, Faults, SimOptions, VirtualSerialDevice};

fn device(chip: sim::Chip, faults: Faults) -> VirtualSerialDevice {
    VirtualSerialDevice::spawn(SimOptions { chip, faults, ..SimOptions::default() })
        .expect("virtual device starts")
}

fn esp8266_image() -> Vec<u8> {
    ImageBuilder::arduino_esp8266().target_size(256 * 1024).seed(11).build()
}

fn c3_image() -> Vec<u8> {
    ImageBuilder::esp32_app(Chip::Esp32C3).target_size(256 * 1024).seed(12).build()
}

/// Flashes and returns the error, the notes, and how long it took; fails if it worked or took
/// longer than `deadline`.
fn flash_fails(port: &str, image: Vec<u8>, deadline: Duration) -> (FlashError, Vec<String>, Duration) {
    let mut req = FlashRequest::new(port, image);
    req.connect_timeout = Duration::from_secs(2);
    // The ESP8266's ROM path (faults on the stub path: `serial::esp8266_stub`).
    req.stub = StubSource::None;
    let mut notes = Vec::new();
    let started = Instant::now();
    let result = flash::flash(&req, &Cancel::new(), &mut |u| {
        if let FlashUpdate::Note(n) = u {
            notes.push(n)
        }
    });
    let took = started.elapsed();
    let err = result.err().unwrap_or_else(|| panic!("the flash should fail"));
    assert!(took < deadline, "took {took:?} (deadline {deadline:?}): {err}");
    (err, notes, took)
}

fn untouched(dev: &VirtualSerialDevice) -> bool {
    dev.flash_contents().iter().all(|&b| b == 0xFF)
}

#[test]
fn esp8266_that_stops_answering_mid_write() {
    let dev =
        device(sim::Chip::Esp8266, Faults { stop_answering_after_blocks: Some(40), ..Faults::default() });
    let (err, notes, _) =
        flash_fails(&dev.pty_path().display().to_string(), esp8266_image(), Duration::from_secs(15));
    assert!(matches!(err, FlashError::StoppedAnswering { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("The board stopped answering while writing (40 KiB of 256 KiB written)"), "{text}");
    // It tried once more, slower, before giving this diagnosis.
    assert!(notes.iter().any(|n| n.contains("Trying again at 230400 baud")), "{notes:?}");
}

#[test]
fn esp32c3_that_stops_answering_mid_write() {
    let dev =
        device(sim::Chip::Esp32c3, Faults { stop_answering_after_blocks: Some(2), ..Faults::default() });
    let (err, _, _) = flash_fails(&dev.pty_path().display().to_string(), c3_image(), Duration::from_secs(25));
    assert!(matches!(err, FlashError::StoppedAnswering { .. }), "{err:?}");
    assert!(err.to_string().contains("stopped answering while writing"), "{err}");
}

#[test]
fn cable_pulled_mid_write() {
    for (chip, image) in [(sim::Chip::Esp8266, esp8266_image()), (sim::Chip::Esp32c3, c3_image())] {
        let dev = device(chip, Faults { close_after_blocks: Some(3), ..Faults::default() });
        let port = dev.pty_path().display().to_string();
        let (err, _, took) = flash_fails(&port, image, Duration::from_secs(5));
        assert!(matches!(err, FlashError::PortVanished { .. }), "{chip:?}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(&format!("The port {port} disappeared while writing")), "{text}");
        assert!(text.contains("unplugged"), "{text}");
        eprintln!("{chip:?}: vanished port diagnosed in {took:?}");
    }
}

#[test]
fn error_status_from_the_board() {
    let fail = sim::FailCommand { op: sim::frame::op::FLASH_DATA, after: 10, code: None };
    let dev = device(sim::Chip::Esp8266, Faults { fail_command: Some(fail), ..Faults::default() });
    let (err, _, _) =
        flash_fails(&dev.pty_path().display().to_string(), esp8266_image(), Duration::from_secs(5));
    assert!(matches!(err, FlashError::Refused { .. }), "{err:?}");
    assert!(err.to_string().starts_with("The board refused the FLASH_DATA command: "), "{err}");
}

#[test]
fn board_that_reports_another_chip_is_refused_before_writing() {
    // An ESP8266 that says it is an ESP32.
    let dev = device(sim::Chip::Esp8266, Faults { report_magic: Some(0x00F0_1D83), ..Faults::default() });
    let (err, _, _) =
        flash_fails(&dev.pty_path().display().to_string(), esp8266_image(), Duration::from_secs(5));
    assert_eq!(err, FlashError::WrongChip { image: Chip::Esp8266, board: Chip::Esp32 });
    assert!(err.to_string().contains("the board is an ESP32: nothing was written"), "{err}");
    assert!(untouched(&dev), "nothing was written");
    assert!(!dev.status().commands.contains(&sim::frame::op::FLASH_BEGIN), "no FLASH_BEGIN was sent");

    // An ESP32-C3 that says it is an ESP32-S3 (chip id 9).
    let dev = device(sim::Chip::Esp32c3, Faults { report_chip_id: Some(9), ..Faults::default() });
    let (err, _, _) = flash_fails(&dev.pty_path().display().to_string(), c3_image(), Duration::from_secs(5));
    assert_eq!(err, FlashError::WrongChip { image: Chip::Esp32C3, board: Chip::Esp32S3 });
    assert!(untouched(&dev));
}

#[test]
fn image_for_another_chip_is_refused_before_writing() {
    let dev = device(sim::Chip::Esp8266, Faults::default());
    let (err, _, _) = flash_fails(&dev.pty_path().display().to_string(), c3_image(), Duration::from_secs(5));
    assert!(
        err.to_string().starts_with("This image is for the ESP32-C3 but the board is an ESP8266"),
        "{err}"
    );
    assert!(untouched(&dev));
}

#[test]
fn flash_that_does_not_keep_the_data_fails_verification() {
    let dev = device(sim::Chip::Esp32c3, Faults { corrupt_writes: true, ..Faults::default() });
    let (err, _, _) = flash_fails(&dev.pty_path().display().to_string(), c3_image(), Duration::from_secs(10));
    assert_eq!(err, FlashError::VerifyFailed);
    assert!(err.to_string().contains("does not match the image"), "{err}");
}

#[test]
fn port_that_does_not_exist() {
    let (err, _, _) = flash_fails("/dev/ttyUSB-otaforge-missing", esp8266_image(), Duration::from_secs(3));
    assert!(err.to_string().starts_with("There is no serial port /dev/ttyUSB-otaforge-missing."), "{err}");
}

#[test]
fn board_that_never_answers_gets_boot_mode_advice() {
    // A pty nobody answers on: a board that is not in download mode.
    let pair = nix::pty::openpty(None, None).unwrap();
    let port = nix::unistd::ttyname(&pair.slave).unwrap().display().to_string();
    let (err, notes, took) = flash_fails(&port, esp8266_image(), Duration::from_secs(12));
    assert!(matches!(err, FlashError::NoSync { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("did not answer") && text.contains("hold the BOOT (or FLASH) button, tap RESET"),
        "{text}"
    );
    assert!(
        notes.iter().any(|n| n.contains("hold BOOT")),
        "the user was told while it kept trying: {notes:?}"
    );
    assert!(took >= Duration::from_secs(2), "it kept trying for the connect timeout: {took:?}");
}

#[test]
fn port_held_by_another_program() {
    let dev = device(sim::Chip::Esp8266, Faults::default());
    let port = dev.pty_path().display().to_string();
    let _held = serialport::new(&port, 115_200).open_native().expect("first opener gets the port");
    let (err, _, _) = flash_fails(&port, esp8266_image(), Duration::from_secs(3));
    assert!(matches!(err, FlashError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains("is in use by another program"), "{err}");
}

#[test]
fn cancel_stops_a_write_at_once() {
    // Throttled to 115200 baud, 256 KiB take ~25 s: cancel after a moment.
    let dev = VirtualSerialDevice::spawn(SimOptions {
        chip: sim::Chip::Esp8266,
        throttle: true,
        ..SimOptions::default()
    })
    .unwrap();
    let mut req = FlashRequest::new(dev.pty_path().display().to_string(), esp8266_image());
    req.baud = 115_200;
    let cancel = Cancel::new();
    let c = cancel.clone();
    let mut cancelled_at = None;
    let result = flash::flash(&req, &cancel, &mut |u| {
        if let FlashUpdate::Progress(p) = u
            && p.written >= 16 * 1024
            && cancelled_at.is_none()
        {
            cancelled_at = Some(Instant::now());
            c.cancel();
        }
    });
    let at = cancelled_at.expect("progress reached 16 KiB");
    assert!(at.elapsed() < Duration::from_secs(2), "stopped {:?} after Cancel", at.elapsed());
    let err = result.unwrap_err();
    assert!(matches!(err, FlashError::Cancelled { .. }), "{err:?}");
    assert!(err.to_string().starts_with("Flashing was cancelled ("), "{err}");
}

#[test]
fn cancel_while_waiting_for_the_board() {
    // Nobody answers on this pty: the flash keeps trying to connect until cancelled.
    let pair = nix::pty::openpty(None, None).unwrap();
    let port = nix::unistd::ttyname(&pair.slave).unwrap().display().to_string();
    let mut req = FlashRequest::new(port, esp8266_image());
    req.connect_timeout = Duration::from_secs(60);
    let cancel = Cancel::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        // The user gives up 700 ms into the connect attempts: that moment is what is tested.
        std::thread::sleep(Duration::from_millis(700));
        c.cancel();
    });
    let started = Instant::now();
    let err = flash::flash(&req, &cancel, &mut |_| {}).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(err, FlashError::Cancelled { written: 0, .. }), "{err:?}");
}

#[test]
fn garbled_answers_step_the_baud_rate_down() {
    // Every data block after the fifth gets "bad data checksum", as when a USB-serial adapter
    // cannot keep up: each slower rate is tried in turn, and the user is told.
    let fail = sim::FailCommand { op: sim::frame::op::FLASH_DATA, after: 5, code: Some(0xC1) };
    let dev = device(sim::Chip::Esp8266, Faults { fail_command: Some(fail), ..Faults::default() });
    let mut req = FlashRequest::new(dev.pty_path().display().to_string(), esp8266_image());
    req.baud = 921_600;
    req.stub = StubSource::None;
    let mut notes = Vec::new();
    let started = Instant::now();
    let err = flash::flash(&req, &Cancel::new(), &mut |u| {
        if let FlashUpdate::Note(n) = u {
            notes.push(n)
        }
    })
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    for (from, to) in [(921_600, 460_800), (460_800, 230_400), (230_400, 115_200)] {
        assert!(
            notes.iter().any(|n| n.starts_with(&format!(
                "Flashing at {from} baud failed: The board's answers arrived garbled"
            )) && n.ends_with(&format!("Trying again at {to} baud."))),
            "{from} → {to}: {notes:#?}"
        );
    }
    assert_eq!(err, FlashError::Garbled { phase: otaforge_flash::Phase::Write, baud: 115_200 });
}
