//! OTA Forge's flasher against the virtual ESP8266 with Espressif's flasher stub, loaded at run
//! time from the installed esptool (ESPTOOL, as scripts/test sets it; nothing of the stub is in
//! this repository): uploaded through the ROM, then baud change, deflated writes and MD5. And
//! what happens without esptool, with a broken stub file, with a stub that does not start, with
//! flash that does not keep the data, and with a board that stops answering or garbles.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use otaforge_firmware::device_settings::DeviceSettings;
use otaforge_flash::esptool_stub::{self, STUB_FILE, SearchEnv};
use otaforge_flash::{
    self as flash, Cancel, Esp8266Route, FlashError, FlashOutcome, FlashRequest, FlashUpdate, Phase,
    StubSource, Verification,
};
use otaforge_sim::serial::{DeviceState, FailCommand, Faults, VirtualSerialDevice, frame::op};

use super::esptool::esptool_path;
use super::{esp8266, pseudo_random};
use crate::support;

/// Flashes `req` and returns the result with every update, failing the test on a hang.
fn run(req: &FlashRequest, limit: Duration) -> (Result<FlashOutcome, FlashError>, Vec<FlashUpdate>) {
    let mut updates = Vec::new();
    let started = Instant::now();
    let result = flash::flash(req, &Cancel::new(), &mut |u| updates.push(u));
    assert!(started.elapsed() < limit, "took {:?} (limit {limit:?}): {result:?}", started.elapsed());
    (result, updates)
}

fn request(dev: &VirtualSerialDevice, image: &[u8], stub: StubSource) -> FlashRequest {
    let mut req = FlashRequest::new(dev.pty_path().display().to_string(), image.to_vec());
    req.connect_timeout = Duration::from_secs(5);
    req.baud = 921_600;
    req.stub = stub;
    req
}

fn notes(updates: &[FlashUpdate]) -> Vec<String> {
    updates.iter().filter_map(|u| if let FlashUpdate::Note(n) = u { Some(n.clone()) } else { None }).collect()
}

fn count(ops: &[u8], op: u8) -> usize {
    ops.iter().filter(|&&o| o == op).count()
}

/// The installed esptool's stub file (the test needs ESPTOOL: it fails without it).
fn installed_stub_file() -> PathBuf {
    let env = SearchEnv { esptool: Some(esptool_path().into()), path: None };
    let found = esptool_stub::find(&env).unwrap_or_else(|e| panic!("ESPTOOL's package: {e}"));
    found.package.join(STUB_FILE)
}

