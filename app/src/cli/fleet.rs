//! `otaforge sim fleet` and `otaforge sim reference-image`: many virtual devices polling the
//! update server, and the stand-in reference image they (and the demo) are baked from.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use otaforge_firmware::Chip;
use otaforge_firmware::settings::BakeForm;
use otaforge_firmware::synth::Filler;
use otaforge_sim::device::{DeviceOptions, Net, bake_reference_image, reference_image_filled};
use otaforge_sim::fleet::{Fleet, FleetOptions, FleetSummary, device_line};

/// `otaforge sim fleet`.
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// How many virtual devices (each with its own MAC).
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Seconds between one device's checks, ±10 % jitter. Default: the interval baked into the
    /// image (at least 10 s, as the firmware enforces).
    #[arg(long, value_name = "S")]
    pub interval: Option<f64>,
    /// The chip: esp8266, or an ESP32-family chip (esp32, esp32c3, …).
    #[arg(long, default_value = "esp8266")]
    pub chip: Chip,
    /// A baked image to flash every device with. Default: the reference image, baked now for
    /// this project with --host, --port, --channel and --version.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Version the devices start at (when baking).
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Update-server host to bake (default: the first name in the server certificate).
    #[arg(long)]
    pub host: Option<String>,
    /// HTTPS port to bake.
    #[arg(long, default_value_t = otaforge_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Channel to bake. The reference image is synthetic, so it may be published only to a demo
    /// channel (`demo`, `demo-…`).
    #[arg(long, default_value = otaforge_protocol::DEMO_CHANNEL)]
    pub channel: String,
    /// BearSSL receive buffer to bake (ESP8266).
    #[arg(long, default_value_t = 16384)]
    pub tls_rx: u16,
    /// Size of the baked reference image in bytes.
    #[arg(long, default_value_t = 300_000)]
    pub image_size: usize,
    /// Where the devices' DNS sends the update host: an IP address, or "system" for the real
    /// resolver. The default reaches a server on this machine.
    #[arg(long, default_value = "127.0.0.1")]
    pub server: String,
    /// Stop as soon as every device runs this version (exit status 0), else at --duration (1).
    #[arg(long, value_name = "VERSION")]
    pub until_version: Option<String>,
    /// Stop after this many seconds (default: run until Ctrl-C, or until --until-version).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// MACs are numbered from this (run two fleets side by side with different values).
    #[arg(long, default_value_t = 1)]
    pub first: u32,
    /// Print one line per device at the end.
    #[arg(long)]
    pub per_device: bool,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `otaforge sim reference-image`.
#[derive(Debug, Args)]
pub struct ReferenceImageArgs {
    /// The chip.
    #[arg(long, default_value = "esp8266")]
    pub chip: Chip,
    /// Version (seeds the contents; ESP32 images carry it in the app descriptor).
    #[arg(long, default_value = "1.0.0")]
    pub version: String,
    /// Size in bytes.
    #[arg(long, default_value_t = 300_000)]
    pub size: usize,
    /// Where to write it.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Fill it with bytes that compress about as a real build does (a third smaller gzip'd), not
    /// random ones: for measuring gzip'd updates.
    #[arg(long)]
    pub compressible: bool,
}

/// Writes a stand-in for the built reference firmware: a real image layout with an unbaked
/// config block, ready for `otaforge bake --image`.
pub(super) fn write_reference_image(args: ReferenceImageArgs) -> Result<()> {
    let filler = if args.compressible { Filler::CodeLike } else { Filler::Random };
    let image = reference_image_filled(args.chip, &args.version, args.size, filler);
    std::fs::write(&args.out, &image).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{}: {} bytes, {} reference image {} with an unbaked config block (bake it with: otaforge bake --image {} --out …)",
        args.out.display(),
        image.len(),
        args.chip.name(),
        args.version,
        args.out.display()
    );
    println!(
        "It runs only on OTA Forge's virtual boards (otaforge sim …): its code is filler with a real image \
         layout. For a real board, build the sketch in device-firmware/ and bake that."
    );
    Ok(())
}

pub(super) fn fleet(dir: &Path, args: FleetArgs) -> Result<()> {
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    if args.interval.is_some_and(|i| !(i > 0.0 && i.is_finite())) {
        bail!("--interval must be a positive number of seconds");
    }
    let image = match &args.image {
        Some(path) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            require_channel(dir, &args.channel)?;
            bake_for_project(dir, &args)?
        }
    };
    let dns = match args.server.as_str() {
        "system" => None,
        ip => Some(
            ip.parse::<IpAddr>()
                .with_context(|| format!("--server {ip} is not an IP address or \"system\""))?,
        ),
    };
    let opts = FleetOptions {
        devices: args.devices,
        chip: args.chip,
        image,
        first_number: args.first,
        device: DeviceOptions {
            net: Net { dns, ..Net::default() },
            poll_interval: args.interval.map(Duration::from_secs_f64),
            log_lines: 50,
            ..DeviceOptions::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(opts, &args))
}

