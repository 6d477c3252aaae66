//! What the Serve step and the worker say to each other: the commands, the events, and what they
//! carry (the server's address, a file to publish and its check).

use std::path::PathBuf;
use std::sync::Arc;

use super::{Download, LogEntry, VirtualDeviceInfo};
use otaforge_actions::publish;
use otaforge_firmware::FirmwareReport;
use otaforge_store::{Channel, Device, Release, RequestRecord};

/// Where the server listens (what the Serve step's form holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// Address to bind, as typed ("0.0.0.0" = every interface).
    pub bind: String,
    /// HTTPS port (0 picks a free one).
    pub port: u16,
}

/// A file the user wants to publish, as the dialog holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishDraft {
    /// The .bin.
    pub path: PathBuf,
    /// Version typed (empty: the one the image carries).
    pub version: String,
    /// Channel to publish to.
    pub channel: String,
    /// Sign with the project's key (always done where the channel needs it: see
    /// [`PublishCheck::must_sign`]).
    pub sign: bool,
    /// Compress with gzip (ESP8266 images).
    pub gzip: bool,
}

/// What publishing a file would do, checked before anything is stored.
#[derive(Debug, Clone)]
pub struct PublishCheck {
    /// What was checked.
    pub draft: PublishDraft,
    /// File size, bytes (0 when unreadable).
    pub size: u64,
    /// The inspection, or why the file is not an ESP image.
    pub inspection: Result<Box<FirmwareReport>, String>,
    /// The version the image carries (ESP-IDF app descriptor or baked config block).
    pub found_version: Option<String>,
    /// What the channel serves now.
    pub current: Option<Release>,
    /// Why it would be refused (the same refusals as `otaforge publish`); empty: it can be published.
    pub problems: Vec<String>,
    /// Things worth knowing that do not stop the publish.
    pub warnings: Vec<String>,
    /// What passed, holding the bytes read for this check; None when it was refused.
    pub checked: Option<Arc<publish::Checked>>,
    /// The channel takes only signed firmware (it requires signatures, or what it serves verifies
    /// them): the file is signed whatever the checkbox says, as `otaforge publish` does.
    pub must_sign: bool,
}

/// The running server, as the window shows it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Address actually bound.
    pub addr: std::net::SocketAddr,
    /// URLs devices can use (one per name in the server certificate).
    pub urls: Vec<String>,
    /// SHA-256 of the server certificate.
    pub server_fingerprint: String,
    /// SHA-256 of what devices trust (the CA, or the pinned leaf).
    pub anchor_fingerprint: String,
}

/// What the Serve step asks for.
#[derive(Debug, Clone)]
pub enum ServeCommand {
    /// Start the update server.
    Start(ServeSettings),
    /// Stop it (the inventory reaches the disk first).
    Stop,
    /// Stop it and say so on the channel when done (the window is closing and waits for this).
    StopAndNotify(std::sync::mpsc::SyncSender<()>),
    /// Re-read releases, channels and devices.
    Refresh,
    /// Check a file for publishing; nothing is stored.
    Check(PublishDraft),
    /// Publish what a check passed: exactly the bytes that were checked (see
    /// [`PublishCheck::checked`]); the channel's rules are applied again.
    Publish(Arc<publish::Checked>),
    /// Make release `id` its channel's current one again, or copy it to channel `to` (as
    /// `otaforge rollout --promote ID --channel TO`).
    Promote {
        /// The release.
        id: i64,
        /// Another channel to copy it to.
        to: Option<String>,
    },
    /// Go back to the channel's previous release.
    RollBack(String),
    /// Change a channel's rollout share and/or pause state.
    Rollout {
        /// The channel.
        channel: String,
        /// New share, percent.
        percent: Option<u8>,
        /// Pause (true) or resume (false).
        paused: Option<bool>,
    },
    /// A device's latest requests, with headers.
    History(String),
    /// Name a device here (empty: clear the name); in the store and the running server.
    Rename {
        /// The device.
        mac: String,
        /// The name to show instead of the reported one.
        name: String,
    },
    /// Forget a device (it reappears at its next check): from the store and the running server.
    Forget(String),
    /// Switch on a virtual ESP8266 that polls the running server, and write a newer firmware
    /// for it to publish.
    TryVirtualDevice,
}

/// What the Serve step hears back.
#[derive(Debug, Clone)]
pub enum ServeEvent {
    /// The server is listening.
    Started(ServerInfo),
    /// The server could not start, in words with the fix.
    StartFailed(String),
    /// The server stopped.
    Stopped,
    /// Channels and every release, newest first.
    Catalog {
        /// Channels.
        channels: Vec<Channel>,
        /// Releases, newest first.
        releases: Vec<Release>,
        /// Releases a channel serves whose firmware file cannot be served, by id, with why (the
        /// server answers that channel's devices 304 until it is fixed).
        disabled: std::collections::HashMap<i64, String>,
        /// Rows that cannot be read, in words with their key (left out of the lists above).
        unreadable: Vec<String>,
    },
    /// Every device (a full snapshot; at most ten a second).
    Devices(Vec<Device>),
    /// The downloads in flight (a full snapshot; at most ten a second).
    Downloads(Vec<Download>),
    /// New log lines, oldest first.
    Log(Vec<LogEntry>),
    /// A publish check's result.
    Checked(Box<PublishCheck>),
    /// A release was published.
    Published(Release),
    /// A release action (publish, promote, roll back, rollout) was refused or failed; nothing changed.
    Failed(String),
    /// A release action worked, in words.
    Done(String),
    /// A device's latest requests, newest first.
    History {
        /// The device.
        mac: String,
        /// Its requests.
        requests: Vec<RequestRecord>,
    },
    /// A virtual device was switched on.
    VirtualDevice(VirtualDeviceInfo),
}
