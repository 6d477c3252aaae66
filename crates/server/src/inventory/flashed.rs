//! Flashes over USB that the ESP8266 ROM could not verify (see `store::FlashedImage`): the
//! first check-in reporting the image's MD5 confirms them. Kept in memory so a check-in never
//! waits for the database; the inventory writer re-reads them when another process (the Flash
//! step, `otaforge flash`) records a new one.

use std::collections::HashMap;
use std::sync::Mutex;

use otaforge_store::{FlashedImage, Store};

/// Pending flashes by MAC, and the database version they were read at.
#[derive(Default)]
pub(super) struct Flashed {
    pending: Mutex<HashMap<String, FlashedImage>>,
    seen_version: Mutex<Option<i64>>,
}

impl Flashed {
    /// Reads the pending flashes now.
    pub(super) fn load(store: &Store) -> Flashed {
        let f = Flashed::default();
        f.refresh(store);
        f
    }

    /// Re-reads the pending flashes if another connection changed the database.
    pub(super) fn refresh(&self, store: &Store) {
        let version = store.data_version().ok();
        let mut seen = self.seen_version.lock().unwrap_or_else(|p| p.into_inner());
        if version.is_some() && *seen == version {
            return;
        }
        match store.pending_flashes() {
            Ok(list) => {
                *self.pending.lock().unwrap_or_else(|p| p.into_inner()) =
                    list.into_iter().map(|f| (f.mac.clone(), f)).collect();
                *seen = version;
            }
            Err(e) => log::warn!("could not read the flashes waiting for confirmation: {e}"),
        }
    }

    /// Whether `mac` was flashed over USB and waits for its first check-in.
    pub(super) fn pending(&self, mac: &str) -> bool {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).contains_key(mac)
    }

    /// If `mac` waits for confirmation and reports one of its image's MD5s, takes it.
    pub(super) fn confirm(&self, mac: &str, md5: Option<&str>) -> Option<FlashedImage> {
        let md5 = md5?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.get(mac).is_some_and(|f| f.matches(md5)) { pending.remove(mac) } else { None }
    }
}

/// The words a device's record shows once its flash is confirmed.
pub(super) fn confirmed_detail(f: &FlashedImage) -> String {
    match &f.version {
        Some(v) => format!("flash confirmed: runs version {v}, flashed over USB"),
        None => "flash confirmed: runs the image flashed over USB".into(),
    }
}
