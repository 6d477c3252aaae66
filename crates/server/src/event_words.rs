//! The server's events in words: one sentence per event, shared by `otaforge serve`'s log and
//! the app's, so the two never describe the same thing differently.

use crate::ServerEvent;

/// What an event is about: the app's log filters and colours, and what the CLI leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    /// A request arrived.
    Request,
    /// What the server answered, and why.
    Answer,
    /// A download started or finished.
    Download,
    /// A device runs what it downloaded.
    Install,
    /// Something went wrong: broken downloads, rollbacks, refused connections.
    Problem,
    /// The server itself: listening, releases reloaded.
    Server,
}

impl EventKind {
    /// Every kind, in filter order.
    pub const ALL: [EventKind; 6] = [
        EventKind::Request,
        EventKind::Answer,
        EventKind::Download,
        EventKind::Install,
        EventKind::Problem,
        EventKind::Server,
    ];

    /// Plural words for a filter.
    pub fn label(self) -> &'static str {
        match self {
            EventKind::Request => "Requests",
            EventKind::Answer => "Answers",
            EventKind::Download => "Downloads",
            EventKind::Install => "Installs",
            EventKind::Problem => "Problems",
            EventKind::Server => "Server",
        }
    }
}

/// An event as a log line: the device it concerns (shown beside the text) and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    /// What it is about.
    pub kind: EventKind,
    /// The device, when known.
    pub mac: Option<String>,
    /// The sentence, without the device.
    pub text: String,
}

impl ServerEvent {
    /// The event in words; None for download progress, which a viewer draws or samples itself.
    pub fn words(&self) -> Option<Words> {
        use EventKind::*;
        let (kind, mac, text) = match self {
            ServerEvent::Listening { addr, tls } => {
                (Server, None, format!("listening on {}://{addr}", if *tls { "https" } else { "http" }))
            }
            ServerEvent::RequestReceived { remote, method, path, mac, version, .. } => {
                let version = version.as_ref().map(|v| format!(", running {v}")).unwrap_or_default();
                (Request, mac.clone(), format!("{method} {path} from {}{version}", remote.ip()))
            }
            ServerEvent::Decision { mac, status, reason, .. } => {
                (Answer, mac.clone(), format!("answered {status}: {reason}"))
            }
            ServerEvent::DownloadStarted { mac, version, total, record_size, .. } => {
                let records = record_size.map(|r| format!(" in {r}-byte TLS records")).unwrap_or_default();
                (Download, mac.clone(), format!("downloading {version}: {total} bytes{records}"))
            }
            ServerEvent::DownloadProgress { .. } => return None,
            ServerEvent::DownloadFinished { mac, bytes, millis, .. } => {
                let secs = *millis as f64 / 1000.0;
                (Download, mac.clone(), format!("download complete: {bytes} bytes in {secs:.1} s"))
            }
            ServerEvent::DownloadAborted { mac, sent, total, why, .. } => {
                (Problem, mac.clone(), format!("download broke off at {sent} of {total} bytes: {why}"))
            }
            ServerEvent::DeviceInstalled { mac, version, .. } => {
                (Install, Some(mac.clone()), format!("installed {version} ✔"))
            }
            ServerEvent::DeviceRolledBack { mac, running, .. } => {
                let running = running.as_deref().unwrap_or("an unknown version");
                (Problem, Some(mac.clone()), format!("came back on the old firmware ({running})"))
            }
            ServerEvent::DeviceSilent { mac, .. } => (
                Problem,
                Some(mac.clone()),
                "silent since its update: no check-in within twice its usual interval".into(),
            ),
            ServerEvent::ConnectionRefused { remote, why } => {
                (Problem, None, format!("{} refused: {why}", remote.ip()))
            }
            ServerEvent::CatalogReloaded => {
                (Server, None, "releases changed: now serving the new state".into())
            }
            ServerEvent::InventoryBacklog { held, spilled, dropped, why } => {
                let dropped = if *dropped > 0 {
                    format!(", {dropped} history records given up")
                } else {
                    String::new()
                };
                (
                    Problem,
                    None,
                    format!(
                        "inventory not saved ({why}): {held} records waiting in memory, {spilled} on disk{dropped}; retrying"
                    ),
                )
            }
            ServerEvent::InventoryCaughtUp { saved } => (
                Server,
                None,
                format!("inventory saved again: the {saved} waiting records are in the database"),
            ),
            ServerEvent::NewDevicesCapped { max, refused } => (
                Problem,
                None,
                format!(
                    "{refused} new device(s) not admitted: {max} devices that never installed anything are known \
                     (--max-unproven-devices); known devices are served as ever"
                ),
            ),
            ServerEvent::NewDevicesRateLimited { remote, per_minute, refused } => (
                Problem,
                None,
                format!(
                    "{refused} new device(s) from {remote} not admitted: more than {per_minute} new MACs a minute from one address"
                ),
            ),
            ServerEvent::ReleaseDisabled { release, channel, version, reason } => (
                Problem,
                None,
                format!(
                    "{version} (#{release}) on \"{channel}\" is disabled: {reason}; devices on \"{channel}\" \
                     are told 304 until the file is restored from a backup or another release is made current"
                ),
            ),
            ServerEvent::RowUnreadable { key, reason, .. } => (
                Problem,
                None,
                format!("{key} cannot be read from the database ({reason}): left out, the rest is served"),
            ),
        };
        Some(Words { kind, mac, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_but_progress_has_words_of_the_right_kind() {
        let remote = "203.0.113.7:4000".parse().unwrap();
        let mac = Some("18:FE:34:00:00:01".to_string());
        let started = ServerEvent::DownloadStarted {
            conn: 7,
            mac: mac.clone(),
            release: 3,
            version: "1.2.0".into(),
            total: 4096,
            record_size: Some(512),
        };
        let w = started.words().unwrap();
        assert_eq!((w.kind, w.mac.as_deref()), (EventKind::Download, mac.as_deref()));
        assert_eq!(w.text, "downloading 1.2.0: 4096 bytes in 512-byte TLS records");
        let progress = ServerEvent::DownloadProgress { conn: 7, mac: None, release: 3, sent: 1, total: 2 };
        assert_eq!(progress.words(), None);
        let refused = ServerEvent::ConnectionRefused { remote, why: "not TLS".into() };
        assert_eq!(refused.words().unwrap().text, "203.0.113.7 refused: not TLS");
        let rolled = ServerEvent::DeviceRolledBack { mac: "m".into(), release: 1, running: None };
        let w = rolled.words().unwrap();
        assert_eq!(w.kind, EventKind::Problem);
        assert!(w.text.contains("an unknown version"), "{}", w.text);
        let capped = ServerEvent::NewDevicesCapped { max: 10_000, refused: 3 };
        assert!(capped.words().unwrap().text.contains("--max-unproven-devices"));
    }
}