#[test]
fn the_installed_esptools_stub_writes_verifies_and_changes_baud() {
    let esptool = esptool_path(); // fails the test when ESPTOOL is not set
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let image = support::esp8266_image(300_000, 21);
    let mut req = request(&dev, &image, StubSource::Installed);
    let settings = DeviceSettings { name: "kitchen".into(), wifi: None };
    req.device_settings = Some(settings.clone());
    let (result, updates) = run(&req, super::MINUTE);
    let outcome = result.expect("the flash works");
    eprintln!("{}", outcome.summary());

    let flash = dev.flash_contents();
    assert_eq!(&flash[..image.len()], &image[..], "the image, byte for byte, at 0x0");
    let sector = settings.encode_sector().unwrap();
    let at = (0..flash.len()).step_by(0x1000).find(|&a| flash[a..a + 0x1000] == sector[..]);
    let at = at.expect("the device settings sector was written");
    let image_end = image.len().next_multiple_of(0x1000);
    let untouched = |r: std::ops::Range<usize>| flash[r].iter().all(|&b| b == 0xFF);
    assert!(untouched(image_end..at) && untouched(at + 0x1000..flash.len()), "nothing else was written");

    let ops = dev.status().commands;
    for (op, what) in [
        (op::MEM_BEGIN, "MEM_BEGIN"),
        (op::MEM_DATA, "MEM_DATA"),
        (op::MEM_END, "MEM_END"),
        (op::CHANGE_BAUDRATE, "CHANGE_BAUDRATE"),
        (op::FLASH_DEFL_BEGIN, "FLASH_DEFL_BEGIN"),
        (op::FLASH_DEFL_DATA, "FLASH_DEFL_DATA"),
        (op::FLASH_DEFL_END, "FLASH_DEFL_END"),
        (op::SPI_FLASH_MD5, "SPI_FLASH_MD5"),
    ] {
        assert!(ops.contains(&op), "{what} was sent: {ops:02x?}");
    }
    assert!(!ops.contains(&op::FLASH_DATA), "nothing uncompressed: {ops:02x?}");
    assert_eq!(count(&ops, op::MEM_BEGIN), 2, "one MEM_BEGIN per segment (code, data)");
    // 16 KiB blocks of the zlib stream: the image's, then the settings sector's.
    let blocks = flash::esp8266_stub::deflate(&image).len().div_ceil(0x4000)
        + flash::esp8266_stub::deflate(&sector).len().div_ceil(0x4000);
    assert_eq!(count(&ops, op::FLASH_DEFL_DATA), blocks, "{ops:02x?}");
    // The MD5s: one per region to see whether it already holds the data, one per region after.
    assert_eq!(count(&ops, op::SPI_FLASH_MD5), 4);
    let st = dev.status();
    assert_eq!(st.baud, 921_600, "the UART runs at the requested rate after CHANGE_BAUDRATE");
    assert_eq!(st.state, DeviceState::RunningFirmware, "the new firmware runs");

    assert_eq!(outcome.verification, Verification::Verified);
    assert!(outcome.board.stub && outcome.board.baud == 921_600, "{:?}", outcome.board);
    let Some(Esp8266Route::Stub { stub }) = &outcome.esp8266 else { panic!("{:?}", outcome.esp8266) };
    assert!(stub.starts_with("the flasher stub of esptool 5."), "{stub}");
    assert!(stub.contains(&esptool.display().to_string()), "names the installation used: {stub}");
    let summary = outcome.summary();
    assert!(summary.contains("matches the image (MD5)"), "{summary}");
    assert!(summary.contains(&format!("Written through {stub}.")), "{summary}");
    assert!(notes(&updates).iter().any(|n| n.starts_with("Uploading the flasher stub of esptool")));

    // Progress is in image bytes (not compressed ones), never goes back and ends at the total.
    let total = (image.len() + 0x1000) as u64;
    let bytes: Vec<u64> = updates
        .iter()
        .filter_map(|u| if let FlashUpdate::Progress(p) = u { Some(p.written) } else { None })
        .collect();
    assert_eq!(bytes.last(), Some(&total), "{bytes:?}");
    assert!(bytes.windows(2).all(|w| w[0] <= w[1]), "{bytes:?}");
    // The first 16 KiB block of the zlib stream stands for more than 16 KiB of the image.
    assert!(bytes[0] > 0x4000 && bytes[0] < image.len() as u64, "moves in image bytes: {bytes:?}");
    let phases: Vec<Phase> =
        updates.iter().filter_map(|u| if let FlashUpdate::Phase(p) = u { Some(*p) } else { None }).collect();
    for p in [Phase::Connect, Phase::UploadStub, Phase::Write, Phase::Verify, Phase::Reset] {
        assert!(phases.contains(&p), "{p:?} in {phases:?}");
    }
    let pos = |p| phases.iter().position(|&q| q == p).unwrap();
    assert!(pos(Phase::UploadStub) < pos(Phase::Write) && pos(Phase::Write) < pos(Phase::Verify));
}

#[test]
fn flashing_the_same_image_again_is_skipped_by_md5() {
    esptool_path();
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let image = support::esp8266_image(100_000, 22);
    let req = request(&dev, &image, StubSource::Installed);
    let (first, _) = run(&req, super::MINUTE);
    assert_eq!(first.unwrap().verification, Verification::Verified);
    crate::reset_to_bootloader(&dev);
    let before = dev.status().commands.len();
    let (second, updates) = run(&req, super::MINUTE);
    let second = second.unwrap();
    assert_eq!(second.verification, Verification::Unchanged, "{}", second.summary());
    let ops = dev.status().commands[before..].to_vec();
    assert!(!ops.contains(&op::FLASH_DEFL_DATA), "nothing written: {ops:02x?}");
    assert!(notes(&updates).iter().any(|n| n.contains("already holds this data (same MD5): skipped")));
}

