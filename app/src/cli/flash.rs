//! `otaforge ports`, `otaforge flash` and `otaforge monitor`: step 3 from a terminal.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use otaforge_firmware::Chip;
use otaforge_firmware::device_settings::{DeviceSettings, Wifi};
use otaforge_flash::{self as flash, Cancel, FlashRequest, FlashUpdate, Likelihood, PortChoice, Progress};

/// `otaforge flash`.
#[derive(Debug, Args)]
pub struct FlashArgs {
    /// The firmware: a .bin (Arduino ESP8266, ESP32 app, bootloader or merged image) or an ELF.
    pub file: PathBuf,
    /// Serial port. Default: the one ESP board found (see `otaforge ports`).
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// The chip: auto, esp8266, esp32, esp32c3, esp32s3 …
    #[arg(long, default_value = "auto", value_parser = parse_chip)]
    pub chip: ChipChoice,
    /// Fastest baud rate to try (921600 is faster where the USB adapter keeps up); when the link
    /// cannot keep up it steps down through 921600, 460800, 230400 and 115200.
    #[arg(long, default_value_t = flash::DEFAULT_BAUD)]
    pub baud: u32,
    /// Flash offset, e.g. 0x10000. Default: from the file (0x0 ESP8266 and merged images,
    /// 0x10000 ESP32 apps, the chip's bootloader offset for bootloaders).
    #[arg(long, value_parser = parse_offset)]
    pub offset: Option<u32>,
    /// Do not compare the flash with the image afterwards (ESP32 family; ESP8266 with esptool's
    /// stub).
    #[arg(long)]
    pub no_verify: bool,
    /// Write even regions that already hold the image (ESP32 family; ESP8266 with esptool's
    /// stub).
    #[arg(long)]
    pub no_skip: bool,
    /// Erase the whole flash first (ESP32 family; ESP8266 with esptool's stub).
    #[arg(long)]
    pub erase_all: bool,
    /// ESP8266: write through the ROM alone, without esptool's flasher stub (slower, and
    /// confirmed by the update server instead of an MD5 check).
    #[arg(long)]
    pub no_stub: bool,
    /// Seconds to keep trying to reach the board's bootloader (time to press BOOT/RESET).
    #[arg(long, default_value_t = 20)]
    pub connect_timeout: u64,
    /// Show what the board prints afterwards (like `otaforge monitor`), until Ctrl-C.
    #[arg(long)]
    pub monitor: bool,
    /// The board's own settings, written to its device settings area after the image.
    #[command(flatten)]
    pub settings: DeviceSettingsArgs,
}

/// A board's own settings: kept outside the app image, so no update replaces them.
#[derive(Debug, Args)]
pub struct DeviceSettingsArgs {
    /// The board's name (letters, digits, '-'; at most 31): its DHCP host name and what the
    /// server's device list shows. Default: derived from its MAC.
    #[arg(long, value_name = "NAME")]
    pub device_name: Option<String>,
    /// Wi-Fi network the board joins (default: the one its firmware was built with).
    #[arg(long, value_name = "SSID")]
    pub wifi_ssid: Option<String>,
    /// File holding the Wi-Fi password (first line). Else $OTAFORGE_WIFI_PASSWORD, else a prompt;
    /// never on the command line, where other users can read it.
    #[arg(long, value_name = "FILE", requires = "wifi_ssid")]
    pub wifi_password_file: Option<PathBuf>,
    /// The network is open: no password.
    #[arg(long, requires = "wifi_ssid", conflicts_with = "wifi_password_file")]
    pub open_network: bool,
    /// Refused: a password on the command line is visible to every user of the machine.
    #[arg(long, hide = true, value_name = "PASSWORD")]
    pub wifi_password: Option<String>,
}

/// The environment variable a Wi-Fi password may come from.
pub const WIFI_PASSWORD_ENV: &str = "OTAFORGE_WIFI_PASSWORD";

/// Why `--wifi-password PASSWORD` is refused, and what to use instead.
pub(super) const PASSWORD_ON_COMMAND_LINE: &str = "--wifi-password is not taken: a password on the command line is visible \
     to every user of this machine (ps, shell history). Put it in a file only you can read (--wifi-password-file FILE), \
     in $OTAFORGE_WIFI_PASSWORD, or type it when asked";

