//! Long lists whose rows differ in height (a device's state or a log line that wraps in a narrow
//! window), drawn only where they are on screen: what `ScrollArea::show_rows` does for rows of one
//! height, with the rows' heights estimated up front and kept until the list or its width changes.

use egui::{Rect, UiBuilder};

/// The rows' tops, estimated for one width, and what they were estimated for.
#[derive(Default)]
pub(super) struct RowTops {
    /// `tops[i]` is row i's top, `tops[n]` the height of the whole list (spacing included).
    tops: Vec<f32>,
    key: Option<(u64, u32, u32)>,
}

impl RowTops {
    /// Brings the tops up to date for `generation` of the list (bumped by its owner whenever a row
    /// is added, removed or changes) at width `width`; `height(i)` estimates row i's height.
    pub(super) fn update(
        &mut self,
        generation: u64,
        width: f32,
        spacing: f32,
        rows: usize,
        mut height: impl FnMut(usize) -> f32,
    ) {
        let key = (generation, width.to_bits(), rows as u32);
        if self.key == Some(key) {
            return;
        }
        self.key = Some(key);
        self.tops.clear();
        self.tops.reserve(rows + 1);
        let mut y = 0.0;
        for i in 0..rows {
            self.tops.push(y);
            y += height(i) + spacing;
        }
        self.tops.push((y - spacing).max(0.0));
    }

    /// Shows the rows in `area` drawing only those on screen; `add_row(ui, i)` draws row i.
    pub(super) fn show(
        &self,
        ui: &mut egui::Ui,
        area: egui::ScrollArea,
        mut add_row: impl FnMut(&mut egui::Ui, usize),
    ) {
        let rows = self.tops.len().saturating_sub(1);
        area.show_viewport(ui, |ui, viewport| {
            ui.set_height(self.tops.last().copied().unwrap_or(0.0));
            if rows == 0 {
                return;
            }
            let first = self.tops[..rows].partition_point(|&top| top <= viewport.min.y).saturating_sub(1);
            let end = self.tops[..rows].partition_point(|&top| top < viewport.max.y).max(first + 1);
            let top = ui.max_rect().top();
            let rect = Rect::from_x_y_ranges(
                ui.max_rect().x_range(),
                top + self.tops[first]..=top + self.tops[end.min(rows)],
            );
            ui.scope_builder(UiBuilder::new().max_rect(rect), |ui| {
                ui.skip_ahead_auto_ids(first); // the same ids whatever is scrolled past
                for i in first..end {
                    add_row(ui, i);
                }
            });
        });
    }
}

/// How many lines `chars` characters about `char_width` wide take at `width` (at least one): an
/// estimate, as word wrapping can take one more; the row drawn takes what it needs.
pub(super) fn lines(chars: usize, char_width: f32, width: f32) -> f32 {
    if width <= 0.0 {
        return 1.0;
    }
    ((chars as f32 * char_width) / width).ceil().max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tops_add_up_heights_and_spacing_and_are_kept_until_something_changes() {
        let mut tops = RowTops::default();
        tops.update(1, 300.0, 2.0, 3, |i| [10.0, 30.0, 10.0][i]);
        assert_eq!(tops.tops, vec![0.0, 12.0, 44.0, 54.0]);
        tops.update(1, 300.0, 2.0, 3, |_| panic!("unchanged: not estimated again"));
        tops.update(2, 300.0, 2.0, 1, |_| 5.0);
        assert_eq!(tops.tops, vec![0.0, 5.0]);
        assert_eq!(lines(10, 7.0, 70.0), 1.0);
        assert_eq!(lines(11, 7.0, 70.0), 2.0);
        assert_eq!(lines(0, 7.0, 70.0), 1.0);
    }
}
