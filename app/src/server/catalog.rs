//! An in-memory snapshot of what is published, so answering an update check never touches the
//! database: channels, their current releases (with the bytes, shared by every download), the
//! release history for recognising what devices run, and the MAC allow-list.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::store::{Channel, Release, Store, StoreError};
use crate::version::Version;

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
}

impl ReleaseView {
    /// Wraps a stored release; `bytes` for releases a channel serves.
    pub fn new(meta: Release, bytes: Option<Arc<[u8]>>) -> ReleaseView {
        let mut md5_variants = vec![meta.md5.clone(), meta.md5_normalized.clone()];
        if let Some(b) = &bytes
            && b.first() == Some(&0xE9)
        {
            md5_variants.extend((0..4u8).map(|mode| crate::firmware::md5_with_flash_mode(b, mode)));
        }
        md5_variants.sort();
        md5_variants.dedup();
        let version = Version::parse(&meta.version).ok();
        ReleaseView { meta, version, bytes, md5_variants }
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
}

impl Catalog {
    /// Loads the catalog, reusing file bytes already in `previous` (blobs never change).
    pub fn load(store: &Store, previous: Option<&Catalog>) -> Result<Catalog, StoreError> {
        let channels = store.channels()?;
        let current: HashSet<i64> =
            channels.iter().flat_map(|c| [c.current_sketch, c.current_fs]).flatten().collect();
        let mut releases = HashMap::new();
        for meta in store.releases(None)? {
            let old = previous.and_then(|p| p.releases.get(&meta.id));
            let view = match old {
                Some(v) if v.bytes.is_some() == current.contains(&meta.id) => v.clone(),
                _ => {
                    let bytes = if current.contains(&meta.id) {
                        Some(store.blobs().get(&meta.sha256)?)
                    } else {
                        None
                    };
                    Arc::new(ReleaseView::new(meta, bytes))
                }
            };
            releases.insert(view.meta.id, view);
        }
        let channels = channels
            .into_iter()
            .map(|meta| {
                let sketch = meta.current_sketch.and_then(|id| releases.get(&id).cloned());
                let filesystem = meta.current_fs.and_then(|id| releases.get(&id).cloned());
                (meta.name.clone(), ChannelView { meta, sketch, filesystem })
            })
            .collect();
        let allowed = store.allowed_macs()?.into_iter().collect();
        Ok(Catalog { channels, releases, allowed })
    }

    /// True when both serve the same thing (same channels, settings, releases and allow-list).
    pub fn same_as(&self, other: &Catalog) -> bool {
        self.allowed == other.allowed
            && self.releases.len() == other.releases.len()
            && self.releases.keys().all(|k| other.releases.contains_key(k))
            && self.channels.len() == other.channels.len()
            && self.channels.iter().all(|(k, c)| other.channels.get(k).is_some_and(|o| o.meta == c.meta))
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
