//! Step 2, Firmware: the settings devices are baked with, written into a sketch's `ota_config.h`
//! (build it with your toolchain) or straight into a prebuilt reference `.bin` (no compiler).

use std::path::PathBuf;

use egui::RichText;

use super::StepStatus;
use crate::worker::{Command, Event, Worker};
use otaforge_firmware::FirmwareReport;
use otaforge_firmware::settings::BakeForm;

/// Label of the bake button (tests find it by this text).
pub const BAKE: &str = "Bake into the .bin";
/// Label of the sketch button.
pub const WRITE_CONFIG: &str = "Write ota_config.h";
/// Label of the build button.
pub const BUILD: &str = "Build";

/// What the Firmware step remembers between runs (never the Wi-Fi password).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    form: BakeForm,
    sketch_dir: String,
    board: String,
}

impl Default for Remembered {
    fn default() -> Self {
        Remembered {
            form: BakeForm::default(),
            sketch_dir: String::new(),
            board: "esp8266:esp8266:nodemcuv2".into(),
        }
    }
}

/// Lines of build log kept on screen.
const LOG_LINES: usize = 400;

/// State of the Firmware step.
pub struct FirmwareStep {
    form: BakeForm,
    sketch_dir: String,
    board: String,
    toolchain: Option<Option<String>>,
    building: bool,
    log: std::collections::VecDeque<String>,
    /// The prebuilt image chosen (by dialog or drop) and what it holds.
    pub input: Option<(PathBuf, Result<Box<FirmwareReport>, String>)>,
    output: String,
    /// The last baked image.
    pub baked: Option<(PathBuf, Box<FirmwareReport>)>,
    /// The last message (success or failure).
    pub message: Option<(bool, String)>,
    busy: bool,
}

