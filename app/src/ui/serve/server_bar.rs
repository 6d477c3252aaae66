//! The server's controls and what devices need to know about it: the address they poll and the
//! fingerprints of the certificate they will see and of the CA they trust.

use super::{ServeStep, ServerState, labels, message};
use crate::worker::{Command, ServeCommand, ServeSettings, Worker};

impl ServeStep {
    pub(super) fn server_bar(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let running = matches!(self.server, ServerState::Running(_));
        ui.horizontal(|ui| {
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
        match &self.server {
            ServerState::Running(info) => {
                egui::Grid::new("server-info").num_columns(2).spacing([12.0, 2.0]).show(ui, |ui| {
                    ui.label("Devices poll");
                    ui.vertical(|ui| {
                        for url in &info.urls {
                            ui.add(egui::Label::new(egui::RichText::new(url).monospace()).selectable(true));
                        }
                        if info.urls.is_empty() {
                            ui.label(format!("port {}", info.addr.port()));
                        }
                    });
                    ui.end_row();
                    ui.label("Server certificate SHA-256");
                    ui.add(egui::Label::new(
                        egui::RichText::new(&info.server_fingerprint).monospace().small(),
                    ));
                    ui.end_row();
                    ui.label("Devices trust SHA-256");
                    ui.add(egui::Label::new(
                        egui::RichText::new(&info.anchor_fingerprint).monospace().small(),
                    ));
                    ui.end_row();
                });
            }
            ServerState::Failed(why) => message(ui, false, why),
            ServerState::Stopped => {
                ui.label("The server is stopped: devices get no answer until you start it.");
            }
            ServerState::Starting => {}
        }
    }
}
