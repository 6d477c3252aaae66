//! The live device inventory: updated in memory on every request (so answers never wait for disk)
//! and written to SQLite by a background thread in batched transactions, which keeps what the
//! database refuses and tries again (see [`writer`]).
//!
//! Devices are kept compactly (see [`slim`]): a few hundred bytes each, so memory follows the
//! fleet's size gently. Growth is bounded: a new MAC gets a place only within the limits of
//! [`admission`].

mod admission;
mod flashed;
mod slim;
mod spill;
mod writer;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use slim::{Interner, MacKey, Slim, mac_key};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};

use super::catalog::Catalog;
use super::decision::{Answer, Decision};
use super::device::DeviceRequest;
use super::events::ServerEvent;
pub use admission::{NEW_PER_ADDRESS, Refusal};
use otaforge_protocol::version::Version;
use otaforge_store::{Device, DeviceState, PayloadKind, RequestRecord, Store, StoreError, now_unix};
pub use spill::FILE as BACKLOG_FILE;
use writer::Persist;
pub use writer::{MEMORY_BACKLOG, MEMORY_BACKLOG_MAX};

/// Default cap on devices never seen to install anything (`serve --max-unproven-devices`).
pub const DEFAULT_MAX_UNPROVEN_DEVICES: usize = 10_000;

/// MACs refused a place, remembered until their request is logged (bounded: cleared when full).
const REFUSED_REMEMBERED: usize = 4096;

/// Devices by station MAC.
pub struct Inventory {
    devices: Mutex<DeviceMap>,
    persist: std_mpsc::Sender<Persist>,
    events: broadcast::Sender<ServerEvent>,
    flashed: Arc<flashed::Flashed>,
    /// Devices already reported silent since their update (each is reported once per silence).
    silent: Mutex<HashSet<String>>,
    admission: Mutex<admission::Admission>,
    /// New MACs just refused a place, whose request is not logged yet (see [`Inventory::log_request`]).
    refused: Mutex<HashSet<String>>,
}

impl Inventory {
    /// Loads the stored devices (and any an earlier run could not save yet) and starts the
    /// writer thread (with its own connection). At most `max_unproven` devices never seen to
    /// install anything are admitted.
    pub fn start(
        dir: &Path,
        store: &Store,
        events: broadcast::Sender<ServerEvent>,
        max_unproven: usize,
    ) -> Result<Arc<Inventory>, StoreError> {
        let mut devices = DeviceMap::default();
        for d in store.devices()? {
            devices.put(&d);
        }
        let spill = spill::Spill::open(dir);
        if !spill.is_empty() {
            log::warn!(
                "{} inventory record(s) from an earlier run are not in the database yet ({}): saving them now",
                spill.len(),
                spill.path().display()
            );
            for d in spill.devices() {
                devices.put(&d);
            }
        }
        let writer = Store::open(dir)?;
        let flashed = Arc::new(flashed::Flashed::load(&writer));
        let (tx, rx) = std_mpsc::channel();
        let pending = flashed.clone();
        let writer = writer::Writer::new(writer, spill, events.clone());
        std::thread::Builder::new()
            .name("otaforge-inventory".into())
            .spawn(move || writer.run(rx, &pending))
            .map_err(|e| StoreError::Invalid(format!("cannot start the inventory writer: {e}")))?;
        Ok(Arc::new(Inventory {
            devices: Mutex::new(devices),
            persist: tx,
            events,
            flashed,
            silent: Mutex::default(),
            admission: Mutex::new(admission::Admission::new(max_unproven)),
            refused: Mutex::default(),
        }))
    }

    /// A copy of one device.
    pub fn get(&self, mac: &str) -> Option<Device> {
        self.lock().get(mac)
    }

    /// A copy of every device.
    pub fn all(&self) -> Vec<Device> {
        self.lock().all()
    }

