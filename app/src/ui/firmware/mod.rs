//! Step 2, Firmware: the settings devices are baked with, written straight into a prebuilt `.bin`
//! ([`prebuilt`], no compiler) or into the reference sketch's `ota_config.h` and built with
//! arduino-cli or PlatformIO ([`source`]). The image made last is handed to the Flash step.
//!
//! The few settings every newcomer sets come first and the rest fold away, so each path's action
//! (Bake, Build) sits near the top of a 1000×700 window.

mod form;
mod prebuilt;
mod source;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;

use super::{Step, StepStatus, widgets};
use crate::worker::{Command, FirmwareCommand, FirmwareEvent, FoundToolchain, Worker};
use otaforge_firmware::FirmwareReport;
use otaforge_firmware::boards::{self, Family};
use otaforge_firmware::reference_sketch::{self, CopyMode, CopyReport};
use otaforge_firmware::settings::BakeForm;

/// Labels of the step's controls (tests find them by these texts).
pub mod labels {
    /// The bake button.
    pub const BAKE: &str = "Bake into the .bin";
    /// Writes only the sketch's settings header.
    pub const WRITE_CONFIG: &str = "Write ota_config.h";
    /// The build button.
    pub const BUILD: &str = "Build";
    /// Stops a build.
    pub const CANCEL_BUILD: &str = "Cancel build";
    /// The prebuilt-image tab.
    pub const PREBUILT_TAB: &str = "Bake a prebuilt .bin";
    /// The build-from-source tab.
    pub const SOURCE_TAB: &str = "Build from the sketch";
    /// The reference image's path field.
    pub const REFERENCE_IMAGE: &str = "Reference image";
    /// Reads the typed reference image.
    pub const INSPECT: &str = "Inspect";
    /// The baked image's path field.
    pub const OUTPUT: &str = "Write to";
    /// The sketch folder's path field.
    pub const SKETCH_FOLDER: &str = "Sketch folder";
    /// Copies the embedded reference sketches into the project.
    pub const COPY_SKETCH: &str = "Copy the reference sketch into the project";
    /// Puts the reference back over the user's edits, once asked.
    pub const OVERWRITE_EDITS: &str = "Replace my edits with the reference";
    /// The board list.
    pub const BOARD: &str = "Board";
    /// The board list's free-text entry.
    pub const OTHER_BOARD: &str = "Other…";
    /// The free-text board field.
    pub const BOARD_TEXT: &str = "FQBN or environment";
    /// Looks for the toolchains again (after installing one).
    pub const LOOK_AGAIN: &str = "Look again";
}

/// Which way the step makes an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Bake settings into a prebuilt `.bin`.
    #[default]
    Prebuilt,
    /// Write `ota_config.h` and build the sketch.
    Source,
}

/// What the Firmware step remembers between runs (never the Wi-Fi password).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    /// The project the paths below belong to (another project starts without them).
    project: PathBuf,
    form: BakeForm,
    mode: Mode,
    sketch_dir: String,
    board: String,
    reference: String,
    output: String,
    /// The image baked or built last, handed to the Flash (and Serve) step.
    last_image: Option<PathBuf>,
}

impl Default for Remembered {
    fn default() -> Self {
        Remembered {
            project: PathBuf::new(),
            form: BakeForm::default(),
            mode: Mode::default(),
            sketch_dir: String::new(),
            board: boards::BOARDS[0].fqbn.into(),
            reference: String::new(),
            output: String::new(),
            last_image: None,
        }
    }
}

/// Lines of build log kept on screen.
const LOG_LINES: usize = 400;

