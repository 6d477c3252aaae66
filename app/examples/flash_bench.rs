//! Flash benchmark (see `bench/flash/run.sh` and `bench/README.md`, section "Flash"): writes a
//! 1 MiB firmware-like image into virtual boards throttled to the baud rate (a byte takes 10 bit
//! times each way, erases take real time), with OTA Forge's flasher and with esptool on the same
//! simulator, and prints the times and their ratios. On the ESP8266 OTA Forge uses the flasher
//! stub of that same esptool installation (uploaded through the ROM, then compressed writes at the
//! requested rate and an MD5 check), so both run the same code on the chip.
//!
//! ```text
//! flash_bench [--bauds 115200,921600] [--size 1048576] [--chips esp8266,esp32c3] [--rounds 1]
//! ```
//! esptool: `$ESPTOOL`, else `target/esptool-venv/bin/esptool`. Without it only OTA Forge runs
//! (on the ESP8266 with an esptool from PATH if there is one, else through the ROM alone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_flash::{self as flash, Cancel, Esp8266Route, FlashRequest, StubSource, Verification};
use otaforge_sim::serial::{self as sim, SimOptions, VirtualSerialDevice};

/// Data that deflates about as well as real firmware: instructions drawn from a small, skewed
/// vocabulary, with runs of zeros and strings mixed in.
fn firmware_like(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let vocab: Vec<[u8; 4]> = (0..4096).map(|_| (next() as u32).to_le_bytes()).collect();
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let r = next();
        match r % 16 {
            0 => out.extend(std::iter::repeat_n(0u8, (r >> 8) as usize % 24)),
            1 => out.extend_from_slice(b"OTA Forge: connecting to the update server\0"),
            2..=10 => out.extend_from_slice(&(next() as u32).to_le_bytes()),
            _ => {
                // Skewed: low indices far more often, like common opcodes.
                let i = ((r >> 8) % 4096) * ((r >> 24) % 4096) / 4096;
                out.extend_from_slice(&vocab[i as usize]);
            }
        }
    }
    out.truncate(len);
    out
}

fn image(chip: Chip, size: usize) -> Vec<u8> {
    let half = (size / 2) & !3;
    if chip.is_esp8266() {
        ImageBuilder::arduino_esp8266()
            .segments([(0x4020_1010, firmware_like(size - 0x1100, 1)), (0x3FFE_8000, vec![0x11; 256])])
            .build()
    } else {
        ImageBuilder::esp32_app(chip)
            .segments([
                (0x3C00_0020, firmware_like(half, 2)),
                (0x4200_0020, firmware_like(size - half - 0x200, 3)),
            ])
            .build()
    }
}

fn deflated_share(data: &[u8]) -> f64 {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap().len() as f64 / data.len() as f64
}

fn board(chip: sim::Chip) -> VirtualSerialDevice {
    VirtualSerialDevice::spawn(SimOptions { chip, throttle: true, ..SimOptions::default() })
        .expect("virtual board")
}

/// OTA Forge's flasher, as `otaforge flash` runs it (defaults: verify and skip-unchanged), with
/// `tool`'s ESP8266 stub (without one: whatever esptool PATH has, else the ROM alone).
fn otaforge(chip: sim::Chip, data: &[u8], baud: u32, tool: Option<&Path>) -> Result<Duration, String> {
    let dev = board(chip);
    let mut req = FlashRequest::new(dev.pty_path().display().to_string(), data.to_vec());
    req.baud = baud;
    req.connect_timeout = Duration::from_secs(10);
    req.stub = tool.map_or(StubSource::Installed, |t| StubSource::Esptool(t.to_path_buf()));
    let started = Instant::now();
    let outcome = flash::flash(&req, &Cancel::new(), &mut |_| {}).map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let at = outcome.offset as usize;
    if dev.flash_contents()[at..at + data.len()] != *data {
        return Err("the flash does not hold the image".into());
    }
    if outcome.board.baud != baud {
        eprintln!("  (OTA Forge ran at {} baud)", outcome.board.baud);
    }
    match &outcome.esp8266 {
        Some(Esp8266Route::Stub { stub }) if outcome.verification == Verification::Verified => {
            eprintln!("  (through {stub}, verified)")
        }
        Some(Esp8266Route::Stub { .. }) => {
            return Err("the stub wrote, but the flash was not verified".into());
        }
        Some(Esp8266Route::Rom { why }) if tool.is_some() => {
            return Err(format!("OTA Forge did not use the stub: {why}"));
        }
        _ => {}
    }
    Ok(took)
}

