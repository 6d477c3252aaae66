//! One connection, from the first byte to the last: limits, TLS with the right record size, the
//! request, the decision, the answer, the download with live progress, and the inventory.
//!
//! Every state has a deadline: the handshake and the request head the header timeout, every write
//! (the answer, the body, the closing TLS flush and shutdown) the idle timeout ([`WriteDeadline`]),
//! the lingering close two seconds.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::decision::{self, Answer};
use super::device;
use super::events::ServerEvent;
use super::http::{self, RangeAnswer, ReadError, Request};
use super::{Shared, tls};
use crate::publish::{DEFAULT_CHANNEL, DEMO_CHANNEL};
use crate::store::{ChannelAuth, PayloadKind, RequestRecord, now_unix, validate_channel};

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
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            if tls {
                serve_tls(&shared, tcp, remote).await;
            } else {
                let tcp = WriteDeadline::new(tcp, shared.config.idle_timeout);
                serve_http(&shared, tcp, remote, None).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tls(shared: &Arc<Shared>, tcp: TcpStream, remote: SocketAddr) {
    let deadline = Instant::now() + shared.config.header_timeout;
    let hello = match peek_client_hello(&tcp, deadline).await {
        Ok(h) => h,
        Err(why) => {
            shared.emit(ServerEvent::ConnectionRefused { remote, why });
            return;
        }
    };
    let (config, record_size) = shared.tls.for_client_hello(&hello);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let left = deadline.saturating_duration_since(Instant::now());
    // Under TLS, so that what rustls writes (the close_notify too) has the deadline as well.
    let tcp = WriteDeadline::new(tcp, shared.config.idle_timeout);
    match tokio::time::timeout(left, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http(shared, stream, remote, record_size).await,
        Ok(Err(e)) => {
            shared.emit(ServerEvent::ConnectionRefused { remote, why: format!("TLS handshake failed: {e}") })
        }
        Err(_) => {
            shared.emit(ServerEvent::ConnectionRefused { remote, why: "TLS handshake timed out".into() })
        }
    }
}

/// Peeks (without consuming) until the first TLS record is complete, so its ClientHello can be
/// read before rustls takes the stream.
async fn peek_client_hello(tcp: &TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 16 * 1024 + 5];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, tcp.peek(&mut buf)).await {
            Ok(Ok(0)) => return Err("closed before the TLS handshake".into()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(format!("connection error: {e}")),
            Err(_) => return Err("no TLS ClientHello in time".into()),
        };
        match tls::record_len(&buf[..n]) {
            None => return Err("not TLS (plain HTTP sent to the HTTPS port?)".into()),
            Some(need) if n >= need || n == buf.len() => {
                buf.truncate(n);
                return Ok(buf);
            }
            Some(_) => {
                // More of the record is on its way; peek returns at once while data is queued.
                if Instant::now() >= deadline {
                    return Err("incomplete ClientHello".into());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
}

/// What one request resolved to.
struct Reply {
    status: u16,
    reason: String,
    mac: Option<String>,
}

async fn serve_http<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    mut stream: S,
    remote: SocketAddr,
    record_size: Option<usize>,
) {
    let cfg = &shared.config;
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let req = match http::read_request(&mut stream, cfg.max_header_bytes, cfg.header_timeout).await {
        Ok(r) => r,
        Err(e) => {
            let status = match e {
                ReadError::TooLarge(_) => 431,
                ReadError::Malformed(_) => 400,
                ReadError::Timeout(_) => 408,
                ReadError::Closed => return,
            };
            let _ = http::write_text(&mut stream, status, &format!("{e}\n"), &[], false).await;
            shared.emit(ServerEvent::ConnectionRefused { remote, why: e.to_string() });
            linger(&mut stream).await;
            return;
        }
    };
    let reply = respond(shared, &mut stream, &req, remote, conn, record_size).await;
    shared.emit(ServerEvent::Decision {
        conn,
        mac: reply.mac.clone(),
        status: reply.status,
        reason: reply.reason.clone(),
        release: None,
    });
    shared.inventory.log_request(RequestRecord {
        at: now_unix(),
        mac: reply.mac,
        remote: remote.ip().to_string(),
        method: req.method.clone(),
        path: req.path.clone(),
        status: reply.status,
        reason: reply.reason,
        headers: req.headers_text(),
    });
    let _ = stream.shutdown().await;
}

/// Reads and drops what the client is still sending (briefly) before closing, so it gets to read
/// our error answer instead of a connection reset (the "lingering close" web servers do).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    use tokio::io::AsyncReadExt;
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

async fn respond<S: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    stream: &mut S,
    req: &Request,
    remote: SocketAddr,
    conn: u64,
    record_size: Option<usize>,
) -> Reply {
    let head_only = req.method == "HEAD";
    let device = device::parse(req);
    let mac = device.as_ref().ok().and_then(|d| d.as_ref().map(|d| d.sta_mac.clone()));
    shared.emit(ServerEvent::RequestReceived {
        conn,
        remote,
        method: req.method.clone(),
        path: req.path.clone(),
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
            let known = shared.inventory.check_in(
                dev,
                device::name_from_query(req.query.as_deref()).as_deref(),
                &channel_name,
                &remote.ip().to_string(),
                &catalog,
            );
            let decision = decision::decide(dev, channel, &catalog, Some(&known));
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
    match send_body(shared, stream, body, conn, mac.clone(), id).await {
        Ok(millis) => {
            shared.emit(ServerEvent::DownloadFinished {
                conn,
                mac: mac.clone(),
                release: id,
                bytes: len,
                millis,
            });
            if let (true, Some(m), 200) = (is_device, &mac, status) {
                shared.inventory.download_finished(m, id, release.meta.kind);
            }
            let what =
                if release.meta.kind == PayloadKind::Filesystem { "filesystem image" } else { "release" };
            reply(status, format!("sent {what} {} ({len} bytes)", release.meta.version))
        }
        Err((sent, why)) => {
            shared.emit(ServerEvent::DownloadAborted {
                conn,
                mac: mac.clone(),
                release: id,
                sent,
                total: len,
                why: why.clone(),
            });
            if let (true, Some(m)) = (is_device, &mac) {
                shared.inventory.download_aborted(m, &why);
            }
            reply(
                status,
                format!("download of {} broke off after {sent} of {len} bytes: {why}", release.meta.version),
            )
        }
    }
}

/// Writes the body in steps, reporting progress as bytes reach the socket (a client that stops
/// reading fails a write after the idle timeout: [`WriteDeadline`]). Returns the elapsed
/// milliseconds, or how far it got and why it stopped.
async fn send_body<S: AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    body: &[u8],
    conn: u64,
    mac: Option<String>,
    release: i64,
) -> Result<u64, (u64, String)> {
    let started = Instant::now();
    let idle = shared.config.idle_timeout;
    let total = body.len() as u64;
    let mut sent = 0u64;
    let mut reported = 0u64;
    for chunk in body.chunks(CHUNK) {
        let step = async {
            stream.write_all(chunk).await?;
            stream.flush().await
        };
        match step.await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err((sent, format!("the device stopped reading for {} s", idle.as_secs())));
            }
            Err(e) => return Err((sent, format!("connection lost ({})", e.kind()))),
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

/// The user and password of an HTTP Basic `Authorization` header (RFC 7617: the scheme name is
/// case-insensitive).
fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let (user, pass) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.into(), p.into()))?;
    Some((user, pass))
}

