//! The settings form: the three every newcomer sets, then the rest folded away.

use super::FirmwareStep;

impl FirmwareStep {
    /// The last message, under the action that caused it.
    pub(super) fn message_ui(&self, ui: &mut egui::Ui) {
        if let Some((ok, text)) = &self.message {
            let color = if *ok { ui.visuals().text_color() } else { ui.visuals().error_fg_color };
            ui.add(
                egui::Label::new(
                    egui::RichText::new(format!("{} {text}", if *ok { "✔" } else { "✖" })).color(color),
                )
                .wrap(),
            );
        }
    }

    pub(super) fn settings_form(&mut self, ui: &mut egui::Ui, default_host: Option<&str>) {
        let f = &mut self.form;
        egui::Grid::new("bake-form").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
            text_row(ui, "Version", &mut f.version, "e.g. 1.0.0 (a .bin may carry its own)");
            text_row(ui, "Host", &mut f.host, default_host.unwrap_or("from the server certificate"));
            text_row(ui, "Channel", &mut f.channel, "(default)");
        });
        egui::CollapsingHeader::new("More settings: port, path, poll interval, TLS buffers, Wi-Fi")
            .id_salt("bake-form-more")
            .show(ui, |ui| {
                egui::Grid::new("bake-form-advanced").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
                    number_row(ui, "Port", &mut f.port);
                    text_row(ui, "Path", &mut f.path, "/update");
                    text_row(ui, "Device name", &mut f.device_name, "optional: one board's image");
                    number_row(ui, "Poll interval (s)", &mut f.poll_interval_s);
                    number_row(ui, "TLS receive buffer", &mut f.tls_rx_buffer);
                    number_row(ui, "TLS send buffer", &mut f.tls_tx_buffer);
                    text_row(ui, "Wi-Fi network", &mut f.wifi_ssid, "keep what the firmware has");
                    let label = ui.label("Wi-Fi password");
                    ui.add(
                        egui::TextEdit::singleline(&mut f.wifi_password).password(true).desired_width(220.0),
                    )
                    .labelled_by(label.id);
                    ui.end_row();
                });
            });
    }
}

fn text_row(ui: &mut egui::Ui, name: &str, value: &mut String, hint: &str) {
    let label = ui.label(name);
    ui.add(egui::TextEdit::singleline(value).hint_text(hint).desired_width(260.0)).labelled_by(label.id);
    ui.end_row();
}

fn number_row<T: egui::emath::Numeric>(ui: &mut egui::Ui, name: &str, value: &mut T) {
    let label = ui.label(name);
    ui.add(egui::DragValue::new(value)).labelled_by(label.id);
    ui.end_row();
}
