//! The Flash step's side of the worker: serial ports (watched while the step is visible),
//! flashing with progress and Cancel, the serial monitor, virtual devices to flash without a
//! board, and the update server's confirmation of ESP8266 flashes.
//!
//! Serial I/O blocks, so flashing and monitoring run on blocking threads; the port list is
//! polled every 1.5 s only while the UI asks for it, and reported only when it changes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Event, Runner};
use otaforge_firmware::Chip;
use otaforge_firmware::device_settings::DeviceSettings;
use otaforge_flash::{
    self as flash, BoardInfo, Cancel, FlashOutcome, FlashRequest, FlashUpdate, PortInfo, StubSource,
};
use otaforge_sim::board::{BoardOptions, VirtualBoard};
use otaforge_sim::device::{DeviceOptions, Net};

/// Virtual boards started here are numbered from this (their MACs follow from the number).
const VIRTUAL_BOARD_BASE: u32 = 0xF1_0000;

/// How often the port list is read while the Flash step is visible.
const PORT_POLL: Duration = Duration::from_millis(1500);

/// A file chosen for flashing, as checked before any board is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    /// The file.
    pub path: PathBuf,
    /// "ESP32-C3 app image at 0x10000", or why it cannot be flashed.
    pub result: Result<ImageSummary, String>,
}

/// What the file is and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// In words: what and where.
    pub description: String,
    /// The chip it is built for, when the file says.
    pub chip: Option<Chip>,
    /// Size in bytes.
    pub size: u64,
    /// The version it carries.
    pub version: Option<String>,
    /// Things worth knowing.
    pub warnings: Vec<String>,
    /// A stand-in (`otaforge sim reference-image`) that runs on virtual boards only: flashing it
    /// to a real port is refused.
    pub virtual_only: bool,
}

/// What the Flash step asks for.
#[derive(Debug, Clone)]
pub enum FlashCommand {
    /// Start (true) or stop (false) watching the serial ports; starting reports them at once.
    WatchPorts(bool),
    /// Check a firmware file.
    CheckImage(PathBuf),
    /// Start a virtual board to flash without hardware: its ROM answers on a pseudo-terminal,
    /// and once flashed it boots the firmware, which polls the update server like a real board.
    AddVirtualDevice(Chip),
    /// Identify the board on a port (chip, MAC, flash size); nothing is written.
    Identify(String),
    /// Flash an image.
    Flash {
        /// The port.
        port: String,
        /// The file.
        image: PathBuf,
        /// The chip, when the user chose one (`None`: detect).
        chip: Option<Chip>,
        /// Fastest baud rate to try.
        baud: u32,
        /// Start the serial monitor at this rate once the flash worked.
        monitor_after: Option<u32>,
        /// The board's own settings, written to its device settings area after the image.
        device_settings: Option<DeviceSettings>,
        /// Where an ESP8266 flash takes its flasher stub from (the user's esptool by default).
        stub: StubSource,
    },
    /// Write only a board's own settings (name, Wi-Fi); its firmware stays as it is.
    Provision {
        /// The port.
        port: String,
        /// The chip, when the user chose one.
        chip: Option<Chip>,
        /// Fastest baud rate to try.
        baud: u32,
        /// What to write.
        settings: DeviceSettings,
    },
    /// Stop the running flash.
    Cancel,
    /// Show what the board on `port` prints at `baud`.
    Monitor {
        /// The port.
        port: String,
        /// Baud rate.
        baud: u32,
    },
    /// Stop the monitor.
    StopMonitor,
}

/// What the Flash step hears back.
#[derive(Debug, Clone)]
pub enum FlashEvent {
    /// The serial ports (virtual devices first), sent when they change.
    Ports(Vec<PortInfo>),
    /// A virtual board was started on this port.
    VirtualDeviceAdded(String),
    /// A virtual board could not be started.
    VirtualDeviceFailed(String),
    /// A file was checked.
    ImageChecked(ImageChoice),
    /// The board on a port, or why it could not be reached.
    Identified(Result<BoardInfo, String>),
    /// The running flash moved on.
    Update(FlashUpdate),
    /// The flash worked.
    Done {
        /// What was done.
        outcome: Box<FlashOutcome>,
        /// The update server will confirm it at the device's first check-in (ESP8266).
        awaiting_confirmation: bool,
    },
    /// The flash failed; the diagnosis in words.
    Failed(String),
    /// The device flashed earlier checked in with the update server running the image.
    Confirmed {
        /// Its MAC.
        mac: String,
    },
    /// The monitor has the port open: from now on every line the board prints is shown.
    MonitorOpened(String),
    /// A line the board printed.
    MonitorLine(String),
    /// The monitor stopped (with the reason, if it was not the user).
    MonitorStopped(Option<String>),
}

/// The Flash step's running work.
#[derive(Clone, Default)]
pub(super) struct FlashState(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    flash: Option<Cancel>,
    monitor: Option<Cancel>,
    /// Turns true once the last monitor started has closed its port. serialport opens a tty
    /// exclusively (TIOCEXCL), so a flash that opened it sooner would fail as "in use by another
    /// program": by our own monitor.
    monitor_released: Option<watch::Receiver<bool>>,
    boards: Vec<VirtualBoard>,
    watch: u64,
    watching: bool,
    ports: Option<Vec<PortInfo>>,
    awaiting: Option<String>,
}

