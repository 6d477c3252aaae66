//! Drawing the Flash step's sections: the board (ports, typed path, detect, virtual board), the
//! firmware file and options, the flash itself (progress, notes, result) and the serial monitor.

use std::path::PathBuf;

use egui::RichText;

use super::{BAUDS, FlashStep, MONITOR_BAUDS, labels};
use crate::worker::{Command, FlashCommand, Worker};
use otaforge_firmware::Chip;

impl FlashStep {
    pub(super) fn port_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
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
                        self.port_note = None;
                    }
                }
                if let Some(note) = &self.port_note {
                    ui.small(note);
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
                worker.send(Command::Flash(FlashCommand::Identify(self.port.trim().to_string())));
            }
            let adding = self.adding_virtual;
            if ui
                .add_enabled(!adding, egui::Button::new(labels::ADD_VIRTUAL))
                .on_hover_text(
                    "A simulated ESP8266 on a pseudo-terminal: its ROM answers like a real board's, and once \
                     flashed it runs the firmware, which polls the update server.",
                )
                .clicked()
            {
                self.adding_virtual = true;
                worker.send(Command::Flash(FlashCommand::AddVirtualDevice(Chip::Esp8266)));
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

    pub(super) fn file_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
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
                worker.send(Command::Flash(FlashCommand::CheckImage(PathBuf::from(self.file.trim()))));
            }
            if ui.button("Choose…").clicked() {
                worker.send(Command::Flash(FlashCommand::PickImage));
            }
        });
        match self.image.as_ref().map(|c| &c.result) {
            Some(Ok(s)) => {
                let version = s.version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
                ui.label(format!(
                    "✔ {}, {}{version}",
                    s.description,
                    otaforge_flash::progress::human_bytes(s.size)
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
        self.own.settings().is_ok()
            && !self.running
            && !self.port.trim().is_empty()
            && self
                .image
                .as_ref()
                .is_some_and(|c| c.result.is_ok() && c.path.display().to_string() == self.file.trim())
    }

    pub(super) fn flash_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.horizontal(|ui| {
            if ui.add_enabled(self.ready(), egui::Button::new(labels::FLASH)).clicked() {
                self.start(worker);
            }
            if self.running && ui.button(labels::CANCEL).clicked() {
                worker.send(Command::Flash(FlashCommand::Cancel));
            }
        });
        if let Some(b) = &self.board {
            let mac = b.mac.as_deref().map(|m| format!(", MAC {m}")).unwrap_or_default();
            let size = b
                .flash_size
                .map(|s| format!(", {} flash", otaforge_flash::progress::human_bytes(s)))
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

    /// Clears what the last run showed; a new flash or provisioning starts.
    pub(super) fn begin_run(&mut self) {
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
    }

    fn start(&mut self, worker: &Worker) {
        let Some(choice) = &self.image else { return };
        let image = choice.path.clone();
        let Ok(device_settings) = self.own.settings() else { return };
        self.begin_run();
        worker.send(Command::Flash(FlashCommand::Flash {
            port: self.port.trim().to_string(),
            image,
            chip: self.chip,
            baud: self.baud,
            monitor_after: self.monitor_after.then_some(self.monitor_baud),
            device_settings,
            stub: otaforge_flash::StubSource::Installed,
        }));
    }

    pub(super) fn monitor_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.label(RichText::new("Serial monitor").strong());
        ui.horizontal(|ui| {
            if self.monitoring {
                if ui.button(labels::STOP_MONITOR).clicked() {
                    worker.send(Command::Flash(FlashCommand::StopMonitor));
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
                worker.send(Command::Flash(FlashCommand::Monitor {
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
