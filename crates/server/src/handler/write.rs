//! The one writer: any [`Reply`] onto the connection, and what became of it. A release body goes
//! out in steps under the write deadline and the minimum rate, with live progress; a device's
//! whole download then waits for the device to close ([`delivery`]).

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::conn::Conn;
use super::delivery::{Delivery, Lost, delivery};
use super::route::{Body, Reply, Text};
use super::sealed::Link;
use crate::Shared;
use crate::events::ServerEvent;
use crate::http;

/// Bytes sealed per step of a download: four full records (or 128 of 512 bytes), which go out
/// in one `write` (one step per 16 KB record cost a syscall and a wake-up each). Progress is
/// measured after each step reaches the socket, so a device at 20 KB/s still shows it every few
/// seconds; 256 KB steps measured no cheaper (bench/README.md).
pub(super) const CHUNK: usize = 64 * 1024;
/// Progress events at most this often per download (and always at its end): a device on Wi-Fi
/// takes seconds, so the app still sees it move, while a fast client costs no event per step.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A reply once written, with what became of it.
#[derive(Debug)]
pub(super) enum Written {
    /// A short answer (whether the client read it changes nothing).
    Text(Text),
    /// A release, and how far it got.
    Release(Body, Fate),
}

/// How far a release's answer got.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fate {
    /// The head could not be written: the client went away.
    NoHead,
    /// HEAD: the head was written, as asked.
    Head,
    /// Every byte was written, in `millis`; for a device's whole download, whether it read them.
    Sent { millis: u64, delivery: Option<Delivery> },
    /// The body broke off after `sent` bytes.
    Broke { sent: u64, why: String, lost: Lost },
}

/// Writes `reply`. `conn` and `mac` name the download's events.
pub(super) async fn write<S: Link>(
    shared: &Shared,
    stream: &mut S,
    c: &Conn,
    conn: u64,
    mac: &Option<String>,
    reply: Reply,
) -> Written {
    let body = match reply {
        Reply::Text(text) => {
            let _ = http::write_text(stream, text.status, &text.body, &text.headers, false).await;
            return Written::Text(text);
        }
        Reply::Release(body) => body,
    };
    if !body.head_only {
        // The answer's records are sealed here from the release's bytes (see `sealed`): rustls
        // hands its keys over once nothing of its own is left to send.
        let _ = stream.flush().await;
        stream.seal_records();
    }
    if http::write_head(stream, body.status, body.len, &body.headers).await.is_err() {
        return Written::Release(body, Fate::NoHead);
    }
    if body.head_only {
        let _ = stream.flush().await;
        return Written::Release(body, Fate::Head);
    }
    let id = body.release.meta.id;
    shared.emit(ServerEvent::DownloadStarted {
        conn,
        mac: mac.clone(),
        release: id,
        version: body.release.meta.version.clone(),
        total: body.len,
        record_size: c.record_size,
    });
    let fate = match send_body(shared, stream, body.slice(), conn, mac.clone(), id).await {
        // Devices' downloads count once the device has read them (see the module doc of
        // `handler`); other clients decide for themselves.
        Ok(millis) if body.device && body.status == 200 => {
            let delivery = delivery(stream, c.sent.as_ref(), shared.config.idle_timeout).await;
            Fate::Sent { millis, delivery: Some(delivery) }
        }
        Ok(millis) => Fate::Sent { millis, delivery: None },
        Err((sent, why, lost)) => Fate::Broke { sent, why, lost },
    };
    Written::Release(body, fate)
}

/// Writes the body in steps, reporting progress as bytes reach the socket (a client that stops
/// reading fails a write after the idle timeout: `WriteDeadline`). Returns the elapsed
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
    let mut reported = started;
    // One timer for the whole body (its deadline does not move), not one per step.
    let steps = async {
        for chunk in body.chunks(CHUNK) {
            let step = async {
                stream.write_all(chunk).await?;
                stream.flush().await
            };
            match step.await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err((
                        format!("the device stopped reading for {} s", idle.as_secs()),
                        Lost::Stalled,
                    ));
                }
                Err(e) => return Err((format!("connection lost ({})", e.kind()), Lost::Reset)),
            }
            sent += chunk.len() as u64;
            if sent == total || reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                shared.emit(ServerEvent::DownloadProgress { conn, mac: mac.clone(), release, sent, total });
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, steps).await {
        Ok(Ok(())) => {}
        Ok(Err((why, lost))) => return Err((sent, why, lost)),
        Err(_) => {
            return Err((
                sent,
                format!("the device read slower than {rate} bytes/s on average, and its time ran out"),
                Lost::Stalled,
            ));
        }
    }
    Ok(started.elapsed().as_millis() as u64)
}
