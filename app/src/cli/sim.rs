//! `otaforge sim …`: virtual devices, for trying the app without hardware and for CI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use otaforge_sim::serial::{Chip, SimOptions, VirtualSerialDevice};

/// The `sim` verbs.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// A virtual ESP on a pseudo-terminal: its ROM bootloader answers flashers byte for byte and
    /// keeps its flash in a file. Prints the port; runs until Ctrl-C.
    Serial(SerialArgs),
    /// A whole virtual board on a pty: flash it like a real one and it boots what was flashed,
    /// polls the update server and updates itself. Prints the port, then its serial log.
    Board(super::virtual_board::VirtualBoardArgs),
    /// Many virtual devices polling the update server (distinct MACs, jitter): a load generator
    /// and a rollout to watch. Prints progress, then a per-device outcome summary.
    Fleet(super::fleet::FleetArgs),
    /// Write a stand-in for the built reference firmware (unbaked), for `otaforge bake --image`.
    /// It runs only on OTA Forge's virtual boards: its code is filler, not a sketch.
    ReferenceImage(super::fleet::ReferenceImageArgs),
}

/// `otaforge sim serial`.
#[derive(Debug, Args)]
pub struct SerialArgs {
    /// The chip: esp8266 or esp32c3.
    #[arg(long, default_value = "esp8266")]
    pub chip: Chip,
    /// The file that holds the flash (created erased if missing). Default: a temporary file.
    #[arg(long, value_name = "FILE")]
    pub flash: Option<PathBuf>,
    /// Flash size: 256KB, 512KB, 1MB, 2MB, 4MB, 8MB or 16MB.
    #[arg(long, default_value = "4MB", value_parser = parse_size)]
    pub flash_size: u32,
    /// MAC address, e.g. 18:FE:34:12:34:56. Default: derived from the flash file.
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<[u8; 6]>,
    /// Move bytes at the baud rate the flasher sets (baud/10 bytes a second) and take real time
    /// for erases, as a board on a USB adapter would.
    #[arg(long)]
    pub throttle: bool,
    /// Name in the port list.
    #[arg(long)]
    pub name: Option<String>,
}

pub(super) fn run(dir: &Path, cmd: SimCommand) -> Result<()> {
    match cmd {
        SimCommand::Serial(args) => serial(dir, args),
        SimCommand::Board(args) => super::virtual_board::board(dir, args),
        SimCommand::Fleet(args) => super::fleet::fleet(dir, args),
        SimCommand::ReferenceImage(args) => super::fleet::write_reference_image(args),
    }
}

fn serial(dir: &Path, args: SerialArgs) -> Result<()> {
    let device = VirtualSerialDevice::spawn(SimOptions {
        chip: args.chip,
        flash_file: args.flash.clone(),
        flash_size: args.flash_size,
        mac: args.mac,
        throttle: args.throttle,
        name: args.name.clone(),
        registry_dir: Some(dir.to_path_buf()),
        ..SimOptions::default()
    })
    .context("could not start the virtual device")?;
    // Ctrl-C is caught before the path is printed: whoever reads it may stop us at once, and the
    // registry entry must still go away.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [stop_signals::SIGINT, stop_signals::SIGTERM] {
        stop_signals::register(signal, stop.clone())?;
    }
    println!("{}", device.pty_path().display());
    eprintln!(
        "Virtual {} '{}' on {} (flash: {}{}). Flash it with no reset, e.g.\n  esptool --port {} --before no-reset --after no-reset flash-id\nCtrl-C stops.",
        args.chip.name(),
        device.name(),
        device.pty_path().display(),
        device.flash_path().display(),
        if args.flash.is_none() { ", removed on exit" } else { "" },
        device.pty_path().display(),
    );
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("Stopping the virtual device.");
    device.stop();
    Ok(())
}

/// Ctrl-C and SIGTERM set a flag the main loop polls (so the device stops cleanly and its
/// registry entry goes away).
mod stop_signals {
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::sys::signal::{self, SigHandler, Signal};

    pub use nix::sys::signal::Signal::{SIGINT, SIGTERM};

    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_signal(_: nix::libc::c_int) {
        if let Some(f) = FLAG.get() {
            f.store(true, Ordering::SeqCst);
        }
    }

    pub fn register(sig: Signal, flag: Arc<AtomicBool>) -> anyhow::Result<()> {
        let _ = FLAG.set(flag);
        // SAFETY: the handler only stores to an atomic.
        unsafe { signal::signal(sig, SigHandler::Handler(on_signal)) }?;
        Ok(())
    }
}

fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("MB").or_else(|| t.strip_suffix('M')) {
        (n, 1u64 << 20)
    } else if let Some(n) = t.strip_suffix("KB").or_else(|| t.strip_suffix('K')) {
        (n, 1u64 << 10)
    } else {
        (t.as_str(), 1)
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("'{s}' is not a size like 4MB or 512KB"))?;
    let bytes = n * mult;
    if !bytes.is_power_of_two() || !(256 << 10..=16 << 20).contains(&bytes) {
        return Err(format!("flash size {s} is not one of 256KB, 512KB, 1MB, 2MB, 4MB, 8MB, 16MB"));
    }
    Ok(bytes as u32)
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bytes: Vec<u8> = parts.iter().filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    bytes.try_into().map_err(|_| format!("'{s}' is not a MAC address like 18:FE:34:12:34:56"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_macs() {
        assert_eq!(parse_size("4MB"), Ok(4 << 20));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert!(parse_size("3MB").is_err());
        assert!(parse_size("32MB").is_err());
        assert_eq!(parse_mac("18:fe:34:01:02:0a"), Ok([0x18, 0xFE, 0x34, 1, 2, 10]));
        assert!(parse_mac("18:fe:34").is_err());
        assert!(parse_mac("18:fe:34:01:02:zz").is_err());
    }
}