    fn silent_reported(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.silent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports (once each, as [`ServerEvent::DeviceSilent`]) the devices that downloaded a
    /// release and have not checked in within twice their usual interval; returns how many.
    pub fn report_silent(&self, now: i64) -> usize {
        let silent = self.lock().silent_since_update(now);
        let mut reported = self.silent_reported();
        let mut n = 0;
        for (mac, since) in silent {
            if reported.insert(mac.clone()) {
                log::warn!("{mac}: silent since its update (last check-in {since})");
                let _ = self.events.send(ServerEvent::DeviceSilent { mac, since });
                n += 1;
            }
        }
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceMap> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, device: &Device) {
        let _ = self.persist.send(Persist::Device(Box::new(device.clone())));
    }

    /// Records a check-in: refreshes what the device reports and notices when a device that
    /// downloaded a release now runs it (installed) or came back on something else (rolled back).
    /// Returns the updated record the decision should see. `name` is what the device says it is
    /// called (the reference firmware's `?name=`); a device that stops saying keeps the last name.
    ///
    /// A new MAC outside the admission limits is refused (with why, in words for the device's
    /// `X-OTA-Forge-Reason` and the log) and not recorded: the device should then be answered 304,
    /// which ESP8266httpUpdate and HTTPUpdate take as "no update" and check again later.
    pub fn try_check_in(
        &self,
        req: &DeviceRequest,
        name: Option<&str>,
        channel: &str,
        remote: &str,
        catalog: &Catalog,
    ) -> Result<Device, (Refusal, Box<Device>)> {
        let now = now_unix();
        let mut map = self.lock();
        let known = map.get(&req.sta_mac);
        let seen_before = known.is_some();
        let mut device =
            known.unwrap_or_else(|| Device::new(&req.sta_mac, req.family.name(), channel, remote, now));
        refresh(&mut device, req, name, channel, remote);
        if !seen_before && let Err(why) = self.admit(&req.sta_mac, remote, map.unproven(), catalog) {
            drop(map);
            let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if refused.len() >= REFUSED_REMEMBERED {
                refused.clear();
            }
            refused.insert(req.sta_mac.clone());
            return Err((why, Box::new(device)));
        }
        let d = &mut device;
        if seen_before {
            d.learn_interval(now);
            self.silent_reported().remove(&d.mac);
        }
        d.last_seen = now;
        let mut proven = false;
        if let Some(f) = self.flashed.confirm(&d.mac, req.sketch_md5.as_deref()) {
            log::info!("{}: {}", d.mac, flashed::confirmed_detail(&f));
            d.state_detail = flashed::confirmed_detail(&f);
            proven = true;
            let _ = self.persist.send(Persist::FlashConfirmed(d.mac.clone(), now));
        }
        // A device back on the release it was downloading proves the download whole, even before
        // the server saw the connection end (a client that reads until the server closes).
        if req.mode == super::device::Mode::Sketch
            && matches!(d.state, DeviceState::Downloaded | DeviceState::Downloading)
            && let Some(target) = d.target_release.and_then(|t| catalog.releases.get(&t))
        {
            let still_downloading = d.state == DeviceState::Downloading;
            let version = req.version.as_deref().and_then(|v| Version::parse(v).ok());
            let by_md5 = req.sketch_md5.as_deref().is_some_and(|m| target.matches_md5(m));
            let by_version = version.is_some() && version.as_ref() == target.version.as_ref();
            if by_md5 || by_version {
                d.state = DeviceState::Installed;
                d.state_detail = format!("installed {}", target.meta.version);
                d.attempts = 0;
                let _ = self.events.send(ServerEvent::DeviceInstalled {
                    mac: d.mac.clone(),
                    release: target.meta.id,
                    version: target.meta.version.clone(),
                });
            } else if !still_downloading {
                d.state = DeviceState::RolledBack;
                d.state_detail = format!(
                    "downloaded {} but came back running {}",
                    target.meta.version,
                    req.version.as_deref().unwrap_or("another image")
                );
                let _ = self.events.send(ServerEvent::DeviceRolledBack {
                    mac: d.mac.clone(),
                    release: target.meta.id,
                    running: req.version.clone(),
                });
            }
        }
        map.put_as(&device, proven);
        Ok(device)
    }

    /// Whether a MAC the inventory does not hold gets a place (reporting a limit that trips).
    fn admit(&self, mac: &str, remote: &str, unproven: usize, catalog: &Catalog) -> Result<(), Refusal> {
        // Named by the operator: on the allow-list (every MAC that gets here is, when there is
        // one), or flashed over USB and waiting for its first check-in.
        if !catalog.allowed.is_empty() || self.flashed.pending(mac) {
            return Ok(());
        }
        let Ok(ip) = remote.parse::<IpAddr>() else { return Ok(()) };
        let (admitted, event) =
            self.admission.lock().unwrap_or_else(|p| p.into_inner()).admit(ip, unproven, Instant::now());
        if let (Err(why), Some(event)) = (&admitted, event) {
            log::warn!("{why}");
            let _ = self.events.send(event);
        }
        admitted
    }

    /// Records the answer a device got.
    pub fn record_decision(&self, mac: &str, decision: &Decision) {
        let mut map = self.lock();
        let Some(mut device) = map.get(mac) else { return };
        let d = &mut device;
        d.last_status = decision.status();
        d.last_reason = decision.reason.clone();
        match &decision.answer {
            Answer::Serve(r) if r.meta.kind == PayloadKind::Sketch => {
                d.state = DeviceState::Downloading;
                if d.target_release != Some(r.meta.id) {
                    d.attempts = 0;
                }
                d.target_release = Some(r.meta.id);
                d.state_detail = format!("downloading {}", r.meta.version);
            }
            Answer::Serve(_) | Answer::VersionInfo(_) => {}
            Answer::NoUpdate(state) => {
                // "Installed" says more than "up to date" until something else happens.
                if !(d.state == DeviceState::Installed && *state == DeviceState::UpToDate) {
                    d.state = *state;
                    d.state_detail = decision.reason.clone();
                }
            }
        }
        self.save(d);
        map.put(&device);
    }

    /// A download of `release` to `mac` was written to the end; `refused`: why the device did not
    /// take it (it closed the connection before reading it all).
    pub fn download_finished(&self, mac: &str, release: i64, kind: PayloadKind, refused: Option<&str>) {
        let mut map = self.lock();
        let Some(mut device) = map.get(mac) else { return };
        let d = &mut device;
        match (kind, refused) {
            // Its check-in already proved it (see `check_in`): nothing more to learn.
            (PayloadKind::Sketch, None)
                if d.state == DeviceState::Installed && d.target_release == Some(release) =>
            {
                return;
            }
            (PayloadKind::Sketch, None) => {
                d.state = DeviceState::Downloaded;
                d.attempts += 1;
                d.state_detail = "downloaded; waiting for the device to restart into it".into();
                d.target_release = Some(release);
            }
            // Sent but not taken: an attempt all the same (the loop guard counts it).
            (PayloadKind::Sketch, Some(why)) => {
                d.state = DeviceState::Failed;
                d.attempts += 1;
                d.state_detail = format!("did not take the release: {why}");
                d.target_release = Some(release);
            }
            (PayloadKind::Filesystem, None) => {
                d.fs_release = Some(release);
            }
            // Not taken: offered again at its next check (the handler bounds how often).
            (PayloadKind::Filesystem, Some(_)) => return,
        }
        self.save(d);
        map.put(&device);
    }

    /// A download to `mac` broke off.
    pub fn download_aborted(&self, mac: &str, why: &str) {
        let mut map = self.lock();
        let Some(mut device) = map.get(mac) else { return };
        let d = &mut device;
        d.state = DeviceState::Failed;
        d.state_detail = format!("download broke off: {why}");
        self.save(d);
        map.put(&device);
    }

    /// Appends a request to the history. The request of a new MAC that was not admitted is kept
    /// as one naming no device (that history is bounded as a whole; the MAC stays in its headers),
    /// so made-up MACs cannot grow the history either.
    pub fn log_request(&self, mut record: RequestRecord) {
        if let Some(mac) = &record.mac
            && self.refused.lock().unwrap_or_else(|p| p.into_inner()).remove(mac)
        {
            record.reason = format!("{} ({mac}: not admitted to the inventory)", record.reason);
            record.mac = None;
        }
        let _ = self.persist.send(Persist::Request(Box::new(record)));
    }

    /// Shows device `mac` under the name the user gave it (empty: none). The store keeps it
    /// ([`Store::rename_device`]; saving a check-in leaves it alone): this is the live copy.
    /// Returns whether the device is held.
    pub fn set_user_name(&self, mac: &str, name: &str) -> bool {
        let mut map = self.lock();
        let Some(mut device) = map.get(mac) else { return false };
        device.user_name = name.to_string();
        map.put(&device);
        true
    }

    /// Forgets device `mac` until it checks in again (then it is recorded anew). Only memory:
    /// [`Inventory::flush`], then [`Store::forget_device`], removes what is on disk, after any
    /// save of it still queued. Returns whether it was held.
    pub fn forget(&self, mac: &str) -> bool {
        let held = self.lock().remove(mac);
        self.silent_reported().remove(mac);
        held
    }

    /// Waits until everything recorded so far is on disk.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.persist.send(Persist::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
}

/// The device's facts as it reports them on this check-in.
fn refresh(d: &mut Device, req: &DeviceRequest, name: Option<&str>, channel: &str, remote: &str) {
    d.family = req.family.name().into();
    if let Some(name) = name {
        d.name = name.to_string();
    }
    d.ap_mac = req.ap_mac.clone().or(d.ap_mac.take());
    d.chip_id = req.chip_id.clone().or(d.chip_id.take());
    d.chip_size = req.chip_size.or(d.chip_size);
    d.free_space = req.free_space.or(d.free_space);
    d.sketch_size = req.sketch_size.or(d.sketch_size);
    d.sketch_md5 = req.sketch_md5.clone();
    d.sketch_sha256 = req.sketch_sha256.clone();
    d.sdk_version = req.sdk_version.clone().or(d.sdk_version.take());
    d.version = req.version.clone();
    d.channel = channel.into();
    d.remote_ip = remote.into();
}

/// The in-memory device table: compact records by MAC bytes, and the words they share. Public
/// so its footprint can be measured (`app/tests/inventory_memory.rs`).
#[derive(Default)]
pub struct DeviceMap {
    map: HashMap<MacKey, Box<Slim>>,
    words: Interner,
    /// Devices never seen to install anything.
    unproven: usize,
}

impl DeviceMap {
    /// A copy of the device with station MAC `mac` (canonical `AA:BB:CC:DD:EE:FF`).
    pub fn get(&self, mac: &str) -> Option<Device> {
        let key = mac_key(mac)?;
        self.map.get(&key).map(|s| s.unpack(&key))
    }

