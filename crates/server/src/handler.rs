//! One connection, from the first byte to the last: limits, TLS with the right record size, the
//! request, the decision, the answer, the download with live progress, and the inventory.
//!
//! A request goes three steps: `route` (pure: the request, the catalog and what the inventory
//! knows, to a reply described as data), `write` (the one writer of any reply), and `ledger`
//! (the inventory and the events, in one place).
//!
//! Every state has a deadline: the handshake and the request head together the header timeout
//! (counted from the accept), every write (the answer, the body, the closing TLS flush and
//! shutdown) the idle timeout ([`WriteDeadline`]), waiting for a device to close after a download
//! the idle timeout without progress, the lingering close two seconds.
//!
//! A download counts as delivered when the device has read it, not when the bytes reached the
//! kernel: ESP8266httpUpdate and arduino-esp32 HTTPUpdate read exactly Content-Length bytes
//! (`Update.writeStream`) and then close the connection (`http.end()`: a plain TCP close, no TLS
//! close_notify). A device that does not take the image (ESP8266 "Not Enough space" when the
//! filesystem image is larger than its filesystem, `Update.begin` failing) reads no body at all
//! and closes the same way, right after the head (a reset when bytes it did not read are left).
//! So after the last byte is written the server waits for the device to close, and counts the
//! download only if it closed cleanly with every byte acknowledged
//! ([`Delivery`](delivery::Delivery)). A sketch whose close does not come counts all the same (its
//! next check-in shows whether it runs it); a filesystem image does not (the device reports
//! nothing about it), and one not taken is offered again, a bounded number of times
//! ([`FsRefusals`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::catalog::Catalog;
use super::device::{self, DeviceRequest};
use super::events::ServerEvent;
use super::http::{self, ReadError, Request, printable};
use super::{Shared, tls};

mod auth;
mod conn;
mod delivery;
mod ledger;
mod route;
mod sealed;
mod streams;
mod write;

use auth::authorized;
use conn::Conn;
use delivery::{FsRefusals, SendQueue};
use route::{Facts, Known, Need, Routed, Step, route};
use sealed::{Link, Tls};
use streams::{Replay, WriteDeadline};
use write::write;

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: bool,
    mut stop: watch::Receiver<bool>,
) {
    let refusals = Arc::new(FsRefusals::default());
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
            shared
                .emit(ServerEvent::ConnectionRefused { remote, why: "too many connections at once".into() });
            drop(tcp);
            continue;
        };
        // The header timeout runs from here: the handshake and the request head share it.
        let started = Instant::now();
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let conn = Conn { remote, started, record_size: None, sent: SendQueue::of(&tcp), refusals };
            if tls {
                serve_tls(&shared, tcp, conn).await;
            } else {
                let tcp = WriteDeadline::new(tcp, shared.config.idle_timeout);
                serve_http(&shared, tcp, conn).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tls(shared: &Arc<Shared>, mut tcp: TcpStream, mut conn: Conn) {
    let remote = conn.remote;
    let deadline = conn.started + shared.config.header_timeout;
    let hello = match read_client_hello(&mut tcp, deadline).await {
        Ok(h) => h,
        Err(why) => {
            shared.emit(ServerEvent::ConnectionRefused { remote, why });
            return;
        }
    };
    let (config, record_size) = shared.tls.for_client_hello(&hello);
    conn.record_size = record_size;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    // rustls reads the ClientHello again from what was read of it; under TLS the write deadline,
    // so that what rustls writes (the close_notify too) has it as well.
    let tcp = WriteDeadline::new(Replay::new(hello, tcp), shared.config.idle_timeout);
    match tokio::time::timeout_at(deadline.into(), acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            // A release is sealed here in steps of `write::CHUNK`, each leaving in one write.
            let stream = Tls::new(stream, conn.record_size, write::CHUNK);
            serve_http(shared, stream, conn).await
        }
        Ok(Err(e)) => {
            shared.emit(ServerEvent::ConnectionRefused { remote, why: format!("TLS handshake failed: {e}") })
        }
        Err(_) => {
            shared.emit(ServerEvent::ConnectionRefused { remote, why: "TLS handshake timed out".into() })
        }
    }
}

/// Largest first record read before the handshake (a TLS record's limit plus its header).
const MAX_HELLO: usize = 16 * 1024 + 5;