impl FirmwareStep {
    pub(super) fn new(remembered: Remembered, worker: &Worker) -> Self {
        worker.send(Command::FindToolchain);
        let sketch_dir = if remembered.sketch_dir.is_empty() {
            bundled_sketch().map(|p| p.display().to_string()).unwrap_or_default()
        } else {
            remembered.sketch_dir
        };
        FirmwareStep {
            form: remembered.form,
            sketch_dir,
            board: remembered.board,
            toolchain: None,
            building: false,
            log: Default::default(),
            input: None,
            output: String::new(),
            baked: None,
            message: None,
            busy: false,
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        Remembered { form: self.form.clone(), sketch_dir: self.sketch_dir.clone(), board: self.board.clone() }
    }

    pub(super) fn status(&self) -> StepStatus {
        match (&self.baked, &self.message) {
            (Some(_), _) => StepStatus::Done,
            (None, Some((true, _))) => StepStatus::Done,
            (None, Some((false, _))) => StepStatus::Attention,
            _ => StepStatus::Todo,
        }
    }

    /// A file dropped on the window while this step is open.
    pub(super) fn dropped(&mut self, path: PathBuf, worker: &Worker) {
        worker.send(Command::InspectFirmware(Some(path)));
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::FirmwareInspected { path, result } => {
                if result.is_ok() {
                    self.output = default_output(&path, &self.form.device_name);
                }
                self.input = Some((path, result));
                self.baked = None;
            }
            Event::FirmwareBaked { path, report, signing_key } => {
                self.busy = false;
                let key = match signing_key {
                    Some(fp) => format!(
                        " It installs only updates signed by this project's key {}… (publish signs them).",
                        otaforge_pki::signing::short(&fp)
                    ),
                    None => " No signing key baked in: it installs updates without a signature check.".into(),
                };
                self.message = Some((true, format!("Baked {} — every checksum fixed.{key}", path.display())));
                self.baked = Some((path, report));
            }
            Event::SketchConfigWritten(paths) => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.message = Some((true, format!("Wrote {}", names.join(", "))));
            }
            Event::FirmwareFailed(why) => {
                self.busy = false;
                self.message = Some((false, why));
            }
            Event::Toolchain(found) => self.toolchain = Some(found),
            Event::BuildLog(line) => {
                if self.log.len() == LOG_LINES {
                    self.log.pop_front();
                }
                self.log.push_back(line);
            }
            Event::BuildFinished(result) => {
                self.building = false;
                self.message = Some(match result {
                    Ok(bin) => {
                        (true, format!("Built {} — shown below, ready to bake or publish.", bin.display()))
                    }
                    Err(why) => (false, why),
                });
            }
            _ => {}
        }
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker, default_host: Option<&str>) {
        ui.heading("2. Firmware");
        ui.label(
            "Devices get the CA, the update-server address and their version from the firmware. Write them \
             into a sketch's ota_config.h and build it, or write them straight into a prebuilt reference .bin.",
        );
        ui.add_space(8.0);
        self.settings_form(ui, default_host);
        ui.add_space(8.0);
        if let Some((ok, text)) = &self.message {
            let color = if *ok { ui.visuals().text_color() } else { ui.visuals().error_fg_color };
            ui.colored_label(color, format!("{} {text}", if *ok { "✔" } else { "✖" }));
        }
        ui.separator();
        self.source_section(ui, worker);
        ui.separator();
        self.image_section(ui, worker);
    }

    fn settings_form(&mut self, ui: &mut egui::Ui, default_host: Option<&str>) {
        let f = &mut self.form;
        egui::Grid::new("bake-form").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
            text_row(ui, "Host", &mut f.host, default_host.unwrap_or("from the server certificate"));
            number_row(ui, "Port", &mut f.port);
            text_row(ui, "Path", &mut f.path, "/update");
            text_row(ui, "Channel", &mut f.channel, "(default)");
            text_row(ui, "Version", &mut f.version, "e.g. 1.0.0 (a .bin may carry its own)");
            text_row(ui, "Device name", &mut f.device_name, "optional");
            number_row(ui, "Poll interval (s)", &mut f.poll_interval_s);
            number_row(ui, "TLS receive buffer", &mut f.tls_rx_buffer);
            number_row(ui, "TLS send buffer", &mut f.tls_tx_buffer);
            text_row(ui, "Wi-Fi network", &mut f.wifi_ssid, "keep what the firmware has");
            let label = ui.label("Wi-Fi password");
            ui.add(egui::TextEdit::singleline(&mut f.wifi_password).password(true).desired_width(260.0))
                .labelled_by(label.id);
            ui.end_row();
        });
    }

    fn source_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.strong("From source");
        ui.horizontal(|ui| {
            let label = ui.label("Sketch folder");
            ui.add(egui::TextEdit::singleline(&mut self.sketch_dir).desired_width(420.0))
                .labelled_by(label.id);
            if ui.button("Choose folder…").clicked() {
                worker.send(Command::WriteSketchConfig { dir: None, form: self.form.clone() });
            }
        });
        if ui.add_enabled(!self.sketch_dir.trim().is_empty(), egui::Button::new(WRITE_CONFIG)).clicked() {
            self.message = None;
            worker.send(Command::WriteSketchConfig {
                dir: Some(PathBuf::from(self.sketch_dir.trim())),
                form: self.form.clone(),
            });
        }
        match &self.toolchain {
            Some(Some(path)) => {
                ui.horizontal(|ui| {
                    let label = ui.label("Board");
                    ui.add(egui::TextEdit::singleline(&mut self.board).desired_width(260.0))
                        .labelled_by(label.id);
                    let can_build =
                        !self.building && !self.sketch_dir.trim().is_empty() && !self.board.trim().is_empty();
                    if ui
                        .add_enabled(can_build, egui::Button::new(BUILD))
                        .on_hover_text(path.as_str())
                        .clicked()
                    {
                        self.building = true;
                        self.log.clear();
                        self.message = None;
                        worker.send(Command::BuildSketch {
                            dir: PathBuf::from(self.sketch_dir.trim()),
                            board: self.board.trim().to_string(),
                        });
                    }
                    if self.building && ui.button("Cancel build").clicked() {
                        worker.send(Command::CancelBuild);
                    }
                });
                if self.building {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Building…");
                    });
                }
                if !self.log.is_empty() {
                    egui::ScrollArea::vertical().max_height(160.0).stick_to_bottom(true).show(ui, |ui| {
                        for line in &self.log {
                            ui.label(RichText::new(line).monospace().small());
                        }
                    });
                }
            }
            Some(None) => {
                ui.label(
                    "No arduino-cli or PlatformIO found. Install arduino-cli and the core \
                     (arduino-cli core install esp8266:esp8266), or PlatformIO (pip install platformio), \
                     or open the sketch in the Arduino IDE.",
                );
            }
            None => {}
        }
    }

    fn image_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.strong("Into a prebuilt .bin (no compiler)");
        ui.horizontal(|ui| {
            if ui.button("Choose .bin…").clicked() {
                worker.send(Command::InspectFirmware(None));
            }
            ui.label("or drop a .bin anywhere on this window.");
        });
        let Some((path, result)) = &self.input else { return };
        ui.label(format!("Before: {}", path.display()));
        match result {
            Err(why) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("✖ {why}"));
                return;
            }
            Ok(report) => report_ui(ui, "before", report),
        }
        ui.horizontal(|ui| {
            let label = ui.label("Write to");
            ui.add(egui::TextEdit::singleline(&mut self.output).desired_width(420.0)).labelled_by(label.id);
        });
        let can_bake = !self.busy && !self.output.trim().is_empty();
        if ui.add_enabled(can_bake, egui::Button::new(BAKE)).clicked() {
            self.busy = true;
            self.message = None;
            worker.send(Command::BakeImage {
                input: path.clone(),
                output: PathBuf::from(self.output.trim()),
                form: self.form.clone(),
            });
        }
        if let Some((path, report)) = &self.baked {
            ui.label(format!("After: {}", path.display()));
            report_ui(ui, "after", report);
        }
    }
}

