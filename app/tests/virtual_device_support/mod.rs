//! Helpers for the virtual-device tests: bake the reference image for a project and a port, put
//! a device on it, wait for server events.
#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use otaforge::firmware::Chip;
use otaforge::firmware::settings::{BakeForm, bake_image};
use otaforge::server::{RunningServer, ServerEvent};
use otaforge::sim::device::{
    DeviceHandle, DeviceOptions, Flash, Identity, VirtualDevice, app_offset, reference_image,
};
use tokio::sync::broadcast;

/// Size of the test images (a small sketch: quick, and still many TLS records).
pub const IMAGE_SIZE: usize = 120 * 1024;

/// The reference image for `chip`, baked for the project in `dir` (host 127.0.0.1, `port`).
pub fn baked(
    dir: &std::path::Path,
    chip: Chip,
    version: &str,
    port: u16,
    tweak: impl FnOnce(&mut BakeForm),
) -> Vec<u8> {
    let mut form = BakeForm {
        host: "127.0.0.1".into(),
        port,
        version: version.into(),
        poll_interval_s: 10,
        ..Default::default()
    };
    tweak(&mut form);
    bake_image(dir, &reference_image(chip, version, IMAGE_SIZE), &form).expect("bake").0
}

/// Options for a quick test device: waits 50x faster, a check every 300 ms.
pub fn quick() -> DeviceOptions {
    DeviceOptions { speed: 50.0, poll_interval: Some(Duration::from_millis(300)), ..Default::default() }
}

/// A device numbered `n`, flashed with `image`, switched on.
pub fn start(chip: Chip, n: u32, image: &[u8], opts: DeviceOptions) -> DeviceHandle {
    let id = Identity::numbered(chip, n);
    let flash = Flash::with_image(id.flash_size, app_offset(chip), image).unwrap();
    VirtualDevice::new(id, flash, opts).spawn()
}

/// Waits for the first server event matching `pred`.
pub async fn event(
    rx: &mut broadcast::Receiver<ServerEvent>,
    timeout: Duration,
    mut pred: impl FnMut(&ServerEvent) -> bool,
) -> Option<ServerEvent> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return Some(e),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// The device's log as one text, for assertion messages.
pub fn log_text(d: &DeviceHandle) -> String {
    d.log().join("\n")
}

/// The server's port.
pub fn port(s: &RunningServer) -> u16 {
    s.tls_addr.port()
}
