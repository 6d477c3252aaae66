//! `otaforge demo`: the whole story with no board at hand, headless, from nothing: certificates,
//! the server, the reference image baked without a compiler, a virtual board flashed over its pty
//! by the app's own flasher, its first check, a new release, the device downloading, verifying
//! and rebooting into it, and the server marking it installed. Each step is printed with its
//! time; the exit status is 0 only if the device ends running the new version and the server
//! shows it installed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;

use otaforge_actions::publish::{self as publish, PublishRequest};
use otaforge_firmware::Chip;
use otaforge_firmware::device_settings::DeviceSettings;
use otaforge_firmware::settings::BakeForm;
use otaforge_flash::{self as flash, Cancel, FlashRequest, FlashUpdate, Phase};
use otaforge_pki::{self as pki, Host, IssueRequest};
use otaforge_server::{self as server, ServeConfig, ServerEvent};
use otaforge_sim::board::{BoardOptions, VirtualBoard};
use otaforge_sim::device::{CheckOutcome, DeviceEvent, DeviceOptions, DeviceStatus, bake_reference_image};
use otaforge_store::{DeviceState, Store};

/// `otaforge demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The virtual board: esp8266 or esp32c3.
    #[arg(long, default_value = "esp8266")]
    pub chip: Chip,
    /// Keep the demo's project directory (certificates, database, images) instead of removing it.
    #[arg(long)]
    pub keep: bool,
    /// Do not print the device's serial log.
    #[arg(long)]
    pub quiet: bool,
}

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(60);
const IMAGE_SIZE: usize = 300_000;

pub(super) fn demo(args: DemoArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

struct Steps {
    started: Instant,
    n: usize,
}

impl Steps {
    const TOTAL: usize = 8;

    fn say(&mut self, what: impl AsRef<str>) {
        self.n += 1;
        println!(
            "[{:6.2} s] {}/{} {}",
            self.started.elapsed().as_secs_f64(),
            self.n,
            Self::TOTAL,
            what.as_ref()
        );
    }
}

async fn run(args: DemoArgs) -> Result<()> {
    let chip = args.chip;
    if !matches!(chip, Chip::Esp8266 | Chip::Esp32C3) {
        bail!("the demo's virtual board is an ESP8266 or an ESP32-C3, not an {chip}");
    }
    let temp =
        tempfile::Builder::new().prefix("otaforge-demo-").tempdir().context("no temporary directory")?;
    let dir = temp.path().to_path_buf();
    println!(
        "OTA Forge demo: certificate, bake, flash, poll, publish, update, with a virtual {chip} (no hardware)"
    );
    let mut steps = Steps { started: Instant::now(), n: 0 };

    let hosts = vec![Host::parse("127.0.0.1")?, Host::parse("localhost")?];
    pki::generate(&dir, &IssueRequest::new(hosts), false).context("could not make the certificates")?;
    steps.say(format!(
        "Certificates: a private CA and a server certificate for 127.0.0.1 and localhost, in {}",
        dir.display()
    ));

    let config = ServeConfig { bind: "127.0.0.1".parse()?, port: 0, ..ServeConfig::default() };
    let server = server::start(&dir, config).await.context("could not start the update server")?;
    let port = server.tls_addr.port();
    let mut events = server.subscribe();
    steps.say(format!(
        "Server: https://127.0.0.1:{port}{} is up (otaforge serve)",
        otaforge_protocol::DEFAULT_PATH
    ));

    let form = |version: &str| BakeForm {
        host: "127.0.0.1".into(),
        port,
        version: version.into(),
        // The reference image is synthetic: it goes to the demo channel, never to a real one.
        channel: otaforge_protocol::DEMO_CHANNEL.into(),
        poll_interval_s: 10,
        ..BakeForm::default()
    };
    let v1 = bake(&dir, chip, &form("1.0.0"))?;
    steps.say(format!(
        "Firmware: the reference image baked without a compiler: version 1.0.0, {} bytes, trusting this CA (otaforge bake --image)",
        v1.len()
    ));

    // The demo checks every 2 s instead of the baked 10 s, so the story takes seconds.
    let device = DeviceOptions { poll_interval: Some(Duration::from_secs(2)), ..DeviceOptions::default() };
    let board = VirtualBoard::start(BoardOptions { device, ..BoardOptions::new(chip, demo_number()) })
        .context("could not start the virtual board")?;
    let mac = board.identity().sta_mac();
    let mut watch = Watcher { log: board.subscribe(), quiet: args.quiet };
    let summary = flash_board(&board, v1.clone()).await?;
    steps.say(format!(
        "Flash: {} bytes over {} to a virtual {chip} (MAC {mac}) with otaforge's flasher, named \"demo\" in its own settings area (otaforge flash --device-name demo)",
        v1.len(),
        board.port().display()
    ));
    println!("             {summary}");

    let st = watch
        .until(&board, |s| s.last_outcome.is_some())
        .await
        .map_err(|s| anyhow!("the device did not check in: {:?}", s.activity))?;
    match &st.last_outcome {
        Some(CheckOutcome::UpToDate) => steps
            .say("Poll: the device booted 1.0.0, checked in over TLS and was told nothing is newer (304)"),
        other => bail!("the device's first check did not succeed: {other:?}"),
    }

    let v2 = bake(&dir, chip, &form("2.0.0"))?;
    let mut store = Store::open(&dir)?;
    let release = publish::check_and_publish(
        &mut store,
        v2,
        PublishRequest::sketch(otaforge_protocol::DEMO_CHANNEL, Some("2.0.0")),
    )?;
    server.reload()?;
    steps.say(format!(
        "Publish: 2.0.0 ({} bytes, MD5 {}) on channel demo (otaforge publish)",
        release.size, release.md5
    ));

    watch
        .until(&board, |s| s.version.as_deref() == Some("2.0.0"))
        .await
        .map_err(|s| anyhow!("the device did not update: last check {:?}", s.last_outcome))?;
    steps.say("Update: the device downloaded 2.0.0, checked its MD5, rebooted into it and reports 2.0.0");

    let installed = tokio::time::timeout(STEP, async {
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(ServerEvent::DeviceInstalled { mac: m, version, .. }) if m == mac => return Some(version),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return None,
                },
                Ok(line) = watch.next_line() => watch.print(&line),
            }
        }
    })
    .await
    .ok()
    .flatten();
    watch.drain();
    let inventory = server.devices().into_iter().find(|d| d.mac == mac);
    let ok = installed.as_deref() == Some("2.0.0")
        && inventory.as_ref().is_some_and(|d| d.state == DeviceState::Installed);
    if ok {
        steps.say(format!(
            "Installed: the server's inventory shows {mac} running 2.0.0, installed (otaforge devices)"
        ));
    }
    board.stop().await;
    server.shutdown().await;
    if args.keep {
        let kept = temp.keep();
        println!(
            "The demo's project is kept in {} (otaforge --dir {} devices)",
            kept.display(),
            kept.display()
        );
    }
    if !ok {
        bail!(
            "the server does not show the device installed: {:?}",
            inventory.map(|d| (d.state, d.state_detail))
        );
    }
    println!("Done in {:.1} s: the whole path works on this machine.", steps.started.elapsed().as_secs_f64());
    Ok(())
}

