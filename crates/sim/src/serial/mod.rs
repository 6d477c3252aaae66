//! A virtual device on a serial port: an ESP ROM bootloader (and, once uploaded, a flasher stub)
//! on a pseudo-terminal, answering byte for byte as the real chip does, with its flash kept in a
//! file.
//!
//! Flashers (ours, esptool, espflash) cannot tell it from a board on a USB adapter, except that
//! the reset lines do nothing on a pty: connect with "no reset" (esptool `--before no-reset`,
//! espflash `ResetBeforeOperation::NoReset`).
//!
//! - [`slip`] and [`frame`]: the wire format.
//! - [`pty`] and [`link`]: the pseudo-terminal and the UART on it (baud rate, throttling), which
//!   also carries what the running firmware prints ([`VirtualSerialDevice::firmware_uart`]).
//! - [`flash_file`]: the SPI flash chip, in a file.
//! - `machine`, `rom`, `stub`, `flash_write`, `registers`: what the chip does with each command.
//! - [`esp8266`] and [`esp32c3`]: the two chips' facts (magic, efuses, SPI registers, ROM quirks).
//! - [`registry`]: running virtual devices, listed as ports.

pub mod esp32c3;
pub mod esp8266;
pub mod flash_file;
mod flash_write;
pub mod frame;
pub mod link;
mod machine;
pub mod pty;
mod registers;
pub mod registry;
mod rom;
pub mod slip;
mod stub;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

pub use link::UartBytes;
pub use registry::{VirtualPort, running};

use flash_file::FlashFile;
use link::Link;
use machine::Machine;

/// Which chip the virtual device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Chip {
    /// ESP8266EX: 2-byte ROM status, magic 0xFFF0C101, no compression or MD5 in ROM.
    Esp8266,
    /// ESP32-C3: 4-byte ROM status, chip id 5 from GET_SECURITY_INFO.
    Esp32c3,
}

impl Chip {
    /// The name users see ("ESP8266", "ESP32-C3").
    pub fn name(self) -> &'static str {
        match self {
            Chip::Esp8266 => "ESP8266",
            Chip::Esp32c3 => "ESP32-C3",
        }
    }
}

impl std::str::FromStr for Chip {
    type Err = String;
    fn from_str(s: &str) -> Result<Chip, String> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "esp8266" => Ok(Chip::Esp8266),
            "esp32c3" => Ok(Chip::Esp32c3),
            _ => Err(format!("unknown chip '{s}': the virtual device can be esp8266 or esp32c3")),
        }
    }
}

/// Misbehaviour on request, so a flasher's error handling can be tested against a "device".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answer this many FLASH_DATA / FLASH_DEFL_DATA blocks, then go silent (a hung chip).
    pub stop_answering_after_blocks: Option<u32>,
    /// Answer this many flash data blocks, then close the pty (a cable pulled mid-write).
    pub close_after_blocks: Option<u32>,
    /// Answer one command with an error status.
    pub fail_command: Option<FailCommand>,
    /// Report this chip magic at 0x40001000 instead of the chip's own (e.g. the ESP32's
    /// 0x00F01D83 while being an ESP8266).
    pub report_magic: Option<u32>,
    /// Report this chip id in GET_SECURITY_INFO instead of the chip's own (ESP32-C3).
    pub report_chip_id: Option<u32>,
    /// Flip a bit in every flash block written (flash that does not keep what it is told), so
    /// verification must catch it.
    pub corrupt_writes: bool,
    /// Code uploaded to RAM and started crashes at once: no `OHAI`, the watchdog restarts the
    /// chip and, the boot pin still held, the ROM bootloader answers again (a flasher stub that
    /// does not suit the chip).
    pub stub_crashes: bool,
}

/// Answer a command with an error status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailCommand {
    /// The command code (see [`frame::op`]).
    pub op: u8,
    /// Answer this many of them normally first.
    pub after: u32,
    /// The error code; `None` picks what the ROM or stub would send for a failed flash operation.
    pub code: Option<u8>,
}

