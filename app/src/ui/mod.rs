//! The desktop app: a sidebar of the four steps and one panel per step.
//!
//! This layer only renders state and sends [`Command`]s to the [`Worker`]; every piece of I/O and
//! slow work happens on the worker's runtime thread. It repaints only when an event arrives or the
//! user acts, so an idle window costs no CPU.

mod certificate;
mod firmware;
pub mod flash;
pub mod serve;
mod shell;
pub mod signing_key;
#[cfg(test)]
mod stable_ids;
pub mod widgets;

use std::path::PathBuf;

use crate::worker::{Event, FileDialogs, Worker};

pub use certificate::CertificateStep;
pub use firmware::FirmwareStep;
pub use flash::FlashStep;
pub use serve::ServeStep;
pub use shell::MIN_TEXT_SIZE;

/// Labels of the Certificate step's main controls (tests find them by these).
pub mod certificate_labels {
    pub use super::certificate::{EXPORT_HEADER, EXPORT_PEM, GENERATE, HEADER_FIELD, HOST_FIELD, PEM_FIELD};
}

/// Labels of the Firmware step's main controls.
pub mod firmware_labels {
    pub use super::firmware::labels::*;
}

/// The app's steps, in the order a user takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Step {
    /// Make the CA and server certificate.
    #[default]
    Certificate,
    /// Bake the trust anchor and settings into firmware.
    Firmware,
    /// Flash a device over USB.
    Flash,
    /// Serve updates to devices.
    Serve,
}

impl Step {
    /// All steps, in order.
    pub const ALL: [Step; 4] = [Step::Certificate, Step::Firmware, Step::Flash, Step::Serve];

    /// The step's name.
    pub fn title(self) -> &'static str {
        match self {
            Step::Certificate => "Certificate",
            Step::Firmware => "Firmware",
            Step::Flash => "Flash",
            Step::Serve => "Serve",
        }
    }
}

/// How far a step is, shown as a mark in the sidebar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    /// Nothing done yet.
    Todo,
    /// Done and healthy.
    Done,
    /// Done, but something needs the user's attention.
    Attention,
    /// Not available in this version yet.
    Coming,
}

impl StepStatus {
    fn mark(self) -> &'static str {
        match self {
            StepStatus::Todo => "○",
            StepStatus::Done => "✔",
            StepStatus::Attention => "⚠",
            StepStatus::Coming => "…",
        }
    }
}

/// What is remembered between runs (eframe storage).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Remembered {
    step: Step,
    /// The project, and its steps whose mark was ✔ when the window closed.
    done: Option<(PathBuf, Vec<Step>)>,
    certificate: certificate::Remembered,
    firmware: firmware::Remembered,
    flash: flash::Remembered,
    serve: serve::Remembered,
}

/// The OTA Forge desktop app.
pub struct OtaForgeApp {
    worker: Worker,
    step: Step,
    /// The Certificate step (public so UI tests can inspect it).
    pub certificate: CertificateStep,
    /// The Firmware step.
    pub firmware: FirmwareStep,
    /// The Flash step.
    pub flash: FlashStep,
    /// The Serve step.
    pub serve: ServeStep,
    /// Steps done in an earlier session: their ✔ stands until the step itself knows better.
    done_before: Vec<Step>,
}

impl OtaForgeApp {
    /// Creates the app for the project in `dir` and starts its worker.
    pub fn new(cc: &eframe::CreationContext<'_>, dir: PathBuf) -> std::io::Result<Self> {
        let remembered: Remembered =
            cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)).unwrap_or_default();
        shell::text_sizes(&cc.egui_ctx);
        let ctx = cc.egui_ctx.clone();
        let worker = Worker::start(dir, move || ctx.request_repaint())?;
        let certificate = CertificateStep::new(remembered.certificate, &worker);
        let firmware = FirmwareStep::new(remembered.firmware, &worker);
        let flash = FlashStep::new(remembered.flash);
        let mut serve = ServeStep::new(remembered.serve, &worker);
        serve.offer_image(firmware.last_image());
        // Marks are the project's: another project opened starts from its own state.
        let done_before =
            remembered.done.filter(|(d, _)| d == worker.dir()).map(|(_, s)| s).unwrap_or_default();
        Ok(OtaForgeApp { worker, step: remembered.step, certificate, firmware, flash, serve, done_before })
    }

    /// Whether the answers to what the window asks for when it opens are in: the certificate,
    /// the signing keys, this machine's addresses, the releases and the server's state.
    pub fn loaded(&self) -> bool {
        let c = &self.certificate;
        c.known() && c.signing.keys.is_some() && c.local.is_some() && self.serve.known()
    }

    /// The step shown.
    pub fn step(&self) -> Step {
        self.step
    }

    /// Be a desktop where file dialogs can (or cannot) open, whatever the probe found.
    pub fn set_file_dialogs(&mut self, dialogs: FileDialogs) {
        self.worker.set_file_dialogs(dialogs);
    }

    /// Look for arduino-cli and PlatformIO only in `search` (a PATH-style list), as tests do.
    pub fn set_toolchain_path(&mut self, search: std::ffi::OsString) {
        self.firmware.set_toolchain_path(search, &self.worker);
    }

    fn drain_events(&mut self, ctx: &egui::Context) {
        while let Some(event) = self.worker.try_recv() {
            match event {
                Event::Browsed { field, outcome } => widgets::deliver(ctx, field, outcome),
                Event::Firmware(event) => self.firmware.on_event(event),
                Event::Serve(event) => self.serve.on_event(event, &self.worker),
                Event::Flash(event) => self.flash.on_event(event),
                other => self.certificate.on_event(other, &self.worker),
            }
        }
    }

    /// A `.bin` dropped anywhere on the window: on the Serve step it opens the publish dialog,
    /// anywhere else it goes to the Firmware step.
    fn take_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped = ctx.input(|i| i.raw.dropped_files.clone());
        if let Some(file) = dropped.first() {
            let path = file.path().to_path_buf();
            match self.step {
                Step::Serve => self.serve.dropped(path, &self.worker),
                Step::Flash => self.flash.dropped(path, &self.worker),
                _ => {
                    self.step = Step::Firmware;
                    self.firmware.dropped(path, &self.worker);
                }
            }
        }
    }

    /// The step's mark in the sidebar. Certificate and Serve read their state back when the
    /// window opens, and say so once they have; Firmware and Flash have nothing to read back, so
    /// a step done in an earlier session keeps its ✔ until it has something newer to show.
    pub fn status(&self, step: Step) -> StepStatus {
        let (live, known) = match step {
            Step::Certificate => (self.certificate.status(), self.certificate.known()),
            Step::Serve => (self.serve.status(), self.serve.known()),
            Step::Firmware => (self.firmware.status(), false),
            Step::Flash => (self.flash.status(), false),
        };
        if live == StepStatus::Todo && !known && self.done_before.contains(&step) {
            StepStatus::Done
        } else {
            live
        }
    }

    fn sidebar(&mut self, ui: &mut egui::Ui) {
        ui.add_space(8.0);
        ui.heading("OTA Forge");
        ui.label("Secure self-updating ESP devices");
        ui.separator();
        for (i, step) in Step::ALL.into_iter().enumerate() {
            let text = format!("{} {}. {}", self.status(step).mark(), i + 1, step.title());
            if ui.selectable_label(self.step == step, text).clicked() {
                self.step = step;
            }
        }
        ui.with_layout(egui::Layout::bottom_up(egui::Align::LEFT), |ui| {
            ui.add_space(6.0);
            ui.small(format!("Project: {}", self.worker.dir().display()));
            shell::sidebar_footer(ui);
        });
    }
}

