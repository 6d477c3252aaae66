//! "Try without hardware": a virtual ESP8266 (see [`otaforge_sim::device`]) flashed with the
//! reference firmware baked for this project and this server, plus a newer build of the same
//! firmware to publish — so a first-time user sees a device update end to end with no board.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use otaforge_firmware::Chip;
use otaforge_firmware::settings::BakeForm;
use otaforge_sim::device::{
    DeviceHandle, DeviceOptions, Flash, Identity, Net, VirtualDevice, app_offset, bake_reference_image,
};
use otaforge_store::Store;

/// Size of the demo firmware (a small sketch).
const IMAGE_SIZE: usize = 300 * 1024;
/// The virtual device checks this often (a real one: hourly by default).
pub const DEMO_POLL: Duration = Duration::from_secs(3);

/// A virtual device just switched on, and the newer firmware written for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualDeviceInfo {
    /// Its MAC.
    pub mac: String,
    /// Its name.
    pub name: String,
    /// The version it runs.
    pub version: String,
    /// A newer build of its firmware, ready to publish.
    pub newer_bin: PathBuf,
    /// That build's version.
    pub newer_version: String,
}

/// Bakes the reference firmware for the project in `dir` and the server on `port`, writes the
/// newer build, and switches the device on as a task of the current runtime.
pub(super) fn start(dir: &Path, port: u16, n: u32) -> Result<(VirtualDeviceInfo, DeviceHandle), String> {
    let running = "1.0.0".to_string();
    let newer = newer_version(dir);
    let id = Identity::numbered(Chip::Esp8266, 0xD0_0000 + n);
    let form = |version: &str| BakeForm {
        port,
        version: version.into(),
        // A channel of its own: these builds are synthetic and must never reach a real board.
        channel: otaforge_protocol::DEMO_CHANNEL.into(),
        // The firmware's floor; the device below checks more often than it says.
        poll_interval_s: 10,
        ..Default::default()
    };
    let bake = |version: &str| -> Result<Vec<u8>, String> {
        bake_reference_image(dir, Chip::Esp8266, &form(version), IMAGE_SIZE)
            .map_err(|e| super::sentence(&e.to_string()))
    };
    let image = bake(&running)?;
    let newer_image = bake(&newer)?;
    let demo_dir = dir.join("demo");
    let newer_bin = demo_dir.join(format!("otaforge-demo-{newer}.bin"));
    otaforge_project::ensure_dir(&demo_dir)
        .and_then(|_| {
            otaforge_project::write_atomic(&newer_bin, &newer_image, otaforge_project::Secrecy::Public)
        })
        .map_err(|e| format!("Cannot write {}: {e}", newer_bin.display()))?;
    let flash =
        Flash::with_image(id.flash_size, app_offset(Chip::Esp8266), &image).map_err(|e| e.to_string())?;
    let opts = DeviceOptions {
        // The certificate's host name leads to this machine for the virtual device.
        net: Net { dns: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)), ..Net::default() },
        // Boot and the first check ten times faster; the poll interval is scaled by the same speed.
        speed: 10.0,
        poll_interval: Some(DEMO_POLL.mul_f64(10.0)),
        ..Default::default()
    };
    let info = VirtualDeviceInfo {
        mac: id.sta_mac(),
        name: id.default_name(),
        version: running,
        newer_bin,
        newer_version: newer,
    };
    let handle = VirtualDevice::new(id, flash, opts).spawn();
    Ok((info, handle))
}

/// 1.1.0, or one minor version above what the demo channel serves.
fn newer_version(dir: &Path) -> String {
    let current = Store::open(dir).ok().and_then(|s| {
        let id = s.channel(otaforge_protocol::DEMO_CHANNEL).ok()??.current_sketch?;
        s.release(id).ok()
    });
    match current.and_then(|r| semver::Version::parse(&r.version).ok()) {
        Some(v) if v >= semver::Version::new(1, 1, 0) => format!("{}.{}.0", v.major, v.minor + 1),
        _ => "1.1.0".into(),
    }
}