#[test]
fn without_esptool_the_rom_writes_and_the_output_says_how_to_get_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults::default());
    let image = support::esp8266_image(64 * 1024, 23);
    let file = super::write_tmp(dir.path(), "fw.bin", &image);
    let port = dev.pty_path().display().to_string();
    // A PATH with nothing on it: certainly no esptool.
    let empty = tempfile::tempdir().unwrap();
    for (esptool, said) in [
        (Some("/nonexistent/esptool"), "ESPTOOL is set to /nonexistent/esptool, which does not exist."),
        (None, "No esptool was found (ESPTOOL is not set, and there is no esptool or esptool.py on PATH)."),
    ] {
        let before = dev.status().commands.len();
        let mut cmd = support::otaforge(dir.path());
        cmd.args(["flash", "--port", &port, "--connect-timeout", "5", &file]).env("PATH", empty.path());
        match esptool {
            Some(p) => cmd.env("ESPTOOL", p),
            None => cmd.env_remove("ESPTOOL"),
        };
        let (out, stdout, stderr) = support::run(&mut cmd);
        assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
        assert!(stderr.contains(said), "told while flashing: {stderr}");
        for text in [&stderr, &stdout] {
            assert!(text.contains("pip install --upgrade esptool"), "{text}");
            assert!(text.contains("ESPTOOL=/path/to/esptool"), "{text}");
        }
        assert!(stdout.contains(said) && stdout.contains("The ROM alone wrote it."), "{stdout}");
        assert!(stdout.contains("confirm this flash when the device first checks in"), "{stdout}");
        let ops = dev.status().commands[before..].to_vec();
        assert!(ops.contains(&op::FLASH_DATA), "through the ROM: {ops:02x?}");
        assert!(!ops.contains(&op::MEM_BEGIN) && !ops.contains(&op::FLASH_DEFL_DATA), "no stub: {ops:02x?}");
        assert_eq!(&dev.flash_contents()[..image.len()], &image[..]);
        // The flash left it running the sketch: the next one starts in the bootloader again.
        crate::reset_to_bootloader(&dev);
    }
}

/// A copy of an esptool installation's layout (a venv) holding `json` as its ESP8266 stub;
/// returns its `bin/esptool`.
fn fake_installation(dir: &Path, json: &str) -> PathBuf {
    let pkg = dir.join("lib/python3.11/site-packages/esptool");
    std::fs::create_dir_all(pkg.join("targets/stub_flasher/2")).unwrap();
    std::fs::write(pkg.join("__init__.py"), "__version__ = \"5.6.0\"\n").unwrap();
    std::fs::write(pkg.join(STUB_FILE), json).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let script = dir.join("bin/esptool");
    std::fs::write(&script, "#!/nonexistent/bin/python3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_broken_stub_file_is_named_and_the_rom_writes() {
    let good = std::fs::read_to_string(installed_stub_file()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&good).unwrap();
    let mut moved = value.clone();
    moved["text_start"] = serde_json::json!(0x6000_0000u32);
    let mut not_base64 = value.clone();
    not_base64["text"] = serde_json::json!("this is not base64!");
    for (json, why) in [
        (good[..good.len() / 2].to_string(), "it is not stub JSON"),
        (moved.to_string(), "is not inside the ESP8266's instruction RAM"),
        (not_base64.to_string(), "\"text\" is not base64"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let script = fake_installation(&dir.path().join("venv"), &json);
        let stub_file = dir.path().join("venv/lib/python3.11/site-packages/esptool").join(STUB_FILE);
        let dev = esp8266(dir.path(), Faults::default());
        let image = support::esp8266_image(40_000, 24);
        let (result, updates) = run(&request(&dev, &image, StubSource::Esptool(script)), super::MINUTE);
        let outcome = result.unwrap_or_else(|e| panic!("the ROM writes instead: {e}"));
        let said = format!("The flasher stub {} is not usable: ", stub_file.display());
        let told = notes(&updates);
        assert!(told.iter().any(|n| n.starts_with(&said) && n.contains(why)), "{why}: {told:#?}");
        assert!(told.iter().any(|n| n.contains("pip install --upgrade esptool")), "{told:#?}");
        assert_eq!(outcome.verification, Verification::ServerWillConfirm);
        let Some(Esp8266Route::Rom { why: summary }) = &outcome.esp8266 else {
            panic!("{:?}", outcome.esp8266)
        };
        assert!(summary.starts_with(&said), "{summary}");
        let ops = dev.status().commands;
        assert!(!ops.contains(&op::MEM_BEGIN) && ops.contains(&op::FLASH_DATA), "{ops:02x?}");
        assert_eq!(&dev.flash_contents()[..image.len()], &image[..]);
    }
}

#[test]
fn a_stub_that_never_greets_is_said_and_the_rom_writes() {
    esptool_path();
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { stub_crashes: true, ..Faults::default() });
    let image = support::esp8266_image(40_000, 25);
    let (result, updates) = run(&request(&dev, &image, StubSource::Installed), super::MINUTE);
    let outcome = result.unwrap_or_else(|e| panic!("the ROM writes instead: {e}"));
    let told = notes(&updates);
    assert!(
        told.iter().any(|n| n.starts_with("The flasher stub of esptool")
            && n.contains("did not start on the board (it never sent its OHAI greeting")
            && n.contains("Writing through the ROM alone")),
        "{told:#?}"
    );
    assert_eq!(outcome.verification, Verification::ServerWillConfirm);
    assert!(matches!(&outcome.esp8266, Some(Esp8266Route::Rom { why }) if why.contains("OHAI")));
    let ops = dev.status().commands;
    assert_eq!(count(&ops, op::MEM_END), 1, "the stub was tried once: {ops:02x?}");
    assert!(ops.contains(&op::FLASH_DATA), "{ops:02x?}");
    assert_eq!(&dev.flash_contents()[..image.len()], &image[..]);
    assert_eq!(dev.status().state, DeviceState::RunningFirmware);
}

#[test]
fn flash_that_does_not_keep_the_data_fails_the_md5_check() {
    esptool_path();
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { corrupt_writes: true, ..Faults::default() });
    let image = support::esp8266_image(60_000, 26);
    let (result, updates) = run(&request(&dev, &image, StubSource::Installed), super::MINUTE);
    let err = result.expect_err("the MD5 differs");
    assert_eq!(err, FlashError::VerifyFailed);
    assert!(
        err.to_string().starts_with("After writing, the board's flash does not match the image"),
        "{err}"
    );
    // Each slower rate was tried, each from the ROM again (the stub handed the chip back).
    let told = notes(&updates);
    assert!(told.iter().any(|n| n.ends_with("Trying again at 460800 baud.")), "{told:#?}");
    let ops = dev.status().commands;
    assert_eq!(count(&ops, op::MEM_END), 4, "921600, 460800, 230400, 115200: {ops:02x?}");
    assert!(count(&ops, op::SPI_FLASH_MD5) >= 4, "{ops:02x?}");
}

