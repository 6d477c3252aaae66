//! Publishing a firmware file: every check a device would make, made before anything is stored,
//! so a wrong `.bin` is refused with a reason instead of failing on the fleet. Also what no device
//! checks: that the image holds no secret (anyone who asks the update endpoint gets it), and that
//! devices which install it can still reach this server ([`trust`]). The CLI and the app both
//! publish through [`check`] and [`publish`].

pub mod trust;

use otaforge_firmware::baked_secrets;
use otaforge_firmware::carried_version::{VersionChoiceError, choose_version};
use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::gzip;
use otaforge_firmware::image::{self, ImageInfo};
use otaforge_firmware::signature;
use otaforge_firmware::synth::is_synthetic;
use otaforge_pki::signing::{self, Family, Keys, Signer};
use otaforge_protocol::version::Version;
use otaforge_protocol::{DEMO_CHANNEL, is_demo_channel};
use otaforge_store::{GzipPolicy, NewRelease, PayloadKind, Release, Store, StoreError, validate_channel};

/// Largest file accepted: the biggest ESP flash chip.
pub const MAX_IMAGE_BYTES: usize = 16 * 1024 * 1024;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Channel to publish to.
    pub channel: String,
    /// Sketch or filesystem image.
    pub kind: PayloadKind,
    /// The version; `None` takes it from the ESP32 app descriptor when there is one.
    pub version: Option<String>,
    /// Free text shown with the release.
    pub notes: String,
    /// The original file name, for display.
    pub file_name: String,
    /// Compress a plain ESP8266 sketch image with gzip before storing it (eboot unpacks it; core
    /// ≥ 2.7.0). An image that is gzip'd already is checked as it is.
    pub gzip: bool,
    /// Sign with the project's key for the image's family (after compressing: the device hashes
    /// the bytes it writes). An image already signed by that key is checked and kept as it is.
    pub sign_with: Option<std::sync::Arc<Keys>>,
}

impl PublishRequest {
    /// A sketch release for a channel.
    pub fn sketch(channel: &str, version: Option<&str>) -> Self {
        PublishRequest {
            channel: channel.to_string(),
            kind: PayloadKind::Sketch,
            version: version.map(str::to_string),
            notes: String::new(),
            file_name: String::new(),
            gzip: false,
            sign_with: None,
        }
    }
}