fn report_ui(ui: &mut egui::Ui, id: &str, r: &FirmwareReport) {
    let i = &r.image;
    egui::Grid::new(id).num_columns(2).spacing([12.0, 3.0]).striped(true).show(ui, |ui| {
        let mut row = |k: &str, v: String| {
            ui.label(k);
            ui.label(RichText::new(v).monospace());
            ui.end_row();
        };
        row("Format", i.format.name().to_string());
        row("Chip", i.chip.map(|c| c.name()).unwrap_or("unknown").to_string());
        if let (Some(m), Some(size)) = (i.flash_mode, i.flash_size_bytes) {
            row("Flash", format!("{}, {} MB", m.name(), size as f64 / 1048576.0));
        }
        let verdict = if i.is_valid() { "all valid".to_string() } else { i.problems().join("; ") };
        row("Checksums", verdict);
        row("Size", format!("{} bytes", i.size));
        row("MD5", i.md5.clone());
        let config = match &r.config {
            Ok(Some(s)) => format!(
                "baked: https://{}:{}{} version {} \"{}\"",
                s.host, s.port, s.path, s.version, s.device_name
            ),
            Ok(None) => "present, not baked yet".into(),
            Err(e) => e.clone(),
        };
        row("Config block", config);
    });
}

fn text_row(ui: &mut egui::Ui, name: &str, value: &mut String, hint: &str) {
    let label = ui.label(name);
    ui.add(egui::TextEdit::singleline(value).hint_text(hint).desired_width(260.0)).labelled_by(label.id);
    ui.end_row();
}

fn number_row<T: egui::emath::Numeric>(ui: &mut egui::Ui, name: &str, value: &mut T) {
    let label = ui.label(name);
    ui.add(egui::DragValue::new(value)).labelled_by(label.id);
    ui.end_row();
}

/// `<input>-<device name or "baked">.bin` next to the input.
fn default_output(input: &std::path::Path, name: &str) -> String {
    let stem =
        input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "firmware".into());
    let tag =
        if name.trim().is_empty() { "baked".to_string() } else { name.trim().replace(['/', '\\', ' '], "_") };
    input.with_file_name(format!("{stem}-{tag}.bin")).display().to_string()
}

/// The bundled ESP8266 sketch, when the app runs from a checkout.
fn bundled_sketch() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from("device-firmware/esp8266/otaforge_esp8266"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../device-firmware/esp8266/otaforge_esp8266"),
    ];
    candidates.into_iter().find(|p| p.is_dir())
}