/// The devices poll the channel they are baked for: one nothing serves is refused (this command
/// publishes nothing, so it cannot start one).
fn require_channel(dir: &Path, channel: &str) -> Result<()> {
    use otaforge_actions::channels::{Channels, UnknownChannel, always_exists};
    if always_exists(channel) {
        return Ok(());
    }
    let known = Channels::of(&otaforge_store::Store::open(dir)?)?;
    if !known.exists(channel) {
        bail!(UnknownChannel::new(
            channel,
            &known.all(),
            String::from(
                "Check the name; the reference image may only be published to a demo channel (\"demo\", or a \
                 \"demo-…\" one started with otaforge publish FILE --channel demo-NAME --create)"
            ),
        ));
    }
    Ok(())
}

fn bake_for_project(dir: &Path, args: &FleetArgs) -> Result<Vec<u8>> {
    let interval = args.interval.unwrap_or(3600.0).ceil().clamp(10.0, 30.0 * 86_400.0) as u32;
    let form = BakeForm {
        host: args.host.clone().unwrap_or_default(),
        port: args.port,
        channel: args.channel.clone(),
        version: args.version.clone(),
        poll_interval_s: interval,
        tls_rx_buffer: args.tls_rx,
        ..BakeForm::default()
    };
    bake_reference_image(dir, args.chip, &form, args.image_size).context("could not bake the reference image")
}

/// When things happened during a run, for the JSON summary (benchmarks read it).
#[derive(Debug, Default, serde::Serialize)]
struct Timeline {
    /// Seconds until the first update was installed.
    first_update_s: Option<f64>,
    /// Checks made by then (steady polling, before any download).
    checks_before_first_update: Option<u64>,
    /// Seconds until every device ran `--until-version`.
    all_updated_s: Option<f64>,
}

async fn run(opts: FleetOptions, args: &FleetArgs) -> Result<()> {
    let started = Instant::now();
    let fleet = Fleet::start(opts).context("could not flash the virtual devices")?;
    eprintln!("{} virtual {} devices running; Ctrl-C stops them.", args.devices, args.chip.name());
    let deadline = args.duration.map(|d| started + Duration::from_secs_f64(d));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_print = started;
    let mut timeline = Timeline::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let s = fleet.summary();
        let t = started.elapsed().as_secs_f64();
        if s.updates > 0 && timeline.first_update_s.is_none() {
            timeline.first_update_s = Some(t);
            timeline.checks_before_first_update = Some(s.checks);
        }
        if last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            eprintln!("{}", progress_line(&s, started.elapsed()));
        }
        if let Some(v) = &args.until_version
            && s.running(v) == s.devices
        {
            timeline.all_updated_s = Some(t);
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let elapsed = started.elapsed();
    let statuses = fleet.stop().await;
    let summary = FleetSummary::of(&statuses);
    eprintln!("{}", progress_line(&summary, elapsed));
    if args.per_device {
        for d in &statuses {
            println!("{}", device_line(d));
        }
    }
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        v["elapsed_s"] = serde_json::json!(elapsed.as_secs_f64());
        v["timeline"] = serde_json::to_value(&timeline)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_summary(&summary, elapsed);
    }
    match &args.until_version {
        Some(v) if timeline.all_updated_s.is_none() => bail!(
            "{} of {} devices run {v} after {:.0} s",
            summary.running(v),
            summary.devices,
            elapsed.as_secs_f64()
        ),
        _ => Ok(()),
    }
}

fn progress_line(s: &FleetSummary, t: Duration) -> String {
    let versions: Vec<String> = s.versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
    format!(
        "{:>5.0} s  {}  checks {} ({:.0}/s)  updates {}  failed checks {}",
        t.as_secs_f64(),
        versions.join("  "),
        s.checks,
        s.checks as f64 / t.as_secs_f64().max(0.001),
        s.updates,
        s.failures
    )
}

fn print_summary(s: &FleetSummary, t: Duration) {
    println!("{} devices, {:.1} s", s.devices, t.as_secs_f64());
    for (v, n) in &s.versions {
        println!("  running {v}: {n}");
    }
    let secs = t.as_secs_f64().max(0.001);
    println!("  checks: {} ({:.1}/s)", s.checks, s.checks as f64 / secs);
    println!("  updates installed: {} ({:.1}/s)", s.updates, s.updates as f64 / secs);
    println!("  failed checks: {}", s.failures);
    for (e, n) in &s.last_errors {
        println!("  last check failed, {e}: {n} devices");
    }
    if s.not_checked > 0 {
        println!("  no check finished yet: {} devices", s.not_checked);
    }
    for (why, n) in &s.halted {
        println!("  not running ({why}): {n} devices");
    }
}
