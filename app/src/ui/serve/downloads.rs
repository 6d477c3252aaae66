//! Downloads in flight: one progress bar per device with its rate and time left.

use egui::RichText;

use super::bytes;
use crate::worker::Download;

pub(super) fn ui(ui: &mut egui::Ui, downloads: &[Download]) {
    if downloads.is_empty() {
        ui.label(
            "No download in flight. Devices download a release when they poll and their channel offers one.",
        );
        return;
    }
    let total_rate: f64 = downloads.iter().map(|d| d.rate).sum();
    ui.label(format!("{} downloads, {}/s in all", downloads.len(), bytes(total_rate as u64)));
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 8.0;
    egui::ScrollArea::vertical().id_salt("downloads").auto_shrink([false, false]).show_rows(
        ui,
        row_height,
        downloads.len(),
        |ui, rows| {
            for d in &downloads[rows] {
                ui.horizontal(|ui| {
                    let who = d.mac.as_deref().unwrap_or("(no MAC)");
                    ui.add_sized([170.0, row_height], egui::Label::new(RichText::new(who).monospace()));
                    ui.add_sized([80.0, row_height], egui::Label::new(&d.version).truncate());
                    let bar = egui::ProgressBar::new(d.fraction()).desired_width(260.0).text(summary(d));
                    ui.add(bar);
                });
            }
        },
    );
}

/// "42% · 120 KB of 420 KB · 35 KB/s · 9 s left".
pub fn summary(d: &Download) -> String {
    let percent = (d.fraction() * 100.0).floor() as u32;
    let mut text = format!("{percent}% · {} of {}", bytes(d.sent), bytes(d.total));
    if d.rate > 0.0 {
        text.push_str(&format!(" · {}/s", bytes(d.rate as u64)));
    }
    if let Some(eta) = d.eta_secs {
        let eta = eta.ceil() as u64;
        text.push_str(&if eta < 60 {
            format!(" · {eta} s left")
        } else {
            format!(" · {} min left", eta / 60 + 1)
        });
    }
    text
}
