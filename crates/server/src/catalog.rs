//! An in-memory snapshot of what is published, so answering an update check never touches the
//! database: channels, their current releases (with the bytes, shared by every download), the
//! release history for recognising what devices run, and the MAC allow-list.
//!
//! What cannot be served is left out without stopping the rest: a release whose firmware file is
//! missing, truncated or damaged is *disabled* (its channel answers 304 with the reason), and a
//! row that cannot be read is listed in [`Catalog::unreadable`]. Each file is read and hashed when
//! the catalog loads and again only when it changed (by its [`BlobStamp`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::events::ServerEvent;
use otaforge_protocol::version::Version;
use otaforge_store::{BadRow, BlobProblem, BlobStamp, Channel, Release, RowKey, Store, StoreError};

/// A release as the server uses it.
#[derive(Debug)]
pub struct ReleaseView {
    /// What the store knows.
    pub meta: Release,
    /// The parsed version.
    pub version: Option<Version>,
    /// The file (only for releases a channel currently serves; history has none).
    pub bytes: Option<Arc<[u8]>>,
    /// MD5s a device running this release can report: its updater rewrites byte 2 (flash mode)
    /// to the chip's mode, so each of the four modes gives its own MD5.
    pub md5_variants: Vec<String>,
    /// Why a channel's current release cannot be served (its file is missing, truncated or
    /// damaged), when it cannot: devices on that channel are told so, with a 304.
    pub disabled: Option<BlobProblem>,
    /// The file as it was when read (or found damaged): unchanged, it is not read again.
    stamp: Option<BlobStamp>,
}

/// What a device that installed `bytes` runs, when that is not the file itself: the image without
/// its signature trailer (the updater cuts it off), unpacked when gzip'd (eboot unpacks it). The
/// MD5 a device reports is of that image, so this is how a signed or compressed release is
/// recognised by its MD5 and not only by the version the device reports.
fn installed_image(meta: &Release, bytes: &[u8]) -> Option<Vec<u8>> {
    use otaforge_firmware::{gzip, signature};
    use otaforge_pki::signing::Family;
    let family = Family::of_chip_name(meta.chip.as_deref()?);
    let body =
        meta.signed_by.as_ref().and_then(|_| signature::split(family, bytes)).map_or(bytes, |s| s.body);
    if gzip::is_gzip(body) {
        return gzip::unpack(body).0;
    }
    (body.len() != bytes.len()).then(|| body.to_vec())
}

impl ReleaseView {
    /// Wraps a stored release; `bytes` for releases a channel serves.
    pub fn new(meta: Release, bytes: Option<Arc<[u8]>>) -> ReleaseView {
        let mut md5_variants = vec![meta.md5.clone(), meta.md5_normalized.clone()];
        if let Some(b) = &bytes {
            md5_variants.extend(otaforge_firmware::device_md5s(b));
            if let Some(installed) = installed_image(&meta, b) {
                md5_variants.extend(otaforge_firmware::device_md5s(&installed));
            }
        }
        md5_variants.sort();
        md5_variants.dedup();
        let version = Version::parse(&meta.version).ok();
        ReleaseView { meta, version, bytes, md5_variants, disabled: None, stamp: None }
    }

    /// A release a channel serves whose file cannot be served, and why.
    pub fn disabled(meta: Release, problem: BlobProblem) -> ReleaseView {
        ReleaseView { disabled: Some(problem), ..ReleaseView::new(meta, None) }
    }

    /// Loads what a channel serves now: the file, checked against the release's size and
    /// SHA-256, or the reason it cannot be served. `old` is reused when its file is unchanged.
    fn current(store: &Store, meta: Release, old: Option<&Arc<ReleaseView>>) -> Arc<ReleaseView> {
        let blobs = store.blobs();
        let stamp = blobs.stamp(&meta.sha256).ok();
        if let Some(old) = old
            && old.meta == meta
            && stamp.is_some()
            && old.stamp == stamp
            && (old.bytes.is_some() || old.disabled.is_some())
        {
            return old.clone();
        }
        let view = match blobs.load(&meta.sha256, meta.size) {
            Ok((bytes, stamp)) => ReleaseView { stamp: Some(stamp), ..ReleaseView::new(meta, Some(bytes)) },
            Err(problem) => ReleaseView { stamp, ..ReleaseView::disabled(meta, problem) },
        };
        Arc::new(view)
    }

