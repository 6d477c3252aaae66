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
mod publish_row;
mod releases;
mod rows;
mod server_bar;
mod view;
mod words;

use std::path::PathBuf;

use super::StepStatus;
use crate::worker::{
    Command, Download, ServeCommand, ServeEvent, ServeSettings, ServerInfo, VirtualDeviceInfo, Worker,
};
use otaforge_store::{Channel, DeviceState, Release};
pub(crate) use words::{ago, bytes, clock, message};

pub use devices::{Action, Column, DeviceTable, UsbBoard, button_label};
pub use log::EventLog;
pub use publish_dialog::PublishDialog;

pub mod labels;

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
    /// What the publish field holds.
    publish_path: String,
    /// Start the server when the app opens if it was serving when it closed (the setting).
    restart: bool,
    /// The project whose server was running (started, and not stopped by the user) when last
    /// saved: only that project's server is started again.
    serving: Option<PathBuf>,
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
            publish_path: String::new(),
            restart: true,
            serving: None,
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
    /// The image step 2 baked or built, offered for publishing.
    offered: Option<PathBuf>,
    /// The first catalog has arrived (until then releases are not known).
    catalog_loaded: bool,
}

impl ServeStep {
    pub(super) fn new(form: Remembered, worker: &Worker) -> Self {
        worker.send(Command::Serve(ServeCommand::Refresh));
        let devices = DeviceTable::new(form.devices.clone());
        let log = EventLog::new(form.log.clone());
        let mut server = ServerState::Stopped;
        if form.restart && form.serving.as_deref() == Some(worker.dir().as_path()) {
            // It was serving when the window closed: devices expect it back.
            server = ServerState::Starting;
            worker.send(Command::Serve(ServeCommand::Start(ServeSettings {
                bind: form.bind.clone(),
                port: form.port,
            })));
        }
        ServeStep {
            form,
            server,
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
            offered: None,
            catalog_loaded: false,
        }
    }

    /// Whether the step knows where it stands (releases read, server not still starting): until
    /// then the sidebar shows the mark it had when the window closed.
    pub(super) fn known(&self) -> bool {
        self.catalog_loaded && !matches!(self.server, ServerState::Starting)
    }

    /// The image step 2 baked or built, to offer with a "Publish <name>" button beside the
    /// publish field (`None`: nothing to offer). Called when the window opens and at each new
    /// image.
    pub fn offer_image(&mut self, path: Option<PathBuf>) {
        self.offered = path;
    }

    /// The image offered for publishing, if any.
    pub fn offered_image(&self) -> Option<&std::path::Path> {
        self.offered.as_deref()
    }

    /// Whether the server is started again when the app opens (the setting).
    pub fn restarts(&self) -> bool {
        self.form.restart
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
        self.form.publish_path = path.display().to_string();
        self.check(path, &self.form.channel.clone(), worker);
    }

    /// Opens the publish dialog on `path`, for `channel`, and checks the file.
    fn check(&mut self, path: PathBuf, channel: &str, worker: &Worker) {
        let dialog = PublishDialog::new(path, channel);
        worker.send(Command::Serve(ServeCommand::Check(dialog.draft())));
        self.dialog = Some(dialog);
    }

    pub(super) fn on_event(&mut self, event: ServeEvent, worker: &Worker) {
        match event {
            ServeEvent::Started(info) => {
                self.server = ServerState::Running(info);
                self.form.serving = Some(worker.dir().clone());
            }
            ServeEvent::StartFailed(why) => self.server = ServerState::Failed(why),
            ServeEvent::Stopped => {
                self.server = ServerState::Stopped;
                self.downloads.clear();
                self.devices.set_downloads(&self.downloads);
            }
            ServeEvent::Catalog { channels, releases, disabled, unreadable } => {
                self.catalog_loaded = true;
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
}
