//! Signed updates: a device whose firmware verifies signatures installs only releases signed by
//! the key that firmware carries, so the server offers it nothing else.
//!
//! Which key a device verifies with follows from the release it runs (recorded at publish as the
//! release's `trusts`); what each release is signed with is its `signed_by`. After a key rotation
//! the channel's current release is signed by the new key, and a device still on a release that
//! trusts the old one is offered the newest release signed by the old key instead (the carrier,
//! which carries the new key), then the current one on its next check: a device that was offline
//! during the carrier release still arrives.
//!
//! A device running firmware the server does not recognise is offered the current release; if its
//! firmware cannot verify it, the device refuses it with `UPDATE_ERROR_SIGN` and nothing is lost.

use std::sync::Arc;

use otaforge_pki::signing::short;

use super::super::catalog::{ChannelView, ReleaseView};

/// What a device that runs `running` can install: `target`, a carrier release toward it, or
/// nothing (and why).
pub enum Verifiable<'a> {
    /// The channel's current release.
    Target,
    /// A release signed by the key the device verifies with, on the way to `target`.
    Carrier(&'a Arc<ReleaseView>),
    /// Nothing the device can verify.
    Nothing(String),
}

/// Picks what a device running `running` can verify on its way to `target`.
pub fn verifiable<'a>(
    target: &ReleaseView,
    running: Option<&ReleaseView>,
    channel: &'a ChannelView,
) -> Verifiable<'a> {
    if channel.meta.require_signatures && target.meta.signed_by.is_none() {
        return Verifiable::Nothing(format!(
            "{} is not signed and this channel takes only signed releases: publish it again signed \
             (otaforge publish --sign), or allow unsigned ones (otaforge rollout --allow-unsigned)",
            target.meta.version
        ));
    }
    let Some(run) = running else { return Verifiable::Target };
    let Some(trusted) = run.meta.trusts.as_deref() else { return Verifiable::Target };
    if target.meta.signed_by.as_deref() == Some(trusted) {
        return Verifiable::Target;
    }
    let carrier = channel
        .carriers
        .iter()
        .filter(|c| c.meta.signed_by.as_deref() == Some(trusted) && c.meta.id > run.meta.id)
        .max_by_key(|c| c.meta.id);
    if let Some(c) = carrier {
        return Verifiable::Carrier(c);
    }
    let signed = match target.meta.signed_by.as_deref() {
        Some(by) => format!("is signed by key {}", short(by)),
        None => "is not signed".to_string(),
    };
    Verifiable::Nothing(format!(
        "{} {signed}, and this device runs {}, whose firmware installs only updates signed by key {}: \
         nothing on this channel is signed by that key and newer. Publish a release signed by it \
         (otaforge publish --sign signs with the key the channel's devices verify with)",
        target.meta.version,
        run.meta.version,
        short(trusted)
    ))
}

/// Why an ESP8266 device must not get `release`, a gzip'd image with a signature appended, when
/// its running firmware is known to check no signatures. Without a verifier the core's Updater
/// keeps the signature and its length word as part of the file (Updater.cpp cuts them off only
/// in the verifying branch of `end()`), and eboot takes the unpacked size from the file's last
/// four bytes (the gzip ISIZE): it would unpack 256 bytes and boot a broken image. A signed
/// plain image is safe there (the extra bytes sit after the image), so only gzip is held.
///
/// A device running firmware the server does not recognise (flashed over USB, never published)
/// is served: it is most often the firmware just baked with the project's key, and publish
/// already refuses a signed gzip'd release on a channel whose firmware checks no signatures.
pub fn unpackable(
    release: &ReleaseView,
    running: Option<&ReleaseView>,
    family: super::Family,
) -> Option<String> {
    let gzip = release.bytes.as_deref().is_some_and(otaforge_firmware::gzip::is_gzip);
    if family != super::Family::Esp8266 || !gzip || release.meta.signed_by.is_none() {
        return None;
    }
    let run = running.filter(|run| run.meta.trusts.is_none())?;
    Some(format!(
        "{} is gzip'd and signed, and this device runs {}, which checks no signatures: its \
         bootloader would unpack the signature as part of the image. Publish it uncompressed, \
         or first a release that carries the signing key (otaforge bake puts it in)",
        release.meta.version, run.meta.version
    ))
}
