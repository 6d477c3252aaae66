//! The trust anchor for a sketch of your own: the PEM to read and copy, and the PEM or C header
//! written where the user types (Browse… only fills the field, so export works with no file
//! dialog at all, and says why when it cannot write).

use std::path::PathBuf;

use super::super::widgets::{self, copy_button, path_field_then};
use crate::worker::{Command, Event, ExportFormat, FileField, Worker};
use otaforge_pki::TrustMode;

/// The button that writes the PEM (tests find it by this text).
pub const EXPORT_PEM: &str = "Export CA (PEM)";
/// The button that writes the C header.
pub const EXPORT_HEADER: &str = "Export C header";
/// The field the PEM is written to.
pub const PEM_FIELD: &str = "Write the PEM to";
/// The field the C header is written to.
pub const HEADER_FIELD: &str = "Write the C header to";

/// Where the exports go, remembered between runs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub(super) struct ExportPaths {
    pem: String,
    header: String,
}

/// The section's state.
#[derive(Default)]
pub(in crate::ui) struct ExportSection {
    pub(super) paths: ExportPaths,
    /// The anchor's PEM, once the worker has read it.
    pub(in crate::ui) pem: Option<String>,
    /// The last export's outcome (ok, words).
    message: Option<(bool, String)>,
}

impl ExportSection {
    pub(super) fn new(paths: ExportPaths) -> Self {
        ExportSection { paths, ..Default::default() }
    }

    /// The material changed: read its anchor again (pinned leaf and CA differ).
    pub(super) fn reload(&mut self, worker: &Worker) {
        self.pem = None;
        worker.send(Command::ReadAnchor(ExportFormat::Pem));
    }

    /// Takes the export events; gives back the others.
    pub(super) fn on_event(&mut self, event: Event) -> Option<Event> {
        match event {
            Event::Exported { format, path } => {
                let what = match format {
                    ExportFormat::Pem => "PEM",
                    ExportFormat::CHeader => "C header",
                };
                self.message = Some((true, format!("{what} written to {}", path.display())));
            }
            Event::ExportFailed(why) => self.message = Some((false, why)),
            Event::Anchor { format: ExportFormat::Pem, text } => match text {
                Ok(pem) => self.pem = Some(pem),
                Err(why) => self.message = Some((false, why)),
            },
            other => return Some(other),
        }
        None
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker, mode: TrustMode) {
        let anchor = match mode {
            TrustMode::PrivateCa => "CA certificate",
            TrustMode::PinLeaf => "pinned certificate",
        };
        ui.strong("For a sketch of your own");
        ui.label(format!(
            "Step 2 bakes the {anchor} into your firmware for you. For your own code or another tool, \
             copy it here or write it to a file."
        ));
        // Arrives after the certificate; the fields below keep their ids (see widgets::section).
        if let Some(pem) = &self.pem {
            widgets::section(ui, "certificate.anchor", |ui| {
                ui.horizontal_wrapped(|ui| {
                    copy_button(ui, &format!("{anchor} (PEM)"), pem);
                    ui.label(format!("the {anchor} (PEM), to paste into a sketch"));
                });
                egui::CollapsingHeader::new(format!("Show the {anchor} (PEM)")).show(ui, |ui| {
                    ui.add(egui::Label::new(egui::RichText::new(pem).monospace()).selectable(true).wrap());
                });
            });
        }
        let pem_button = match mode {
            TrustMode::PrivateCa => EXPORT_PEM,
            TrustMode::PinLeaf => "Export certificate (PEM)",
        };
        self.field(ui, worker, ExportFormat::Pem, pem_button);
        self.field(ui, worker, ExportFormat::CHeader, EXPORT_HEADER);
        if let Some((ok, text)) = &self.message {
            super::super::serve::message(ui, *ok, text);
        }
    }

    /// One path field and the button that writes to what it holds (Enter does too).
    fn field(&mut self, ui: &mut egui::Ui, worker: &Worker, format: ExportFormat, button: &str) {
        let (field, label, text) = match format {
            ExportFormat::Pem => (FileField::CaExportPem, PEM_FIELD, &mut self.paths.pem),
            ExportFormat::CHeader => (FileField::CaExportHeader, HEADER_FIELD, &mut self.paths.header),
        };
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let hint = format!("e.g. {}", home.join(format.file_name()).display());
        let typed = !text.trim().is_empty();
        let mut export = false;
        let response = path_field_then(ui, worker, field, label, text, &hint, 140.0, |ui| {
            let why = "Type where to write it, or use Browse…";
            export = ui.add_enabled(typed, egui::Button::new(button)).on_disabled_hover_text(why).clicked();
        });
        if (export || (response.submitted && typed)) && !text.trim().is_empty() {
            self.message = None;
            worker.send(Command::ExportAnchor { format, to: PathBuf::from(text.trim()) });
        }
    }
}
