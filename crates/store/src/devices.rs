//! The device inventory, built from the headers devices send on every update check, and the
//! request history behind it.

use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// Where a device stands with respect to its channel's release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DeviceState {
    /// Runs the current release (or nothing applies to it).
    UpToDate,
    /// Was offered a release and is downloading it.
    Downloading,
    /// Downloaded a release completely; waiting for it to check in again.
    Downloaded,
    /// Checked in running the release it downloaded.
    Installed,
    /// The download broke off, or the device refused the image.
    Failed,
    /// Downloaded a release but came back running the old firmware.
    RolledBack,
    /// Not offered the current release (rollout share, pause, space, chip).
    Held,
}

impl DeviceState {
    /// Short words for lists.
    pub fn label(self) -> &'static str {
        match self {
            DeviceState::UpToDate => "up to date",
            DeviceState::Downloading => "downloading",
            DeviceState::Downloaded => "downloaded",
            DeviceState::Installed => "installed",
            DeviceState::Failed => "failed",
            DeviceState::RolledBack => "rolled back",
            DeviceState::Held => "held back",
        }
    }
    fn as_sql(self) -> &'static str {
        match self {
            DeviceState::UpToDate => "up_to_date",
            DeviceState::Downloading => "downloading",
            DeviceState::Downloaded => "downloaded",
            DeviceState::Installed => "installed",
            DeviceState::Failed => "failed",
            DeviceState::RolledBack => "rolled_back",
            DeviceState::Held => "held",
        }
    }
    fn from_sql(s: &str) -> DeviceState {
        match s {
            "downloading" => DeviceState::Downloading,
            "downloaded" => DeviceState::Downloaded,
            "installed" => DeviceState::Installed,
            "failed" => DeviceState::Failed,
            "rolled_back" => DeviceState::RolledBack,
            "held" => DeviceState::Held,
            _ => DeviceState::UpToDate,
        }
    }
}

/// One device, keyed by its station MAC.
#[allow(missing_docs)] // field names follow the x-ESP8266-*/x-ESP32-* headers they come from
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    pub mac: String,
    /// The name the device reports (`?name=` on its check).
    pub name: String,
    /// A name the user gave it (empty: none), shown instead of `name`. Saving a check-in writes
    /// it only for a device new to the database, so it never undoes a rename
    /// ([`Store::rename_device`]).
    #[serde(default)]
    pub user_name: String,
    /// "ESP8266" or "ESP32".
    pub family: String,
    pub ap_mac: Option<String>,
    pub chip_id: Option<String>,
    pub chip_size: Option<u64>,
    pub free_space: Option<u64>,
    pub sketch_size: Option<u64>,
    pub sketch_md5: Option<String>,
    pub sketch_sha256: Option<String>,
    pub sdk_version: Option<String>,
    pub version: Option<String>,
    pub channel: String,
    pub remote_ip: String,
    pub first_seen: i64,
    pub last_seen: i64,
    /// HTTP status of the last answer.
    pub last_status: u16,
    /// Why the server answered that way, in words.
    pub last_reason: String,
    pub state: DeviceState,
    pub state_detail: String,
    /// The release this device was last sent (or is being sent).
    pub target_release: Option<i64>,
    /// The filesystem release it last received.
    pub fs_release: Option<i64>,
    /// Complete downloads of `target_release` that did not lead to it running.
    pub attempts: u32,
    /// How often it usually checks in, seconds (smoothed over its check-ins; `None` until it
    /// has checked in twice).
    pub poll_interval_s: Option<u32>,
}

impl Device {
    /// A device seen for the first time now.
    pub fn new(mac: &str, family: &str, channel: &str, remote_ip: &str, now: i64) -> Device {
        Device {
            mac: mac.into(),
            name: String::new(),
            user_name: String::new(),
            family: family.into(),
            ap_mac: None,
            chip_id: None,
            chip_size: None,
            free_space: None,
            sketch_size: None,
            sketch_md5: None,
            sketch_sha256: None,
            sdk_version: None,
            version: None,
            channel: channel.into(),
            remote_ip: remote_ip.into(),
            first_seen: now,
            last_seen: now,
            last_status: 0,
            last_reason: String::new(),
            state: DeviceState::UpToDate,
            state_detail: String::new(),
            target_release: None,
            fs_release: None,
            attempts: 0,
            poll_interval_s: None,
        }
    }

