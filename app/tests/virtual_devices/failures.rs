//! Failure injection: each fault gives the device the outcome a real one would have (the core's
//! error code and words, the TLS library's number, in its log) and the server the matching event.

use crate::support;
use crate::virtual_device_support;

use std::time::Duration;

use otaforge_firmware::{Chip, md5_hex};
use otaforge_server::{FragmentPolicy, ServerEvent};
use otaforge_sim::device::{CheckFailure, CheckOutcome, Clock, DeviceHandle, DeviceOptions, reference_image};
use support::Project;
use virtual_device_support::*;

const T: Duration = Duration::from_secs(30);

fn assert_logged(d: &DeviceHandle, lines: &[&str]) {
    let log = log_text(d);
    for l in lines {
        assert!(log.contains(l), "missing {l:?} in\n{log}");
    }
}

/// The server's view of a download the device did not complete: aborted while it was still
/// writing, or, when the kernel had already taken every byte (loopback buffers hold megabytes),
/// finished and then the device back on its old version (rolled back). Never installed.
async fn download_failed(
    events: &mut tokio::sync::broadcast::Receiver<ServerEvent>,
    mac: &str,
) -> ServerEvent {
    let e = event(events, T, |e| match e {
        ServerEvent::DownloadAborted { mac: Some(m), .. } | ServerEvent::DeviceRolledBack { mac: m, .. } => {
            m == mac
        }
        ServerEvent::DeviceInstalled { mac: m, .. } => m == mac,
        _ => false,
    })
    .await;
    match e {
        Some(e @ (ServerEvent::DownloadAborted { .. } | ServerEvent::DeviceRolledBack { .. })) => e,
        other => panic!("expected an aborted download or a rollback for {mac}, got {other:?}"),
    }
}

fn handshake_refused(e: &ServerEvent) -> bool {
    matches!(e, ServerEvent::ConnectionRefused { why, .. } if why.contains("TLS handshake failed"))
}

