//! One row of the device list, and the words its cells hold.

use egui::RichText;

use super::super::{ago, clock};
use super::actions::{self, Action};
use super::columns::Layout;
use super::{Column, Shown, UsbBoard};
use otaforge_store::{Device, DeviceState};

/// What a row needs besides the device.
pub(super) struct RowContext<'a> {
    pub progress: Option<f32>,
    pub now: i64,
    /// A one-line row's height (a State that wraps makes its row taller).
    pub height: f32,
    pub usb: Option<&'a UsbBoard>,
    /// The columns shown, with their widths.
    pub columns: &'a Layout,
}

/// One row; returns what the user asked of it (the MAC link opens the detail, the … button and a
/// right click the actions menu).
pub(super) fn row(ui: &mut egui::Ui, d: &Device, cx: &RowContext<'_>) -> Option<Action> {
    let mut asked = None;
    let height = cx.height;
    let response = ui
        .horizontal(|ui| {
            cell(ui, Column::ACTIONS_WIDTH, height, |ui| {
                if let Some(a) = actions::button(ui, d, cx.usb) {
                    asked = Some(a);
                }
            });
            for &(column, _, width) in cx.columns {
                cell(ui, width, height, |ui| {
                    if column == Column::Device
                        && ui
                            .link(RichText::new(&d.mac).monospace())
                            .on_hover_text("Details and request history")
                            .clicked()
                    {
                        asked = Some(Action::History(d.mac.clone()));
                    }
                    value(ui, column, d, cx);
                });
            }
        })
        .response;
    if let Some(a) = actions::context_menu(&response, d, cx.usb) {
        asked = Some(a);
    }
    asked
}

/// A cell's content (the MAC is drawn by [`row`]: it is the link to the detail).
fn value(ui: &mut egui::Ui, column: Column, d: &Device, cx: &RowContext<'_>) {
    let text = |ui: &mut egui::Ui, s: &str| ui.add(egui::Label::new(s).truncate());
    match column {
        Column::Device => {}
        Column::Name => {
            name_cell(ui, d);
        }
        Column::Chip => {
            text(ui, &d.family);
        }
        Column::Version => {
            text(ui, d.version.as_deref().unwrap_or("?"));
        }
        Column::LastSeen => {
            ui.label(ago(d.last_seen)).on_hover_text(format!("{} UTC", clock(d.last_seen)));
        }
        Column::NextCheck => {
            let (words, hover) = next_check(d, cx.now);
            let weak = d.next_check_at().is_none_or(|at| at < cx.now - 60);
            let color = if weak { ui.visuals().weak_text_color() } else { ui.visuals().text_color() };
            ui.add(egui::Label::new(RichText::new(words).color(color)).truncate()).on_hover_text(hover);
        }
        Column::Ip => {
            text(ui, &d.remote_ip);
        }
        Column::State => {
            let words = state_text(d, cx.progress, cx.now);
            let color = match Shown::of(d, cx.now) {
                Shown::State(DeviceState::Failed | DeviceState::RolledBack) | Shown::SilentSinceUpdate => {
                    ui.visuals().error_fg_color
                }
                Shown::State(DeviceState::Held) | Shown::Offline => ui.visuals().weak_text_color(),
                _ => ui.visuals().text_color(),
            };
            // Wraps: where a device stands is never cut off, however narrow the window.
            ui.add(egui::Label::new(RichText::new(words).color(color)).wrap());
        }
    }
}

/// The name shown: the user's over the reported one, saying which it is.
fn name_cell(ui: &mut egui::Ui, d: &Device) {
    let shown = d.shown_name();
    if shown.is_empty() {
        ui.label(RichText::new("—").weak()).on_hover_text("It reports no name; Rename… gives it one");
        return;
    }
    let hover = match (d.user_name.is_empty(), d.name.is_empty()) {
        (true, _) => "The name the device reports".to_string(),
        (false, true) => "Named here (the device reports none)".to_string(),
        (false, false) => format!("Named here; the device reports \"{}\"", d.name),
    };
    ui.add(egui::Label::new(shown).truncate()).on_hover_text(hover);
}

/// A fixed-width, left-aligned cell, so rows line up with the header.
pub(super) fn cell<R>(ui: &mut egui::Ui, width: f32, height: f32, add: impl FnOnce(&mut egui::Ui) -> R) -> R {
    ui.allocate_ui_with_layout(
        egui::vec2(width, height),
        egui::Layout::left_to_right(egui::Align::Center),
        |ui| {
            ui.set_width(width);
            add(ui)
        },
    )
    .inner
}

