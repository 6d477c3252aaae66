//! Releases and channels: what each channel serves now, the history behind it, and its rollout.

use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError, now_unix};

/// What a release is flashed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PayloadKind {
    /// The application (`x-ESP8266-mode: sketch`).
    Sketch,
    /// A filesystem image (`x-ESP8266-mode: spiffs`).
    Filesystem,
}

impl PayloadKind {
    fn as_sql(self) -> &'static str {
        match self {
            PayloadKind::Sketch => "sketch",
            PayloadKind::Filesystem => "filesystem",
        }
    }
    fn from_sql(s: &str) -> PayloadKind {
        if s == "filesystem" { PayloadKind::Filesystem } else { PayloadKind::Sketch }
    }
}

/// A published firmware file.
#[allow(missing_docs)] // field names say it; units are bytes and Unix seconds
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Release {
    pub id: i64,
    pub channel: String,
    pub kind: PayloadKind,
    pub version: String,
    /// Chip name (e.g. "ESP8266", "ESP32-C3"), when the image header tells.
    pub chip: Option<String>,
    pub size: u64,
    pub sha256: String,
    /// MD5 of the file, sent as `x-MD5`.
    pub md5: String,
    /// MD5 with byte 2 (flash mode) zeroed: what matches a device's report after its updater
    /// rewrote that byte.
    pub md5_normalized: String,
    /// Flash size the image header asks for, bytes.
    pub flash_size: Option<u64>,
    pub file_name: String,
    pub notes: String,
    pub published_at: i64,
    /// Fingerprint of the key whose signature the file carries (checked at publish); `None`:
    /// unsigned.
    pub signed_by: Option<String>,
    /// Fingerprint of the key this release's firmware verifies its updates with; `None`: it
    /// installs unsigned updates. A device running it accepts only releases `signed_by` that key.
    pub trusts: Option<String>,
}

/// A release about to be published (already validated by `otaforge_actions::publish`).
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub struct NewRelease<'a> {
    pub channel: String,
    pub kind: PayloadKind,
    pub version: String,
    pub chip: Option<String>,
    pub bytes: &'a [u8],
    pub md5: String,
    pub md5_normalized: String,
    pub flash_size: Option<u64>,
    pub file_name: String,
    pub notes: String,
    pub signed_by: Option<String>,
    pub trusts: Option<String>,
}

/// A channel: the release it serves and how it rolls out.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Channel {
    pub name: String,
    pub current_sketch: Option<i64>,
    pub current_fs: Option<i64>,
    /// Share of devices (by a stable hash of the MAC) offered the current release.
    pub rollout_percent: u8,
    pub paused: bool,
    /// Every release published to the channel must carry a signature by the project's key
    /// (publishing signs it, or checks the one it has, and refuses what does not verify).
    pub require_signatures: bool,
    /// Whether ESP8266 releases published here are gzip'd.
    pub gzip: GzipPolicy,
    /// HTTP Basic credentials devices must send, if set.
    #[serde(skip)]
    pub auth: Option<ChannelAuth>,
}

/// Whether a channel's ESP8266 releases are compressed (eboot unpacks them; cores from 2.7.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GzipPolicy {
    /// As each publish says (`--gzip`).
    #[default]
    PerPublish,
    /// Every ESP8266 sketch is compressed at publish.
    Always,
    /// Never: the channel's devices run cores older than 2.7.0. A gzip'd file is refused at
    /// publish and never served.
    Never,
}

impl GzipPolicy {
    fn from_column(v: i64) -> GzipPolicy {
        match v {
            1 => GzipPolicy::Always,
            2 => GzipPolicy::Never,
            _ => GzipPolicy::PerPublish,
        }
    }

    fn column(self) -> i64 {
        match self {
            GzipPolicy::PerPublish => 0,
            GzipPolicy::Always => 1,
            GzipPolicy::Never => 2,
        }
    }
}

/// The HTTP Basic credentials a channel requires: the user name, and the password only as a
/// salted Argon2id hash (a PHC string), so the database never holds it in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAuth {
    /// The user name devices send.
    pub user: String,
    /// `$argon2id$v=19$…`: parameters, salt and hash.
    pub password_hash: String,
}

