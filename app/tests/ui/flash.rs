//! The Flash step driven headless, as a user would: add a virtual board, pick it, choose an
//! image, flash, watch the progress and read the result; cancel a slow flash; read the
//! diagnosis when the port is wrong.

use crate::ui_support;

use egui_kittest::kittest::{NodeT, Queryable};
use otaforge::ui::flash::labels;
use otaforge_firmware::ImageBuilder;
use otaforge_sim::serial::{self as sim, SimOptions, VirtualSerialDevice};
use ui_support::{app, step_until, type_into};

fn open_flash(h: &mut egui_kittest::Harness<'static, otaforge::ui::OtaForgeApp>) {
    h.step();
    h.get_by_label_contains("3. Flash").click();
    h.step();
    step_until(h, "the port list", |h| h.state().flash.ports.is_some());
    h.step();
}

fn choose_file(h: &mut egui_kittest::Harness<'static, otaforge::ui::OtaForgeApp>, path: &std::path::Path) {
    type_into(h, labels::FILE, &path.display().to_string());
    h.get_by_label(labels::USE_FILE).click();
    step_until(h, "the file check", |h| h.state().flash.image.is_some());
    h.step();
}

#[test]
fn add_a_virtual_device_and_flash_it() {
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::arduino_esp8266().target_size(200 * 1024).seed(21).build();
    let file = dir.path().join("sketch.bin");
    std::fs::write(&file, &image).unwrap();

    let mut h = app(dir.path());
    open_flash(&mut h);
    assert!(h.get_by_label(labels::FLASH).accesskit_node().is_disabled(), "nothing to flash yet");

    h.get_by_label(labels::ADD_VIRTUAL).click();
    step_until(&mut h, "the virtual device in the port list", |h| {
        let f = &h.state().flash;
        f.port.starts_with("/dev/pts/")
            && f.ports.as_ref().is_some_and(|p| p.iter().any(|p| p.path == f.port))
    });
    h.step();
    let port = h.state().flash.port.clone();
    // Pick it in the list (it is listed first, as a virtual ESP8266).
    h.get_by_label_contains(&format!("{port}  —  virtual ESP8266")).click();
    h.step();
    assert_eq!(h.state().flash.port, port);

    // Detect it before flashing: chip, MAC and flash size, nothing written.
    h.get_by_label(labels::DETECT).click();
    step_until(&mut h, "the detection", |h| {
        h.state().flash.board.is_some() || h.state().flash.detect_error.is_some()
    });
    h.step();
    let detected =
        h.state().flash.board.clone().unwrap_or_else(|| panic!("{:?}", h.state().flash.detect_error));
    assert_eq!(detected.chip, otaforge_firmware::Chip::Esp8266);
    h.get_by_label_contains(&format!("Board on {port}: ESP8266, MAC 18:FE:34:"));
    h.get_by_label_contains("4.0 MiB flash");

    choose_file(&mut h, &file);
    h.get_by_label_contains("✔ ESP8266 image at 0x0, 200 KiB");
    assert!(!h.get_by_label(labels::FLASH).accesskit_node().is_disabled());

    h.get_by_label(labels::FLASH).click();
    h.step();
    assert!(h.state().flash.running);
    step_until(&mut h, "the end of the flash", |h| h.state().flash.message.is_some());
    h.step();
    let (ok, text) = h.state().flash.message.clone().unwrap();
    assert!(ok, "{text}");
    let progress = h.state().flash.progress.expect("progress was shown");
    assert_eq!((progress.written, progress.total), (image.len() as u64, image.len() as u64));
    h.get_by_label_contains("✔ Flashed 200 KiB at 0x0 to the ESP8266");
    // With esptool installed (scripts/test sets ESPTOOL) its stub verified the flash; through
    // the ROM alone the step waits for the server to confirm it.
    let verified = h.state().flash.outcome.as_ref().map(|o| o.verification);
    if verified == Some(otaforge_flash::Verification::Verified) {
        h.get_by_label_contains("read back and matches the image (MD5)");
    } else {
        h.get_by_label_contains("Waiting for 18:FE:34:");
    }
    let board = h.state().flash.board.clone().expect("the board was shown");
    h.get_by_label_contains(&format!("Board on {port}: ESP8266, MAC {}", board.mac.unwrap()));

    // What the virtual board's flash holds is the image.
    let registered = sim::running(dir.path());
    let dev = registered.iter().find(|v| v.pty.display().to_string() == port).expect("registered");
    let flash = std::fs::read(&dev.flash_file).unwrap();
    assert_eq!(&flash[..image.len()], &image[..]);
}

