//! One attempt at flashing an ESP8266: through Espressif's flasher stub when the user's esptool
//! has one (uploaded through the ROM, then compressed writes at the requested baud rate and an
//! MD5 check of what was written), else through the ROM alone (uncompressed, confirmed later by
//! the update server), saying why and how to get the faster path.
//!
//! A stub that the ROM refuses, or that never greets, is given up for the rest of the flash and
//! the ROM writes instead. A failure once the stub runs hands the chip back to the ROM when the
//! stub still listens, so a slower attempt can start from scratch even on a board without reset
//! lines.

use std::time::Duration;

use espflash::connection::Connection;

use super::connect::{self, Tracker};
use super::diagnosis::FlashError;
use super::esptool_stub::{self, HOW_TO_GET, SearchEnv, Stub, StubSource};
use super::link::{Link, ResetLines};
use super::plan::Plan;
use super::progress::{BoardInfo, FlashUpdate, Meter, Phase};
use super::session::{
    Esp8266Route, Failure, FlashOutcome, FlashRequest, Verification, check_chip, device_area, start_firmware,
};
use super::{ROM_BAUD, esp8266, esp8266_stub};
use otaforge_firmware::{Chip, md5_hex};

/// Where the stub stands across the attempts of one flash.
pub(super) enum StubState {
    /// Not looked for yet.
    Unknown,
    /// Found and checked.
    Ready(Box<Stub>),
    /// The ROM writes, for this reason (told to the user once, kept for the summary).
    Rom(RomReason),
}

/// Why the ROM writes instead of a stub.
#[derive(Clone)]
pub(super) struct RomReason {
    /// What happened, as a sentence.
    reason: String,
    /// Whether to add how to get the stub path (when esptool is missing or unusable).
    hint: bool,
}

impl RomReason {
    fn hint(&self) -> String {
        if self.hint { format!(" {HOW_TO_GET}") } else { String::new() }
    }

    /// Before writing.
    fn note(&self) -> String {
        format!("{} Writing through the ROM alone (uncompressed, slower).{}", self.reason, self.hint())
    }

    /// In the outcome.
    fn summary(&self) -> String {
        format!("{} The ROM alone wrote it.{}", self.reason, self.hint())
    }
}

impl StubState {
    /// Looks for the stub the first time; tells the user when the ROM will write instead.
    fn resolve(&mut self, source: &StubSource, report: &mut dyn FnMut(FlashUpdate)) {
        if !matches!(self, StubState::Unknown) {
            return;
        }
        *self = match esptool_stub::for_source(source, &SearchEnv::from_process()) {
            Ok(Some(stub)) => StubState::Ready(Box::new(stub)),
            Ok(None) => {
                StubState::Rom(RomReason { reason: "No flasher stub, as asked.".into(), hint: false })
            }
            Err(e) => StubState::Rom(RomReason { reason: e.to_string(), hint: true }),
        };
        if let StubState::Rom(why) = self {
            report(FlashUpdate::Note(why.note()));
        }
    }
}

