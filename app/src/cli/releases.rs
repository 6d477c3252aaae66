//! `otaforge publish`, `releases`, `rollout`.

use otaforge_pki::signing::short;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use otaforge_actions::channels::{self, Channels, UnknownChannel};
use otaforge_actions::publish::{self as publish, PublishRequest};
use otaforge_protocol::DEFAULT_CHANNEL;
use otaforge_server::device::parse_mac;
use otaforge_store::{PayloadKind, RowKey, Store};

/// `otaforge publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The firmware file (.bin) to publish.
    pub file: PathBuf,
    /// Version devices will be told (SemVer or dotted numbers); ESP32 images carry one already.
    #[arg(long)]
    pub version: Option<String>,
    /// Channel: devices poll <path>/<channel> (the default channel also at <path> itself). One
    /// that does not exist yet is refused unless --create.
    #[arg(long, default_value = DEFAULT_CHANNEL)]
    pub channel: String,
    /// Start the channel with this release when it does not exist yet (without it, a mistyped
    /// name is refused instead of becoming a channel no device polls).
    #[arg(long)]
    pub create: bool,
    /// Notes shown with the release.
    #[arg(long, default_value = "")]
    pub notes: String,
    /// Publish a filesystem image (served to x-ESP8266-mode: spiffs) instead of a sketch.
    #[arg(long)]
    pub filesystem: bool,
    /// Compress an ESP8266 sketch with gzip before publishing: devices download a third less and
    /// eboot unpacks it (ESP8266 core 2.7.0 or newer; devices on an older core need one plain
    /// update first).
    #[arg(long, conflicts_with = "filesystem")]
    pub gzip: bool,
    /// Sign with the project's signing key for the image's family (otaforge key new), after
    /// compressing; an image already signed by it is checked instead.
    #[arg(long)]
    pub sign: bool,
}

/// `otaforge rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Channel to change; one that does not exist is refused unless --create.
    #[arg(long, default_value = DEFAULT_CHANNEL)]
    pub channel: String,
    /// Make the channel when it does not exist (empty until its first release: set its rollout,
    /// credentials or signature rule first), or let --promote copy a release into a new one.
    #[arg(long)]
    pub create: bool,
    /// Share of devices (0-100, by a stable hash of their MAC) offered the current release.
    #[arg(long)]
    pub percent: Option<u8>,
    /// Stop offering the current release.
    #[arg(long, conflicts_with = "resume")]
    pub pause: bool,
    /// Offer it again.
    #[arg(long)]
    pub resume: bool,
    /// Make release ID the channel's current one (or copy it to --channel from another channel).
    #[arg(long, value_name = "ID")]
    pub promote: Option<i64>,
    /// Go back to the release before the current one.
    #[arg(long)]
    pub rollback: bool,
    /// Require HTTP Basic credentials with this user name on the channel ("-" removes them). The
    /// password is read from --auth-password-file, else $OTAFORGE_AUTH_PASSWORD, else asked for on
    /// the terminal: never from the command line, where every user of the machine can see it.
    #[arg(long, value_name = "USER")]
    pub auth: Option<String>,
    /// File holding the channel password (its first line; "-" reads standard input).
    #[arg(long, value_name = "FILE", requires = "auth")]
    pub auth_password_file: Option<PathBuf>,
    /// Allow only listed MACs to update (repeatable); everyone is allowed while the list is empty.
    #[arg(long, value_name = "MAC")]
    pub allow: Vec<String>,
    /// Remove a MAC from the allow-list.
    #[arg(long, value_name = "MAC")]
    pub disallow: Vec<String>,
    /// Take only releases signed by this project's key from now on: publish signs them (or checks
    /// the signature they carry) and refuses unsigned or badly signed files.
    #[arg(long, conflicts_with = "allow_unsigned")]
    pub require_signatures: bool,
    /// Take unsigned releases again.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Compress the channel's ESP8266 releases: "always" gzips every sketch published here (eboot
    /// unpacks it; cores 2.7.0 and later), "never" refuses and never serves gzip'd files (devices
    /// on older cores), "per-publish" leaves it to publish --gzip.
    #[arg(long, value_enum, value_name = "WHEN")]
    pub gzip: Option<GzipArg>,
}