/// Why a publish was refused. Nothing was stored.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {0} bytes; no ESP flash holds more than 16 MiB")]
    TooLarge(usize),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error("the image is damaged: {}", .0.join("; "))]
    Damaged(Vec<String>),
    #[error(transparent)]
    Version(#[from] VersionChoiceError),
    #[error(
        "the image's config block holds one device's settings ({0}): every device that installs it would take them, and anyone who asks the update endpoint can read them. Publish an image baked without --device-name/--wifi-*, and give each board its own with otaforge provision"
    )]
    DeviceSettings(String),
    #[error(
        "the image contains a Wi-Fi password baked in this project (an ota_config.h build keeps it in clear): anyone who asks the update endpoint would get it. Build it without the password in ota_config.h and give boards their Wi-Fi with otaforge provision"
    )]
    Password,
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
    #[error(
        "this is a synthetic image (sim reference-image, the demo, Try without hardware): it only runs on virtual boards. Publish it to a demo channel (\"{DEMO_CHANNEL}\" or \"demo-…\"), never to \"{0}\", where a real board would install it"
    )]
    Synthetic(String),
    #[error(
        "version {new} is not newer than {current}, which channel \"{channel}\" serves now: devices would never take it. Publish a higher version, or roll back the channel instead"
    )]
    NotNewer { new: String, current: String, channel: String },
    #[error(
        "channel \"{channel}\" serves {current} images; this one is for {new}. Publish it to a channel of its own"
    )]
    WrongChip { channel: String, current: String, new: String },
    #[error(
        "--gzip applies to ESP8266 sketches only: arduino-esp32's updater accepts only plain images, and a gzip'd filesystem image needs a core built with ATOMIC_FS_UPDATE"
    )]
    GzipNotForThis,
    #[error(
        "--sign applies to sketch images: filesystem updates are published unsigned (a channel that requires signatures takes none)"
    )]
    SignNotForThis,
    #[error("this project has no {0} signing key: make one with otaforge key new")]
    NoSigningKey(Family),
    #[error(
        "the file already ends with a {0} signature that this project's key does not verify: publish the unsigned image and let --sign sign it"
    )]
    SignedByOther(Family),
    #[error(
        "channel \"{0}\" takes only signed releases: publish with --sign (otaforge publish FILE --sign), or allow unsigned ones with otaforge rollout --channel {0} --allow-unsigned"
    )]
    SignatureRequired(String),
    #[error("could not sign: {0}")]
    Sign(String),
    #[error("cannot read the project's signing keys: {0}")]
    Keys(otaforge_pki::PkiError),
    #[error(
        "devices that install this image would accept only updates signed by key {0}, which this project does not have: no later update could reach them. Bake the image with this project (otaforge bake puts its key in), or leave the key out"
    )]
    TrustsUnknownKey(String),
    #[error(
        "this image verifies updates with key {0}, which this project replaced: devices that install it would need the old key forever. Bake it again (otaforge bake puts the current key in)"
    )]
    TrustsRetiredKey(String),
    #[error(
        "devices on channel \"{channel}\" verify updates with key {key}, which this project does not hold (neither current nor in retired/): they would refuse anything signed here"
    )]
    FleetKeyMissing { channel: String, key: String },
    #[error(
        "the firmware channel \"{channel}\" serves verifies updates with key {key}: an unsigned release would reach none of its devices. Publish with --sign"
    )]
    FleetVerifies { channel: String, key: String },
    #[error(
        "devices on \"{channel}\" run {runs}, which checks no signatures: an ESP8266 bootloader unpacking a gzip'd file takes its last four bytes as the unpacked size, and a signed file ends with the signature's length, so they would boot a broken image (the server would hold them back). Publish this release uncompressed (drop --gzip): once devices run firmware that verifies, signed gzip'd releases reach them"
    )]
    SignedGzipToKeyless { channel: String, runs: String },
    #[error(
        "channel \"{0}\" takes no gzip'd images (its devices run ESP8266 cores older than 2.7.0): publish the plain .bin, or allow gzip with otaforge rollout --channel {0} --gzip per-publish"
    )]
    GzipNever(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A file that passed every check, holding the very bytes that were checked: [`publish`] stores
/// these and nothing else, so what the user saw checked is what devices get.
#[derive(Debug)]
pub struct Checked {
    bytes: Vec<u8>,
    request: PublishRequest,
    /// The image inspection (None for filesystem images, which have no header).
    pub image: Option<ImageInfo>,
    /// The version the release would carry.
    pub version: Version,
    /// What could not be checked, or is worth knowing; none of it stops the publish.
    pub warnings: Vec<String>,
    /// Fingerprint of the key whose signature the file carries.
    pub signed_by: Option<String>,
    /// Fingerprint of the key the image's firmware verifies its updates with.
    pub trusts: Option<String>,
}

impl Checked {
    /// Signed by one key and carrying another: the release that moves devices to a new key.
    pub fn is_carrier(&self) -> bool {
        matches!((&self.signed_by, &self.trusts), (Some(s), Some(t)) if s != t)
    }
}

impl Checked {
    /// The bytes that were checked.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// What they were checked for (channel, kind, version asked for).
    pub fn request(&self) -> &PublishRequest {
        &self.request
    }
}

/// Runs every check without storing anything (the app shows the result before the user confirms).
pub fn check(store: &Store, bytes: Vec<u8>, req: PublishRequest) -> Result<Checked, PublishError> {
    validate_channel(&req.channel)?;
    if bytes.is_empty() {
        return Err(PublishError::Empty);
    }
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(PublishError::TooLarge(bytes.len()));
    }
    // The channel as it is now, and what it serves: read once, for every check below.
    let channel = store.channel(&req.channel)?;
    let current = current_release(store, channel.as_ref())?;
    // The channel's setting: compress every ESP8266 sketch, or none (cores before 2.7.0).
    let policy = channel.as_ref().map(|c| c.gzip).unwrap_or_default();
    if policy == GzipPolicy::Never && (req.gzip || gzip::is_gzip(&bytes)) {
        return Err(PublishError::GzipNever(req.channel.clone()));
    }
    // With --gzip the plain image is kept: it is what the content checks read below. A channel
    // set to always compress leaves what eboot cannot unpack (ESP32, filesystems) as it is.
    let (bytes, plain) = if req.gzip {
        compressed(bytes, req.kind, true)?
    } else if policy == GzipPolicy::Always {
        compressed(bytes, req.kind, false)?
    } else {
        (bytes, None)
    };
    let info = match req.kind {
        PayloadKind::Sketch => {
            let info = image::inspect(&bytes)?;
            let problems = info.problems();
            if !problems.is_empty() {
                return Err(PublishError::Damaged(problems));
            }
            Some(info)
        }
        PayloadKind::Filesystem => None,
    };
    // What devices run is what is inside a gzip'd file: the content checks (secrets, synthetic
    // builds, trust settings) read that, or a compressed image would hide a baked password.
    let unpacked =
        plain.or_else(|| info.as_ref().filter(|i| i.gzip.is_some()).and_then(|_| gzip::unpack(&bytes).0));
    let contents = unpacked.as_deref().unwrap_or(&bytes);
    let version = choose_version(contents, info.as_ref(), req.version.as_deref())?;
    let mut warnings = check_contents(store, contents, &req, info.is_some())?;
    if req.sign_with.is_none() {
        if channel.as_ref().is_some_and(|c| c.require_signatures) {
            return Err(PublishError::SignatureRequired(req.channel.clone()));
        }
        if req.kind == PayloadKind::Sketch
            && let Some(key) = current.as_ref().and_then(|r| r.trusts.clone())
        {
            return Err(PublishError::FleetVerifies { channel: req.channel.clone(), key });
        }
    }
    let keys = match &req.sign_with {
        Some(keys) => keys.clone(),
        None => std::sync::Arc::new(signing::load(store.dir()).map_err(PublishError::Keys)?),
    };
    let family = info.as_ref().and_then(|i| i.chip).map(signature::family);
    let trusts = match family {
        Some(f) if req.kind == PayloadKind::Sketch => trusted_key(contents, f, &keys)?,
        _ => None,
    };
    let (bytes, info, signed_by) = match (&req.sign_with, family) {
        (Some(keys), _) => {
            let with = signing_key_for(current.as_ref(), &req.channel, family, keys)?;
            signed(bytes, info, with.as_deref())?
        }
        (None, Some(f)) => {
            let by = signed_by_project(&bytes, f, &keys);
            (bytes, info, by)
        }
        (None, None) => (bytes, info, None),
    };
    if family == Some(Family::Esp8266)
        && let Some(found) = signature::split(Family::Esp8266, &bytes)
        && gzip::is_gzip(found.body)
        && !found.body.len().is_multiple_of(4)
    {
        // Signed elsewhere (what OTA Forge signs it pads first: see gzip::pad_to_words).
        warnings.push(format!(
            "this gzip'd file is {} bytes, not a whole number of 32-bit words, and was signed as it is: \
             released ESP8266 cores (up to 3.1.2) hash it with word reads and refuse about three in four \
             such updates (esp8266/Arduino PR #9109). Publish the plain image with --gzip --sign instead",
            found.body.len()
        ));
    }
    if family == Some(Family::Esp8266)
        && signed_by.is_some()
        && gzip::is_gzip(&bytes)
        && let Some(current) = current.filter(|r| r.trusts.is_none())
    {
        return Err(PublishError::SignedGzipToKeyless {
            channel: req.channel.clone(),
            runs: current.version,
        });
    }
    let checked = Checked { bytes, request: req, image: info, version, warnings, signed_by, trusts };
    check_channel(store, &checked)?;
    Ok(checked)
}

