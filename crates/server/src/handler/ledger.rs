//! What a request leaves behind, in one place: the device's decision in the inventory, and once
//! the reply is written, how its download ended (events, the inventory, the filesystem images
//! not taken), the decision event and the request history.
//!
//! The decision is recorded before anything is written, not after: a device that restarts into
//! its download checks in again before this connection's close is seen, and that check-in must
//! find it downloading that release (see `Inventory::try_check_in`).

use std::time::Duration;

use super::conn::Conn;
use super::delivery::{Delivery, Lost};
use super::write::{Fate, Written};
use crate::Shared;
use crate::decision::Decision;
use crate::events::ServerEvent;
use crate::http::{Request, printable};
use otaforge_store::{PayloadKind, RequestRecord, now_unix};

/// Records the answer a device got (`mac` is the device's when there is a decision).
pub(super) fn decided(shared: &Shared, mac: Option<&str>, decision: Option<&Decision>) {
    if let (Some(mac), Some(decision)) = (mac, decision) {
        shared.inventory.record_decision(mac, decision);
    }
}

/// What a written reply comes to.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Account {
    pub status: u16,
    /// Why, in words, with how a download ended.
    pub reason: String,
    /// The release the reply carried, if it carried one.
    pub release: Option<i64>,
    /// How a body that went out ended.
    pub end: Option<End>,
}

/// How a download ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    Finished { millis: u64 },
    Aborted { sent: u64, why: String, lost: Lost },
}

impl Account {
    /// The event that says how the request was answered.
    pub fn event(&self, conn: u64, mac: Option<String>) -> ServerEvent {
        ServerEvent::Decision {
            conn,
            mac,
            status: self.status,
            reason: self.reason.clone(),
            release: self.release,
        }
    }
}

/// Tells what `written` comes to; `idle` is the idle timeout (named in the words).
pub(super) fn account(written: &Written, idle: Duration) -> Account {
    let (body, fate) = match written {
        Written::Text(t) => {
            return Account { status: t.status, reason: t.reason.clone(), release: None, end: None };
        }
        Written::Release(body, fate) => (body, fate),
    };
    let meta = &body.release.meta;
    let (status, len, version) = (body.status, body.len, &meta.version);
    let what = if meta.kind == PayloadKind::Filesystem { "filesystem image" } else { "release" };
    let account = |reason, end| Account { status, reason, release: Some(meta.id), end };
    let ended = match fate {
        Fate::NoHead => return account("client went away before the body".into(), None),
        Fate::Head => return account(format!("headers of {version}"), None),
        Fate::Sent { millis, delivery } => delivered(*millis, *delivery, meta.kind, len, idle),
        Fate::Broke { sent, why, lost } => Err((*sent, why.clone(), *lost)),
    };
    match ended {
        Ok((millis, note)) => {
            account(format!("sent {what} {version} ({len} bytes){note}"), Some(End::Finished { millis }))
        }
        Err((sent, why, lost)) => {
            let how = if lost == Lost::Refused { "not taken" } else { "broke off" };
            let reason = format!("download of {what} {version} {how} after {sent} of {len} bytes: {why}");
            account(reason, Some(End::Aborted { sent, why, lost }))
        }
    }
}

/// Whether a body written to the end reached the device: the elapsed milliseconds and a note,
/// or how much it took, why not, and how.
fn delivered(
    millis: u64,
    delivery: Option<Delivery>,
    kind: PayloadKind,
    len: u64,
    idle: Duration,
) -> Result<(u64, &'static str), (u64, String, Lost)> {
    match delivery {
        None | Some(Delivery::Read) => Ok((millis, "")),
        Some(Delivery::Unconfirmed) if kind == PayloadKind::Sketch => {
            Ok((millis, "; the device did not close the connection, so its next check-in tells"))
        }
        Some(Delivery::Unconfirmed) => Err((
            len,
            format!(
                "the device took every byte but did not close the connection within {} s, so it may not \
                 have read them: not counted as delivered",
                idle.as_secs()
            ),
            Lost::Refused,
        )),
        Some(Delivery::Refused { unread }) => {
            let unread = unread.min(len);
            Err((
                len - unread,
                format!("the device closed the connection without reading about {unread} bytes of it"),
                Lost::Refused,
            ))
        }
        Some(Delivery::Stalled { unread }) => Err((
            len - unread.min(len),
            format!("the device stopped reading for {} s", idle.as_secs()),
            Lost::Stalled,
        )),
    }
}

/// Everything after the write: the download's end (event, then inventory), the decision event,
/// the request history.
pub(super) fn settle(
    shared: &Shared,
    c: &Conn,
    conn: u64,
    req: &Request,
    mac: Option<String>,
    written: Written,
) {
    let account = account(&written, shared.config.idle_timeout);
    if let Written::Release(body, _) = &written {
        let (id, kind, len) = (body.release.meta.id, body.release.meta.kind, body.len);
        let device = if body.device { mac.as_deref() } else { None };
        match &account.end {
            Some(End::Finished { millis }) => {
                let millis = *millis;
                shared.emit(ServerEvent::DownloadFinished {
                    conn,
                    mac: mac.clone(),
                    release: id,
                    bytes: len,
                    millis,
                });
                if let (Some(m), 200) = (device, body.status) {
                    shared.inventory.download_finished(m, id, kind, None);
                    if kind == PayloadKind::Filesystem {
                        c.refusals.forget(m, id);
                    }
                }
            }
            Some(End::Aborted { sent, why, lost }) => {
                let (sent, total) = (*sent, len);
                shared.emit(ServerEvent::DownloadAborted {
                    conn,
                    mac: mac.clone(),
                    release: id,
                    sent,
                    total,
                    why: why.clone(),
                });
                if let Some(m) = device {
                    aborted(shared, c, m, id, kind, why, *lost);
                }
            }
            None => {}
        }
    }
    let decision = account.event(conn, mac.clone());
    shared.inventory.log_request(RequestRecord {
        at: now_unix(),
        mac,
        remote: c.remote.ip().to_string(),
        method: printable(&req.method).into_owned(),
        path: printable(&req.path).into_owned(),
        status: account.status,
        reason: account.reason,
        headers: req.headers_text(),
    });
    // Last, once the request is queued for the history: whoever sees the Decision and then
    // flushes the inventory finds the request stored.
    shared.emit(decision);
}

/// A device's download that did not reach it, in the inventory and the refusals.
fn aborted(shared: &Shared, c: &Conn, mac: &str, id: i64, kind: PayloadKind, why: &str, lost: Lost) {
    match lost {
        // Every byte was written and the device did not take them: an attempt (the loop guard
        // counts it), not a download.
        Lost::Refused => {
            shared.inventory.download_finished(mac, id, kind, Some(why));
            if kind == PayloadKind::Filesystem {
                c.refusals.add(mac, id);
            }
        }
        // The connection was reset mid-body: a device that does not take a large image closes
        // right after the head, and so a filesystem image counts too.
        Lost::Reset => {
            if kind == PayloadKind::Filesystem {
                c.refusals.add(mac, id);
            }
            shared.inventory.download_aborted(mac, why);
        }
        Lost::Stalled => shared.inventory.download_aborted(mac, why),
    }
}