    /// Inserts or replaces a device. Records whose MAC is not canonical are ignored: the server
    /// only ever records canonical MACs.
    pub fn put(&mut self, d: &Device) {
        self.put_as(d, false);
    }

    /// [`DeviceMap::put`], with `proof` that the device installed something (besides its state
    /// saying so). Once seen to install something, a device stays so.
    fn put_as(&mut self, d: &Device, proof: bool) {
        let Some(key) = mac_key(&d.mac) else { return };
        let mut slim = Slim::pack(d, &mut self.words);
        let was = self.map.get(&key).map(|s| s.proven());
        let proven = proof || slim.proven() || was == Some(true);
        slim.set_proven(proven);
        match (was, proven) {
            (None, false) => self.unproven += 1,
            (Some(false), true) => self.unproven -= 1,
            _ => {}
        }
        self.map.insert(key, slim);
    }

    /// Removes a device; whether it was held.
    pub fn remove(&mut self, mac: &str) -> bool {
        let Some(slim) = mac_key(mac).and_then(|key| self.map.remove(&key)) else { return false };
        if !slim.proven() {
            self.unproven -= 1;
        }
        true
    }

    /// Devices held that were never seen to install anything.
    pub fn unproven(&self) -> usize {
        self.unproven
    }

    /// Copies of every device.
    pub fn all(&self) -> Vec<Device> {
        self.map.iter().map(|(k, s)| s.unpack(k)).collect()
    }

