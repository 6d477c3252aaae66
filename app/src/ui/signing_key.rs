//! The Certificate step's "Signing key" section: the keys releases are signed with, so devices run
//! only firmware this project made. Making, rotating and copying the public keys; the private
//! halves stay in the project folder (0600) and are never shown.

use egui::RichText;

use super::widgets::{copy_button, copy_button_with};
use crate::worker::{Command, Event, SigningKeyInfo, Worker};
use otaforge_pki::signing::{self, Family};

/// Button that makes the first keys (tests find it by this text).
pub const NEW_KEYS: &str = "Generate signing keys";
/// Button that asks to rotate them.
pub const REPLACE_KEYS: &str = "Replace signing keys…";
/// The confirmation of a rotation.
pub const CONFIRM_REPLACE: &str = "Replace both keys";

/// What the section knows.
#[derive(Default)]
pub struct SigningKeySection {
    /// The current keys, once loaded (empty: the project has none).
    pub keys: Option<Vec<SigningKeyInfo>>,
    /// The last failure, in words.
    pub error: Option<String>,
    busy: bool,
    confirm_replace: bool,
    notice: Option<String>,
}

impl SigningKeySection {
    pub(super) fn new(worker: &Worker) -> Self {
        worker.send(Command::LoadSigningKeys);
        SigningKeySection { busy: true, ..Default::default() }
    }

    /// Takes the events that are about signing keys; gives back the others.
    pub(super) fn on_event(&mut self, event: Event) -> Option<Event> {
        match event {
            Event::SigningKeys(keys) => {
                if self.busy && self.keys.is_some() {
                    self.notice = Some(if self.keys.as_ref().is_some_and(|k| !k.is_empty()) {
                        "New keys made; the old ones are in retired/. The next release on each channel is \
                         signed by the old key and carries the new one (the carrier), then the new key signs."
                            .into()
                    } else {
                        "Keys made. Bake the firmware again: it then installs only releases signed by them."
                            .into()
                    });
                }
                self.keys = Some(keys);
                self.busy = false;
                self.error = None;
                self.confirm_replace = false;
                None
            }
            Event::SigningKeysFailed(why) => {
                self.busy = false;
                self.error = Some(why);
                None
            }
            other => Some(other),
        }
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.heading("Signing key");
        ui.label(
            "TLS proves devices talk to your server; a signature proves the firmware is yours. Baked \
             firmware carries the public key and installs only updates signed with it.",
        );
        let Some(keys) = &self.keys else {
            ui.label("Reading the signing keys…");
            return;
        };
        if keys.is_empty() {
            ui.label("No signing keys yet: updates are installed without a signature check.");
        }
        egui::Grid::new("signing-keys").num_columns(3).spacing([12.0, 4.0]).show(ui, |ui| {
            for k in keys {
                let name = k.family.to_string();
                let algorithm = match k.family {
                    Family::Esp8266 => "RSA-2048",
                    Family::Esp32 => "ECDSA P-256",
                };
                ui.label(format!("{name} ({algorithm})"));
                let retired = match k.retired {
                    0 => String::new(),
                    n => format!(", {n} replaced"),
                };
                ui.horizontal(|ui| {
                    ui.label(
                        RichText::new(format!("{}…{retired}", signing::short(&k.fingerprint))).monospace(),
                    )
                    .on_hover_text(&k.fingerprint);
                    copy_button(ui, &format!("{name} signing key fingerprint"), &k.fingerprint);
                });
                copy_button_with(ui, "Copy public key", &format!("{name} public key (PEM)"), &k.pem);
                ui.end_row();
            }
        });
        let has_keys = !keys.is_empty();
        ui.horizontal(|ui| {
            let label = if has_keys { REPLACE_KEYS } else { NEW_KEYS };
            if ui.add_enabled(!self.busy, egui::Button::new(label)).clicked() {
                if has_keys {
                    self.confirm_replace = true;
                } else {
                    self.busy = true;
                    worker.send(Command::NewSigningKeys { replace: false });
                }
            }
        });
        if self.confirm_replace {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                ui.label(
                    "Devices keep verifying with the current keys until they run a release that carries \
                     the new ones: publish once more after replacing, and that release (signed by the old \
                     key) moves them over. Without the old keys in retired/ they could not be updated.",
                );
                ui.horizontal(|ui| {
                    if ui.add_enabled(!self.busy, egui::Button::new(CONFIRM_REPLACE)).clicked() {
                        self.busy = true;
                        worker.send(Command::NewSigningKeys { replace: true });
                    }
                    if ui.button("Keep them").clicked() {
                        self.confirm_replace = false;
                    }
                });
            });
        }
        if self.busy {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Making keys…");
            });
        }
        if let Some(err) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, format!("✖ {err}"));
        }
        if let Some(notice) = &self.notice {
            ui.label(notice);
        }
    }
}
