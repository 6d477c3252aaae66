//! Helpers for the virtual-device tests: bake the reference image for a project and a port, put
//! a device on it, wait for server events.
#![allow(dead_code)] // each test binary uses a different part

use std::time::Duration;

use otaforge_firmware::Chip;
use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::settings::{BakeForm, baked_settings};
use otaforge_server::{RunningServer, ServerEvent};
use otaforge_sim::device::{
    DeviceHandle, DeviceOptions, Flash, Identity, VirtualDevice, app_offset, reference_image,
};
use tokio::sync::broadcast;

/// The channel the reference images are published to (they are synthetic).
pub const DEMO: &str = otaforge_protocol::DEMO_CHANNEL;

/// Size of the test images (a small sketch: quick, and still many TLS records).
pub const IMAGE_SIZE: usize = 120 * 1024;

/// The bake form for host 127.0.0.1 and `port`, on the demo channel.
pub fn form(version: &str, port: u16) -> BakeForm {
    BakeForm {
        host: "127.0.0.1".into(),
        port,
        version: version.into(),
        // Reference images are synthetic: only a demo channel may serve them.
        channel: DEMO.into(),
        poll_interval_s: 10,
        ..Default::default()
    }
}

/// The settings the project in `dir` bakes for host 127.0.0.1 and `port`.
pub fn settings(dir: &std::path::Path, version: &str, port: u16) -> BakedSettings {
    baked_settings(dir, &form(version, port), true).expect("settings")
}

/// The reference image for `chip` of `size` bytes with `settings` baked in.
pub fn bake(chip: Chip, settings: &BakedSettings, size: usize) -> Vec<u8> {
    config_block::bake(&reference_image(chip, &settings.version, size), settings).expect("bake")
}

/// The reference image for `chip`, baked for the project in `dir` (host 127.0.0.1, `port`),
/// after `tweak` changed the settings.
pub fn baked(
    dir: &std::path::Path,
    chip: Chip,
    version: &str,
    port: u16,
    tweak: impl FnOnce(&mut BakedSettings),
) -> Vec<u8> {
    let mut s = settings(dir, version, port);
    tweak(&mut s);
    bake(chip, &s, IMAGE_SIZE)
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

/// Waits (up to 30 s) for the device's first failed check and returns it.
pub async fn first_failure(d: &DeviceHandle) -> otaforge_sim::device::CheckFailure {
    use otaforge_sim::device::CheckOutcome;
    let s = d
        .wait_until(Duration::from_secs(30), |s| matches!(s.last_outcome, Some(CheckOutcome::Failed(_))))
        .await
        .unwrap_or_else(|s| panic!("no failed check: {s:?}\n{}", log_text(d)));
    match s.last_outcome {
        Some(CheckOutcome::Failed(f)) => f,
        _ => unreachable!(),
    }
}

/// The server's port.
pub fn port(s: &RunningServer) -> u16 {
    s.tls_addr.port()
}

/// A TCP relay to `target` that forwards the server's first `cut_after` bytes of each connection,
/// then resets both sides: a download broken off mid-way.
pub async fn cutting_proxy(target: std::net::SocketAddr, cut_after: usize) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((device, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else { return };
                let mut device = device;
                {
                    let (mut dr, mut dw) = device.split();
                    let (mut sr, mut sw) = server.split();
                    let up = tokio::io::copy(&mut dr, &mut sw);
                    let down = async {
                        let mut sent = 0usize;
                        let mut buf = vec![0u8; 4096];
                        while sent < cut_after {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n.min(cut_after - sent),
                            };
                            if dw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            sent += n;
                        }
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                }
                // Reset rather than close: the server's next write fails at once.
                #[allow(deprecated)] // blocking on drop is what we want: the reset goes out at once
                let _ = server.set_linger(Some(Duration::ZERO));
            });
        }
    });
    addr
}

/// Flashes `image` onto `board` over its pty with the app's flasher, as `otaforge flash` does.
pub async fn flash_over_pty(board: &otaforge_sim::board::VirtualBoard, image: Vec<u8>) {
    let port = board.port().display().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut req = otaforge_flash::FlashRequest::new(port, image);
        req.connect_timeout = Duration::from_secs(10);
        otaforge_flash::flash(&req, &otaforge_flash::Cancel::new(), &mut |_| {})
    })
    .await
    .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// Publishes an ESP8266 reference 2.0.0 whose stored MD5 (what x-MD5 carries) no longer matches
/// its file, so every download of it fails the device's MD5 check; the image.
pub fn publish_with_wrong_md5(project: &crate::support::Project) -> Vec<u8> {
    let v2 = reference_image(Chip::Esp8266, "2.0.0", IMAGE_SIZE);
    project.publish(&v2, "2.0.0", DEMO);
    let db = rusqlite::Connection::open(project.path().join("otaforge.db")).unwrap();
    db.execute("UPDATE releases SET md5 = '00112233445566778899aabbccddeeff'", []).unwrap();
    v2
}