impl eframe::App for OtaForgeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.drain_events(ui.ctx());
        self.take_dropped_files(ui.ctx());
        if let Some(step) = shell::step_shortcut(ui.ctx()) {
            self.step = step;
        }
        shell::drop_overlay(ui.ctx(), self.step);
        egui::Panel::left("steps").resizable(false).exact_size(200.0).show(ui, |ui| self.sidebar(ui));
        if self.step != Step::Flash {
            self.flash.hidden(&self.worker);
        }
        if self.step == Step::Serve {
            self.serve.devices.set_usb_board(self.flash.usb_board());
        }
        // The image step 2 just baked or built is the one to flash (until the user picks another)
        // and the one step 4 offers to publish.
        if let Some(image) = self.firmware.take_new_image() {
            self.serve.offer_image(Some(image.clone()));
            self.flash.preselect(image, &self.worker);
        }
        egui::CentralPanel::default().show(ui, |ui| {
            if self.step == Step::Serve {
                // Its lists scroll on their own, drawing only the rows on screen.
                return self.serve.ui(ui, &self.worker);
            }
            egui::ScrollArea::vertical().show(ui, |ui| match self.step {
                Step::Certificate => self.certificate.ui(ui, &self.worker),
                Step::Firmware => {
                    let host =
                        self.certificate.report.as_ref().and_then(|r| r.server.dns_sans.first().cloned());
                    self.firmware.ui(ui, &self.worker, host.as_deref());
                }
                Step::Flash => self.flash.ui(ui, &self.worker),
                Step::Serve => {}
            });
        });
        if let Some(step) = widgets::take_goto(ui.ctx()) {
            self.step = step;
            ui.ctx().request_repaint();
        }
        // "Open monitor" on a device row: the Flash step shows what its board prints.
        if let Some(port) = self.serve.devices.take_monitor_request() {
            self.step = Step::Flash;
            self.flash.open_monitor(&port, &self.worker);
            ui.ctx().request_repaint();
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.serve.on_exit(&self.worker);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        let remembered = Remembered {
            step: self.step,
            done: Some((
                self.worker.dir().clone(),
                Step::ALL.into_iter().filter(|&s| self.status(s) == StepStatus::Done).collect(),
            )),
            certificate: self.certificate.remembered(),
            firmware: self.firmware.remembered(),
            flash: self.flash.remembered(),
            serve: self.serve.remembered(),
        };
        eframe::set_value(storage, eframe::APP_KEY, &remembered);
    }
}

/// The app icon, from `icons/`.
pub fn icon() -> egui::IconData {
    eframe::icon_data::from_png_bytes(include_bytes!("../../../icons/otaforge-256.png"))
        .expect("the bundled icon is a valid PNG")
}

/// Opens the desktop app window and runs until it is closed.
pub fn run(dir: PathBuf) -> Result<(), String> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("OTA Forge")
            .with_app_id("otaforge")
            .with_inner_size([1000.0, 700.0])
            .with_min_inner_size([640.0, 420.0])
            .with_icon(icon()),
        ..Default::default()
    };
    eframe::run_native("OTA Forge", options, Box::new(move |cc| Ok(Box::new(OtaForgeApp::new(cc, dir)?))))
        .map_err(|e| format!("could not open the window: {e}"))
}
