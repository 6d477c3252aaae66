//! The publish dialog: what a dropped file is (chip, size, version found), the version and channel
//! it would be published as, and every reason it would be refused — before anything is stored.

use std::path::PathBuf;

use egui::RichText;

use super::{bytes, labels};
use crate::worker::{Command, PublishCheck, PublishDraft, ServeCommand, Worker};

/// What the dialog did this frame.
pub(super) enum Outcome {
    /// Still open.
    Open,
    /// Closed without publishing.
    Cancelled,
    /// The user confirmed; the publish is under way.
    Publishing,
}

/// The dialog's state.
pub struct PublishDialog {
    /// The file.
    pub path: PathBuf,
    /// Version field.
    pub version: String,
    /// Channel field.
    pub channel: String,
    /// Sign checkbox.
    pub sign: bool,
    /// Compress checkbox.
    pub gzip: bool,
    /// The latest check (maybe of an earlier draft).
    pub check: Option<PublishCheck>,
    /// A publish is under way.
    pub busy: bool,
    /// Why the last publish failed.
    pub error: Option<String>,
    version_filled: bool,
}

impl PublishDialog {
    pub(super) fn new(path: PathBuf, channel: &str) -> Self {
        PublishDialog {
            path,
            version: String::new(),
            channel: channel.to_string(),
            sign: false,
            gzip: false,
            check: None,
            busy: false,
            error: None,
            version_filled: false,
        }
    }

    /// What the fields say now.
    pub fn draft(&self) -> PublishDraft {
        PublishDraft {
            path: self.path.clone(),
            version: self.version.clone(),
            channel: self.channel.clone(),
            sign: self.sign,
            gzip: self.gzip,
        }
    }

    /// The check, if it is of what the fields say now.
    pub fn current_check(&self) -> Option<&PublishCheck> {
        self.check.as_ref().filter(|c| c.draft == self.draft())
    }

    /// A check came back; the version the image carries fills an empty version field once.
    pub(super) fn checked(&mut self, check: PublishCheck, worker: &Worker) {
        if check.draft.path != self.path {
            return;
        }
        if !self.version_filled && self.version.trim().is_empty() {
            self.version_filled = true;
            if let Some(found) = &check.found_version {
                self.version = found.clone();
                worker.send(Command::Serve(ServeCommand::Check(self.draft())));
            }
        }
        // Checks run concurrently: a late answer to an older draft must not hide the current one.
        if check.draft == self.draft() || self.current_check().is_none() {
            self.check = Some(check);
        }
    }

    pub(super) fn failed(&mut self, why: String) {
        self.busy = false;
        self.error = Some(why);
    }

