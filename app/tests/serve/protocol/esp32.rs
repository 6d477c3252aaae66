//! `otaforge serve` and what arduino-esp32 3.x `HTTPUpdate` sends that older cores did not: an
//! ESP32 without Wi-Fi (ESP32-H2/P4) knows itself only by `x-ESP32-BASE-MAC`, a station-only one
//! sends an all-zero AP MAC, and filesystem updates say `fatfs`, `littlefs` or `flashfs` as well
//! as `spiffs`. Real TLS socket, the device's header order.

use crate::support::{Project, device_get};
use otaforge_actions::publish::{PublishRequest, check_and_publish};
use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_store::{PayloadKind, Store};

/// The headers HTTPUpdate sends, in its order, with `macs` in place of the MAC headers.
fn esp32_headers(macs: &[(&str, &str)], mode: &str, version: &str) -> Vec<(String, String)> {
    let mut h = vec![("Cache-Control", "no-cache")];
    h.extend_from_slice(macs);
    h.extend([
        ("x-ESP32-free-space", "1966080"),
        ("x-ESP32-sketch-size", "180000"),
        ("x-ESP32-sketch-md5", "00000000000000000000000000000000"),
        ("x-ESP32-chip-size", "4194304"),
        ("x-ESP32-sdk-version", "v5.4.2-25-g858a988d6e"),
        ("x-ESP32-mode", mode),
        ("x-ESP32-version", version),
    ]);
    let mut out = vec![("User-Agent".to_string(), "ESP32-http-Update".to_string())];
    out.extend(h.into_iter().map(|(n, v)| (n.to_string(), v.to_string())));
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_esp32_h2_known_only_by_its_base_mac_is_served() {
    let p = Project::new();
    let image = ImageBuilder::esp32_app(Chip::Esp32H2).version("1.1.0").target_size(150_000).build();
    p.publish(&image, "1.1.0", "h2");
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update/h2", server.tls_addr.port());

    let h = esp32_headers(&[("x-ESP32-BASE-MAC", "74:4d:bd:00:00:01")], "sketch", "1.0.0");
    let r = device_get(&client, &url, &h).await;
    assert_eq!(r.status(), 200, "{:?}", r.headers().get("x-ota-forge-reason"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), &image[..]);
    server.flush().await;
    let d =
        server.devices().into_iter().find(|d| d.mac == "74:4D:BD:00:00:01").expect("known by its base MAC");
    assert_eq!(d.family, "ESP32");
    assert_eq!(d.ap_mac, None);

    // A station-only ESP32 with Wi-Fi: STA-MAC is its identity, the zero AP MAC is no AP MAC.
    let h = esp32_headers(
        &[
            ("x-ESP32-BASE-MAC", "24:0A:C4:00:00:07"),
            ("x-ESP32-STA-MAC", "24:0A:C4:00:00:07"),
            ("x-ESP32-AP-MAC", "00:00:00:00:00:00"),
        ],
        "sketch",
        "1.1.0",
    );
    let r = device_get(&client, &url, &h).await;
    assert_eq!(r.status(), 304, "already runs 1.1.0");
    server.flush().await;
    let d = server.devices().into_iter().find(|d| d.mac == "24:0A:C4:00:00:07").expect("the STA MAC");
    assert_eq!(d.ap_mac, None);

    // No MAC at all: the server cannot tell it apart and says so.
    let h = esp32_headers(&[], "sketch", "1.0.0");
    let r = device_get(&client, &url, &h).await;
    assert_eq!(r.status(), 400);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fatfs_littlefs_and_flashfs_are_filesystem_requests() {
    let p = Project::new();
    let sketch = ImageBuilder::esp32_app(Chip::Esp32S3).version("2.0.0").target_size(120_000).build();
    p.publish(&sketch, "2.0.0", "s3");
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update/s3", server.tls_addr.port());
    let macs = [("x-ESP32-BASE-MAC", "F4:12:FA:00:00:01"), ("x-ESP32-STA-MAC", "F4:12:FA:00:00:01")];

    // No filesystem image published: 304, not the sketch and not a 400 for an unknown mode.
    let r = device_get(&client, &url, &esp32_headers(&macs, "fatfs", "2.0.0")).await;
    assert_eq!(r.status(), 304);
    let reason = r.headers()["x-ota-forge-reason"].to_str().unwrap().to_string();
    assert!(reason.contains("filesystem"), "{reason}");

    // With one published, each filesystem mode gets it (and the sketch mode still gets 304).
    let fs: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let mut store = Store::open(p.path()).unwrap();
    let req = PublishRequest { kind: PayloadKind::Filesystem, ..PublishRequest::sketch("s3", Some("1.0.0")) };
    check_and_publish(&mut store, fs.clone(), req.clone()).unwrap();
    server.reload().unwrap();
    for (i, mode) in ["fatfs", "littlefs", "flashfs", "spiffs"].into_iter().enumerate() {
        let mac = format!("F4:12:FA:00:01:{i:02X}");
        let r = device_get(&client, &url, &esp32_headers(&[("x-ESP32-BASE-MAC", &mac)], mode, "2.0.0")).await;
        assert_eq!(r.status(), 200, "{mode}: {:?}", r.headers().get("x-ota-forge-reason"));
        assert_eq!(r.bytes().await.unwrap().as_ref(), &fs[..], "{mode}");
    }
    let r = device_get(&client, &url, &esp32_headers(&macs, "sketch", "2.0.0")).await;
    assert_eq!(r.status(), 304);
    server.shutdown().await;
}
