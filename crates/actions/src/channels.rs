//! Which channels exist, as every command that takes a channel sees it. A channel name is part of
//! every device's update URL, so a mistyped one must never quietly become a new, empty channel
//! that no release ever reaches (or firmware that polls one): a command naming a channel that
//! does not exist is refused with the ones that do, and creates it only when told to
//! (`--create`, where creating one makes sense).
//!
//! The default channel ([`DEFAULT_CHANNEL`]) and the demo channel ([`DEMO_CHANNEL`]) exist
//! before anything is published to them: the server answers devices on them ("nothing published
//! yet"). Every other channel exists once the store has it: a publish, a promote or a
//! `rollout --create` made it.

use otaforge_protocol::{DEFAULT_CHANNEL, DEMO_CHANNEL};
use otaforge_store::{RowKey, Store, StoreError};

pub use otaforge_firmware::config_block::channel_or_default;

/// Whether a channel exists before the store has it: the default and the demo channel.
pub fn always_exists(name: &str) -> bool {
    name == DEFAULT_CHANNEL || name == DEMO_CHANNEL
}

/// The channels there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// The store's (published to, promoted into, or created), by name.
    pub stored: Vec<String>,
}

impl Channels {
    /// Reads them from the store; a channel whose row cannot be read still exists by its name.
    pub fn of(store: &Store) -> Result<Channels, StoreError> {
        let (good, bad) = store.read_channels()?;
        let mut stored: Vec<String> = good.into_iter().map(|c| c.name).collect();
        stored.extend(bad.into_iter().filter_map(|b| match b.key {
            RowKey::Channel(name) => Some(name),
            _ => None,
        }));
        Ok(Channels { stored })
    }

    /// The store has it.
    pub fn is_stored(&self, name: &str) -> bool {
        self.stored.iter().any(|n| n == name)
    }

    /// The store has it, or it is one that always exists.
    pub fn exists(&self, name: &str) -> bool {
        self.is_stored(name) || always_exists(name)
    }

    /// Every channel there is: the store's, then the default and demo ones when it lacks them.
    pub fn all(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.stored.iter().map(String::as_str).collect();
        for implicit in [DEFAULT_CHANNEL, DEMO_CHANNEL] {
            if !all.contains(&implicit) {
                all.push(implicit);
            }
        }
        all
    }
}

/// `"a", "b", "c"`.
pub fn quoted(names: &[impl AsRef<str>]) -> String {
    names.iter().map(|n| format!("\"{}\"", n.as_ref())).collect::<Vec<_>>().join(", ")
}

/// A command named a channel that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("there is no channel \"{name}\" ({known}). {hint}")]
pub struct UnknownChannel {
    /// The name given.
    pub name: String,
    /// The channels there are, in words ("channels: \"stable\", \"demo\"", or why there are none).
    pub known: String,
    /// What to do: check the name, or how to create it.
    pub hint: String,
}

impl UnknownChannel {
    /// `name` is not among `listed` (the channels the command could act on); `hint` says what to
    /// do about it.
    pub fn new(name: &str, listed: &[&str], hint: String) -> UnknownChannel {
        let known = if listed.is_empty() {
            "none yet: publish a release first".to_string()
        } else {
            format!("channels: {}", quoted(listed))
        };
        UnknownChannel { name: name.to_string(), known, hint }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_and_demo_channels_always_exist_and_are_listed_after_the_stored_ones() {
        let c = Channels { stored: vec!["beta".into(), "stable".into()] };
        assert_eq!(c.all(), ["beta", "stable", "demo"]);
        assert!(c.exists("demo") && c.exists("beta") && !c.exists("stabel"));
        assert!(!c.is_stored("demo"));
        assert_eq!(channel_or_default(""), DEFAULT_CHANNEL);
        assert_eq!(channel_or_default("beta"), "beta");
        let e = UnknownChannel::new("stabel", &c.all(), "Check the name.".into());
        assert_eq!(
            e.to_string(),
            "there is no channel \"stabel\" (channels: \"beta\", \"stable\", \"demo\"). Check the name."
        );
        let e = UnknownChannel::new("x", &[], "Add --create.".into());
        assert!(e.to_string().contains("none yet: publish a release first"), "{e}");
    }
}
