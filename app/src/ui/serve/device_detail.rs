//! A device's detail window: every field it reported and its latest requests with the headers it
//! sent (what a support question about one device needs).

use egui::RichText;

use super::super::widgets::copy_button;
use super::devices::{DeviceTable, next_check, state_text};
use super::{bytes, clock};
use crate::worker::{Command, ServeCommand, Worker};
use otaforge_store::{Device, RequestRecord, now_unix};

impl DeviceTable {
    /// The selected device's window: every field it reported, and its request history.
    pub(super) fn detail_window(&mut self, ctx: &egui::Context, worker: &Worker) {
        let Some(mac) = self.selected.clone() else { return };
        let Some(d) = self.get(&mac).cloned() else { return };
        let mut open = true;
        let state = self.state_text(&mac).unwrap_or_else(|| state_text(&d, None, now_unix()));
        egui::Window::new(format!("Device {mac}")).open(&mut open).default_width(520.0).show(ctx, |ui| {
            device_fields(ui, &d, &state);
            ui.separator();
            ui.horizontal(|ui| {
                ui.strong("Request history");
                if ui.button("Reload history").clicked() {
                    worker.send(Command::Serve(ServeCommand::History(mac.clone())));
                }
            });
            match &self.history {
                Some((m, requests)) if *m == mac => history(ui, requests),
                _ => {
                    ui.label("Reading…");
                }
            }
        });
        if !open {
            self.selected = None;
            self.history = None;
        }
    }
}

fn device_fields(ui: &mut egui::Ui, d: &Device, state: &str) {
    egui::Grid::new("device-fields").num_columns(2).spacing([12.0, 2.0]).striped(true).show(ui, |ui| {
        ui.label("MAC");
        ui.horizontal(|ui| {
            ui.add(egui::Label::new(RichText::new(&d.mac).monospace()).selectable(true));
            copy_button(ui, "MAC", &d.mac);
        });
        ui.end_row();
        let mut row = |k: &str, v: String| {
            ui.label(k);
            ui.add(egui::Label::new(RichText::new(v).monospace()).selectable(true));
            ui.end_row();
        };
        row("Name", name_words(d));
        row("State", state.to_string());
        row("Last answer", format!("{} — {}", d.last_status, d.last_reason));
        row("Chip", format!("{} {}", d.family, d.chip_id.as_deref().unwrap_or("")));
        row("Version", d.version.clone().unwrap_or_else(|| "not reported".into()));
        row("Channel", d.channel.clone());
        row("IP", d.remote_ip.clone());
        row("Flash", d.chip_size.map(bytes).unwrap_or_else(|| "?".into()));
        row("Free space", d.free_space.map(bytes).unwrap_or_else(|| "?".into()));
        row("Sketch MD5", d.sketch_md5.clone().unwrap_or_default());
        row("SDK", d.sdk_version.clone().unwrap_or_default());
        row("First seen (UTC)", clock(d.first_seen));
        row("Last seen (UTC)", clock(d.last_seen));
        let (due, when) = next_check(d, now_unix());
        row("Next check", if d.next_check_at().is_some() { format!("{due} ({when})") } else { when });
    });
}

/// The name shown, and where it comes from.
fn name_words(d: &Device) -> String {
    match (d.user_name.as_str(), d.name.as_str()) {
        ("", "") => "none reported (Rename… gives it one)".into(),
        ("", reported) => format!("{reported} (reported by the device)"),
        (given, "") => format!("{given} (named here; the device reports none)"),
        (given, reported) => format!("{given} (named here; the device reports \"{reported}\")"),
    }
}

fn history(ui: &mut egui::Ui, requests: &[RequestRecord]) {
    if requests.is_empty() {
        ui.label("No requests recorded.");
        return;
    }
    egui::ScrollArea::vertical().id_salt("device-history").max_height(300.0).show(ui, |ui| {
        for (i, q) in requests.iter().enumerate() {
            let title = format!("{}  {} {} — {} {}", clock(q.at), q.method, q.path, q.status, q.reason);
            egui::CollapsingHeader::new(title).id_salt(("request", i)).show(ui, |ui| {
                ui.label(format!("from {}", q.remote));
                ui.add(egui::Label::new(RichText::new(&q.headers).monospace().small()).selectable(true));
            });
        }
    });
}