/// The file gzip'd for eboot, with the plain image it came from, when it is a plain ESP8266
/// sketch image; left as it is (and no plain image) when it is gzip'd already, or when it is not
/// an ESP8266 sketch and compression was not `required` (else that is refused).
fn compressed(
    bytes: Vec<u8>,
    kind: PayloadKind,
    required: bool,
) -> Result<(Vec<u8>, Option<Vec<u8>>), PublishError> {
    if gzip::is_gzip(&bytes) {
        return Ok((bytes, None));
    }
    let info = image::inspect(&bytes)?;
    if kind != PayloadKind::Sketch || info.chip != Some(otaforge_firmware::chip::Chip::Esp8266) {
        return if required { Err(PublishError::GzipNotForThis) } else { Ok((bytes, None)) };
    }
    let problems = info.problems();
    if !problems.is_empty() {
        return Err(PublishError::Damaged(problems));
    }
    Ok((gzip::compress(&bytes), Some(bytes)))
}

/// The key the image's firmware verifies updates with, refused when it is not the project's
/// current key: devices that install it could never be updated from here again.
fn trusted_key(contents: &[u8], family: Family, keys: &Keys) -> Result<Option<String>, PublishError> {
    let Some(key) = signature::trusted_key(contents, family, &keys.all_public(family)) else {
        return Ok(None);
    };
    let fp = key.fingerprint();
    match keys.signer(&fp) {
        Signer::Current => Ok(Some(fp)),
        Signer::Retired => Err(PublishError::TrustsRetiredKey(fp)),
        Signer::Unknown => Err(PublishError::TrustsUnknownKey(fp)),
    }
}

