//! One flash from start to end: check the file, connect (retrying while the user puts the board
//! into download mode), identify the board, refuse a wrong chip, write, verify, start the new
//! firmware. When writing fails at a high baud rate it starts again slower, and says so.

use std::time::{Duration, Instant};

use espflash::connection::Connection;
use espflash::flasher::Flasher;

use super::connect::{self, Connected, Tracker};
use super::diagnosis::FlashError;
use super::esp32::{self, WriteOptions};
use super::esp8266_session::{self, StubState};
use super::esptool_stub::StubSource;
use super::link::{Cancel, Link, ResetLines};
use super::plan::{self, ImageKind, Plan};
use super::progress::{BoardInfo, FlashUpdate, Meter, Phase};
use super::{BAUD_LADDER, DEFAULT_BAUD};
use otaforge_firmware::device_settings::DeviceSettings;
use otaforge_firmware::{Chip, md5_hex};

/// The first app slot and otadata of the default partition tables (arduino-esp32, ESP-IDF).
const ESP32_FIRST_APP: u32 = 0x10000;
const ESP32_OTADATA: u32 = 0xE000;

/// What to flash, where, and how.
#[derive(Debug, Clone)]
pub struct FlashRequest {
    /// The serial port, e.g. `/dev/ttyUSB0` or a virtual device's pty.
    pub port: String,
    /// The file's bytes (`.bin` or ELF).
    pub image: Vec<u8>,
    /// The chip the user says it is (`None`: detect).
    pub chip: Option<Chip>,
    /// The fastest baud rate to try; slower ones follow when it fails.
    pub baud: u32,
    /// Where to write, overriding what the file suggests.
    pub offset: Option<u32>,
    /// Compare the flash with the image afterwards (needs a stub: the ESP32 family, and the
    /// ESP8266 when esptool's stub is at hand).
    pub verify: bool,
    /// Leave regions that already hold the image alone (needs a stub, as `verify`).
    pub skip_unchanged: bool,
    /// Erase the whole flash first (needs a stub, as `verify`).
    pub erase_all: bool,
    /// Where an ESP8266 flash takes its flasher stub from: by default the user's esptool, so
    /// the write is compressed, fast and verified; without one the ROM alone writes.
    pub stub: StubSource,
    /// How long to keep trying to reach the board's bootloader.
    pub connect_timeout: Duration,
    /// The board's own settings (name, Wi-Fi), written to its device settings area (the ESP8266's
    /// EEPROM sector, the ESP32's NVS partition) after the image: no update ever replaces them.
    pub device_settings: Option<DeviceSettings>,
    /// Write only [`FlashRequest::device_settings`], not the image (`otaforge provision`).
    pub settings_only: bool,
}

impl FlashRequest {
    /// Flash `image` on `port` with the defaults: detect the chip, 460800 baud with fallback,
    /// verify, skip unchanged regions, 20 s for the user to put the board in download mode.
    pub fn new(port: impl Into<String>, image: Vec<u8>) -> FlashRequest {
        FlashRequest {
            port: port.into(),
            image,
            chip: None,
            baud: DEFAULT_BAUD,
            offset: None,
            verify: true,
            skip_unchanged: true,
            erase_all: false,
            stub: StubSource::Installed,
            connect_timeout: Duration::from_secs(20),
            device_settings: None,
            settings_only: false,
        }
    }

    /// Write only a board's device settings: its app image stays byte for byte.
    pub fn provision(port: impl Into<String>, settings: DeviceSettings) -> FlashRequest {
        FlashRequest {
            device_settings: Some(settings),
            settings_only: true,
            ..FlashRequest::new(port, Vec::new())
        }
    }
}