#[test]
fn garbled_blocks_under_the_stub_step_the_baud_rate_down() {
    esptool_path();
    let dir = tempfile::tempdir().unwrap();
    let fail = FailCommand { op: op::FLASH_DEFL_DATA, after: 1, code: Some(0xC1) };
    let dev = esp8266(dir.path(), Faults { fail_command: Some(fail), ..Faults::default() });
    // Data that deflates little, written as a data image at 0x20000: many blocks.
    let mut req = request(&dev, &pseudo_random(100_000, 27), StubSource::Installed);
    req.offset = Some(0x2_0000);
    let (result, updates) = run(&req, super::MINUTE);
    let err = result.expect_err("every rate garbles");
    let told = notes(&updates);
    for (from, to) in [(921_600, 460_800), (460_800, 230_400), (230_400, 115_200)] {
        assert!(
            told.iter().any(|n| n.starts_with(&format!(
                "Flashing at {from} baud failed: The board's answers arrived garbled"
            )) && n.ends_with(&format!("Trying again at {to} baud."))),
            "{from} → {to}: {told:#?}"
        );
    }
    assert_eq!(err, FlashError::Garbled { phase: Phase::Write, baud: 115_200 });
}

#[test]
fn a_board_that_stops_answering_under_the_stub_is_diagnosed_in_seconds() {
    esptool_path();
    let dir = tempfile::tempdir().unwrap();
    let dev = esp8266(dir.path(), Faults { stop_answering_after_blocks: Some(2), ..Faults::default() });
    let mut req = request(&dev, &pseudo_random(200_000, 28), StubSource::Installed);
    req.offset = Some(0x2_0000);
    let (result, _) = run(&req, Duration::from_secs(15));
    let err = result.expect_err("the board hangs");
    assert!(matches!(err, FlashError::StoppedAnswering { phase: Phase::Write, .. }), "{err:?}");
    assert!(err.to_string().contains("stopped answering while writing"), "{err}");
    assert_eq!(dev.status().state, DeviceState::Hung);
}
