//! A virtual ESP8266 or ESP32 after reset: it boots what its flash holds ([`boot`]), runs the
//! reference firmware's loop ([`firmware`]: banner, clock, checks with jitter) and updates itself
//! over HTTPS exactly as the Arduino cores' HTTP updaters do ([`updater`], [`http`], [`tls`]):
//! the same headers, checks, error codes and log lines. Thousands run as tasks on one tokio
//! runtime; each is watched through its [`DeviceHandle`] (status, events, serial log).
//!
//! What differs from a real chip, on purpose: no `max_fragment_length` in its ClientHello (see
//! [`tls`]); a broken-off download fails at once instead of after the 60 s stream timeout; heap
//! figures in the log are typical values.

pub mod boot;
pub mod boot_messages;
pub mod codes;
pub mod device_area;
mod firmware;
pub mod flash;
pub mod http;
pub mod identity;
pub mod image_check;
pub mod partitions;
pub mod signature_check;
pub mod status;
pub mod tls;
pub mod updater;

use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};

pub use boot::Esp8266Layout;
pub use flash::Flash;
pub use identity::Identity;
pub use status::{Activity, CheckFailure, CheckOutcome, Console, DeviceEvent, DeviceStatus, SKETCH_BAUD};
pub use updater::Net;

use otaforge_firmware::config_block;
use otaforge_firmware::{Chip, ImageBuilder};

/// The device's clock, which decides whether certificates look valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// SNTP answers: the host's time shifted by `skew_s` seconds (0: right). The firmware never
    /// goes below its bake time, so a clock behind still works; one far ahead sees expired
    /// certificates.
    Sntp {
        /// Seconds ahead (negative: behind).
        skew_s: i64,
    },
    /// SNTP never answers (UDP 123 blocked): after 20 s the firmware checks certificates against
    /// its bake time.
    NoSntp,
    /// The clock is never set, and the firmware's bake-time floor is off: what a sketch without
    /// the reference firmware's clock handling does. BearSSL then checks against 1970 (error 54).
    Unset,
}

impl Clock {
    /// The time SNTP gave (0 when it gave none).
    fn host_time(self) -> u64 {
        match self {
            Clock::Sntp { skew_s } => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                now.saturating_add(skew_s).max(0) as u64
            }
            Clock::NoSntp | Clock::Unset => 0,
        }
    }
}

/// How a virtual device behaves beyond what its flash says.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// The network: DNS for the update host, timeouts.
    pub net: Net,
    /// The clock.
    pub clock: Clock,
    /// The firmware's waits (first check, poll interval, SNTP wait) run this many times faster.
    pub speed: f64,
    /// Check this often instead of the baked interval (and below the firmware's 10 s floor):
    /// for fleets and demos.
    pub poll_interval: Option<Duration>,
    /// Serial log lines kept.
    pub log_lines: usize,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            net: Net::default(),
            clock: Clock::Sntp { skew_s: 0 },
            speed: 1.0,
            poll_interval: None,
            log_lines: 500,
        }
    }
}

/// A virtual chip: identity, flash, RTC memory, and the firmware's run state.
pub struct VirtualDevice {
    /// Who it is.
    pub id: Identity,
    /// Its flash.
    pub flash: Flash,
    rtc: boot::Rtc,
    opts: DeviceOptions,
    console: Console,
    updater_stuck: bool,
    poke: std::sync::Arc<Notify>,
    flash_sink: Option<FlashSink>,
}

/// Where a device's flash writes go when it is switched off (a virtual board's serial side).
pub type FlashSink = Box<dyn Fn(usize, &[u8]) + Send + Sync>;

impl VirtualDevice {
    /// A device that has not been switched on yet.
    pub fn new(id: Identity, flash: Flash, opts: DeviceOptions) -> VirtualDevice {
        let console = console_for(&id, opts.log_lines);
        VirtualDevice {
            id,
            flash,
            rtc: boot::Rtc::default(),
            opts,
            console,
            updater_stuck: false,
            poke: std::sync::Arc::new(Notify::new()),
            flash_sink: None,
        }
    }

    /// Sends every sector the firmware wrote (updates, settings) to `sink` when the device is
    /// switched off, before it says it is off: a board's flash keeps what its firmware wrote.
    pub fn set_flash_sink(&mut self, sink: FlashSink) {
        self.flash_sink = Some(sink);
    }

    /// Replaces the console (e.g. one that also writes to a serial port), keeping the status.
    pub fn set_console(&mut self, console: Console) {
        self.console = console;
    }

    /// Its console.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Marks the next boot as coming from the reset pin (after serial flashing).
    pub fn external_reset(&mut self) {
        self.rtc.reset_reason = boot::ResetReason::External;
    }