fn bake(dir: &Path, chip: Chip, form: &BakeForm) -> Result<Vec<u8>> {
    bake_reference_image(dir, chip, form, IMAGE_SIZE).context("could not bake the reference image")
}

/// Follows the device's serial log while waiting, so lines and steps print in the order they
/// happened.
struct Watcher {
    log: tokio::sync::broadcast::Receiver<DeviceEvent>,
    quiet: bool,
}

impl Watcher {
    fn print(&self, line: &str) {
        if !self.quiet {
            println!("             | {line}");
        }
    }

    /// The next log line (skipping other events).
    async fn next_line(&mut self) -> Result<String, tokio::sync::broadcast::error::RecvError> {
        loop {
            match self.log.recv().await {
                Ok(DeviceEvent::Log(line)) => return Ok(line),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Prints what is already logged.
    fn drain(&mut self) {
        while let Ok(e) = self.log.try_recv() {
            if let DeviceEvent::Log(line) = e {
                self.print(&line);
            }
        }
    }

    /// Prints the log until the status satisfies `pred` (at most one step's time).
    async fn until(
        &mut self,
        board: &VirtualBoard,
        pred: impl Fn(&DeviceStatus) -> bool,
    ) -> Result<DeviceStatus, DeviceStatus> {
        let mut status = board.watch();
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let now = status.borrow_and_update().clone();
            if pred(&now) {
                self.drain();
                return Ok(now);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    self.drain();
                    return Err(board.status());
                }
                r = status.changed() => if r.is_err() { return Err(board.status()) },
                Ok(line) = self.next_line() => self.print(&line),
            }
        }
    }
}

/// Flashes `image` over the board's pty; returns the flasher's summary.
async fn flash_board(board: &VirtualBoard, image: Vec<u8>) -> Result<String> {
    let port = board.port().display().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut req = FlashRequest::new(port, image);
        req.connect_timeout = Duration::from_secs(10);
        // The board's own name goes to its device settings area, not into the published image.
        req.device_settings = Some(DeviceSettings { name: "demo".into(), wifi: None });
        let mut phases = Vec::new();
        let r = flash::flash(&req, &Cancel::new(), &mut |u| {
            if let FlashUpdate::Phase(p) = u {
                phases.push(p);
            }
        });
        (r, phases)
    })
    .await?;
    let (result, phases) = outcome;
    let result = result.map_err(|e| anyhow!("flashing failed: {e}"))?;
    if !phases.contains(&Phase::Write) {
        bail!("the flasher never wrote: {}", result.summary());
    }
    Ok(result.summary())
}

/// A MAC number for the demo's board, different from run to run.
fn demo_number() -> u32 {
    0xD0_0000 | (std::process::id() & 0xFFFF)
}
