//! The Flash step's serial monitor: what the board prints, after a flash or on request.

use egui::RichText;

use super::{FlashStep, MONITOR_BAUDS, labels};
use crate::worker::{Command, FlashCommand, Worker};

impl FlashStep {
    pub(super) fn monitor_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.label(RichText::new("Serial monitor").strong());
        ui.horizontal_wrapped(|ui| {
            if self.monitoring {
                if ui.button(labels::STOP_MONITOR).clicked() {
                    worker.send(Command::Flash(FlashCommand::StopMonitor));
                }
            } else if ui
                .add_enabled(
                    !self.running && !self.port.trim().is_empty(),
                    egui::Button::new(labels::MONITOR),
                )
                .clicked()
            {
                self.monitoring = true;
                self.monitor_open = None;
                self.monitor_note = None;
                worker.send(Command::Flash(FlashCommand::Monitor {
                    port: self.port.trim().to_string(),
                    baud: self.monitor_baud,
                }));
            }
            let baud = ui.label("at");
            ui.add_enabled_ui(!self.monitoring, |ui| {
                egui::ComboBox::from_id_salt("monitor-baud")
                    .selected_text(self.monitor_baud.to_string())
                    .show_ui(ui, |ui| {
                        for b in MONITOR_BAUDS {
                            ui.selectable_value(&mut self.monitor_baud, b, b.to_string());
                        }
                    })
                    .response
                    .labelled_by(baud.id);
            });
            ui.small("115200 for most sketches; 74880 shows the ESP8266's boot messages");
            if ui.button("Clear").clicked() {
                self.monitor.clear();
            }
        });
        if self.monitoring {
            match &self.monitor_open {
                Some(port) => {
                    ui.label(format!("Monitoring {port} at {} baud.", self.monitor_baud));
                }
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(format!("Opening {}…", self.port.trim()));
                    });
                }
            }
        }
        if let Some(note) = &self.monitor_note {
            ui.colored_label(ui.visuals().warn_fg_color, note);
        }
        egui::Frame::group(ui.style()).show(ui, |ui| {
            egui::ScrollArea::vertical().id_salt("monitor").max_height(220.0).stick_to_bottom(true).show(
                ui,
                |ui| {
                    ui.set_min_width(ui.available_width());
                    if self.monitor.is_empty() {
                        ui.label(RichText::new("(nothing printed yet)").weak());
                    }
                    for line in &self.monitor {
                        ui.add(egui::Label::new(RichText::new(line).monospace()).wrap());
                    }
                },
            );
        });
    }
}