    /// The MACs of devices silent since their update, and since when: a pass over the compact
    /// records that builds nothing for the devices that are fine (it runs every second).
    pub fn silent_since_update(&self, now: i64) -> Vec<(String, i64)> {
        self.map
            .iter()
            .filter_map(|(k, s)| s.silent_since_update(now).map(|t| (slim::mac_text(k), t)))
            .collect()
    }

    /// Devices held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no device is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Family, Mode};

    fn request(mac: &str) -> DeviceRequest {
        DeviceRequest {
            family: Family::Esp8266,
            sta_mac: mac.into(),
            ap_mac: None,
            chip_id: None,
            free_space: Some(1 << 20),
            sketch_size: Some(300_000),
            sketch_md5: None,
            sketch_sha256: None,
            chip_size: Some(4 << 20),
            sdk_version: None,
            mode: Mode::Sketch,
            version: Some("1.0".into()),
        }
    }

    fn record(mac: &str) -> RequestRecord {
        RequestRecord {
            at: now_unix(),
            mac: Some(mac.into()),
            remote: "10.0.0.1".into(),
            method: "GET".into(),
            path: "/update".into(),
            status: 304,
            reason: "nothing has been published on this channel yet".into(),
            headers: String::new(),
        }
    }

    #[tokio::test]
    async fn a_rename_shows_at_once_and_a_forgotten_device_comes_back_at_its_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (events, _rx) = broadcast::channel(64);
        let inventory = Inventory::start(dir.path(), &store, events, 1).unwrap();
        let catalog = Catalog::load(&store, None).unwrap();
        let mac = "18:FE:34:00:00:0A";
        let check = || inventory.try_check_in(&request(mac), Some("hall"), "stable", "10.0.0.1", &catalog);
        check().unwrap();
        assert!(inventory.set_user_name(mac, "Hall light"));
        let d = inventory.get(mac).unwrap();
        assert_eq!((d.name.as_str(), d.shown_name()), ("hall", "Hall light"));
        assert!(!inventory.set_user_name("18:FE:34:00:00:0B", "x"));

