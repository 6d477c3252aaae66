//! Step 4, Serve: start the update server, publish a dropped `.bin` after seeing what is wrong with
//! it, steer each channel's release and rollout, and watch devices download and install live.
//!
//! Everything shown comes from [`ServeEvent`]s the worker sends at most ten times a second while
//! something moves, and never while nothing does.

mod device_detail;
mod devices;
mod downloads;
mod log;
mod publish_dialog;
mod releases;
mod server_bar;
mod words;

use std::path::PathBuf;

use super::StepStatus;
use crate::worker::{Command, Download, ServeCommand, ServeEvent, ServerInfo, VirtualDeviceInfo, Worker};
use otaforge_store::{Channel, DeviceState, Release};
pub(crate) use words::{ago, bytes, clock, message};

pub use devices::{Action, Column, DeviceTable, UsbBoard, button_label};
pub use log::EventLog;
pub use publish_dialog::PublishDialog;

/// Labels of the Serve step's main controls (tests and the screenshot script find them by these).
pub mod labels {
    /// Starts the server.
    pub const START: &str = "Start server";
    /// Stops it.
    pub const STOP: &str = "Stop server";
    /// Opens a file dialog to publish a .bin.
    pub const CHOOSE: &str = "Publish a .bin…";
    /// The publish dialog's confirm button.
    pub const PUBLISH: &str = "Publish";
    /// The publish dialog's cancel button.
    pub const CANCEL: &str = "Cancel";
    /// The version field of the publish dialog.
    pub const VERSION: &str = "Version to publish";
    /// The channel field of the publish dialog.
    pub const CHANNEL: &str = "Publish to channel";
    /// The publish dialog's signing checkbox.
    pub const SIGN: &str = "Sign with this project's key";
    /// The publish dialog's compression checkbox.
    pub const GZIP: &str = "Compress (gzip; ESP8266 core 2.7.0 or newer)";
    /// The device list's filter field.
    pub const FILTER: &str = "Filter devices";
    /// A device row's actions: name it here.
    pub const RENAME: &str = "Rename…";
    /// …forget it (after a confirmation).
    pub const FORGET: &str = "Forget…";
    /// …open its detail with the request history.
    pub const HISTORY: &str = "History";
    /// …show what its board prints, when it is on USB.
    pub const OPEN_MONITOR: &str = "Open monitor";
    /// The rename dialog's field.
    pub const NAME_FIELD: &str = "Name shown for this device";
    /// The rename dialog's confirm button.
    pub const SAVE_NAME: &str = "Save name";
    /// The forget confirmation's button.
    pub const FORGET_CONFIRM: &str = "Forget device";
    /// Re-sorts the device list after polls moved devices out of order.
    pub const SORT_AGAIN: &str = "Sort again";
    /// Switches on a virtual device.
    pub const TRY: &str = "Try without hardware";
    /// Opens the publish dialog with the virtual device's newer firmware.
    pub const PUBLISH_DEMO: &str = "Publish the newer demo build…";
    pub use super::Tab;
}

/// The Serve step's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    /// Channels, their current release and history.
    #[default]
    Releases,
    /// The device inventory.
    Devices,
    /// Downloads in flight.
    Downloads,
    /// The event log.
    Log,
}

impl Tab {
    const ALL: [Tab; 4] = [Tab::Releases, Tab::Devices, Tab::Downloads, Tab::Log];

    /// The tab's name (its button shows a count after it).
    pub fn title(self) -> &'static str {
        match self {
            Tab::Releases => "Releases",
            Tab::Devices => "Devices",
            Tab::Downloads => "Downloads",
            Tab::Log => "Log",
        }
    }
}

/// What the Serve step remembers between runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Remembered {
    bind: String,
    port: u16,
    tab: Tab,
    channel: String,
    devices: devices::Remembered,
    log: log::Remembered,
}

impl Default for Remembered {
    fn default() -> Self {
        Remembered {
            bind: "0.0.0.0".into(),
            port: otaforge_protocol::DEFAULT_PORT,
            tab: Tab::Releases,
            channel: otaforge_protocol::DEFAULT_CHANNEL.into(),
            devices: Default::default(),
            log: Default::default(),
        }
    }
}

/// Where the server stands.
#[derive(Debug, Clone)]
pub enum ServerState {
    /// Not running.
    Stopped,
    /// Asked to start.
    Starting,
    /// Listening.
    Running(ServerInfo),
    /// Could not start, with the reason and the fix.
    Failed(String),
}