pub(super) fn publish_file(dir: &Path, args: PublishArgs) -> Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut store = Store::open(dir)?;
    let channel = channels::channel_or_default(&args.channel).to_string();
    let sign = args.sign || needs_signing(&store, &channel, args.filesystem)?;
    let req = PublishRequest {
        channel: channel.clone(),
        kind: if args.filesystem { PayloadKind::Filesystem } else { PayloadKind::Sketch },
        version: args.version,
        notes: args.notes,
        file_name: args.file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        gzip: args.gzip,
        sign_with: if sign { Some(std::sync::Arc::new(otaforge_pki::signing::load(dir)?)) } else { None },
    };
    let checked = publish::check(&store, bytes, req)?;
    // What is wrong with the file first; then the channel, before anything is stored.
    let known = Channels::of(&store)?;
    if !known.exists(&channel) && !args.create {
        bail!(UnknownChannel::new(
            &channel,
            &known.all(),
            format!(
                "Check the name, or start it with this release: otaforge publish {} --channel {channel} --create",
                args.file.display()
            ),
        ));
    }
    for w in &checked.warnings {
        eprintln!("warning: {w}");
    }
    let release = publish::publish(&mut store, &checked)?;
    if let Some(g) = checked.image.as_ref().and_then(|i| i.gzip.as_ref())
        && let (Some(unpacked), Some(saved)) = (g.unpacked_len, g.percent_saved(checked.bytes().len()))
    {
        println!(
            "gzip'd: {} bytes on the wire instead of {unpacked} ({saved:.0}% less); needs ESP8266 core 2.7.0 or newer",
            release.size
        );
    }
    if let Some(by) = &checked.signed_by {
        let trailer = checked.image.as_ref().and_then(|i| i.signature_len).unwrap_or(0);
        println!(
            "signed by key {}: {trailer}-byte signature trailer, checked as the device checks it",
            short(by)
        );
    }
    match (&checked.signed_by, &checked.trusts) {
        (Some(by), Some(trusts)) if by != trusts => println!(
            "carrier release: signed by key {} (replaced), which the devices on \"{}\" verify with, and carries \
             key {}: once they run it, releases signed by the current key reach them",
            short(by),
            release.channel,
            short(trusts)
        ),
        (_, Some(trusts)) => {
            println!("devices that install it accept only updates signed by key {}", short(trusts))
        }
        _ => {}
    }
    println!(
        "Published #{} {} on \"{}\": {} bytes, {}, MD5 {}",
        release.id,
        release.version,
        release.channel,
        release.size,
        release.chip.as_deref().unwrap_or("filesystem image"),
        release.md5
    );
    Ok(())
}

/// Publishing signs without being asked on a channel that requires signatures (the user asked
/// once, with `rollout --require-signatures`) and on one whose current firmware verifies them
/// (an unsigned release would reach none of its devices).
fn needs_signing(store: &Store, channel: &str, filesystem: bool) -> Result<bool> {
    Ok(if filesystem {
        requires_signatures(store, channel)?
    } else {
        publish::signing_needed(store, channel)?
    })
}

fn requires_signatures(store: &Store, channel: &str) -> Result<bool> {
    Ok(store.channel(channel)?.is_some_and(|c| c.require_signatures))
}

/// `rollout --gzip`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GzipArg {
    /// Every ESP8266 sketch published to the channel is compressed.
    Always,
    /// None is: the channel's devices run cores older than 2.7.0.
    Never,
    /// As each publish says.
    PerPublish,
}

/// "signed by / verifies with": each as a short fingerprint with "(old)" for a replaced key and
/// "(?)" for one this project does not have; "-" for none.
fn key_column(keys: &otaforge_pki::signing::Keys, r: &otaforge_store::Release) -> String {
    let name = |fp: &Option<String>| match fp {
        None => "-".to_string(),
        Some(fp) => {
            let tag = match keys.signer(fp) {
                otaforge_pki::signing::Signer::Current => "",
                otaforge_pki::signing::Signer::Retired => " (old)",
                otaforge_pki::signing::Signer::Unknown => " (?)",
            };
            format!("{}{tag}", &fp[..fp.len().min(8)])
        }
    };
    format!("{} / {}", name(&r.signed_by), name(&r.trusts))
}

