//! Moving bytes: ranges and HEAD for ESP-IDF, record sizes for small device buffers (checked by
//! BearSSL itself), publishing while downloads run, restarts, killed publishes, idle clients.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use otaforge_server::FragmentPolicy;
use otaforge_store::Store;
use support::{Project, bearssl_connect, device_get, esp8266_headers, esp8266_image, md5_hex};

#[tokio::test(flavor = "multi_thread")]
async fn head_and_ranges_as_esp_idf_uses_them() {
    let p = Project::new();
    let img = esp8266_image(200_000, 11);
    p.publish(&img, "1.0.0", "stable");
    let server = p.serve(|_| {}).await;
    let c = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    let n = img.len();

    let r = c.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], n.to_string().as_str());
    assert_eq!(r.headers()["accept-ranges"], "bytes");

    let r = c.get(&url).header("Range", "bytes=0-0").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 0-0/{n}").as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &img[..1]);

    let r = c.get(&url).header("Range", "bytes=1000-4095").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &img[1000..4096]);

    // Resumption after a broken download.
    let r = c.get(&url).header("Range", "bytes=150000-").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 150000-{}/{n}", n - 1).as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &img[150_000..]);

    let r = c.get(&url).header("Range", format!("bytes={n}-")).send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], format!("bytes */{n}").as_str());
    server.shutdown().await;
}

/// Downloads /update with the BearSSL client (off the async threads); returns its report and the body.
async fn download_with_bearssl(
    p: &Project,
    addr: std::net::SocketAddr,
    args: &[&str],
) -> (support::EspTls, Vec<u8>) {
    let out = p.path().join(format!("got-{}.bin", rand_suffix()));
    let mut all: Vec<String> = ["--get", "/update", "--out"].iter().map(|s| s.to_string()).collect();
    all.push(out.display().to_string());
    all.extend(args.iter().map(|s| s.to_string()));
    let ca = p.ca_pem.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let r = bearssl_connect(&ca, "ota.test", addr, &refs);
        let body = std::fs::read(&out).unwrap_or_default();
        (r, body)
    })
    .await
    .unwrap()
}