/// How to build a virtual device.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The chip.
    pub chip: Chip,
    /// The file that holds the flash; `None`: a temporary file, removed with the device.
    pub flash_file: Option<PathBuf>,
    /// Flash size in bytes (a power of two from 256 KB to 16 MB).
    pub flash_size: u32,
    /// The MAC the efuses hold; `None`: derived from the flash file's path (stable per file),
    /// with Espressif's 18:FE:34 prefix on the ESP8266.
    pub mac: Option<[u8; 6]>,
    /// Move bytes at the host's baud rate (baud/10 bytes a second) and take real time for
    /// erases, so timings are realistic.
    pub throttle: bool,
    /// A name for the port list; `None`: derived from the pty path.
    pub name: Option<String>,
    /// Register the device in `<dir>/virtual-devices/` so [`running`] lists it.
    pub registry_dir: Option<PathBuf>,
    /// Misbehaviour on request.
    pub faults: Faults,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            chip: Chip::Esp8266,
            flash_file: None,
            flash_size: 4 << 20,
            mac: None,
            throttle: false,
            name: None,
            registry_dir: None,
            faults: Faults::default(),
        }
    }
}

/// Why a virtual device could not start.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's message is its documentation
pub enum SimError {
    #[error("flash size {0} bytes is not a power of two between 256 KB and 16 MB")]
    FlashSize(u32),
    #[error("could not open a pseudo-terminal: {0}")]
    Pty(std::io::Error),
    #[error("could not use {path} as the flash file: {source}")]
    FlashFile { path: PathBuf, source: std::io::Error },
    #[error("could not register the virtual device in {path}: {source}")]
    Registry { path: PathBuf, source: std::io::Error },
    #[error("could not make a temporary flash file: {0}")]
    TempDir(std::io::Error),
}

/// What the device is doing, for tests and the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// The ROM bootloader waits for commands.
    Rom,
    /// A flasher stub was uploaded and runs.
    Stub,
    /// It left the bootloader to run the flashed firmware (no more protocol answers).
    RunningFirmware,
    /// A fault knob made it stop answering.
    Hung,
    /// The pty was closed (unplugged) or the simulator stopped.
    Gone,
}

/// Counters and state shared with the simulator thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    /// What the device is doing.
    pub state: DeviceState,
    /// Every command code received, in order (the last 4096).
    pub commands: Vec<u8>,
    /// Flash data blocks (plain or compressed) accepted.
    pub flash_blocks: u32,
    /// The UART's baud rate as last used.
    pub baud: u32,
    /// How many times the chip left the bootloader, or was reset, to run its firmware.
    pub firmware_starts: u32,
}

pub(crate) struct Shared {
    pub(crate) flash: Mutex<FlashFile>,
    pub(crate) status: Mutex<DeviceStatus>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) reset: AtomicBool,
    /// A reset with the boot pin released was asked for.
    pub(crate) restart: AtomicBool,
    /// What the running firmware prints, sent while the chip runs it.
    pub(crate) uart: Mutex<Option<mpsc::UnboundedReceiver<UartBytes>>>,
}

/// A running virtual device. Dropping it stops the simulator and removes its registry entry.
pub struct VirtualSerialDevice {
    pty_path: PathBuf,
    flash_path: PathBuf,
    chip: Chip,
    name: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    registry_entry: Option<PathBuf>,
    _temp: Option<tempfile::TempDir>,
}