pub(super) fn releases(dir: &Path, channel: Option<&str>) -> Result<()> {
    let store = Store::open(dir)?;
    let channel = channel.map(channels::channel_or_default);
    if let Some(name) = channel {
        let known = Channels::of(&store)?;
        if !known.exists(name) {
            bail!(UnknownChannel::new(
                name,
                &known.all(),
                "Check the name (otaforge releases lists them all).".into()
            ));
        }
    }
    // Rows that cannot be read are reported and left out; the rest is listed.
    let (channels, bad_channels) = store.read_channels()?;
    let (releases, bad_releases) = store.read_releases(channel)?;
    let bad_channels: Vec<_> = bad_channels
        .into_iter()
        .filter(|b| channel.is_none_or(|n| b.key == RowKey::Channel(n.to_string())))
        .collect();
    if releases.is_empty() && bad_releases.is_empty() && bad_channels.is_empty() {
        println!("No releases yet: otaforge publish FILE --version V");
        return Ok(());
    }
    for bad in bad_channels.iter().chain(&bad_releases) {
        eprintln!(
            "warning: {bad}: it is left out{}. Fix that column, or restore otaforge.db from a backup",
            if matches!(bad.key, RowKey::Channel(_)) { ", and its devices are offered nothing" } else { "" }
        );
    }
    for c in channels.iter().filter(|c| channel.is_none_or(|n| n == c.name)) {
        let mut state = if c.paused { ", paused".to_string() } else { String::new() };
        for id in [c.current_sketch, c.current_fs].into_iter().flatten() {
            if bad_releases.iter().any(|b| b.key == RowKey::Release(id)) {
                state.push_str(&format!(
                    ", serves release #{id}, which cannot be read: devices are offered nothing"
                ));
            }
        }
        println!(
            "Channel \"{}\": rollout {}%{state}{}",
            c.name,
            c.rollout_percent,
            if c.auth.is_some() { ", credentials required" } else { "" }
        );
    }
    let keys = otaforge_pki::signing::load(dir)?;
    println!(
        "{:>4}  {:<10} {:<12} {:<10} {:<10} {:>9}  {:<32}  {:<26}  published",
        "id", "channel", "version", "kind", "chip", "bytes", "md5", "signed by / verifies with"
    );
    let mut disabled = false;
    for r in releases {
        let current = channels.iter().any(|c| c.current_sketch == Some(r.id) || c.current_fs == Some(r.id));
        let published = time::OffsetDateTime::from_unix_timestamp(r.published_at)
            .map(|t| t.date().to_string())
            .unwrap_or_default();
        println!(
            "{:>4}{} {:<10} {:<12} {:<10} {:<10} {:>9}  {}  {:<26}  {published}",
            r.id,
            if current { "*" } else { " " },
            r.channel,
            r.version,
            match r.kind {
                PayloadKind::Sketch => "sketch",
                PayloadKind::Filesystem => "filesystem",
            },
            r.chip.as_deref().unwrap_or("-"),
            r.size,
            r.md5,
            key_column(&keys, &r)
        );
        // What a channel serves is read and hashed, as the server does; the history only glanced at.
        if current {
            if let Err(problem) = store.blobs().check(&r.sha256, r.size) {
                disabled = true;
                println!(
                    "      disabled: {problem}; devices on \"{}\" are told 304 until the file is restored \
                     from a backup or another release is made current (otaforge rollout --rollback, or \
                     publish a newer one)",
                    r.channel
                );
            }
        } else if let Err(problem) = store.blobs().glance(&r.sha256, r.size) {
            println!("      {problem}: it cannot be made current again until it is restored");
        }
    }
    println!(
        "(* = what the channel serves now{})",
        if disabled { "; disabled = what it cannot" } else { "" }
    );
    Ok(())
}

/// The environment variable `rollout --auth` reads the channel password from.
pub const AUTH_PASSWORD_ENV: &str = "OTAFORGE_AUTH_PASSWORD";

/// The channel password and where it came from: a file, the environment, or the terminal.
fn channel_password(file: Option<&Path>, user: &str, channel: &str) -> Result<(String, String)> {
    let prompt = format!("Password for \"{user}\" on channel \"{channel}\": ");
    let Some((password, source)) = super::secret::read_secret(file, AUTH_PASSWORD_ENV, &prompt, true)? else {
        bail!(
            "no password for --auth {user}: put it in a file (--auth-password-file FILE), in \
             {AUTH_PASSWORD_ENV}, or run this in a terminal to be asked for it"
        );
    };
    if password.is_empty() {
        bail!("the password ({source}) is empty: an empty password protects nothing");
    }
    Ok((password, source))
}

