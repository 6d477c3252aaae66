//! Reaching the board's ROM bootloader and finding out what it is: open the port, sync
//! (retrying, and telling the user how to enter download mode, until a deadline), read the chip
//! magic, MAC and flash size. [`identify`] does only this and writes nothing.

use std::time::{Duration, Instant};

use espflash::connection::{Connection, ResetAfterOperation, ResetBeforeOperation};
use espflash::flasher::Flasher;
use serialport::UsbPortInfo;

use super::diagnosis::{Context, FlashError, diagnose};
use super::link::{self, Cancel, Link, ResetLines};
use super::progress::{BoardInfo, FlashUpdate, Phase};
use super::{ROM_BAUD, esp32, esp8266, ports};
use otaforge_firmware::Chip;

/// Where a flash stands, for diagnosing what goes wrong.
pub(super) struct Tracker<'a> {
    pub(super) port: &'a str,
    pub(super) phase: Phase,
    pub(super) baud: u32,
    pub(super) written: u64,
    pub(super) total: u64,
    pub(super) cancel: &'a Cancel,
}

impl<'a> Tracker<'a> {
    pub(super) fn new(port: &'a str, cancel: &'a Cancel) -> Self {
        Tracker { port, phase: Phase::Connect, baud: ROM_BAUD, written: 0, total: 0, cancel }
    }

    /// The diagnosis of `e`, given where things stand.
    pub(super) fn fail(&self, e: &(dyn std::error::Error + 'static)) -> FlashError {
        let d = diagnose(
            e,
            &Context {
                port: self.port,
                phase: self.phase,
                written: self.written,
                total: self.total,
                baud: self.baud,
                cancelled: self.cancel.is_cancelled(),
            },
        );
        log::debug!("flash failed while {}: {e:?} → {d:?}", self.phase.doing());
        d
    }

    /// Enters and reports a phase.
    pub(super) fn phase(&mut self, phase: Phase, report: &mut dyn FnMut(FlashUpdate)) {
        self.phase = phase;
        report(FlashUpdate::Phase(phase));
    }
}

/// A board whose ROM answers.
pub(super) struct Connected {
    pub(super) conn: Link<Connection>,
    pub(super) lines: ResetLines,
    /// The ROM said it is an ESP8266 (which espflash cannot flash).
    pub(super) esp8266: bool,
}

/// Opens the port at the ROM's rate and syncs, trying until `timeout`.
pub(super) fn connect(
    t: &mut Tracker<'_>,
    timeout: Duration,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<Connected, FlashError> {
    t.phase(Phase::Connect, report);
    let (port, lines) = link::open(t.port, ROM_BAUD, t.cancel)?;
    let (vid, pid) = ports::usb_id(t.port).unwrap_or((0, 0));
    let usb = UsbPortInfo { vid, pid, serial_number: None, manufacturer: None, product: None };
    // A pty (a virtual device) or an adapter without modem lines cannot reset the board.
    let (before, after) = match lines {
        ResetLines::Available => (ResetBeforeOperation::DefaultReset, ResetAfterOperation::HardReset),
        ResetLines::None => (ResetBeforeOperation::NoReset, ResetAfterOperation::NoReset),
    };
    let mut conn = port.map(|p| Connection::new(p, usb, after, before, ROM_BAUD));
    sync(&mut conn, t, timeout, report)?;
    let magic = conn.get().read_reg(esp8266::MAGIC_REG).map_err(|e| t.fail(&e))?;
    Ok(Connected { conn, lines, esp8266: magic == esp8266::MAGIC })
}

/// Syncs with the ROM, retrying (and telling the user how to enter download mode) until
/// `timeout`.
fn sync(
    conn: &mut Link<Connection>,
    t: &Tracker<'_>,
    timeout: Duration,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<(), FlashError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let Err(e) = conn.get().begin() else { return Ok(()) };
        match t.fail(&e) {
            FlashError::NoSync { .. } => {}
            other => return Err(other),
        }
        if !told {
            told = true;
            report(FlashUpdate::Note(
                "No answer from the board yet. Put it in download mode: hold BOOT (or FLASH), tap RESET (EN/RST), release BOOT. Still trying…"
                    .into(),
            ));
        }
        if started.elapsed() >= timeout {
            return Err(FlashError::NoSync { port: t.port.into(), secs: timeout.as_secs().max(1) });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An ESP8266's MAC and flash size, through its ROM.
pub(super) fn esp8266_board(c: &mut Connection, t: &Tracker<'_>) -> Result<BoardInfo, FlashError> {
    let mac = esp8266::read_mac(c).map_err(|e| t.fail(&e))?;
    let flash_size = esp8266::flash_size(esp8266::flash_id(c).map_err(|e| t.fail(&e))?);
    Ok(BoardInfo { port: t.port.into(), chip: Chip::Esp8266, mac, flash_size, baud: t.baud, stub: false })
}

/// Which ESP32-family chip answers (security info, else the magic register).
pub(super) fn esp32_chip(
    c: &mut Connection,
    t: &Tracker<'_>,
) -> Result<(espflash::target::Chip, Chip), FlashError> {
    let detected = c.detect_chip(false).map_err(|e| t.fail(&e))?;
    let chip = esp32::from_espflash(detected).ok_or_else(|| FlashError::UnknownChip {
        what: format!("{detected}, which OTA Forge does not support yet"),
    })?;
    Ok((detected, chip))
}

/// An ESP32-family board's MAC and flash size, through espflash (`stub`: whether the Flasher
/// was asked to load its stub).
pub(super) fn esp32_board(
    flasher: &mut Flasher,
    chip: Chip,
    stub: bool,
    t: &Tracker<'_>,
) -> Result<BoardInfo, FlashError> {
    let info = flasher.device_info().map_err(|e| t.fail(&e))?;
    Ok(BoardInfo {
        port: t.port.into(),
        chip,
        mac: info.mac_address.map(|m| m.to_uppercase()),
        flash_size: Some(u64::from(info.flash_size.size())),
        baud: t.baud,
        stub,
    })
}

/// Identifies the board on `port` (chip, MAC, flash size) through its ROM, writing nothing.
/// A board with reset lines is restarted afterwards; one without stays in its bootloader.
pub fn identify(
    port: &str,
    timeout: Duration,
    cancel: &Cancel,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<BoardInfo, FlashError> {
    let mut t = Tracker::new(port, cancel);
    let Connected { mut conn, lines, esp8266 } = connect(&mut t, timeout, report)?;
    let board = if esp8266 {
        esp8266_board(conn.get(), &t)?
    } else {
        let (detected, chip) = esp32_chip(conn.get(), &t)?;
        let mut flasher = conn
            .try_map(|c| Flasher::try_connect(c, false, false, false, Some(detected), None))
            .map_err(|(e, _)| t.fail(&e))?;
        let board = esp32_board(flasher.get(), chip, false, &t)?;
        if lines == ResetLines::Available {
            let _ = flasher.get().connection().reset();
        }
        return Ok(board);
    };
    if lines == ResetLines::Available {
        let _ = conn.get().reset();
    }
    Ok(board)
}