/// Checks a request's credentials against the channel's hash. Argon2 costs tens of milliseconds
/// and ~19 MiB, so it runs off the async threads, a few at a time; credentials that verified are
/// remembered (by a digest that includes the stored hash) so polling devices do not pay it each time.
async fn authorized(shared: &Shared, header: Option<&str>, auth: &ChannelAuth) -> bool {
    let Some((user, pass)) = basic_credentials(header) else { return false };
    if pass.is_empty() {
        return false;
    }
    let key: [u8; 32] = Sha256::new()
        .chain_update(auth.password_hash.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .chain_update([0])
        .chain_update(pass.as_bytes())
        .finalize()
        .into();
    if shared.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
        return true;
    }
    let Ok(Ok(_permit)) = tokio::time::timeout(shared.config.header_timeout, shared.hashing.acquire()).await
    else {
        return false;
    };
    let auth = auth.clone();
    let ok = tokio::task::spawn_blocking(move || auth.verify(&user, &pass)).await.unwrap_or(false);
    if ok {
        let mut verified = shared.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= 4096 {
            verified.clear();
        }
        verified.insert(key);
    }
    ok
}

/// A socket whose writes fail (`TimedOut`) once the peer has taken no byte for `limit`, so a client
/// that stops reading cannot hold its connection slot in any state: the answer, the body, the
/// closing TLS flush and shutdown. The clock runs from when writing first blocked, not from each
/// call, so a download that timed out does not wait a second time in shutdown. Reads pass through
/// (each read has its own deadline where it is made).
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// When writes started to block (None while they go through).
    blocked_since: Option<Instant>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, blocked_since: None, timer: Box::pin(tokio::time::sleep(limit)) }
    }

    /// Passes a write's outcome on; a pending one turns into an error once the deadline passed.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        progress: bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                if progress && r.is_ok() {
                    self.blocked_since = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let since = match self.blocked_since {
                    Some(t) => t,
                    None => {
                        let now = Instant::now();
                        self.blocked_since = Some(now);
                        self.timer.as_mut().reset((now + self.limit).into());
                        now
                    }
                };
                if since.elapsed() >= self.limit || self.timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        let progress = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.check(cx, polled, progress)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let progress = matches!(polled, Poll::Ready(Ok(n)) if n > 0);
        self.check(cx, polled, progress)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled, false)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled, false)
    }
}

/// Header values must not carry line breaks or non-ASCII.
fn header_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).take(200).collect()
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 { s.chars().take(57).collect::<String>() + "…" } else { s.to_string() }
}

#[cfg(test)]
mod tests {
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
