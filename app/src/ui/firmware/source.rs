//! The source path: the reference sketch copied into the project, a board picked from a list, a
//! missing toolchain or core named with the exact commands that install it, and the build run
//! with arduino-cli or PlatformIO, its log streamed below.

use std::path::PathBuf;

use egui::RichText;

use super::{FirmwareStep, labels};
use crate::ui::widgets;
use crate::worker::{Command, FileField, FirmwareCommand, Worker};
use otaforge_firmware::boards::{self, BOARDS, Family, FamilyBuild};
use otaforge_firmware::reference_sketch::{self, CopyMode};
use otaforge_firmware::source::Toolchain;
use otaforge_firmware::toolchain::{self, Os};

impl FirmwareStep {
    /// The toolchain builds go to (the one chosen among those found).
    fn toolchain(&self) -> Option<&crate::worker::FoundToolchain> {
        self.toolchains.as_ref()?.get(self.tool)
    }

    pub(super) fn source_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        // The toolchain search and the sketch check answer late: what follows keeps its ids.
        widgets::section(ui, "firmware.toolchain", |ui| self.toolchain_ui(ui, worker));
        widgets::section(ui, "firmware.board", |ui| self.board_ui(ui));
        widgets::section(ui, "firmware.sketch", |ui| self.sketch_ui(ui, worker));
        widgets::section(ui, "firmware.build", |ui| self.build_ui(ui, worker));
    }

    fn build_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let tc = self.toolchain().map(|t| t.toolchain.clone());
        ui.horizontal_wrapped(|ui| {
            let ready = !self.sketch_dir.trim().is_empty() && !self.board.trim().is_empty();
            let build = egui::Button::new(labels::BUILD);
            let hover = tc
                .as_ref()
                .map_or("No arduino-cli or PlatformIO found".into(), |t| t.exe().display().to_string());
            if ui.add_enabled(ready && !self.building && tc.is_some(), build).on_hover_text(hover).clicked()
                && let Some(tc) = tc
            {
                self.building = true;
                self.log.clear();
                self.message = None;
                worker.send(Command::Firmware(FirmwareCommand::Build {
                    toolchain: tc,
                    dir: PathBuf::from(self.sketch_dir.trim()),
                    board: self.board.trim().to_string(),
                    form: self.form.clone(),
                }));
            }
            if ui
                .add_enabled(!self.sketch_dir.trim().is_empty(), egui::Button::new(labels::WRITE_CONFIG))
                .clicked()
            {
                self.message = None;
                worker.send(Command::Firmware(FirmwareCommand::WriteSketchConfig {
                    dir: PathBuf::from(self.sketch_dir.trim()),
                    form: self.form.clone(),
                }));
            }
            if self.building {
                if ui.button(labels::CANCEL_BUILD).clicked() {
                    worker.send(Command::Firmware(FirmwareCommand::CancelBuild));
                }
                ui.spinner();
                ui.label("Building…");
            }
        });
        self.message_ui(ui);
        if !self.log.is_empty() {
            egui::ScrollArea::vertical().id_salt("build-log").max_height(160.0).stick_to_bottom(true).show(
                ui,
                |ui| {
                    ui.set_max_width(ui.available_width());
                    for line in &self.log {
                        ui.add(egui::Label::new(RichText::new(line).monospace().small()).wrap());
                    }
                },
            );
        }
    }

    fn toolchain_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let Some(found) = &self.toolchains else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Looking for arduino-cli and PlatformIO…");
            });
            return;
        };
        if found.is_empty() {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "No arduino-cli or PlatformIO found. Install one of them:",
            );
            install_hints_ui(ui);
            if ui.button(labels::LOOK_AGAIN).clicked() {
                self.find_toolchains(worker);
            }
            return;
        }
        let tools: Vec<(&str, String)> =
            found.iter().map(|t| (t.toolchain.name(), t.toolchain.exe().display().to_string())).collect();
        let (mut switch, mut again) = (None, false);
        ui.horizontal_wrapped(|ui| {
            ui.label("Build with");
            for (i, (name, exe)) in tools.iter().enumerate() {
                if ui.radio(self.tool == i, *name).on_hover_text(exe).clicked() {
                    switch = Some(i);
                }
            }
            again = ui.button(labels::LOOK_AGAIN).clicked();
        });
        if again {
            self.find_toolchains(worker);
        }
        if let Some(i) = switch {
            self.tool = i;
            self.follow_toolchain();
        }
    }

    /// The board keeps being the same board under the chosen toolchain's name for it.
    pub(super) fn follow_toolchain(&mut self) {
        if let Some(tc) = self.toolchain().map(|t| t.toolchain.clone())
            && let Some(target) = boards::find(&self.board).and_then(|b| b.target(&tc))
        {
            self.board = target.to_string();
        }
    }

    fn board_ui(&mut self, ui: &mut egui::Ui) {
        let tc =
            self.toolchain().map(|t| t.toolchain.clone()).unwrap_or(Toolchain::ArduinoCli(PathBuf::new()));
        let listed: Vec<(&str, &str)> =
            BOARDS.iter().filter_map(|b| Some((b.name, b.target(&tc)?))).collect();
        let selected = listed.iter().find(|(_, t)| *t == self.board.trim()).filter(|_| !self.other_board);
        let mut picked = None;
        ui.horizontal_wrapped(|ui| {
            let label = ui.label(labels::BOARD);
            egui::ComboBox::from_id_salt("firmware-board")
                .selected_text(selected.map_or(labels::OTHER_BOARD, |(name, _)| *name))
                .width(260.0)
                .show_ui(ui, |ui| {
                    for (name, target) in &listed {
                        if ui
                            .selectable_label(selected.is_some_and(|(_, t)| t == target), *name)
                            .on_hover_text(*target)
                            .clicked()
                        {
                            picked = Some(Some(target.to_string()));
                        }
                    }
                    if ui.selectable_label(selected.is_none(), labels::OTHER_BOARD).clicked() {
                        picked = Some(None);
                    }
                })
                .response
                .labelled_by(label.id);
            if let Some((_, target)) = selected {
                ui.small(RichText::new(*target).monospace());
            }
        });
        match picked {
            Some(Some(target)) => {
                self.other_board = false;
                self.follow_board(&target);
                self.board = target;
            }
            Some(None) => self.other_board = true,
            None => {}
        }
        if selected.is_none() {
            ui.horizontal(|ui| {
                let label = ui.label(labels::BOARD_TEXT);
                let hint = match tc {
                    Toolchain::ArduinoCli(_) => "e.g. esp8266:esp8266:nodemcuv2:xtal=160",
                    Toolchain::PlatformIo(_) => "an [env:…] of platformio.ini",
                };
                ui.add(egui::TextEdit::singleline(&mut self.board).hint_text(hint).desired_width(260.0))
                    .labelled_by(label.id);
            });
        }
        let Some(found) = self.toolchain() else { return };
        if let Some(Ok(cores)) = &found.cores
            && let Some(missing) = toolchain::missing_core(self.board.trim(), cores)
        {
            ui.colored_label(ui.visuals().error_fg_color, format!("✖ {}", missing.message()));
            ui.horizontal_wrapped(|ui| {
                ui.add(egui::Label::new(RichText::new(&missing.command).monospace()).wrap());
                widgets::copy_button(ui, "install command", &missing.command);
                ui.small("then Look again");
            });
        }
    }

    /// A board of the other family switches the reference sketch folder too (never a user's own).
    fn follow_board(&mut self, target: &str) {
        let Some(family) = boards::family_of(target) else { return };
        let other = match family {
            Family::Esp8266 => Family::Esp32,
            Family::Esp32 => Family::Esp8266,
        };
        let typed = PathBuf::from(self.sketch_dir.trim());
        if typed == reference_sketch::sketch_dir(&self.project, other) {
            self.sketch_dir = reference_sketch::sketch_dir(&self.project, family).display().to_string();
        }
    }

    fn sketch_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        widgets::path_field(
            ui,
            worker,
            FileField::SketchFolder,
            labels::SKETCH_FOLDER,
            &mut self.sketch_dir,
            "the folder holding the .ino",
        );
        if let Some(family) = boards::family_of(&self.board) {
            let folder = PathBuf::from(self.sketch_dir.trim());
            let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let wrong =
                [Family::Esp8266, Family::Esp32].into_iter().find(|f| *f != family && f.sketch() == name);
            if let Some(wrong) = wrong {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "⚠ This is the {} sketch; the board is an {}: build {} instead.",
                        wrong.name(),
                        family.name(),
                        family.sketch()
                    ),
                );
            }
        }
        let copy = ui.horizontal_wrapped(|ui| {
            let clicked = ui.button(labels::COPY_SKETCH).on_hover_text("Writes both reference sketches (ESP8266, ESP32) and platformio.ini into the project's firmware/ folder; files you edited are kept.").clicked();
            match &self.sketch_copy {
                Some(Ok(r)) if !r.complete() => {
                    ui.small(format!("{} files not in {} yet", r.missing.len(), r.root.display()));
                }
                Some(Ok(r)) => {
                    ui.small(format!("✔ in {}", r.root.display()));
                }
                Some(Err(e)) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                None => {}
            }
            clicked
        });
        if copy.inner {
            worker.send(Command::Firmware(FirmwareCommand::ReferenceSketch(CopyMode::Missing)));
            let family = boards::family_of(&self.board).unwrap_or(Family::Esp8266);
            self.sketch_dir = reference_sketch::sketch_dir(&self.project, family).display().to_string();
        }
        let Some(Ok(report)) = &self.sketch_copy else { return };
        if !report.written.is_empty() {
            ui.small(format!("Copied {} files.", report.written.len()));
        }
        if report.edited.is_empty() {
            return;
        }
        let names: Vec<String> = report.edited.iter().map(|p| p.display().to_string()).collect();
        ui.add(
            egui::Label::new(
                RichText::new(format!(
                    "Kept your edits (they differ from the reference): {}",
                    names.join(", ")
                ))
                .small(),
            )
            .wrap(),
        );
        ui.horizontal_wrapped(|ui| {
            if !self.confirm_overwrite {
                self.confirm_overwrite = ui.small_button(labels::OVERWRITE_EDITS).clicked();
            } else {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!("Replace {} edited files?", names.len()),
                );
                if ui.button("Replace them").clicked() {
                    worker.send(Command::Firmware(FirmwareCommand::ReferenceSketch(CopyMode::Overwrite)));
                }
                if ui.button("Keep mine").clicked() {
                    self.confirm_overwrite = false;
                }
            }
        });
    }
}

