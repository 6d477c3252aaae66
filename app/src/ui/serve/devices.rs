//! The device list: every device that checked in, what it runs, when it is next due and where it
//! stands — sortable, filterable, drawn row by row only for the rows on screen (10,000 devices
//! cost what 20 do), in an order polls do not shuffle ([`order`]) — with each row's actions
//! ([`actions`]) and a detail window with the device's request history.

mod actions;
mod columns;
mod order;
mod row;

use std::collections::HashMap;

use egui::RichText;

use super::labels;
use super::rows::{RowTops, lines};
use crate::worker::{Download, Worker};
use otaforge_store::{Device, DeviceState, RequestRecord, now_unix};

pub use actions::{Action, button_label};
pub use columns::Column;
pub use row::{next_check, state_text};

/// A device not heard from for this long is shown offline (devices poll hourly by default).
pub const OFFLINE_AFTER_SECS: i64 = 3 * 3600;

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

/// A board the Flash step found on a serial port, by its chip's MAC: the device whose MAC it is
/// can have its serial monitor opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbBoard {
    /// Station MAC the chip reported.
    pub mac: String,
    /// The port it is on.
    pub port: String,
    /// A flash or detection holds the port.
    pub busy: bool,
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
    /// Indices into `devices`, filtered and in display order.
    view: Vec<usize>,
    /// The MACs of `view` while new data waits to be merged into it (see [`order`]).
    order: Vec<String>,
    /// Sort and filter afresh before the next frame.
    dirty: bool,
    /// New data since the order was last brought up to date.
    fresh: bool,
    /// The order kept is no longer sorted (the user can sort again).
    pub stale: bool,
    usb: Option<UsbBoard>,
    renaming: Option<actions::Renaming>,
    forgetting: Option<String>,
    monitor_request: Option<String>,
    /// The device whose detail window is open.
    pub selected: Option<String>,
    /// The selected device's requests, newest first.
    pub history: Option<(String, Vec<RequestRecord>)>,
    /// Bumped whenever the rows shown change, in content or order (their tops are summed again).
    generation: u64,
    tops: RowTops,
    /// Bumped whenever new device data arrives (their heights are estimated again).
    data_generation: u64,
    /// Each device's estimated row height, by index into `devices`, and what it was estimated
    /// for: a re-sort only reorders these, so the 10,000-row re-sort does not format 10,000 states.
    heights: Vec<f32>,
    heights_key: Option<(u64, u32)>,
}

impl DeviceTable {
    pub(super) fn new(form: Remembered) -> Self {
        DeviceTable {
            form,
            devices: Vec::new(),
            progress: HashMap::new(),
            names: HashMap::new(),
            view: Vec::new(),
            order: Vec::new(),
            dirty: true,
            fresh: false,
            stale: false,
            usb: None,
            renaming: None,
            forgetting: None,
            monitor_request: None,
            selected: None,
            history: None,
            generation: 0,
            tops: RowTops::default(),
            data_generation: 0,
            heights: Vec::new(),
            heights_key: None,
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

    /// The board the Flash step knows to be on USB, if any (Open monitor needs its MAC to match).
    pub fn set_usb_board(&mut self, board: Option<UsbBoard>) {
        self.usb = board;
    }

    /// The port whose serial monitor the user asked to open, once.
    pub fn take_monitor_request(&mut self) -> Option<String> {
        self.monitor_request.take()
    }

    pub(super) fn set_devices(&mut self, mut devices: Vec<Device>) {
        // Names given in this window (a virtual device's "(virtual)") stand over reported ones.
        for d in &mut devices {
            if let Some(name) = self.names.get(&d.mac) {
                d.name = name.clone();
            }
        }
        if !self.fresh && !self.dirty {
            // The order shown, by MAC, to merge the new data into (moved out: no copies).
            self.order = self.view.iter().map(|&i| std::mem::take(&mut self.devices[i].mac)).collect();
        }
        self.devices = devices;
        self.fresh = true;
        self.data_generation += 1;
    }

    /// Names a device in this window (the inventory keeps what devices report).
    pub(super) fn name(&mut self, mac: &str, name: &str) {
        self.names.insert(mac.to_string(), name.to_string());
        if let Some(d) = self.devices.iter_mut().find(|d| d.mac == mac) {
            d.name = name.to_string();
        }
    }

    pub(super) fn set_downloads(&mut self, downloads: &[Download]) {
        self.progress = downloads.iter().filter_map(|d| d.mac.clone().map(|m| (m, d.fraction()))).collect();
    }

    pub(super) fn set_history(&mut self, mac: &str, requests: Vec<RequestRecord>) {
        self.history = Some((mac.to_string(), requests));
    }

    /// Brings the order up to date: sorted afresh when asked, else merged with new data.
    pub(super) fn update_order(&mut self) {
        if self.dirty {
            self.rebuild();
        } else if self.fresh {
            self.merge();
        } else {
            return;
        }
        self.generation += 1;
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        self.dialogs(ui.ctx(), worker);
        if self.devices.is_empty() {
            ui.label(
                "No device has checked in yet. Start the server; devices flashed with firmware from step 2 \
                 appear here at their first update check.",
            );
            return;
        }
        self.filters(ui);
        self.update_order();
        ui.horizontal(|ui| {
            ui.label(RichText::new(format!("{} of {} devices", self.view.len(), self.devices.len())).small());
            if self.stale
                && ui
                    .small_button(labels::SORT_AGAIN)
                    .on_hover_text("Rows keep their places while devices check in; this sorts them again")
                    .clicked()
            {
                self.dirty = true;
                self.update_order();
            }
        });
        let gap = ui.spacing().item_spacing.x;
        let columns = Column::fitting(ui.available_width() - Column::ACTIONS_WIDTH - gap, gap);
        self.header(ui, &columns);
        let line = ui.text_style_height(&egui::TextStyle::Body);
        let char_width = ui.fonts_mut(|f| f.glyph_width(&egui::TextStyle::Body.resolve(ui.style()), 'n'));
        let state_width = columns.last().map_or(0.0, |c| c.2);
        let now = now_unix();
        // Words like "last seen 3 h ago" change by the minute: so do the estimates.
        let minute = ((now / 60) as u64) << 32;
        let heights_key = (self.data_generation ^ minute, state_width.to_bits());
        if self.heights_key != Some(heights_key) {
            self.heights_key = Some(heights_key);
            let progress = &self.progress;
            self.heights = (self.devices.iter())
                .map(|d| {
                    let words = state_text(d, progress.get(&d.mac).copied(), now);
                    lines(words.chars().count(), char_width, state_width) * line + 4.0
                })
                .collect();
        }
        let (view, heights) = (&self.view, &self.heights);
        let generation = self.generation ^ minute;
        self.tops
            .update(generation, state_width, ui.spacing().item_spacing.y, view.len(), |i| heights[view[i]]);
        let mut asked = None;
        let area = egui::ScrollArea::vertical().id_salt("devices").auto_shrink([false, false]);
        self.tops.show(ui, area, |ui, i| {
            let d = &self.devices[self.view[i]];
            let cx = row::RowContext {
                progress: self.progress.get(&d.mac).copied(),
                now,
                height: line + 4.0,
                usb: self.usb.as_ref(),
                columns: &columns,
            };
            if let Some(a) = row::row(ui, d, &cx) {
                asked = Some(a);
            }
        });
        if let Some(a) = asked {
            self.act(a, worker);
        }
    }

    fn filters(&mut self, ui: &mut egui::Ui) {
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
    }
}