    /// Switches it on as a task on the current tokio runtime.
    pub fn spawn(self) -> DeviceHandle {
        let (stop_tx, stop) = watch::channel(false);
        let console = self.console.clone();
        let poke = self.poke.clone();
        let task = tokio::spawn(self.run(stop));
        DeviceHandle { console, poke, stop: stop_tx, task }
    }

    /// Runs until `stop` turns true, then returns the device (its flash as the run left it).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> VirtualDevice {
        if !*stop.borrow() {
            firmware::power_on(&mut self, &mut stop).await;
        }
        if let Some(sink) = &self.flash_sink {
            for sector in self.flash.take_dirty() {
                if let Ok(bytes) = self.flash.read(sector * flash::SECTOR, flash::SECTOR) {
                    sink(sector * flash::SECTOR, &bytes);
                }
            }
        }
        self.console.update(|s| s.activity = Activity::Off);
        self.console.event(DeviceEvent::Stopped);
        self
    }

    /// Waits `d` (scaled by the speed), or less when poked; false when switched off meanwhile.
    async fn sleep(&self, d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        let d = d.div_f64(self.opts.speed.max(1e-3));
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.poke.notified() => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }
}

/// A console for the chip `id`, switched off, keeping `log_lines` lines: one console can follow a
/// chip across several runs (see [`VirtualDevice::set_console`]).
pub fn console_for(id: &Identity, log_lines: usize) -> Console {
    let status = DeviceStatus {
        mac: id.sta_mac(),
        chip: id.chip,
        name: id.default_name(),
        wifi_ssid: None,
        activity: Activity::Off,
        version: None,
        sketch_md5: None,
        boots: 0,
        checks: 0,
        updates: 0,
        failures: 0,
        last_outcome: None,
    };
    Console::new(status, log_lines.max(1))
}

/// A running virtual device.
pub struct DeviceHandle {
    console: Console,
    poke: std::sync::Arc<Notify>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<VirtualDevice>,
}

impl DeviceHandle {
    /// Its status now.
    pub fn status(&self) -> DeviceStatus {
        self.console.status()
    }

    /// Watches its status.
    pub fn watch(&self) -> watch::Receiver<DeviceStatus> {
        self.console.watch()
    }

    /// Subscribes to its events (log lines, boots, checks).
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.console.subscribe()
    }

    /// The serial log kept so far.
    pub fn log(&self) -> Vec<String> {
        self.console.lines()
    }

    /// Cuts the current wait short: the next check (or the SNTP fallback) happens now.
    pub fn check_now(&self) {
        self.poke.notify_one();
    }

    /// Waits until `pred` holds for the status, at most `timeout`; returns the last status either
    /// way (`Err` on timeout).
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

    /// Switches it off and returns it.
    pub async fn stop(self) -> VirtualDevice {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(d) => d,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// A stand-in for the built reference firmware (device-firmware/): a structurally real image for
/// `chip` of about `size` bytes with an unbaked config block, ready for the no-compiler bake.
/// Different versions give different bytes. It is marked synthetic
/// ([`otaforge_firmware::synth::SYNTHETIC_MARKER`]): it runs only on virtual boards.
pub fn reference_image(chip: Chip, version: &str, size: usize) -> Vec<u8> {
    reference_image_filled(chip, version, size, otaforge_firmware::synth::Filler::Random)
}

/// [`reference_image`] with its code made of `filler`: [`Filler::CodeLike`] compresses about as
/// a real build does, for measuring gzip'd updates.
///
/// [`Filler::CodeLike`]: otaforge_firmware::synth::Filler::CodeLike
pub fn reference_image_filled(
    chip: Chip,
    version: &str,
    size: usize,
    filler: otaforge_firmware::synth::Filler,
) -> Vec<u8> {
    let mut image = ImageBuilder::for_chip(chip)
        .version(version)
        .project_name("otaforge_reference")
        .target_size(size)
        .filler(filler)
        .build();
    let at = config_block::reserve(&mut image)
        .expect("synthetic images have a segment large enough for the block");
    otaforge_firmware::synth::mark_synthetic(&mut image, at).expect("the block's segment holds the marker");
    image
}

/// The reference image for `chip` with `form` baked in for the project in `dir` (its CA, host,
/// port, channel; the image's version is `form.version`): what the demo, the app's "Try without
/// hardware" and `otaforge sim fleet` flash into virtual boards, made in one place.
pub fn bake_reference_image(
    dir: &std::path::Path,
    chip: Chip,
    form: &otaforge_firmware::settings::BakeForm,
    size: usize,
) -> Result<Vec<u8>, otaforge_firmware::settings::BakeImageError> {
    let reference = reference_image(chip, &form.version, size);
    Ok(otaforge_firmware::settings::bake_image(dir, &reference, form)?.0)
}

/// Where an image is flashed on `chip` (0x0 for Arduino ESP8266 images, the first app slot on
/// ESP32 chips).
pub fn app_offset(chip: Chip) -> usize {
    chip.app_offset() as usize
}