/// How to install the toolchains and cores on this system (the others fold away).
fn install_hints_ui(ui: &mut egui::Ui) {
    let here = Os::current();
    hints_for(ui, here);
    egui::CollapsingHeader::new("On other systems").id_salt("install-hints-other").show(ui, |ui| {
        for os in [Os::Linux, Os::MacOs, Os::Windows].into_iter().filter(|o| *o != here) {
            ui.label(RichText::new(os.name()).strong());
            hints_for(ui, os);
        }
    });
    ui.add(
        egui::Label::new(
            RichText::new(format!(
                "Or build in the Arduino IDE: add {} and {} to File › Preferences › Additional boards manager URLs, \
                 install the esp8266 / esp32 core, and open the sketch folder after Write ota_config.h.",
                toolchain::ESP8266_INDEX_URL,
                toolchain::ESP32_INDEX_URL
            ))
            .small(),
        )
        .wrap(),
    );
}

fn hints_for(ui: &mut egui::Ui, os: Os) {
    for hint in toolchain::install_hints(os) {
        ui.label(format!("{} on {}:", hint.tool, os.name()));
        for command in &hint.commands {
            ui.horizontal_wrapped(|ui| {
                ui.add(egui::Label::new(RichText::new(command).monospace().small()).wrap());
                widgets::copy_button(ui, &format!("{} command", hint.tool), command);
            });
        }
        ui.add(egui::Label::new(RichText::new(hint.note).small().weak()).wrap());
    }
}
