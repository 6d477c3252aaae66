//! The list's columns: which are shown at the window's width, how wide each is, and the header
//! whose buttons sort by them.

use egui::RichText;

use super::{DeviceTable, row};

/// Columns the list sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Column {
    /// MAC.
    Device,
    /// The name shown (the user's, else the reported one).
    Name,
    /// Chip family.
    Chip,
    /// Version running.
    Version,
    /// Last check-in.
    #[default]
    LastSeen,
    /// When the next check-in is due.
    NextCheck,
    /// Address.
    Ip,
    /// Where it stands.
    State,
}

impl Column {
    /// Columns with their widths; the last one takes what is left.
    pub(super) const ALL: [(Column, &'static str, f32); 8] = [
        (Column::Device, "MAC", 132.0),
        (Column::Name, "Name", 140.0),
        (Column::Chip, "Chip", 60.0),
        (Column::Version, "Version", 60.0),
        (Column::LastSeen, "Last seen", 76.0),
        (Column::NextCheck, "Next check", 104.0),
        (Column::Ip, "IP", 96.0),
        (Column::State, "State", 0.0),
    ];
    /// The … button's column, first in every row.
    pub(super) const ACTIONS_WIDTH: f32 = 20.0;
}

/// The columns shown, with their widths, State last.
pub(super) type Layout = Vec<(Column, &'static str, f32)>;

impl Column {
    /// The State column keeps at least this much room where it can.
    const STATE_MIN: f32 = 200.0;
    /// The columns that make way first where the window is narrow (the detail window shows them).
    const MAKE_WAY: [Column; 4] = [Column::Ip, Column::Chip, Column::NextCheck, Column::Version];

    /// The columns that fit in `width` (the … column left out), `gap` apart, with their widths:
    /// State, last, takes what is left and wraps what does not fit.
    pub(super) fn fitting(width: f32, gap: f32) -> Layout {
        let mut shown: Layout = Column::ALL.to_vec();
        let fixed = |shown: &Layout| shown.iter().map(|c| c.2 + gap).sum::<f32>();
        for column in Column::MAKE_WAY {
            if width - fixed(&shown) >= Column::STATE_MIN {
                break;
            }
            shown.retain(|c| c.0 != column);
        }
        // Still short: the Name column gives some of its room (names are truncated, in full on hover).
        let short = Column::STATE_MIN - (width - fixed(&shown));
        if short > 0.0
            && let Some(name) = shown.iter_mut().find(|c| c.0 == Column::Name)
        {
            name.2 = (name.2 - short).max(96.0);
        }
        let rest = (width - fixed(&shown)).max(120.0);
        if let Some(state) = shown.last_mut() {
            state.2 = rest;
        }
        shown
    }
}

impl DeviceTable {
    pub(super) fn header(&mut self, ui: &mut egui::Ui, columns: &Layout) {
        ui.horizontal(|ui| {
            row::cell(ui, Column::ACTIONS_WIDTH, 18.0, |_| {});
            for &(column, title, width) in columns {
                let arrow = match (self.form.sort == column, self.form.ascending) {
                    (true, true) => " ⏶",
                    (true, false) => " ⏷",
                    _ => "",
                };
                let button =
                    egui::Button::new(RichText::new(format!("{title}{arrow}")).strong()).frame(false);
                let header = row::cell(ui, width, 18.0, |ui| ui.add(button));
                if header.on_hover_text(format!("Sort by {}", title.to_lowercase())).clicked() {
                    if self.form.sort == column {
                        self.form.ascending = !self.form.ascending;
                    } else {
                        self.form.sort = column;
                        // Times newest first; everything else A to Z.
                        self.form.ascending = column != Column::LastSeen;
                    }
                    // Sorted now, in the frame of the click, and the rows' tops follow the new order.
                    self.dirty = true;
                    self.update_order();
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_lists_drop_the_columns_the_detail_shows_and_keep_room_for_the_state() {
        let wide = Column::fitting(1200.0, 8.0);
        assert_eq!(wide.len(), Column::ALL.len());
        let narrow = Column::fitting(560.0, 8.0);
        let names: Vec<Column> = narrow.iter().map(|c| c.0).collect();
        assert_eq!(names, [Column::Device, Column::Name, Column::LastSeen, Column::State]);
        let used: f32 = narrow.iter().map(|c| c.2 + 8.0).sum();
        assert!(used <= 560.0 + 0.5, "{used}");
        assert!(narrow.last().unwrap().2 >= Column::STATE_MIN);
    }
}