impl ChannelAuth {
    /// True if `user` and `password` are the ones set. The user name is compared in constant time
    /// and the password hashed either way, so the time taken tells nothing about which was wrong.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        use argon2::password_hash::PasswordVerifier;
        let user_ok = user.len() == self.user.len()
            && user.bytes().zip(self.user.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        let Ok(hash) = argon2::password_hash::phc::PasswordHash::new(&self.password_hash) else {
            return false;
        };
        // Argon2 compares its output in constant time.
        let password_ok = argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok();
        user_ok & password_ok & !password.is_empty()
    }
}

/// Hashes a channel password with Argon2id and a fresh random salt.
pub(super) fn hash_password(password: &str) -> Result<String, StoreError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Invalid(format!("cannot hash the password: {e}")))
}

/// Channel names become URL path segments: keep them to a safe, short alphabet.
pub fn validate_channel(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "\"{}\" is not a usable channel name: use 1-32 lower-case letters, digits, '-' or '_'",
            name.chars().take(40).collect::<String>()
        )))
    }
}

/// What names a row that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum RowKey {
    /// A release, by id.
    Release(i64),
    /// A channel, by name.
    Channel(String),
    /// A channel whose very name cannot be read, by SQLite rowid.
    ChannelRow(i64),
    /// An entry of the MAC allow-list, by SQLite rowid.
    AllowedMac(i64),
}

impl RowKey {
    /// The table it is in.
    pub fn table(&self) -> &'static str {
        match self {
            RowKey::Release(_) => "releases",
            RowKey::Channel(_) | RowKey::ChannelRow(_) => "channels",
            RowKey::AllowedMac(_) => "allowed_macs",
        }
    }
}

impl std::fmt::Display for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowKey::Release(id) => write!(f, "release #{id}"),
            RowKey::Channel(name) => write!(f, "channel \"{name}\""),
            RowKey::ChannelRow(rowid) => write!(f, "the channel in row {rowid} of table channels"),
            RowKey::AllowedMac(rowid) => {
                write!(f, "the allow-list entry in row {rowid} of table allowed_macs")
            }
        }
    }
}

/// A row that cannot be read: a column holding a value of the wrong type, or none, as a hand
/// edit of the database can leave. It is left out; everything else is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BadRow {
    /// Which row.
    pub key: RowKey,
    /// What is wrong with it, in words.
    pub why: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} cannot be read from the database ({})", self.key, self.why)
    }
}

/// What a column holds, when it is not what OTA Forge stores there.
fn column_words(e: &rusqlite::Error) -> String {
    use rusqlite::types::Type;
    let held = |t: &Type| match t {
        Type::Null => "nothing (NULL)",
        Type::Integer => "a whole number",
        Type::Real => "a decimal number",
        Type::Text => "text",
        Type::Blob => "binary data",
    };
    let wanted = |name: &str| match name {
        "id" | "size" | "flash_size" | "published_at" | "current_sketch" | "current_fs"
        | "rollout_percent" | "paused" | "require_signatures" | "gzip" => "a whole number",
        _ => "text",
    };
    match e {
        rusqlite::Error::InvalidColumnType(_, name, t) => {
            format!("its \"{name}\" column holds {} where {} belongs", held(t), wanted(name))
        }
        rusqlite::Error::IntegralValueOutOfRange(i, v) => format!("column {i} holds {v}, out of range"),
        rusqlite::Error::FromSqlConversionFailure(i, t, why) => {
            format!("column {i} holds {} that cannot be used ({why})", held(t))
        }
        rusqlite::Error::Utf8Error(..) => "a text column holds bytes that are not UTF-8".to_string(),
        other => other.to_string(),
    }
}

/// True for errors about one row's values (as opposed to the database failing).
fn is_row_error(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::Utf8Error(..)
    )
}

/// Reads one row with `read`; a row whose values cannot be read becomes a [`BadRow`] named by `key`.
fn tolerant<T>(
    r: &Row<'_>,
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
    key: impl FnOnce(&Row<'_>) -> RowKey,
) -> rusqlite::Result<Result<T, BadRow>> {
    match read(r) {
        Ok(v) => Ok(Ok(v)),
        Err(e) if is_row_error(&e) => Ok(Err(BadRow { key: key(r), why: column_words(&e) })),
        Err(e) => Err(e),
    }
}

fn channel_key(r: &Row<'_>) -> RowKey {
    match r.get::<_, String>("name") {
        Ok(name) => RowKey::Channel(name),
        Err(_) => RowKey::ChannelRow(r.get("_rowid").unwrap_or_default()),
    }
}

/// Splits read rows into the good ones and the bad ones.
fn split<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, BadRow>>>,
) -> Result<(Vec<T>, Vec<BadRow>), StoreError> {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for row in rows {
        match row? {
            Ok(v) => good.push(v),
            Err(b) => bad.push(b),
        }
    }
    Ok((good, bad))
}

