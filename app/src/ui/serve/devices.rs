//! The device list: every device that checked in, what it runs and where it stands — sortable,
//! filterable, drawn row by row only for the rows on screen (1,000 devices cost what 20 do) — and
//! a detail window with the device's request history and headers.

use std::collections::HashMap;

use egui::RichText;

use super::{ago, labels};
use crate::worker::{Command, Download, ServeCommand, Worker};
use otaforge_store::{Device, DeviceState, RequestRecord, now_unix};

/// A device not heard from for this long is shown offline (devices poll hourly by default).
pub const OFFLINE_AFTER_SECS: i64 = 3 * 3600;

/// Columns the list sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Column {
    /// MAC and name.
    Device,
    /// Chip family.
    Chip,
    /// Version running.
    Version,
    /// Last check-in.
    #[default]
    LastSeen,
    /// Address.
    Ip,
    /// Where it stands.
    State,
}

impl Column {
    /// Columns with their widths; the last one takes what is left.
    const ALL: [(Column, &'static str, f32); 6] = [
        (Column::Device, "Device", 250.0),
        (Column::Chip, "Chip", 64.0),
        (Column::Version, "Version", 64.0),
        (Column::LastSeen, "Last seen", 82.0),
        (Column::Ip, "IP", 96.0),
        (Column::State, "State", 0.0),
    ];
}

/// Where a device stands, as the list groups it (its stored state, or offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Shown {
    /// Stored state.
    State(DeviceState),
    /// Not heard from for [`OFFLINE_AFTER_SECS`].
    Offline,
    /// Downloaded a release, then no check-in within twice its usual interval: maybe stranded.
    SilentSinceUpdate,
}

impl Shown {
    fn of(d: &Device, now: i64) -> Shown {
        if d.silent_since_update(now).is_some() {
            Shown::SilentSinceUpdate
        } else if now - d.last_seen > OFFLINE_AFTER_SECS && d.state != DeviceState::Downloading {
            Shown::Offline
        } else {
            Shown::State(d.state)
        }
    }

    fn label(self) -> &'static str {
        match self {
            Shown::State(s) => s.label(),
            Shown::Offline => "offline",
            Shown::SilentSinceUpdate => "silent since update",
        }
    }

    const FILTERS: [Shown; 9] = [
        Shown::State(DeviceState::UpToDate),
        Shown::State(DeviceState::Downloading),
        Shown::State(DeviceState::Downloaded),
        Shown::State(DeviceState::Installed),
        Shown::State(DeviceState::Failed),
        Shown::State(DeviceState::RolledBack),
        Shown::State(DeviceState::Held),
        Shown::Offline,
        Shown::SilentSinceUpdate,
    ];
}

/// What the list remembers between runs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    sort: Column,
    ascending: bool,
    filter: String,
    only: Option<Shown>,
}

/// The inventory as the window shows it.
pub struct DeviceTable {
    form: Remembered,
    devices: Vec<Device>,
    progress: HashMap<String, f32>,
    /// Names given here (virtual devices), by MAC.
    names: HashMap<String, String>,
    /// Indices into `devices`, filtered and sorted.
    view: Vec<usize>,
    dirty: bool,
    /// The device whose detail window is open.
    pub selected: Option<String>,
    /// The selected device's requests, newest first.
    pub history: Option<(String, Vec<RequestRecord>)>,
}

impl DeviceTable {
    pub(super) fn new(form: Remembered) -> Self {
        DeviceTable {
            form,
            devices: Vec::new(),
            progress: HashMap::new(),
            names: HashMap::new(),
            view: Vec::new(),
            dirty: false,
            selected: None,
            history: None,
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        self.form.clone()
    }

    /// Every device known.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// No device has checked in.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// One device.
    pub fn get(&self, mac: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.mac == mac)
    }

    /// How many devices are in one of `states`.
    pub fn count_in(&self, states: &[DeviceState]) -> usize {
        self.devices.iter().filter(|d| states.contains(&d.state)).count()
    }

