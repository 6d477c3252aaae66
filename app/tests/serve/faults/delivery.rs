//! A download counts once the device has read it, not once the bytes reached the kernel.
//!
//! ESP8266httpUpdate (esp8266/Arduino `libraries/ESP8266httpUpdate/src/ESP8266httpUpdate.cpp`,
//! `handleUpdate`) refuses a filesystem image larger than its filesystem with "Not Enough space"
//! before reading any of the body, and `runUpdate` returns at once when `Update.begin` fails; either
//! way `http.end()` then closes the connection. When it takes an image, `Update.writeStream` reads
//! exactly Content-Length bytes and `http.end()` closes (a TCP close: BearSSL's `stop()` sends no
//! close_notify). These clients do the same over a real TLS socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Project, esp8266_headers, esp8266_image, md5_hex};
use otaforge_actions::publish::{PublishRequest, check_and_publish};
use otaforge_server::ServerEvent;
use otaforge_store::{DeviceState, PayloadKind, Store};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// How much of the body the device reads before it closes.
#[derive(Clone, Copy)]
enum Take {
    /// Only the head (and whatever arrived with it).
    Head,
    /// The head and `n` bytes of the body.
    Some(usize),
    /// All of it, then closes as the cores do.
    All,
}

/// One update check the way ESP8266httpUpdate makes it; returns the status and the body bytes read.
async fn check(p: &Project, addr: SocketAddr, mac: &str, mode: &str, md5: &str, take: Take) -> (u16, usize) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(p.ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("ota.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let mut head = "GET /update HTTP/1.0\r\nHost: ota.test\r\nConnection: close\r\n".to_string();
    for (n, v) in esp8266_headers(mac, Some("1.0"), md5) {
        let v = if n == "x-ESP8266-mode" { mode.to_string() } else { v };
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&got[..end]).to_string();
    let status: u16 = text[9..12].parse().unwrap();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let want = match take {
        Take::Head => 0,
        Take::Some(n) => n.min(length),
        Take::All => length,
    };
    let mut body = got.len() - end;
    while body < want {
        let n = tls.read(&mut buf[..(want - body).min(4096)]).await.unwrap();
        assert!(n > 0, "closed in the middle of the body");
        body += n;
    }
    // `http.end()`: a plain close, whatever is left unread.
    drop(tls);
    (status, body.min(length))
}

/// The server's answer to `mac`'s last request (it is recorded once the download is settled).
async fn decision(events: &mut broadcast::Receiver<ServerEvent>, mac: &str) -> (u16, String) {
    let wait = async {
        loop {
            if let Ok(ServerEvent::Decision { mac: Some(m), status, reason, .. }) = events.recv().await
                && m == mac
            {
                return (status, reason);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("the server decides")
}

/// A project with a sketch (2.0) and a 64 KB filesystem image (0.3) on the default channel: small
/// enough that the whole image fits in the socket buffers, so it is all written whether or not
/// the device reads it.
fn project() -> (Project, Vec<u8>, Vec<u8>) {
    let p = Project::new();
    let sketch = esp8266_image(300_000, 3);
    p.publish(&sketch, "2.0", "stable");
    let fs: Vec<u8> = (0..64 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    let mut store = Store::open(p.path()).unwrap();
    let req =
        PublishRequest { kind: PayloadKind::Filesystem, ..PublishRequest::sketch("stable", Some("0.3")) };
    check_and_publish(&mut store, fs.clone(), req.clone()).unwrap();
    (p, sketch, fs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filesystem_image_the_device_did_not_take_is_offered_again() {
    let (p, sketch, fs) = project();
    let server = p.serve(|c| c.idle_timeout = Duration::from_secs(3)).await;
    let mut events = server.subscribe();
    let addr = server.tls_addr;
    let mac = "18:FE:34:00:06:01";
    let md5 = md5_hex(&sketch);

    // "Not Enough space": the device reads the head and what came with it, and closes.
    let (status, _) = check(&p, addr, mac, "spiffs", &md5, Take::Head).await;
    assert_eq!(status, 200);
    let (_, reason) = decision(&mut events, mac).await;
    assert!(!reason.starts_with("sent"), "{reason}");
    // Offered again at its next check; this time it reads a few KB and gives up.
    let (status, _) = check(&p, addr, mac, "spiffs", &md5, Take::Some(4096)).await;
    assert_eq!(status, 200, "the image it did not take is offered again");
    let (_, reason) = decision(&mut events, mac).await;
    assert!(!reason.starts_with("sent"), "{reason}");
    // Taken: read to the end, then closed the way the core closes.
    let (status, read) = check(&p, addr, mac, "spiffs", &md5, Take::All).await;
    assert_eq!((status, read), (200, fs.len()));
    let (_, reason) = decision(&mut events, mac).await;
    assert!(reason.starts_with("sent filesystem image 0.3"), "{reason}");
    // Now it has it.
    let (status, _) = check(&p, addr, mac, "spiffs", &md5, Take::All).await;
    assert_eq!(status, 304);
    let (_, reason) = decision(&mut events, mac).await;
    assert!(reason.contains("already has filesystem image 0.3"), "{reason}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loop_guard_bounds_how_often_an_image_not_taken_is_sent() {
    let (p, sketch, _) = project();
    let server = p.serve(|c| c.idle_timeout = Duration::from_secs(3)).await;
    let mut events = server.subscribe();
    let mac = "18:FE:34:00:06:02";
    let md5 = md5_hex(&sketch);
    for i in 0..otaforge_server::decision::MAX_ATTEMPTS {
        let (status, _) = check(&p, server.tls_addr, mac, "spiffs", &md5, Take::Head).await;
        assert_eq!(status, 200, "attempt {}", i + 1);
        decision(&mut events, mac).await;
    }
    let (status, _) = check(&p, server.tls_addr, mac, "spiffs", &md5, Take::Head).await;
    let (_, reason) = decision(&mut events, mac).await;
    assert_eq!(status, 304, "{reason}");
    assert!(reason.contains("no longer offered"), "{reason}");
    // The sketch is not affected: this device runs the current one.
    let (status, _) = check(&p, server.tls_addr, mac, "sketch", &md5, Take::All).await;
    assert_eq!(status, 304);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sketch_counts_as_downloaded_only_once_the_device_read_it() {
    let p = Project::new();
    // Small enough to sit in the socket buffers whole.
    let sketch = esp8266_image(60_000, 4);
    p.publish(&sketch, "2.0", "stable");
    let server = p.serve(|c| c.idle_timeout = Duration::from_secs(3)).await;
    let mut events = server.subscribe();
    let old = "0123456789abcdef0123456789abcdef";

    // Refused after the head ("Verify Bin Header Failed" reads 4 bytes and closes): an attempt
    // the loop guard counts, not a download waiting for a restart.
    let mac = "18:FE:34:00:06:03";
    let (status, _) = check(&p, server.tls_addr, mac, "sketch", old, Take::Some(4)).await;
    assert_eq!(status, 200);
    let (_, reason) = decision(&mut events, mac).await;
    assert!(!reason.starts_with("sent"), "{reason}");
    server.flush().await;
    let d = server.devices().into_iter().find(|d| d.mac == mac).unwrap();
    assert_eq!((d.state, d.attempts), (DeviceState::Failed, 1), "{}", d.state_detail);

    // Read to the end and closed: downloaded.
    let mac = "18:FE:34:00:06:04";
    let (status, read) = check(&p, server.tls_addr, mac, "sketch", old, Take::All).await;
    assert_eq!((status, read), (200, sketch.len()));
    let (_, reason) = decision(&mut events, mac).await;
    assert!(reason.starts_with("sent release 2.0"), "{reason}");
    server.flush().await;
    let d = server.devices().into_iter().find(|d| d.mac == mac).unwrap();
    assert_eq!((d.state, d.attempts), (DeviceState::Downloaded, 1), "{}", d.state_detail);
    server.shutdown().await;
}
