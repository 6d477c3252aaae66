//! The server's controls and what devices need to know about it: the address they poll and the
//! fingerprints of the certificate they will see and of the CA they trust, each with a Copy
//! button (they are pasted into sketches and compared with a device's serial output).

use super::super::widgets::copy_button;
use super::{ServeStep, ServerState, labels, message};
use crate::worker::{Command, ServeCommand, ServeSettings, Worker};

impl ServeStep {
    pub(super) fn server_bar(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let running = matches!(self.server, ServerState::Running(_));
        ui.horizontal_wrapped(|ui| {
            ui.add_enabled_ui(!running, |ui| {
                let label = ui.label("Listen on");
                ui.add(egui::TextEdit::singleline(&mut self.form.bind).desired_width(120.0))
                    .labelled_by(label.id);
                let label = ui.label("Port");
                ui.add(egui::DragValue::new(&mut self.form.port)).labelled_by(label.id);
            });
            match self.server {
                ServerState::Running(_) => {
                    if ui.button(labels::STOP).clicked() {
                        // Stopped on purpose: not started again at the next opening.
                        self.form.serving = None;
                        worker.send(Command::Serve(ServeCommand::Stop));
                    }
                    let tip = "Switch on a virtual ESP8266 running firmware baked for this server";
                    if ui.button(labels::TRY).on_hover_text(tip).clicked() {
                        worker.send(Command::Serve(ServeCommand::TryVirtualDevice));
                    }
                }
                ServerState::Starting => {
                    ui.add_enabled(false, egui::Button::new(labels::START));
                    ui.label("Starting…");
                }
                ServerState::Stopped | ServerState::Failed(_) => {
                    if ui.button(labels::START).clicked() {
                        self.server = ServerState::Starting;
                        let settings = ServeSettings { bind: self.form.bind.clone(), port: self.form.port };
                        worker.send(Command::Serve(ServeCommand::Start(settings)));
                    }
                }
            }
        });
        ui.checkbox(&mut self.form.restart, labels::RESTART).on_hover_text(
            "If the server is running when you close OTA Forge, it starts again the next time OTA Forge opens",
        );
        match &self.server {
            ServerState::Running(info) => {
                ui.horizontal_wrapped(|ui| {
                    ui.label("Devices poll");
                    for (i, url) in info.urls.iter().enumerate() {
                        ui.add(egui::Label::new(egui::RichText::new(url).monospace()).selectable(true));
                        let what = if i == 0 { "poll URL".to_string() } else { format!("poll URL {url}") };
                        copy_button(ui, &what, url);
                    }
                    if info.urls.is_empty() {
                        ui.label(format!("port {}", info.addr.port()));
                    }
                });
                fingerprint(
                    ui,
                    "Server certificate SHA-256",
                    "server certificate fingerprint",
                    &info.server_fingerprint,
                );
                fingerprint(ui, "Devices trust SHA-256", "trusted fingerprint", &info.anchor_fingerprint);
            }
            ServerState::Failed(why) => message(ui, false, why),
            ServerState::Stopped => {
                ui.label("The server is stopped: devices get no answer until you start it.");
            }
            ServerState::Starting => {}
        }
    }
}

/// `name`, the fingerprint's ends (the whole of it on hover, and in step 1) and its Copy button:
/// 95 characters would take two lines of a narrow window, and users compare or paste it whole.
fn fingerprint(ui: &mut egui::Ui, name: &str, what: &str, value: &str) {
    ui.horizontal_wrapped(|ui| {
        ui.label(name);
        ui.label(egui::RichText::new(short(value)).monospace()).on_hover_text(value);
        copy_button(ui, what, value);
    });
}

/// "AD:5A:9F:C1:60:29…3C:B7:3E": the first six and last three bytes of a fingerprint.
fn short(fingerprint: &str) -> String {
    let bytes: Vec<&str> = fingerprint.split(':').collect();
    if bytes.len() <= 9 {
        return fingerprint.to_string();
    }
    format!("{}…{}", bytes[..6].join(":"), bytes[bytes.len() - 3..].join(":"))
}