impl VirtualSerialDevice {
    /// Opens a pty, loads (or creates) the flash file and starts answering on its own thread.
    pub fn spawn(opts: SimOptions) -> Result<VirtualSerialDevice, SimError> {
        let size = opts.flash_size;
        if !size.is_power_of_two() || !(0x4_0000..=0x100_0000).contains(&size) {
            return Err(SimError::FlashSize(size));
        }
        let (flash_path, temp) = match &opts.flash_file {
            Some(p) => (p.clone(), None),
            None => {
                let dir =
                    tempfile::Builder::new().prefix("otaforge-flash").tempdir().map_err(SimError::TempDir)?;
                (dir.path().join("flash.bin"), Some(dir))
            }
        };
        let flash = FlashFile::open(&flash_path, size)
            .map_err(|source| SimError::FlashFile { path: flash_path.clone(), source })?;
        let pty = pty::Pty::open().map_err(SimError::Pty)?;
        let pty_path = pty.path().to_path_buf();
        let name = opts.name.clone().unwrap_or_else(|| default_name(opts.chip, &pty_path));
        let mac = opts.mac.unwrap_or_else(|| default_mac(opts.chip, &flash_path));

        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            flash: Mutex::new(flash),
            status: Mutex::new(DeviceStatus {
                state: DeviceState::Rom,
                commands: Vec::new(),
                flash_blocks: 0,
                baud: 115_200,
                firmware_starts: 0,
            }),
            stop: stop.clone(),
            reset: AtomicBool::new(false),
            restart: AtomicBool::new(false),
            uart: Mutex::new(None),
        });
        let registry_entry = match &opts.registry_dir {
            Some(dir) => {
                let port = VirtualPort {
                    name: name.clone(),
                    chip: opts.chip,
                    pty: pty_path.clone(),
                    flash_file: flash_path.clone(),
                    pid: std::process::id(),
                };
                Some(
                    registry::register(dir, &port)
                        .map_err(|source| SimError::Registry { path: dir.clone(), source })?,
                )
            }
            None => None,
        };
        let link = Link::new(pty, opts.throttle, stop);
        let mut machine = Machine::new(opts.chip, mac, opts.throttle, opts.faults.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name(format!("virtual-device {name}"))
            .spawn(move || machine.run(link))
            .map_err(SimError::Pty)?;
        Ok(VirtualSerialDevice {
            pty_path,
            flash_path,
            chip: opts.chip,
            name,
            shared,
            thread: Some(thread),
            registry_entry,
            _temp: temp,
        })
    }

    /// The port a flasher opens, e.g. `/dev/pts/7`.
    pub fn pty_path(&self) -> &Path {
        &self.pty_path
    }

    /// The file that holds the flash.
    pub fn flash_path(&self) -> &Path {
        &self.flash_path
    }

    /// The chip it simulates.
    pub fn chip(&self) -> Chip {
        self.chip
    }

    /// Its name in the port list.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A copy of the whole flash.
    pub fn flash_contents(&self) -> Vec<u8> {
        self.shared.flash.lock().unwrap_or_else(|e| e.into_inner()).contents().to_vec()
    }

    /// Writes what the running firmware wrote (an OTA update, its settings) into the chip's
    /// flash, so the ROM and the next boot see it as a real chip's flash would hold it.
    pub fn write_back(&self, offset: u32, bytes: &[u8]) -> std::io::Result<()> {
        let mut flash = self.shared.flash.lock().unwrap_or_else(|e| e.into_inner());
        flash.erase(offset, bytes.len() as u32)?;
        flash.program(offset, bytes)?;
        Ok(())
    }

    /// State and counters.
    pub fn status(&self) -> DeviceStatus {
        self.shared.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resets the chip into the ROM bootloader (what the reset lines would do on a board):
    /// the stub is gone, the UART auto-bauds again, a hung chip answers again.
    pub fn reset_to_bootloader(&self) {
        self.shared.reset.store(true, Ordering::SeqCst);
    }

    /// Resets the chip with the boot pin released (the board's RST button): it leaves the
    /// bootloader, or restarts, and runs its firmware.
    pub fn reset_to_firmware(&self) {
        self.shared.restart.store(true, Ordering::SeqCst);
    }

    /// The UART the running firmware prints to: what is sent here goes out on the pty, at the
    /// rate it says, while the chip runs its firmware, and is dropped otherwise (so a flasher
    /// talking to the ROM never reads it). A new call replaces the previous UART.
    pub fn firmware_uart(&self) -> mpsc::UnboundedSender<UartBytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.shared.uart.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        tx
    }

    /// Stops the simulator, closes the pty and removes the registry entry.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(entry) = self.registry_entry.take() {
            let _ = std::fs::remove_file(entry);
        }
    }
}

