//! Step 3, Flash: pick a port (or start a virtual board), choose the firmware, flash with
//! progress and Cancel, read the diagnosis when it fails, and watch what the board prints.
//! The drawing is in [`view`].

mod board_settings;
mod monitor;
mod view;

use std::collections::VecDeque;
use std::path::PathBuf;

use super::{Step, StepStatus, widgets};
use crate::worker::{Command, FlashCommand, FlashEvent, ImageChoice, Worker};
use otaforge_firmware::Chip;
use otaforge_flash::{BoardInfo, FlashOutcome, FlashUpdate, Phase, PortChoice, PortInfo, Progress};

/// Labels of the step's controls (tests find them by these texts).
pub mod labels {
    /// The flash button.
    pub const FLASH: &str = "Flash device";
    /// The cancel button.
    pub const CANCEL: &str = "Cancel";
    /// Starts a simulated board.
    pub const ADD_VIRTUAL: &str = "Add a virtual device";
    /// The port typed by hand.
    pub const TYPED_PORT: &str = "Port path";
    /// The firmware file path.
    pub const FILE: &str = "Firmware file";
    /// Checks the typed file.
    pub const USE_FILE: &str = "Use this file";
    /// Identifies the board.
    pub const DETECT: &str = "Detect board";
    /// Starts the serial monitor.
    pub const MONITOR: &str = "Start monitor";
    /// Stops it.
    pub const STOP_MONITOR: &str = "Stop monitor";
    /// The board's own name.
    pub const DEVICE_NAME: &str = "Device name";
    /// Its Wi-Fi network.
    pub const WIFI_SSID: &str = "Wi-Fi network";
    /// Its Wi-Fi password.
    pub const WIFI_PASSWORD: &str = "Wi-Fi password";
    /// Writes only the board's own settings.
    pub const PROVISION: &str = "Write only these settings";
}

/// Baud rates offered (the fastest is tried first; slower ones follow on failure).
const BAUDS: [u32; 4] = [921_600, 460_800, 230_400, 115_200];
/// Monitor rates: sketches, and the ESP8266 ROM's boot messages.
const MONITOR_BAUDS: [u32; 2] = [115_200, 74_880];
/// Lines kept in the monitor pane.
const MONITOR_LINES: usize = 500;

/// What the Flash step remembers between runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    port: String,
    file: String,
    baud: u32,
    monitor_baud: u32,
    monitor_after: bool,
}

impl Default for Remembered {
    fn default() -> Self {
        Remembered {
            port: String::new(),
            file: String::new(),
            baud: otaforge_flash::DEFAULT_BAUD,
            monitor_baud: 115_200,
            monitor_after: true,
        }
    }
}

/// State of the Flash step (fields are public so UI tests can read them).
pub struct FlashStep {
    /// Ports found (virtual boards first), once reported.
    pub ports: Option<Vec<PortInfo>>,
    /// The chosen port (one from the list or a typed path).
    pub port: String,
    /// Said when the port was chosen for the user among several likely boards.
    pub port_note: Option<String>,
    file: String,
    /// The checked file.
    pub image: Option<ImageChoice>,
    chip: Option<Chip>,
    baud: u32,
    /// Whether a flash runs.
    pub running: bool,
    phase: Option<Phase>,
    /// The board, as detected (by Detect board or during the last flash).
    pub board: Option<BoardInfo>,
    /// Why the last Detect board did not work.
    pub detect_error: Option<String>,
    detecting: bool,
    /// Bytes written so far.
    pub progress: Option<Progress>,
    notes: Vec<String>,
    /// The last flash's outcome.
    pub outcome: Option<Box<FlashOutcome>>,
    /// The last result in words: (worked, text).
    pub message: Option<(bool, String)>,
    /// The MAC whose flash the update server is to confirm.
    pub awaiting: Option<String>,
    /// Whether the update server confirmed the last ESP8266 flash.
    pub confirmed: bool,
    watching: bool,
    monitor_baud: u32,
    monitor_after: bool,
    /// Whether the monitor runs.
    pub monitoring: bool,
    /// The port the monitor has open (`None` while it is still opening it).
    pub monitor_open: Option<String>,
    /// The monitor's lines.
    pub monitor: VecDeque<String>,
    monitor_note: Option<String>,
    adding_virtual: bool,
    /// This board's own settings, as typed (the password is never remembered).
    pub own: board_settings::OwnSettings,
}