fn as_args(d: &[String]) -> Vec<&str> {
    d.iter().map(String::as_str).collect()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn max_record(stdout: &str) -> usize {
    stdout
        .split("max_record=")
        .nth(1)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn small_device_buffers_get_records_that_fit() {
    let p = Project::new();
    let img = esp8266_image(420_000, 12);
    p.publish(&img, "1.0.0", "stable");
    let server = p.serve(|_| {}).await;
    let addr = server.tls_addr;
    // Each download is a different device (the loop guard would rightly stop offering one device
    // the same release after repeated downloads).
    let device = |n: u8| -> Vec<String> {
        esp8266_headers(&format!("18:FE:34:00:00:{n:02X}"), Some("0.9"), &md5_hex(b"x"))
            .iter()
            .flat_map(|(name, v)| ["--header".to_string(), format!("{name}: {v}")])
            .collect()
    };
    let (d1, d2, d3, d4) = (device(1), device(2), device(3), device(4));

    // setBufferSizes(512, 512): BearSSL advertises 512 and aborts on any larger record.
    let mut small = as_args(&d1);
    small.extend(["--rx", "512", "--tx", "512"]);
    let (r, body) = download_with_bearssl(&p, addr, &small).await;
    assert!(r.ok, "{}", r.stdout);
    assert!(r.stdout.contains("status=200"), "{}", r.stdout);
    assert_eq!(body, img, "byte-identical over 512-byte records");
    // 512 bytes of plaintext plus at most 24 bytes of AEAD nonce and tag.
    assert!(max_record(&r.stdout) <= 512 + 24, "{}", r.stdout);

    // The default ESP8266 client (16 KB receive buffer) also advertises 512: honoured too.
    let (r, body) = download_with_bearssl(&p, addr, &as_args(&d2)).await;
    assert!(r.ok && body == img, "{}", r.stdout);
    assert!(max_record(&r.stdout) <= 536, "{}", r.stdout);
    server.shutdown().await;

    // A server that ignores the advertised size breaks small-buffer devices, as a real one would.
    let server = p.serve(|c| c.fragment_policy = FragmentPolicy::Ignore).await;
    let mut big = as_args(&d3);
    big.extend(["--rx", "512", "--tx", "512"]);
    let (r, _) = download_with_bearssl(&p, server.tls_addr, &big).await;
    assert!(!r.ok && r.stdout.starts_with("BEARSSL_ERROR 6"), "{}", r.stdout);
    let (r, body) = download_with_bearssl(&p, server.tls_addr, &as_args(&d4)).await;
    assert!(r.ok && body == img, "16 KB buffers take full records: {}", r.stdout);
    assert!(max_record(&r.stdout) > 16_000, "{}", r.stdout);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_while_twenty_downloads_run_never_mixes_releases() {
    let p = Project::new();
    let v1 = esp8266_image(400_000, 21);
    let v2 = esp8266_image(410_000, 22);
    p.publish(&v1, "1.0.0", "stable");
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());

    let mut started = Vec::new();
    for i in 0..20 {
        let mac = format!("18:FE:34:00:01:{i:02X}");
        let r = device_get(
            &client,
            &url,
            &esp8266_headers(&mac, Some("0.1"), "ffffffffffffffffffffffffffffffff"),
        )
        .await;
        assert_eq!(r.status(), 200);
        started.push(r);
    }
    // Every download has begun; now publish v2 (in-process, as the GUI does) and make it live.
    let mut first_chunks = Vec::new();
    for r in started.iter_mut() {
        first_chunks.push(r.chunk().await.unwrap().unwrap());
    }
    p.publish(&v2, "2.0.0", "stable");
    server.reload().unwrap();
    let mut bodies = Vec::new();
    for (mut r, first) in started.into_iter().zip(first_chunks) {
        let mut body = first.to_vec();
        while let Some(c) = r.chunk().await.unwrap() {
            body.extend_from_slice(&c);
        }
        bodies.push(body);
    }
    for b in &bodies {
        assert!(b == &v1, "a download in flight must finish with the release it started");
    }
    let r = device_get(
        &client,
        &url,
        &esp8266_headers("18:FE:34:00:02:00", Some("0.1"), "ffffffffffffffffffffffffffffffff"),
    )
    .await;
    assert_eq!(r.headers()["x-version"], "2.0.0");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &v2[..]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_releases_and_devices() {
    let p = Project::new();
    let img = esp8266_image(50_000, 31);
    p.publish(&img, "1.2.3", "stable");
    let server = p.serve(|_| {}).await;
    let c = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    let r = device_get(&c, &url, &esp8266_headers("18:FE:34:00:03:01", Some("1.2.3"), &md5_hex(&img))).await;
    assert_eq!(r.status(), 304);
    server.shutdown().await;

    let server = p.serve(|_| {}).await;
    let d = server
        .devices()
        .into_iter()
        .find(|d| d.mac == "18:FE:34:00:03:01")
        .expect("device survives a restart");
    assert_eq!(d.version.as_deref(), Some("1.2.3"));
    let c = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    let r = device_get(&c, &url, &esp8266_headers("18:FE:34:00:03:02", Some("1.0"), &md5_hex(b"y"))).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), &img[..], "the release survives a restart");
    let store = Store::open(p.path()).unwrap();
    assert!(!store.requests("18:FE:34:00:03:01", 10).unwrap().is_empty(), "request history is kept");
    server.shutdown().await;
}

#[test]
fn a_publish_killed_midway_leaves_no_partial_release() {
    let p = Project::new();
    let file = p.path().join("big.bin");
    std::fs::write(&file, esp8266_image(8 * 1024 * 1024, 41)).unwrap();
    let mut killed = 0;
    for i in 0..12u64 {
        let mut child = support::otaforge(p.path())
            .args(["publish", file.to_str().unwrap(), "--version", &format!("1.0.{i}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed at a different moment each time (5 ms, 12 ms, ...), so some land mid-write.
        std::thread::sleep(Duration::from_millis(5 + i * 7));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        let _ = child.wait();
        assert_store_whole(p.path());
    }
    assert!(killed > 0, "no publish was interrupted; the test proved nothing");
}

/// Every release row has its complete blob; no staging file survives reopening.
fn assert_store_whole(dir: &Path) {
    let store = Store::open(dir).unwrap();
    for r in store.releases(None).unwrap() {
        let blob = store.blobs().get(&r.sha256).expect("a recorded release has its whole file");
        assert_eq!(blob.len() as u64, r.size);
    }
    let staging = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".staging-"))
        .count();
    assert_eq!(staging, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_half_open_clients_cannot_pin_the_server() {
    let p = Project::new();
    let img = esp8266_image(30_000, 51);
    p.publish(&img, "1.0.0", "stable");
    let server = p
        .serve(|c| {
            c.header_timeout = Duration::from_millis(800);
            c.max_connections = 16;
        })
        .await;
    // 40 clients connect and say nothing (or half a ClientHello).
    let mut idle = Vec::new();
    for i in 0..40 {
        let mut s = tokio::net::TcpStream::connect(server.tls_addr).await.unwrap();
        if i % 2 == 0 {
            use tokio::io::AsyncWriteExt;
            s.write_all(&[0x16, 3, 1, 0x02, 0x00, 1, 0]).await.unwrap();
        }
        idle.push(s);
    }
    let c = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(r) = c.get(&url).send().await
            && r.status() == 200
        {
            ok = r.bytes().await.unwrap().len() == img.len();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "a real client was not served within 5 s");
    // The idle connections were closed by the server.
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), idle[1].read(&mut buf))
        .await
        .expect("server closes idle clients");
    assert!(matches!(n, Ok(0) | Err(_)));
    server.shutdown().await;
}
