//! The live device inventory: updated in memory on every request (so answers never wait for disk)
//! and written to SQLite by a background thread in batched transactions.
//!
//! Devices are kept compactly (see [`slim`]): a few hundred bytes each, so memory follows the
//! fleet's size gently.

mod flashed;
mod slim;

use std::collections::HashMap;
use std::path::Path;

use slim::{Interner, MacKey, Slim, mac_key};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};

use super::catalog::Catalog;
use super::decision::{Answer, Decision};
use super::device::DeviceRequest;
use super::events::ServerEvent;
use crate::store::{Device, DeviceState, PayloadKind, RequestRecord, Store, StoreError, now_unix};
use crate::version::Version;

enum Persist {
    Device(Box<Device>),
    Request(Box<RequestRecord>),
    Flush(oneshot::Sender<()>),
    /// A flash over USB was confirmed by the device's check-in (MAC, when).
    FlashConfirmed(String, i64),
}

/// Devices by station MAC.
pub struct Inventory {
    devices: Mutex<DeviceMap>,
    persist: std_mpsc::Sender<Persist>,
    events: broadcast::Sender<ServerEvent>,
    flashed: Arc<flashed::Flashed>,
    /// Devices already reported silent since their update (each is reported once per silence).
    silent: Mutex<std::collections::HashSet<String>>,
}

impl Inventory {
    /// Loads the stored devices and starts the writer thread (with its own connection).
    pub fn start(
        dir: &Path,
        store: &Store,
        events: broadcast::Sender<ServerEvent>,
    ) -> Result<Arc<Inventory>, StoreError> {
        let mut devices = DeviceMap::default();
        for d in store.devices()? {
            devices.put(&d);
        }
        let mut writer = Store::open(dir)?;
        let flashed = Arc::new(flashed::Flashed::load(&writer));
        let (tx, rx) = std_mpsc::channel();
        let pending = flashed.clone();
        std::thread::Builder::new()
            .name("otaforge-inventory".into())
            .spawn(move || write_loop(&mut writer, rx, &pending))
            .map_err(|e| StoreError::Invalid(format!("cannot start the inventory writer: {e}")))?;
        Ok(Arc::new(Inventory {
            devices: Mutex::new(devices),
            persist: tx,
            events,
            flashed,
            silent: Mutex::default(),
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

    fn silent_reported(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.silent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports (once each, as [`ServerEvent::DeviceSilent`]) the devices that downloaded a
    /// release and have not checked in within twice their usual interval; returns how many.
    pub fn report_silent(&self, now: i64) -> usize {
        let silent: Vec<(String, i64)> =
            self.all().into_iter().filter_map(|d| d.silent_since_update(now).map(|t| (d.mac, t))).collect();
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
    /// Returns the updated record the decision should see.
    /// `name` is what the device says it is called (the reference firmware's `?name=`); a device
    /// that stops saying keeps the last name it gave.
    pub fn check_in(
        &self,
        req: &DeviceRequest,
        name: Option<&str>,
        channel: &str,
        remote: &str,
        catalog: &Catalog,
    ) -> Device {
        let now = now_unix();
        let mut map = self.lock();
        let known = map.get(&req.sta_mac);
        let seen_before = known.is_some();
        let mut device =
            known.unwrap_or_else(|| Device::new(&req.sta_mac, req.family.name(), channel, remote, now));
        let d = &mut device;
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
        if seen_before {
            d.learn_interval(now);
            self.silent_reported().remove(&d.mac);
        }
        d.last_seen = now;
        if let Some(f) = self.flashed.confirm(&d.mac, req.sketch_md5.as_deref()) {
            log::info!("{}: {}", d.mac, flashed::confirmed_detail(&f));
            d.state_detail = flashed::confirmed_detail(&f);
            let _ = self.persist.send(Persist::FlashConfirmed(d.mac.clone(), now));
        }
        if req.mode == super::device::Mode::Sketch
            && d.state == DeviceState::Downloaded
            && let Some(target) = d.target_release.and_then(|t| catalog.releases.get(&t))
        {
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
            } else {
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
        map.put(&device);
        device
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

    /// A download of `release` to `mac` completed.
    pub fn download_finished(&self, mac: &str, release: i64, kind: PayloadKind) {
        let mut map = self.lock();
        let Some(mut device) = map.get(mac) else { return };
        let d = &mut device;
        match kind {
            PayloadKind::Sketch => {
                d.state = DeviceState::Downloaded;
                d.attempts += 1;
                d.state_detail = "downloaded; waiting for the device to restart into it".into();
                d.target_release = Some(release);
            }
            PayloadKind::Filesystem => {
                d.fs_release = Some(release);
            }
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

    /// Appends a request to the history.
    pub fn log_request(&self, record: RequestRecord) {
        let _ = self.persist.send(Persist::Request(Box::new(record)));
    }

    /// Waits until everything recorded so far is on disk.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.persist.send(Persist::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), rx).await;
        }
    }
}

/// The in-memory device table: compact records by MAC bytes, and the words they share. Public
/// so its footprint can be measured (`app/tests/inventory_memory.rs`).
#[derive(Default)]
pub struct DeviceMap {
    map: HashMap<MacKey, Box<Slim>>,
    words: Interner,
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
        if let Some(key) = mac_key(&d.mac) {
            let slim = Slim::pack(d, &mut self.words);
            self.map.insert(key, slim);
        }
    }

    /// Copies of every device.
    pub fn all(&self) -> Vec<Device> {
        self.map.iter().map(|(k, s)| s.unpack(k)).collect()
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

fn write_loop(store: &mut Store, rx: std_mpsc::Receiver<Persist>, flashed: &flashed::Flashed) {
    let mut devices: HashMap<String, Device> = HashMap::new();
    let mut requests = Vec::new();
    let mut waiting = Vec::new();
    let mut confirmed = Vec::new();
    loop {
        // Between batches, and at least every second, pick up flashes recorded elsewhere.
        flashed.refresh(store);
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(m) => m,
            Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut next = Some(first);
        // Gather what arrives within a short window into one transaction.
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        while let Some(msg) = next.take() {
            match msg {
                Persist::Device(d) => {
                    devices.insert(d.mac.clone(), *d);
                }
                Persist::Request(r) => requests.push(*r),
                Persist::FlashConfirmed(mac, at) => confirmed.push((mac, at)),
                Persist::Flush(ack) => {
                    waiting.push(ack);
                    break;
                }
            }
            if devices.len() + requests.len() >= 2000 {
                break;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            next = rx.recv_timeout(left).ok();
        }
        let batch: Vec<Device> = devices.drain().map(|(_, d)| d).collect();
        if let Err(e) = store.save_devices(&batch, &requests) {
            log::error!("could not save the device inventory: {e}");
        }
        requests.clear();
        for (mac, at) in confirmed.drain(..) {
            if let Err(e) = store.confirm_flashed(&mac, at) {
                log::error!("could not record that {mac} confirmed its flash: {e}");
            }
        }
        for ack in waiting.drain(..) {
            let _ = ack.send(());
        }
    }
}