impl Drop for VirtualSerialDevice {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for VirtualSerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualSerialDevice")
            .field("name", &self.name)
            .field("chip", &self.chip)
            .field("pty", &self.pty_path)
            .field("flash", &self.flash_path)
            .finish()
    }
}

fn default_name(chip: Chip, pty: &Path) -> String {
    let n = pty.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("virtual-{}-pts{n}", chip.name().to_ascii_lowercase())
}

/// A MAC that stays the same for the same flash file, so a virtual device keeps its identity.
fn default_mac(chip: Chip, flash: &Path) -> [u8; 6] {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(flash.to_string_lossy().as_bytes());
    match chip {
        Chip::Esp8266 => [0x18, 0xFE, 0x34, h[0], h[1], h[2]],
        // Espressif's 24:0A:C4 / 7C:DF:A1 style: any Espressif OUI works for the C3.
        Chip::Esp32c3 => [0x7C, 0xDF, 0xA1, h[0], h[1], h[2]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    use nix::sys::termios::{self, BaudRate, SetArg};

    /// A host on `dev`'s pty at 115200 baud; what it reads arrives on the receiver.
    fn host(dev: &VirtualSerialDevice) -> (std::fs::File, std::sync::mpsc::Receiver<Vec<u8>>) {
        let port = std::fs::OpenOptions::new().read(true).write(true).open(dev.pty_path()).unwrap();
        let mut t = termios::tcgetattr(&port).unwrap();
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, BaudRate::B115200).unwrap();
        termios::tcsetattr(&port, SetArg::TCSANOW, &t).unwrap();
        let mut reader = port.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        (port, rx)
    }

    /// Reads until `done` holds for everything read, at most 10 s.
    fn read_until(rx: &std::sync::mpsc::Receiver<Vec<u8>>, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => got.extend(b),
                Err(_) => panic!("read only {:?}", String::from_utf8_lossy(&got)),
            }
        }
        got
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_firmwares_text_goes_out_only_while_it_runs() {
        let dev = VirtualSerialDevice::spawn(SimOptions::default()).unwrap();
        let (mut port, rx) = host(&dev);
        let uart = dev.firmware_uart();
        let text = |t: &str| UartBytes { baud: 115_200, bytes: t.as_bytes().to_vec() };
        uart.send(text("[otaforge] held in reset\n")).unwrap();
        // Two SYNCs: the text queued before the first is dealt with before the second is
        // answered, so had it gone out it would sit among the answers.
        let mut sync = vec![0x07, 0x07, 0x12, 0x20];
        sync.extend([0x55; 32]);
        let request = slip::encode(&frame::Request::encode(frame::op::SYNC, 0, &sync));
        for _ in 0..2 {
            port.write_all(&request).unwrap();
        }
        let frames = |b: &[u8]| slip::Decoder::new().feed(b).len();
        let answers = read_until(&rx, |b| frames(b) >= 16);
        assert!(!contains(&answers, b"held in reset"), "{:?}", String::from_utf8_lossy(&answers));

        dev.reset_to_firmware();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while dev.status().state != DeviceState::RunningFirmware {
            assert!(std::time::Instant::now() < deadline, "{:?}", dev.status());
            std::thread::yield_now();
        }
        uart.send(text("[otaforge] running\n")).unwrap();
        read_until(&rx, |b| contains(b, b"[otaforge] running\n"));
        assert_eq!((dev.status().state, dev.status().firmware_starts), (DeviceState::RunningFirmware, 1));
    }
}
