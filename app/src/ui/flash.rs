//! Step 3, Flash: pick a port (or start a virtual board), choose the firmware, flash with
//! progress and Cancel, read the diagnosis when it fails, and watch what the board prints.

use std::collections::VecDeque;
use std::path::PathBuf;

use egui::RichText;

use super::StepStatus;
use crate::backend::{Backend, Command, FlashCommand, FlashEvent, ImageChoice};
use crate::firmware::Chip;
use crate::flash::{BoardInfo, FlashOutcome, FlashUpdate, Phase, PortInfo, Progress};

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
            baud: crate::flash::DEFAULT_BAUD,
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
    /// The monitor's lines.
    pub monitor: VecDeque<String>,
    monitor_note: Option<String>,
    adding_virtual: bool,
}

impl FlashStep {
    pub(super) fn new(remembered: Remembered) -> Self {
        FlashStep {
            ports: None,
            port: remembered.port,
            file: remembered.file,
            image: None,
            chip: None,
            baud: if remembered.baud == 0 { crate::flash::DEFAULT_BAUD } else { remembered.baud },
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
            monitor_note: None,
            adding_virtual: false,
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
    pub(super) fn hidden(&mut self, backend: &Backend) {
        if self.watching {
            self.watching = false;
            backend.send(Command::Flash(FlashCommand::WatchPorts(false)));
        }
    }

    /// A file dropped on the window while this step is open.
    pub(super) fn dropped(&mut self, path: PathBuf, backend: &Backend) {
        self.file = path.display().to_string();
        backend.send(Command::Flash(FlashCommand::CheckImage(path)));
    }

    pub(super) fn on_event(&mut self, event: FlashEvent) {
        match event {
            FlashEvent::Ports(ports) => {
                if self.port.is_empty()
                    && let Some(first) =
                        ports.first().filter(|p| p.likelihood <= crate::flash::Likelihood::EspBridge)
                {
                    self.port = first.path.clone();
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
            FlashEvent::ImageChecked(choice) => {
                self.file = choice.path.display().to_string();
                self.image = Some(choice);
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
            FlashEvent::MonitorLine(line) => {
                if self.monitor.len() == MONITOR_LINES {
                    self.monitor.pop_front();
                }
                self.monitor.push_back(line);
            }
            FlashEvent::MonitorStopped(why) => {
                self.monitoring = false;
                self.monitor_note = why;
            }
        }
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        if !self.watching {
            self.watching = true;
            backend.send(Command::Flash(FlashCommand::WatchPorts(true)));
            // The file remembered from last time is checked again (it may have changed).
            if self.image.is_none() && !self.file.trim().is_empty() {
                backend.send(Command::Flash(FlashCommand::CheckImage(PathBuf::from(self.file.trim()))));
            }
        }
        ui.heading("Flash");
        ui.label(
            "Write firmware to a board over USB: an ESP8266, or an ESP32 of any kind. The chip is detected, \
             the image checked against it before anything is written, and a failing fast link retried slower.",
        );
        ui.add_space(8.0);
        self.port_section(ui, backend);
        ui.add_space(8.0);
        self.file_section(ui, backend);
        ui.add_space(8.0);
        self.flash_section(ui, backend);
        ui.add_space(12.0);
        self.monitor_section(ui, backend);
    }

    fn port_section(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        ui.label(RichText::new("Board").strong());
        match &self.ports {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Looking for serial ports…");
                });
            }
            Some(ports) if ports.is_empty() => {
                ui.label(
                    "No serial ports found. Plug the board in with a data cable (charge-only cables have no data \
                     lines); CP210x and CH340 boards may need a driver. No board at hand? Add a virtual one.",
                );
            }
            Some(ports) => {
                for p in ports {
                    let text = format!("{}  —  {}", p.path, p.description);
                    if ui.radio(self.port == p.path, text).clicked() {
                        self.port = p.path.clone();
                    }
                }
            }
        }
        ui.horizontal(|ui| {
            let label = ui.label(labels::TYPED_PORT);
            ui.add(egui::TextEdit::singleline(&mut self.port).desired_width(220.0).hint_text("/dev/ttyUSB0"))
                .labelled_by(label.id)
                .on_hover_text("Any port, virtual devices' /dev/pts/N included (the list cannot show those of other programs).");
            let can_detect = !self.running && !self.detecting && !self.port.trim().is_empty();
            if ui
                .add_enabled(can_detect, egui::Button::new(labels::DETECT))
                .on_hover_text("Ask the board's bootloader what it is; nothing is written.")
                .clicked()
            {
                self.detecting = true;
                self.detect_error = None;
                self.board = None;
                backend.send(Command::Flash(FlashCommand::Identify(self.port.trim().to_string())));
            }
            let adding = self.adding_virtual;
            if ui
                .add_enabled(!adding, egui::Button::new(labels::ADD_VIRTUAL))
                .on_hover_text("A simulated ESP8266 on a pseudo-terminal: its ROM answers like a real board's.")
                .clicked()
            {
                self.adding_virtual = true;
                backend.send(Command::Flash(FlashCommand::AddVirtualDevice(crate::sim::serial::Chip::Esp8266)));
            }
        });
        if self.detecting {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Asking the board… (if nothing happens: hold BOOT, tap RESET)");
            });
        }
        if let Some(e) = &self.detect_error {
            ui.colored_label(ui.visuals().error_fg_color, format!("✖ {e}"));
        }
    }

