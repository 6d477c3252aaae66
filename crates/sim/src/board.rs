//! A whole virtual board: the serial side ([`crate::serial`], the ROM bootloader a flasher
//! talks to on a pty) and the running side ([`crate::device`], the firmware that boots and
//! updates itself), one chip with one MAC. While a flasher talks to the ROM the firmware is held
//! in reset; when the flashing session ends and the chip leaves the bootloader, the board boots
//! what was flashed, with the serial console continuing across boots. What the chip prints (the
//! ROM's boot messages, the firmware's log: [`crate::device::Console`]) goes out on the pty while
//! the firmware runs, at the rate it is printed at; while the ROM answers a flasher nothing else
//! is sent.
//!
//! One limit, stated plainly: the running firmware's own flash writes (an OTA update) stay with
//! the running side. The serial side keeps what was flashed over serial, so a flasher reading the
//! flash back after an OTA update sees the flashed image, not the update, and flashing again
//! starts from that.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::device::{
    Activity, Console, DeviceEvent, DeviceHandle, DeviceOptions, DeviceStatus, Flash, Identity,
    VirtualDevice, console_for,
};
use super::serial::{self, DeviceState, SimOptions, VirtualSerialDevice};
use otaforge_firmware::Chip;

/// How to build a board.
#[derive(Debug, Clone)]
pub struct BoardOptions {
    /// ESP8266 or ESP32-C3 (the chips the serial side simulates).
    pub chip: Chip,
    /// The number its MAC is derived from (distinct boards, distinct MACs).
    pub number: u32,
    /// The flash file; `None`: a temporary one, removed with the board.
    pub flash_file: Option<PathBuf>,
    /// Register the port in `<dir>/virtual-devices/`, so the Flash step lists it.
    pub registry_dir: Option<PathBuf>,
    /// A name for the port list.
    pub name: Option<String>,
    /// How the running firmware behaves (network, clock, speed).
    pub device: DeviceOptions,
}

impl BoardOptions {
    /// A board of `chip` with the default options.
    pub fn new(chip: Chip, number: u32) -> BoardOptions {
        BoardOptions {
            chip,
            number,
            flash_file: None,
            registry_dir: None,
            name: None,
            device: DeviceOptions::default(),
        }
    }
}

/// Why a board could not start.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("a virtual board can be an ESP8266 or an ESP32-C3, not an {0}")]
    Chip(Chip),
    #[error(transparent)]
    Serial(#[from] serial::SimError),
}

/// A running virtual board. Dropping it without [`VirtualBoard::stop`] stops the serial side; the
/// firmware task ends with the runtime.
pub struct VirtualBoard {
    serial: Arc<VirtualSerialDevice>,
    id: Identity,
    console: Console,
    running: Arc<Mutex<Option<DeviceHandle>>>,
    stop: watch::Sender<bool>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl VirtualBoard {
    /// Starts the serial side on a new pty (inside a tokio runtime). The firmware starts once
    /// something has been flashed and the ROM was told to run it.
    pub fn start(opts: BoardOptions) -> Result<VirtualBoard, BoardError> {
        let serial_chip = match opts.chip {
            Chip::Esp8266 => serial::Chip::Esp8266,
            Chip::Esp32C3 => serial::Chip::Esp32c3,
            other => return Err(BoardError::Chip(other)),
        };
        let id = Identity::numbered(opts.chip, opts.number);
        let serial = Arc::new(VirtualSerialDevice::spawn(SimOptions {
            chip: serial_chip,
            flash_file: opts.flash_file.clone(),
            flash_size: id.flash_size as u32,
            mac: Some(id.mac),
            name: opts.name.clone(),
            registry_dir: opts.registry_dir.clone(),
            ..SimOptions::default()
        })?);
        let console = console_for(&id, opts.device.log_lines).with_serial(serial.firmware_uart());
        let running = Arc::new(Mutex::new(None));
        let (stop, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            serial.clone(),
            id,
            opts.device,
            console.clone(),
            running.clone(),
            stop_rx,
        ));
        Ok(VirtualBoard { serial, id, console, running, stop, supervisor })
    }