/// Which key signs: the one the firmware the channel serves now verifies with (after a key
/// rotation that is the retired key, and this release is the carrier), else the current key.
/// `None` with no key to sign with (the caller says so).
fn signing_key_for<'k>(
    current: Option<&Release>,
    channel: &str,
    family: Option<Family>,
    keys: &'k Keys,
) -> Result<Option<signing::KeyRef<'k>>, PublishError> {
    let Some(family) = family else { return Ok(None) };
    let fleet = current
        .filter(|r| r.chip.as_deref().map(Family::of_chip_name) == Some(family))
        .and_then(|r| r.trusts.clone());
    if let Some(fp) = fleet {
        return match keys.private(family, &fp).map_err(PublishError::Keys)? {
            Some(key) => Ok(Some(key)),
            None => Err(PublishError::FleetKeyMissing { channel: channel.into(), key: fp }),
        };
    }
    Ok(keys.current(family).map(signing::KeyRef::Current))
}

/// The channel's current sketch release.
fn current_release(
    store: &Store,
    channel: Option<&otaforge_store::Channel>,
) -> Result<Option<Release>, PublishError> {
    Ok(channel.and_then(|c| c.current_sketch).map(|id| store.release(id)).transpose()?)
}

/// Whether a sketch published to `channel` must be signed: the channel requires it, or the
/// firmware it serves now verifies signatures. The CLI signs without being asked then; the app
/// offers signing checked.
pub fn signing_needed(store: &Store, channel: &str) -> Result<bool, PublishError> {
    let c = store.channel(channel)?;
    Ok(c.as_ref().is_some_and(|c| c.require_signatures)
        || current_release(store, c.as_ref())?.is_some_and(|r| r.trusts.is_some()))
}

/// The fingerprint of the project key (current or retired) whose signature the file ends with.
fn signed_by_project(bytes: &[u8], family: Family, keys: &Keys) -> Option<String> {
    let found = signature::split(family, bytes)?;
    keys.all_public(family)
        .into_iter()
        .find(|k| k.verify(found.body, found.signature))
        .map(|k| k.fingerprint())
}

/// A file after signing: its bytes, its inspection, and the signer's fingerprint.
type SignedFile = (Vec<u8>, Option<ImageInfo>, Option<String>);

/// The file with the family's signature by `key` appended (see [`signature`]), or as it is when
/// that key already signed it.
fn signed(
    bytes: Vec<u8>,
    info: Option<ImageInfo>,
    key: Option<&signing::PrivateKey>,
) -> Result<SignedFile, PublishError> {
    let Some(mut info) = info else { return Err(PublishError::SignNotForThis) };
    let family = if info.chip.is_some_and(|c| c.is_esp8266()) { Family::Esp8266 } else { Family::Esp32 };
    let key = key.ok_or(PublishError::NoSigningKey(family))?;
    let fp = key.public().fingerprint();
    if let Some(found) = signature::split(family, &bytes) {
        return if key.public().verify(found.body, found.signature) {
            Ok((bytes, Some(info), Some(fp)))
        } else {
            Err(PublishError::SignedByOther(family))
        };
    }
    // The ESP8266 Updater hashes in 32-bit words: a gzip'd file is padded to whole words first.
    let bytes = if family == Family::Esp8266 { gzip::pad_to_words(bytes) } else { bytes };
    let signed = signature::sign(&bytes, key).map_err(|e| PublishError::Sign(e.to_string()))?;
    info.signature_len = Some(signed.len() - bytes.len());
    info.size = signed.len();
    Ok((signed, Some(info), Some(fp)))
}