/// The device settings area of a board, as bytes and where they go.
pub(super) fn device_area(
    req: &FlashRequest,
    plan: &Plan,
    board: Chip,
    flash_size: Option<u64>,
) -> Result<Option<(u32, Vec<u8>)>, FlashError> {
    let Some(settings) = &req.device_settings else { return Ok(None) };
    let bad = |e: otaforge_firmware::device_settings::DeviceSettingsError| {
        FlashError::BadImage(format!("Device settings: {e}."))
    };
    if board.is_esp8266() {
        // `_EEPROM_start` is fixed when the sketch is linked for a flash size: the image's header
        // says which; without an image, the chip's size (what the Arduino IDE picks by default).
        // An auto-flash-size build's header says 16 MB; it then maps to the chip's real size.
        let header = (!req.settings_only)
            .then(|| otaforge_firmware::inspect(&plan.data).ok().and_then(|i| i.flash_size_bytes))
            .flatten();
        let built_for = match (header, flash_size) {
            (Some(h), Some(chip)) => Some(h.min(chip)),
            (h, chip) => h.or(chip),
        }
        .ok_or_else(|| {
            FlashError::BadImage("The board's flash size is unknown, so its settings sector is too.".into())
        })?;
        let at = otaforge_firmware::device_settings::esp8266_address(built_for as usize) as u32;
        return Ok(Some((at, settings.encode_sector().map_err(bad)?)));
    }
    // The nvs partition as the image's partition table places it (a merged image carries one),
    // else arduino-esp32's default table.
    let table = (plan.kind == ImageKind::Merged).then(|| plan.data.get(0x8000..0x8C00)).flatten();
    let (offset, size) = otaforge_firmware::device_settings::esp32_nvs_location(table);
    Ok(Some((offset as u32, settings.nvs_partition(size).map_err(bad)?)))
}

/// How sure it is that the board holds the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Verification {
    /// The board's flash MD5 equals the image's.
    Verified,
    /// The flash already held the image (same MD5), so nothing was written.
    Unchanged,
    /// Written without checking (verification turned off).
    NotVerified,
    /// The ESP8266 ROM cannot read back; the update server confirms it at the first check-in.
    ServerWillConfirm,
}

/// How an ESP8266 was written, for the user: it decides speed and verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Esp8266Route {
    /// Through Espressif's flasher stub from the user's esptool (which one, in words).
    Stub {
        /// "the flasher stub of esptool 5.6.0 (/usr/local/bin/esptool; esp-flasher-stub v1.4.1)".
        stub: String,
    },
    /// Through the ROM alone.
    Rom {
        /// Why, and how to get the faster path when that would help.
        why: String,
    },
}

/// A flash that worked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlashOutcome {
    /// The board.
    pub board: BoardInfo,
    /// What was written.
    pub kind: ImageKind,
    /// Where.
    pub offset: u32,
    /// How many bytes.
    pub bytes: u64,
    /// MD5 of those bytes, lower-case hex.
    pub md5: String,
    /// The firmware version the image carries.
    pub version: Option<String>,
    /// How sure it is.
    pub verification: Verification,
    /// Time from start to end.
    pub elapsed: Duration,
    /// Whether the board was told to run the new firmware.
    pub started: bool,
    /// For an ESP8266: stub or ROM, and why.
    pub esp8266: Option<Esp8266Route>,
}

impl FlashOutcome {
    /// One paragraph for the user.
    pub fn summary(&self) -> String {
        let what = format!(
            "Flashed {} at 0x{:x} to the {} on {} in {:.1} s at {} baud.",
            super::progress::human_bytes(self.bytes),
            self.offset,
            self.board.chip,
            self.board.port,
            self.elapsed.as_secs_f64(),
            self.board.baud
        );
        let check = match self.verification {
            Verification::Verified => " The flash was read back and matches the image (MD5).",
            Verification::Unchanged => {
                " The board already held exactly this image, so nothing needed writing."
            }
            Verification::NotVerified => " Not verified (verification was turned off).",
            Verification::ServerWillConfirm => {
                " The ESP8266's ROM cannot read flash back, so OTA Forge will confirm this flash when the device first checks in with the update server."
            }
        };
        let route = match &self.esp8266 {
            Some(Esp8266Route::Stub { stub }) => format!(" Written through {stub}."),
            Some(Esp8266Route::Rom { why }) => format!(" {why}"),
            None => String::new(),
        };
        let start = if self.started { " The new firmware is starting." } else { "" };
        format!("{what}{check}{route}{start}")
    }
}

