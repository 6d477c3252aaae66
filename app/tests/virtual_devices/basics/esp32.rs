//! The virtual ESP32 against the real server, as arduino-esp32 3.x `HTTPUpdate` talks: the
//! request head in HTTPClient's order (BASE-MAC, the station-only zero AP MAC, sketch-md5, no
//! Content-Length), the server's "already running by MD5" answer, and the 5 s / 120 s connect and
//! handshake limits (shortened here) ending as NetworkClientSecure reports them.

use std::time::Duration;

use crate::support::Project;
use crate::virtual_device_support::*;
use otaforge_firmware::{Chip, md5_hex};
use otaforge_server::ServerEvent;
use otaforge_sim::device::{CheckOutcome, DeviceHandle, DeviceOptions};

const T: Duration = Duration::from_secs(30);

fn assert_in_order(text: &str, parts: &[&str]) {
    let mut at = 0;
    for p in parts {
        match text[at..].find(p) {
            Some(i) => at += i + p.len(),
            None => panic!("{p:?} missing (or out of order) in\n{text}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_running_the_current_release_by_md5_is_answered_304() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    // A firmware that passes no version to `update()` sends no x-ESP32-version: only its sketch
    // MD5 tells the server it already runs the release (without it, it would be sent again).
    let mut settings = settings(project.path(), "2.0.0", port(&server));
    settings.version.clear();
    let image = bake(Chip::Esp32, &settings, IMAGE_SIZE);
    let release = project.publish(&image, "2.0.0", DEMO);
    assert_eq!(release.md5, md5_hex(&image));
    server.reload().unwrap();

    let device = start(Chip::Esp32, 0x20_0001, &image, quick());
    let mac = device.status().mac;
    let s = device
        .wait_until(T, |s| s.checks >= 2)
        .await
        .unwrap_or_else(|s| panic!("no checks: {s:?}\n{}", log_text(&device)));
    assert_eq!(s.last_outcome, Some(CheckOutcome::UpToDate), "{}", log_text(&device));
    assert_eq!(s.updates, 0, "never sent its own image again");
    let decision = event(
        &mut events,
        T,
        |e| matches!(e, ServerEvent::Decision { mac: Some(m), status: 304, .. } if *m == mac),
    )
    .await;
    let Some(ServerEvent::Decision { reason, .. }) = decision else { panic!("no 304 decision") };
    assert!(reason.contains("the current release"), "{reason}");

    server.flush().await;
    let store = otaforge_store::Store::open(project.path()).unwrap();
    let r = store.requests(&mac, 10).unwrap().pop().expect("a logged request");
    let md5 = format!("x-ESP32-sketch-md5: {}", md5_hex(&image));
    assert_in_order(
        &r.headers,
        &[
            "User-Agent: ESP32-http-Update",
            "Connection: close",
            "Cache-Control: no-cache",
            &format!("x-ESP32-BASE-MAC: {mac}"),
            &format!("x-ESP32-STA-MAC: {mac}"),
            "x-ESP32-AP-MAC: 00:00:00:00:00:00",
            "x-ESP32-free-space: 1310720",
            &format!("x-ESP32-sketch-size: {}", image.len()),
            &md5,
            "x-ESP32-sketch-sha256: ",
            "x-ESP32-chip-size: 4194304",
            "x-ESP32-sdk-version: ",
            "x-ESP32-mode: sketch",
        ],
    );
    assert!(!r.headers.contains("x-ESP32-version"), "{}", r.headers);
    assert!(!r.headers.to_ascii_lowercase().contains("content-length"), "{}", r.headers);
    let inv = server.devices().into_iter().find(|d| d.mac == mac).unwrap();
    assert_eq!(inv.sketch_md5.as_deref(), Some(md5_hex(&image).as_str()));
    assert_eq!(inv.ap_mac, None, "the zero AP MAC is no AP MAC");

    // A newer release: recognised by MD5 as older, it is sent, written through the OTA slot and
    // booted; the log has the ESP32 firmware's lines.
    let mut newer = settings.clone();
    newer.version = "2.1.0".into();
    let v2 = bake(Chip::Esp32, &newer, IMAGE_SIZE);
    project.publish(&v2, "2.1.0", DEMO);
    server.reload().unwrap();
    let s = device
        .wait_until(T, |s| s.version.as_deref() == Some("2.1.0"))
        .await
        .unwrap_or_else(|s| panic!("not updated: {s:?}\n{}", log_text(&device)));
    assert_eq!((s.updates, s.boots), (1, 2));
    assert_eq!(s.sketch_md5.as_deref(), Some(md5_hex(&v2).as_str()));
    let checks = s.checks;
    let s = device.wait_until(T, |s| s.checks >= checks + 2).await.unwrap();
    assert_eq!((s.last_outcome, s.updates), (Some(CheckOutcome::UpToDate), 1), "not sent again");
    let log = log_text(&device);
    assert_in_order(
        &log,
        &[
            "update: a new image is available; downloading and writing it to the OTA partition",
            "update: 100% (",
            "update: download complete; the device reboots into the new firmware",
            "OTA Forge firmware 2.1.0 on",
        ],
    );
    device.stop().await;
    server.shutdown().await;
}

fn esp32_options() -> DeviceOptions {
    let mut o = quick();
    o.net.dns = Some("127.0.0.1".parse().unwrap());
    o.net.connect_timeout = Duration::from_millis(300);
    o.net.handshake_timeout = Duration::from_millis(300);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_handshake_failures_end_as_network_client_secure_reports_them() {
    let project = Project::new();
    // A server that takes the TCP connection and never answers the ClientHello: the handshake
    // timeout (120 s on the chip) runs out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    // And a port nobody listens on: TCP refused.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (n, port) in [(1, silent_port), (2, closed_port)] {
        let image = baked(project.path(), Chip::Esp32, "1.0.0", port, |_| {});
        let device = start(Chip::Esp32, 0x30_0000 + n, &image, esp32_options());
        let f = first_failure(&device).await;
        assert_eq!((f.code, f.message.as_str()), (-1, "HTTP error: connection refused"), "{f:?}");
        // start_ssl_client / the handshake loop return -1, kept as last_error.
        assert_eq!(f.tls, Some((-1, "ERROR - Generic error".to_string())), "{f:?}");
        let log = log_text(&device);
        assert!(log.contains("check failed: error -1: HTTP error: connection refused"), "{log}");
        assert!(log.contains("TLS error -0x0001: ERROR - Generic error"), "{log}");
        assert!(!log.contains("update: error"), "HTTPUpdate never calls onError here\n{log}");
        device.stop().await;
    }
}

/// Switches the device off and on again (the EN pin): the bootloader runs anew on the same flash.
async fn power_cycle(d: DeviceHandle, n: u32) -> DeviceHandle {
    let flash = d.stop().await.flash;
    let mut dev = otaforge_sim::device::VirtualDevice::new(
        otaforge_sim::device::Identity::numbered(Chip::Esp32, n),
        flash,
        quick(),
    );
    dev.external_reset();
    dev.spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_image_that_cannot_check_in_rolls_back_at_the_next_reset() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let n = 0x32_0001;
    let d =
        start(Chip::Esp32, n, &baked(project.path(), Chip::Esp32, "1.0.0", port(&server), |_| {}), quick());
    d.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    let mac = d.status().mac;
    // 2.0.0 polls a host the device cannot resolve: it boots, and never reaches the server.
    let lost = baked(project.path(), Chip::Esp32, "2.0.0", port(&server), |s| s.host = "ota.test".into());
    project.publish(&lost, "2.0.0", DEMO);
    server.reload().unwrap();
    d.wait_until(T, |s| {
        s.version.as_deref() == Some("2.0.0") && matches!(s.last_outcome, Some(CheckOutcome::Failed(_)))
    })
    .await
    .unwrap_or_else(|s| panic!("{s:?}\n{}", log_text(&d)));
    assert!(log_text(&d).contains("is on trial"), "{}", log_text(&d));
    let d = power_cycle(d, n).await;
    let st = d
        .wait_until(T, |s| s.version.as_deref() == Some("1.0.0") && s.last_outcome.is_some())
        .await
        .unwrap_or_else(|s| panic!("no rollback: {s:?}\n{}", log_text(&d)));
    assert_eq!(st.version.as_deref(), Some("1.0.0"));
    let rolled =
        event(&mut events, T, |e| matches!(e, ServerEvent::DeviceRolledBack { mac: m, .. } if *m == mac))
            .await;
    assert!(rolled.is_some(), "the server did not see the rollback\n{}", log_text(&d));
    d.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_image_that_checks_in_is_confirmed_and_stays() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let n = 0x32_0002;
    let d =
        start(Chip::Esp32, n, &baked(project.path(), Chip::Esp32, "1.0.0", port(&server), |_| {}), quick());
    d.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    project.publish(&baked(project.path(), Chip::Esp32, "2.0.0", port(&server), |_| {}), "2.0.0", DEMO);
    server.reload().unwrap();
    d.wait_until(T, |s| {
        s.version.as_deref() == Some("2.0.0") && s.last_outcome == Some(CheckOutcome::UpToDate)
    })
    .await
    .unwrap_or_else(|s| panic!("{s:?}\n{}", log_text(&d)));
    assert!(log_text(&d).contains("image confirmed after its first check-in"), "{}", log_text(&d));
    let d = power_cycle(d, n).await;
    let st = d.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    assert_eq!(st.version.as_deref(), Some("2.0.0"), "a confirmed image must survive a reset");
    d.stop().await;
    server.shutdown().await;
}