impl FlashStep {
    pub(super) fn new(remembered: Remembered) -> Self {
        FlashStep {
            ports: None,
            port: remembered.port,
            port_note: None,
            file: remembered.file,
            image: None,
            chip: None,
            baud: if remembered.baud == 0 { otaforge_flash::DEFAULT_BAUD } else { remembered.baud },
            running: false,
            phase: None,
            board: None,
            detect_error: None,
            detecting: false,
            progress: None,
            notes: Vec::new(),
            outcome: None,
            message: None,
            awaiting: None,
            confirmed: false,
            watching: false,
            monitor_baud: if remembered.monitor_baud == 0 { 115_200 } else { remembered.monitor_baud },
            monitor_after: remembered.monitor_after,
            monitoring: false,
            monitor: VecDeque::new(),
            monitor_open: None,
            monitor_note: None,
            adding_virtual: false,
            own: board_settings::OwnSettings::default(),
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        Remembered {
            port: self.port.clone(),
            file: self.file.clone(),
            baud: self.baud,
            monitor_baud: self.monitor_baud,
            monitor_after: self.monitor_after,
        }
    }

    pub(super) fn status(&self) -> StepStatus {
        match &self.message {
            Some((true, _)) => StepStatus::Done,
            Some((false, _)) => StepStatus::Attention,
            None => StepStatus::Todo,
        }
    }

    /// Called every frame the step is not on screen: stop watching the ports.
    pub(super) fn hidden(&mut self, worker: &Worker) {
        if self.watching {
            self.watching = false;
            worker.send(Command::Flash(FlashCommand::WatchPorts(false)));
        }
    }

    /// Makes `image` the one to flash (the Firmware step just baked or built it); checked at once.
    pub fn preselect(&mut self, image: PathBuf, worker: &Worker) {
        self.file = image.display().to_string();
        self.image = None;
        worker.send(Command::Flash(FlashCommand::CheckImage(image)));
    }

    /// The firmware file as typed (or pre-selected).
    pub fn file(&self) -> &str {
        &self.file
    }

    /// A file dropped on the window while this step is open.
    pub(super) fn dropped(&mut self, path: PathBuf, worker: &Worker) {
        self.file = path.display().to_string();
        worker.send(Command::Flash(FlashCommand::CheckImage(path)));
    }

    pub(super) fn on_event(&mut self, event: FlashEvent) {
        match event {
            FlashEvent::Ports(ports) => {
                // The CLI's choice too; where it is one of several, the app says so.
                let choice = PortChoice::among(&ports);
                if self.port.is_empty()
                    && let Some(chosen) = choice.chosen()
                {
                    self.port = chosen.path.clone();
                    self.port_note = choice.note("pick another in the list");
                }
                self.ports = Some(ports);
            }
            FlashEvent::VirtualDeviceAdded(path) => {
                self.adding_virtual = false;
                self.port = path;
            }
            FlashEvent::VirtualDeviceFailed(why) => {
                self.adding_virtual = false;
                self.message = Some((false, format!("The virtual device could not start: {why}")));
            }
            // Only the answer for the file chosen now: a check still under way for an earlier
            // one (the image step 2 handed over, say) must not undo the user's choice.
            FlashEvent::ImageChecked(choice) => {
                if choice.path.display().to_string() == self.file.trim() {
                    self.image = Some(choice);
                }
            }
            FlashEvent::Identified(result) => {
                self.detecting = false;
                match result {
                    Ok(b) => {
                        self.board = Some(b);
                        self.detect_error = None;
                    }
                    Err(e) => self.detect_error = Some(e),
                }
            }
            FlashEvent::Update(update) => match update {
                FlashUpdate::Phase(p) => self.phase = Some(p),
                FlashUpdate::Board(b) => self.board = Some(b),
                FlashUpdate::Progress(p) => self.progress = Some(p),
                FlashUpdate::Note(n) => self.notes.push(n),
            },
            FlashEvent::Done { outcome, awaiting_confirmation } => {
                self.running = false;
                self.message = Some((true, outcome.summary()));
                if self.monitor_after {
                    // The worker starts it right after the flash.
                    self.monitoring = true;
                    self.monitor_open = None;
                    self.monitor_note = None;
                }
                self.awaiting = if awaiting_confirmation { outcome.board.mac.clone() } else { None };
                self.outcome = Some(outcome);
            }
            FlashEvent::Failed(why) => {
                self.running = false;
                self.message = Some((false, why));
            }
            FlashEvent::Confirmed { mac } => {
                if self.awaiting.as_deref() == Some(mac.as_str()) {
                    self.confirmed = true;
                }
            }
            FlashEvent::MonitorOpened(port) => {
                if self.monitoring {
                    self.monitor_open = Some(port);
                }
            }
            FlashEvent::MonitorLine(line) => {
                if self.monitor.len() == MONITOR_LINES {
                    self.monitor.pop_front();
                }
                // The monospace font has no U+FFFD: bytes that were not text (the boot ROM's
                // 74880-baud messages read at 115200) show as '?' instead of empty boxes.
                self.monitor.push_back(line.replace('\u{FFFD}', "?"));
            }
            FlashEvent::MonitorStopped(why) => {
                self.monitoring = false;
                self.monitor_open = None;
                self.monitor_note = why;
            }
        }
    }

    /// The board found (by Detect board or a flash) while its port is still listed, for the
    /// device list's Open monitor.
    pub fn usb_board(&self) -> Option<crate::ui::serve::UsbBoard> {
        let b = self.board.as_ref()?;
        let mac = b.mac.clone()?;
        let listed = self.ports.as_ref()?.iter().any(|p| p.path == b.port);
        listed.then(|| crate::ui::serve::UsbBoard {
            mac,
            port: b.port.clone(),
            busy: self.running || self.detecting,
        })
    }

    /// Shows what the board on `port` prints (asked from the device list).
    pub(super) fn open_monitor(&mut self, port: &str, worker: &Worker) {
        if self.monitoring && self.port == port {
            return;
        }
        self.port = port.to_string();
        self.monitoring = true;
        self.monitor_open = None;
        self.monitor_note = None;
        self.monitor.clear();
        worker
            .send(Command::Flash(FlashCommand::Monitor { port: port.to_string(), baud: self.monitor_baud }));
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        if !self.watching {
            self.watching = true;
            worker.send(Command::Flash(FlashCommand::WatchPorts(true)));
            // The file remembered from last time is checked again (it may have changed).
            if self.image.is_none() && !self.file.trim().is_empty() {
                worker.send(Command::Flash(FlashCommand::CheckImage(PathBuf::from(self.file.trim()))));
            }
        }
        ui.heading("3. Flash");
        ui.label(
            "Write firmware to a board over USB (an ESP8266 or any ESP32), or to a virtual one. The chip is \
             detected and the image checked against it before anything is written.",
        );
        ui.add_space(4.0);
        // Each part keeps its widgets' ids when a part above changes: the port list changes
        // whenever a board is plugged in or out (see widgets::section).
        widgets::section(ui, "flash.port", |ui| self.port_section(ui, worker));
        ui.add_space(4.0);
        widgets::section(ui, "flash.file", |ui| self.file_section(ui, worker));
        widgets::section(ui, "flash.settings", |ui| self.own_settings_section(ui, worker));
        ui.add_space(4.0);
        widgets::section(ui, "flash.flash", |ui| self.flash_section(ui, worker));
        ui.add_space(8.0);
        widgets::section(ui, "flash.monitor", |ui| self.monitor_section(ui, worker));
        ui.separator();
        let what = match &self.message {
            Some((true, _)) => {
                "start the update server: the board checks in with it, and updates from it from now on."
            }
            _ => "once the board is flashed, start the update server it checks in with.",
        };
        widgets::section(ui, "flash.next", |ui| widgets::next_step(ui, Step::Serve, what));
    }
}