/// State of the Serve step.
pub struct ServeStep {
    form: Remembered,
    /// The server.
    pub server: ServerState,
    /// Channels.
    pub channels: Vec<Channel>,
    /// Every release, newest first.
    pub releases: Vec<Release>,
    /// Releases a channel serves that cannot be served, by id, with why.
    pub disabled: std::collections::HashMap<i64, String>,
    /// Rows of the database that cannot be read, in words.
    pub unreadable: Vec<String>,
    /// The device inventory, filtered and sorted for display.
    pub devices: DeviceTable,
    /// Downloads in flight.
    pub downloads: Vec<Download>,
    /// The event log.
    pub log: EventLog,
    /// The publish dialog, while open.
    pub dialog: Option<PublishDialog>,
    /// The last release action's outcome (ok, words).
    pub message: Option<(bool, String)>,
    /// Virtual devices switched on from this window.
    pub virtual_devices: Vec<VirtualDeviceInfo>,
    rollout_edits: std::collections::HashMap<String, u8>,
    promote_targets: std::collections::HashMap<String, String>,
}

impl ServeStep {
    pub(super) fn new(form: Remembered, worker: &Worker) -> Self {
        worker.send(Command::Serve(ServeCommand::Refresh));
        let devices = DeviceTable::new(form.devices.clone());
        let log = EventLog::new(form.log.clone());
        ServeStep {
            form,
            server: ServerState::Stopped,
            channels: Vec::new(),
            releases: Vec::new(),
            disabled: Default::default(),
            unreadable: Vec::new(),
            devices,
            downloads: Vec::new(),
            log,
            dialog: None,
            message: None,
            virtual_devices: Vec::new(),
            rollout_edits: Default::default(),
            promote_targets: Default::default(),
        }
    }

    pub(super) fn remembered(&self) -> Remembered {
        Remembered { devices: self.devices.remembered(), log: self.log.remembered(), ..self.form.clone() }
    }

    /// Done once the server runs with a release; attention when it could not start or a device
    /// failed or rolled back.
    pub(super) fn status(&self) -> StepStatus {
        let troubled = self.devices.count_in(&[DeviceState::Failed, DeviceState::RolledBack]) > 0;
        match &self.server {
            ServerState::Failed(_) => StepStatus::Attention,
            _ if troubled => StepStatus::Attention,
            ServerState::Running(_) if !self.releases.is_empty() => StepStatus::Done,
            _ => StepStatus::Todo,
        }
    }

    /// The tab shown.
    pub fn tab(&self) -> Tab {
        self.form.tab
    }

    /// Shows a tab.
    pub fn show_tab(&mut self, tab: Tab) {
        self.form.tab = tab;
    }

    /// Sets where the server will listen (what the form's fields hold).
    pub fn listen_on(&mut self, bind: &str, port: u16) {
        self.form.bind = bind.to_string();
        self.form.port = port;
    }