impl DeviceSettingsArgs {
    /// The settings asked for, checked; `None` when none were given.
    pub fn settings(&self) -> Result<Option<DeviceSettings>> {
        if self.wifi_password.is_some() {
            bail!(PASSWORD_ON_COMMAND_LINE);
        }
        if self.device_name.is_none() && self.wifi_ssid.is_none() {
            return Ok(None);
        }
        let wifi = match &self.wifi_ssid {
            None => None,
            Some(ssid) => Some(Wifi { ssid: ssid.clone(), password: self.password()? }),
        };
        let s = DeviceSettings { name: self.device_name.clone().unwrap_or_default(), wifi };
        s.validate()?;
        Ok(Some(s))
    }

    fn password(&self) -> Result<String> {
        if self.open_network {
            return Ok(String::new());
        }
        wifi_password(self.wifi_password_file.as_deref(), self.wifi_ssid.as_deref().unwrap_or(""))
    }
}

/// A Wi-Fi password from `file` (its first line), else `$OTAFORGE_WIFI_PASSWORD`, else a prompt on
/// the terminal: never from the command line.
pub(super) fn wifi_password(file: Option<&Path>, ssid: &str) -> Result<String> {
    let prompt = format!("Wi-Fi password for \"{ssid}\": ");
    match super::secret::read_secret(file, WIFI_PASSWORD_ENV, &prompt, false)? {
        // Empty would quietly mean an open network.
        Some((password, source)) if password.is_empty() => bail!(
            "the Wi-Fi password ({source}) is empty: for a network without a password give --open-network"
        ),
        Some((password, _)) => Ok(password),
        None => bail!(
            "the Wi-Fi password: give it with --wifi-password-file FILE or ${WIFI_PASSWORD_ENV} (or --open-network)"
        ),
    }
}

/// `otaforge provision`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Serial port. Default: the one ESP board found.
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// The chip: auto, esp8266, esp32, esp32c3, …
    #[arg(long, default_value = "auto", value_parser = parse_chip)]
    pub chip: ChipChoice,
    /// Fastest baud rate to try.
    #[arg(long, default_value_t = flash::DEFAULT_BAUD)]
    pub baud: u32,
    /// Seconds to keep trying to reach the board's bootloader.
    #[arg(long, default_value_t = 20)]
    pub connect_timeout: u64,
    /// The settings to write.
    #[command(flatten)]
    pub settings: DeviceSettingsArgs,
}

