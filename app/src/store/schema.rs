//! Schema migrations, applied in order and recorded in SQLite's `user_version`.

use rusqlite::Connection;

use super::StoreError;

/// Each entry upgrades the schema by one version. Never edit a shipped entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: releases, channels, devices, request history.
    r#"
    CREATE TABLE releases (
        id             INTEGER PRIMARY KEY,
        channel        TEXT NOT NULL,
        kind           TEXT NOT NULL CHECK (kind IN ('sketch', 'filesystem')),
        version        TEXT NOT NULL,
        chip           TEXT,
        size           INTEGER NOT NULL,
        sha256         TEXT NOT NULL,
        md5            TEXT NOT NULL,
        md5_normalized TEXT NOT NULL,
        flash_size     INTEGER,
        file_name      TEXT NOT NULL DEFAULT '',
        notes          TEXT NOT NULL DEFAULT '',
        published_at   INTEGER NOT NULL
    );
    CREATE INDEX releases_channel ON releases(channel, kind, id);
    CREATE TABLE channels (
        name            TEXT PRIMARY KEY,
        current_sketch  INTEGER REFERENCES releases(id),
        current_fs      INTEGER REFERENCES releases(id),
        rollout_percent INTEGER NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 0 AND 100),
        paused          INTEGER NOT NULL DEFAULT 0,
        auth_user       TEXT,
        auth_password   TEXT
    );
    CREATE TABLE allowed_macs (mac TEXT PRIMARY KEY);
    CREATE TABLE devices (
        mac            TEXT PRIMARY KEY,
        name           TEXT NOT NULL DEFAULT '',
        family         TEXT NOT NULL,
        ap_mac         TEXT,
        chip_id        TEXT,
        chip_size      INTEGER,
        free_space     INTEGER,
        sketch_size    INTEGER,
        sketch_md5     TEXT,
        sketch_sha256  TEXT,
        sdk_version    TEXT,
        version        TEXT,
        channel        TEXT NOT NULL,
        remote_ip      TEXT NOT NULL,
        first_seen     INTEGER NOT NULL,
        last_seen      INTEGER NOT NULL,
        last_status    INTEGER NOT NULL,
        last_reason    TEXT NOT NULL,
        state          TEXT NOT NULL,
        state_detail   TEXT NOT NULL DEFAULT '',
        target_release INTEGER,
        fs_release     INTEGER,
        attempts       INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE requests (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        mac     TEXT,
        remote  TEXT NOT NULL,
        method  TEXT NOT NULL,
        path    TEXT NOT NULL,
        status  INTEGER NOT NULL,
        reason  TEXT NOT NULL,
        headers TEXT NOT NULL
    );
    CREATE INDEX requests_mac ON requests(mac, id);
    "#,
    // 2: ESP8266 flashes over USB waiting for the device to confirm them at its first check-in
    // (the ESP8266 ROM cannot read back or checksum what it wrote).
    r#"
    CREATE TABLE flashed (
        mac          TEXT PRIMARY KEY,
        md5s         TEXT NOT NULL,
        version      TEXT,
        flashed_at   INTEGER NOT NULL,
        confirmed_at INTEGER
    );
    "#,
];

/// Brings the database to the newest schema.
pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        // Another connection may be creating the same fresh database right now (the app opens
        // several at once): take the write lock first, then look again.
        let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opening_a_fresh_database_at_once_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    super::super::Store::open(&dir).map(|_| ()).map_err(|e| e.to_string())
                })
            })
            .collect();
        for open in opens {
            assert_eq!(open.join().unwrap(), Ok(()));
        }
    }

    #[test]
    fn a_database_from_an_older_version_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::store::DB_FILE);
        {
            // A project database as the first release wrote it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute("INSERT INTO allowed_macs (mac) VALUES ('18:FE:34:00:00:01')", []).unwrap();
        }
        let store = crate::store::Store::open(dir.path()).unwrap();
        let version: i64 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let kept: i64 = store.conn.query_row("SELECT count(*) FROM allowed_macs", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, 1, "existing data survives the migration");
        store
            .conn
            .execute("INSERT INTO flashed (mac, md5s, flashed_at) VALUES ('18:FE:34:00:00:01', '', 0)", [])
            .unwrap();
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1).unwrap();
        assert!(matches!(migrate(&conn), Err(StoreError::TooNew { .. })));
    }
}
