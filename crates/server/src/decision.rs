//! The update decision: which answer a device gets, and why, in words. Pure: no I/O, so every
//! branch is tested directly.
//!
//! The rule that matters most: **no device is ever sent the release it already runs.** A device is
//! recognised by its version (ordered numerically) and, when the version is missing or wrong, by
//! the MD5 of its running sketch. A release that a device downloads again and again without ever
//! running it stops being offered, so a broken image cannot loop a device forever.
//!
//! A channel whose current release cannot be served (its file damaged, its row unreadable) offers
//! nothing until that is fixed, and says why.

mod keys;

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::catalog::{Catalog, ChannelView, ReleaseView};
use super::device::{DeviceRequest, Family, Mode};
use otaforge_protocol::version::Version;
use otaforge_store::{Device, DeviceState, PayloadKind};

/// Complete downloads of one release, without the device ever running it, after which the server
/// stops offering that release to that device.
pub const MAX_ATTEMPTS: u32 = 3;

/// What to answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with the release as body.
    Serve(Arc<ReleaseView>),
    /// 200 with `x-version` and `x-MD5` and no body (`x-ESP8266-mode: version`).
    VersionInfo(Arc<ReleaseView>),
    /// 304: nothing to do; the state the device is in.
    NoUpdate(DeviceState),
}

/// An answer and the reason for it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The answer.
    pub answer: Answer,
    /// Why, in words (shown in the inventory and the event log).
    pub reason: String,
}

impl Decision {
    fn no(state: DeviceState, reason: impl Into<String>) -> Decision {
        Decision { answer: Answer::NoUpdate(state), reason: reason.into() }
    }

    /// The HTTP status for this decision.
    pub fn status(&self) -> u16 {
        match self.answer {
            Answer::Serve(_) | Answer::VersionInfo(_) => 200,
            Answer::NoUpdate(_) => 304,
        }
    }
}

/// The stable rollout bucket (0..100) of a MAC: the same device always lands in the same bucket,
/// so raising the share only ever adds devices.
pub fn rollout_bucket(mac: &str) -> u8 {
    let d = Sha256::digest(mac.as_bytes());
    (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % 100) as u8
}

/// Decides for one device update check on `channel`. `previous` is what the inventory knew.
pub fn decide(
    dev: &DeviceRequest,
    channel: Option<&ChannelView>,
    catalog: &Catalog,
    previous: Option<&Device>,
) -> Decision {
    let Some(channel) = channel else {
        return Decision::no(DeviceState::UpToDate, "nothing has been published on this channel yet");
    };
    if let Some(bad) = catalog.unreadable_channel(&channel.meta.name) {
        return Decision::no(
            DeviceState::Held,
            format!("{bad}: nothing is offered on this channel until that row is fixed"),
        );
    }
    let kind = if dev.mode == Mode::Filesystem { PayloadKind::Filesystem } else { PayloadKind::Sketch };
    if let Some(why) = unavailable(channel, catalog, kind) {
        return Decision::no(DeviceState::Held, why);
    }
    match dev.mode {
        Mode::Filesystem => decide_filesystem(channel, previous),
        Mode::Version => match &channel.sketch {
            Some(r) => Decision {
                answer: Answer::VersionInfo(r.clone()),
                reason: format!("told the current version, {}", r.meta.version),
            },
            None => Decision::no(DeviceState::UpToDate, "nothing has been published on this channel yet"),
        },
        Mode::Sketch => decide_sketch(dev, channel, catalog, previous),
    }
}

/// Why the channel's current release of `kind` cannot be offered, when it cannot.
fn unavailable(channel: &ChannelView, catalog: &Catalog, kind: PayloadKind) -> Option<String> {
    let (view, id) = match kind {
        PayloadKind::Sketch => (&channel.sketch, channel.meta.current_sketch),
        PayloadKind::Filesystem => (&channel.filesystem, channel.meta.current_fs),
    };
    match view {
        Some(r) => r.disabled.as_ref().map(|problem| {
            format!(
                "{} (release #{}) is disabled: its firmware file {}; nothing is offered on this channel \
                 until that is fixed",
                r.meta.version,
                r.meta.id,
                problem.what()
            )
        }),
        None => id.map(|id| match catalog.unreadable_release(id) {
            Some(bad) => format!("{bad}: it is not offered until that row is fixed"),
            None => format!("release #{id}, which this channel serves, is not in the database"),
        }),
    }
}

fn decide_filesystem(channel: &ChannelView, previous: Option<&Device>) -> Decision {
    match &channel.filesystem {
        None => Decision::no(DeviceState::UpToDate, "no filesystem image is published on this channel"),
        Some(fs) if previous.and_then(|p| p.fs_release) == Some(fs.meta.id) => {
            Decision::no(DeviceState::UpToDate, format!("already has filesystem image {}", fs.meta.version))
        }
        Some(fs) => Decision {
            answer: Answer::Serve(fs.clone()),
            reason: format!("new filesystem image {}", fs.meta.version),
        },
    }
}