/// The first bad row as the error of a read that needs every row.
fn all_or_error<T>((good, bad): (Vec<T>, Vec<BadRow>)) -> Result<Vec<T>, StoreError> {
    match bad.into_iter().next() {
        Some(b) => Err(StoreError::BadRow(b)),
        None => Ok(good),
    }
}

fn release_from_row(r: &Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: r.get("id")?,
        channel: r.get("channel")?,
        kind: PayloadKind::from_sql(&r.get::<_, String>("kind")?),
        version: r.get("version")?,
        chip: r.get("chip")?,
        size: r.get::<_, i64>("size")? as u64,
        sha256: r.get("sha256")?,
        md5: r.get("md5")?,
        md5_normalized: r.get("md5_normalized")?,
        flash_size: r.get::<_, Option<i64>>("flash_size")?.map(|v| v as u64),
        file_name: r.get("file_name")?,
        notes: r.get("notes")?,
        published_at: r.get("published_at")?,
        signed_by: r.get("signed_by")?,
        trusts: r.get("trusts")?,
    })
}

fn channel_from_row(r: &Row<'_>) -> rusqlite::Result<Channel> {
    let user: Option<String> = r.get("auth_user")?;
    let hash: Option<String> = r.get("auth_hash")?;
    Ok(Channel {
        name: r.get("name")?,
        current_sketch: r.get("current_sketch")?,
        current_fs: r.get("current_fs")?,
        rollout_percent: r.get::<_, i64>("rollout_percent")?.clamp(0, 100) as u8,
        paused: r.get::<_, i64>("paused")? != 0,
        require_signatures: r.get::<_, i64>("require_signatures")? != 0,
        gzip: GzipPolicy::from_column(r.get("gzip")?),
        auth: user.zip(hash).map(|(user, password_hash)| ChannelAuth { user, password_hash }),
    })
}

