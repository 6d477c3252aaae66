//! Images flashed over USB that the board itself could not verify (the ESP8266 ROM has no MD5
//! and no read-back), waiting for the device to confirm them: the first check-in that reports
//! one of the image's MD5s marks the flash confirmed.
//!
//! One row per MAC: a newer flash replaces the older expectation. The table comes with schema
//! migration 2.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// A flash waiting for (or given) the device's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlashedImage {
    /// Station MAC, `AA:BB:CC:DD:EE:FF`.
    pub mac: String,
    /// MD5s the device may report when it runs the image (lower-case hex): the file's, and the
    /// file's with each flash mode the bootloader may have written into byte 2.
    pub md5s: Vec<String>,
    /// The version the image carries.
    pub version: Option<String>,
    /// When it was flashed (Unix seconds).
    pub flashed_at: i64,
    /// When the device first checked in running it.
    pub confirmed_at: Option<i64>,
}

impl FlashedImage {
    /// Whether a device reporting `md5` runs this image.
    pub fn matches(&self, md5: &str) -> bool {
        self.md5s.iter().any(|m| m.eq_ignore_ascii_case(md5))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FlashedImage> {
    let md5s: String = r.get(1)?;
    Ok(FlashedImage {
        mac: r.get(0)?,
        md5s: md5s.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        version: r.get(2)?,
        flashed_at: r.get(3)?,
        confirmed_at: r.get(4)?,
    })
}

impl Store {
    /// Records that `mac` was just flashed with an image a device reports as one of `md5s`.
    pub fn expect_flashed(
        &mut self,
        mac: &str,
        md5s: &[String],
        version: Option<&str>,
    ) -> Result<(), StoreError> {
        if md5s.is_empty() || md5s.iter().any(|m| m.len() != 32 || !m.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(StoreError::Invalid("an expected flash needs MD5s of 32 hex digits".into()));
        }
        let md5s: Vec<String> = md5s.iter().map(|m| m.to_ascii_lowercase()).collect();
        self.conn.execute(
            "INSERT OR REPLACE INTO flashed (mac, md5s, version, flashed_at, confirmed_at) VALUES (?1, ?2, ?3, ?4, NULL)",
            params![mac.to_ascii_uppercase(), md5s.join(" "), version, super::now_unix()],
        )?;
        Ok(())
    }

    /// The latest flash recorded for `mac`.
    pub fn flashed(&self, mac: &str) -> Result<Option<FlashedImage>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT mac, md5s, version, flashed_at, confirmed_at FROM flashed WHERE mac = ?1",
                params![mac.to_ascii_uppercase()],
                row,
            )
            .optional()?)
    }

    /// Flashes not confirmed yet.
    pub fn pending_flashes(&self) -> Result<Vec<FlashedImage>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT mac, md5s, version, flashed_at, confirmed_at FROM flashed WHERE confirmed_at IS NULL ORDER BY mac",
        )?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks the flash of `mac` confirmed at `at`, if it is still waiting. Returns whether it was.
    pub fn confirm_flashed(&mut self, mac: &str, at: i64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE flashed SET confirmed_at = ?2 WHERE mac = ?1 AND confirmed_at IS NULL",
            params![mac.to_ascii_uppercase(), at],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_then_confirm() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        assert_eq!(store.flashed("18:FE:34:00:00:01").unwrap(), None);
        let md5 = "0123456789abcdef0123456789ABCDEF".to_string();
        store.expect_flashed("18:fe:34:00:00:01", std::slice::from_ref(&md5), Some("1.0.0")).unwrap();
        let f = store.flashed("18:FE:34:00:00:01").unwrap().unwrap();
        assert_eq!(f.mac, "18:FE:34:00:00:01");
        assert!(f.matches("0123456789ABCDEF0123456789abcdef"));
        assert!(!f.matches("ffffffffffffffffffffffffffffffff"));
        assert_eq!(f.confirmed_at, None);
        assert_eq!(store.pending_flashes().unwrap().len(), 1);
        assert!(store.confirm_flashed("18:FE:34:00:00:01", 42).unwrap());
        assert!(!store.confirm_flashed("18:FE:34:00:00:01", 43).unwrap(), "only once");
        assert_eq!(store.flashed("18:FE:34:00:00:01").unwrap().unwrap().confirmed_at, Some(42));
        assert!(store.pending_flashes().unwrap().is_empty());
        // A new flash replaces the old expectation and waits again.
        store.expect_flashed("18:FE:34:00:00:01", &[md5], None).unwrap();
        assert_eq!(store.pending_flashes().unwrap().len(), 1);
        assert!(store.expect_flashed("18:FE:34:00:00:01", &["nope".into()], None).is_err());
    }
}
