//! What a virtual device shows the outside world: its serial log, a stream of events and a status
//! snapshot (the GUI's "Try without hardware" panel, the fleet summary and the tests all read
//! these; nobody reaches into the device).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, watch};

use super::tls::TlsFailure;
use crate::serial::UartBytes;
use otaforge_firmware::Chip;

/// The reference sketches' `Serial.begin(OTA_SERIAL_BAUD)`.
pub const SKETCH_BAUD: u32 = 115_200;

/// How a failed check ended, as the reference firmware logs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckFailure {
    /// `ESPhttpUpdate.getLastError()`.
    pub code: i32,
    /// `getLastErrorString()`.
    pub message: String,
    /// `client.getLastSSLError()` when it is not 0.
    pub tls: Option<(i32, String)>,
}

impl CheckFailure {
    pub(super) fn new(chip: Chip, code: i32, detail: &str, tls: Option<TlsFailure>) -> CheckFailure {
        CheckFailure {
            code,
            message: super::codes::last_error_string(chip, code, detail),
            tls: tls.map(|t| (t.code, t.text)),
        }
    }
}

/// The end of one update check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum CheckOutcome {
    /// 304: nothing newer.
    UpToDate,
    /// A new image was written and verified; the device reboots into it.
    Updated {
        /// Bytes downloaded.
        bytes: u64,
        /// `x-version` from the server, if it sent one.
        version: Option<String>,
    },
    /// The check failed.
    Failed(CheckFailure),
}

/// What the device is doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Activity {
    /// Resetting and starting the firmware.
    Booting,
    /// Waiting for the next check.
    Idle,
    /// Connecting and asking the server.
    Checking,
    /// Writing an update: bytes done of total.
    Downloading {
        /// Bytes written so far.
        done: u64,
        /// Content-Length.
        total: u64,
    },
    /// It does not run: the boot failed or the firmware has no settings (why, in words).
    Halted(String),
    /// Held in reset (being flashed over serial, or switched off).
    Off,
}

/// A snapshot of the device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceStatus {
    /// Station MAC.
    pub mac: String,
    /// The chip.
    pub chip: Chip,
    /// Device name (baked, or the firmware's default).
    pub name: String,
    /// The Wi-Fi network it joined (`None`: the one built into its firmware).
    pub wifi_ssid: Option<String>,
    /// What it is doing.
    pub activity: Activity,
    /// The version the running firmware reports (None until it boots one with settings).
    pub version: Option<String>,
    /// MD5 of the running sketch.
    pub sketch_md5: Option<String>,
    /// Boots so far.
    pub boots: u64,
    /// Checks made.
    pub checks: u64,
    /// Updates downloaded, verified and booted into.
    pub updates: u64,
    /// Checks that failed.
    pub failures: u64,
    /// The last check's outcome.
    pub last_outcome: Option<CheckOutcome>,
}

/// Something that happened on the device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum DeviceEvent {
    /// A line on its serial port.
    Log(String),
    /// It booted a firmware reporting this version.
    Booted {
        /// The version, when the firmware has settings.
        version: Option<String>,
    },
    /// A check ended.
    Checked(CheckOutcome),
    /// It stopped running (halted or switched off).
    Stopped,
}

/// The device's console: log lines (kept, broadcast and optionally sent to a serial port),
/// events and status, in one handle the running device writes through.
#[derive(Clone)]
pub struct Console {
    lines: Arc<Mutex<VecDeque<String>>>,
    keep: usize,
    events: broadcast::Sender<DeviceEvent>,
    status: Arc<watch::Sender<DeviceStatus>>,
    serial: Option<mpsc::UnboundedSender<UartBytes>>,
}

impl Console {
    /// A console keeping the last `keep` lines.
    pub fn new(status: DeviceStatus, keep: usize) -> Console {
        Console {
            lines: Arc::new(Mutex::new(VecDeque::new())),
            keep,
            events: broadcast::channel(256).0,
            status: Arc::new(watch::channel(status).0),
            serial: None,
        }
    }

    /// Also prints every log line on `serial` (a board's UART) at [`SKETCH_BAUD`], and lets
    /// [`Console::uart`] print there.
    pub fn with_serial(mut self, serial: mpsc::UnboundedSender<UartBytes>) -> Console {
        self.serial = Some(serial);
        self
    }

    /// Logs a line the reference firmware prints (with its `[otaforge] ` prefix).
    pub fn log(&self, line: impl Into<String>) {
        let line = format!("[otaforge] {}", line.into());
        // OTA_LOG's format ends in "\n" alone (printf_P, no println).
        self.uart(SKETCH_BAUD, format!("{line}\n"));
        self.keep_line(line);
    }

    /// Logs a line that is not the firmware's (the simulator saying what a real chip would only
    /// show as ROM noise or silence), kept and sent like the others.
    pub fn raw(&self, line: impl Into<String>) {
        let line = line.into();
        self.uart(SKETCH_BAUD, format!("{line}\r\n"));
        self.keep_line(line);
    }

    /// Prints on the serial port only, at `baud`: what is not a log line, such as the ROM's boot
    /// messages.
    pub fn uart(&self, baud: u32, bytes: impl Into<Vec<u8>>) {
        if let Some(s) = &self.serial {
            let _ = s.send(UartBytes { baud, bytes: bytes.into() });
        }
    }

    fn keep_line(&self, line: String) {
        {
            let mut l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
            if l.len() == self.keep {
                l.pop_front();
            }
            l.push_back(line.clone());
        }
        let _ = self.events.send(DeviceEvent::Log(line));
    }

    /// Emits an event.
    pub fn event(&self, e: DeviceEvent) {
        let _ = self.events.send(e);
    }

    /// Changes the status.
    pub fn update(&self, f: impl FnOnce(&mut DeviceStatus)) {
        self.status.send_modify(f);
    }

    /// The kept log lines.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Subscribes to events.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.events.subscribe()
    }

    /// Watches the status.
    pub fn watch(&self) -> watch::Receiver<DeviceStatus> {
        self.status.subscribe()
    }

    /// The current status.
    pub fn status(&self) -> DeviceStatus {
        self.status.borrow().clone()
    }
}