/// State of the Firmware step (some fields are public so UI tests can read them).
pub struct FirmwareStep {
    form: BakeForm,
    mode: Mode,
    project: PathBuf,
    /// Whether the step has been on screen (it looks for toolchains and files then).
    shown: bool,
    // Prebuilt.
    reference: String,
    /// The prebuilt image inspected last, what it holds, and whether it runs on virtual boards only.
    pub input: Option<(PathBuf, Result<Box<FirmwareReport>, String>)>,
    input_virtual_only: bool,
    output: String,
    /// The output path the step filled in itself (replaced when another image is inspected).
    auto_output: Option<String>,
    /// The last baked image.
    pub baked: Option<(PathBuf, Box<FirmwareReport>)>,
    baked_virtual_only: bool,
    /// The last message (success or failure).
    pub message: Option<(bool, String)>,
    busy: bool,
    // Source.
    sketch_dir: String,
    /// The board: an FQBN (arduino-cli) or a PlatformIO environment.
    pub board: String,
    other_board: bool,
    search: Option<OsString>,
    /// The toolchains found (`None` until the worker has looked).
    pub toolchains: Option<Vec<FoundToolchain>>,
    tool: usize,
    building: bool,
    /// What the build printed.
    pub log: VecDeque<String>,
    /// The reference sketches in the project, as last found.
    pub sketch_copy: Option<Result<CopyReport, String>>,
    confirm_overwrite: bool,
    // Hand-over.
    last_image: Option<PathBuf>,
    new_image: Option<PathBuf>,
}

