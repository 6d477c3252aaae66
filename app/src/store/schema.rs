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
];

/// Brings the database to the newest schema.
pub fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