fn decide_sketch(
    dev: &DeviceRequest,
    channel: &ChannelView,
    catalog: &Catalog,
    previous: Option<&Device>,
) -> Decision {
    let Some(target) = &channel.sketch else {
        return Decision::no(DeviceState::UpToDate, "nothing has been published on this channel yet");
    };
    if let Some(chip) = &target.meta.chip
        && Family::of_chip_name(chip) != dev.family
    {
        return Decision::no(
            DeviceState::Held,
            format!("this channel serves {chip} images and this device is an {}", dev.family.name()),
        );
    }
    let device_version = dev.version.as_deref().and_then(|v| Version::parse(v).ok());
    let running = catalog.running(&target.meta.channel, dev.sketch_md5.as_deref(), device_version.as_ref());
    // Only what the running firmware can verify: the current release, or a carrier toward it.
    let (release, via) = match keys::verifiable(target, running.map(|r| &**r), channel) {
        keys::Verifiable::Target => (target, None),
        keys::Verifiable::Carrier(c) => (c, Some(target)),
        keys::Verifiable::Nothing(why) => return Decision::no(DeviceState::Held, why),
    };
    let r = &release.meta;
    // Already running the current release (by MD5 or by version): never send it again.
    if running.is_some_and(|run| run.meta.id == r.id)
        || dev.sketch_md5.as_deref().is_some_and(|m| release.matches_md5(m))
    {
        return Decision::no(DeviceState::UpToDate, format!("runs {}, the current release", r.version));
    }
    let release_version = release.version.as_ref();
    if let (Some(dv), Some(rv)) = (&device_version, release_version)
        && dv >= rv
    {
        let how = if dv == rv { "the current release" } else { "newer than the current release" };
        return Decision::no(DeviceState::UpToDate, format!("runs {dv}, {how} {rv}"));
    }
    if device_version.is_none()
        && let Some(run) = running
        && let (Some(known), Some(rv)) = (run.version.as_ref(), release_version)
        && known >= rv
    {
        return Decision::no(
            DeviceState::UpToDate,
            format!("runs {known} (recognised by its MD5), not older than {rv}"),
        );
    }
    if let Some(p) = previous
        && p.target_release == Some(r.id)
        && p.attempts >= MAX_ATTEMPTS
    {
        return Decision::no(
            DeviceState::Failed,
            format!(
                "downloaded {} {} times but still does not run it: no longer offered, to stop an update loop (publish a new release to try again)",
                r.version, p.attempts
            ),
        );
    }
    if let Some(why) = keys::unpackable(release, running.map(|r| &**r), dev.family) {
        return Decision::no(DeviceState::Held, why);
    }
    if let Some(why) = gzip_too_new(release, dev, channel) {
        return Decision::no(DeviceState::Held, why);
    }
    if channel.meta.paused {
        return Decision::no(DeviceState::Held, format!("the rollout of {} is paused", r.version));
    }
    let bucket = rollout_bucket(&dev.sta_mac);
    if bucket >= channel.meta.rollout_percent {
        return Decision::no(
            DeviceState::Held,
            format!(
                "outside the first {}% of the rollout of {} (bucket {bucket})",
                channel.meta.rollout_percent, r.version
            ),
        );
    }
    if let Some(free) = dev.free_space {
        // The ESP8266 updater reserves whole 4 KiB sectors.
        let needed = match dev.family {
            Family::Esp8266 => r.size.div_ceil(4096) * 4096,
            Family::Esp32 => r.size,
        };
        if needed > free {
            return Decision::no(
                DeviceState::Held,
                format!("{} needs {needed} bytes but the device reports {free} free", r.version),
            );
        }
    }
    if let (Some(need), Some(have)) = (r.flash_size, dev.chip_size)
        && need > have
    {
        return Decision::no(
            DeviceState::Held,
            format!(
                "{} is built for {} MB of flash and this device has {} MB",
                r.version,
                need >> 20,
                have >> 20
            ),
        );
    }
    let from = match (&dev.version, running) {
        (Some(v), _) => format!("from {v}"),
        (None, Some(run)) => format!("from {} (recognised by its MD5)", run.meta.version),
        (None, None) => "from an unknown version".to_string(),
    };
    let carrier = via.map_or(String::new(), |t| {
        format!(
            ", the carrier signed by the key this device verifies with ({} comes next: it is signed by the new key)",
            t.meta.version
        )
    });
    Decision {
        answer: Answer::Serve(release.clone()),
        reason: format!("update to {} {from}{carrier}", r.version),
    }
}

/// Why a gzip'd release must not go to this device: the channel is set to take none, or its
/// ESP8266 core predates gzip'd updates
/// (2.7.0, esp8266/Arduino PR #6820), which would take the file for a broken image. The updater
/// reports no core version, only the NONOS SDK's (`x-ESP8266-sdk-version`): cores before 2.6 ship
/// SDK 2.2.1 or older, so an SDK older than 2.2.2 means too old a core. (A 2.7+ core built with
/// the legacy 2.2.1 SDK is held too: the safe side. A 2.6 core reports 2.2.2 like 2.7 does and
/// cannot be told apart.)
fn gzip_too_new(release: &ReleaseView, dev: &DeviceRequest, channel: &ChannelView) -> Option<String> {
    let gzip = release.bytes.as_deref().is_some_and(otaforge_firmware::gzip::is_gzip);
    if dev.family != Family::Esp8266 || !gzip {
        return None;
    }
    if channel.meta.gzip == otaforge_store::GzipPolicy::Never {
        return Some(format!(
            "{} is gzip'd and this channel is set to take none (its devices run cores older than \
             2.7.0): publish it uncompressed",
            release.meta.version
        ));
    }
    let sdk = dev.sdk_version.as_deref()?;
    let numbers: Vec<u32> = sdk
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.')
        .map_while(|n| n.parse().ok())
        .collect();
    if numbers.is_empty() || numbers.as_slice() >= [2, 2, 2].as_slice() {
        return None;
    }
    Some(format!(
        "{} is gzip'd and this device reports NONOS SDK {sdk}, which ships with ESP8266 cores older than 2.7.0: they cannot install gzip'd updates. Publish it uncompressed for such devices",
        release.meta.version
    ))
}

#[cfg(test)]
mod tests;