    /// The pty a flasher opens.
    pub fn port(&self) -> &Path {
        self.serial.pty_path()
    }

    /// The file holding what was flashed.
    pub fn flash_path(&self) -> &Path {
        self.serial.flash_path()
    }

    /// Who the chip is.
    pub fn identity(&self) -> Identity {
        self.id
    }

    /// The running side's status (`Activity::Off` while in the bootloader).
    pub fn status(&self) -> DeviceStatus {
        self.console.status()
    }

    /// Watches the status.
    pub fn watch(&self) -> watch::Receiver<DeviceStatus> {
        self.console.watch()
    }

    /// Subscribes to the firmware's events (log lines, boots, checks), across boots.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.console.subscribe()
    }

    /// The serial log so far (every boot).
    pub fn log(&self) -> Vec<String> {
        self.console.lines()
    }

    /// Makes the running firmware check for an update now.
    pub fn check_now(&self) {
        if let Some(d) = self.running.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            d.check_now();
        }
    }

    /// What the reset lines would do with the boot pin held: the firmware stops and the ROM
    /// bootloader waits for a flasher.
    pub fn reset_to_bootloader(&self) {
        self.serial.reset_to_bootloader();
    }

    /// The RST button with the boot pin released: the chip restarts and runs what its flash
    /// holds, printing its boot messages again.
    pub fn reset(&self) {
        self.serial.reset_to_firmware();
    }

    /// Waits until the status satisfies `pred` (at most `timeout`); `Err` with the last status.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&DeviceStatus) -> bool,
    ) -> Result<DeviceStatus, DeviceStatus> {
        let mut rx = self.console.watch();
        let wait = async {
            match rx.wait_for(|s| pred(s)).await {
                Ok(s) => s.clone(),
                Err(_) => self.status(),
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| self.status())
    }

    /// Switches the board off: the firmware stops, the pty closes.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
        drop(self.serial);
    }
}

/// Boots the firmware when the ROM hands over, holds it in reset while the ROM works.
async fn supervise(
    serial: Arc<VirtualSerialDevice>,
    id: Identity,
    opts: DeviceOptions,
    console: Console,
    running: Arc<Mutex<Option<DeviceHandle>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // The serial side's `firmware_starts` the firmware was last started for.
    let mut started = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let st = serial.status();
        let state = st.state;
        let mut is_running = running.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        if is_running && state == DeviceState::RunningFirmware && started != Some(st.firmware_starts) {
            // Reset while it ran: the running firmware stops, and starts again below.
            halt(&running).await;
            is_running = false;
        }
        match (state, is_running) {
            (DeviceState::RunningFirmware, false) if started != Some(st.firmware_starts) => {
                started = Some(st.firmware_starts);
                let bytes = serial.flash_contents();
                let flash = match Flash::from_bytes(&bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        console.raw(format!("virtual device: cannot read its flash: {e}"));
                        continue;
                    }
                };
                let mut device = VirtualDevice::new(id, flash, opts.clone());
                device.set_console(console.clone());
                // What the firmware writes (updates, its settings) stays in the chip's flash.
                let chip = serial.clone();
                device.set_flash_sink(Box::new(move |at, bytes| {
                    let _ = chip.write_back(at as u32, bytes);
                }));
                device.external_reset();
                *running.lock().unwrap_or_else(|p| p.into_inner()) = Some(device.spawn());
            }
            (DeviceState::RunningFirmware, _) => {}
            (_, true) => halt(&running).await,
            (DeviceState::Gone, false) => break,
            (_, false) => {}
        }
    }
    halt(&running).await;
    console.update(|s| s.activity = Activity::Off);
}

async fn halt(running: &Mutex<Option<DeviceHandle>>) {
    let handle = running.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(h) = handle {
        h.stop().await;
    }
}