#[test]
fn cancel_a_slow_flash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(512 * 1024).seed(2).build()).unwrap();
    // A board at a real 115200 baud: 512 KiB take most of a minute.
    let dev = VirtualSerialDevice::spawn(SimOptions {
        chip: sim::Chip::Esp8266,
        throttle: true,
        ..SimOptions::default()
    })
    .unwrap();
    let port = dev.pty_path().display().to_string();

    let mut h = app(dir.path());
    open_flash(&mut h);
    h.state_mut().flash.port.clear();
    type_into(&mut h, labels::TYPED_PORT, &port);
    choose_file(&mut h, &file);
    h.get_by_label(labels::FLASH).click();
    step_until(&mut h, "some progress", |h| h.state().flash.progress.is_some_and(|p| p.written > 8 * 1024));
    h.step();
    h.get_by_label(labels::CANCEL).click();
    step_until(&mut h, "the cancelled flash", |h| h.state().flash.message.is_some());
    h.step();
    let (ok, text) = h.state().flash.message.clone().unwrap();
    assert!(!ok);
    assert!(text.starts_with("Flashing was cancelled ("), "{text}");
    h.get_by_label_contains("✖ Flashing was cancelled");
}

#[test]
fn a_wrong_port_gets_a_diagnosis() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.bin");
    std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(16 * 1024).build()).unwrap();
    let mut h = app(dir.path());
    open_flash(&mut h);
    h.state_mut().flash.port.clear();
    type_into(&mut h, labels::TYPED_PORT, "/dev/ttyUSB-otaforge-nope");
    choose_file(&mut h, &file);
    h.get_by_label(labels::FLASH).click();
    step_until(&mut h, "the failure", |h| h.state().flash.message.is_some());
    h.step();
    h.get_by_label_contains("✖ There is no serial port /dev/ttyUSB-otaforge-nope.");
}

/// A pty standing in for a board, its port typed into the Flash step and the monitor started on
/// it; returns once the monitor has the port open (what a board prints before that is lost, as
/// on a real one).
fn monitoring_a_pty(
    h: &mut egui_kittest::Harness<'static, otaforge::ui::OtaForgeApp>,
) -> (nix::pty::OpenptyResult, String) {
    let pair = nix::pty::openpty(None, None).unwrap();
    let port = nix::unistd::ttyname(&pair.slave).unwrap().display().to_string();
    open_flash(h);
    h.state_mut().flash.port.clear();
    type_into(h, labels::TYPED_PORT, &port);
    h.get_by_label(labels::MONITOR).click();
    h.step();
    assert!(h.state().flash.monitoring);
    step_until(h, "the port open", |h| h.state().flash.monitor_open.as_ref() == Some(&port));
    (pair, port)
}

#[test]
fn the_monitor_pane_shows_what_the_board_prints() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut h = app(dir.path());
    let (pair, _port) = monitoring_a_pty(&mut h);
    let mut master = std::fs::File::from(pair.master);
    // Between them, boot ROM noise at the wrong baud: not text, drawn as '?' (the monospace
    // font has no U+FFFD, and egui would draw empty boxes).
    master.write_all(b"OTA Forge device 1.0 up\r\n\xff\xfe rst\r\nchecking for updates\r\n").unwrap();
    step_until(&mut h, "the board's lines", |h| h.state().flash.monitor.len() >= 3);
    h.step();
    h.get_by_label("OTA Forge device 1.0 up");
    h.get_by_label("?? rst");
    h.get_by_label("checking for updates");
    h.get_by_label(labels::STOP_MONITOR).click();
    step_until(&mut h, "the monitor to stop", |h| !h.state().flash.monitoring);
}

/// With two boards plugged in, the app takes the same port the CLI would (the first in the list)
/// and says it chose among several; the CLI, given no --port, refuses and names both.
#[test]
fn among_several_boards_the_app_and_the_cli_agree_and_the_app_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let boards: Vec<VirtualSerialDevice> = (0..2)
        .map(|_| {
            VirtualSerialDevice::spawn(SimOptions {
                registry_dir: Some(dir.path().into()),
                ..SimOptions::default()
            })
            .unwrap()
        })
        .collect();
    let paths: Vec<String> = boards.iter().map(|b| b.pty_path().display().to_string()).collect();

    let mut h = app(dir.path());
    open_flash(&mut h);
    step_until(&mut h, "both boards in the list", |h| {
        h.state().flash.ports.as_ref().is_some_and(|p| paths.iter().all(|b| p.iter().any(|p| &p.path == b)))
    });
    h.step();
    let first = h.state().flash.ports.as_ref().unwrap()[0].path.clone();
    assert!(paths.contains(&first), "virtual boards come first: {first}");
    assert_eq!(h.state().flash.port, first, "the first likely board is taken");
    let note = h.state().flash.port_note.clone().expect("the app says it chose among several");
    assert!(paths.iter().all(|p| note.contains(p.as_str())), "{note}");
    h.get_by_label_contains("several ports could be an ESP board");

    let file = dir.path().join("sketch.bin");
    std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(8 * 1024).build()).unwrap();
    let (out, _, stderr) = crate::support::run(crate::support::otaforge(dir.path()).arg("flash").arg(&file));
    assert!(!out.status.success(), "the CLI must not guess");
    assert!(stderr.contains(&format!("several ports could be an ESP board ({first}, ")), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
}