/// Flashes the ESP8266 whose ROM answers on `conn`.
#[allow(clippy::too_many_arguments)] // one attempt's whole context, as the ESP32 attempt has it
pub(super) fn attempt(
    req: &FlashRequest,
    plan: &Plan,
    baud: u32,
    lines: ResetLines,
    conn: &mut Link<Connection>,
    t: &mut Tracker<'_>,
    stub: &mut StubState,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<FlashOutcome, Failure> {
    check_chip(req, plan, Chip::Esp8266)?;
    stub.resolve(&req.stub, report);
    let why = match stub {
        StubState::Ready(s) => match with_stub(req, plan, baud, lines, conn.get(), t, s, report) {
            Ok(outcome) => return Ok(outcome),
            Err(Outcome::Failed(failure)) => return Err(failure),
            Err(Outcome::UseRom(reason)) => {
                let why = RomReason { reason, hint: false };
                report(FlashUpdate::Note(why.note()));
                *stub = StubState::Rom(why.clone());
                why
            }
        },
        StubState::Rom(why) => why.clone(),
        StubState::Unknown => unreachable!("resolved above"),
    };
    // The ROM auto-bauds and keeps no state, so another try at a slower rate always works.
    rom(req, plan, baud, lines, conn.get(), t, why.summary(), report)
        .map_err(|error| Failure { error, can_retry: true })
}

/// How a stub attempt ended, when it did not flash.
enum Outcome {
    /// The stub is out of the picture and the ROM still listens: write through it instead
    /// (the sentence says why).
    UseRom(String),
    /// The attempt failed.
    Failed(Failure),
}

impl From<FlashError> for Outcome {
    fn from(error: FlashError) -> Self {
        Outcome::Failed(Failure { error, can_retry: true })
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn with_stub(
    req: &FlashRequest,
    plan: &Plan,
    baud: u32,
    lines: ResetLines,
    c: &mut Connection,
    t: &mut Tracker<'_>,
    stub: &Stub,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<FlashOutcome, Outcome> {
    // What the board is, from the ROM at its own rate, as esptool does.
    let mut board = connect::esp8266_board(c, t)?;
    plan.check_fits(board.flash_size)?;
    t.phase(Phase::UploadStub, report);
    report(FlashUpdate::Note(format!("Uploading {} to the board.", stub.describe())));
    match esp8266_stub::upload(c, stub) {
        Ok(()) => {}
        Err(esp8266_stub::StartError::Refused(e)) => {
            return Err(Outcome::UseRom(format!("The board's ROM refused {} ({e}).", stub.describe())));
        }
        Err(esp8266_stub::StartError::NoGreeting(other)) => {
            let got = other.map(|f| format!("; {} other bytes came instead", f.len())).unwrap_or_default();
            let why = format!(
                "{} did not start on the board (it never sent its OHAI greeting{got}); otaforge flash --no-stub skips it.",
                capitalize(&stub.describe())
            );
            // Whatever ran in RAM may have crashed the chip back into its ROM; with reset lines,
            // `begin` puts it there.
            if t.cancel.is_cancelled() {
                return Err(FlashError::Cancelled { written: 0, total: 0 }.into());
            }
            if c.set_baud(ROM_BAUD).and_then(|_| c.begin()).is_ok() {
                return Err(Outcome::UseRom(why));
            }
            return Err(Outcome::Failed(Failure {
                error: FlashError::StubDidNotStart { stub: stub.describe() },
                can_retry: false,
            }));
        }
        Err(esp8266_stub::StartError::Link(e)) => return Err(t.fail(&e).into()),
    }
    match stub_flash(req, plan, baud, c, t, &mut board, report) {
        Ok(verification) => {
            t.phase(Phase::Reset, report);
            let started = start_firmware(c, lines, esp8266_stub::run_firmware, report);
            Ok(outcome(plan, board, verification, started, Esp8266Route::Stub { stub: stub.describe() }))
        }
        Err(error) => {
            // A stub that still listens hands the chip back to its ROM, so a slower attempt can
            // start again; a board with reset lines is reset by the next attempt anyway.
            let gone = t.cancel.is_cancelled()
                || matches!(error, FlashError::Cancelled { .. } | FlashError::PortVanished { .. });
            let back = !gone && esp8266_stub::back_to_rom(c);
            Err(Outcome::Failed(Failure { error, can_retry: back || lines == ResetLines::Available }))
        }
    }
}

/// Everything from a running stub to a written (and checked) flash.
#[allow(clippy::too_many_arguments)]
fn stub_flash(
    req: &FlashRequest,
    plan: &Plan,
    baud: u32,
    c: &mut Connection,
    t: &mut Tracker<'_>,
    board: &mut BoardInfo,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<Verification, FlashError> {
    if baud != ROM_BAUD {
        esp8266_stub::change_baud(c, baud, ROM_BAUD).map_err(|e| t.fail(&e))?;
        t.baud = baud;
    }
    if let Some(size) = board.flash_size {
        esp8266_stub::set_flash_size(c, size as u32).map_err(|e| t.fail(&e))?;
    }
    board.baud = t.baud;
    board.stub = true;
    report(FlashUpdate::Board(board.clone()));

    let area = device_area(req, plan, Chip::Esp8266, board.flash_size)?;
    let image = (!req.settings_only).then(|| (plan.offset, plan.data.clone()));
    let regions: Vec<(u32, Vec<u8>)> = image.into_iter().chain(area).collect();
    let mut meter = Meter::new(regions.iter().map(|(_, d)| d.len() as u64).sum());
    t.total = meter.total();
    if req.erase_all {
        t.phase(Phase::Erase, report);
        esp8266_stub::erase_all(c).map_err(|e| t.fail(&e))?;
    }
    let mut written = Vec::new();
    for (offset, data) in &regions {
        let expected = md5_hex(data);
        if req.skip_unchanged && !req.erase_all {
            t.phase = Phase::Verify;
            let held = esp8266_stub::md5(c, *offset, data.len() as u32).map_err(|e| t.fail(&e))?;
            if held == expected {
                report(FlashUpdate::Note(format!(
                    "The flash at 0x{offset:x} already holds this data (same MD5): skipped."
                )));
                if let Some(p) = meter.record(meter.written() + data.len() as u64) {
                    report(FlashUpdate::Progress(p));
                }
                continue;
            }
        }
        t.phase = Phase::Write;
        let result = esp8266_stub::write(c, *offset, data, &mut meter, t.cancel, report);
        t.written = meter.written();
        result.map_err(|e| t.fail(&e))?;
        written.push((*offset, data.len() as u32, expected));
    }
    if written.is_empty() && !regions.is_empty() {
        return Ok(Verification::Unchanged);
    }
    if !req.verify {
        return Ok(Verification::NotVerified);
    }
    t.phase(Phase::Verify, report);
    for (offset, len, expected) in written {
        let held = esp8266_stub::md5(c, offset, len).map_err(|e| t.fail(&e))?;
        if held != expected {
            log::debug!("MD5 at 0x{offset:x}+{len}: board {held}, image {expected}");
            return Err(FlashError::VerifyFailed);
        }
    }
    Ok(Verification::Verified)
}

/// Through the ROM alone: uncompressed 1 KiB blocks, faster only if the ROM follows a faster
/// SYNC; the update server confirms the flash later. `why` goes into the outcome.
#[allow(clippy::too_many_arguments)]
fn rom(
    req: &FlashRequest,
    plan: &Plan,
    baud: u32,
    lines: ResetLines,
    c: &mut Connection,
    t: &mut Tracker<'_>,
    why: String,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<FlashOutcome, FlashError> {
    if baud != ROM_BAUD {
        // The ROM has no CHANGE_BAUDRATE, but it measures the rate of each SYNC.
        let faster = c.set_baud(baud).and_then(|_| c.begin());
        if faster.is_ok() {
            t.baud = baud;
        } else {
            if t.cancel.is_cancelled() {
                return Err(FlashError::Cancelled { written: 0, total: 0 });
            }
            report(FlashUpdate::Note(format!(
                "The ESP8266 did not answer at {baud} baud; continuing at {ROM_BAUD} baud."
            )));
            c.set_baud(ROM_BAUD).and_then(|_| c.begin()).map_err(|e| t.fail(&e))?;
        }
    }
    let board = connect::esp8266_board(c, t)?;
    let flash_size = board.flash_size;
    report(FlashUpdate::Board(board.clone()));
    plan.check_fits(flash_size)?;
    if req.erase_all {
        report(FlashUpdate::Note(
            "The ESP8266 ROM cannot erase the whole chip; only the image's sectors are erased.".into(),
        ));
    }
    let area_len =
        if req.device_settings.is_some() { otaforge_firmware::device_settings::SECTOR as u64 } else { 0 };
    let image_len = if req.settings_only { 0 } else { plan.data.len() as u64 };
    let mut meter = Meter::new(image_len + area_len);
    t.total = meter.total();
    let mut last_phase = Phase::Erase;
    let written = {
        let mut track = |u: FlashUpdate| {
            if let FlashUpdate::Phase(p) = u {
                last_phase = p;
            }
            report(u);
        };
        let area = device_area(req, plan, Chip::Esp8266, flash_size)?;
        let image = (!req.settings_only).then(|| (plan.offset, plan.data.clone()));
        let mut result = Ok(());
        for (offset, data) in image.into_iter().chain(area) {
            result = esp8266::write(c, offset, &data, &mut meter, t.cancel, &mut track);
            if result.is_err() {
                break;
            }
        }
        result
    };
    t.written = meter.written();
    t.phase = last_phase;
    written.map_err(|e| t.fail(&e))?;
    report(FlashUpdate::Note(
        "The ESP8266's ROM cannot read its flash back, so this write is not verified here: OTA Forge confirms it when the device first checks in with the update server."
            .into(),
    ));
    t.phase(Phase::Reset, report);
    let started = start_firmware(c, lines, esp8266::run_firmware, report);
    Ok(outcome(plan, board, Verification::ServerWillConfirm, started, Esp8266Route::Rom { why }))
}

/// What a flash of `plan` that went through `route` comes to (the session fills in `elapsed`).
fn outcome(
    plan: &Plan,
    board: BoardInfo,
    verification: Verification,
    started: bool,
    route: Esp8266Route,
) -> FlashOutcome {
    FlashOutcome {
        board,
        kind: plan.kind,
        offset: plan.offset,
        bytes: plan.data.len() as u64,
        md5: md5_hex(&plan.data),
        version: plan.version.clone(),
        verification,
        elapsed: Duration::ZERO,
        started,
        esp8266: Some(route),
    }
}