impl FlashState {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Runner {
    fn flash_event(&self, event: FlashEvent) {
        self.emit(Event::Flash(event));
    }

    pub(super) async fn flash(&self, command: FlashCommand) {
        match command {
            FlashCommand::WatchPorts(on) => self.watch_ports(on).await,
            FlashCommand::CheckImage(path) => self.check_image(path).await,
            FlashCommand::AddVirtualDevice(chip) => self.add_virtual_board(chip).await,
            FlashCommand::Identify(port) => self.identify(port).await,
            FlashCommand::Flash { port, image, chip, baud, monitor_after, device_settings, stub } => {
                let worked =
                    self.run_flash(port.clone(), Some(image), chip, baud, device_settings, stub).await;
                if worked && let Some(rate) = monitor_after {
                    self.run_monitor(port, rate).await;
                }
            }
            FlashCommand::Provision { port, chip, baud, settings } => {
                self.run_flash(port, None, chip, baud, Some(settings), StubSource::Installed).await;
            }
            FlashCommand::Cancel => {
                if let Some(c) = self.flash_state.lock().flash.clone() {
                    c.cancel();
                }
            }
            FlashCommand::Monitor { port, baud } => self.run_monitor(port, baud).await,
            FlashCommand::StopMonitor => {
                if let Some(c) = self.flash_state.lock().monitor.take() {
                    c.cancel();
                }
            }
        }
    }

