//! What the loaded material says: warnings, each certificate's names, dates and fingerprint (with
//! a Copy button, since a fingerprint is what users compare with a device's serial output).

use egui::{Color32, RichText};
use time::OffsetDateTime;

use super::super::widgets::copy_button;
use otaforge_pki::{CertInfo, CertReport, TrustMode};

pub(super) fn details(ui: &mut egui::Ui, report: &CertReport) {
    let now = OffsetDateTime::now_utc();
    if !report.warnings.is_empty() {
        for w in &report.warnings {
            let color =
                if w.is_blocking() { ui.visuals().error_fg_color } else { ui.visuals().warn_fg_color };
            ui.colored_label(color, format!("⚠ {w}"));
        }
        ui.add_space(6.0);
    } else {
        ui.label(
            RichText::new("✔ Ready: devices with this CA will accept the server.")
                .color(Color32::from_rgb(60, 160, 80)),
        );
    }
    if let Some(ca) = &report.ca {
        cert_grid(ui, "CA certificate (baked into devices)", "CA", ca, now);
        ui.add_space(6.0);
    }
    let title = match report.mode {
        TrustMode::PrivateCa => "Server certificate",
        TrustMode::PinLeaf => "Server certificate (pinned by devices)",
    };
    cert_grid(ui, title, "server", &report.server, now);
    ui.add_space(4.0);
    ui.small(format!("Files in {}", report.dir.display()));
}

/// One certificate; `which` names it for its grid and its Copy button ("Copy the CA SHA-256
/// fingerprint").
fn cert_grid(ui: &mut egui::Ui, title: &str, which: &str, c: &CertInfo, now: OffsetDateTime) {
    ui.strong(title);
    egui::Grid::new(("certificate", which)).num_columns(2).spacing([12.0, 4.0]).striped(true).show(
        ui,
        |ui| {
            row(ui, "Subject", &c.subject);
            let names = c.names_text();
            if !names.is_empty() {
                row(ui, "Names", &names);
            }
            row(ui, "Key", &format!("{} ({})", c.key, c.signature));
            let valid =
                format!("{} to {} ({} days left)", c.not_before.date(), c.not_after.date(), c.days_left(now));
            row(ui, "Valid", &valid);
            ui.horizontal(|ui| {
                ui.label("SHA-256");
                copy_button(ui, &format!("{which} SHA-256 fingerprint"), &c.sha256);
            });
            value(ui, &c.sha256);
            ui.end_row();
        },
    );
}

fn row(ui: &mut egui::Ui, name: &str, text: &str) {
    ui.label(name);
    value(ui, text);
    ui.end_row();
}

/// A value that wraps (a 64-digit fingerprint breaks across lines rather than leave the window).
fn value(ui: &mut egui::Ui, text: &str) {
    ui.add(egui::Label::new(RichText::new(text).monospace()).selectable(true).wrap());
}
