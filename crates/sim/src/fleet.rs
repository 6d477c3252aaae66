//! A fleet of virtual devices: N boards with distinct MACs, flashed with the same image, each
//! polling on its own schedule with the reference firmware's jitter. All of them are tasks on
//! the current tokio runtime (a thousand devices are a thousand tasks, not threads), and their
//! flash is shared copy-on-write until an update writes it. It is the load generator for the
//! server and the quick way to watch a rollout.

use std::collections::BTreeMap;
use std::time::Duration;

use super::device::{
    CheckOutcome, DeviceHandle, DeviceOptions, DeviceStatus, Flash, Identity, VirtualDevice, app_offset,
    flash::FlashError,
};
use otaforge_firmware::Chip;

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// How many devices.
    pub devices: usize,
    /// Their chip.
    pub chip: Chip,
    /// The (baked) image every device is flashed with.
    pub image: Vec<u8>,
    /// MACs are numbered from here (so two fleets can run side by side).
    pub first_number: u32,
    /// Network, clock, speed and poll interval of every device.
    pub device: DeviceOptions,
}

/// Devices running together.
pub struct Fleet {
    devices: Vec<DeviceHandle>,
}

impl Fleet {
    /// Flashes and switches on every device (inside a tokio runtime).
    pub fn start(opts: FleetOptions) -> Result<Fleet, FlashError> {
        let template = Identity::numbered(opts.chip, 0);
        let flash = Flash::with_image(template.flash_size, app_offset(opts.chip), &opts.image)?;
        let devices = (0..opts.devices)
            .map(|i| {
                let id = Identity::numbered(opts.chip, opts.first_number.wrapping_add(i as u32));
                VirtualDevice::new(id, flash.clone(), opts.device.clone()).spawn()
            })
            .collect();
        Ok(Fleet { devices })
    }

    /// The devices.
    pub fn devices(&self) -> &[DeviceHandle] {
        &self.devices
    }

    /// Every device's status now.
    pub fn statuses(&self) -> Vec<DeviceStatus> {
        self.devices.iter().map(DeviceHandle::status).collect()
    }

    /// Totals now.
    pub fn summary(&self) -> FleetSummary {
        FleetSummary::of(&self.statuses())
    }

    /// Switches every device off; returns the final statuses.
    pub async fn stop(self) -> Vec<DeviceStatus> {
        let mut out = Vec::with_capacity(self.devices.len());
        for d in self.devices {
            let s = d.status();
            d.stop().await;
            out.push(s);
        }
        out
    }

    /// Waits until every device's status satisfies `pred`, at most `timeout`; true if they did.
    pub async fn wait_all(&self, timeout: Duration, pred: impl Fn(&DeviceStatus) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        for d in &self.devices {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if d.wait_until(left, &pred).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// What a fleet did, in totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetSummary {
    /// Devices.
    pub devices: usize,
    /// How many run each version (`(starting)`: not booted yet; `(not running)`: halted).
    pub versions: BTreeMap<String, usize>,
    /// Checks made.
    pub checks: u64,
    /// Updates downloaded, verified and booted into.
    pub updates: u64,
    /// Failed checks.
    pub failures: u64,
    /// Devices that have not finished a check yet.
    pub not_checked: usize,
    /// Devices whose last check failed, by the error they logged (`error -1: HTTP error: …`).
    pub last_errors: BTreeMap<String, usize>,
    /// Devices that do not run (boot failed, no settings), by reason.
    pub halted: BTreeMap<String, usize>,
}

impl FleetSummary {
    /// Totals over `statuses`.
    pub fn of(statuses: &[DeviceStatus]) -> FleetSummary {
        let mut s = FleetSummary { devices: statuses.len(), ..Default::default() };
        for d in statuses {
            let version = match (&d.version, &d.activity) {
                (Some(v), _) => v.clone(),
                (None, super::device::Activity::Halted(_)) => "(not running)".into(),
                (None, _) => "(starting)".into(),
            };
            *s.versions.entry(version).or_default() += 1;
            s.checks += d.checks;
            s.updates += d.updates;
            s.failures += d.failures;
            s.not_checked += usize::from(d.last_outcome.is_none());
            if let Some(CheckOutcome::Failed(f)) = &d.last_outcome {
                *s.last_errors.entry(outcome_text(f)).or_default() += 1;
            }
            if let super::device::Activity::Halted(why) = &d.activity {
                *s.halted.entry(why.clone()).or_default() += 1;
            }
        }
        s
    }

    /// Devices running `version`.
    pub fn running(&self, version: &str) -> usize {
        self.versions.get(version).copied().unwrap_or(0)
    }
}

/// `error -1: HTTP error: connection failed (TLS 62)`.
pub fn outcome_text(f: &super::device::CheckFailure) -> String {
    match &f.tls {
        Some((code, _)) => format!("error {}: {} (TLS error {code})", f.code, f.message),
        None => format!("error {}: {}", f.code, f.message),
    }
}

/// One device as a line of the per-device table.
pub fn device_line(d: &DeviceStatus) -> String {
    let last = match &d.last_outcome {
        None => "no check yet".to_string(),
        Some(CheckOutcome::UpToDate) => "up to date".to_string(),
        Some(CheckOutcome::Updated { .. }) => "updated".to_string(),
        Some(CheckOutcome::Failed(f)) => outcome_text(f),
    };
    format!(
        "{}  {:<10} checks {:>4}  updates {:>2}  failures {:>3}  last: {last}",
        d.mac,
        d.version.as_deref().unwrap_or("-"),
        d.checks,
        d.updates,
        d.failures
    )
}