pub(super) fn rollout(dir: &Path, mut args: RolloutArgs) -> Result<()> {
    args.channel = channels::channel_or_default(&args.channel).to_string();
    let mut store = Store::open(dir)?;
    // A channel comes into being with its first release, or with --create; a mistyped name here
    // would otherwise make an empty channel that no device is ever sent to.
    let known = Channels::of(&store)?;
    // Promoting a release into the default or demo channel, which always exist, is no typo.
    let promoted_into_implicit = args.promote.is_some() && channels::always_exists(&args.channel);
    if !known.is_stored(&args.channel) && !args.create && !promoted_into_implicit {
        let stored: Vec<&str> = known.stored.iter().map(String::as_str).collect();
        bail!(UnknownChannel::new(
            &args.channel,
            &stored,
            format!(
                "Check the name. A channel starts with its first release (otaforge publish FILE --channel {0} \
                 --create); add --create here to make it empty now, or to promote a release into it",
                args.channel
            ),
        ));
    }
    let creating = !known.is_stored(&args.channel) && args.promote.is_none();
    // The channel and the password before anything: a refused or mistyped one changes nothing.
    let credentials = match args.auth.as_deref() {
        None | Some("-") => None,
        Some(user) if user.contains(':') => bail!(
            "--auth takes only the user name: a password on the command line is visible to every user \
             of this machine (ps, shell history). Give it with --auth-password-file FILE, in \
             {AUTH_PASSWORD_ENV}, or type it when asked"
        ),
        Some("") => bail!("--auth needs a user name"),
        Some(user) => {
            Some((user, channel_password(args.auth_password_file.as_deref(), user, &args.channel)?))
        }
    };
    if let Some(id) = args.promote {
        let r = store.promote(id, Some(&args.channel))?;
        println!("\"{}\" now serves #{} {}", r.channel, r.id, r.version);
    }
    if args.rollback {
        let r = store.roll_back(&args.channel)?;
        println!("Rolled back: \"{}\" now serves #{} {}", r.channel, r.id, r.version);
    }
    if let Some((user, (password, source))) = &credentials {
        store.set_auth(&args.channel, Some((user, password)))?;
        println!(
            "Channel \"{}\": devices must now send HTTP Basic credentials, user \"{user}\" and the \
             password {source} (stored as a salted Argon2 hash)",
            args.channel
        );
    } else if args.auth.as_deref() == Some("-") {
        store.set_auth(&args.channel, None)?;
        println!("Channel \"{}\": no credentials required any more", args.channel);
    }
    for (list, allowed) in [(&args.allow, true), (&args.disallow, false)] {
        for raw in list {
            let mac = parse_mac(raw).with_context(|| format!("\"{raw}\" is not a MAC address"))?;
            store.set_allowed(&mac, allowed)?;
        }
    }
    let paused = match (args.pause, args.resume) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    if let Some(when) = args.gzip {
        let policy = match when {
            GzipArg::Always => otaforge_store::GzipPolicy::Always,
            GzipArg::Never => otaforge_store::GzipPolicy::Never,
            GzipArg::PerPublish => otaforge_store::GzipPolicy::PerPublish,
        };
        store.set_gzip(&args.channel, policy)?;
        println!(
            "Channel \"{}\": {}",
            args.channel,
            match when {
                GzipArg::Always => "every ESP8266 release is gzip'd at publish (needs core 2.7.0 or newer)",
                GzipArg::Never => "takes no gzip'd images and serves none (for cores older than 2.7.0)",
                GzipArg::PerPublish => "gzip'd when publish --gzip asks",
            }
        );
    }
    if args.require_signatures || args.allow_unsigned {
        store.set_require_signatures(&args.channel, args.require_signatures)?;
        println!(
            "Channel \"{}\": {}",
            args.channel,
            if args.require_signatures {
                "takes only releases signed by this project's key (publish signs them)"
            } else {
                "takes unsigned releases again"
            }
        );
    }
    let c = store.set_rollout(&args.channel, args.percent, paused)?;
    if creating {
        println!("Created channel \"{}\": empty until its first release", c.name);
    }
    let allowed = store.allowed_macs()?;
    println!(
        "Channel \"{}\": rollout {}%{}; {}",
        c.name,
        c.rollout_percent,
        if c.paused { ", paused" } else { "" },
        if allowed.is_empty() {
            "every device may update".to_string()
        } else {
            format!("only {} listed device(s) may update", allowed.len())
        }
    );
    Ok(())
}
