//! Drawing the Flash step's sections: the board (ports, typed path, detect, virtual board), the
//! firmware file and options, the flash itself (progress, notes, result) and the serial monitor.

use std::path::PathBuf;

use egui::RichText;

use super::{BAUDS, FlashStep, labels};
use crate::ui::widgets;
use crate::worker::{Command, FileField, FlashCommand, Worker};
use otaforge_firmware::{Chip, virtual_only};
use otaforge_flash::{Likelihood, PortInfo};

impl FlashStep {
    pub(super) fn port_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.label(RichText::new("Board").strong());
        // The list changes whenever a board is plugged in or out; the typed port below keeps
        // its id (and the keyboard) through that.
        widgets::section(ui, "flash.port-list", |ui| self.port_list(ui));
        widgets::section(ui, "flash.port-controls", |ui| self.port_controls(ui, worker));
    }

    fn port_list(&mut self, ui: &mut egui::Ui) {
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
                // Built-in and unknown ports (a PC's ttyS0…31) rarely lead to a board: folded away,
                // so they never push the Flash button off the window.
                let (likely, other): (Vec<&PortInfo>, Vec<&PortInfo>) = ports
                    .iter()
                    .partition(|p| p.likelihood != Likelihood::Other || p.path == self.port.trim());
                let mut chosen = None;
                for p in likely {
                    if let Some(path) = port_radio(ui, &self.port, p) {
                        chosen = Some(path);
                    }
                }
                if !other.is_empty() {
                    egui::CollapsingHeader::new(format!("Other serial ports ({})", other.len()))
                        .id_salt("flash-other-ports")
                        .show(ui, |ui| {
                            for p in other {
                                if let Some(path) = port_radio(ui, &self.port, p) {
                                    chosen = Some(path);
                                }
                            }
                        });
                }
                if let Some(path) = chosen {
                    self.port = path;
                    self.port_note = None;
                }
                if let Some(note) = &self.port_note {
                    ui.add(egui::Label::new(RichText::new(note).small()).wrap());
                }
            }
        }
    }

    fn port_controls(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.horizontal_wrapped(|ui| {
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
        let field = widgets::path_field(
            ui,
            worker,
            FileField::FlashImage,
            labels::FILE,
            &mut self.file,
            "a .bin (or ELF), or drop it on the window",
        );
        let use_file = ui
            .horizontal_wrapped(|ui| {
                let clicked = ui.button(labels::USE_FILE).clicked();
                ui.small("checked against the board before anything is written");
                clicked
            })
            .inner;
        if (use_file || field.picked || field.submitted) && !self.file.trim().is_empty() {
            worker.send(Command::Flash(FlashCommand::CheckImage(PathBuf::from(self.file.trim()))));
        }
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
                if s.virtual_only {
                    ui.colored_label(ui.visuals().warn_fg_color, format!("⚠ {}", virtual_only::NOTE));
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
        egui::CollapsingHeader::new("Chip, baud rate, monitor").id_salt("flash-options").show(ui, |ui| {
            self.options(ui);
        });
    }

    fn options(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let chip = ui.label("Chip");
            egui::ComboBox::from_id_salt("flash-chip")
                .selected_text(self.chip.map_or("detect".to_string(), |c| c.name().to_string()))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.chip, None, "detect");
                    for c in Chip::ALL {
                        ui.selectable_value(&mut self.chip, Some(c), c.name());
                    }
                })
                .response
                .labelled_by(chip.id);
            let baud = ui.label("Baud");
            egui::ComboBox::from_id_salt("flash-baud")
                .selected_text(self.baud.to_string())
                .show_ui(ui, |ui| {
                    for b in BAUDS {
                        ui.selectable_value(&mut self.baud, b, b.to_string());
                    }
                })
                .response
                .labelled_by(baud.id);
            ui.small("slower rates are tried if it fails");
        });
        ui.checkbox(&mut self.monitor_after, "Show what the board prints after flashing");
    }

    fn ready(&self) -> bool {
        self.own.settings().is_ok()
            && !self.running
            && !self.port.trim().is_empty()
            && self.refusal().is_none()
            && self
                .image
                .as_ref()
                .is_some_and(|c| c.result.is_ok() && c.path.display().to_string() == self.file.trim())
    }

    /// Why the chosen image may not go to the chosen port: a stand-in for virtual boards and a
    /// port that is not one. The flasher refuses it too; saying so before the click spares a
    /// newcomer a board that boots filler, believing it runs OTA Forge's firmware.
    pub fn refusal(&self) -> Option<String> {
        let image = self.image.as_ref()?.result.as_ref().ok()?;
        let port = self.port.trim();
        let listed_virtual = self.ports.as_ref().is_some_and(|ps| {
            ps.iter().any(|p| p.path == port && p.likelihood == otaforge_flash::Likelihood::Virtual)
        });
        let virtual_port = port.starts_with("/dev/pts/") || listed_virtual;
        (image.virtual_only && !port.is_empty() && !virtual_port).then(|| {
            format!(
                "Not flashed: this image runs on {} (a virtual board's port is /dev/pts/…), and {port} is a \
                 real serial port. Build the reference sketch in step 2 for a real board.",
                virtual_only::VIRTUAL_BOARDS_ONLY
            )
        })
    }

    pub(super) fn flash_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.horizontal_wrapped(|ui| {
            if ui.add_enabled(self.ready(), egui::Button::new(labels::FLASH)).clicked() {
                self.start(worker);
            }
            if self.running && ui.button(labels::CANCEL).clicked() {
                worker.send(Command::Flash(FlashCommand::Cancel));
            }
        });
        if let Some(why) = self.refusal() {
            ui.colored_label(ui.visuals().error_fg_color, format!("✖ {why}"));
        }
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
            let width = ui.available_width().min(460.0);
            ui.add(egui::ProgressBar::new(p.fraction()).desired_width(width).text(p.describe()));
        }
        for n in &self.notes {
            ui.add(egui::Label::new(RichText::new(format!("• {n}")).small()).wrap());
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
}

/// A port's radio button; the port's path when it was clicked.
fn port_radio(ui: &mut egui::Ui, chosen: &str, p: &PortInfo) -> Option<String> {
    let text = format!("{}  —  {}", p.path, p.description);
    ui.radio(chosen == p.path, text).clicked().then(|| p.path.clone())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}
