//! The prebuilt path: a reference `.bin` (typed, browsed or dropped) is inspected, then baked
//! into a copy. The action row comes first; the before/after reports follow it.

use std::path::{Path, PathBuf};

use egui::RichText;

use super::{FirmwareStep, labels};
use crate::ui::widgets;
use crate::worker::{Command, FileField, FirmwareCommand, Worker};
use otaforge_firmware::{FirmwareReport, virtual_only};

impl FirmwareStep {
    pub(super) fn prebuilt_ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let field = widgets::path_field(
            ui,
            worker,
            FileField::FirmwareImage,
            labels::REFERENCE_IMAGE,
            &mut self.reference,
            "a build of the reference sketch (.bin), or drop one on the window",
        );
        let typed = !self.reference.trim().is_empty();
        let inspect = ui
            .horizontal_wrapped(|ui| {
                let clicked = ui.add_enabled(typed, egui::Button::new(labels::INSPECT)).clicked();
                ui.small("what it is, for which chip, whether its checksums hold, what is baked in");
                clicked
            })
            .inner;
        if typed && (inspect || field.picked || field.submitted) {
            self.message = None;
            let path = PathBuf::from(self.reference.trim());
            worker.send(Command::Firmware(FirmwareCommand::Inspect(path)));
        }
        let Some((path, result)) = &self.input else { return self.message_ui(ui) };
        let report = match result {
            Err(why) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("✖ {}: {why}", path.display()));
                return self.message_ui(ui);
            }
            Ok(report) => report,
        };
        if self.input_virtual_only {
            ui.colored_label(ui.visuals().warn_fg_color, format!("⚠ {}", virtual_only::NOTE));
        }
        widgets::path_field(
            ui,
            worker,
            FileField::BakeOutput,
            labels::OUTPUT,
            &mut self.output,
            "where the baked copy goes",
        );
        let can_bake = !self.busy && !self.output.trim().is_empty();
        if ui.add_enabled(can_bake, egui::Button::new(labels::BAKE)).clicked() {
            self.busy = true;
            self.message = None;
            worker.send(Command::Firmware(FirmwareCommand::Bake {
                input: path.clone(),
                output: PathBuf::from(self.output.trim()),
                form: self.form.clone(),
            }));
        }
        self.message_ui(ui);
        egui::CollapsingHeader::new(format!("Before: {}", path.display()))
            .id_salt("firmware-before")
            .default_open(self.baked.is_none())
            .show(ui, |ui| report_ui(ui, "before", report, self.input_virtual_only));
        if let Some((path, report)) = &self.baked {
            ui.label(format!("After: {}", path.display()));
            report_ui(ui, "after", report, self.baked_virtual_only);
        }
    }
}

fn report_ui(ui: &mut egui::Ui, id: &str, r: &FirmwareReport, virtual_only: bool) {
    let i = &r.image;
    egui::Grid::new(id).num_columns(2).spacing([12.0, 3.0]).striped(true).show(ui, |ui| {
        let mut row = |k: &str, v: String| {
            ui.label(k);
            ui.add(egui::Label::new(RichText::new(v).monospace()).wrap());
            ui.end_row();
        };
        row("Format", i.format.name().to_string());
        row("Chip", i.chip.map(|c| c.name()).unwrap_or("unknown").to_string());
        if virtual_only {
            row("Runs on", virtual_only::VIRTUAL_BOARDS_ONLY.to_string());
        }
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

/// `<input>-<device name or "baked">.bin` next to the input.
pub(super) fn default_output(input: &Path, name: &str) -> String {
    let stem =
        input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "firmware".into());
    let tag =
        if name.trim().is_empty() { "baked".to_string() } else { name.trim().replace(['/', '\\', ' '], "_") };
    input.with_file_name(format!("{stem}-{tag}.bin")).display().to_string()
}