/// Reads the first TLS record (the ClientHello), so its `max_fragment_length` can be known before
/// rustls takes the stream ([`Replay`] gives rustls the same bytes). Each read waits until the
/// client sends more: a client that sends half a ClientHello and stops costs nothing until then.
async fn read_client_hello<R: AsyncRead + Unpin>(r: &mut R, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match tls::record_len(&buf) {
            None => return Err("not TLS (plain HTTP sent to the HTTPS port?)".into()),
            Some(need) if buf.len() >= need || buf.len() >= MAX_HELLO => return Ok(buf),
            Some(_) => {}
        }
        let room = chunk.len().min(MAX_HELLO - buf.len());
        match tokio::time::timeout_at(deadline.into(), r.read(&mut chunk[..room])).await {
            Err(_) if buf.is_empty() => return Err("no TLS ClientHello in time".into()),
            Err(_) => return Err("incomplete ClientHello".into()),
            Ok(Ok(0)) if buf.is_empty() => return Err("closed before the TLS handshake".into()),
            Ok(Ok(0)) => return Err("closed in the middle of the ClientHello".into()),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(format!("connection error: {e}")),
        }
    }
}

async fn serve_http<S: Link>(shared: &Arc<Shared>, mut stream: S, conn: Conn) {
    let cfg = &shared.config;
    let remote = conn.remote;
    let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let read = http::read_request(&mut stream, cfg.max_header_bytes, cfg.header_timeout, conn.started.into());
    let req = match read.await {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                ReadError::TooLarge(_) => 431,
                ReadError::Malformed(_) | ReadError::Empty => 400,
                ReadError::Timeout(_) => 408,
                ReadError::Closed => return,
            };
            let _ = http::write_text(&mut stream, status, &format!("{e}\n"), &[], false).await;
            shared.emit(ServerEvent::ConnectionRefused { remote, why: e.to_string() });
            linger(&mut stream).await;
            return;
        }
    };
    respond(shared, &mut stream, &req, &conn, id).await;
    let _ = stream.shutdown().await;
}

/// Reads and drops what the client is still sending (briefly) before closing, so it gets to read
/// our error answer instead of a connection reset (the "lingering close" web servers do).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let drain = async {
        let mut total = 0usize;
        while total < 1 << 20 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// One request: routed, its reply written, what happened recorded. Routing asks for the two
/// facts that cost something (the credentials check, the device's check-in) only when the
/// request gets that far.
async fn respond<S: Link>(shared: &Arc<Shared>, stream: &mut S, req: &Request, c: &Conn, conn: u64) {
    let device = device::parse(req);
    let dev = device.as_ref().ok().and_then(Option::as_ref);
    let mac = dev.map(|d| d.sta_mac.clone());
    shared.emit(ServerEvent::RequestReceived {
        conn,
        remote: c.remote,
        method: printable(&req.method).into_owned(),
        path: printable(&req.path).into_owned(),
        mac: mac.clone(),
        version: dev.and_then(|d| d.version.clone()),
    });
    let catalog = shared.catalog();
    let routed = resolve(shared, req, c, &device, &catalog).await;
    ledger::decided(shared, mac.as_deref(), routed.decision.as_ref());
    let written = write(shared, stream, c, conn, &mac, routed.reply).await;
    ledger::settle(shared, c, conn, req, mac, written);
}

