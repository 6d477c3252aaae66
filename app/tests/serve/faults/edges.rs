//! The update server's small edges, each reproduced the way it was found: the header timeout
//! counted once, an empty request answered at once, versions with too many parts, text from
//! devices that hides or reorders what is shown, options that cannot work, and error texts said
//! once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{Project, device_get, esp8266_headers, esp8266_image, otaforge, run};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const UNKNOWN_MD5: &str = "00000000000000000000000000000000";

/// A TLS 1.2 connection to `addr` trusting only the project's CA.
async fn tls_connect(ca_pem: &str, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tls_over(ca_pem, tcp).await
}

async fn tls_over(ca_pem: &str, tcp: TcpStream) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("ota.test").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}

/// Everything the server sends until it closes, within `limit`.
async fn answer<S: tokio::io::AsyncRead + Unpin>(s: &mut S, limit: Duration) -> String {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(limit, read).await;
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_header_timeout_covers_the_handshake_and_the_head_together() {
    let p = Project::new();
    let timeout = Duration::from_millis(1500);
    let server = p.serve(|c| c.header_timeout = timeout).await;
    // A slow client: connects, takes 1 s before its ClientHello, then sends no request.
    let started = Instant::now();
    let tcp = TcpStream::connect(server.tls_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut tls = tls_over(&p.ca_pem, tcp).await;
    let text = answer(&mut tls, Duration::from_secs(5)).await;
    let took = started.elapsed();
    eprintln!("answered {:?} after {took:?}", text.lines().next());
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // One header timeout from the connection, not a second one after the handshake (2.5 s).
    assert!(took < timeout + Duration::from_millis(500), "the request head was allowed {took:?}");
    server.shutdown().await;
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    assert_eq!(unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn half_client_hellos_cost_no_work_while_they_wait() {
    let p = Project::new();
    let dir = p.path().to_path_buf();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel();
    // The whole server on one thread, so that thread's CPU time is everything it does.
    let server = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let cfg = otaforge_server::ServeConfig {
                bind: "127.0.0.1".parse().unwrap(),
                port: 0,
                header_timeout: Duration::from_secs(30),
                ..Default::default()
            };
            let server = otaforge_server::start(&dir, cfg).await.unwrap();
            addr_tx.send(server.tls_addr).unwrap();
            go_rx.await.unwrap();
            let before = thread_cpu();
            // The measure is the server's CPU time over a fixed second of 200 idle clients.
            tokio::time::sleep(Duration::from_secs(1)).await;
            cpu_tx.send(thread_cpu() - before).unwrap();
            server.shutdown().await;
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    // 200 clients send the start of a ClientHello record announcing 512 bytes, then nothing.
    let clients: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 3, 1, 0x02, 0x00, 1, 0]).unwrap();
            s
        })
        .collect();
    go_tx.send(()).unwrap();
    let used = cpu_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    drop(clients);
    server.join().unwrap();
    eprintln!("200 half ClientHellos cost the server {used:?} of CPU in 1 s");
    // Waiting on readability: nothing to do until a client sends more (polling every 2 ms cost
    // hundreds of milliseconds a second here).
    assert!(used < Duration::from_millis(60), "{used:?} of CPU in 1 s for 200 idle half ClientHellos");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_request_is_answered_400_at_once() {
    let p = Project::new();
    // A long header timeout: a 408 could not arrive within the test's limits.
    let server = p.serve(|c| c.header_timeout = Duration::from_secs(20)).await;
    // A blank line and the connection kept open.
    let mut tls = tls_connect(&p.ca_pem, server.tls_addr).await;
    tls.write_all(b"\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let started = Instant::now();
    let text = answer(&mut tls, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "a blank line got {text:?} after {:?}", started.elapsed());
    assert!(text.contains("empty request"), "{text}");
    // The client sends nothing and closes its side (TLS close_notify): answered too, at once.
    let mut tls = tls_connect(&p.ca_pem, server.tls_addr).await;
    tls.shutdown().await.unwrap();
    let text = answer(&mut tls, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "a closed empty request got {text:?}");
    // Plain TCP close (FIN without close_notify): the same.
    let mut tls = tls_connect(&p.ca_pem, server.tls_addr).await;
    tls.get_mut().0.shutdown().await.unwrap();
    let text = answer(&mut tls, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "a half-closed empty request got {text:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_reporting_a_version_with_too_many_parts_is_still_updated() {
    let p = Project::new();
    let img = esp8266_image(40_000, 7);
    p.publish(&img, "1.2.3", "stable");
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    // "1.2.3.4.5.6.7" is no version OTA Forge orders: the device is recognised by its MD5 instead
    // (not the release's), so it is updated; before, it counted as newer than 1.2.3 (and than any
    // release numbered 1.2.3.x) and was never updated.
    let h = esp8266_headers("18:FE:34:00:07:01", Some("1.2.3.4.5.6.7"), UNKNOWN_MD5);
    let r = device_get(&client, &url, &h).await;
    let reason = r.headers().get("x-ota-forge-reason").map(|v| v.to_str().unwrap().to_string());
    assert_eq!(r.status(), 200, "{reason:?}");
    assert_eq!(r.bytes().await.unwrap().len(), img.len());
    // Four parts are a version, ordered: 1.2.3.1 is newer than 1.2.3.
    let h = esp8266_headers("18:FE:34:00:07:02", Some("1.2.3.1"), UNKNOWN_MD5);
    assert_eq!(device_get(&client, &url, &h).await.status(), 304);
    server.shutdown().await;
}

/// Characters that reorder or hide text (bidi overrides and isolates, C1 controls).
const SNEAKY: [char; 5] = ['\u{202E}', '\u{2066}', '\u{200F}', '\u{0085}', '\u{009B}'];

fn sneaky(s: &str) -> Vec<char> {
    s.chars().filter(|c| SNEAKY.contains(c)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bidi_and_c1_controls_from_devices_are_not_echoed_or_recorded() {
    let p = Project::new();
    p.publish(&esp8266_image(40_000, 8), "2.0", "stable");
    let server = p.serve(|_| {}).await;
    let mut events = server.subscribe();
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    let mac = "18:FE:34:00:08:01";

    // In a value that is echoed in the 400 body.
    let mut h = esp8266_headers(mac, Some("2.0"), UNKNOWN_MD5);
    h.iter_mut().find(|(n, _)| n == "x-ESP8266-free-space").unwrap().1 = "1\u{202E}2\u{0085}3".into();
    let r = device_get(&client, &url, &h).await;
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(sneaky(&body).is_empty(), "echoed in the 400 body: {body:?}");
    assert!(body.contains("free-space"), "{body}");

    // In values that would be kept in the device table.
    for (name, value) in [
        ("x-ESP8266-version", "1.0\u{202E}"),
        ("x-ESP8266-sdk-version", "2.2.2\u{2066}x"),
        ("x-ESP8266-Chip-ID", "1\u{009B}2"),
    ] {
        let mut h = esp8266_headers(mac, Some("2.0"), UNKNOWN_MD5);
        match h.iter_mut().find(|(n, _)| n == name) {
            Some(v) => v.1 = value.into(),
            None => h.push((name.into(), value.into())),
        }
        let r = device_get(&client, &url, &h).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 400, "{name}: {body}");
        assert!(sneaky(&body).is_empty(), "{name} echoed: {body:?}");
    }
    // In the path (a 404 reason), and in a header nobody reads (the request history).
    let r = client
        .get(format!("https://ota.test:{}/upd\u{202E}ate", server.tls_addr.port()))
        .header("x-ESP8266-STA-MAC", mac)
        .header("X-Note", "a\u{202E}b\u{0085}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A clean check-in, so the device is in the table.
    let h = esp8266_headers(mac, Some("2.0"), UNKNOWN_MD5);
    assert_eq!(device_get(&client, &url, &h).await.status(), 304);
    server.flush().await;

    let devices = server.devices();
    let d = devices.iter().find(|d| d.mac == mac).expect("the device");
    let table = format!("{:?} {:?} {:?} {}", d.version, d.sdk_version, d.chip_id, d.last_reason);
    assert!(sneaky(&table).is_empty(), "kept in the device table: {table}");
    let store = otaforge_store::Store::open(p.path()).unwrap();
    for r in store.requests(mac, 100).unwrap() {
        let text = format!("{} {} {}", r.path, r.reason, r.headers);
        assert!(sneaky(&text).is_empty(), "kept in the request history: {text:?}");
    }
    // And what the log shows (every event with text in it).
    while let Ok(ev) = events.try_recv() {
        let text = format!("{ev:?}");
        let shown = match &ev {
            otaforge_server::ServerEvent::Decision { reason, .. } => reason.clone(),
            otaforge_server::ServerEvent::RequestReceived { path, version, .. } => {
                format!("{path} {version:?}")
            }
            otaforge_server::ServerEvent::ConnectionRefused { why, .. } => why.clone(),
            _ => String::new(),
        };
        assert!(sneaky(&shown).is_empty(), "in the log: {text}");
    }
    server.shutdown().await;
}

#[test]
fn serve_refuses_options_that_cannot_work() {
    let p = Project::new();
    for (args, says) in [
        (&["--max-connections", "0"][..], "--max-connections"),
        (&["--header-timeout", "0"][..], "--header-timeout"),
        (&["--idle-timeout", "0"][..], "--idle-timeout"),
        (&["--path", "noslash"][..], "--path"),
        (&["--path", "/up date"][..], "--path"),
    ] {
        let started = Instant::now();
        let (out, stdout, stderr) =
            run(otaforge(p.path()).args(["serve", "--bind", "127.0.0.1", "--port", "0"]).args(args));
        assert!(!out.status.success(), "{args:?} was accepted: {stdout}{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stdout.contains("Serving updates"), "{args:?}: {stdout}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[test]
fn a_port_in_use_is_reported_once() {
    let p = Project::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (out, _, stderr) = run(otaforge(p.path()).args(["serve", "--bind", "127.0.0.1", "--port", &port]));
    assert!(!out.status.success());
    assert_eq!(stderr.matches("in use").count(), 1, "{stderr}");
    assert!(stderr.contains("--port"), "the hint is kept: {stderr}");
}
