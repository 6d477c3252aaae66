//! The whole story with virtual devices on real sockets: a device flashed with the baked reference
//! image polls the real update server, a new release is published, the device downloads it over
//! TLS, verifies it, reboots into it and reports the new version; the server marks it installed.

mod esp32;
use crate::support;
use crate::virtual_device_support;

use std::time::Duration;

use otaforge_firmware::{Chip, md5_hex};
use otaforge_server::ServerEvent;
use otaforge_sim::device::{CheckOutcome, DeviceEvent};
use otaforge_store::DeviceState;
use support::Project;
use virtual_device_support::*;

const T: Duration = Duration::from_secs(30);

async fn full_update(chip: Chip, n: u32) {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let v1 = baked(project.path(), chip, "1.0.0", port(&server), |_| {});
    let v2 = baked(project.path(), chip, "2.0.0", port(&server), |_| {});
    assert_ne!(md5_hex(&v1), md5_hex(&v2));

    let device = start(chip, n, &v1, quick());
    let mac = device.status().mac;
    // Nothing is published yet: the device checks and is told there is nothing newer.
    let s = device
        .wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate))
        .await
        .unwrap_or_else(|s| panic!("no answer: {s:?}\n{}", log_text(&device)));
    assert_eq!(s.version.as_deref(), Some("1.0.0"));
    let seen = server.devices().into_iter().find(|d| d.mac == mac).expect("the server saw the device");
    assert_eq!(seen.version.as_deref(), Some("1.0.0"));
    assert_eq!(seen.sketch_size, Some(v1.len() as u64), "getSketchSize of the flashed image");
    if chip.is_esp8266() {
        assert_eq!(seen.sketch_md5.as_deref(), Some(md5_hex(&v1).as_str()), "the MD5 of what is in flash");
        assert_eq!(seen.free_space, Some((0x200000 - v1.len().next_multiple_of(4096)) as u64));
    } else {
        assert!(seen.sketch_sha256.is_some());
        assert_eq!(seen.free_space, Some(0x140000));
    }

    let mut device_events = device.subscribe();
    project.publish(&v2, "2.0.0", DEMO);
    server.reload().unwrap();
    let s = device
        .wait_until(T, |s| s.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|s| panic!("not updated: {s:?}\n{}", log_text(&device)));
    assert_eq!(s.updates, 1);
    assert_eq!(s.boots, 2, "one reboot, into the new image");
    assert_eq!(s.sketch_md5.as_deref(), Some(md5_hex(&v2).as_str()), "the new image is what runs");
    let installed =
        event(&mut events, T, |e| matches!(e, ServerEvent::DeviceInstalled { mac: m, .. } if *m == mac))
            .await;
    assert!(installed.is_some(), "the server marks it installed\n{}", log_text(&device));
    let inv = server.devices().into_iter().find(|d| d.mac == mac).unwrap();
    assert_eq!(inv.state, DeviceState::Installed, "{inv:?}");
    assert_eq!(inv.version.as_deref(), Some("2.0.0"));

    // The device said what it did, the way the reference firmware does.
    let log = log_text(&device);
    let start_line = if chip.is_esp8266() {
        "update: a new image is available; downloading and writing it to flash"
    } else {
        "update: a new image is available; downloading and writing it to the OTA partition"
    };
    for line in [
        start_line,
        "update: 100% (",
        "update: download complete; the device reboots into the new firmware",
        "OTA Forge firmware 2.0.0 on",
    ] {
        assert!(log.contains(line), "missing {line:?} in\n{log}");
    }
    let mut updated = false;
    while let Ok(e) = device_events.try_recv() {
        updated |= matches!(e, DeviceEvent::Checked(CheckOutcome::Updated { version: Some(ref v), .. }) if v == "2.0.0");
    }
    assert!(updated, "an Updated event carrying x-version");

    // Running the current release, it is never sent it again.
    let checks = device.status().checks;
    let s = device.wait_until(T, |s| s.checks >= checks + 3).await.unwrap();
    assert_eq!(s.updates, 1);
    assert_eq!(s.last_outcome, Some(CheckOutcome::UpToDate));
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{}", log_text(&device));
    }
    let device = device.stop().await;
    assert!(device.flash.size() > 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_updates_itself_and_the_server_marks_it_installed() {
    full_update(Chip::Esp8266, 0x10_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_updates_through_its_ota_slots() {
    full_update(Chip::Esp32, 0x10_0002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_head_is_the_esp8266_updaters() {
    // The server logs each request's headers: they are what ESP8266httpUpdate sends.
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let v1 = baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |f| f.channel = "beta".into());
    let device = start(Chip::Esp8266, 0xA1B2C3, &v1, quick());
    // The server's Decision follows the request's record into the history queue (the device may
    // read its answer a moment before that).
    tokio::time::timeout(T, async {
        while !matches!(events.recv().await, Ok(ServerEvent::Decision { mac: Some(_), .. })) {}
    })
    .await
    .expect("the server decided on the device's check");
    server.flush().await;
    let store = otaforge_store::Store::open(project.path()).unwrap();
    let requests = store.requests("18:FE:34:A1:B2:C3", 10).unwrap();
    let r = requests.last().expect("a logged request");
    assert_eq!(r.path, "/update/beta");
    for h in [
        "User-Agent: ESP8266-http-Update",
        "x-ESP8266-Chip-ID: 10597059",
        "x-ESP8266-AP-MAC: 1A:FE:34:A1:B2:C3",
        "x-ESP8266-chip-size: 4194304",
        "x-ESP8266-mode: sketch",
        "x-ESP8266-version: 1.0.0",
        "Content-Length: 0",
    ] {
        assert!(r.headers.contains(h), "missing {h} in\n{}", r.headers);
    }
    device.stop().await;
    server.shutdown().await;
}

/// A gzip'd release: the virtual ESP8266 downloads the compressed file, its eboot unpacks it, and
/// what runs is the image byte for byte; the server counts it installed and offers it no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_installs_a_gzipped_release_and_runs_the_image_inside() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let v1 = baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |_| {});
    let v2 = baked(project.path(), Chip::Esp8266, "2.0.0", port(&server), |_| {});
    let device = start(Chip::Esp8266, 71, &v1, quick());
    device.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();

    let packed = otaforge_firmware::gzip::compress(&v2);
    assert!(packed.len() < v2.len());
    project.publish(&packed, "2.0.0", DEMO);
    server.reload().unwrap();
    let s = device
        .wait_until(T, |s| s.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|s| panic!("not updated: {s:?}\n{}", log_text(&device)));
    assert_eq!(s.sketch_md5.as_deref(), Some(md5_hex(&v2).as_str()), "eboot unpacked it byte for byte");
    let checks = s.checks;
    let s = device.wait_until(T, |s| s.checks >= checks + 3).await.unwrap();
    assert_eq!((s.updates, s.last_outcome), (1, Some(CheckOutcome::UpToDate)), "never offered it again");
    let mac = s.mac;
    let inv = server.devices().into_iter().find(|d| d.mac == mac).unwrap();
    assert_eq!(inv.state, DeviceState::Installed, "{inv:?}");
    device.stop().await;
    server.shutdown().await;
}
