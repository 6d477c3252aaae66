//! The one stream of typed events the server emits: the GUI dashboard, the CLI log and the tests
//! all watch the same thing.

use std::net::{IpAddr, SocketAddr};

/// Something that happened on the server. `conn` numbers connections so a request, its decision
/// and its download can be tied together.
#[allow(missing_docs)] // field names say it; sizes are bytes
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum ServerEvent {
    /// A listener is up.
    Listening { addr: SocketAddr, tls: bool },
    /// A request head arrived.
    RequestReceived {
        conn: u64,
        remote: SocketAddr,
        method: String,
        path: String,
        mac: Option<String>,
        version: Option<String>,
    },
    /// The server answered, and why.
    Decision { conn: u64, mac: Option<String>, status: u16, reason: String, release: Option<i64> },
    /// A body started; `record_size` is the TLS record limit in force (None: full size).
    DownloadStarted {
        conn: u64,
        mac: Option<String>,
        release: i64,
        version: String,
        total: u64,
        record_size: Option<usize>,
    },
    /// Bytes written to the socket so far.
    DownloadProgress { conn: u64, mac: Option<String>, release: i64, sent: u64, total: u64 },
    /// The whole body was written.
    DownloadFinished { conn: u64, mac: Option<String>, release: i64, bytes: u64, millis: u64 },
    /// The body broke off.
    DownloadAborted { conn: u64, mac: Option<String>, release: i64, sent: u64, total: u64, why: String },
    /// A device checked in running the release it downloaded.
    DeviceInstalled { mac: String, release: i64, version: String },
    /// A device downloaded a release and has not checked in within twice its usual interval
    /// (`since`: its last check-in, Unix time): it may be stranded on what it installed.
    DeviceSilent { mac: String, since: i64 },
    /// A device downloaded a release but came back running something else.
    DeviceRolledBack { mac: String, release: i64, running: Option<String> },
    /// A connection was refused before any request (not TLS, handshake failed, too many).
    ConnectionRefused { remote: SocketAddr, why: String },
    /// Releases or channels changed and the server now answers from the new state.
    CatalogReloaded,
    /// The inventory cannot be written (`why`: a full disk, a lock held by another process):
    /// `held` records wait in memory and `spilled` in the spill file, and are retried; `dropped`
    /// request-history records were given up because neither could take more. Reported when it
    /// starts, when the spill grows, and every few seconds while it lasts.
    InventoryBacklog { held: u64, spilled: u64, dropped: u64, why: String },
    /// The backlog reached the database (`saved` records): every answered check-in is stored.
    InventoryCaughtUp { saved: u64 },
    /// New MACs are not admitted: the inventory holds `max` devices never seen to install
    /// anything (`serve --max-unproven-devices`). Known devices are served as ever. `refused`: new
    /// MACs refused since the last report (reported at most every 10 s).
    NewDevicesCapped { max: u64, refused: u64 },
    /// `remote` (an IPv6 /64 counts as one address) sent more than `per_minute` new MACs in a
    /// minute: its further new MACs are refused for now. `refused`: since the last report.
    NewDevicesRateLimited { remote: IpAddr, per_minute: u32, refused: u64 },
    /// The release a channel serves cannot be served (its firmware file is missing, truncated or
    /// damaged): devices on that channel are answered 304 with the reason until it is fixed.
    ReleaseDisabled { release: i64, channel: String, version: String, reason: String },
    /// A row of the database cannot be read (`key` names it: "release #3", "channel \"beta\""):
    /// it is left out and everything else is served.
    RowUnreadable { table: String, key: String, reason: String },
}
