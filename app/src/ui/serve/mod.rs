//! Step 4, Serve: start the update server, publish a dropped `.bin` after seeing what is wrong with
//! it, steer each channel's release and rollout, and watch devices download and install live.
//!
//! Everything shown comes from [`ServeEvent`]s the worker sends at most ten times a second while
//! something moves, and never while nothing does.

mod devices;
mod downloads;
mod log;
mod publish_dialog;
mod releases;

use std::path::PathBuf;

use super::StepStatus;
use crate::backend::{
    Backend, Command, Download, ServeCommand, ServeEvent, ServeSettings, ServerInfo, VirtualDeviceInfo,
};
use crate::store::{Channel, DeviceState, Release};

pub use devices::DeviceTable;
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
    /// The device list's filter field.
    pub const FILTER: &str = "Filter devices";
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
            port: crate::server::DEFAULT_PORT,
            tab: Tab::Releases,
            channel: crate::publish::DEFAULT_CHANNEL.into(),
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
    pub(super) fn new(form: Remembered, backend: &Backend) -> Self {
        backend.send(Command::Serve(ServeCommand::Refresh));
        let devices = DeviceTable::new(form.devices.clone());
        let log = EventLog::new(form.log.clone());
        ServeStep {
            form,
            server: ServerState::Stopped,
            channels: Vec::new(),
            releases: Vec::new(),
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

    /// A file dropped on the window while this step is open: check it and show the dialog.
    pub(super) fn dropped(&mut self, path: PathBuf, backend: &Backend) {
        let dialog = PublishDialog::new(path, &self.form.channel);
        backend.send(Command::Serve(ServeCommand::Check(dialog.draft())));
        self.dialog = Some(dialog);
    }

    pub(super) fn on_event(&mut self, event: ServeEvent, backend: &Backend) {
        match event {
            ServeEvent::Started(info) => self.server = ServerState::Running(info),
            ServeEvent::StartFailed(why) => self.server = ServerState::Failed(why),
            ServeEvent::Stopped => {
                self.server = ServerState::Stopped;
                self.downloads.clear();
                self.devices.set_downloads(&self.downloads);
            }
            ServeEvent::Catalog { channels, releases } => {
                self.channels = channels;
                self.releases = releases;
            }
            ServeEvent::Devices(list) => self.devices.set_devices(list),
            ServeEvent::Downloads(list) => {
                self.downloads = list;
                self.devices.set_downloads(&self.downloads);
            }
            ServeEvent::Log(lines) => self.log.extend(lines),
            ServeEvent::FileChosen(path) => self.dropped(path, backend),
            ServeEvent::Checked(check) => {
                if let Some(d) = &mut self.dialog {
                    d.checked(*check, backend);
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

    pub(super) fn ui(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        ui.heading("4. Serve");
        ui.label(
            "The HTTPS update server your devices poll. Publish a .bin, and every device on its channel \
             downloads it at its next check.",
        );
        ui.add_space(6.0);
        self.server_bar(ui, backend);
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            if ui.button(labels::CHOOSE).clicked() {
                backend.send(Command::Serve(ServeCommand::PickFile));
            }
            ui.label("or drop a .bin anywhere on this window.");
            if let Some(demo) = self.virtual_devices.last()
                && ui
                    .button(labels::PUBLISH_DEMO)
                    .on_hover_text(demo.newer_bin.display().to_string())
                    .clicked()
            {
                self.dropped(demo.newer_bin.clone(), backend);
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
                backend,
                &self.channels,
                &self.releases,
                &mut self.rollout_edits,
                &mut self.promote_targets,
            ),
            Tab::Devices => self.devices.ui(ui, backend),
            Tab::Downloads => downloads::ui(ui, &self.downloads),
            Tab::Log => self.log.ui(ui),
        }
        if let Some(dialog) = &mut self.dialog {
            let channel = dialog.channel.clone();
            match dialog.ui(ui.ctx(), backend) {
                publish_dialog::Outcome::Open => {}
                publish_dialog::Outcome::Cancelled => self.dialog = None,
                publish_dialog::Outcome::Publishing => self.form.channel = channel,
            }
        }
        self.devices.detail_window(ui.ctx(), backend);
        if !self.devices.is_empty() {
            // Keeps "last seen" and "offline" true while nothing else moves; costs one frame a minute.
            ui.ctx().request_repaint_after(std::time::Duration::from_secs(60));
        }
    }

    fn server_bar(&mut self, ui: &mut egui::Ui, backend: &Backend) {
        let running = matches!(self.server, ServerState::Running(_));
        ui.horizontal(|ui| {
            ui.add_enabled_ui(!running, |ui| {
                let label = ui.label("Listen on");
                ui.add(egui::TextEdit::singleline(&mut self.form.bind).desired_width(120.0))
                    .labelled_by(label.id);
                let label = ui.label("Port");
                ui.add(egui::DragValue::new(&mut self.form.port)).labelled_by(label.id);
            });
            match self.server {
                ServerState::Running(_) => {
                    if ui.button(labels::STOP).clicked() {
                        backend.send(Command::Serve(ServeCommand::Stop));
                    }
                    let tip = "Switch on a virtual ESP8266 running firmware baked for this server";
                    if ui.button(labels::TRY).on_hover_text(tip).clicked() {
                        backend.send(Command::Serve(ServeCommand::TryVirtualDevice));
                    }
                }
                ServerState::Starting => {
                    ui.add_enabled(false, egui::Button::new(labels::START));
                    ui.label("Starting…");
                }
                ServerState::Stopped | ServerState::Failed(_) => {
                    if ui.button(labels::START).clicked() {
                        self.server = ServerState::Starting;
                        let settings = ServeSettings { bind: self.form.bind.clone(), port: self.form.port };
                        backend.send(Command::Serve(ServeCommand::Start(settings)));
                    }
                }
            }
        });
        match &self.server {
            ServerState::Running(info) => {
                egui::Grid::new("server-info").num_columns(2).spacing([12.0, 2.0]).show(ui, |ui| {
                    ui.label("Devices poll");
                    ui.vertical(|ui| {
                        for url in &info.urls {
                            ui.add(egui::Label::new(egui::RichText::new(url).monospace()).selectable(true));
                        }
                        if info.urls.is_empty() {
                            ui.label(format!("port {}", info.addr.port()));
                        }
                    });
                    ui.end_row();
                    ui.label("Server certificate SHA-256");
                    ui.add(egui::Label::new(
                        egui::RichText::new(&info.server_fingerprint).monospace().small(),
                    ));
                    ui.end_row();
                    ui.label("Devices trust SHA-256");
                    ui.add(egui::Label::new(
                        egui::RichText::new(&info.anchor_fingerprint).monospace().small(),
                    ));
                    ui.end_row();
                });
            }
            ServerState::Failed(why) => message(ui, false, why),
            ServerState::Stopped => {
                ui.label("The server is stopped: devices get no answer until you start it.");
            }
            ServerState::Starting => {}
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

/// Bytes in words: "512 B", "420 KB", "1.2 MB".
pub(crate) fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{} KB", n / 1024),
        _ => format!("{:.1} MB", n as f64 / 1_048_576.0),
    }
}

/// Unix seconds as a UTC time of day (dates for anything older than a day).
pub(crate) fn clock(at: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(at) else { return "?".into() };
    if crate::store::now_unix() - at > 86_400 {
        return t.date().to_string();
    }
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// How long ago, in words.
pub(crate) fn ago(at: i64) -> String {
    let secs = (crate::store::now_unix() - at).max(0);
    match secs {
        0..5 => "just now".into(),
        5..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// A result line: ✔ in the text colour, ✖ in the error colour.
pub(crate) fn message(ui: &mut egui::Ui, ok: bool, text: &str) {
    if ok {
        ui.label(format!("✔ {text}"));
    } else {
        ui.colored_label(ui.visuals().error_fg_color, format!("✖ {text}"));
    }
}