    /// The State column's words for a device ("downloading 42%", "installed ✔", "failed: …").
    pub fn state_text(&self, mac: &str) -> Option<String> {
        self.get(mac).map(|d| state_text(d, self.progress.get(mac).copied(), now_unix()))
    }

    pub(super) fn set_devices(&mut self, mut devices: Vec<Device>) {
        // Names given in this window (a virtual device's "(virtual)") stand over reported ones.
        for d in &mut devices {
            if let Some(name) = self.names.get(&d.mac) {
                d.name = name.clone();
            }
        }
        self.devices = devices;
        self.dirty = true;
    }

    /// Names a device in this window (the inventory keeps what devices report).
    pub(super) fn name(&mut self, mac: &str, name: &str) {
        self.names.insert(mac.to_string(), name.to_string());
        let devices = std::mem::take(&mut self.devices);
        self.set_devices(devices);
    }

    pub(super) fn set_downloads(&mut self, downloads: &[Download]) {
        self.progress = downloads.iter().filter_map(|d| d.mac.clone().map(|m| (m, d.fraction()))).collect();
    }

    pub(super) fn set_history(&mut self, mac: &str, requests: Vec<RequestRecord>) {
        self.history = Some((mac.to_string(), requests));
    }

    fn rebuild(&mut self) {
        let now = now_unix();
        let needle = self.form.filter.trim().to_lowercase();
        let only = self.form.only;
        let mut view: Vec<usize> = (0..self.devices.len())
            .filter(|&i| {
                let d = &self.devices[i];
                only.is_none_or(|s| Shown::of(d, now) == s)
                    && (needle.is_empty()
                        || [&d.mac, &d.name, &d.remote_ip, &d.family, d.version.as_deref().unwrap_or("")]
                            .iter()
                            .any(|f| f.to_lowercase().contains(&needle)))
            })
            .collect();
        let devices = &self.devices;
        let key = |i: &usize| {
            let d = &devices[*i];
            match self.form.sort {
                Column::Device => format!("{} {}", d.name, d.mac),
                Column::Chip => d.family.clone(),
                Column::Version => d.version.clone().unwrap_or_default(),
                Column::LastSeen => format!("{:020}", i64::MAX - d.last_seen),
                Column::Ip => d.remote_ip.clone(),
                Column::State => Shown::of(d, now).label().to_string(),
            }
        };
        view.sort_by_cached_key(key);
        if self.form.ascending == (self.form.sort == Column::LastSeen) {
            view.reverse();
        }
        self.view = view;
        self.dirty = false;
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        if self.devices.is_empty() {
            ui.label(
                "No device has checked in yet. Start the server; devices flashed with firmware from step 2 \
                 appear here at their first update check.",
            );
            return;
        }
        ui.horizontal(|ui| {
            let label = ui.label(labels::FILTER);
            let edit = egui::TextEdit::singleline(&mut self.form.filter)
                .hint_text("MAC, name, version or IP")
                .desired_width(220.0);
            self.dirty |= ui.add(edit).labelled_by(label.id).changed();
            let label = ui.label("Show");
            let shown = self.form.only.map_or("every state", |s| s.label());
            egui::ComboBox::from_id_salt("device-state-filter")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    self.dirty |= ui.selectable_value(&mut self.form.only, None, "every state").changed();
                    for s in Shown::FILTERS {
                        self.dirty |= ui.selectable_value(&mut self.form.only, Some(s), s.label()).changed();
                    }
                })
                .response
                .labelled_by(label.id);
        });
        if self.dirty {
            self.rebuild();
        }
        ui.label(RichText::new(format!("{} of {} devices", self.view.len(), self.devices.len())).small());
        ui.horizontal(|ui| {
            for (column, title, width) in Column::ALL {
                let arrow = match (self.form.sort == column, self.form.ascending) {
                    (true, true) => " ⏶",
                    (true, false) => " ⏷",
                    _ => "",
                };
                let width = if width == 0.0 { ui.available_width() } else { width };
                let button =
                    egui::Button::new(RichText::new(format!("{title}{arrow}")).strong()).frame(false);
                let header = cell(ui, width, 18.0, |ui| ui.add(button));
                if header.on_hover_text(format!("Sort by {}", title.to_lowercase())).clicked() {
                    if self.form.sort == column {
                        self.form.ascending = !self.form.ascending;
                    } else {
                        self.form.sort = column;
                        self.form.ascending = true;
                    }
                    self.rebuild();
                }
            }
        });
        let row_height = ui.text_style_height(&egui::TextStyle::Body) + 4.0;
        let now = now_unix();
        egui::ScrollArea::vertical().id_salt("devices").auto_shrink([false, false]).show_rows(
            ui,
            row_height,
            self.view.len(),
            |ui, rows| {
                for i in rows {
                    let d = &self.devices[self.view[i]];
                    let progress = self.progress.get(&d.mac).copied();
                    if let Some(mac) = row(ui, d, progress, now, row_height) {
                        self.selected = Some(mac.clone());
                        self.history = None;
                        worker.send(Command::Serve(ServeCommand::History(mac)));
                    }
                }
            },
        );
    }
}

