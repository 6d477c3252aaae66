//! The Flash step's "this board's own settings": name and Wi-Fi, written to the board's device
//! settings area with the image (or alone, with "Write only these settings"), so no update that
//! the whole channel gets ever replaces them.

use egui::RichText;

use super::{FlashStep, labels};
use crate::worker::{Command, FlashCommand, Worker};
use otaforge_firmware::device_settings::{DeviceSettings, Wifi};

/// What the user typed for this board.
#[derive(Debug, Clone, Default)]
pub struct OwnSettings {
    /// The board's name (empty: derived from its MAC).
    pub name: String,
    /// Its Wi-Fi network (empty: the one built into the firmware).
    pub ssid: String,
    /// Its Wi-Fi password (kept only in memory).
    pub password: String,
}

impl OwnSettings {
    /// The settings to write: `Ok(None)` when nothing was typed, `Err` with the reason when
    /// something typed cannot be used.
    pub fn settings(&self) -> Result<Option<DeviceSettings>, String> {
        let (name, ssid) = (self.name.trim(), self.ssid.trim());
        if name.is_empty() && ssid.is_empty() {
            return Ok(None);
        }
        let wifi = (!ssid.is_empty()).then(|| Wifi { ssid: ssid.into(), password: self.password.clone() });
        let s = DeviceSettings { name: name.into(), wifi };
        s.validate().map_err(|e| e.to_string())?;
        Ok(Some(s))
    }
}

impl FlashStep {
    /// Folded away unless something is typed in it: most flashes need none of it.
    pub(super) fn own_settings_section(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let typed = !self.own.name.trim().is_empty() || !self.own.ssid.trim().is_empty();
        egui::CollapsingHeader::new("This board's own settings: name, Wi-Fi (optional)")
            .id_salt("own-settings-section")
            .default_open(typed)
            .show(ui, |ui| self.own_settings(ui, worker));
    }

    fn own_settings(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.add(
            egui::Label::new(
                RichText::new(
                    "Kept in the board's settings area, outside the firmware: updates to the whole channel \
                     never replace them, and they are never published. Leave empty to keep what the board has.",
                )
                .small(),
            )
            .wrap(),
        );
        egui::Grid::new("own-settings").num_columns(2).show(ui, |ui| {
            let l = ui.label(labels::DEVICE_NAME);
            ui.add(egui::TextEdit::singleline(&mut self.own.name).hint_text("kitchen").desired_width(200.0))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label(labels::WIFI_SSID);
            ui.add(egui::TextEdit::singleline(&mut self.own.ssid).desired_width(200.0)).labelled_by(l.id);
            ui.end_row();
            let l = ui.label(labels::WIFI_PASSWORD);
            ui.add(egui::TextEdit::singleline(&mut self.own.password).password(true).desired_width(200.0))
                .labelled_by(l.id);
            ui.end_row();
        });
        let settings = self.own.settings();
        if let Err(why) = &settings {
            ui.colored_label(ui.visuals().error_fg_color, why);
        }
        let can = !self.running && !self.port.trim().is_empty() && matches!(settings, Ok(Some(_)));
        if ui.add_enabled(can, egui::Button::new(labels::PROVISION)).clicked()
            && let Ok(Some(settings)) = settings
        {
            self.begin_run();
            worker.send(Command::Flash(FlashCommand::Provision {
                port: self.port.trim().to_string(),
                chip: self.chip,
                baud: self.baud,
                settings,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_settings_are_checked() {
        assert_eq!(OwnSettings::default().settings(), Ok(None));
        let own = OwnSettings { name: "kitchen".into(), ssid: "home".into(), password: "12345678".into() };
        assert!(own.settings().unwrap().is_some());
        let short = OwnSettings { password: "x".into(), ..own.clone() };
        assert!(short.settings().unwrap_err().contains("8 to 63"));
        let spaced = OwnSettings { name: "my board".into(), ..own };
        assert!(spaced.settings().is_err());
    }
}
