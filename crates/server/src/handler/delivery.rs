//! Whether a download reached the device: after the last byte the server waits for the device to
//! close, and counts the download only if it closed cleanly with every byte acknowledged; images
//! a device did not take are offered again a bounded number of times.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a download that did not reach the device ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lost {
    /// Every byte was written; the device closed without reading them (or never closed).
    Refused,
    /// The connection failed mid-body (reset, closed).
    Reset,
    /// The device stopped reading for the idle timeout.
    Stalled,
}

/// What became of a download once its last byte was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// The device closed the connection (FIN or TLS close_notify) once it had every byte.
    Read,
    /// The device had every byte but did not close within the idle timeout.
    Unconfirmed,
    /// The device closed or reset the connection with about `unread` bytes not taken.
    Refused { unread: u64 },
    /// The device took nothing for the idle timeout, with about `unread` bytes not taken.
    Stalled { unread: u64 },
}

/// How often the send queue is looked at while bytes are still on their way to the device.
pub(super) const QUEUE_POLL: Duration = Duration::from_millis(200);

/// How long a device that has every byte gets to close before the server closes its side (for
/// clients that read until the server closes). Not sooner: a device that sees the server's
/// close_notify before its own `http.end()` skips `stop()` (`connected()` is false) and may then
/// not close for a long time.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Waits for the device to close after the last byte was written, and says whether it had
/// taken every byte by then. A device that still reads (its unacknowledged bytes go down) is
/// waited for; one that takes nothing for `idle` is not. Without a send queue (not Linux), a
/// clean close counts as read.
pub(super) async fn delivery<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    queue: Option<&SendQueue>,
    idle: Duration,
) -> Delivery {
    let unread_now = || queue.and_then(SendQueue::unacknowledged);
    let mut unread = unread_now();
    let mut progress = Instant::now();
    // When every byte was acknowledged, and whether the server has closed its side since.
    let mut all_taken = unread.is_none_or(|n| n == 0).then(Instant::now);
    let mut closed_ours = false;
    let mut scratch = [0u8; 2048];
    let mut extra = 0usize;
    loop {
        let left = idle.saturating_sub(progress.elapsed());
        let wait = match all_taken {
            None => QUEUE_POLL.min(left),
            Some(t) if !closed_ours => CLOSE_GRACE.saturating_sub(t.elapsed()).min(left),
            Some(_) => left,
        };
        match tokio::time::timeout(wait, stream.read(&mut scratch)).await {
            // A clean close: TLS close_notify, or (as the Arduino cores close) a FIN without it.
            // Once every byte was acknowledged, what is left unacknowledged is our own close.
            Ok(Ok(0)) => return if all_taken.is_some() { Delivery::Read } else { closed(unread_now()) },
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return if all_taken.is_some() { Delivery::Read } else { closed(unread_now()) };
            }
            // A reset: the device closed with bytes it had not read.
            Ok(Err(_)) => return Delivery::Refused { unread: unread_now().or(unread).unwrap_or(0) },
            // More than its one request: not a device's behaviour; bounded all the same.
            Ok(Ok(n)) => {
                extra += n;
                if extra > 64 * 1024 {
                    return Delivery::Unconfirmed;
                }
            }
            Err(_) => {
                let now = unread_now();
                if now != unread {
                    unread = now;
                    progress = Instant::now();
                }
                if all_taken.is_none() && unread.is_none_or(|n| n == 0) {
                    all_taken = Some(Instant::now());
                }
                if !closed_ours && all_taken.is_some_and(|t| t.elapsed() >= CLOSE_GRACE) {
                    let _ = stream.shutdown().await;
                    closed_ours = true;
                }
                if progress.elapsed() >= idle {
                    return match unread {
                        Some(n) if n > 0 => Delivery::Stalled { unread: n },
                        _ => Delivery::Unconfirmed,
                    };
                }
            }
        }
    }
}

pub(super) fn closed(unread: Option<u64>) -> Delivery {
    match unread {
        Some(n) if n > 0 => Delivery::Refused { unread: n },
        _ => Delivery::Read,
    }
}

/// A socket's count of sent bytes its peer has not acknowledged (Linux `SIOCOUTQ`).
#[derive(Debug, Clone, Copy)]
pub(super) struct SendQueue {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

#[cfg(target_os = "linux")]
nix::ioctl_read_bad!(siocoutq, nix::libc::TIOCOUTQ, nix::libc::c_int);

impl SendQueue {
    /// The queue of `tcp`; only used while `tcp` (or what wraps it) is open, on its own task.
    pub(super) fn of(tcp: &TcpStream) -> Option<SendQueue> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            Some(SendQueue { fd: tcp.as_raw_fd() })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = tcp;
            None
        }
    }

    pub(super) fn unacknowledged(&self) -> Option<u64> {
        #[cfg(target_os = "linux")]
        {
            let mut n: nix::libc::c_int = 0;
            // SAFETY: `fd` is the connection's socket, open for as long as the connection is
            // served (see `of`); SIOCOUTQ writes one int.
            unsafe { siocoutq(self.fd, &mut n) }.ok().map(|_| n.max(0) as u64)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }
}

/// Filesystem images devices did not take, by MAC and release. Such an image is offered again
/// at the device's next check, at most [`crate::decision::MAX_ATTEMPTS`] times (a device whose
/// filesystem is too small for it would otherwise be sent it at every check). Kept in memory
/// per listener: a restart, or a new image, offers it again.
#[derive(Default)]
pub(super) struct FsRefusals(Mutex<HashMap<(String, i64), u32>>);

impl FsRefusals {
    pub(super) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i64), u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn add(&self, mac: &str, release: i64) {
        let mut map = self.map();
        if map.len() >= 100_000 {
            map.clear();
        }
        *map.entry((mac.to_string(), release)).or_default() += 1;
    }

    pub(super) fn forget(&self, mac: &str, release: i64) {
        self.map().remove(&(mac.to_string(), release));
    }

    /// How often `mac` did not take filesystem image `release` (see `route`).
    pub(super) fn times(&self, mac: &str, release: i64) -> u32 {
        self.map().get(&(mac.to_string(), release)).copied().unwrap_or(0)
    }
}
