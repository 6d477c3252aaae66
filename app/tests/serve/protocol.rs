//! `otaforge serve` as the devices see it: a real HTTPS socket, a strict TLS 1.2 client with only
//! the CA as root, and the exact headers ESP8266httpUpdate and arduino-esp32 HTTPUpdate send.

mod esp32;
use crate::support;

use std::time::Duration;

use otaforge_server::ServerEvent;
use otaforge_store::{DeviceState, Store};
use support::{Project, device_get, esp8266_headers, esp8266_image, md5_hex};

const MAC: &str = "18:FE:34:A1:B2:C3";
const UNKNOWN_MD5: &str = "00000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread")]
async fn every_esp8266_decision_branch() {
    let p = Project::new();
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());

    // Nothing published: 304, never an error the device would retry on.
    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("1.9"), UNKNOWN_MD5)).await;
    assert_eq!(r.status(), 304);

    let v19 = esp8266_image(300_000, 1);
    let v110 = esp8266_image(310_000, 2);
    p.publish(&v19, "1.9", "stable");
    let rel = p.publish(&v110, "1.10", "stable");
    server.reload().unwrap();

    // "1.9" < "1.10": numeric, not parseFloat.
    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("1.9"), &md5_hex(&v19))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-MD5"], rel.md5.as_str());
    assert_eq!(r.headers()["x-MD5"].len(), 32);
    assert_eq!(r.headers()["x-version"], "1.10");
    assert_eq!(r.headers()["content-length"], v110.len().to_string().as_str());
    assert!(r.headers().get("transfer-encoding").is_none(), "never chunked");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &v110[..]);

    // Running the release: 304, by version and, with no version, by MD5.
    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("1.10"), &md5_hex(&v110))).await;
    assert_eq!(r.status(), 304);
    let r = device_get(&client, &url, &esp8266_headers(MAC, None, &md5_hex(&v110))).await;
    assert_eq!(r.status(), 304);
    assert!(r.headers()["x-ota-forge-reason"].to_str().unwrap().contains("1.10"));
    // No version, running the older release: recognised by MD5 and updated.
    let r = device_get(&client, &url, &esp8266_headers("18:FE:34:00:00:02", None, &md5_hex(&v19))).await;
    assert_eq!(r.status(), 200);

    // Version mode: 200, x-version and x-MD5, no body.
    let mut h = esp8266_headers(MAC, Some("1.10"), &md5_hex(&v110));
    h.iter_mut().find(|(n, _)| n == "x-ESP8266-mode").unwrap().1 = "version".into();
    let r = device_get(&client, &url, &h).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-version"], "1.10");
    assert_eq!(r.headers()["content-length"], "0");
    // spiffs with no filesystem image: 304.
    h.iter_mut().find(|(n, _)| n == "x-ESP8266-mode").unwrap().1 = "spiffs".into();
    assert_eq!(device_get(&client, &url, &h).await.status(), 304);

    // Too little free space: 304 with a recorded reason.
    let mut h = esp8266_headers("18:FE:34:00:00:03", Some("1.0"), UNKNOWN_MD5);
    h.iter_mut().find(|(n, _)| n == "x-ESP8266-free-space").unwrap().1 = "100000".into();
    assert_eq!(device_get(&client, &url, &h).await.status(), 304);
    server.flush().await;
    let store = Store::open(p.path()).unwrap();
    let d = store.device("18:FE:34:00:00:03").unwrap().unwrap();
    assert!(d.last_reason.contains("100000 free"), "{}", d.last_reason);
    assert_eq!(d.state, DeviceState::Held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_right_4xx_and_the_server_keeps_serving() {
    let p = Project::new();
    let img = esp8266_image(100_000, 3);
    p.publish(&img, "2.0", "stable");
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let base = format!("https://ota.test:{}", server.tls_addr.port());
    let url = format!("{base}/update");

    let bad_mac = esp8266_headers("not-a-mac", Some("1.0"), UNKNOWN_MD5);
    assert_eq!(device_get(&client, &url, &bad_mac).await.status(), 400);
    let long = "9".repeat(10_000);
    let s = device_get(&client, &url, &esp8266_headers(MAC, Some(&long), UNKNOWN_MD5)).await.status();
    assert!(s == 400 || s == 431, "{s}");
    let huge = vec![("X-Padding".to_string(), "a".repeat(100_000))];
    assert_eq!(device_get(&client, &url, &huge).await.status(), 431);
    for path in ["/update/../../etc/passwd", "/update/%2e%2e", "/update/nosuch", "/other"] {
        let s = client.get(format!("{base}{path}")).send().await.unwrap().status();
        assert_eq!(s, 404, "{path}");
    }
    let s = client.post(&url).send().await.unwrap().status();
    assert_eq!(s, 405);
    let s = device_get(&client, &url, &[("x-ESP8266-free-space".into(), "12".into())]).await.status();
    assert_eq!(s, 400, "device headers without a MAC");

    // After all that, a device still gets its update.
    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("1.0"), UNKNOWN_MD5)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), img.len());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_list_gives_403_and_channel_credentials_401() {
    let p = Project::new();
    p.publish(&esp8266_image(50_000, 4), "1.0.0", "beta");
    {
        let mut store = Store::open(p.path()).unwrap();
        store.set_auth("beta", Some(("dev", "s3cret"))).unwrap();
    }
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update/beta", server.tls_addr.port());
    let h = esp8266_headers(MAC, Some("0.9"), UNKNOWN_MD5);
    assert_eq!(device_get(&client, &url, &h).await.status(), 401);
    let mut with_auth = h.clone();
    with_auth.push(("Authorization".into(), "Basic ZGV2OnMzY3JldA==".into())); // dev:s3cret
    assert_eq!(device_get(&client, &url, &with_auth).await.status(), 200);

    Store::open(p.path()).unwrap().set_allowed("AA:BB:CC:DD:EE:FF", true).unwrap();
    server.reload().unwrap();
    assert_eq!(device_get(&client, &url, &with_auth).await.status(), 403);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn esp32_headers_and_chip_families() {
    let p = Project::new();
    let esp32 = otaforge_firmware::ImageBuilder::esp32_app(otaforge_firmware::Chip::Esp32C3)
        .version("3.1.0")
        .target_size(200_000)
        .build();
    p.publish(&esp32, "3.1.0", "c3");
    p.publish(&esp8266_image(60_000, 5), "3.1.0", "stable");
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let port = server.tls_addr.port();
    let h: Vec<(String, String)> = [
        ("User-Agent", "ESP32-http-Update"),
        ("Cache-Control", "no-cache"),
        ("x-ESP32-STA-MAC", "7C:DF:A1:00:00:01"),
        ("x-ESP32-AP-MAC", "7C:DF:A1:00:00:02"),
        ("x-ESP32-free-space", "1966080"),
        ("x-ESP32-sketch-size", "180000"),
        ("x-ESP32-sketch-md5", UNKNOWN_MD5),
        ("x-ESP32-sketch-sha256", &"AB".repeat(32)),
        ("x-ESP32-chip-size", "4194304"),
        ("x-ESP32-sdk-version", "v5.1.4"),
        ("x-ESP32-mode", "sketch"),
        ("x-ESP32-version", "3.0.0"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let r = device_get(&client, &format!("https://ota.test:{port}/update/c3"), &h).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &esp32[..]);
    // An ESP32 asking the ESP8266 channel is not sent an image it cannot run.
    let r = device_get(&client, &format!("https://ota.test:{port}/update"), &h).await;
    assert_eq!(r.status(), 304);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_sees_installs_and_rollbacks() {
    let p = Project::new();
    let old = esp8266_image(80_000, 6);
    let new = esp8266_image(90_000, 7);
    p.publish(&old, "1.0", "stable");
    p.publish(&new, "1.1", "stable");
    let server = p.serve(|_| {}).await;
    let mut events = server.subscribe();
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());

    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("1.0"), &md5_hex(&old))).await;
    assert_eq!(r.bytes().await.unwrap().len(), new.len());
    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("1.1"), &md5_hex(&new))).await;
    assert_eq!(r.status(), 304);
    let other = "18:FE:34:00:00:09";
    let r = device_get(&client, &url, &esp8266_headers(other, Some("1.0"), &md5_hex(&old))).await;
    assert_eq!(r.bytes().await.unwrap().len(), new.len());
    let r = device_get(&client, &url, &esp8266_headers(other, Some("1.0"), &md5_hex(&old))).await;
    assert_eq!(r.status(), 200, "offered again after coming back on the old firmware");
    drop(r);

    let mut installed = false;
    let mut rolled_back = false;
    let mut progress = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), events.recv()).await {
        match ev {
            ServerEvent::DeviceInstalled { mac, version, .. } if mac == MAC && version == "1.1" => {
                installed = true
            }
            ServerEvent::DeviceRolledBack { mac, .. } if mac == other => rolled_back = true,
            ServerEvent::DownloadProgress { sent, total, .. } => {
                assert!(sent <= total);
                progress += 1;
            }
            _ => {}
        }
    }
    assert!(installed && rolled_back && progress >= 2, "{installed} {rolled_back} {progress}");
    let devices = server.devices();
    let d = devices.iter().find(|d| d.mac == MAC).unwrap();
    assert_eq!(d.state, DeviceState::Installed);
    assert_eq!(d.chip_id.as_deref(), Some("10560374"));
    assert_eq!(d.version.as_deref(), Some("1.1"));
    server.shutdown().await;
}