/// Routes `req` to where it ends, finding out each fact routing asks for.
async fn resolve(
    shared: &Shared,
    req: &Request,
    c: &Conn,
    device: &Result<Option<DeviceRequest>, String>,
    catalog: &Catalog,
) -> Routed {
    let mut facts = Facts::default();
    loop {
        match route(req, device, &shared.config.path, catalog, &facts) {
            Step::Reply(routed) => return routed,
            Step::Need(Need::Credentials(auth)) => {
                facts.authorized = Some(authorized(shared, req.header("Authorization"), auth).await);
            }
            Step::Need(Need::CheckIn { dev, channel, fs_image }) => {
                let name = device::name_from_query(req.query.as_deref());
                let remote = c.remote.ip().to_string();
                let checked_in =
                    shared.inventory.try_check_in(dev, name.as_deref(), &channel, &remote, catalog);
                facts.known = Some(match checked_in {
                    Ok(device) => {
                        let fs_refused = fs_image.map_or(0, |id| c.refusals.times(&dev.sta_mac, id));
                        Ok(Known { device, fs_refused })
                    }
                    Err((why, _)) => Err(why.to_string()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use base64::Engine;

    use super::auth::basic_credentials;
    use super::*;

    #[test]
    fn basic_credentials_are_read_whatever_the_case_of_the_scheme() {
        let token = base64::engine::general_purpose::STANDARD.encode("dev:s3:cret");
        let want = Some(("dev".to_string(), "s3:cret".to_string()));
        assert_eq!(basic_credentials(Some(&format!("Basic {token}"))), want);
        assert_eq!(basic_credentials(Some(&format!("basic  {token}"))), want);
        assert_eq!(basic_credentials(Some(&format!("Bearer {token}"))), None);
        assert_eq!(basic_credentials(Some("Basic !!!")), None);
        assert_eq!(basic_credentials(None), None);
    }

    /// A project with one ESP8266 release 1.1 of `len` bytes, served on loopback over plain
    /// HTTP; the release's id.
    async fn serve_one_release(dir: &std::path::Path, len: usize) -> (crate::RunningServer, i64) {
        use md5::{Digest, Md5};
        use otaforge_store::{NewRelease, PayloadKind, Store};

        let hosts = vec![otaforge_pki::Host::parse("localhost").unwrap()];
        otaforge_pki::generate(dir, &otaforge_pki::IssueRequest::new(hosts), false).unwrap();
        let mut image = vec![0xE9, 1, 2, 0x40, 0, 0, 0x10, 0x40];
        image.resize(len, 7);
        let md5 = hex::encode(Md5::digest(&image));
        let new = NewRelease {
            channel: "stable".into(),
            kind: PayloadKind::Sketch,
            version: "1.1".into(),
            chip: Some("ESP8266".into()),
            bytes: &image,
            md5: md5.clone(),
            md5_normalized: md5,
            flash_size: None,
            file_name: "a.bin".into(),
            notes: String::new(),
            signed_by: None,
            trusts: None,
        };
        let id = Store::open(dir).unwrap().publish(new).unwrap().id;
        let config = crate::ServeConfig {
            bind: std::net::Ipv4Addr::LOCALHOST.into(),
            port: 0,
            http_port: Some(0),
            ..Default::default()
        };
        (crate::start(dir, config).await.unwrap(), id)
    }

    /// Asks as device `mac` running `version`, reads the head and as many bytes as it says, then
    /// closes, as ESP8266httpUpdate does.
    async fn device_request(server: &crate::RunningServer, mac: &str, version: &str) {
        use tokio::io::AsyncWriteExt;
        let mut tcp = TcpStream::connect(server.http_addr.unwrap()).await.unwrap();
        let head = format!(
            "GET /update HTTP/1.0\r\nx-ESP8266-STA-MAC: {mac}\r\nx-ESP8266-version: {version}\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let whole = |got: &[u8]| {
            let text = String::from_utf8_lossy(got);
            let (head, body) = text.split_once("\r\n\r\n")?;
            let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: "))?.parse().ok()?;
            (body.len() >= len).then_some(())
        };
        while whole(&got).is_none() {
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got[..got.len().min(300)]));
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// Over a real socket, as a device: the decision event of a download names its release, that
    /// of a 304 none.
    #[tokio::test]
    async fn the_decision_event_of_a_download_names_its_release() {
        let dir = tempfile::tempdir().unwrap();
        let (server, id) = serve_one_release(dir.path(), 4096).await;
        let mut events = server.subscribe();
        for (version, want_status, want_release) in [("1.0", 200, Some(id)), ("1.1", 304, None)] {
            device_request(&server, "18:FE:34:00:00:01", version).await;
            let decision = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    if let Ok(ServerEvent::Decision { status, release, reason, .. }) = events.recv().await {
                        return (status, release, reason);
                    }
                }
            });
            let (status, release, reason) = decision.await.expect("no decision event");
            assert_eq!((status, release), (want_status, want_release), "{version}: {reason}");
        }
        server.shutdown().await;
    }

    /// Progress is told by time, not per step written: a download that takes milliseconds
    /// reports it once, at its end (per 32 KB it was 64 events for 2 MB, each a wake-up for
    /// whoever listens).
    #[tokio::test]
    async fn a_fast_download_reports_its_progress_by_time_not_per_step() {
        const LEN: usize = 2 << 20;
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = serve_one_release(dir.path(), LEN).await;
        let mut events = server.subscribe();
        let started = Instant::now();
        device_request(&server, "18:FE:34:00:00:02", "1.0").await;
        let took = started.elapsed();
        let progress = tokio::time::timeout(Duration::from_secs(10), async {
            let mut progress = Vec::new();
            loop {
                match events.recv().await {
                    Ok(ServerEvent::DownloadProgress { sent, total, .. }) => progress.push((sent, total)),
                    Ok(ServerEvent::DownloadFinished { .. }) => return progress,
                    _ => {}
                }
            }
        });
        let progress = progress.await.expect("the download did not finish");
        assert_eq!(progress.last(), Some(&(LEN as u64, LEN as u64)), "the last progress is the end");
        let allowed = 1 + (took.as_millis() / write::PROGRESS_EVERY.as_millis()) as usize;
        assert!(progress.len() <= allowed, "{} progress events in {took:?}: {progress:?}", progress.len());
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_limit_and_so_does_the_shutdown() {
        // A peer that reads nothing: a 1-byte duplex fills at once.
        let (ours, _theirs) = tokio::io::duplex(1);
        let mut s = WriteDeadline::new(ours, Duration::from_millis(200));
        let started = Instant::now();
        let e = s.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        // The deadline is already spent: a closing flush does not wait again.
        let again = Instant::now();
        assert!(s.write_all(&[0u8; 64]).await.is_err());
        assert!(again.elapsed() < Duration::from_millis(100));
    }
}