    /// The address of the running server.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        match &self.server {
            ServerState::Running(info) => Some(info.addr),
            _ => None,
        }
    }

    /// The window is closing: stop the server so the inventory reaches the disk (waits at most
    /// a few seconds).
    pub(super) fn on_exit(&self, worker: &Worker) {
        if matches!(self.server, ServerState::Running(_) | ServerState::Starting) {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            worker.send(Command::Serve(ServeCommand::StopAndNotify(done)));
            let _ = wait.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// A file dropped on the window while this step is open: check it and show the dialog.
    pub(super) fn dropped(&mut self, path: PathBuf, worker: &Worker) {
        let dialog = PublishDialog::new(path, &self.form.channel);
        worker.send(Command::Serve(ServeCommand::Check(dialog.draft())));
        self.dialog = Some(dialog);
    }

    pub(super) fn on_event(&mut self, event: ServeEvent, worker: &Worker) {
        match event {
            ServeEvent::Started(info) => self.server = ServerState::Running(info),
            ServeEvent::StartFailed(why) => self.server = ServerState::Failed(why),
            ServeEvent::Stopped => {
                self.server = ServerState::Stopped;
                self.downloads.clear();
                self.devices.set_downloads(&self.downloads);
            }
            ServeEvent::Catalog { channels, releases, disabled, unreadable } => {
                self.channels = channels;
                self.releases = releases;
                self.disabled = disabled;
                self.unreadable = unreadable;
            }
            ServeEvent::Devices(list) => self.devices.set_devices(list),
            ServeEvent::Downloads(list) => {
                self.downloads = list;
                self.devices.set_downloads(&self.downloads);
            }
            ServeEvent::Log(lines) => self.log.extend(lines),
            ServeEvent::FileChosen(path) => self.dropped(path, worker),
            ServeEvent::Checked(check) => {
                if let Some(d) = &mut self.dialog {
                    d.checked(*check, worker);
                }
            }
            ServeEvent::Published(release) => {
                self.dialog = None;
                self.form.channel = release.channel.clone();
                self.form.tab = Tab::Releases;
                self.message = Some((
                    true,
                    format!(
                        "Published {} on \"{}\" (#{}): devices polling that channel get it at their next check.",
                        release.version, release.channel, release.id
                    ),
                ));
            }
            ServeEvent::Failed(why) => match &mut self.dialog {
                Some(d) if d.busy => d.failed(why),
                _ => self.message = Some((false, why)),
            },
            ServeEvent::Done(what) => self.message = Some((true, what)),
            ServeEvent::History { mac, requests } => self.devices.set_history(&mac, requests),
            ServeEvent::VirtualDevice(info) => {
                self.devices.name(&info.mac, &format!("{} (virtual)", info.name));
                self.message = Some((
                    true,
                    format!(
                        "A virtual ESP8266, {} ({}), runs {} and checks for updates every few seconds. \
                         Publish a newer build and watch it update: {} holds {}.",
                        info.name,
                        info.mac,
                        info.version,
                        info.newer_bin.display(),
                        info.newer_version
                    ),
                ));
                self.form.tab = Tab::Devices;
                self.virtual_devices.push(info);
            }
        }
    }

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, worker: &Worker) {
        ui.heading("4. Serve");
        ui.label(
            "The HTTPS update server your devices poll. Publish a .bin, and every device on its channel \
             downloads it at its next check.",
        );
        ui.add_space(6.0);
        self.server_bar(ui, worker);
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            if ui.button(labels::CHOOSE).clicked() {
                worker.send(Command::Serve(ServeCommand::PickFile));
            }
            ui.label("or drop a .bin anywhere on this window.");
            if let Some(demo) = self.virtual_devices.last()
                && ui
                    .button(labels::PUBLISH_DEMO)
                    .on_hover_text(demo.newer_bin.display().to_string())
                    .clicked()
            {
                // Demo builds go to the demo channel the virtual device polls, never to a real one.
                let dialog = PublishDialog::new(demo.newer_bin.clone(), otaforge_protocol::DEMO_CHANNEL);
                worker.send(Command::Serve(ServeCommand::Check(dialog.draft())));
                self.dialog = Some(dialog);
            }
        });
        if let Some((ok, text)) = &self.message {
            message(ui, *ok, text);
        }
        ui.separator();
        self.tabs(ui);
        ui.add_space(4.0);
        match self.form.tab {
            Tab::Releases => releases::ui(
                ui,
                worker,
                releases::Lists {
                    channels: &self.channels,
                    releases: &self.releases,
                    disabled: &self.disabled,
                    unreadable: &self.unreadable,
                },
                &mut self.rollout_edits,
                &mut self.promote_targets,
            ),
            Tab::Devices => self.devices.ui(ui, worker),
            Tab::Downloads => downloads::ui(ui, &self.downloads),
            Tab::Log => self.log.ui(ui),
        }
        if let Some(dialog) = &mut self.dialog {
            let channel = dialog.channel.clone();
            match dialog.ui(ui.ctx(), worker) {
                publish_dialog::Outcome::Open => {}
                publish_dialog::Outcome::Cancelled => self.dialog = None,
                publish_dialog::Outcome::Publishing => self.form.channel = channel,
            }
        }
        self.devices.detail_window(ui.ctx(), worker);
        if !self.devices.is_empty() {
            // Keeps "last seen" and "offline" true while nothing else moves; costs one frame a minute.
            ui.ctx().request_repaint_after(std::time::Duration::from_secs(60));
        }
    }

    fn tabs(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for tab in Tab::ALL {
                let count = match tab {
                    Tab::Releases => self.releases.len(),
                    Tab::Devices => self.devices.len(),
                    Tab::Downloads => self.downloads.len(),
                    Tab::Log => self.log.len(),
                };
                let text = format!("{} ({count})", tab.title());
                if ui.selectable_label(self.form.tab == tab, text).clicked() {
                    self.form.tab = tab;
                }
            }
        });
    }
}