    /// True if a device reporting this sketch MD5 runs this release.
    pub fn matches_md5(&self, md5: &str) -> bool {
        self.md5_variants.iter().any(|m| m.eq_ignore_ascii_case(md5))
    }
}

/// A channel with its current releases resolved.
#[derive(Debug)]
pub struct ChannelView {
    /// The channel's settings.
    pub meta: Channel,
    /// Current application release.
    pub sketch: Option<Arc<ReleaseView>>,
    /// Current filesystem release.
    pub filesystem: Option<Arc<ReleaseView>>,
    /// After a key rotation: for each other key that signed sketch releases here, the newest
    /// release it signed (with its bytes), offered to devices whose firmware verifies with that
    /// key (see `decision::keys`).
    pub carriers: Vec<Arc<ReleaseView>>,
}

/// Everything the server answers from.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Channels by name.
    pub channels: HashMap<String, ChannelView>,
    /// Every release by id.
    pub releases: HashMap<i64, Arc<ReleaseView>>,
    /// MACs allowed to update (empty: all).
    pub allowed: HashSet<String>,
    /// Rows that cannot be read, left out of the above (a channel whose row cannot be read is in
    /// `channels` with nothing to serve, so its devices are told why).
    pub unreadable: Vec<BadRow>,
}

/// Per channel, the newest sketch release signed by each key other than the one that signed the
/// current release: the carriers devices on older keys need (releases older than the current one
/// only; a newer one would be a rollback artefact).
fn carrier_ids(channels: &[Channel], metas: &[Release]) -> HashMap<String, Vec<i64>> {
    let mut out = HashMap::new();
    for c in channels {
        let Some(current) = c.current_sketch.and_then(|id| metas.iter().find(|r| r.id == id)) else {
            continue;
        };
        let mut newest: HashMap<&str, i64> = HashMap::new();
        for r in metas.iter().filter(|r| r.channel == c.name && r.kind == otaforge_store::PayloadKind::Sketch)
        {
            if let Some(by) = r.signed_by.as_deref()
                && Some(by) != current.signed_by.as_deref()
                && r.id < current.id
            {
                let e = newest.entry(by).or_insert(r.id);
                *e = (*e).max(r.id);
            }
        }
        if !newest.is_empty() {
            out.insert(c.name.clone(), newest.into_values().collect());
        }
    }
    out
}

/// Stands in the allow-list for entries that cannot be read: it matches no MAC, and keeps the list
/// from being empty (which would allow every device).
const UNREADABLE_ENTRY: &str = "(unreadable entry)";

