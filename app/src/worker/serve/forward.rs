//! Turns the server's event stream into what the window shows: the downloads in flight with rate
//! and ETA, device snapshots and log lines, sent at most ten times a second and only when
//! something changed (no events, no repaints).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast::{self, error::RecvError};

use super::super::{Event, Runner};
use super::ServeEvent;
use otaforge_server::{RunningServer, ServerEvent};
use otaforge_store::now_unix;

/// Shortest time between two snapshots sent to the window.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);

/// A download in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Download {
    /// Connection number (ties it to the log).
    pub conn: u64,
    /// The device, when it sent its MAC.
    pub mac: Option<String>,
    /// The release being sent.
    pub release: i64,
    /// Its version.
    pub version: String,
    /// Bytes on the wire so far.
    pub sent: u64,
    /// Bytes in all.
    pub total: u64,
    /// Recent rate, bytes per second (0 until measured).
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_secs: Option<f64>,
}

impl Download {
    /// Done share, 0.0–1.0.
    pub fn fraction(&self) -> f32 {
        if self.total == 0 { 0.0 } else { (self.sent as f64 / self.total as f64) as f32 }
    }
}

/// What a log line is about: the server's own kinds (see `otaforge_server::event_words`).
pub use otaforge_server::EventKind as LogKind;

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Unix seconds.
    pub at: i64,
    /// What it is about.
    pub kind: LogKind,
    /// The device, when known.
    pub mac: Option<String>,
    /// The line, in words.
    pub text: String,
}

struct Tracked {
    download: Download,
    sample: (Instant, u64),
}

/// What changed since the last snapshot.
#[derive(Default)]
struct Pending {
    devices: bool,
    downloads: bool,
    /// The Releases tab needs reading again (a release was disabled, a row is unreadable).
    catalog: bool,
    log: Vec<LogEntry>,
}

impl Pending {
    fn any(&self) -> bool {
        self.devices || self.downloads || self.catalog || !self.log.is_empty()
    }
}

pub(super) async fn run(
    worker: Runner,
    server: Arc<RunningServer>,
    mut events: broadcast::Receiver<ServerEvent>,
) {
    let mut downloads: BTreeMap<u64, Tracked> = BTreeMap::new();
    let mut pending = Pending { devices: true, downloads: true, catalog: false, log: Vec::new() };
    let mut due = Some(Instant::now());
    loop {
        let received = match due {
            Some(at) => tokio::select! {
                ev = events.recv() => Some(ev),
                _ = tokio::time::sleep_until(at.into()) => None,
            },
            None => Some(events.recv().await),
        };
        match received {
            Some(Ok(ev)) => apply(ev, &mut downloads, &mut pending),
            Some(Err(RecvError::Lagged(n))) => {
                pending.devices = true;
                pending.log.push(entry(
                    LogKind::Server,
                    None,
                    format!("({n} events skipped: the window fell behind)"),
                ));
            }
            Some(Err(RecvError::Closed)) => return,
            None => {}
        }
        if pending.any() && due.is_none() {
            due = Some(Instant::now() + SNAPSHOT_EVERY);
        }
        if due.is_some_and(|at| Instant::now() >= at) {
            due = None;
            send(&worker, &server, &downloads, std::mem::take(&mut pending));
        }
    }
}

fn send(worker: &Runner, server: &RunningServer, downloads: &BTreeMap<u64, Tracked>, pending: Pending) {
    if pending.catalog {
        let worker = worker.clone();
        tokio::spawn(async move { worker.refresh_catalog().await });
    }
    if pending.devices {
        worker.emit(Event::Serve(ServeEvent::Devices(server.devices())));
    }
    if pending.downloads {
        let list = downloads.values().map(|t| t.download.clone()).collect();
        worker.emit(Event::Serve(ServeEvent::Downloads(list)));
    }
    if !pending.log.is_empty() {
        worker.emit(Event::Serve(ServeEvent::Log(pending.log)));
    }
}

fn entry(kind: LogKind, mac: Option<String>, text: String) -> LogEntry {
    LogEntry { at: now_unix(), kind, mac, text }
}

