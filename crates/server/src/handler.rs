//! One connection, from the first byte to the last: limits, TLS with the right record size, the
//! request, the decision, the answer, the download with live progress, and the inventory.
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
//! download only if it closed cleanly with every byte acknowledged ([`Delivery`]). A sketch whose
//! close does not come counts all the same (its next check-in shows whether it runs it); a
//! filesystem image does not (the device reports nothing about it), and one not taken is
//! offered again, a bounded number of times ([`FsRefusals`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::decision::{self, Answer};
use super::device;
use super::events::ServerEvent;
use super::http::{self, RangeAnswer, ReadError, Request, printable};
use super::{Shared, tls};
use otaforge_protocol::{DEFAULT_CHANNEL, DEMO_CHANNEL};
use otaforge_store::{PayloadKind, RequestRecord, now_unix, validate_channel};

mod auth;
mod delivery;
mod streams;

use auth::authorized;
use delivery::{Delivery, FsRefusals, Lost, SendQueue, delivery};
use streams::{Replay, WriteDeadline};

/// Bytes written per step of a download (progress is measured after each step reaches the socket).
const CHUNK: usize = 16 * 1024;
/// Progress events at most every this many bytes.
const PROGRESS_EVERY: u64 = 32 * 1024;

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

/// One connection's facts, from its accept on.
struct Conn {
    remote: SocketAddr,
    /// When it was accepted (the header timeout runs from here).
    started: Instant,
    /// The TLS record limit in force (None: full size, or plain HTTP).
    record_size: Option<usize>,
    /// How much of what was written the client has not acknowledged yet.
    sent: Option<SendQueue>,
    /// Filesystem images devices did not take (shared by the listener's connections).
    refusals: Arc<FsRefusals>,
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
        Ok(Ok(stream)) => serve_http(shared, stream, conn).await,
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

/// What one request resolved to.
struct Reply {
    status: u16,
    reason: String,
    mac: Option<String>,
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(shared: &Arc<Shared>, mut stream: S, conn: Conn) {
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
    let reply = respond(shared, &mut stream, &req, &conn, id).await;
    shared.emit(ServerEvent::Decision {
        conn: id,
        mac: reply.mac.clone(),
        status: reply.status,
        reason: reply.reason.clone(),
        release: None,
    });
    shared.inventory.log_request(RequestRecord {
        at: now_unix(),
        mac: reply.mac,
        remote: remote.ip().to_string(),
        method: printable(&req.method).into_owned(),
        path: printable(&req.path).into_owned(),
        status: reply.status,
        reason: reply.reason,
        headers: req.headers_text(),
    });
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

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    stream: &mut S,
    req: &Request,
    c: &Conn,
    conn: u64,
) -> Reply {
    let (remote, record_size) = (c.remote, c.record_size);
    let head_only = req.method == "HEAD";
    let device = device::parse(req);
    let mac = device.as_ref().ok().and_then(|d| d.as_ref().map(|d| d.sta_mac.clone()));
    shared.emit(ServerEvent::RequestReceived {
        conn,
        remote,
        method: printable(&req.method).into_owned(),
        path: printable(&req.path).into_owned(),
        mac: mac.clone(),
        version: device.as_ref().ok().and_then(|d| d.as_ref().and_then(|d| d.version.clone())),
    });
    let reply = |status: u16, reason: String| Reply { status, reason, mac: mac.clone() };

    if req.method != "GET" && req.method != "HEAD" {
        let _ = http::write_text(stream, 405, "only GET and HEAD\n", &[("Allow", "GET, HEAD".into())], false)
            .await;
        return reply(405, format!("method {} not allowed", req.method));
    }
    let Some(channel_name) = channel_of(&shared.config.path, &req.path) else {
        let _ = http::write_text(stream, 404, "not an update path\n", &[], head_only).await;
        return reply(404, format!("{} is not an update path", short(&req.path)));
    };
    let device = match device {
        Ok(d) => d,
        Err(why) => {
            let _ = http::write_text(stream, 400, &format!("{why}\n"), &[], head_only).await;
            return reply(400, why);
        }
    };
    let catalog = shared.catalog();
    if !catalog.allowed.is_empty() && !mac.as_ref().is_some_and(|m| catalog.allowed.contains(m)) {
        let _ = http::write_text(stream, 403, "this device is not on the allow-list\n", &[], head_only).await;
        return reply(403, "not on the MAC allow-list".into());
    }
    let channel = catalog.channels.get(&channel_name);
    // The default and the demo channel always exist ("nothing published yet"); others once made.
    if channel.is_none() && channel_name != DEFAULT_CHANNEL && channel_name != DEMO_CHANNEL {
        let _ = http::write_text(stream, 404, "no such channel\n", &[], head_only).await;
        return reply(404, format!("no channel \"{channel_name}\""));
    }
    if let Some(auth) = channel.and_then(|c| c.meta.auth.as_ref())
        && !authorized(shared, req.header("Authorization"), auth).await
    {
        let headers = [("WWW-Authenticate", "Basic realm=\"OTA Forge\"".to_string())];
        let _ = http::write_text(stream, 401, "credentials required\n", &headers, head_only).await;
        return reply(401, "missing or wrong credentials".into());
    }

    // Arduino updaters: the full decision. Other clients (ESP-IDF esp_https_ota, curl): the
    // channel's current release, with HEAD and Range; the client decides.
    let (release, is_device) = match &device {
        Some(dev) => {
            let checked_in = shared.inventory.try_check_in(
                dev,
                device::name_from_query(req.query.as_deref()).as_deref(),
                &channel_name,
                &remote.ip().to_string(),
                &catalog,
            );
            let known = match checked_in {
                Ok(known) => known,
                // Too many new devices (a cap or one address's rate): "no update", which the
                // cores' updaters take calmly and check again at their usual interval.
                Err((why, _)) => {
                    let why = why.to_string();
                    let headers = [("X-OTA-Forge-Reason", header_safe(&why))];
                    let _ = http::write_text(stream, 304, "", &headers, true).await;
                    return reply(304, why);
                }
            };
            let decision = c.refusals.guard(dev, decision::decide(dev, channel, &catalog, Some(&known)));
            shared.inventory.record_decision(&dev.sta_mac, &decision);
            match decision.answer {
                Answer::Serve(r) => (r, true),
                Answer::VersionInfo(r) => {
                    let headers = [("x-version", r.meta.version.clone()), ("x-MD5", r.meta.md5.clone())];
                    let _ = http::write_head(stream, 200, 0, &headers).await;
                    return reply(200, decision.reason);
                }
                Answer::NoUpdate(_) => {
                    let headers = [("X-OTA-Forge-Reason", header_safe(&decision.reason))];
                    let _ = http::write_text(stream, 304, "", &headers, true).await;
                    return reply(304, decision.reason);
                }
            }
        }
        None => match channel.and_then(|c| c.sketch.clone()) {
            Some(r) => (r, false),
            None => {
                let _ = http::write_text(stream, 404, "nothing published on this channel\n", &[], head_only)
                    .await;
                return reply(404, "nothing published on this channel".into());
            }
        },
    };
    let Some(bytes) = release.bytes.clone() else {
        let _ = http::write_text(stream, 503, "release file unavailable\n", &[], head_only).await;
        return reply(503, "release file not loaded".into());
    };
    let total = bytes.len() as u64;
    let mut headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        (
            "Content-Disposition",
            format!("attachment; filename=\"firmware-{}.bin\"", header_safe(&release.meta.version)),
        ),
        ("x-MD5", release.meta.md5.clone()),
        ("x-version", header_safe(&release.meta.version)),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    let (status, start, end) = match http::resolve_range(req.header("Range"), total) {
        RangeAnswer::Full => (200, 0, total.saturating_sub(1)),
        RangeAnswer::Partial { start, end } => {
            headers.push(("Content-Range", format!("bytes {start}-{end}/{total}")));
            (206, start, end)
        }
        RangeAnswer::Unsatisfiable => {
            let h = [("Content-Range", format!("bytes */{total}"))];
            let _ = http::write_text(stream, 416, "range not satisfiable\n", &h, head_only).await;
            return reply(416, "range not satisfiable".into());
        }
    };
    let len = if total == 0 { 0 } else { end - start + 1 };
    if http::write_head(stream, status, len, &headers).await.is_err() {
        return reply(status, "client went away before the body".into());
    }
    if head_only {
        let _ = stream.flush().await;
        return reply(status, format!("headers of {}", release.meta.version));
    }
    let id = release.meta.id;
    shared.emit(ServerEvent::DownloadStarted {
        conn,
        mac: mac.clone(),
        release: id,
        version: release.meta.version.clone(),
        total: len,
        record_size,
    });
    let body = &bytes[start as usize..(start + len) as usize];
    let kind = release.meta.kind;
    let what = if kind == PayloadKind::Filesystem { "filesystem image" } else { "release" };
    let version = &release.meta.version;
    let sent = send_body(shared, stream, body, conn, mac.clone(), id).await;
    // Devices' downloads count once the device has read them (see the module doc); other
    // clients decide for themselves.
    let outcome = match (sent, is_device && status == 200) {
        (Ok(millis), true) => match delivery(stream, c.sent.as_ref(), shared.config.idle_timeout).await {
            Delivery::Read => Ok((millis, "")),
            Delivery::Unconfirmed if kind == PayloadKind::Sketch => {
                Ok((millis, "; the device did not close the connection, so its next check-in tells"))
            }
            Delivery::Unconfirmed => Err((
                len,
                format!(
                    "the device took every byte but did not close the connection within {} s, so it may not \
                     have read them: not counted as delivered",
                    shared.config.idle_timeout.as_secs()
                ),
                Lost::Refused,
            )),
            Delivery::Refused { unread } => {
                let unread = unread.min(len);
                Err((
                    len - unread,
                    format!("the device closed the connection without reading about {unread} bytes of it"),
                    Lost::Refused,
                ))
            }
            Delivery::Stalled { unread } => Err((
                len - unread.min(len),
                format!("the device stopped reading for {} s", shared.config.idle_timeout.as_secs()),
                Lost::Stalled,
            )),
        },
        (Ok(millis), false) => Ok((millis, "")),
        (Err((sent, why, lost)), _) => Err((sent, why, lost)),
    };
    match outcome {
        Ok((millis, note)) => {
            shared.emit(ServerEvent::DownloadFinished {
                conn,
                mac: mac.clone(),
                release: id,
                bytes: len,
                millis,
            });
            if let (true, Some(m), 200) = (is_device, &mac, status) {
                shared.inventory.download_finished(m, id, kind, None);
                if kind == PayloadKind::Filesystem {
                    c.refusals.forget(m, id);
                }
            }
            reply(status, format!("sent {what} {version} ({len} bytes){note}"))
        }
        Err((sent, why, lost)) => {
            shared.emit(ServerEvent::DownloadAborted {
                conn,
                mac: mac.clone(),
                release: id,
                sent,
                total: len,
                why: why.clone(),
            });
            if let (true, Some(m)) = (is_device, &mac) {
                match lost {
                    // Every byte was written and the device did not take them: an attempt (the
                    // loop guard counts it), not a download.
                    Lost::Refused => {
                        shared.inventory.download_finished(m, id, kind, Some(&why));
                        if kind == PayloadKind::Filesystem {
                            c.refusals.add(m, id);
                        }
                    }
                    // The connection was reset mid-body: a device that does not take a large
                    // image closes right after the head, and so a filesystem image counts too.
                    Lost::Reset => {
                        if kind == PayloadKind::Filesystem {
                            c.refusals.add(m, id);
                        }
                        shared.inventory.download_aborted(m, &why);
                    }
                    Lost::Stalled => shared.inventory.download_aborted(m, &why),
                }
            }
            let how = if lost == Lost::Refused { "not taken" } else { "broke off" };
            reply(status, format!("download of {what} {version} {how} after {sent} of {len} bytes: {why}"))
        }
    }
}

/// Writes the body in steps, reporting progress as bytes reach the socket (a client that stops
/// reading fails a write after the idle timeout: [`WriteDeadline`]). Returns the elapsed
/// milliseconds, or how far it got, why it stopped and how.
async fn send_body<S: AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    body: &[u8],
    conn: u64,
    mac: Option<String>,
    release: i64,
) -> Result<u64, (u64, String, Lost)> {
    let started = Instant::now();
    let idle = shared.config.idle_timeout;
    let total = body.len() as u64;
    let rate = shared.config.min_download_rate.max(1);
    let deadline = tokio::time::Instant::now() + idle + Duration::from_secs_f64(total as f64 / rate as f64);
    let mut sent = 0u64;
    let mut reported = 0u64;
    for chunk in body.chunks(CHUNK) {
        let step = async {
            stream.write_all(chunk).await?;
            stream.flush().await
        };
        let Ok(step) = tokio::time::timeout_at(deadline, step).await else {
            return Err((
                sent,
                format!("the device read slower than {rate} bytes/s on average, and its time ran out"),
                Lost::Stalled,
            ));
        };
        match step {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err((
                    sent,
                    format!("the device stopped reading for {} s", idle.as_secs()),
                    Lost::Stalled,
                ));
            }
            Err(e) => return Err((sent, format!("connection lost ({})", e.kind()), Lost::Reset)),
        }
        sent += chunk.len() as u64;
        if sent - reported >= PROGRESS_EVERY || sent == total {
            reported = sent;
            shared.emit(ServerEvent::DownloadProgress { conn, mac: mac.clone(), release, sent, total });
        }
    }
    Ok(started.elapsed().as_millis() as u64)
}