/// `otaforge board`.
#[derive(Debug, Args)]
pub struct BoardArgs {
    /// Serial port. Default: the one ESP board found.
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Seconds to keep trying to reach the board's bootloader (time to press BOOT/RESET).
    #[arg(long, default_value_t = 20)]
    pub connect_timeout: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `otaforge monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Serial port. Default: the one ESP board found.
    #[arg(long, value_name = "PORT")]
    pub port: Option<String>,
    /// Baud rate: 115200 for most sketches, 74880 for the ESP8266 boot messages.
    #[arg(long, default_value_t = flash::ROM_BAUD)]
    pub baud: u32,
    /// Restart the board first (through the reset line) to see it boot.
    #[arg(long)]
    pub reset: bool,
}

/// `--chip auto` or a chip.
#[derive(Debug, Clone, Copy)]
pub struct ChipChoice(pub Option<Chip>);

fn parse_chip(s: &str) -> Result<ChipChoice, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(ChipChoice(None));
    }
    s.parse::<Chip>().map(|c| ChipChoice(Some(c))).map_err(|e| e.to_string())
}

fn parse_offset(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("'{s}' is not a flash offset like 0x10000"))
}

/// `otaforge ports`.
pub fn ports(dir: &Path, json: bool) -> Result<()> {
    let ports = otaforge_actions::ports::all_ports(dir);
    if json {
        println!("{}", serde_json::to_string_pretty(&ports)?);
        return Ok(());
    }
    if ports.is_empty() {
        println!(
            "No serial ports found. Plug the board in with a data cable (charge-only cables have no data lines); \
             CP210x and CH340 boards may need a driver. A virtual device: otaforge sim serial"
        );
    }
    for p in &ports {
        let mark = if p.likelihood <= Likelihood::EspBridge { "*" } else { " " };
        println!("{mark} {:<16} {}", p.path, p.description);
    }
    Ok(())
}

/// The port to use: the one given, or the only likely ESP board ([`PortChoice`], the app's
/// choice too). Where several could be one, the CLI refuses to guess.
fn pick_port(dir: &Path, given: Option<String>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    match PortChoice::among(&otaforge_actions::ports::all_ports(dir)) {
        PortChoice::Only(port) => Ok(port.path),
        other => bail!("{}", other.refusal("pick one with --port").unwrap_or_default()),
    }
}

/// Ctrl-C cancels the running flash or monitor instead of killing the process mid-write.
fn cancel_on_ctrl_c(cancel: &Cancel) -> Arc<AtomicBool> {
    static PRESSED: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_sigint(_: nix::libc::c_int) {
        PRESSED.store(true, Ordering::SeqCst);
    }
    // SAFETY: the handler only stores to an atomic.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGINT,
            nix::sys::signal::SigHandler::Handler(on_sigint),
        )
    };
    let done = Arc::new(AtomicBool::new(false));
    let (c, d) = (cancel.clone(), done.clone());
    std::thread::spawn(move || {
        while !d.load(Ordering::SeqCst) {
            if PRESSED.swap(false, Ordering::SeqCst) {
                c.cancel();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    done
}

/// Draws progress on stderr: a bar redrawn in place on a terminal, a line per 10% elsewhere.
struct Bar {
    tty: bool,
    last_tenth: Option<u64>,
    drawn: bool,
}

impl Bar {
    fn progress(&mut self, p: &Progress) {
        let pct = (p.fraction() * 100.0) as u64;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let filled = (p.fraction() * 30.0) as usize;
            let bar = format!("{}{}", "#".repeat(filled), "-".repeat(30 - filled));
            let _ = write!(err, "\r[{bar}] {pct:3}%  {} ({})\x1b[K", p.describe(), p.phase.doing());
            let _ = err.flush();
            self.drawn = true;
        } else if self.last_tenth != Some(pct / 10) {
            self.last_tenth = Some(pct / 10);
            let _ = writeln!(err, "{pct:3}%  {}", p.describe());
        }
    }

    fn line(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.drawn {
            let _ = write!(err, "\r\x1b[K");
            self.drawn = false;
        }
        let _ = writeln!(err, "{text}");
    }
}

/// `otaforge flash`.
pub fn flash(dir: &Path, args: FlashArgs) -> Result<()> {
    let image = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    // What the user must still give is asked for before a board is looked for.
    let device_settings = args.settings.settings()?;
    let port = pick_port(dir, args.port)?;
    let mut req = FlashRequest::new(&port, image);
    req.chip = args.chip.0;
    req.baud = args.baud;
    req.offset = args.offset;
    req.verify = !args.no_verify;
    req.skip_unchanged = !args.no_skip;
    req.erase_all = args.erase_all;
    if args.no_stub {
        req.stub = flash::StubSource::None;
    }
    req.connect_timeout = Duration::from_secs(args.connect_timeout.max(1));
    req.device_settings = device_settings;
    let cancel = Cancel::new();
    let done = cancel_on_ctrl_c(&cancel);
    let mut bar = Bar { tty: std::io::stderr().is_terminal(), last_tenth: None, drawn: false };
    bar.line(&format!("Flashing {} on {port}…", args.file.display()));
    let result = otaforge_actions::flash_record::flash_and_record(dir, &req, &cancel, &mut |u| match u {
        FlashUpdate::Progress(p) => bar.progress(&p),
        FlashUpdate::Note(n) => bar.line(&n),
        FlashUpdate::Board(b) => bar.line(&format!(
            "Board: {}{}{}, at {} baud{}",
            b.chip,
            b.mac.map(|m| format!(", MAC {m}")).unwrap_or_default(),
            b.flash_size.map(|s| format!(", {} flash", flash::progress::human_bytes(s))).unwrap_or_default(),
            b.baud,
            if b.stub { ", flasher stub running" } else { "" },
        )),
        FlashUpdate::Phase(_) => {}
    });
    done.store(true, Ordering::SeqCst);
    let flashed = result.map_err(|e| {
        bar.line("");
        anyhow::anyhow!("{e}")
    })?;
    bar.line("");
    println!("{}", flashed.outcome.summary());
    if flashed.awaiting_confirmation {
        println!(
            "Recorded in {}: `otaforge serve` marks this flash confirmed when {} checks in running it.",
            dir.display(),
            flashed.outcome.board.mac.as_deref().unwrap_or("the device")
        );
    }
    if let Some(e) = flashed.record_error {
        eprintln!("warning: could not record the flash for the update server to confirm: {e}");
    }
    if args.monitor {
        // Sketches print at 115200 (the ESP8266 ROM's own boot lines, at 74880, show as noise).
        return monitor(dir, MonitorArgs { port: Some(port), baud: flash::ROM_BAUD, reset: false });
    }
    Ok(())
}

/// `otaforge board`: what the board is, through its ROM; nothing is written.
pub fn board(dir: &Path, args: BoardArgs) -> Result<()> {
    let port = pick_port(dir, args.port)?;
    let cancel = Cancel::new();
    let done = cancel_on_ctrl_c(&cancel);
    let timeout = Duration::from_secs(args.connect_timeout.max(1));
    let result = flash::identify(&port, timeout, &cancel, &mut |u| {
        if let FlashUpdate::Note(n) = u {
            eprintln!("{n}");
        }
    });
    done.store(true, Ordering::SeqCst);
    let b = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(());
    }
    println!("Port:  {}", b.port);
    println!("Chip:  {}", b.chip);
    println!("MAC:   {}", b.mac.as_deref().unwrap_or("unknown"));
    println!("Flash: {}", b.flash_size.map_or("unknown".into(), flash::progress::human_bytes));
    Ok(())
}

/// `otaforge monitor`.
pub fn monitor(dir: &Path, args: MonitorArgs) -> Result<()> {
    let port = pick_port(dir, args.port)?;
    // Ctrl-C is caught before the line that invites it.
    let cancel = Cancel::new();
    let done = cancel_on_ctrl_c(&cancel);
    let mut out = std::io::stdout();
    let mut opened = || eprintln!("Monitoring {port} at {} baud. Ctrl-C stops.", args.baud);
    let result = flash::monitor::monitor(&port, args.baud, args.reset, &cancel, &mut opened, &mut |line| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
    done.store(true, Ordering::SeqCst);
    result.map(|_| ()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `otaforge provision`: only the board's own settings; its firmware is not touched.
pub fn provision(dir: &Path, args: ProvisionArgs) -> Result<()> {
    let Some(settings) = args.settings.settings()? else {
        bail!("nothing to write: give --device-name and/or --wifi-ssid");
    };
    let port = pick_port(dir, args.port)?;
    let mut req = FlashRequest::provision(&port, settings.clone());
    req.chip = args.chip.0;
    req.baud = args.baud;
    req.connect_timeout = Duration::from_secs(args.connect_timeout.max(1));
    let cancel = Cancel::new();
    let done = cancel_on_ctrl_c(&cancel);
    let mut bar = Bar { tty: std::io::stderr().is_terminal(), last_tenth: None, drawn: false };
    let result = otaforge_actions::flash_record::flash_and_record(dir, &req, &cancel, &mut |u| match u {
        FlashUpdate::Progress(p) => bar.progress(&p),
        FlashUpdate::Note(n) => bar.line(&n),
        FlashUpdate::Board(b) => {
            bar.line(&format!("Board: {}{}", b.chip, b.mac.map(|m| format!(", MAC {m}")).unwrap_or_default()))
        }
        FlashUpdate::Phase(_) => {}
    });
    done.store(true, Ordering::SeqCst);
    let flashed = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.line("");
    let name = if settings.name.is_empty() {
        "its MAC-derived name".to_string()
    } else {
        format!("\"{}\"", settings.name)
    };
    let wifi =
        settings.wifi.as_ref().map_or("its built-in Wi-Fi".to_string(), |w| format!("Wi-Fi \"{}\"", w.ssid));
    println!(
        "Provisioned {} on {port}: {name}, {wifi}. Its firmware was not written; it takes the settings at its next boot.",
        flashed.outcome.board.mac.as_deref().unwrap_or("the board")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chips_and_offsets_parse() {
        assert!(parse_chip("auto").unwrap().0.is_none());
        assert_eq!(parse_chip("esp32c3").unwrap().0, Some(Chip::Esp32C3));
        assert_eq!(parse_chip("ESP8266").unwrap().0, Some(Chip::Esp8266));
        assert!(parse_chip("esp31").unwrap_err().contains("is not a chip"));
        assert_eq!(parse_offset("0x10000"), Ok(0x10000));
        assert_eq!(parse_offset("4096"), Ok(4096));
        assert!(parse_offset("ten").is_err());
    }
}
