//! Widgets every step shares: a path field that works with or without a file dialog, a Copy
//! button for what users paste elsewhere (PEM, fingerprints, the poll URL, a MAC), and sections
//! whose widgets keep their ids.

use std::path::PathBuf;

use crate::worker::{BrowseOutcome, Command, FileField, Worker};

/// Label of the button beside every path field.
pub const BROWSE: &str = "Browse…";
/// Label of every Copy button.
pub const COPY: &str = "Copy";

/// What a path field did this frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathFieldResponse {
    /// The path changed: typed, or filled by a dialog.
    pub changed: bool,
    /// A dialog filled it this frame (act on it as on a drop).
    pub picked: bool,
    /// Enter was pressed in the field.
    pub submitted: bool,
}

/// Per-field state kept in egui's memory: a Browse under way, or why the last one showed nothing.
#[derive(Debug, Clone, Default)]
struct FieldState {
    waiting: bool,
    notice: Option<String>,
}

fn state_id(field: FileField) -> egui::Id {
    egui::Id::unique(("otaforge-path-field", field))
}

/// Hands a dialog's outcome to its field, which takes it when it is next drawn.
pub(super) fn deliver(ctx: &egui::Context, field: FileField, outcome: BrowseOutcome) {
    ctx.data_mut(|d| {
        let mut state: FieldState = d.get_temp(state_id(field)).unwrap_or_default();
        state.waiting = false;
        state.notice = None;
        match outcome {
            BrowseOutcome::Picked(path) => {
                d.insert_temp(state_id(field).with("picked"), path);
            }
            BrowseOutcome::Cancelled => {}
            BrowseOutcome::NotOpened(why) => state.notice = Some(why),
        }
        d.insert_temp(state_id(field), state);
    });
}

/// Draws one part of a step (`name`, unique in the window) with ids of its own. Every path field
/// is one too, so it keeps the keyboard whatever appears above it.
///
/// egui numbers a widget by its place among the widgets drawn before it, so a worker event that
/// adds or removes a line higher up (the port list, this machine's addresses, a key loaded) would
/// renumber everything below: a click between press and release would be lost, and a field being
/// typed into would lose the keyboard. Inside a section, a widget's id depends only on what the
/// section itself draws.
pub fn section<R>(
    ui: &mut egui::Ui,
    name: impl std::hash::Hash + std::fmt::Debug,
    add: impl FnOnce(&mut egui::Ui) -> R,
) -> R {
    let id = egui::Id::unique(("otaforge-section", name));
    ui.scope_builder(egui::UiBuilder::new().scope_id(id), add).inner
}

/// A [`section`] drawn only when it `has_content`: an empty one would still take a line's gap.
pub fn section_if(ui: &mut egui::Ui, has_content: bool, name: &'static str, add: impl FnOnce(&mut egui::Ui)) {
    if has_content {
        section(ui, name, add);
    }
}

/// `label`, a text field for a path and a Browse… button. The field always works; Browse opens
/// `field`'s dialog where one can open and otherwise says, under the field, why none can and what
/// to install.
pub fn path_field(
    ui: &mut egui::Ui,
    worker: &Worker,
    field: FileField,
    label: &str,
    text: &mut String,
    hint: &str,
) -> PathFieldResponse {
    path_field_then(ui, worker, field, label, text, hint, 0.0, |_| {})
}

/// [`path_field`] with the step's own controls after Browse… (`trailing`, about `trailing_width`
/// wide, e.g. the Export button that acts on the field): the field leaves them room, and where
/// the window is too narrow for one row they move under it instead of being cut off.
#[allow(clippy::too_many_arguments)] // a field, its label, text, hint and what follows it
pub fn path_field_then(
    ui: &mut egui::Ui,
    worker: &Worker,
    field: FileField,
    label: &str,
    text: &mut String,
    hint: &str,
    trailing_width: f32,
    trailing: impl FnOnce(&mut egui::Ui),
) -> PathFieldResponse {
    section(ui, ("path-field", field), |ui| {
        let id = state_id(field);
        let mut response = PathFieldResponse::default();
        if let Some(path) = ui.data_mut(|d| d.remove_temp::<PathBuf>(id.with("picked"))) {
            *text = path.display().to_string();
            response.changed = true;
            response.picked = true;
        }
        let mut state: FieldState = ui.data(|d| d.get_temp(id)).unwrap_or_default();
        ui.horizontal_wrapped(|ui| {
            let name = ui.label(label);
            // What is left of this row (in a wrapping row, available_width() is the whole row's).
            let room = ui.available_size_before_wrap().x;
            let browse_width = 90.0;
            let width = (room - browse_width - trailing_width).clamp(160.0, 520.0);
            let edit = ui
                .add(egui::TextEdit::singleline(text).hint_text(hint).desired_width(width))
                .labelled_by(name.id);
            response.changed |= edit.changed();
            response.submitted = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            let browse = ui.add_enabled(!state.waiting, egui::Button::new(BROWSE));
            if browse.clicked() {
                match worker.file_dialogs().unavailable() {
                    Some(why) => state.notice = Some(why.to_string()),
                    None => {
                        state.waiting = true;
                        state.notice = None;
                        let current = Some(PathBuf::from(text.trim())).filter(|p| !p.as_os_str().is_empty());
                        worker.send(Command::Browse { field, current });
                    }
                }
            }
            trailing(ui);
        });
        if let Some(notice) = &state.notice {
            ui.add(egui::Label::new(egui::RichText::new(notice).color(ui.visuals().warn_fg_color)).wrap());
        }
        ui.data_mut(|d| d.insert_temp(id, state));
        response
    })
}

/// A small Copy button that puts `text` on the clipboard; `what` names it for the tooltip and
/// for screen readers ("Copy the poll URL").
pub fn copy_button(ui: &mut egui::Ui, what: &str, text: &str) -> egui::Response {
    copy_button_with(ui, COPY, what, text)
}

/// [`copy_button`] showing `shown` instead of "Copy" (where two Copy buttons sit side by side).
pub fn copy_button_with(ui: &mut egui::Ui, shown: &str, what: &str, text: &str) -> egui::Response {
    let id = ui.make_persistent_id(("otaforge-copied", what));
    let copied = ui.data(|d| d.get_temp::<bool>(id)).unwrap_or(false);
    let label = if copied { "Copied ✔" } else { shown };
    let name = format!("Copy the {what}");
    let response = ui.small_button(label).on_hover_text(&name);
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
    if response.clicked() {
        ui.ctx().copy_text(text.to_string());
        ui.data_mut(|d| d.insert_temp(id, true));
    } else if copied && !response.hovered() {
        ui.data_mut(|d| d.remove::<bool>(id)); // the mark lasts while the pointer stays
    }
    response
}

fn goto_id() -> egui::Id {
    egui::Id::unique("otaforge-goto-step")
}

/// The end of a step: what to do next, in words, and a button that goes there.
pub fn next_step(ui: &mut egui::Ui, step: super::Step, what: &str) {
    ui.add_space(6.0);
    ui.horizontal_wrapped(|ui| {
        ui.label(egui::RichText::new("Next:").strong());
        ui.label(what);
        let button = format!("Go to {} ➡", step.title());
        if ui.button(button).clicked() {
            ui.data_mut(|d| d.insert_temp(goto_id(), step));
        }
    });
}

/// The step a "Go to" button asked for this frame, if one did.
pub(super) fn take_goto(ctx: &egui::Context) -> Option<super::Step> {
    ctx.data_mut(|d| d.remove_temp::<super::Step>(goto_id()))
}