impl Store {
    /// Stores the file, records the release and makes it the channel's current one, atomically:
    /// a failure anywhere leaves the previous release in place.
    pub fn publish(&mut self, new: NewRelease<'_>) -> Result<Release, StoreError> {
        validate_channel(&new.channel)?;
        let sha256 = self.blobs.put(new.bytes)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO releases (channel, kind, version, chip, size, sha256, md5, md5_normalized,
                                   flash_size, file_name, notes, published_at, signed_by, trusts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                new.channel,
                new.kind.as_sql(),
                new.version,
                new.chip,
                new.bytes.len() as i64,
                sha256,
                new.md5,
                new.md5_normalized,
                new.flash_size.map(|v| v as i64),
                new.file_name,
                new.notes,
                now_unix(),
                new.signed_by,
                new.trusts
            ],
        )?;
        let id = tx.last_insert_rowid();
        let column = match new.kind {
            PayloadKind::Sketch => "current_sketch",
            PayloadKind::Filesystem => "current_fs",
        };
        tx.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", params![new.channel])?;
        tx.execute(&format!("UPDATE channels SET {column} = ?1 WHERE name = ?2"), params![id, new.channel])?;
        tx.commit()?;
        self.release(id)
    }

    /// One release.
    pub fn release(&self, id: i64) -> Result<Release, StoreError> {
        self.conn
            .query_row("SELECT * FROM releases WHERE id = ?1", params![id], |r| {
                tolerant(r, release_from_row, |_| RowKey::Release(id))
            })
            .optional()?
            .ok_or(StoreError::NoSuchRelease(id))?
            .map_err(StoreError::BadRow)
    }

    /// Releases, newest first, optionally of one channel; a row that cannot be read is an error
    /// naming it (see [`Store::read_releases`] to read the others).
    pub fn releases(&self, channel: Option<&str>) -> Result<Vec<Release>, StoreError> {
        all_or_error(self.read_releases(channel)?)
    }

    /// Releases, newest first, optionally of one channel, and the rows that cannot be read.
    pub fn read_releases(&self, channel: Option<&str>) -> Result<(Vec<Release>, Vec<BadRow>), StoreError> {
        let mut stmt =
            self.conn.prepare("SELECT * FROM releases WHERE ?1 IS NULL OR channel = ?1 ORDER BY id DESC")?;
        let rows = stmt.query_map(params![channel], |r| {
            tolerant(r, release_from_row, |r| RowKey::Release(r.get("id").unwrap_or_default()))
        })?;
        split(rows)
    }

    /// All channels; a row that cannot be read is an error naming it (see
    /// [`Store::read_channels`] to read the others).
    pub fn channels(&self) -> Result<Vec<Channel>, StoreError> {
        all_or_error(self.read_channels()?)
    }

    /// All channels, and the rows that cannot be read.
    pub fn read_channels(&self) -> Result<(Vec<Channel>, Vec<BadRow>), StoreError> {
        let mut stmt = self.conn.prepare("SELECT rowid AS _rowid, * FROM channels ORDER BY name")?;
        let rows = stmt.query_map([], |r| tolerant(r, channel_from_row, channel_key))?;
        split(rows)
    }

    /// One channel, if it exists.
    pub fn channel(&self, name: &str) -> Result<Option<Channel>, StoreError> {
        self.conn
            .query_row("SELECT rowid AS _rowid, * FROM channels WHERE name = ?1", params![name], |r| {
                tolerant(r, channel_from_row, channel_key)
            })
            .optional()?
            .transpose()
            .map_err(StoreError::BadRow)
    }

    /// Makes an earlier release of a channel its current one again (or promotes a release from
    /// another channel by publishing the same file there).
    pub fn promote(&mut self, id: i64, to_channel: Option<&str>) -> Result<Release, StoreError> {
        let release = self.release(id)?;
        match to_channel {
            Some(target) if target != release.channel => {
                validate_channel(target)?;
                if release.signed_by.is_none() && self.channel(target)?.is_some_and(|c| c.require_signatures)
                {
                    return Err(StoreError::Unsigned { release: release.id, channel: target.to_string() });
                }
                let bytes = self
                    .blobs
                    .load(&release.sha256, release.size)
                    .map_err(|problem| StoreError::Firmware { release: release.id, problem })?
                    .0;
                self.publish(NewRelease {
                    channel: target.to_string(),
                    kind: release.kind,
                    version: release.version.clone(),
                    chip: release.chip.clone(),
                    bytes: &bytes,
                    md5: release.md5.clone(),
                    md5_normalized: release.md5_normalized.clone(),
                    flash_size: release.flash_size,
                    file_name: release.file_name.clone(),
                    notes: format!("promoted from {} #{}", release.channel, release.id),
                    signed_by: release.signed_by.clone(),
                    trusts: release.trusts.clone(),
                })
            }
            _ => {
                // Made current only if it can be served: a damaged file would just disable it.
                self.blobs
                    .check(&release.sha256, release.size)
                    .map_err(|problem| StoreError::Firmware { release: release.id, problem })?;
                let column = match release.kind {
                    PayloadKind::Sketch => "current_sketch",
                    PayloadKind::Filesystem => "current_fs",
                };
                self.conn.execute(
                    &format!("UPDATE channels SET {column} = ?1 WHERE name = ?2"),
                    params![id, release.channel],
                )?;
                Ok(release)
            }
        }
    }

    /// Sets a channel's current sketch back to the release published before the current one.
    pub fn roll_back(&mut self, channel: &str) -> Result<Release, StoreError> {
        let ch =
            self.channel(channel)?.ok_or_else(|| StoreError::Invalid(format!("no channel \"{channel}\"")))?;
        let current = ch
            .current_sketch
            .ok_or_else(|| StoreError::Invalid(format!("channel \"{channel}\" has no release")))?;
        let previous: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM releases WHERE channel = ?1 AND kind = 'sketch' AND id < ?2 ORDER BY id DESC LIMIT 1",
                params![channel, current],
                |r| r.get(0),
            )
            .optional()?;
        let previous = previous.ok_or_else(|| {
            StoreError::Invalid(format!("channel \"{channel}\" has no earlier release to roll back to"))
        })?;
        self.promote(previous, None)
    }

    /// Changes a channel's rollout share and/or pause state.
    pub fn set_rollout(
        &mut self,
        channel: &str,
        percent: Option<u8>,
        paused: Option<bool>,
    ) -> Result<Channel, StoreError> {
        validate_channel(channel)?;
        if percent.is_some_and(|p| p > 100) {
            return Err(StoreError::Invalid("a rollout share is 0 to 100 percent".into()));
        }
        self.conn.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", params![channel])?;
        if let Some(p) = percent {
            self.conn
                .execute("UPDATE channels SET rollout_percent = ?1 WHERE name = ?2", params![p, channel])?;
        }
        if let Some(p) = paused {
            self.conn
                .execute("UPDATE channels SET paused = ?1 WHERE name = ?2", params![p as i64, channel])?;
        }
        Ok(self.channel(channel)?.expect("channel was just created"))
    }

    /// Makes a channel take only signed releases, or unsigned ones again. Releases it already holds
    /// are not re-checked here: publishing is where files are checked.
    pub fn set_require_signatures(&mut self, channel: &str, required: bool) -> Result<Channel, StoreError> {
        validate_channel(channel)?;
        self.conn.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", params![channel])?;
        self.conn.execute(
            "UPDATE channels SET require_signatures = ?1 WHERE name = ?2",
            params![required as i64, channel],
        )?;
        Ok(self.channel(channel)?.expect("channel was just created"))
    }

    /// Sets whether the channel's ESP8266 releases are gzip'd. Releases it holds are unchanged.
    pub fn set_gzip(&mut self, channel: &str, policy: GzipPolicy) -> Result<Channel, StoreError> {
        validate_channel(channel)?;
        self.conn.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", params![channel])?;
        self.conn
            .execute("UPDATE channels SET gzip = ?1 WHERE name = ?2", params![policy.column(), channel])?;
        Ok(self.channel(channel)?.expect("channel was just created"))
    }

    /// Requires HTTP Basic credentials for a channel (`None` removes them). Only a salted hash of
    /// the password is stored; an empty password is refused (it would protect nothing).
    pub fn set_auth(&mut self, channel: &str, auth: Option<(&str, &str)>) -> Result<(), StoreError> {
        validate_channel(channel)?;
        let stored = match auth {
            None => None,
            Some((_, "")) => return Err(StoreError::Invalid("the channel password is empty".into())),
            Some((user, _)) if user.contains(':') || user.chars().any(char::is_control) => {
                return Err(StoreError::Invalid(
                    "a user name for HTTP Basic cannot contain ':' or control characters".into(),
                ));
            }
            Some((user, password)) => Some((user, hash_password(password)?)),
        };
        let (user, hash) = stored.map_or((None, None), |(u, h)| (Some(u), Some(h)));
        self.conn.execute("INSERT OR IGNORE INTO channels (name) VALUES (?1)", params![channel])?;
        self.conn.execute(
            "UPDATE channels SET auth_user = ?1, auth_hash = ?2 WHERE name = ?3",
            params![user, hash, channel],
        )?;
        Ok(())
    }

    /// MACs allowed to update; empty means every device is allowed. A row that cannot be read is
    /// an error naming it (see [`Store::read_allowed_macs`]).
    pub fn allowed_macs(&self) -> Result<Vec<String>, StoreError> {
        all_or_error(self.read_allowed_macs()?)
    }

    /// MACs allowed to update, and the rows that cannot be read.
    pub fn read_allowed_macs(&self) -> Result<(Vec<String>, Vec<BadRow>), StoreError> {
        let mut stmt = self.conn.prepare("SELECT rowid AS _rowid, mac FROM allowed_macs ORDER BY mac")?;
        let rows = stmt.query_map([], |r| {
            tolerant(r, |r| r.get("mac"), |r| RowKey::AllowedMac(r.get("_rowid").unwrap_or_default()))
        })?;
        split(rows)
    }

    /// Adds or removes a MAC on the allow-list (upper-case `AA:BB:…` form).
    pub fn set_allowed(&mut self, mac: &str, allowed: bool) -> Result<(), StoreError> {
        if allowed {
            self.conn.execute("INSERT OR IGNORE INTO allowed_macs (mac) VALUES (?1)", params![mac])?;
        } else {
            self.conn.execute("DELETE FROM allowed_macs WHERE mac = ?1", params![mac])?;
        }
        Ok(())
    }
}