/// A TLS failure at connect: HTTP error -1 and the library's number; the server sees a refused
/// handshake; the device keeps its firmware.
async fn tls_failure(
    opts: DeviceOptions,
    tweak: impl FnOnce(&Project, &mut otaforge_firmware::config_block::BakedSettings),
) -> (DeviceHandle, CheckFailure, bool) {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let mut s = settings(project.path(), "1.0.0", port(&server));
    tweak(&project, &mut s);
    let device = start(Chip::Esp8266, 7, &bake(Chip::Esp8266, &s, IMAGE_SIZE), opts);
    let f = first_failure(&device).await;
    let refused = event(&mut events, T, handshake_refused).await.is_some();
    assert_eq!(device.status().version.as_deref(), Some("1.0.0"));
    server.shutdown().await;
    (device, f, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_baked_fails_with_bearssl_62() {
    let other = Project::new();
    let (d, f, refused) = tls_failure(quick(), |_, s| s.ca_pem = other.ca_pem.clone()).await;
    assert_eq!((f.code, f.message.as_str()), (-1, "HTTP error: connection failed"));
    assert_eq!(f.tls.as_ref().map(|t| t.0), Some(62), "{f:?}");
    assert!(refused, "the server sees the handshake fail");
    assert_logged(
        &d,
        &[
            "check failed: error -1: HTTP error: connection failed",
            "TLS error 62: Chain could not be linked to a trust anchor.",
            "  = the server certificate is not signed by the CA in this firmware",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_certificate_does_not_name_fails_with_bearssl_56() {
    let mut opts = quick();
    opts.net.dns = Some("127.0.0.1".parse().unwrap());
    let (d, f, refused) = tls_failure(opts, |_, s| s.host = "elsewhere.test".into()).await;
    assert_eq!(f.tls.as_ref().map(|t| t.0), Some(56), "{f:?}");
    assert!(refused);
    assert_logged(&d, &["TLS error 56: Expected server name was not found in the chain."]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_clock_fails_with_bearssl_54() {
    let opts = DeviceOptions { clock: Clock::Unset, ..quick() };
    let (d, f, refused) = tls_failure(opts, |_, _| {}).await;
    assert_eq!(f.tls.as_ref().map(|t| t.0), Some(54), "{f:?}");
    assert!(refused);
    assert_logged(
        &d,
        &[
            "TLS error 54: Certificate is expired or not yet valid.",
            "(certificate time 1970-01-01 00:00:00 UTC",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_issued_after_the_bake_is_not_yet_valid_without_sntp() {
    // SNTP blocked: the firmware checks against its bake time, ten days before the certificate.
    let opts = DeviceOptions { clock: Clock::NoSntp, ..quick() };
    let (d, f, refused) = tls_failure(opts, |_, s| s.baked_at -= 10 * 86_400).await;
    assert_eq!(f.tls.as_ref().map(|t| t.0), Some(54), "{f:?}");
    assert!(refused);
    assert_logged(
        &d,
        &["clock: no SNTP answer in 20 s; certificates are checked against", "(the bake time)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_fails_with_bearssl_54() {
    // A one-day certificate, seen by a device whose SNTP time is three days on.
    let project = Project::new();
    otaforge_pki::renew(project.path(), None, 1).unwrap();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let image = baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |_| {});
    let opts = DeviceOptions { clock: Clock::Sntp { skew_s: 3 * 86_400 }, ..quick() };
    let d = start(Chip::Esp8266, 8, &image, opts);
    let f = first_failure(&d).await;
    assert_eq!((f.code, f.tls.as_ref().map(|t| t.0)), (-1, Some(54)), "{f:?}");
    assert!(event(&mut events, T, handshake_refused).await.is_some());
    // The same device with a right clock works: it is the date, nothing else.
    let ok = start(Chip::Esp8266, 9, &image, quick());
    ok.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_x_md5_fails_after_the_download_and_the_server_sees_a_rollback() {
    let project = Project::new();
    let v2 = publish_with_wrong_md5(&project);
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let d = start(
        Chip::Esp8266,
        10,
        &baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |_| {}),
        quick(),
    );
    let mac = d.status().mac;
    let f = first_failure(&d).await;
    assert_eq!(f.code, 7, "{f:?}");
    assert_eq!(
        f.message,
        format!(
            "Update error: ERROR[7]: MD5 verification failed: expected: 00112233445566778899aabbccddeeff, calculated: {}",
            md5_hex(&v2)
        )
    );
    assert_logged(&d, &["  = the download's MD5 does not match the server's x-MD5"]);
    assert!(
        event(
            &mut events,
            T,
            |e| matches!(e, ServerEvent::DownloadFinished { mac: Some(m), .. } if *m == mac)
        )
        .await
        .is_some()
    );
    assert!(
        event(&mut events, T, |e| matches!(e, ServerEvent::DeviceRolledBack { mac: m, .. } if *m == mac))
            .await
            .is_some(),
        "back on 1.0.0 after downloading 2.0.0"
    );
    assert_eq!(d.status().version.as_deref(), Some("1.0.0"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_broken_off_fails_with_error_6_and_the_server_sees_it_aborted() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let proxy = cutting_proxy(server.tls_addr, 64 * 1024).await;
    // Devices reach the server through the proxy's port (what `serve --public-port` records).
    otaforge_protocol::endpoint::Endpoint { port: proxy.port(), path: "/update".into() }
        .save(project.path())
        .unwrap();
    let mut s = settings(project.path(), "2.0.0", proxy.port());
    project.publish(&bake(Chip::Esp8266, &s, 1536 * 1024), "2.0.0", DEMO);
    server.reload().unwrap();
    s.version = "1.0.0".into();
    let d = start(Chip::Esp8266, 11, &bake(Chip::Esp8266, &s, IMAGE_SIZE), quick());
    let mac = d.status().mac;
    let f = first_failure(&d).await;
    assert_eq!((f.code, f.message.as_str()), (6, "Update error: ERROR[6]: Stream Read Timeout"), "{f:?}");
    assert_eq!(
        f.tls.as_ref().map(|t| t.0),
        Some(31),
        "{}\nBearSSL's I/O error: the stream closed without close_notify",
        log_text(&d)
    );
    assert_logged(&d, &["  = the download stalled; the old firmware keeps running"]);
    download_failed(&mut events, &mac).await;
    assert_eq!(d.status().version.as_deref(), Some("1.0.0"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_bigger_than_the_free_space_is_not_sent() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let mut s = settings(project.path(), "1.0.0", port(&server));
    // A 1.3 MB sketch leaves 0.7 MB below the 2 MB filesystem; the new one needs 1 MB.
    let d = start(Chip::Esp8266, 12, &bake(Chip::Esp8266, &s, 1300 * 1024), quick());
    s.version = "2.0.0".into();
    project.publish(&bake(Chip::Esp8266, &s, 1024 * 1024), "2.0.0", DEMO);
    server.reload().unwrap();
    let mac = d.status().mac;
    let held = event(&mut events, T, |e| {
        matches!(e, ServerEvent::Decision { mac: Some(m), status: 304, reason, .. } if *m == mac && reason.contains("free"))
    })
    .await;
    assert!(held.is_some(), "the server holds the release back\n{}", log_text(&d));
    let s = d.wait_until(T, |s| s.checks >= 2).await.unwrap();
    assert_eq!(
        (s.last_outcome, s.version.as_deref(), s.updates),
        (Some(CheckOutcome::UpToDate), Some("1.0.0"), 0)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_for_another_chip_is_refused() {
    // ESP8266 device, ESP32 release: the server can tell from the headers and holds it back.
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    project.publish(&reference_image(Chip::Esp32, "2.0.0", IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();
    let d = start(
        Chip::Esp8266,
        13,
        &baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |_| {}),
        quick(),
    );
    let mac = d.status().mac;
    let held = event(&mut events, T, |e| {
        matches!(e, ServerEvent::Decision { mac: Some(m), status: 304, reason, .. } if *m == mac && reason.contains("serves ESP32 images"))
    })
    .await;
    assert!(held.is_some());
    assert_eq!(d.wait_until(T, |s| s.checks >= 1).await.unwrap().last_outcome, Some(CheckOutcome::UpToDate));
    server.shutdown().await;

    // ESP32 device, ESP32-C3 release: the headers do not say which ESP32, so it is sent; the
    // device refuses to activate it (chip id) and keeps running 1.0.0.
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let mut s = settings(project.path(), "2.0.0", port(&server));
    project.publish(&bake(Chip::Esp32C3, &s, IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();
    s.version = "1.0.0".into();
    let d = start(Chip::Esp32, 14, &bake(Chip::Esp32, &s, IMAGE_SIZE), quick());
    let mac = d.status().mac;
    let f = first_failure(&d).await;
    assert_eq!((f.code, f.message.as_str()), (9, "Update error: Could Not Activate The Firmware"), "{f:?}");
    assert!(
        event(&mut events, T, |e| matches!(e, ServerEvent::DeviceRolledBack { mac: m, .. } if *m == mac))
            .await
            .is_some()
    );
    assert_eq!(d.status().version.as_deref(), Some("1.0.0"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_with_minus_1_until_it_comes_back() {
    let project = Project::new();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let d = start(Chip::Esp8266, 15, &baked(project.path(), Chip::Esp8266, "1.0.0", port, |_| {}), quick());
    let f = first_failure(&d).await;
    assert_eq!((f.code, f.message.as_str(), f.tls), (-1, "HTTP error: connection failed", None));
    assert_logged(
        &d,
        &["  = no connection (DNS, TCP or TLS): check the host, the port and that the server runs"],
    );
    let server = project.serve(|c| c.port = port).await;
    let mut events = server.subscribe();
    let mac = d.status().mac;
    assert!(
        event(
            &mut events,
            T,
            |e| matches!(e, ServerEvent::RequestReceived { mac: Some(m), .. } if *m == mac)
        )
        .await
        .is_some()
    );
    d.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_buffers_fail_with_bearssl_6_against_a_server_sending_big_records() {
    let project = Project::new();
    let server = project.serve(|c| c.fragment_policy = FragmentPolicy::Ignore).await;
    let mut events = server.subscribe();
    let mut s = settings(project.path(), "2.0.0", port(&server));
    project.publish(&bake(Chip::Esp8266, &s, 1024 * 1024), "2.0.0", DEMO);
    server.reload().unwrap();
    s.version = "1.0.0".into();
    s.tls_rx_buffer = 512;
    s.tls_tx_buffer = 512;
    let small = start(Chip::Esp8266, 16, &bake(Chip::Esp8266, &s, IMAGE_SIZE), quick());
    let mac = small.status().mac;
    let f = first_failure(&small).await;
    // The head fits in a small record; the first 16 KB body record does not.
    assert_eq!((f.code, f.message.as_str()), (-106, "Verify Bin Header Failed"), "{f:?}");
    assert_eq!(f.tls.as_ref().map(|t| t.0), Some(6), "{f:?}");
    assert_logged(
        &small,
        &[
            "TLS error 6: Incoming record is too large",
            "  = a TLS record was larger than the 512-byte receive buffer",
        ],
    );
    download_failed(&mut events, &mac).await;
    // With the default 16 KB buffer the same server is fine.
    s.tls_rx_buffer = 16384;
    let big = start(Chip::Esp8266, 17, &bake(Chip::Esp8266, &s, IMAGE_SIZE), quick());
    big.wait_until(T, |s| s.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|s| panic!("{s:?}\n{}", log_text(&big)));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sending_something_that_is_not_an_image_fails_with_minus_106() {
    // Another HTTPS server (right certificate, wrong content): 200 with 4,000 bytes of 'x'.
    let project = Project::new();
    let cert = std::fs::read_to_string(project.path().join("server.pem")).unwrap();
    let key = std::fs::read_to_string(project.path().join("server.key")).unwrap();
    let other = support::TlsServer::start(&cert, &key);
    let d = start(
        Chip::Esp8266,
        18,
        &baked(project.path(), Chip::Esp8266, "1.0.0", other.addr.port(), |_| {}),
        quick(),
    );
    let f = first_failure(&d).await;
    assert_eq!((f.code, f.message.as_str(), &f.tls), (-106, "Verify Bin Header Failed", &None), "{f:?}");
    assert_logged(&d, &["  = the download is not an ESP8266 image"]);
    assert_eq!(d.status().version.as_deref(), Some("1.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_goes_silent_after_a_download_is_flagged() {
    // v2 polls a host this device cannot resolve: it installs, boots, and never checks in again.
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let d = start(
        Chip::Esp8266,
        0x77,
        &baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |_| {}),
        quick(),
    );
    let mac = d.status().mac;
    // A few check-ins teach the server its rhythm (a check every 300 ms: under a second).
    d.wait_until(T, |s| s.checks >= 4).await.unwrap();
    let lost = baked(project.path(), Chip::Esp8266, "2.0.0", port(&server), |s| s.host = "ota.test".into());
    project.publish(&lost, "2.0.0", DEMO);
    server.reload().unwrap();
    event(&mut events, T, |e| matches!(e, ServerEvent::DownloadFinished { mac: Some(m), .. } if *m == mac))
        .await
        .unwrap();
    let downloaded = std::time::Instant::now();
    let silent =
        event(&mut events, T, |e| matches!(e, ServerEvent::DeviceSilent { mac: m, .. } if *m == mac)).await;
    assert!(silent.is_some(), "not flagged\n{}", log_text(&d));
    // Twice an interval under a second, at one-second resolution, plus the once-a-second sweep.
    assert!(downloaded.elapsed() < Duration::from_secs(5), "flagged after {:?}", downloaded.elapsed());
    server.shutdown().await;
    let (out, stdout, _) = support::run(support::otaforge(project.path()).arg("devices"));
    assert!(out.status.success());
    assert!(stdout.contains("silent since update"), "{stdout}");
    d.stop().await;
}
