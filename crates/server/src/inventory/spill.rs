//! The inventory's backlog on disk: check-ins the database could not take yet (a lock held too
//! long, a full disk), kept as JSON lines in [`FILE`] in the project directory, owner-only, until
//! the writer gets them into the database — in this run, or at the next start.
//!
//! The file only ever holds records the database does not have: it is appended to before the
//! records leave memory, and removed in the same step that commits them (under a lock, so two
//! writers in one process — a server stopping while the next starts — never save it twice).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use otaforge_store::{Device, RequestRecord, Store, StoreError};

/// File name of the backlog in the project directory.
pub const FILE: &str = "inventory-backlog.jsonl";

/// Records per chunk when the file is replayed (one transaction for the whole file).
const CHUNK: usize = 2000;

/// One line of the file.
#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Device(Box<Device>),
    Request(RequestRecord),
    FlashConfirmed { mac: String, at: i64 },
}

/// One line to write, borrowed from the backlog in memory.
#[derive(serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Line<'a> {
    Device(&'a Device),
    Request(&'a RequestRecord),
    FlashConfirmed { mac: &'a str, at: i64 },
}

/// The backlog file and how many records it holds.
pub(super) struct Spill {
    path: PathBuf,
    records: usize,
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Invalid(format!("cannot {what} {}: {e}", path.display()))
}

impl Spill {
    /// The backlog of the project in `dir` (what an earlier run left, if anything).
    pub(super) fn open(dir: &Path) -> Spill {
        let path = dir.join(FILE);
        let records = match fs::File::open(&path) {
            Ok(f) => BufReader::new(f).lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).count(),
            Err(_) => 0,
        };
        Spill { path, records }
    }

    /// Records waiting in the file.
    pub(super) fn len(&self) -> usize {
        self.records
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file for appending (creating it owner-only), locked, and still the one at
    /// `path` (a writer that replayed and removed it meanwhile leaves a new one to create).
    fn open_locked(&self) -> std::io::Result<fs::File> {
        loop {
            let mut options = fs::OpenOptions::new();
            options.read(true).append(true).create(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let file = options.open(&self.path)?;
            file.lock()?;
            if still_at(&file, &self.path) {
                return Ok(file);
            }
        }
    }

    /// Appends `lines` and makes them durable; on failure the file is as it was (so the same
    /// records can be appended again later without doubling).
    pub(super) fn append(&mut self, lines: &[Line<'_>]) -> std::io::Result<()> {
        let file = self.open_locked()?;
        let before = file.metadata()?.len();
        let write = || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, &file);
            for line in lines {
                serde_json::to_writer(&mut out, line).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            drop(out);
            file.sync_data()
        };
        if let Err(e) = write() {
            // Truncating frees what the partial write took, even on a full disk.
            let _ = file.set_len(before);
            if before == 0 {
                let _ = fs::remove_file(&self.path);
            }
            return Err(e);
        }
        self.records += lines.len();
        Ok(())
    }

    /// The devices in the file, the last record of each (what the in-memory inventory starts
    /// from, over what the database holds).
    pub(super) fn devices(&self) -> Vec<Device> {
        let Ok(file) = fs::File::open(&self.path) else { return Vec::new() };
        let mut latest: HashMap<String, Device> = HashMap::new();
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if let Ok(Entry::Device(d)) = serde_json::from_str(&line) {
                latest.insert(d.mac.clone(), *d);
            }
        }
        latest.into_values().collect()
    }

    /// Saves the whole file into the database in one transaction and removes it. Returns the
    /// flash confirmations it held (applied by the caller, like those in memory).
    pub(super) fn replay(&mut self, store: &mut Store) -> Result<Vec<(String, i64)>, StoreError> {
        let file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.records = 0;
                return Ok(Vec::new());
            }
            Err(e) => return Err(io_error(&self.path, "read", e)),
        };
        file.lock().map_err(|e| io_error(&self.path, "lock", e))?;
        if !still_at(&file, &self.path) {
            // Another writer saved and removed it meanwhile.
            self.records = 0;
            return Ok(Vec::new());
        }
        let mut lines = BufReader::new(&file).lines();
        let mut confirmed = Vec::new();
        let mut unreadable = 0usize;
        let path = self.path.clone();
        store.save_devices_chunked(&mut || {
            let mut devices: HashMap<String, Device> = HashMap::new();
            let mut requests = Vec::new();
            while devices.len() + requests.len() < CHUNK {
                let Some(line) = lines.next() else { break };
                let line = line.map_err(|e| io_error(&path, "read", e))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str(&line) {
                    Ok(Entry::Device(d)) => {
                        devices.insert(d.mac.clone(), *d);
                    }
                    Ok(Entry::Request(r)) => requests.push(r),
                    Ok(Entry::FlashConfirmed { mac, at }) => confirmed.push((mac, at)),
                    // Only a line cut short by a process that died while appending.
                    Err(_) => unreadable += 1,
                }
            }
            let empty = devices.is_empty() && requests.is_empty();
            Ok((!empty).then(|| (devices.into_values().collect(), requests)))
        })?;
        if unreadable > 0 {
            log::warn!("{}: {unreadable} unreadable line(s) skipped", self.path.display());
        }
        // Committed: the file must go now, or its records would be saved twice.
        if let Err(e) = fs::remove_file(&self.path) {
            log::error!("cannot remove {} after saving it: {e}", self.path.display());
            file.set_len(0).map_err(|e| io_error(&self.path, "empty", e))?;
        }
        self.records = 0;
        Ok(confirmed)
    }
}

/// Whether `file` is still the file at `path`.
fn still_at(file: &fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mac: &str, at: i64) -> RequestRecord {
        RequestRecord {
            at,
            mac: Some(mac.into()),
            remote: "10.0.0.2".into(),
            method: "GET".into(),
            path: "/update".into(),
            status: 304,
            reason: "up to date".into(),
            headers: "x-ESP8266-STA-MAC: AA:BB:CC:00:00:01".into(),
        }
    }

    #[test]
    fn what_is_spilled_is_saved_once_in_order_and_the_file_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut spill = Spill::open(dir.path());
        assert!(spill.is_empty());
        let mac = "AA:BB:CC:00:00:01";
        let mut first = Device::new(mac, "ESP8266", "stable", "10.0.0.2", 1);
        first.version = Some("1.0".into());
        let mut second = first.clone();
        second.version = Some("1.1".into());
        let (r1, r2) = (request(mac, 1), request(mac, 2));
        spill.append(&[Line::Device(&first), Line::Request(&r1)]).unwrap();
        spill.append(&[Line::Device(&second), Line::Request(&r2)]).unwrap();
        // A line cut short by a crash is skipped, not fatal.
        fs::OpenOptions::new()
            .append(true)
            .open(spill.path())
            .unwrap()
            .write_all(b"{\"request\":{\"at")
            .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(spill.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }

        // What a restart sees first: the latest record of each device.
        let reopened = Spill::open(dir.path());
        assert_eq!(reopened.len(), 5);
        assert_eq!(reopened.devices(), vec![second.clone()]);

        spill.replay(&mut store).unwrap();
        assert!(spill.is_empty() && !spill.path().exists());
        assert_eq!(store.device(mac).unwrap(), Some(second));
        let history: Vec<i64> = store.requests(mac, 10).unwrap().iter().map(|r| r.at).collect();
        assert_eq!(history, vec![2, 1]);
        // Replaying again (another writer's stale view) saves nothing twice.
        spill.replay(&mut store).unwrap();
        assert_eq!(store.requests(mac, 10).unwrap().len(), 2);
    }
}
