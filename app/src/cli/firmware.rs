//! `otaforge inspect` and `otaforge bake`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use otaforge_actions::channels::{self, Channels, UnknownChannel};
use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::settings::{self, BakeForm};
use otaforge_firmware::{ImageInfo, inspect, source};
use otaforge_store::Store;

/// `otaforge bake`: settings from these options, the CA from the project.
#[derive(Debug, Args)]
pub struct BakeArgs {
    /// Write ota_config.h into this sketch folder (bake from source).
    #[arg(long, value_name = "DIR", conflicts_with = "image")]
    pub sketch: Option<PathBuf>,
    /// Build the sketch afterwards with arduino-cli or PlatformIO (needs --board).
    #[arg(long, requires = "sketch", requires = "board")]
    pub build: bool,
    /// Board: an FQBN for arduino-cli (esp8266:esp8266:nodemcuv2) or a PlatformIO environment.
    #[arg(long)]
    pub board: Option<String>,
    /// Write the settings into this prebuilt reference .bin (no compiler needed)…
    #[arg(long, value_name = "IN.bin", requires = "out")]
    pub image: Option<PathBuf>,
    /// …and save the result here.
    #[arg(long, value_name = "OUT.bin")]
    pub out: Option<PathBuf>,
    /// Update-server host (default: the first name in the server certificate).
    #[arg(long)]
    pub host: Option<String>,
    /// HTTPS port.
    #[arg(long, default_value_t = otaforge_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Update path.
    #[arg(long, default_value = otaforge_protocol::DEFAULT_PATH)]
    pub path: String,
    /// Channel the devices poll (<path>/<channel>). One that does not exist yet is refused
    /// unless --create: devices baked for it would be answered "no such channel".
    #[arg(long, default_value = otaforge_protocol::DEFAULT_CHANNEL)]
    pub channel: String,
    /// Make the channel (empty until its first release) when it does not exist yet.
    #[arg(long)]
    pub create: bool,
    /// Firmware version the device reports (default for --image: the version the image carries).
    #[arg(long)]
    pub version: Option<String>,
    /// Device name. An image baked with one is for that board alone and cannot be published:
    /// give boards their names with `otaforge flash --device-name` or `otaforge provision`.
    #[arg(long, default_value = "")]
    pub device_name: String,
    /// Seconds between update checks.
    #[arg(long, default_value_t = 3600)]
    pub poll_interval: u32,
    /// BearSSL receive buffer (ESP8266): 512..16384.
    #[arg(long, default_value_t = 16384)]
    pub tls_rx: u16,
    /// BearSSL send buffer (ESP8266): 512..16384.
    #[arg(long, default_value_t = 512)]
    pub tls_tx: u16,
    /// Wi-Fi network built in (boards provisioned with their own keep theirs).
    #[arg(long, default_value = "")]
    pub wifi_ssid: String,
    /// File holding its password (first line); else $OTAFORGE_WIFI_PASSWORD, else a prompt. Never
    /// needed: `otaforge provision` gives boards their Wi-Fi without putting it in firmware.
    #[arg(long, value_name = "FILE", requires = "wifi_ssid")]
    pub wifi_password_file: Option<PathBuf>,
    /// The built-in network is open: no password.
    #[arg(long, requires = "wifi_ssid", conflicts_with = "wifi_password_file")]
    pub open_network: bool,
    /// Refused: a password on the command line is visible to every user of the machine.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    pub wifi_password: Option<String>,
    /// Leave the project's signing key out: the firmware then installs unsigned updates. (With a
    /// key, `otaforge bake` puts its public half in and the firmware installs only signed ones.)
    #[arg(long)]
    pub no_signing_key: bool,
}

pub(super) fn inspect_file(dir: &Path, file: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let info = inspect(&bytes)?;
    let signed = signature_line(dir, &info, &bytes);
    let config = config_block::read(&bytes);
    let virtual_only = otaforge_firmware::virtual_only::is_virtual_only(&bytes);
    if json {
        let cfg = match &config {
            Ok(Some(s)) => serde_json::json!({ "baked": true, "settings": redacted(s) }),
            Ok(None) => serde_json::json!({ "baked": false }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "image": info, "config_block": cfg, "signature": signed, "virtual_boards_only": virtual_only
            }))?
        );
    } else {
        print_info(&info);
        if virtual_only {
            use otaforge_firmware::virtual_only::{VIRTUAL_BOARDS_ONLY, WHY};
            println!("Runs on:    {VIRTUAL_BOARDS_ONLY}: {WHY}");
        }
        if let Some(line) = &signed {
            println!("Signed:     {line}");
        }
        match &config {
            Ok(Some(s)) => println!(
                "Config:     baked: {}:{}{} version {} name \"{}\", channel \"{}\"{}, CA {} bytes, Wi-Fi {}",
                s.host,
                s.port,
                s.path,
                s.version,
                s.device_name,
                s.channel_name(),
                if s.channel.is_empty() {
                    " (polled at the path itself: baked before it had a name)"
                } else {
                    ""
                },
                s.ca_pem.len(),
                if s.wifi_ssid.is_empty() { "as built".to_string() } else { format!("\"{}\"", s.wifi_ssid) }
            ),
            Ok(None) => println!("Config:     block present, not baked (the firmware uses its ota_config.h)"),
            Err(e) => println!("Config:     {e}"),
        }
    }
    if !info.is_valid() {
        bail!("the image is damaged: {}", info.problems().join("; "));
    }
    Ok(())
}