/// A stand-in from `otaforge sim reference-image` goes to virtual boards only: with a real port
/// chosen the step says why it will not flash and the button stays off; a virtual board's port
/// (a pseudo-terminal) may have it.
#[test]
fn a_stand_in_for_virtual_boards_is_refused_for_a_real_port() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim-reference.bin");
    let chip = otaforge_firmware::Chip::Esp8266;
    std::fs::write(&file, otaforge_sim::device::reference_image(chip, "1.0.0", 64 * 1024)).unwrap();
    let mut h = app(dir.path());
    open_flash(&mut h);
    h.state_mut().flash.port.clear();
    type_into(&mut h, labels::TYPED_PORT, "/dev/ttyUSB-otaforge-real");
    choose_file(&mut h, &file);
    h.get_by_label_contains("⚠ Runs on virtual boards only");
    h.get_by_label_contains("✖ Not flashed: this image runs on virtual boards only");
    assert!(h.get_by_label(labels::FLASH).accesskit_node().is_disabled());

    let pair = nix::pty::openpty(None, None).unwrap();
    let pty = nix::unistd::ttyname(&pair.slave).unwrap().display().to_string();
    h.state_mut().flash.port = pty;
    h.step();
    assert!(h.query_by_label_contains("✖ Not flashed").is_none());
    assert!(!h.get_by_label(labels::FLASH).accesskit_node().is_disabled());
}

/// No file dialog here: the image is typed, and Browse says why it shows nothing.
#[test]
fn the_image_is_typed_where_no_dialog_can_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.bin");
    std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(16 * 1024).build()).unwrap();
    let mut h = ui_support::app_with(dir.path(), egui::vec2(1000.0, 1400.0), None);
    open_flash(&mut h);
    h.get_by_label(otaforge::ui::widgets::BROWSE).click_accesskit();
    h.step();
    h.get_by_label_contains("No file dialog can open here");
    type_into(&mut h, labels::FILE, &file.display().to_string());
    h.key_press(egui::Key::Enter);
    step_until(&mut h, "the file check", |h| h.state().flash.image.is_some());
    h.step();
    h.get_by_label_contains("✔ ESP8266 image at 0x0, 16 KiB");
}

/// Flash, watch the board's log, flash again: each flash waits for the monitor it stops to close
/// the port (a tty is opened exclusively), instead of failing as "in use by another program".
#[test]
fn flashing_again_while_the_monitor_shows_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sketch.bin");
    std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(16 * 1024).seed(9).build()).unwrap();
    let mut h = app(dir.path());
    open_flash(&mut h);
    h.get_by_label(labels::ADD_VIRTUAL).click();
    step_until(&mut h, "the virtual device", |h| {
        let f = &h.state().flash;
        f.port.starts_with("/dev/pts/")
            && f.ports.as_ref().is_some_and(|p| p.iter().any(|p| p.path == f.port))
    });
    let port = h.state().flash.port.clone();
    choose_file(&mut h, &file);
    for round in 0..3 {
        h.get_by_label(labels::FLASH).click();
        h.step();
        step_until(&mut h, "the flash", |h| h.state().flash.message.is_some());
        let (ok, text) = h.state().flash.message.clone().unwrap();
        assert!(ok, "flash {round}: {text}");
        // The monitor opened after the flash: it holds the port when Flash is pressed again.
        step_until(&mut h, "the monitor", |h| h.state().flash.monitor_open.as_ref() == Some(&port));
        h.step();
        h.get_by_label(&format!("Monitoring {port} at 115200 baud."));
    }
}

/// Closing the window while the monitor runs lets go of the port: another program (a flasher, a
/// terminal) can open it at once, instead of meeting "in use" until OTA Forge exits.
#[test]
fn closing_the_window_lets_go_of_the_monitored_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app(dir.path());
    let (_pair, port) = monitoring_a_pty(&mut h);
    // While it is open, the port is taken (serialport opens exclusively).
    assert!(serialport::new(&port, 115_200).open_native().is_err(), "the monitor holds {port}");
    drop(h);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = serialport::new(&port, 115_200).open_native() {
        assert!(std::time::Instant::now() < deadline, "{port} still held after the window closed: {e}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