    pub(super) fn ui(&mut self, ctx: &egui::Context, worker: &Worker) -> Outcome {
        let mut outcome = Outcome::Open;
        let modal = egui::Modal::new(egui::Id::unique("otaforge-publish-dialog")).show(ctx, |ui| {
            ui.set_width(560.0);
            ui.heading("Publish firmware");
            let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            ui.label(RichText::new(name).strong());
            ui.add(egui::Label::new(RichText::new(self.path.display().to_string()).small()).truncate());
            ui.add_space(6.0);
            self.inspection(ui);
            ui.add_space(6.0);
            let mut changed = false;
            egui::Grid::new("publish-fields").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
                let label = ui.label(labels::VERSION);
                let edit = egui::TextEdit::singleline(&mut self.version)
                    .hint_text("e.g. 1.4.2")
                    .desired_width(200.0);
                changed |= ui.add_enabled(!self.busy, edit).labelled_by(label.id).changed();
                ui.end_row();
                let label = ui.label(labels::CHANNEL);
                let edit =
                    egui::TextEdit::singleline(&mut self.channel).hint_text("stable").desired_width(200.0);
                changed |= ui.add_enabled(!self.busy, edit).labelled_by(label.id).changed();
                ui.end_row();
            });
            changed |= self.options(ui);
            if changed {
                self.error = None;
                worker.send(Command::Serve(ServeCommand::Check(self.draft())));
            }
            ui.add_space(6.0);
            let ready = self.verdict(ui);
            if let Some(why) = &self.error {
                super::message(ui, false, why);
            }
            ui.add_space(8.0);
            ui.horizontal(|ui| {
                let publish = ui.add_enabled(ready && !self.busy, egui::Button::new(labels::PUBLISH));
                if publish.clicked() {
                    self.busy = true;
                    self.error = None;
                    if let Some(checked) = self.current_check().and_then(|c| c.checked.clone()) {
                        worker.send(Command::Serve(ServeCommand::Publish(checked)));
                    }
                    outcome = Outcome::Publishing;
                }
                if ui.add_enabled(!self.busy, egui::Button::new(labels::CANCEL)).clicked() {
                    outcome = Outcome::Cancelled;
                }
                if self.busy {
                    ui.label("Publishing…");
                }
            });
        });
        if modal.should_close() && !self.busy {
            outcome = Outcome::Cancelled;
        }
        outcome
    }

    fn inspection(&self, ui: &mut egui::Ui) {
        let Some(check) = &self.check else {
            ui.label("Reading the file…");
            return;
        };
        let report = match &check.inspection {
            Ok(r) => r,
            Err(_) => return, // the reason is among the problems below
        };
        let image = &report.image;
        egui::Grid::new("publish-inspection").num_columns(2).spacing([12.0, 3.0]).striped(true).show(
            ui,
            |ui| {
                let mut row = |k: &str, v: String| {
                    ui.label(k);
                    ui.label(RichText::new(v).monospace());
                    ui.end_row();
                };
                row("Format", image.format.name().to_string());
                row("Chip", image.chip.map(|c| c.name()).unwrap_or("unknown").to_string());
                row("Size", format!("{} ({} bytes)", bytes(check.size), check.size));
                if let Some(flash) = image.flash_size_bytes {
                    row("Flash it asks for", bytes(flash));
                }
                row(
                    "Version found",
                    check.found_version.clone().unwrap_or_else(|| "none: type one below".into()),
                );
                let checksums =
                    if image.is_valid() { "all valid".to_string() } else { image.problems().join("; ") };
                row("Checksums", checksums);
                let current = match &check.current {
                    Some(r) => {
                        format!("{} (#{}, {})", r.version, r.id, r.chip.as_deref().unwrap_or("any chip"))
                    }
                    None => "nothing yet".into(),
                };
                row(&format!("\"{}\" serves now", check.draft.channel.trim()), current);
            },
        );
    }

    /// The sign and compress checkboxes; true when one changed. Where the channel takes only
    /// signed firmware the sign box is ticked and cannot be cleared, saying why.
    fn options(&mut self, ui: &mut egui::Ui) -> bool {
        let must_sign = self.current_check().or(self.check.as_ref()).is_some_and(|c| c.must_sign);
        let mut changed = false;
        ui.horizontal(|ui| {
            let mut sign = self.sign || must_sign;
            let box_ = ui.add_enabled(!self.busy && !must_sign, egui::Checkbox::new(&mut sign, labels::SIGN));
            if box_.changed() {
                self.sign = sign;
                changed = true;
            }
            if must_sign {
                ui.label(RichText::new("(this channel takes only signed firmware)").small());
            }
        });
        changed |= ui.add_enabled(!self.busy, egui::Checkbox::new(&mut self.gzip, labels::GZIP)).changed();
        changed
    }

    /// What the stored release will be: signed by which key, compressed by how much.
    fn outcome(ui: &mut egui::Ui, checked: &otaforge_actions::publish::Checked) {
        let short = otaforge_pki::signing::short;
        let image = checked.image.as_ref();
        egui::Grid::new("publish-outcome").num_columns(2).spacing([12.0, 3.0]).show(ui, |ui| {
            let signature = match (&checked.signed_by, image.and_then(|i| i.signature_len)) {
                (Some(by), Some(len)) => format!("signed by key {} ({len}-byte trailer)", short(by)),
                (Some(by), None) => format!("signed by key {}", short(by)),
                (None, _) => "not signed".into(),
            };
            ui.label("Signature");
            ui.label(RichText::new(signature).monospace());
            ui.end_row();
            if let Some(trusts) = &checked.trusts {
                ui.label("Devices that install it");
                let what = if checked.is_carrier() {
                    format!("move to key {} (carrier release: signed by the replaced key)", short(trusts))
                } else {
                    format!("accept only updates signed by key {}", short(trusts))
                };
                ui.label(RichText::new(what).monospace());
                ui.end_row();
            }
            if let Some(g) = image.and_then(|i| i.gzip.as_ref())
                && let (Some(unpacked), Some(saved)) =
                    (g.unpacked_len, g.percent_saved(checked.bytes().len()))
            {
                ui.label("Compressed");
                ui.label(
                    RichText::new(format!(
                        "{} on the wire instead of {} ({saved:.0}% less)",
                        bytes(checked.bytes().len() as u64),
                        bytes(unpacked as u64)
                    ))
                    .monospace(),
                );
                ui.end_row();
            }
        });
    }

    /// Shows the problems and warnings; true when the file can be published as the fields say.
    fn verdict(&self, ui: &mut egui::Ui) -> bool {
        let Some(check) = self.current_check() else {
            if self.check.is_some() {
                ui.label("Checking…");
            }
            return false;
        };
        for problem in &check.problems {
            ui.colored_label(ui.visuals().error_fg_color, format!("✖ {problem}"));
        }
        for warning in &check.warnings {
            ui.colored_label(ui.visuals().warn_fg_color, format!("⚠ {warning}"));
        }
        if let Some(checked) = &check.checked {
            Self::outcome(ui, checked);
        }
        if check.problems.is_empty() {
            ui.label("✔ Devices will accept this image: nothing has been published yet.");
            true
        } else {
            ui.label("Nothing has been published.");
            false
        }
    }
}