        assert!(inventory.forget(mac));
        assert!(inventory.get(mac).is_none() && inventory.all().is_empty());
        assert!(!inventory.forget(mac));
        inventory.flush().await;
        store.forget_device(mac).unwrap();
        // Its place is free again (the cap is one unproven device), and it comes back bare.
        let back = check().expect("admitted again");
        assert_eq!(back.user_name, "");
        assert!(inventory.get(mac).is_some());
    }

    #[tokio::test]
    async fn a_new_mac_past_the_cap_is_refused_with_its_reason_and_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (events, mut rx) = broadcast::channel(64);
        let inventory = Inventory::start(dir.path(), &store, events, 2).unwrap();
        let catalog = Catalog::load(&store, None).unwrap();
        let check =
            |mac: &str, from: &str| inventory.try_check_in(&request(mac), None, "stable", from, &catalog);
        let (a, b, c) = ("18:FE:34:00:00:0A", "18:FE:34:00:00:0B", "18:FE:34:00:00:0C");
        assert!(check(a, "10.0.0.1").is_ok());
        assert!(check(b, "10.0.0.2").is_ok());
        let Err((why, answered)) = check(c, "10.0.0.3") else { panic!("admitted past the cap") };
        assert_eq!(why, Refusal::Full { max: 2 });
        assert!(why.to_string().contains("--max-unproven-devices"), "{why}");
        assert_eq!(answered.mac, c, "the record to decide with, not kept");
        assert!(inventory.get(c).is_none());
        assert!(matches!(rx.try_recv(), Ok(ServerEvent::NewDevicesCapped { max: 2, refused: 1 })));
        // Known devices check in as ever.
        assert!(check(a, "10.0.0.9").is_ok());

        // The refused MAC's request names no device; the admitted one's does.
        inventory.log_request(record(c));
        inventory.log_request(record(a));
        inventory.flush().await;
        assert!(store.requests(c, 10).unwrap().is_empty());
        assert_eq!(store.requests(a, 10).unwrap().len(), 1);
    }
}
