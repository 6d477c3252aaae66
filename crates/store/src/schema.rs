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
    // 3: how often each device usually checks in, so one that went quiet after a download (the
    // one sign a stranded device gives) can be told from one that is merely between checks.
    r#"
    ALTER TABLE devices ADD COLUMN poll_interval_s INTEGER;
    "#,
    // 4: channel passwords as salted hashes (`hide_clear_secrets` moves the clear ones over).
    r#"
    ALTER TABLE channels ADD COLUMN auth_hash TEXT;
    "#,
    // 5: channels that take only releases signed by the project's key (issue 13).
    r#"
    ALTER TABLE channels ADD COLUMN require_signatures INTEGER NOT NULL DEFAULT 0;
    "#,
    // 6: which key signed each release, and which key its firmware verifies updates with, so the
    // server offers a device only what its running firmware can verify (issue 13).
    r#"
    ALTER TABLE releases ADD COLUMN signed_by TEXT;
    ALTER TABLE releases ADD COLUMN trusts TEXT;
    "#,
    // 7: whether a channel's ESP8266 releases are gzip'd: 0 as each publish says, 1 always, 2 never
    // (its devices run cores older than 2.7.0) (issue 13).
    r#"
    ALTER TABLE channels ADD COLUMN gzip INTEGER NOT NULL DEFAULT 0;
    "#,
    // 8: a name the user gives a device, kept beside the one it reports (issue 14).
    r#"
    ALTER TABLE devices ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
    "#,
];

/// Older versions kept channel passwords in clear (the `auth_password` column) and every
/// request's `Authorization` header in the history: hash the first, redact the second, and drop
/// the clear column. Runs at the first open by a version that knows better.
fn hide_clear_secrets(conn: &Connection) -> Result<bool, StoreError> {
    let has_clear = |c: &Connection| -> rusqlite::Result<bool> {
        c.query_row(
            "SELECT count(*) FROM pragma_table_info('channels') WHERE name = 'auth_password'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if !has_clear(conn)? {
        return Ok(false);
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    if !has_clear(&tx)? {
        return Ok(false); // another connection just did it
    }
    let clear: Vec<(String, String)> = tx
        .prepare("SELECT name, auth_password FROM channels WHERE auth_password IS NOT NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (name, password) in clear {
        // An empty password was never a credential: such a channel is left without one.
        let hash = match password.as_str() {
            "" => None,
            p => Some(super::releases::hash_password(p)?),
        };
        tx.execute(
            "UPDATE channels SET auth_hash = ?1, auth_user = CASE WHEN ?1 IS NULL THEN NULL ELSE auth_user END
             WHERE name = ?2",
            rusqlite::params![hash, name],
        )?;
    }
    tx.execute_batch("ALTER TABLE channels DROP COLUMN auth_password")?;
    let logged: Vec<(i64, String)> = tx
        .prepare("SELECT id, headers FROM requests WHERE headers LIKE '%authorization:%'")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, headers) in logged {
        let lines: Vec<String> = headers
            .lines()
            .map(|line| match line.split_once(':') {
                Some((name, _)) if name.trim().to_ascii_lowercase().ends_with("authorization") => {
                    format!("{name}: {}", otaforge_protocol::REDACTED)
                }
                _ => line.to_string(),
            })
            .collect();
        tx.execute(
            "UPDATE requests SET headers = ?1 WHERE id = ?2",
            rusqlite::params![lines.join("\n"), id],
        )?;
    }
    tx.commit()?;
    Ok(true)
}

/// Brings the database to the newest schema; true if it had to change anything.
pub fn migrate(conn: &Connection) -> Result<bool, StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    let mut changed = false;
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
        changed = true;
    }
    Ok(hide_clear_secrets(conn)? || changed)
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
        let path = dir.path().join(crate::DB_FILE);
        {
            // A project database as the first release wrote it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute("INSERT INTO allowed_macs (mac) VALUES ('18:FE:34:00:00:01')", []).unwrap();
        }
        let store = crate::Store::open(dir.path()).unwrap();
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
    fn a_database_before_user_names_gains_the_column_and_keeps_its_devices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::DB_FILE);
        {
            // Schema 7: devices with a reported name and no column for the user's.
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..7] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 7).unwrap();
            conn.execute(
                "INSERT INTO devices (mac, name, family, channel, remote_ip, first_seen, last_seen,
                   last_status, last_reason, state, poll_interval_s)
                 VALUES ('18:FE:34:00:00:01', 'kitchen', 'ESP8266', 'stable', '10.0.0.2', 1, 2, 304, '',
                   'up_to_date', 60)",
                [],
            )
            .unwrap();
        }
        let mut store = crate::Store::open(dir.path()).unwrap();
        let version: i64 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, 8);
        let d = store.device("18:FE:34:00:00:01").unwrap().expect("the device survives");
        assert_eq!((d.name.as_str(), d.user_name.as_str(), d.poll_interval_s), ("kitchen", "", Some(60)));
        assert!(store.rename_device(&d.mac, "Kitchen").unwrap());
        assert_eq!(store.device(&d.mac).unwrap().unwrap().shown_name(), "Kitchen");
    }

    #[test]
    fn clear_passwords_and_logged_credentials_of_older_versions_are_hidden_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::DB_FILE);
        {
            // A project database as version 2 wrote it: the password and the header in clear.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO channels (name, auth_user, auth_password) VALUES ('beta', 'dev', 'Old-clear-pw-1')",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO requests (at, mac, remote, method, path, status, reason, headers)
                 VALUES (0, NULL, '10.0.0.2', 'GET', '/update/beta', 200, 'sent',
                         'Host: ota' || char(10) || 'authorization: Basic ZGV2Ok9sZC1jbGVhci1wdy0x' || char(10) || 'x-ESP8266-mode: sketch')",
                [],
            )
            .unwrap();
        }
        let store = crate::Store::open(dir.path()).unwrap();
        let auth = store.channel("beta").unwrap().unwrap().auth.expect("credentials are kept");
        assert!(auth.password_hash.starts_with("$argon2id$"), "{}", auth.password_hash);
        assert!(auth.verify("dev", "Old-clear-pw-1"));
        assert!(!auth.verify("dev", "Old-clear-pw-2"));
        let headers: String = store.conn.query_row("SELECT headers FROM requests", [], |r| r.get(0)).unwrap();
        let redacted = otaforge_protocol::REDACTED;
        assert_eq!(headers, format!("Host: ota\nauthorization: {redacted}\nx-ESP8266-mode: sketch"));
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(std::fs::read(dir.path().join("otaforge.db-wal")).unwrap_or_default());
        for secret in ["Old-clear-pw-1", "ZGV2Ok9sZC1jbGVhci1wdy0x"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} still in the file"
            );
        }
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", MIGRATIONS.len() as i64 + 1).unwrap();
        assert!(matches!(migrate(&conn), Err(StoreError::TooNew { .. })));
    }
}
