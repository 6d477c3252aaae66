//! The event log: every request, answer, download and install, filtered by kind and text, drawn
//! only for the lines on screen. Long lines wrap (a narrow window cuts nothing off).

use std::collections::VecDeque;

use egui::RichText;

use super::clock;
use super::rows::{RowTops, lines};
use crate::worker::{LogEntry, LogKind};

/// Lines kept (older ones drop off the top).
pub const KEEP: usize = 20_000;

/// What the log remembers between runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    hidden: Vec<LogKind>,
    filter: String,
}

impl Default for Remembered {
    fn default() -> Self {
        // Every poll is a request and an answer; the answers say more.
        Remembered { hidden: vec![LogKind::Request], filter: String::new() }
    }
}

/// The log as the window shows it.
pub struct EventLog {
    form: Remembered,
    lines: VecDeque<LogEntry>,
    view: Vec<usize>,
    dirty: bool,
    /// Bumped whenever `view` changes (the row tops are estimated again).
    generation: u64,
    tops: RowTops,
}

impl EventLog {
    pub(super) fn new(form: Remembered) -> Self {
        EventLog {
            form,
            lines: VecDeque::new(),
            view: Vec::new(),
            dirty: false,
            generation: 0,
            tops: RowTops::default(),
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        self.form.clone()
    }

    /// Lines kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// No lines yet.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &LogEntry> {
        self.lines.iter()
    }

    pub(super) fn extend(&mut self, lines: Vec<LogEntry>) {
        self.lines.extend(lines);
        while self.lines.len() > KEEP {
            self.lines.pop_front();
        }
        self.dirty = true;
    }

    fn rebuild(&mut self) {
        let needle = self.form.filter.trim().to_lowercase();
        self.view = (0..self.lines.len())
            .filter(|&i| {
                let l = &self.lines[i];
                !self.form.hidden.contains(&l.kind)
                    && (needle.is_empty()
                        || l.text.to_lowercase().contains(&needle)
                        || l.mac.as_deref().is_some_and(|m| m.to_lowercase().contains(&needle)))
            })
            .collect();
        self.dirty = false;
        self.generation += 1;
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            for kind in LogKind::ALL {
                let mut shown = !self.form.hidden.contains(&kind);
                if ui.checkbox(&mut shown, kind.label()).changed() {
                    self.form.hidden.retain(|k| *k != kind);
                    if !shown {
                        self.form.hidden.push(kind);
                    }
                    self.dirty = true;
                }
            }
            // The label and its field wrap together.
            ui.horizontal(|ui| {
                let label = ui.label("Filter log");
                let edit = egui::TextEdit::singleline(&mut self.form.filter)
                    .hint_text("MAC or words")
                    .desired_width(180.0);
                self.dirty |= ui.add(edit).labelled_by(label.id).changed();
            });
        });
        if self.dirty {
            self.rebuild();
        }
        if self.lines.is_empty() {
            ui.label("Nothing yet: start the server, and every request and download is listed here.");
            return;
        }
        let line_height = ui.text_style_height(&egui::TextStyle::Monospace);
        let font = egui::TextStyle::Monospace.resolve(ui.style());
        let char_width = ui.fonts_mut(|f| f.glyph_width(&font, '0'));
        let width = ui.available_width();
        let (lines_kept, view) = (&self.lines, &self.view);
        self.tops.update(self.generation, width, ui.spacing().item_spacing.y, view.len(), |i| {
            let l = &lines_kept[view[i]];
            // "12:00:00 " + a MAC padded to 17 + " " + the text.
            lines(27 + l.text.chars().count(), char_width, width) * line_height
        });
        let area = egui::ScrollArea::vertical()
            .id_salt("event-log")
            .auto_shrink([false, false])
            .stick_to_bottom(true);
        self.tops.show(ui, area, |ui, i| {
            let l = &self.lines[self.view[i]];
            let color = match l.kind {
                LogKind::Problem => ui.visuals().error_fg_color,
                LogKind::Request | LogKind::Server => ui.visuals().weak_text_color(),
                _ => ui.visuals().text_color(),
            };
            let who = l.mac.as_deref().unwrap_or("");
            let text = format!("{} {who:17} {}", clock(l.at), l.text);
            ui.add(egui::Label::new(RichText::new(text).monospace().color(color)).wrap());
        });
    }
}