    /// Learns how often the device checks in from the gap since its last check-in: smoothed, and
    /// long gaps (power cuts, an outage) are not taken as its rhythm.
    pub fn learn_interval(&mut self, now: i64) {
        let gap = (now - self.last_seen).clamp(0, u32::MAX as i64) as u32;
        self.poll_interval_s = match self.poll_interval_s {
            None => Some(gap),
            Some(old) if gap > old.saturating_mul(4).max(60) => Some(old),
            Some(old) => Some(((u64::from(old) * 3 + u64::from(gap)) / 4) as u32),
        };
    }

    /// The name to show: the user's, else the one the device reports (may be empty).
    pub fn shown_name(&self) -> &str {
        if self.user_name.is_empty() { &self.name } else { &self.user_name }
    }

    /// When its next check is due, from its usual interval (`None` until that is known).
    pub fn next_check_at(&self) -> Option<i64> {
        self.poll_interval_s.map(|s| self.last_seen + i64::from(s.max(1)))
    }

    /// Downloaded a release and has not checked in within twice its usual interval: the one sign
    /// a device that installed something it cannot come back from gives. Since when, if so.
    pub fn silent_since_update(&self, now: i64) -> Option<i64> {
        silent_since_update(self.state, self.last_seen, self.poll_interval_s, now)
    }
}

/// [`Device::silent_since_update`] from the three fields it reads, for holders of devices in
/// another form (the server's compact inventory) that should not build a whole `Device` to ask.
pub fn silent_since_update(
    state: DeviceState,
    last_seen: i64,
    poll_interval_s: Option<u32>,
    now: i64,
) -> Option<i64> {
    let interval = i64::from(poll_interval_s?.max(1));
    (state == DeviceState::Downloaded && now - last_seen > 2 * interval).then_some(last_seen)
}

/// One request as received, for a device's history.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    pub at: i64,
    pub mac: Option<String>,
    pub remote: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub reason: String,
    /// The request headers, one `name: value` per line.
    pub headers: String,
}

/// Devices and requests saved together (see [`Store::save_devices_chunked`]).
pub type DeviceChunk = (Vec<Device>, Vec<RequestRecord>);

impl RequestRecord {
    /// How many requests like this one (of its device, or naming none) the history keeps: older
    /// ones are dropped as new ones are saved.
    pub fn history_limit(&self) -> usize {
        if self.mac.is_some() { HISTORY_PER_DEVICE } else { HISTORY_UNATTRIBUTED }
    }
}

/// Requests kept per device: a device polling hourly keeps about four days of history, and the
/// table stays bounded by the fleet's size instead of growing for as long as the server runs.
pub const HISTORY_PER_DEVICE: usize = 100;

/// Requests kept that name no device (malformed, unknown clients, browsers).
pub const HISTORY_UNATTRIBUTED: usize = 10_000;