fn redacted(s: &BakedSettings) -> BakedSettings {
    let mut s = s.clone();
    s.channel = s.channel_name().to_string();
    if !s.wifi_password.is_empty() {
        s.wifi_password = "(set)".into();
    }
    s
}

fn print_info(i: &ImageInfo) {
    println!("Format:     {}", i.format.name());
    println!("Chip:       {}", i.chip.map(|c| c.name()).unwrap_or("unknown"));
    if let (Some(mode), Some(code)) = (i.flash_mode, i.flash_size_code) {
        let size =
            i.flash_size_bytes.map(|b| format!("{} MB", b as f64 / 1048576.0)).unwrap_or("unknown".into());
        println!(
            "Flash:      {} mode, {size} (code {code}), freq code {}",
            mode.name(),
            i.flash_freq_code.unwrap_or(0)
        );
    }
    if let Some(e) = i.entry {
        println!("Entry:      {e:#010x}");
    }
    for (n, s) in i.segments.iter().enumerate() {
        println!("Segment {n}:  {:#010x}, {} bytes at file offset {:#x}", s.load_addr, s.len, s.file_offset);
    }
    let yn = |b: Option<bool>| match b {
        Some(true) => "valid",
        Some(false) => "INVALID",
        None => "none",
    };
    println!("Checksum:   {}", yn(i.checksum_valid));
    println!("SHA-256:    {} (appended digest)", yn(i.sha256_valid));
    if let Some(a) = &i.arduino {
        println!(
            "Arduino:    length {} ({}), CRC {:#010x} ({})",
            a.stored_len,
            if a.len_valid { "valid" } else { "INVALID" },
            a.stored_crc,
            if a.crc_valid { "valid" } else { "INVALID" }
        );
    }
    if let Some(d) = &i.app_desc {
        println!(
            "App:        {} {} (ESP-IDF {}, built {} {})",
            d.project_name, d.version, d.idf_version, d.date, d.time
        );
    }
    if let Some(n) = i.signature_len {
        println!("Signature:  {n} bytes appended");
    }
    println!("Size:       {} bytes", i.size);
    println!("MD5:        {}  (what a device reports after flashing this file)", i.md5);
    println!("SHA-256:    {}", i.sha256);
    for w in &i.warnings {
        println!("Note:       {w}");
    }
    for p in i.problems() {
        println!("Problem:    {p}");
    }
}

impl BakeArgs {
    fn form(&self) -> Result<BakeForm> {
        let wifi_password = if self.wifi_ssid.is_empty() || self.open_network {
            String::new()
        } else {
            super::flash::wifi_password(self.wifi_password_file.as_deref(), &self.wifi_ssid)?
        };
        Ok(BakeForm {
            host: self.host.clone().unwrap_or_default(),
            port: self.port,
            path: self.path.clone(),
            channel: channels::channel_or_default(self.channel.trim()).to_string(),
            version: self.version.clone().unwrap_or_default(),
            device_name: self.device_name.clone(),
            poll_interval_s: self.poll_interval,
            tls_rx_buffer: self.tls_rx,
            tls_tx_buffer: self.tls_tx,
            wifi_ssid: self.wifi_ssid.clone(),
            wifi_password,
            no_signing_key: self.no_signing_key,
        })
    }
}