fn apply(ev: ServerEvent, downloads: &mut BTreeMap<u64, Tracked>, p: &mut Pending) {
    if let Some(words) = ev.words() {
        p.log.push(LogEntry { at: now_unix(), kind: words.kind, mac: words.mac, text: words.text });
    }
    match ev {
        ServerEvent::Decision { .. }
        | ServerEvent::DeviceInstalled { .. }
        | ServerEvent::DeviceRolledBack { .. } => p.devices = true,
        ServerEvent::DeviceSilent { .. } => p.devices = true,
        ServerEvent::DownloadStarted { conn, mac, release, version, total, .. } => {
            let download =
                Download { conn, mac, release, version, sent: 0, total, rate: 0.0, eta_secs: None };
            downloads.insert(conn, Tracked { download, sample: (Instant::now(), 0) });
            p.downloads = true;
            p.devices = true;
        }
        ServerEvent::DownloadProgress { conn, sent, total, .. } => {
            if let Some(t) = downloads.get_mut(&conn) {
                progress(t, sent, total);
                p.downloads = true;
            }
        }
        ServerEvent::DownloadFinished { conn, .. } | ServerEvent::DownloadAborted { conn, .. } => {
            downloads.remove(&conn);
            p.downloads = true;
            p.devices = true;
        }
        // The Releases tab reads the catalog again.
        ServerEvent::ReleaseDisabled { .. } | ServerEvent::RowUnreadable { .. } => p.catalog = true,
        ServerEvent::Listening { .. }
        | ServerEvent::RequestReceived { .. }
        | ServerEvent::ConnectionRefused { .. }
        | ServerEvent::CatalogReloaded
        | ServerEvent::InventoryBacklog { .. }
        | ServerEvent::InventoryCaughtUp { .. }
        | ServerEvent::NewDevicesCapped { .. }
        | ServerEvent::NewDevicesRateLimited { .. } => {}
    }
}

/// Updates a download's bytes, its smoothed rate and its ETA.
fn progress(t: &mut Tracked, sent: u64, total: u64) {
    let now = Instant::now();
    let d = &mut t.download;
    d.sent = sent;
    d.total = total;
    let dt = now.duration_since(t.sample.0).as_secs_f64();
    if dt >= 0.2 {
        let instant = sent.saturating_sub(t.sample.1) as f64 / dt;
        d.rate = if d.rate == 0.0 { instant } else { 0.7 * d.rate + 0.3 * instant };
        t.sample = (now, sent);
    }
    d.eta_secs = (d.rate > 0.0).then(|| total.saturating_sub(sent) as f64 / d.rate);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_measures_rate_and_eta() {
        let start = Instant::now() - Duration::from_secs(1);
        let download = Download {
            conn: 1,
            mac: None,
            release: 1,
            version: "1".into(),
            sent: 0,
            total: 1000,
            rate: 0.0,
            eta_secs: None,
        };
        let mut t = Tracked { download, sample: (start, 0) };
        progress(&mut t, 250, 1000);
        let rate = t.download.rate;
        assert!((200.0..=260.0).contains(&rate), "about 250 B/s over one second, got {rate}");
        let eta = t.download.eta_secs.unwrap();
        assert!((2.8..=3.8).contains(&eta), "750 bytes left at ~250 B/s, got {eta}");
        assert_eq!(t.download.fraction(), 0.25);
    }

    #[test]
    fn log_lines_say_what_happened() {
        let mut downloads = BTreeMap::new();
        let mut p = Pending::default();
        let mac = Some("18:FE:34:00:00:01".to_string());
        apply(
            ServerEvent::DownloadStarted {
                conn: 7,
                mac: mac.clone(),
                release: 3,
                version: "1.2.0".into(),
                total: 4096,
                record_size: Some(512),
            },
            &mut downloads,
            &mut p,
        );
        assert!(downloads.contains_key(&7));
        apply(
            ServerEvent::DownloadAborted {
                conn: 7,
                mac,
                release: 3,
                sent: 100,
                total: 4096,
                why: "idle".into(),
            },
            &mut downloads,
            &mut p,
        );
        assert!(downloads.is_empty());
        assert_eq!(p.log[0].text, "downloading 1.2.0: 4096 bytes in 512-byte TLS records");
        assert_eq!(p.log[1].kind, LogKind::Problem);
        assert!(p.devices && p.downloads);
    }

    #[test]
    fn an_inventory_backlog_and_refused_new_devices_are_problems_in_the_log() {
        let mut downloads = BTreeMap::new();
        let mut p = Pending::default();
        let why = "database error: database is locked".to_string();
        apply(
            ServerEvent::InventoryBacklog { held: 12, spilled: 0, dropped: 0, why },
            &mut downloads,
            &mut p,
        );
        apply(ServerEvent::InventoryCaughtUp { saved: 12 }, &mut downloads, &mut p);
        let remote = "203.0.113.7".parse().unwrap();
        apply(
            ServerEvent::NewDevicesRateLimited { remote, per_minute: 20, refused: 7 },
            &mut downloads,
            &mut p,
        );
        apply(ServerEvent::NewDevicesCapped { max: 10_000, refused: 3 }, &mut downloads, &mut p);
        let kinds: Vec<LogKind> = p.log.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [LogKind::Problem, LogKind::Server, LogKind::Problem, LogKind::Problem]);
        assert!(p.log[0].text.contains("12 records waiting in memory"), "{}", p.log[0].text);
        assert!(p.log[2].text.contains("203.0.113.7"), "{}", p.log[2].text);
        assert!(p.log[3].text.contains("--max-unproven-devices"), "{}", p.log[3].text);
    }
}
