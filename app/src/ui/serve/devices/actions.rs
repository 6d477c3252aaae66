//! A row's actions (its … button and right-click menu): rename, forget, history, open the serial
//! monitor; and the two dialogs they open. Changes go to the worker, which changes the store and
//! the running server's inventory.

use super::super::labels;
use super::{DeviceTable, UsbBoard};
use crate::worker::{Command, ServeCommand, Worker};
use otaforge_store::Device;

/// What the user asked of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open the rename dialog.
    Rename(String),
    /// Open the forget confirmation.
    Forget(String),
    /// Open the detail window with the request history.
    History(String),
    /// Show what the board prints: its USB port.
    Monitor(String),
}

/// The accessible name of a row's … button.
pub fn button_label(mac: &str) -> String {
    format!("Actions for {mac}")
}

/// The row's … button and the menu it opens.
pub(super) fn button(ui: &mut egui::Ui, d: &Device, usb: Option<&UsbBoard>) -> Option<Action> {
    let response = ui.add(egui::Button::new("…").small().frame(false)).on_hover_text("Actions");
    let label = button_label(&d.mac);
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
    egui::Popup::menu(&response).show(|ui| items(ui, d, usb)).and_then(|r| r.inner)
}

/// The same menu on a right click anywhere on the row.
pub(super) fn context_menu(row: &egui::Response, d: &Device, usb: Option<&UsbBoard>) -> Option<Action> {
    let mut asked = None;
    row.container_context_menu(|ui| asked = items(ui, d, usb));
    asked
}

fn items(ui: &mut egui::Ui, d: &Device, usb: Option<&UsbBoard>) -> Option<Action> {
    let mut asked = None;
    let mac = &d.mac;
    if ui
        .button(labels::RENAME)
        .on_hover_text("Name it here (shown instead of the name it reports)")
        .clicked()
    {
        asked = Some(Action::Rename(mac.clone()));
    }
    if ui.button(labels::HISTORY).on_hover_text("Its requests, with the headers it sent").clicked() {
        asked = Some(Action::History(mac.clone()));
    }
    let board = usb.filter(|b| b.mac.eq_ignore_ascii_case(mac));
    let (enabled, why) = match board {
        Some(b) if b.busy => {
            (false, format!("Its board is on {}, but the Flash step is using the port", b.port))
        }
        Some(b) => (true, format!("Its board is on {}: show what it prints (Flash step)", b.port)),
        None => (
            false,
            "Not on USB: connect the board and press Detect board in the Flash step (its MAC must match)"
                .to_string(),
        ),
    };
    let monitor = ui.add_enabled(enabled, egui::Button::new(labels::OPEN_MONITOR));
    if monitor.on_hover_text(&why).on_disabled_hover_text(&why).clicked()
        && let Some(b) = board
    {
        asked = Some(Action::Monitor(b.port.clone()));
    }
    let copy =
        super::super::super::widgets::copy_button_with(ui, labels::COPY_MAC, &format!("MAC {mac}"), mac);
    ui.separator();
    if ui.button(labels::FORGET).on_hover_text("Remove it from the inventory (after asking)").clicked() {
        asked = Some(Action::Forget(mac.clone()));
    }
    if asked.is_some() || copy.clicked() {
        ui.close();
    }
    asked
}

/// The rename dialog while open: which device, and the name typed.
pub(super) struct Renaming {
    mac: String,
    text: String,
    focused: bool,
}

impl DeviceTable {
    /// Carries out a row's action (dialogs open here; the rest goes to the worker or the app).
    pub(super) fn act(&mut self, action: Action, worker: &Worker) {
        match action {
            Action::Rename(mac) => {
                let text = self.get(&mac).map(|d| d.user_name.clone()).unwrap_or_default();
                self.renaming = Some(Renaming { mac, text, focused: false });
            }
            Action::Forget(mac) => self.forgetting = Some(mac),
            Action::History(mac) => {
                self.selected = Some(mac.clone());
                self.history = None;
                worker.send(Command::Serve(ServeCommand::History(mac)));
            }
            Action::Monitor(port) => self.monitor_request = Some(port),
        }
    }

    /// The rename and forget dialogs, when open.
    pub(super) fn dialogs(&mut self, ctx: &egui::Context, worker: &Worker) {
        self.rename_dialog(ctx, worker);
        self.forget_dialog(ctx, worker);
    }

    fn rename_dialog(&mut self, ctx: &egui::Context, worker: &Worker) {
        let Some(r) = &mut self.renaming else { return };
        let reported =
            self.devices.iter().find(|d| d.mac == r.mac).map(|d| d.name.clone()).unwrap_or_default();
        let mut done = None;
        let modal = egui::Modal::new(egui::Id::unique("otaforge-rename-device")).show(ctx, |ui| {
            ui.set_width(380.0);
            ui.heading(format!("Rename {}", r.mac));
            let label = ui.label(labels::NAME_FIELD);
            let hint = if reported.is_empty() { "none".to_string() } else { format!("\"{reported}\"") };
            let edit = ui.add(
                egui::TextEdit::singleline(&mut r.text)
                    .hint_text(format!("empty: the name it reports ({hint})"))
                    .desired_width(f32::INFINITY),
            );
            let edit = edit.labelled_by(label.id);
            if !r.focused {
                edit.request_focus();
                r.focused = true;
            }
            ui.small("Shown in this list and by otaforge devices; the device keeps the name it reports.");
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            done = confirm_or_cancel(ui, labels::SAVE_NAME).or(enter.then_some(true));
        });
        if modal.should_close() && done.is_none() {
            done = Some(false);
        }
        if let Some(save) = done {
            let r = self.renaming.take().expect("open");
            if save {
                let name = r.text.trim().to_string();
                worker.send(Command::Serve(ServeCommand::Rename { mac: r.mac, name }));
            }
        }
    }

    fn forget_dialog(&mut self, ctx: &egui::Context, worker: &Worker) {
        let Some(mac) = self.forgetting.clone() else { return };
        let mut done = None;
        let modal = egui::Modal::new(egui::Id::unique("otaforge-forget-device")).show(ctx, |ui| {
            ui.set_width(420.0);
            ui.heading(format!("Forget {mac}?"));
            ui.label(
                "It leaves the inventory with the name given to it here and its request history. Nothing \
                 is sent to the device: if it still runs, it reappears at its next check, as a new device.",
            );
            done = confirm_or_cancel(ui, labels::FORGET_CONFIRM);
        });
        if modal.should_close() && done.is_none() {
            done = Some(false);
        }
        if let Some(forget) = done {
            self.forgetting = None;
            if forget {
                if self.selected.as_deref() == Some(mac.as_str()) {
                    self.selected = None;
                    self.history = None;
                }
                worker.send(Command::Serve(ServeCommand::Forget(mac)));
            }
        }
    }
}

/// A dialog's two buttons: `Some(true)` when `confirm` was clicked, `Some(false)` for Cancel.
fn confirm_or_cancel(ui: &mut egui::Ui, confirm: &str) -> Option<bool> {
    ui.horizontal(|ui| {
        let ok = ui.button(confirm).clicked();
        let cancel = ui.button(labels::CANCEL).clicked();
        (ok || cancel).then_some(ok)
    })
    .inner
}