impl Catalog {
    /// Loads the catalog, reusing file bytes already in `previous` whose files did not change.
    /// Only a failing database is an error; what cannot be served is left out (see the module).
    pub fn load(store: &Store, previous: Option<&Catalog>) -> Result<Catalog, StoreError> {
        let (channels, mut unreadable) = store.read_channels()?;
        let (metas, bad_releases) = store.read_releases(None)?;
        let (allowed, bad_macs) = store.read_allowed_macs()?;
        let carriers = carrier_ids(&channels, &metas);
        let current: HashSet<i64> = channels
            .iter()
            .flat_map(|c| [c.current_sketch, c.current_fs])
            .flatten()
            .chain(carriers.values().flatten().copied())
            .collect();
        let mut releases = HashMap::new();
        for meta in metas {
            let old = previous.and_then(|p| p.releases.get(&meta.id));
            let view = if current.contains(&meta.id) {
                ReleaseView::current(store, meta, old)
            } else {
                match old {
                    Some(v) if v.meta == meta && v.bytes.is_none() && v.disabled.is_none() => v.clone(),
                    _ => Arc::new(ReleaseView::new(meta, None)),
                }
            };
            releases.insert(view.meta.id, view);
        }
        let mut views: HashMap<String, ChannelView> = channels
            .into_iter()
            .map(|meta| {
                let sketch = meta.current_sketch.and_then(|id| releases.get(&id).cloned());
                let filesystem = meta.current_fs.and_then(|id| releases.get(&id).cloned());
                let carriers = carriers
                    .get(&meta.name)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| releases.get(id).cloned())
                    .filter(|r| r.disabled.is_none())
                    .collect();
                (meta.name.clone(), ChannelView { meta, sketch, filesystem, carriers })
            })
            .collect();
        // A channel whose settings cannot be read serves nothing (its rollout, pause or
        // credentials are unknown), and its devices are told why.
        for bad in &unreadable {
            if let RowKey::Channel(name) = &bad.key {
                let meta = Channel {
                    name: name.clone(),
                    current_sketch: None,
                    current_fs: None,
                    rollout_percent: 0,
                    paused: true,
                    require_signatures: false,
                    gzip: Default::default(),
                    auth: None,
                };
                views.insert(
                    name.clone(),
                    ChannelView { meta, sketch: None, filesystem: None, carriers: Vec::new() },
                );
            }
        }
        let mut allowed: HashSet<String> = allowed.into_iter().collect();
        if !bad_macs.is_empty() {
            allowed.insert(UNREADABLE_ENTRY.into());
        }
        unreadable.extend(bad_releases);
        unreadable.extend(bad_macs);
        Ok(Catalog { channels: views, releases, allowed, unreadable })
    }

    /// True when both serve the same thing (same channels, settings, releases, disabled releases,
    /// unreadable rows and allow-list).
    pub fn same_as(&self, other: &Catalog) -> bool {
        self.allowed == other.allowed
            && self.unreadable == other.unreadable
            && self.releases.len() == other.releases.len()
            && self.releases.iter().all(|(k, r)| {
                other.releases.get(k).is_some_and(|o| {
                    o.meta == r.meta && o.disabled == r.disabled && o.bytes.is_some() == r.bytes.is_some()
                })
            })
            && self.channels.len() == other.channels.len()
            && self.channels.iter().all(|(k, c)| other.channels.get(k).is_some_and(|o| o.meta == c.meta))
    }

    /// Why a channel's row cannot be read, if it cannot.
    pub fn unreadable_channel(&self, name: &str) -> Option<&BadRow> {
        self.unreadable.iter().find(|b| matches!(&b.key, RowKey::Channel(n) if n == name))
    }

    /// Why a release's row cannot be read, if it cannot.
    pub fn unreadable_release(&self, id: i64) -> Option<&BadRow> {
        self.unreadable.iter().find(|b| b.key == RowKey::Release(id))
    }

    /// The events for what is wrong here and was not in `previous` (everything, without one):
    /// each disabled release and each unreadable row, once.
    pub fn problems_since(&self, previous: Option<&Catalog>) -> Vec<ServerEvent> {
        let mut disabled: Vec<&Arc<ReleaseView>> = self
            .releases
            .values()
            .filter(|r| r.disabled.is_some())
            .filter(|r| {
                previous.and_then(|p| p.releases.get(&r.meta.id)).is_none_or(|o| o.disabled != r.disabled)
            })
            .collect();
        disabled.sort_by_key(|r| r.meta.id);
        let mut events: Vec<ServerEvent> = disabled
            .into_iter()
            .map(|r| ServerEvent::ReleaseDisabled {
                release: r.meta.id,
                channel: r.meta.channel.clone(),
                version: r.meta.version.clone(),
                reason: r.disabled.as_ref().map(ToString::to_string).unwrap_or_default(),
            })
            .collect();
        events.extend(
            self.unreadable.iter().filter(|b| previous.is_none_or(|p| !p.unreadable.contains(b))).map(|b| {
                ServerEvent::RowUnreadable {
                    table: b.key.table().to_string(),
                    key: b.key.to_string(),
                    reason: b.why.clone(),
                }
            }),
        );
        events
    }

    /// The release a device runs, recognised by its sketch MD5 (preferred) or version text,
    /// among the releases of its channel.
    pub fn running(
        &self,
        channel: &str,
        md5: Option<&str>,
        version: Option<&Version>,
    ) -> Option<&Arc<ReleaseView>> {
        let in_channel = || self.releases.values().filter(move |r| r.meta.channel == channel);
        if let Some(md5) = md5
            && let Some(r) = in_channel().find(|r| r.matches_md5(md5))
        {
            return Some(r);
        }
        let version = version?;
        in_channel().filter(|r| r.version.as_ref() == Some(version)).max_by_key(|r| r.meta.id)
    }
}
