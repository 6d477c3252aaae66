//! `otaforge sim board`: a whole virtual board on a pty. Flash it like a real one (`otaforge
//! flash --port …`, esptool, the app's Flash step) and it boots what was flashed, polls the
//! update server and updates itself; its serial log is printed here, and goes out on the pty as a
//! real board's would (`otaforge monitor --port …` at 115200 baud).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use otaforge_firmware::Chip;
use otaforge_sim::board::{BoardOptions, VirtualBoard};
use otaforge_sim::device::{DeviceEvent, DeviceOptions, Net};

/// `otaforge sim board`.
#[derive(Debug, Args)]
pub struct VirtualBoardArgs {
    /// The chip: esp8266 or esp32c3.
    #[arg(long, default_value = "esp8266")]
    pub chip: Chip,
    /// The file that holds the flash (created erased if missing). Default: a temporary file.
    #[arg(long, value_name = "FILE")]
    pub flash: Option<PathBuf>,
    /// The number its MAC is derived from (18:FE:34:xx:xx:xx for an ESP8266).
    #[arg(long, default_value_t = 1)]
    pub number: u32,
    /// Where the firmware's DNS sends the update host: an IP address, or "system".
    #[arg(long, default_value = "127.0.0.1")]
    pub server: String,
    /// Check this often instead of the interval baked into the image (seconds).
    #[arg(long, value_name = "S")]
    pub interval: Option<f64>,
    /// Name in the port list.
    #[arg(long)]
    pub name: Option<String>,
}

pub(super) fn board(dir: &Path, args: VirtualBoardArgs) -> Result<()> {
    let dns = match args.server.as_str() {
        "system" => None,
        ip => Some(
            ip.parse::<IpAddr>()
                .with_context(|| format!("--server {ip} is not an IP address or \"system\""))?,
        ),
    };
    if args.interval.is_some_and(|i| !(i > 0.0 && i.is_finite())) {
        anyhow::bail!("--interval must be a positive number of seconds");
    }
    let opts = BoardOptions {
        flash_file: args.flash.clone(),
        registry_dir: Some(dir.to_path_buf()),
        name: args.name.clone(),
        device: DeviceOptions {
            net: Net { dns, ..Net::default() },
            poll_interval: args.interval.map(Duration::from_secs_f64),
            ..DeviceOptions::default()
        },
        ..BoardOptions::new(args.chip, args.number)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let board = VirtualBoard::start(opts).context("could not start the virtual board")?;
        let mut log = board.subscribe();
        // Ctrl-C is caught before the lines that invite it (a stop then ends the board cleanly).
        let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        println!("{}", board.port().display());
        eprintln!(
            "Virtual {} board on {} (MAC {}, flash {}). Flash it, e.g.\n  otaforge flash FIRMWARE.bin --port {}\nand it boots, polls the update server and updates itself; its serial log follows, and is on the port too:\n  otaforge monitor --port {}\nCtrl-C stops it.",
            args.chip.name(),
            board.port().display(),
            board.identity().sta_mac(),
            board.flash_path().display(),
            board.port().display(),
            board.port().display()
        );
        loop {
            tokio::select! {
                e = log.recv() => match e {
                    Ok(DeviceEvent::Log(line)) => println!("{line}"),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                _ = interrupt.recv() => break,
            }
        }
        eprintln!("Stopping the virtual board.");
        board.stop().await;
        Ok(())
    })
}