    /// Starts a virtual board registered in the project, so the port list shows it. Its firmware
    /// finds the update host on this machine and checks every 10 s (not the baked hour), so a
    /// flash is confirmed within moments when the Serve step runs.
    async fn add_virtual_board(&self, chip: Chip) {
        let number = {
            let s = self.flash_state.lock();
            VIRTUAL_BOARD_BASE + s.boards.len() as u32
        };
        let device = DeviceOptions {
            net: Net { dns: Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)), ..Net::default() },
            poll_interval: Some(Duration::from_secs(10)),
            ..DeviceOptions::default()
        };
        let opts =
            BoardOptions { registry_dir: Some(self.dir.clone()), device, ..BoardOptions::new(chip, number) };
        match VirtualBoard::start(opts) {
            Ok(board) => {
                let path = board.port().display().to_string();
                self.flash_state.lock().boards.push(board);
                self.flash_event(FlashEvent::VirtualDeviceAdded(path));
                self.report_ports(true).await;
            }
            Err(e) => self.flash_event(FlashEvent::VirtualDeviceFailed(e.to_string())),
        }
    }

    async fn check_image(&self, path: PathBuf) {
        let p = path.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<ImageSummary, String> {
            let bytes = std::fs::read(&p).map_err(|e| format!("Cannot read {}: {e}", p.display()))?;
            let size = bytes.len() as u64;
            let virtual_only = otaforge_firmware::virtual_only::is_virtual_only(&bytes);
            let plan = flash::plan::plan(bytes, None).map_err(|e| e.to_string())?;
            Ok(ImageSummary {
                description: plan.describe(),
                chip: plan.chip,
                size,
                version: plan.version,
                warnings: plan.warnings,
                virtual_only,
            })
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        self.flash_event(FlashEvent::ImageChecked(ImageChoice { path, result }));
    }

    /// Starts or stops the port watch. Each start gets a new generation; an older loop ends
    /// when it sees a newer one.
    async fn watch_ports(&self, on: bool) {
        let generation = {
            let mut s = self.flash_state.lock();
            s.watch += 1;
            s.watching = on;
            if on {
                s.ports = None; // report the list at once
            }
            s.watch
        };
        if !on {
            return;
        }
        loop {
            self.report_ports(false).await;
            self.check_confirmation().await;
            tokio::time::sleep(PORT_POLL).await;
            let s = self.flash_state.lock();
            if !s.watching || s.watch != generation {
                return;
            }
        }
    }

    /// Reads the ports and reports them if they changed (or always, with `force`).
    async fn report_ports(&self, force: bool) {
        let dir = self.dir.clone();
        let ports = tokio::task::spawn_blocking(move || otaforge_actions::ports::all_ports(&dir))
            .await
            .unwrap_or_default();
        let changed = {
            let mut s = self.flash_state.lock();
            let changed = force || s.ports.as_ref() != Some(&ports);
            s.ports = Some(ports.clone());
            changed
        };
        if changed {
            self.flash_event(FlashEvent::Ports(ports));
        }
    }

    /// Tells the UI once the device flashed last has checked in running its image.
    async fn check_confirmation(&self) {
        let Some(mac) = self.flash_state.lock().awaiting.clone() else { return };
        let dir = self.dir.clone();
        let m = mac.clone();
        let status =
            tokio::task::spawn_blocking(move || otaforge_actions::flash_record::status(&dir, &m)).await;
        if let Ok(Ok(Some(f))) = status
            && f.confirmed_at.is_some()
        {
            self.flash_state.lock().awaiting = None;
            self.flash_event(FlashEvent::Confirmed { mac });
        }
    }

    /// Cancels the running monitor and flash (each lets go of its port at its next read).
    pub(super) fn stop_serial_work(&self) {
        let s = self.flash_state.lock();
        for cancel in s.monitor.iter().chain(s.flash.iter()) {
            cancel.cancel();
        }
    }

    /// Claims `port` for a flash or a detection: `None` while another one runs. The monitor holds
    /// the port, so it is stopped and waited for until it has let go; a virtual board on it is
    /// put back into its bootloader (what DTR/RTS would do to a real one).
    async fn take_port(&self, port: &str) -> Option<Cancel> {
        let cancel = Cancel::new();
        let released = {
            let mut s = self.flash_state.lock();
            if s.flash.is_some() {
                return None;
            }
            s.flash = Some(cancel.clone());
            if let Some(m) = s.monitor.take() {
                m.cancel();
            }
            if let Some(board) = s.boards.iter().find(|b| b.port().display().to_string() == port) {
                board.reset_to_bootloader();
            }
            s.monitor_released.clone()
        };
        monitor_let_go(released).await;
        Some(cancel)
    }

    /// Flashes `image` (and the board's own settings, if any), or with no image only the settings.
    async fn run_flash(
        &self,
        port: String,
        image: Option<PathBuf>,
        chip: Option<Chip>,
        baud: u32,
        settings: Option<DeviceSettings>,
        stub: StubSource,
    ) -> bool {
        let Some(cancel) = self.take_port(&port).await else {
            self.flash_event(FlashEvent::Failed("A flash is already running.".into()));
            return false;
        };
        let worker = self.clone();
        let dir = self.dir.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(FlashOutcome, bool), String> {
            let mut req = match (image, settings) {
                (Some(image), settings) => {
                    let bytes =
                        std::fs::read(&image).map_err(|e| format!("Cannot read {}: {e}", image.display()))?;
                    FlashRequest { device_settings: settings, ..FlashRequest::new(port, bytes) }
                }
                (None, Some(settings)) => FlashRequest::provision(port, settings),
                (None, None) => return Err("Nothing to write.".into()),
            };
            req.chip = chip;
            req.baud = baud;
            req.stub = stub;
            let flashed = otaforge_actions::flash_record::flash_and_record(&dir, &req, &cancel, &mut |u| {
                worker.flash_event(FlashEvent::Update(u))
            })
            .map_err(|e| e.to_string())?;
            if let Some(e) = &flashed.record_error {
                log::warn!("could not record the flash for the update server: {e}");
            }
            Ok((flashed.outcome, flashed.awaiting_confirmation))
        })
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")));
        let mut s = self.flash_state.lock();
        s.flash = None;
        match result {
            Ok((outcome, awaiting)) => {
                if awaiting {
                    s.awaiting = outcome.board.mac.clone();
                }
                drop(s);
                self.flash_event(FlashEvent::Done {
                    outcome: Box::new(outcome),
                    awaiting_confirmation: awaiting,
                });
                true
            }
            Err(e) => {
                drop(s);
                self.flash_event(FlashEvent::Failed(e));
                false
            }
        }
    }

    async fn identify(&self, port: String) {
        let Some(cancel) = self.take_port(&port).await else {
            self.flash_event(FlashEvent::Identified(Err("A flash is running on the port.".into())));
            return;
        };
        let result = tokio::task::spawn_blocking(move || {
            flash::identify(&port, Duration::from_secs(10), &cancel, &mut |_| {}).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("internal error: {e}")));
        self.flash_state.lock().flash = None;
        self.flash_event(FlashEvent::Identified(result));
    }

    async fn run_monitor(&self, port: String, baud: u32) {
        let cancel = Cancel::new();
        let (released, released_rx) = watch::channel(false);
        let old = {
            let mut s = self.flash_state.lock();
            if let Some(old) = s.monitor.replace(cancel.clone()) {
                old.cancel();
            }
            s.monitor_released.replace(released_rx)
        };
        monitor_let_go(old).await;
        let worker = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut opened = || worker.flash_event(FlashEvent::MonitorOpened(port.clone()));
            let lines = worker.clone();
            let end = flash::monitor::monitor(&port, baud, false, &cancel, &mut opened, &mut |line| {
                lines.flash_event(FlashEvent::MonitorLine(line))
            });
            // The port is closed once `monitor` returns.
            let _ = released.send(true);
            end
        })
        .await;
        let why = match result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("internal error: {e}")),
        };
        self.flash_event(FlashEvent::MonitorStopped(why));
    }
}

/// Waits until the monitor behind `released` has closed its port (at once if there was none, or
/// if it ended without saying so, as on a panic: its port is closed then too).
async fn monitor_let_go(released: Option<watch::Receiver<bool>>) {
    if let Some(mut released) = released {
        let _ = released.wait_for(|let_go| *let_go).await;
    }
}