/// What the channel allows now: a newer version than it serves, for the same chip. Run again at
/// [`publish`], since the channel may have moved on since the check.
fn check_channel(store: &Store, checked: &Checked) -> Result<(), PublishError> {
    let req = &checked.request;
    let Some(channel) = store.channel(&req.channel)? else { return Ok(()) };
    let current = match req.kind {
        PayloadKind::Sketch => channel.current_sketch,
        PayloadKind::Filesystem => channel.current_fs,
    };
    let Some(id) = current else { return Ok(()) };
    let current = store.release(id)?;
    if let Ok(cv) = Version::parse(&current.version)
        && checked.version <= cv
    {
        return Err(PublishError::NotNewer {
            new: checked.version.to_string(),
            current: current.version,
            channel: req.channel.clone(),
        });
    }
    // Exact chip, not family: an ESP32 image does not boot on an ESP32-C3, and the devices'
    // headers do not say which ESP32 they are.
    let new_chip = checked.image.as_ref().and_then(|i| i.chip).map(|c| c.name().to_string());
    if let (Some(new), Some(old)) = (new_chip, current.chip)
        && new != old
    {
        return Err(PublishError::WrongChip { channel: req.channel.clone(), current: old, new });
    }
    Ok(())
}

/// What is inside the image: secrets, a synthetic build, trust settings devices cannot use.
fn check_contents(
    store: &Store,
    bytes: &[u8],
    req: &PublishRequest,
    app: bool,
) -> Result<Vec<String>, PublishError> {
    let dir = store.dir();
    if is_synthetic(bytes) && !is_demo_channel(&req.channel) {
        return Err(PublishError::Synthetic(req.channel.clone()));
    }
    let baked = if app { config_block::read(bytes).ok().flatten() } else { None };
    if let Some(b) = &baked
        && let Some(what) = device_settings_in(b)
    {
        return Err(PublishError::DeviceSettings(what));
    }
    if baked_secrets::contains_baked_password(dir, bytes) {
        return Err(PublishError::Password);
    }
    if !app {
        return Ok(Vec::new());
    }
    Ok(trust::check(dir, bytes, baked.as_ref(), &req.channel)?)
}

/// Which device settings a baked block holds, in words (never the password itself).
fn device_settings_in(b: &BakedSettings) -> Option<String> {
    let mut what = Vec::new();
    if !b.device_name.is_empty() {
        what.push(format!("device name \"{}\"", b.device_name));
    }
    if !b.wifi_ssid.is_empty() {
        what.push(format!("Wi-Fi network \"{}\"", b.wifi_ssid));
    }
    if !b.wifi_password.is_empty() {
        what.push("a Wi-Fi password".into());
    }
    (!what.is_empty()).then(|| what.join(", "))
}

/// Stores what [`check`] passed, exactly those bytes, as the channel's current release (the
/// channel's rules are checked again: another publish may have come first).
pub fn publish(store: &mut Store, checked: &Checked) -> Result<Release, PublishError> {
    check_channel(store, checked)?;
    let bytes = checked.bytes();
    let release = store.publish(NewRelease {
        channel: checked.request.channel.clone(),
        kind: checked.request.kind,
        version: checked.version.to_string(),
        chip: checked.image.as_ref().and_then(|i| i.chip).map(|c| c.name().to_string()),
        bytes,
        md5: image::md5_hex(bytes),
        md5_normalized: image::normalized_md5(bytes),
        flash_size: checked.image.as_ref().and_then(|i| i.flash_size_bytes),
        file_name: checked.request.file_name.clone(),
        notes: checked.request.notes.clone(),
        signed_by: checked.signed_by.clone(),
        trusts: checked.trusts.clone(),
    })?;
    Ok(release)
}

/// [`check`] then [`publish`], for callers with nothing to show in between (the CLI, the demo).
pub fn check_and_publish(
    store: &mut Store,
    bytes: Vec<u8>,
    req: PublishRequest,
) -> Result<Release, PublishError> {
    let checked = check(store, bytes, req)?;
    publish(store, &checked)
}

/// "ESP8266" or "ESP32" (all ESP32-family chips share the HTTPUpdate protocol).
pub fn family(chip_name: &str) -> &'static str {
    if chip_name.eq_ignore_ascii_case("ESP8266") { "ESP8266" } else { "ESP32" }
}
