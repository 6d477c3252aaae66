//! Where a .bin to publish comes from: typed in the field, filled by Browse… (a dialog only fills
//! it), dropped on the window, or the image step 2 made, offered with one button. Each opens the
//! publish dialog, which checks the file before anything is stored.

use std::path::PathBuf;

use super::super::widgets::path_field_then;
use super::{ServeStep, labels};
use crate::worker::{FileField, Worker};

/// Which file a button of the row asked to publish.
enum Asked {
    /// What the field holds.
    Typed,
    /// This file, to this channel.
    File(PathBuf, String),
}

impl ServeStep {
    pub(super) fn publish_row(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        let offered = self.offered.clone();
        let offer_name =
            offered.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let typed = !self.form.publish_path.trim().is_empty();
        let channel = self.form.channel.clone();
        let demo = self.virtual_devices.last().cloned();
        let mut asked = None;
        let trailing = 140.0 + if offer_name.is_some() { 190.0 } else { 0.0 };
        let response = path_field_then(
            ui,
            worker,
            FileField::PublishImage,
            labels::PUBLISH_FIELD,
            &mut self.form.publish_path,
            "a .bin — or drop one on this window",
            trailing,
            |ui| {
                let why = "Type the path of a .bin, use Browse…, or drop one on this window";
                let check = ui.add_enabled(typed, egui::Button::new(labels::CHECK));
                if check.on_disabled_hover_text(why).clicked() {
                    asked = Some(Asked::Typed);
                }
                if let (Some(path), Some(name)) = (&offered, &offer_name)
                    && ui
                        .button(labels::offer(name))
                        .on_hover_text(format!("The image step 2 made: {}", path.display()))
                        .clicked()
                {
                    asked = Some(Asked::File(path.clone(), channel.clone()));
                }
                if let Some(demo) = &demo
                    && ui
                        .button(labels::PUBLISH_DEMO)
                        .on_hover_text(demo.newer_bin.display().to_string())
                        .clicked()
                {
                    // Demo builds go to the demo channel the virtual device polls, never to a real one.
                    asked = Some(Asked::File(demo.newer_bin.clone(), otaforge_protocol::DEMO_CHANNEL.into()));
                }
            },
        );
        // A pick from the dialog is acted on as a drop is: the user chose this file to publish.
        if response.picked || response.submitted {
            asked = asked.or(Some(Asked::Typed));
        }
        let (path, channel) = match asked {
            None => return,
            Some(Asked::File(path, channel)) => (path, channel),
            Some(Asked::Typed) => {
                let typed = PathBuf::from(self.form.publish_path.trim());
                if typed.as_os_str().is_empty() {
                    return;
                }
                // A GUI has no working directory worth the name: relative means the project's.
                (worker.dir().join(typed), channel)
            }
        };
        self.check(path, &channel, worker);
    }
}
