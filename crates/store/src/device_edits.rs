//! What the user changes in the inventory: a device's name, and forgetting a device.
//!
//! Plain methods on [`Store`] like the rest of its interface, so a second backend provides the
//! same calls; neither touches what check-ins write.

use rusqlite::params;

use super::{Store, StoreError};

/// Longest name a user may give a device, in characters.
pub const USER_NAME_MAX: usize = 64;

/// A name as typed, trimmed; refused with why when it could not be shown as one line (control
/// characters, bidirectional overrides) or is longer than [`USER_NAME_MAX`]. Empty means "none".
pub fn check_user_name(name: &str) -> Result<String, StoreError> {
    let name = name.trim();
    if name.chars().count() > USER_NAME_MAX {
        return Err(StoreError::Invalid(format!(
            "a device name is at most {USER_NAME_MAX} characters; this one has {}",
            name.chars().count()
        )));
    }
    // Bidi controls would let a name display as something it is not.
    let hidden = |c: char| {
        c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if name.chars().any(hidden) {
        return Err(StoreError::Invalid(
            "a device name cannot hold control characters (tabs, line breaks, direction marks)".into(),
        ));
    }
    Ok(name.to_string())
}

impl Store {
    /// Gives device `mac` the name `name` shown instead of the one it reports; an empty name
    /// clears it. Returns whether the device is known.
    pub fn rename_device(&mut self, mac: &str, name: &str) -> Result<bool, StoreError> {
        let name = check_user_name(name)?;
        let n = self.conn.execute("UPDATE devices SET user_name = ?1 WHERE mac = ?2", params![name, mac])?;
        Ok(n > 0)
    }

    /// Forgets device `mac`: its record, the name given to it and its request history go (a
    /// device that still runs checks in again and is recorded anew). Returns whether it was known.
    pub fn forget_device(&mut self, mac: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM devices WHERE mac = ?1", params![mac])?;
        tx.execute("DELETE FROM requests WHERE mac = ?1", params![mac])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn checked_in(store: &mut Store, mac: &str, reported: &str) -> Device {
        let mut d = Device::new(mac, "ESP8266", "stable", "10.0.0.2", 100);
        d.name = reported.into();
        let q = crate::devices::tests::request(Some(mac), 100);
        store.save_devices(std::slice::from_ref(&d), &[q]).unwrap();
        d
    }

    #[test]
    fn a_rename_is_kept_beside_the_reported_name_and_survives_later_check_ins() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mac = "18:FE:34:00:00:01";
        let mut d = checked_in(&mut store, mac, "kitchen");
        assert!(store.rename_device(mac, "  Kitchen shelf  ").unwrap());
        let stored = store.device(mac).unwrap().unwrap();
        assert_eq!((stored.name.as_str(), stored.user_name.as_str()), ("kitchen", "Kitchen shelf"));
        assert_eq!(stored.shown_name(), "Kitchen shelf");

        // A check-in saved from a record that knows nothing of the rename (the server's memory).
        d.name = "kitchen-2".into();
        d.last_seen = 200;
        store.save_devices(&[d], &[]).unwrap();
        let stored = store.device(mac).unwrap().unwrap();
        assert_eq!((stored.name.as_str(), stored.user_name.as_str()), ("kitchen-2", "Kitchen shelf"));
        assert_eq!(stored.last_seen, 200);

        assert!(store.rename_device(mac, "").unwrap(), "an empty name clears it");
        assert_eq!(store.device(mac).unwrap().unwrap().shown_name(), "kitchen-2");
        assert!(!store.rename_device("18:FE:34:00:00:02", "x").unwrap(), "an unknown device");
        assert!(store.rename_device(mac, "a\nb").is_err());
        assert!(store.rename_device(mac, &"x".repeat(USER_NAME_MAX + 1)).is_err());
    }

    #[test]
    fn forgetting_removes_the_device_and_its_history_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let (gone, kept) = ("18:FE:34:00:00:01", "18:FE:34:00:00:02");
        checked_in(&mut store, gone, "a");
        checked_in(&mut store, kept, "b");
        store.rename_device(gone, "old name").unwrap();
        assert!(store.forget_device(gone).unwrap());
        assert!(store.device(gone).unwrap().is_none());
        assert!(store.requests(gone, 10).unwrap().is_empty());
        assert_eq!(store.requests(kept, 10).unwrap().len(), 1);
        assert!(store.device(kept).unwrap().is_some());
        assert!(!store.forget_device(gone).unwrap(), "already forgotten");
        // Its next check records it anew, without the name it had.
        checked_in(&mut store, gone, "a");
        assert_eq!(store.device(gone).unwrap().unwrap().user_name, "");
    }
}