/// Flashes a board, reporting progress as it goes. Cancel from another thread at any time.
pub fn flash(
    req: &FlashRequest,
    cancel: &Cancel,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<FlashOutcome, FlashError> {
    let started = Instant::now();
    if let Some(s) = &req.device_settings {
        s.validate().map_err(|e| FlashError::BadImage(format!("Device settings: {e}.")))?;
    }
    let plan = if req.settings_only {
        Plan {
            kind: ImageKind::Raw,
            chip: req.chip,
            offset: 0,
            data: Vec::new(),
            version: None,
            warnings: Vec::new(),
        }
    } else {
        let plan = plan::plan(req.image.clone(), req.offset)?;
        if otaforge_firmware::synth::is_synthetic(&plan.data) && !super::ports::is_pseudo_terminal(&req.port)
        {
            return Err(FlashError::BadImage(format!(
                "This is a synthetic image (sim reference-image, the demo): it is not firmware and runs only on virtual boards, and {} is a real serial port. Flash a build of device-firmware/ instead.",
                req.port
            )));
        }
        plan
    };
    if req.settings_only {
        report(FlashUpdate::Note(
            "Writing only the board's device settings; its firmware stays as it is.".into(),
        ));
    } else {
        report(FlashUpdate::Note(format!("Writing the {}.", plan.describe())));
    }
    for w in &plan.warnings {
        report(FlashUpdate::Note(w.clone()));
    }
    let ladder = ladder(req.baud);
    let mut first_failure: Option<FlashError> = None;
    // Looked for at the first ESP8266 attempt, kept for the retries.
    let mut stub = StubState::Unknown;
    for (i, &baud) in ladder.iter().enumerate() {
        let retry = i > 0;
        match attempt(req, &plan, baud, retry, &mut stub, cancel, report) {
            Ok(mut outcome) => {
                outcome.elapsed = started.elapsed();
                return Ok(outcome);
            }
            Err(failure) => {
                let error = failure.error;
                if cancel.is_cancelled() || matches!(error, FlashError::Cancelled { .. }) {
                    return Err(error);
                }
                if retry && matches!(error, FlashError::NoSync { .. }) {
                    // The board did not come back for the retry: the first diagnosis stands.
                    return Err(first_failure.unwrap_or(error));
                }
                match ladder.get(i + 1) {
                    Some(next) if error.slower_may_help() && failure.can_retry => {
                        report(FlashUpdate::Note(format!(
                            "Flashing at {baud} baud failed: {error} Trying again at {next} baud."
                        )));
                        first_failure.get_or_insert(error);
                    }
                    _ => return Err(error),
                }
            }
        }
    }
    unreachable!("the ladder always ends in a final attempt")
}

/// `baud` first, then the standard slower rates down to 115200.
fn ladder(baud: u32) -> Vec<u32> {
    let baud = baud.max(9600);
    let mut out = vec![baud];
    out.extend(BAUD_LADDER.iter().copied().filter(|&b| b < baud));
    out
}

/// A failed attempt, and whether the board can be brought back to its ROM for another.
pub(super) struct Failure {
    pub(super) error: FlashError,
    pub(super) can_retry: bool,
}

impl From<FlashError> for Failure {
    fn from(error: FlashError) -> Self {
        Failure { error, can_retry: false }
    }
}

fn attempt(
    req: &FlashRequest,
    plan: &Plan,
    baud: u32,
    retry: bool,
    stub: &mut StubState,
    cancel: &Cancel,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<FlashOutcome, Failure> {
    let mut t = Tracker::new(&req.port, cancel);
    // A retry only makes sense if the board answers at once; else the first diagnosis stands.
    let timeout = if retry { Duration::from_secs(1) } else { req.connect_timeout };
    let Connected { mut conn, lines, esp8266 } = connect::connect(&mut t, timeout, report)?;
    if esp8266 {
        esp8266_session::attempt(req, plan, baud, lines, &mut conn, &mut t, stub, report)
    } else {
        esp32_attempt(req, plan, baud, lines, conn, &mut t, report)
            .map_err(|error| Failure { error, can_retry: lines == ResetLines::Available })
    }
}

pub(super) fn check_chip(req: &FlashRequest, plan: &Plan, board: Chip) -> Result<(), FlashError> {
    if let Some(asked) = req.chip
        && asked != board
    {
        return Err(FlashError::ChipMismatch { asked, board });
    }
    plan.check_chip(board)
}

/// Leaves the bootloader: on a board with reset lines by resetting it, else by asking the ROM
/// to run the firmware. A failure here does not undo the flash, so it is only a note.
pub(super) fn start_firmware(
    conn: &mut Connection,
    lines: ResetLines,
    run: fn(&mut Connection) -> Result<(), espflash::Error>,
    report: &mut dyn FnMut(FlashUpdate),
) -> bool {
    let result = match lines {
        ResetLines::Available => conn.reset(),
        ResetLines::None => run(conn),
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            report(FlashUpdate::Note(format!(
                "The image is written, but the board could not be restarted ({e}): press its RESET button."
            )));
            false
        }
    }
}

fn esp32_attempt(
    req: &FlashRequest,
    plan: &Plan,
    baud: u32,
    lines: ResetLines,
    mut conn: Link<Connection>,
    t: &mut Tracker<'_>,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<FlashOutcome, FlashError> {
    let (detected, chip) = connect::esp32_chip(conn.get(), t)?;
    check_chip(req, plan, chip)?;
    let (verify, skip) = (req.verify, req.skip_unchanged);
    let mut flasher: Link<Flasher> = conn
        .try_map(|c| Flasher::try_connect(c, true, verify, skip, Some(detected), Some(baud)))
        .map_err(|(e, _conn)| t.fail(&e))?;
    t.baud = baud;
    let board = connect::esp32_board(flasher.get(), chip, true, t)?;
    let flash_size = board.flash_size;
    report(FlashUpdate::Board(board.clone()));
    plan.check_fits(flash_size)?;
    let mut segments = if req.settings_only {
        Vec::new()
    } else {
        esp32::segments(flasher.get(), plan, flash_size).map_err(|e| t.fail(&e))?
    };
    if !req.settings_only && plan.kind == ImageKind::App && plan.offset == ESP32_FIRST_APP {
        // As the Arduino IDE does with boot_app0.bin: an erased otadata makes the bootloader start
        // the app just written, not an OTA slot a past update selected.
        report(FlashUpdate::Note(
            "Erasing otadata (0xe000), so the board boots the app just written.".into(),
        ));
        segments.push((ESP32_OTADATA, vec![0xFF; 0x2000]));
    }
    segments.extend(device_area(req, plan, chip, flash_size)?);
    let mut meter = Meter::new(segments.iter().map(|(_, d)| d.len() as u64).sum());
    t.total = meter.total();
    let opts = WriteOptions { verify, skip_unchanged: skip, erase_all: req.erase_all };
    let mut last_phase = Phase::Connect;
    let result = {
        let mut track = |u: FlashUpdate| {
            if let FlashUpdate::Phase(p) = u {
                last_phase = p;
            }
            report(u);
        };
        esp32::write(flasher.get(), &segments, opts, &mut meter, &mut track)
    };
    t.written = meter.written();
    t.phase = last_phase;
    let written = result.map_err(|e| t.fail(&e))?;
    if let Some(e) = &written.reset_error {
        report(FlashUpdate::Note(format!(
            "The image is written, but the board could not be restarted ({e}): press its RESET button."
        )));
    }
    t.phase(Phase::Reset, report);
    // espflash restarted a board with reset lines itself; without them it left the ROM waiting.
    let started = match lines {
        ResetLines::Available => written.reset_error.is_none(),
        ResetLines::None => start_firmware(flasher.get().connection(), lines, esp32::run_firmware, report),
    };
    let verification = if written.all_skipped {
        Verification::Unchanged
    } else if verify {
        Verification::Verified
    } else {
        Verification::NotVerified
    };
    Ok(FlashOutcome {
        board,
        kind: plan.kind,
        offset: plan.offset,
        bytes: meter.total(),
        md5: md5_hex(&plan.data),
        version: plan.version.clone(),
        verification,
        elapsed: Duration::ZERO,
        started,
        esp8266: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_steps_down_to_115200() {
        assert_eq!(ladder(921_600), [921_600, 460_800, 230_400, 115_200]);
        assert_eq!(ladder(460_800), [460_800, 230_400, 115_200]);
        assert_eq!(ladder(115_200), [115_200]);
        assert_eq!(ladder(1_500_000), [1_500_000, 921_600, 460_800, 230_400, 115_200]);
        assert_eq!(ladder(300_000), [300_000, 230_400, 115_200]);
    }

    #[test]
    fn a_bad_file_is_refused_before_the_port_is_touched() {
        let req = FlashRequest::new("/dev/this-port-does-not-exist", b"<!DOCTYPE html><html>".to_vec());
        let err = flash(&req, &Cancel::new(), &mut |_| {}).unwrap_err();
        assert!(matches!(err, FlashError::BadImage(_)), "{err:?}");
    }

    #[test]
    fn a_missing_port_is_named() {
        let image = otaforge_firmware::ImageBuilder::arduino_esp8266().target_size(8192).build();
        let req = FlashRequest::new("/dev/ttyUSB-nope", image);
        let err = flash(&req, &Cancel::new(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().starts_with("There is no serial port /dev/ttyUSB-nope."), "{err}");
    }
}