pub(super) fn bake(dir: &Path, args: BakeArgs) -> Result<()> {
    if args.wifi_password.is_some() {
        bail!(super::flash::PASSWORD_ON_COMMAND_LINE);
    }
    let create = channel_to_create(dir, channels::channel_or_default(args.channel.trim()), args.create)?;
    let form = args.form()?;
    if let Some(sketch) = &args.sketch {
        if form.version.trim().is_empty() {
            bail!("give the firmware version (--version 1.0.0): devices report it to the server");
        }
        let settings = settings::baked_settings(dir, &form, true)?;
        let keys = settings::sketch_keys(dir, &form)?;
        let written = source::write_sketch_config(sketch, &settings, &keys)?;
        for w in &written {
            println!("Wrote {}", w.display());
        }
        if keys.is_empty() {
            println!(
                "No signing key compiled in: the firmware installs updates without checking a signature."
            );
        } else {
            println!(
                "Compiled in the project's public signing key: the firmware installs only updates signed by it."
            );
        }
        if let Some(channel) = &create {
            create_channel(dir, channel)?;
        }
        if args.build {
            let board =
                args.board.as_deref().context("--build needs --board (e.g. esp8266:esp8266:nodemcuv2)")?;
            let tc = source::find_toolchain().ok_or(source::SourceError::NoToolchain)?;
            let never = std::sync::atomic::AtomicBool::new(false);
            let bin = source::build(&tc, sketch, board, &mut |line| println!("  {line}"), &never)?;
            println!("Built {}", bin.display());
        } else if source::find_toolchain().is_none() {
            println!(
                "No arduino-cli or PlatformIO on PATH: build in the Arduino IDE, or install one (see device-firmware/README.md)."
            );
        }
        return Ok(());
    }
    let (Some(input), Some(out)) = (&args.image, &args.out) else {
        bail!("say what to bake: --sketch DIR, or --image IN.bin --out OUT.bin");
    };
    let bytes = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let (baked, settings) = settings::bake_image(dir, &bytes, &form)?;
    // Owner-only: the image may now hold a Wi-Fi password.
    otaforge_project::write_atomic(out, &baked, otaforge_project::Secrecy::Secret)
        .with_context(|| format!("cannot write {}", out.display()))?;
    if let Some(channel) = &create {
        create_channel(dir, channel)?;
    }
    let info = inspect(&baked)?;
    println!(
        "Wrote {} ({} bytes, MD5 {}): every checksum fixed, settings baked:",
        out.display(),
        info.size,
        info.md5
    );
    println!(
        "  https://{}:{}{}{}  version {}  name \"{}\"",
        settings.host,
        settings.port,
        settings.path,
        if settings.channel.is_empty() { String::new() } else { format!("/{}", settings.channel) },
        settings.version,
        settings.device_name
    );
    if settings.signing_key.is_empty() {
        let keys = otaforge_pki::signing::load(dir)?;
        let why = if args.no_signing_key {
            "left out (--no-signing-key)"
        } else if keys.current.is_empty() {
            "none (this project has no signing key: otaforge key new)"
        } else {
            "none (this firmware's config block is format 1, without room for one: rebuild it from device-firmware/)"
        };
        println!("  signing key: {why}; the firmware installs unsigned updates");
    } else {
        let fp = otaforge_pki::signing::fingerprint(&settings.signing_key);
        println!(
            "  signing key {}: the firmware installs only updates signed by it (otaforge publish signs them)",
            otaforge_pki::signing::short(&fp)
        );
    }
    if !settings.device_name.is_empty() || !settings.wifi_ssid.is_empty() {
        println!(
            "  This image holds one board's own settings (name, Wi-Fi): flash it to that board only. It cannot be \
             published; give boards their settings with otaforge flash --device-name … or otaforge provision."
        );
    }
    Ok(())
}

/// The channel to create once the firmware is baked: `None` when it exists (the default and demo
/// channels always do). One that does not is refused unless `create`: firmware polling a channel
/// nothing serves would be told "no such channel" at every check.
fn channel_to_create(dir: &Path, channel: &str, create: bool) -> Result<Option<String>> {
    if channels::always_exists(channel) {
        return Ok(None);
    }
    otaforge_store::validate_channel(channel)?;
    let known = Channels::of(&Store::open(dir)?)?;
    match (known.exists(channel), create) {
        (true, _) => Ok(None),
        (false, true) => Ok(Some(channel.to_string())),
        (false, false) => bail!(UnknownChannel::new(
            channel,
            &known.all(),
            format!(
                "Check the name, or add --create to make it (empty until its first release), so devices baked \
                 for it are answered: otaforge bake … --channel {channel} --create"
            ),
        )),
    }
}

fn create_channel(dir: &Path, channel: &str) -> Result<()> {
    Store::open(dir)?.set_rollout(channel, None, None)?;
    println!(
        "Created channel \"{channel}\": empty until its first release (otaforge publish FILE --channel {channel})"
    );
    Ok(())
}

/// Whether the file carries a signature of its chip family's format, and whose, checked against
/// this project's keys (current and retired) as the device checks it. `None` for images without a
/// trailer when the project has no signing key.
fn signature_line(dir: &Path, info: &otaforge_firmware::ImageInfo, bytes: &[u8]) -> Option<String> {
    use otaforge_pki::signing::Family;
    let family = if info.chip.is_some_and(|c| c.is_esp8266()) { Family::Esp8266 } else { Family::Esp32 };
    let has_trailer = otaforge_firmware::signature::split(family, bytes).is_some();
    let keys = otaforge_pki::signing::load(dir).ok()?;
    if !has_trailer && keys.all_public(family).is_empty() {
        return None;
    }
    if !has_trailer {
        return Some("no: a device with a signing key baked refuses this image".into());
    }
    Some(super::key::describe(&keys, family, bytes))
}