    fn file_section(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        let label = ui.label(RichText::new(labels::FILE).strong());
        ui.horizontal(|ui| {
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut self.file)
                        .desired_width(420.0)
                        .hint_text("a .bin (or ELF) — or drop it on the window"),
                )
                .labelled_by(label.id);
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if (ui.button(labels::USE_FILE).clicked() || entered) && !self.file.trim().is_empty() {
                backend.send(Command::Flash(FlashCommand::CheckImage(PathBuf::from(self.file.trim()))));
            }
            if ui.button("Choose…").clicked() {
                backend.send(Command::Flash(FlashCommand::PickImage));
            }
        });
        match self.image.as_ref().map(|c| &c.result) {
            Some(Ok(s)) => {
                let version = s.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
                ui.label(format!(
                    "✔ {}, {}{version}",
                    s.description,
                    crate::flash::progress::human_bytes(s.size)
                ));
                for w in &s.warnings {
                    ui.colored_label(ui.visuals().warn_fg_color, format!("⚠ {w}"));
                }
                if let (Some(image), Some(board)) = (s.chip, self.board.as_ref().map(|b| b.chip))
                    && image != board
                {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        format!("⚠ This image is for the {image} but the board is an {board}: it would be refused."),
                    );
                }
            }
            Some(Err(why)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("✖ {why}"));
            }
            None => {}
        }
        ui.horizontal(|ui| {
            ui.label("Chip");
            egui::ComboBox::from_id_salt("flash-chip")
                .selected_text(self.chip.map_or("detect".to_string(), |c| c.name().to_string()))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.chip, None, "detect");
                    for c in Chip::ALL {
                        ui.selectable_value(&mut self.chip, Some(c), c.name());
                    }
                });
            ui.label("Baud");
            egui::ComboBox::from_id_salt("flash-baud").selected_text(self.baud.to_string()).show_ui(
                ui,
                |ui| {
                    for b in BAUDS {
                        ui.selectable_value(&mut self.baud, b, b.to_string());
                    }
                },
            );
            ui.small("slower rates are tried if it fails");
        });
        ui.checkbox(&mut self.monitor_after, "Show what the board prints after flashing");
    }

    fn ready(&self) -> bool {
        !self.running
            && !self.port.trim().is_empty()
            && self
                .image
                .as_ref()
                .is_some_and(|c| c.result.is_ok() && c.path.display().to_string() == self.file.trim())
    }

    fn flash_section(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        ui.horizontal(|ui| {
            if ui.add_enabled(self.ready(), egui::Button::new(labels::FLASH)).clicked() {
                self.start(backend);
            }
            if self.running && ui.button(labels::CANCEL).clicked() {
                backend.send(Command::Flash(FlashCommand::Cancel));
            }
        });
        if let Some(b) = &self.board {
            let mac = b.mac.as_deref().map(|m| format!(", MAC {m}")).unwrap_or_default();
            let size = b
                .flash_size
                .map(|s| format!(", {} flash", crate::flash::progress::human_bytes(s)))
                .unwrap_or_default();
            ui.label(format!("Board on {}: {}{mac}{size}, {} baud", b.port, b.chip, b.baud));
        }
        if self.running {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(match self.phase {
                    Some(p) => format!("{}…", capitalize(p.doing())),
                    None => "Starting…".into(),
                });
            });
        }
        if let Some(p) = &self.progress {
            ui.add(egui::ProgressBar::new(p.fraction()).desired_width(460.0).text(p.describe()));
        }
        for n in &self.notes {
            ui.label(RichText::new(format!("• {n}")).small());
        }
        match &self.message {
            Some((true, text)) => {
                ui.colored_label(egui::Color32::from_rgb(0x2e, 0x9d, 0x4f), format!("✔ {text}"));
            }
            Some((false, text)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("✖ {text}"));
            }
            None => {}
        }
        if let Some(mac) = &self.awaiting {
            if self.confirmed {
                ui.colored_label(
                    egui::Color32::from_rgb(0x2e, 0x9d, 0x4f),
                    format!("✔ Flash confirmed: {mac} checked in with the update server running this image."),
                );
            } else {
                ui.label(format!(
                    "Waiting for {mac} to check in with the update server (Serve step) running this image, \
                     to confirm the flash the ESP8266 ROM could not verify."
                ));
            }
        }
    }

    fn start(&mut self, backend: &Backend) {
        let Some(choice) = &self.image else { return };
        self.running = true;
        self.phase = None;
        self.board = None;
        self.progress = None;
        self.notes.clear();
        self.outcome = None;
        self.message = None;
        self.awaiting = None;
        self.confirmed = false;
        self.monitoring = false;
        backend.send(Command::Flash(FlashCommand::Flash {
            port: self.port.trim().to_string(),
            image: choice.path.clone(),
            chip: self.chip,
            baud: self.baud,
            monitor_after: self.monitor_after.then_some(self.monitor_baud),
        }));
    }

    fn monitor_section(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        ui.label(RichText::new("Serial monitor").strong());
        ui.horizontal(|ui| {
            if self.monitoring {
                if ui.button(labels::STOP_MONITOR).clicked() {
                    backend.send(Command::Flash(FlashCommand::StopMonitor));
                }
            } else if ui
                .add_enabled(
                    !self.running && !self.port.trim().is_empty(),
                    egui::Button::new(labels::MONITOR),
                )
                .clicked()
            {
                self.monitoring = true;
                self.monitor_note = None;
                backend.send(Command::Flash(FlashCommand::Monitor {
                    port: self.port.trim().to_string(),
                    baud: self.monitor_baud,
                }));
            }
            ui.add_enabled_ui(!self.monitoring, |ui| {
                egui::ComboBox::from_id_salt("monitor-baud")
                    .selected_text(self.monitor_baud.to_string())
                    .show_ui(ui, |ui| {
                        for b in MONITOR_BAUDS {
                            ui.selectable_value(&mut self.monitor_baud, b, b.to_string());
                        }
                    });
            });
            ui.small("115200 for most sketches; 74880 shows the ESP8266's boot messages");
            if ui.button("Clear").clicked() {
                self.monitor.clear();
            }
        });
        if let Some(note) = &self.monitor_note {
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
        egui::Frame::group(ui.style()).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("monitor").max_height(220.0).stick_to_bottom(true).show(
                ui,
                |ui| {
                    ui.set_min_width(ui.available_width());
                    if self.monitor.is_empty() {
                        ui.label(RichText::new("(nothing printed yet)").weak());
                    }
                    for line in &self.monitor {
                        ui.label(RichText::new(line).monospace());
                    }
                },
            );
        });
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