/// The Next check column: when the device's next check is due, from its usual interval, in
/// words ("in 3 min", "overdue by 2 min") and with the time and interval on hover.
pub fn next_check(d: &Device, now: i64) -> (String, String) {
    let (Some(at), Some(every)) = (d.next_check_at(), d.poll_interval_s) else {
        return ("—".into(), "Known once it has checked in twice".into());
    };
    let left = at - now;
    let words = match left {
        60.. => format!("in {}", span(left)),
        0..60 => "within a minute".into(),
        -59..0 => "due now".into(),
        _ => format!("overdue by {}", span(-left)),
    };
    (words, format!("Expected at {} UTC: it checks about every {}", clock(at), span(i64::from(every))))
}

/// A duration in words, rounded down: "40 s", "3 min", "2 h 5 min", "3 days".
fn span(secs: i64) -> String {
    match secs {
        ..60 => format!("{} s", secs.max(0)),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 if secs % 3600 >= 60 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        3600..86_400 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// The State column in words.
pub fn state_text(d: &Device, progress: Option<f32>, now: i64) -> String {
    match (Shown::of(d, now), progress) {
        (_, Some(f)) => format!("downloading {}%", (f * 100.0).floor() as u32),
        (Shown::Offline, _) => format!("offline (last seen {})", ago(d.last_seen)),
        (Shown::SilentSinceUpdate, _) => {
            format!(
                "silent since update (downloaded, last seen {}): it may not have come back",
                ago(d.last_seen)
            )
        }
        (Shown::State(state), None) => match state {
            DeviceState::UpToDate => "up to date".into(),
            DeviceState::Downloading => "downloading".into(),
            DeviceState::Downloaded => "downloaded, restarting into it…".into(),
            DeviceState::Installed => format!("{} ✔", d.state_detail.trim()).replace("  ", " "),
            DeviceState::Failed => format!("failed: {}", d.state_detail),
            DeviceState::RolledBack => format!("rolled back: {}", d.state_detail),
            DeviceState::Held => format!("held back: {}", d.state_detail),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::OFFLINE_AFTER_SECS;
    use super::*;
    use otaforge_store::now_unix;

    #[test]
    fn the_state_column_says_where_a_device_stands() {
        let now = now_unix();
        let mut d = Device::new("18:FE:34:00:00:01", "ESP8266", "stable", "10.0.0.5", now);
        assert_eq!(state_text(&d, None, now), "up to date");
        assert_eq!(state_text(&d, Some(0.426), now), "downloading 42%");
        d.state = DeviceState::Installed;
        d.state_detail = "installed 1.2.0".into();
        assert_eq!(state_text(&d, None, now), "installed 1.2.0 ✔");
        d.state = DeviceState::Failed;
        d.state_detail = "download broke off: the device stopped reading".into();
        assert_eq!(state_text(&d, None, now), "failed: download broke off: the device stopped reading");
        d.last_seen = now - OFFLINE_AFTER_SECS - 1;
        assert_eq!(state_text(&d, None, now), "offline (last seen 3 h ago)");
    }

    #[test]
    fn the_next_check_is_due_from_the_learned_interval() {
        let now = now_unix();
        let mut d = Device::new("18:FE:34:00:00:01", "ESP8266", "stable", "10.0.0.5", now - 120);
        assert_eq!(next_check(&d, now).0, "—", "not known before a second check-in");
        d.poll_interval_s = Some(300);
        assert_eq!(next_check(&d, now).0, "in 3 min");
        assert!(next_check(&d, now).1.ends_with("it checks about every 5 min"), "{:?}", next_check(&d, now));
        d.poll_interval_s = Some(150);
        assert_eq!(next_check(&d, now).0, "within a minute");
        d.poll_interval_s = Some(100);
        assert_eq!(next_check(&d, now).0, "due now");
        d.poll_interval_s = Some(60);
        assert_eq!(next_check(&d, now).0, "overdue by 1 min");
        d.last_seen = now - 3 * 86_400;
        assert_eq!(next_check(&d, now).0, "overdue by 2 days");
        assert_eq!(span(3 * 3600 + 5 * 60), "3 h 5 min");
    }
}