/// The channel a path selects: the update path itself is the default channel, `<path>/<name>` a
/// named one. Names that are not valid channel names (`..`, `%2e`, slashes) select nothing.
fn channel_of(base: &str, path: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    let rest = path.strip_prefix(base)?;
    match rest {
        "" | "/" => Some(DEFAULT_CHANNEL.to_string()),
        _ => {
            let name = rest.strip_prefix('/')?.trim_end_matches('/');
            validate_channel(name).ok().map(|_| name.to_string())
        }
    }
}

/// Header values must not carry line breaks or non-ASCII.
fn header_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(200).collect()
}

/// What a client sent, as it may be echoed or recorded: cut short, hidden characters escaped.
fn short(s: &str) -> String {
    let s =
        if s.chars().count() > 60 { s.chars().take(57).collect::<String>() + "…" } else { s.to_string() };
    printable(&s).into_owned()
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::auth::basic_credentials;
    use super::*;

    #[test]
    fn paths_select_channels_and_nothing_else() {
        assert_eq!(channel_of("/update", "/update").as_deref(), Some("stable"));
        assert_eq!(channel_of("/update", "/update/").as_deref(), Some("stable"));
        assert_eq!(channel_of("/update", "/update/beta").as_deref(), Some("beta"));
        assert_eq!(channel_of("/update", "/update/../etc/passwd"), None);
        assert_eq!(channel_of("/update", "/update/%2e%2e"), None);
        assert_eq!(channel_of("/update", "/updates"), None);
        assert_eq!(channel_of("/update", "/"), None);
    }

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