/// esptool on the same simulator: `write-flash` with its defaults (stub, compression, verify).
fn esptool(
    tool: &Path,
    chip: sim::Chip,
    file: &Path,
    offset: u32,
    data_len: usize,
    baud: u32,
    stub: bool,
) -> Result<Duration, String> {
    let dev = board(chip);
    let mut cmd = Command::new(tool);
    cmd.arg("--port").arg(dev.pty_path()).args([
        "--baud",
        &baud.to_string(),
        "--before",
        "no-reset",
        "--after",
        "no-reset",
    ]);
    if !stub {
        cmd.arg("--no-stub");
    }
    cmd.args(["write-flash", &format!("0x{offset:x}")]).arg(file);
    let started = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    let took = started.elapsed();
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "esptool failed: {}",
            text.lines().rev().take(3).collect::<Vec<_>>().join(" / ")
        ));
    }
    let want = std::fs::read(file).unwrap();
    let got = dev.flash_contents();
    if got[offset as usize..offset as usize + data_len] != want[..] {
        return Err("esptool: the flash does not hold the image".into());
    }
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bauds: Vec<u32> =
        arg(&args, "--bauds", "115200,921600").split(',').map(|b| b.parse().unwrap()).collect();
    let size: usize = arg(&args, "--size", "1048576").parse().unwrap();
    let rounds: usize = arg(&args, "--rounds", "1").parse().unwrap();
    let chips: Vec<sim::Chip> =
        arg(&args, "--chips", "esp8266,esp32c3").split(',').map(|c| c.parse().unwrap()).collect();
    let tool = std::env::var_os("ESPTOOL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/esptool-venv/bin/esptool")
    });
    let tool = tool.exists().then_some(tool);
    if tool.is_none() {
        eprintln!("esptool not found (set ESPTOOL): timing OTA Forge only");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for chip in chips {
        let ours = match chip {
            sim::Chip::Esp8266 => Chip::Esp8266,
            sim::Chip::Esp32c3 => Chip::Esp32C3,
        };
        let data = image(ours, size);
        let offset = if ours.is_esp8266() { 0 } else { 0x10000 };
        let file = dir.path().join(format!("{}.bin", ours.slug()));
        std::fs::write(&file, &data).unwrap();
        let share = deflated_share(&data);
        for &baud in &bauds {
            let mut cells: Vec<(&str, Result<Duration, String>)> = Vec::new();
            let mut run = |name: &'static str, f: &dyn Fn() -> Result<Duration, String>| {
                eprintln!("{} at {baud}: {name}…", ours.name());
                let mut times = Vec::new();
                let mut failure = None;
                for _ in 0..rounds {
                    match f() {
                        Ok(t) => times.push(t),
                        Err(e) => failure = Some(e),
                    }
                }
                cells.push((
                    name,
                    match failure {
                        Some(e) => Err(e),
                        None => Ok(median(times)),
                    },
                ));
            };
            run("OTA Forge", &|| otaforge(chip, &data, baud, tool.as_deref()));
            if let Some(tool) = &tool {
                run("esptool", &|| esptool(tool, chip, &file, offset, data.len(), baud, true));
                if ours.is_esp8266() {
                    run("esptool --no-stub", &|| esptool(tool, chip, &file, offset, data.len(), baud, false));
                }
            }
            rows.push((ours, baud, share, cells));
        }
    }
    println!(
        "Flash {} (firmware-like data) into a virtual board throttled to the baud rate; time from start to verified \
         image (esptool --no-stub: written); ratio = OTA Forge time / esptool time (below 1: OTA Forge is faster).\n",
        flash::progress::human_bytes(size as u64),
    );
    println!(
        "| chip | baud | deflates to | OTA Forge | esptool (stub) | ratio | esptool --no-stub | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (chip, baud, share, cells) in rows {
        let get = |name: &str| cells.iter().find(|(n, _)| *n == name).map(|(_, r)| r.clone());
        let secs = |r: &Option<Result<Duration, String>>| match r {
            Some(Ok(d)) => format!("{:.1} s", d.as_secs_f64()),
            Some(Err(e)) => format!("failed: {e}"),
            None => "–".into(),
        };
        let ratio = |a: &Option<Result<Duration, String>>, b: &Option<Result<Duration, String>>| match (a, b)
        {
            (Some(Ok(a)), Some(Ok(b))) => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
            _ => "–".into(),
        };
        let (ours, stub, rom) = (get("OTA Forge"), get("esptool"), get("esptool --no-stub"));
        println!(
            "| {} | {baud} | {:.0}% | {} | {} | {} | {} | {} |",
            chip.name(),
            share * 100.0,
            secs(&ours),
            secs(&stub),
            ratio(&ours, &stub),
            secs(&rom),
            ratio(&ours, &rom)
        );
    }
}