/// Drops history beyond the limits for the devices that just got new entries. Uses the
/// `(mac, id)` index, so the cost is proportional to what is deleted, not to the table.
fn prune_history(tx: &rusqlite::Transaction<'_>, added: &[RequestRecord]) -> rusqlite::Result<()> {
    let mut macs: Vec<&str> = added.iter().filter_map(|q| q.mac.as_deref()).collect();
    macs.sort_unstable();
    macs.dedup();
    let mut per_device = tx.prepare_cached(
        "DELETE FROM requests WHERE mac = ?1 AND id <=
           (SELECT id FROM requests WHERE mac = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
    )?;
    for mac in macs {
        per_device.execute(params![mac, HISTORY_PER_DEVICE as i64])?;
    }
    if added.iter().any(|q| q.mac.is_none()) {
        tx.prepare_cached(
            "DELETE FROM requests WHERE mac IS NULL AND id <=
               (SELECT id FROM requests WHERE mac IS NULL ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        )?
        .execute(params![HISTORY_UNATTRIBUTED as i64])?;
    }
    Ok(())
}

/// Writes devices and requests inside `tx` (see [`Store::save_devices`]).
fn write_batch(
    tx: &rusqlite::Transaction<'_>,
    devices: &[Device],
    requests: &[RequestRecord],
) -> Result<(), StoreError> {
    // An upsert that leaves `user_name` alone: check-ins (and the server's memory of them) never
    // undo a rename made meanwhile, by this process or another.
    let mut up = tx.prepare_cached(
        "INSERT INTO devices (mac, name, family, ap_mac, chip_id, chip_size, free_space,
               sketch_size, sketch_md5, sketch_sha256, sdk_version, version, channel, remote_ip, first_seen,
               last_seen, last_status, last_reason, state, state_detail, target_release, fs_release, attempts,
               poll_interval_s, user_name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
               ?20, ?21, ?22, ?23, ?24, ?25)
             ON CONFLICT(mac) DO UPDATE SET name = excluded.name, family = excluded.family,
               ap_mac = excluded.ap_mac, chip_id = excluded.chip_id, chip_size = excluded.chip_size,
               free_space = excluded.free_space, sketch_size = excluded.sketch_size,
               sketch_md5 = excluded.sketch_md5, sketch_sha256 = excluded.sketch_sha256,
               sdk_version = excluded.sdk_version, version = excluded.version, channel = excluded.channel,
               remote_ip = excluded.remote_ip, first_seen = excluded.first_seen,
               last_seen = excluded.last_seen, last_status = excluded.last_status,
               last_reason = excluded.last_reason, state = excluded.state,
               state_detail = excluded.state_detail, target_release = excluded.target_release,
               fs_release = excluded.fs_release, attempts = excluded.attempts,
               poll_interval_s = excluded.poll_interval_s",
    )?;
    let i = |v: Option<u64>| v.map(|x| x as i64);
    for d in devices {
        up.execute(params![
            d.mac,
            d.name,
            d.family,
            d.ap_mac,
            d.chip_id,
            i(d.chip_size),
            i(d.free_space),
            i(d.sketch_size),
            d.sketch_md5,
            d.sketch_sha256,
            d.sdk_version,
            d.version,
            d.channel,
            d.remote_ip,
            d.first_seen,
            d.last_seen,
            d.last_status,
            d.last_reason,
            d.state.as_sql(),
            d.state_detail,
            d.target_release,
            d.fs_release,
            d.attempts,
            d.poll_interval_s,
            d.user_name
        ])?;
    }
    let mut log = tx.prepare_cached(
        "INSERT INTO requests (at, mac, remote, method, path, status, reason, headers)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for q in requests {
        log.execute(params![q.at, q.mac, q.remote, q.method, q.path, q.status, q.reason, q.headers])?;
    }
    prune_history(tx, requests)?;
    Ok(())
}

fn device_from_row(r: &Row<'_>) -> rusqlite::Result<Device> {
    let u = |v: Option<i64>| v.map(|x| x as u64);
    Ok(Device {
        mac: r.get("mac")?,
        name: r.get("name")?,
        user_name: r.get("user_name")?,
        family: r.get("family")?,
        ap_mac: r.get("ap_mac")?,
        chip_id: r.get("chip_id")?,
        chip_size: u(r.get("chip_size")?),
        free_space: u(r.get("free_space")?),
        sketch_size: u(r.get("sketch_size")?),
        sketch_md5: r.get("sketch_md5")?,
        sketch_sha256: r.get("sketch_sha256")?,
        sdk_version: r.get("sdk_version")?,
        version: r.get("version")?,
        channel: r.get("channel")?,
        remote_ip: r.get("remote_ip")?,
        first_seen: r.get("first_seen")?,
        last_seen: r.get("last_seen")?,
        last_status: r.get::<_, i64>("last_status")? as u16,
        last_reason: r.get("last_reason")?,
        state: DeviceState::from_sql(&r.get::<_, String>("state")?),
        state_detail: r.get("state_detail")?,
        target_release: r.get("target_release")?,
        fs_release: r.get("fs_release")?,
        attempts: r.get::<_, i64>("attempts")? as u32,
        poll_interval_s: r.get::<_, Option<i64>>("poll_interval_s")?.map(|v| v as u32),
    })
}

impl Store {
    /// Inserts or replaces devices and appends request records, in one transaction.
    pub fn save_devices(&mut self, devices: &[Device], requests: &[RequestRecord]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        write_batch(&tx, devices, requests)?;
        tx.commit()?;
        Ok(())
    }

    /// Saves a backlog too long for one slice in one transaction: `next` gives it chunk by chunk
    /// (`None` at the end), in the order it was recorded. Nothing is kept unless every chunk was
    /// written, so a failure (or an `Err` from `next`) leaves the database as it was.
    pub fn save_devices_chunked(
        &mut self,
        next: &mut dyn FnMut() -> Result<Option<DeviceChunk>, StoreError>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        while let Some((devices, requests)) = next()? {
            write_batch(&tx, &devices, &requests)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every device, most recently seen first.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT * FROM devices ORDER BY last_seen DESC, mac")?;
        let rows = stmt.query_map([], device_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One device.
    pub fn device(&self, mac: &str) -> Result<Option<Device>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT * FROM devices WHERE mac = ?1", params![mac], device_from_row)
            .optional()?)
    }

    /// A device's latest requests, newest first.
    pub fn requests(&self, mac: &str, limit: usize) -> Result<Vec<RequestRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at, mac, remote, method, path, status, reason, headers FROM requests
             WHERE mac = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![mac, limit as i64], |r| {
            Ok(RequestRecord {
                at: r.get(0)?,
                mac: r.get(1)?,
                remote: r.get(2)?,
                method: r.get(3)?,
                path: r.get(4)?,
                status: r.get::<_, i64>(5)? as u16,
                reason: r.get(6)?,
                headers: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// How long this connection waits for another's write lock before a write fails as busy
    /// (tests of a busy store make it short).
    pub fn set_busy_timeout(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(wait)?)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 304 answer to `mac` at `at`, as the history records it.
    pub(crate) fn request(mac: Option<&str>, at: i64) -> RequestRecord {
        RequestRecord {
            at,
            mac: mac.map(String::from),
            remote: "10.0.0.2".into(),
            method: "GET".into(),
            path: "/update".into(),
            status: 304,
            reason: "up to date".into(),
            headers: String::new(),
        }
    }

    #[test]
    fn history_keeps_the_newest_requests_per_device() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let busy = "AA:BB:CC:00:00:01";
        let quiet = "AA:BB:CC:00:00:02";
        // Several batches, as the inventory writer sends them.
        for batch in 0..3i64 {
            let mut reqs: Vec<RequestRecord> = (0..60).map(|i| request(Some(busy), batch * 60 + i)).collect();
            reqs.push(request(Some(quiet), batch));
            reqs.push(request(None, batch));
            store.save_devices(&[], &reqs).unwrap();
        }
        let kept = store.requests(busy, 1000).unwrap();
        assert_eq!(kept.len(), HISTORY_PER_DEVICE);
        assert_eq!(kept.first().unwrap().at, 179, "newest first, and the newest is kept");
        assert_eq!(kept.last().unwrap().at, 180 - HISTORY_PER_DEVICE as i64);
        assert_eq!(store.requests(quiet, 1000).unwrap().len(), 3, "another device's history untouched");
        let unattributed: i64 = store
            .conn
            .query_row("SELECT count(*) FROM requests WHERE mac IS NULL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(unattributed, 3);
    }
}