/// One row; returns the MAC when the user opens its detail.
fn row(ui: &mut egui::Ui, d: &Device, progress: Option<f32>, now: i64, height: f32) -> Option<String> {
    let mut opened = None;
    ui.horizontal(|ui| {
        let [(_, _, w_dev), (_, _, w_chip), (_, _, w_ver), (_, _, w_seen), (_, _, w_ip), (_, _, w_state)] =
            Column::ALL;
        cell(ui, w_dev, height, |ui| {
            if ui
                .link(RichText::new(&d.mac).monospace())
                .on_hover_text("Details and request history")
                .clicked()
            {
                opened = Some(d.mac.clone());
            }
            if !d.name.is_empty() {
                ui.add(egui::Label::new(RichText::new(&d.name).small()).truncate());
            }
        });
        cell(ui, w_chip, height, |ui| ui.label(&d.family));
        cell(ui, w_ver, height, |ui| ui.label(d.version.as_deref().unwrap_or("?")));
        cell(ui, w_seen, height, |ui| ui.label(ago(d.last_seen)));
        cell(ui, w_ip, height, |ui| ui.label(&d.remote_ip));
        let w_state = if w_state == 0.0 { ui.available_width() } else { w_state };
        cell(ui, w_state, height, |ui| {
            let text = state_text(d, progress, now);
            let color = match Shown::of(d, now) {
                Shown::State(DeviceState::Failed | DeviceState::RolledBack) | Shown::SilentSinceUpdate => {
                    ui.visuals().error_fg_color
                }
                Shown::State(DeviceState::Held) | Shown::Offline => ui.visuals().weak_text_color(),
                _ => ui.visuals().text_color(),
            };
            ui.add(egui::Label::new(RichText::new(text).color(color)).truncate())
        });
    });
    opened
}

/// A fixed-width, left-aligned cell, so rows line up with the header.
fn cell<R>(ui: &mut egui::Ui, width: f32, height: f32, add: impl FnOnce(&mut egui::Ui) -> R) -> R {
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
    use super::*;

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
    fn filter_and_sort() {
        let now = now_unix();
        let mut table = DeviceTable::new(Remembered::default());
        let mut devices: Vec<Device> = (0..5)
            .map(|i| {
                let mut d =
                    Device::new(&format!("18:FE:34:00:00:0{i}"), "ESP8266", "stable", "10.0.0.1", now - i);
                d.version = Some(format!("1.{i}.0"));
                d
            })
            .collect();
        devices[3].state = DeviceState::Failed;
        table.set_devices(devices);
        table.rebuild();
        assert_eq!(table.view, vec![0, 1, 2, 3, 4], "most recently seen first");
        table.form.sort = Column::Version;
        table.form.ascending = false;
        table.rebuild();
        assert_eq!(table.view, vec![4, 3, 2, 1, 0]);
        table.form.filter = "1.2".into();
        table.rebuild();
        assert_eq!(table.view, vec![2]);
        table.form.filter.clear();
        table.form.only = Some(Shown::State(DeviceState::Failed));
        table.rebuild();
        assert_eq!(table.view, vec![3]);
        assert_eq!(table.count_in(&[DeviceState::Failed]), 1);
    }
}
