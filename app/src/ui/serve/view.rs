//! The Serve step's page: the server bar, the publish row, the last outcome, and the tabs.

use super::super::{Step, widgets};
use super::{ServeStep, ServerState, Tab, downloads, message, publish_dialog, releases};
use crate::worker::Worker;

impl ServeStep {
    pub(in crate::ui) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.heading("4. Serve");
        ui.label(
            "The HTTPS update server your devices poll. Publish a .bin, and every device on its channel \
             downloads it at its next check.",
        );
        ui.add_space(6.0);
        // Each part keeps its widgets' ids when a part above changes: the server's state, the
        // last outcome and the first device arrive on their own (see widgets::section).
        widgets::section(ui, "serve.server", |ui| self.server_bar(ui, worker));
        ui.add_space(4.0);
        widgets::section(ui, "serve.publish", |ui| self.publish_row(ui, worker));
        let first_device_next = matches!(self.server, ServerState::Running(_)) && self.devices.is_empty();
        widgets::section_if(ui, self.message.is_some() || first_device_next, "serve.message", |ui| {
            if let Some((ok, text)) = &self.message {
                message(ui, *ok, text);
            }
            if first_device_next {
                widgets::next_step(
                    ui,
                    Step::Flash,
                    "flash a board with firmware baked for this server: it shows up under Devices at its \
                     first update check.",
                );
            }
        });
        ui.separator();
        widgets::section(ui, "serve.tabs", |ui| self.tabs(ui));
        ui.add_space(4.0);
        widgets::section(ui, "serve.tab", |ui| match self.form.tab {
            Tab::Releases => releases::ui(
                ui,
                worker,
                releases::Lists {
                    channels: &self.channels,
                    releases: &self.releases,
                    disabled: &self.disabled,
                    unreadable: &self.unreadable,
                },
                &mut self.rollout_edits,
                &mut self.promote_targets,
            ),
            Tab::Devices => self.devices.ui(ui, worker),
            Tab::Downloads => downloads::ui(ui, &self.downloads),
            Tab::Log => self.log.ui(ui),
        });
        if let Some(dialog) = &mut self.dialog {
            let channel = dialog.channel.clone();
            match dialog.ui(ui.ctx(), worker) {
                publish_dialog::Outcome::Open => {}
                publish_dialog::Outcome::Cancelled => self.dialog = None,
                publish_dialog::Outcome::Publishing => self.form.channel = channel,
            }
        }
        self.devices.detail_window(ui.ctx(), worker);
        if !self.devices.is_empty() {
            // Keeps "last seen" and "offline" true while nothing else moves; costs one frame a minute.
            ui.ctx().request_repaint_after(std::time::Duration::from_secs(60));
        }
    }

    fn tabs(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            for tab in Tab::ALL {
                let count = match tab {
                    Tab::Releases => self.releases.len(),
                    Tab::Devices => self.devices.len(),
                    Tab::Downloads => self.downloads.len(),
                    Tab::Log => self.log.len(),
                };
                let text = format!("{} ({count})", tab.title());
                if ui.selectable_label(self.form.tab == tab, text).clicked() {
                    self.form.tab = tab;
                }
            }
        });
    }
}