impl FirmwareStep {
    pub(super) fn new(mut remembered: Remembered, worker: &Worker) -> Self {
        let project = worker.dir().clone();
        if remembered.project != project {
            let defaults = Remembered::default();
            remembered = Remembered {
                form: remembered.form,
                mode: remembered.mode,
                board: remembered.board,
                ..defaults
            };
        }
        let family = boards::family_of(&remembered.board).unwrap_or(Family::Esp8266);
        let sketch_dir = if remembered.sketch_dir.is_empty() {
            reference_sketch::sketch_dir(&project, family).display().to_string()
        } else {
            remembered.sketch_dir
        };
        FirmwareStep {
            form: remembered.form,
            mode: remembered.mode,
            project,
            shown: false,
            reference: remembered.reference,
            input: None,
            input_virtual_only: false,
            output: remembered.output,
            auto_output: None,
            baked: None,
            baked_virtual_only: false,
            message: None,
            busy: false,
            sketch_dir,
            board: remembered.board,
            other_board: false,
            search: None,
            toolchains: None,
            tool: 0,
            building: false,
            log: VecDeque::new(),
            sketch_copy: None,
            confirm_overwrite: false,
            last_image: remembered.last_image,
            new_image: None,
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        Remembered {
            project: self.project.clone(),
            form: self.form.clone(),
            mode: self.mode,
            sketch_dir: self.sketch_dir.clone(),
            board: self.board.clone(),
            reference: self.reference.clone(),
            output: self.output.clone(),
            last_image: self.last_image.clone(),
        }
    }

    pub(super) fn status(&self) -> StepStatus {
        match (&self.last_image, &self.message) {
            (Some(_), _) | (None, Some((true, _))) => StepStatus::Done,
            (None, Some((false, _))) => StepStatus::Attention,
            (None, None) => StepStatus::Todo,
        }
    }

    /// The image this step baked or built last (remembered across restarts): what the Flash
    /// step and the Serve step offer.
    pub fn last_image(&self) -> Option<PathBuf> {
        self.last_image.clone()
    }

    /// An image made since the last call, once: the Flash step pre-selects it.
    pub(super) fn take_new_image(&mut self) -> Option<PathBuf> {
        self.new_image.take()
    }

    /// Looks for the toolchains only in `search` from now on (and now, if the step was shown).
    pub(super) fn set_toolchain_path(&mut self, search: OsString, worker: &Worker) {
        self.search = Some(search);
        if self.shown {
            self.find_toolchains(worker);
        }
    }

    fn find_toolchains(&mut self, worker: &Worker) {
        self.toolchains = None;
        worker.send(Command::Firmware(FirmwareCommand::FindToolchains { search: self.search.clone() }));
    }

    /// A file dropped on the window while this step is open.
    pub(super) fn dropped(&mut self, path: PathBuf, worker: &Worker) {
        self.mode = Mode::Prebuilt;
        self.reference = path.display().to_string();
        worker.send(Command::Firmware(FirmwareCommand::Inspect(path)));
    }

    /// A new image to hand over.
    fn produced(&mut self, path: PathBuf) {
        self.last_image = Some(path.clone());
        self.new_image = Some(path);
    }

    pub(super) fn on_event(&mut self, event: FirmwareEvent) {
        match event {
            FirmwareEvent::Inspected { path, result, virtual_only } => {
                let shown = path.display().to_string();
                if result.is_ok()
                    && (self.output.trim().is_empty() || self.auto_output.as_ref() == Some(&self.output))
                {
                    self.output = prebuilt::default_output(&path, &self.form.device_name);
                    self.auto_output = Some(self.output.clone());
                }
                self.reference = shown;
                self.input = Some((path, result));
                self.input_virtual_only = virtual_only;
                self.baked = None;
            }
            FirmwareEvent::Baked { path, report, signing_key, virtual_only } => {
                self.busy = false;
                let key = match signing_key {
                    Some(fp) => format!(
                        " It installs only updates signed by this project's key {}… (publish signs them).",
                        otaforge_pki::signing::short(&fp)
                    ),
                    None => " No signing key baked in: it installs updates without a signature check.".into(),
                };
                self.message = Some((true, format!("Baked {} — every checksum fixed.{key}", path.display())));
                self.baked_virtual_only = virtual_only;
                self.produced(path.clone());
                self.baked = Some((path, report));
            }
            FirmwareEvent::SketchConfigWritten(paths) => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.message = Some((true, format!("Wrote {}", names.join(", "))));
            }
            FirmwareEvent::Failed(why) => {
                self.busy = false;
                self.message = Some((false, why));
            }
            FirmwareEvent::Toolchains { search, found } => {
                if search == self.search {
                    self.tool = self.tool.min(found.len().saturating_sub(1));
                    self.toolchains = Some(found);
                    self.follow_toolchain();
                }
            }
            FirmwareEvent::BuildLog(line) => {
                if self.log.len() == LOG_LINES {
                    self.log.pop_front();
                }
                self.log.push_back(line);
            }
            FirmwareEvent::BuildFinished(result) => {
                self.building = false;
                self.message = Some(match result {
                    Ok(bin) => {
                        let text = format!("Built {} — ready to flash, or to bake copies of.", bin.display());
                        self.produced(bin);
                        (true, text)
                    }
                    Err(why) => (false, why),
                });
            }
            FirmwareEvent::ReferenceSketch(result) => {
                self.confirm_overwrite = false;
                self.sketch_copy = Some(result);
            }
        }
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker, default_host: Option<&str>) {
        if !self.shown {
            self.shown = true;
            self.find_toolchains(worker);
            worker.send(Command::Firmware(FirmwareCommand::ReferenceSketch(CopyMode::Check)));
            if self.input.is_none() && !self.reference.trim().is_empty() {
                worker
                    .send(Command::Firmware(FirmwareCommand::Inspect(PathBuf::from(self.reference.trim()))));
            }
        }
        ui.heading("2. Firmware");
        ui.label(
            "Devices get the CA, the update server's address and their version from the firmware: baked into \
             a prebuilt .bin, or written into the sketch's ota_config.h and built.",
        );
        ui.add_space(4.0);
        // Each part keeps its widgets' ids when a part above changes (see widgets::section).
        widgets::section(ui, "firmware.settings", |ui| self.settings_form(ui, default_host));
        ui.add_space(4.0);
        widgets::section(ui, "firmware.mode", |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.selectable_value(&mut self.mode, Mode::Prebuilt, labels::PREBUILT_TAB);
                ui.selectable_value(&mut self.mode, Mode::Source, labels::SOURCE_TAB);
            });
        });
        ui.separator();
        match self.mode {
            Mode::Prebuilt => widgets::section(ui, "firmware.prebuilt", |ui| self.prebuilt_ui(ui, worker)),
            Mode::Source => widgets::section(ui, "firmware.source", |ui| self.source_ui(ui, worker)),
        }
        ui.separator();
        let what = match &self.last_image {
            Some(p) => format!(
                "flash {} to a board over USB (or to a virtual board).",
                p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ),
            None => "once an image is baked or built, flash it to a board (or a virtual one).".into(),
        };
        widgets::section(ui, "firmware.next", |ui| widgets::next_step(ui, Step::Flash, &what));
    }
}
