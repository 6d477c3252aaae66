//! Routing as data: from a parsed request, the device it names and the catalog to the reply it
//! gets, in words. Pure, so every answer is tested without a socket (`route/tests.rs`).
//!
//! Two facts cost something, and the request must get that far before either is paid: checking
//! credentials (Argon2: tens of milliseconds) and checking a device in (which records it in the
//! inventory and counts against admission). [`route`] asks for them ([`Step::Need`]) when it
//! reaches them; the caller finds them out and routes again with them in [`Facts`].

use std::sync::Arc;

use crate::catalog::{Catalog, ChannelView, ReleaseView};
use crate::decision::{self, Answer, Decision};
use crate::device::DeviceRequest;
use crate::http::{self, RangeAnswer, Request, printable};
use otaforge_protocol::{DEFAULT_CHANNEL, DEMO_CHANNEL};
use otaforge_store::{ChannelAuth, Device, DeviceState, PayloadKind, validate_channel};

/// What routing has found out so far, beyond the request and the catalog.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// Whether the request's credentials verified (asked for only on a channel that has some).
    pub authorized: Option<bool>,
    /// The device as the inventory knows it after checking it in, or why it was not admitted.
    pub known: Option<Result<Known, String>>,
}

/// What the inventory knows of a device that checked in.
#[derive(Debug)]
pub(super) struct Known {
    /// Its record, refreshed by this check-in.
    pub device: Device,
    /// How often it did not take the channel's current filesystem image (see `FsRefusals`).
    pub fs_refused: u32,
}

/// One step of routing: a reply, or a fact it needs first.
#[derive(Debug)]
pub(super) enum Step<'a> {
    /// Route again once this is in [`Facts`].
    Need(Need<'a>),
    /// Where the request ends.
    Reply(Routed),
}

/// A fact routing needs.
#[derive(Debug)]
pub(super) enum Need<'a> {
    /// Check the request's `Authorization` against this ([`Facts::authorized`]).
    Credentials(&'a ChannelAuth),
    /// Check `dev` in on `channel` ([`Facts::known`]); count its refusals of `fs_image`.
    CheckIn { dev: &'a DeviceRequest, channel: String, fs_image: Option<i64> },
}

/// Where a request ends: the reply, and the decision the inventory records for the device.
#[derive(Debug)]
pub(super) struct Routed {
    pub reply: Reply,
    /// A device's decision (recorded before anything is written: see `ledger`).
    pub decision: Option<Decision>,
}

/// What is written back.
#[derive(Debug)]
pub(super) enum Reply {
    /// A head with at most a short text: errors, 304s, the version-only 200.
    Text(Text),
    /// A release: its head, and for GET its bytes, whole or one range.
    Release(Body),
}

/// A short answer. `body` is what goes out (empty for HEAD and 304).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Text {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// Why, in words (the event log, the request history).
    pub reason: String,
}

/// A release's answer: `len` bytes of `bytes` from `start`.
#[derive(Debug)]
pub(super) struct Body {
    pub release: Arc<ReleaseView>,
    pub bytes: Arc<[u8]>,
    /// 200, or 206 for a range.
    pub status: u16,
    pub start: u64,
    pub len: u64,
    pub headers: Vec<(&'static str, String)>,
    /// HEAD: the head alone.
    pub head_only: bool,
    /// A device's download (the inventory follows it), not another client's.
    pub device: bool,
}

impl Body {
    /// The bytes that go out.
    pub fn slice(&self) -> &[u8] {
        &self.bytes[self.start as usize..(self.start + self.len) as usize]
    }
}

impl Text {
    fn new(
        status: u16,
        text: &str,
        headers: Vec<(&'static str, String)>,
        head_only: bool,
        reason: String,
    ) -> Text {
        // 304 carries no body, HEAD none either.
        let body = if status == 304 || head_only { "" } else { text };
        Text { status, headers, body: body.to_string(), reason }
    }
}

/// Routes one request. `device` is what [`crate::device::parse`] made of its headers, `base` the
/// update path. Call again with the fact a [`Step::Need`] names, until a [`Step::Reply`].
pub(super) fn route<'a>(
    req: &Request,
    device: &'a Result<Option<DeviceRequest>, String>,
    base: &str,
    catalog: &'a Catalog,
    facts: &Facts,
) -> Step<'a> {
    let head_only = req.method == "HEAD";
    let text = |status, body: &str, headers, reason| {
        Step::Reply(Routed {
            reply: Reply::Text(Text::new(status, body, headers, head_only, reason)),
            decision: None,
        })
    };
    if req.method != "GET" && req.method != "HEAD" {
        let allow = vec![("Allow", "GET, HEAD".to_string())];
        return text(405, "only GET and HEAD\n", allow, format!("method {} not allowed", req.method));
    }
    let Some(channel_name) = channel_of(base, &req.path) else {
        return text(
            404,
            "not an update path\n",
            vec![],
            format!("{} is not an update path", short(&req.path)),
        );
    };
    let device = match device {
        Ok(d) => d.as_ref(),
        Err(why) => return text(400, &format!("{why}\n"), vec![], why.clone()),
    };
    let mac = device.map(|d| &d.sta_mac);
    if !catalog.allowed.is_empty() && !mac.is_some_and(|m| catalog.allowed.contains(m)) {
        return text(
            403,
            "this device is not on the allow-list\n",
            vec![],
            "not on the MAC allow-list".into(),
        );
    }
    let channel = catalog.channels.get(&channel_name);
    // The default and the demo channel always exist ("nothing published yet"); others once made.
    if channel.is_none() && channel_name != DEFAULT_CHANNEL && channel_name != DEMO_CHANNEL {
        return text(404, "no such channel\n", vec![], format!("no channel \"{channel_name}\""));
    }
    if let Some(auth) = channel.and_then(|c| c.meta.auth.as_ref()) {
        match facts.authorized {
            None => return Step::Need(Need::Credentials(auth)),
            Some(false) => {
                let challenge = vec![("WWW-Authenticate", "Basic realm=\"OTA Forge\"".to_string())];
                return text(401, "credentials required\n", challenge, "missing or wrong credentials".into());
            }
            Some(true) => {}
        }
    }

    // Arduino updaters: the full decision. Other clients (ESP-IDF esp_https_ota, curl): the
    // channel's current release, with HEAD and Range; the client decides.
    let Some(dev) = device else {
        let Some(release) = channel.and_then(|c| c.sketch.clone()) else {
            let what = "nothing published on this channel";
            return text(404, &format!("{what}\n"), vec![], what.into());
        };
        return Step::Reply(Routed { reply: release_reply(req, release, false), decision: None });
    };
    device_reply(req, dev, channel_name, channel, catalog, facts)
}

/// An Arduino updater's check, past the gate: checked in, then decided.
fn device_reply<'a>(
    req: &Request,
    dev: &'a DeviceRequest,
    channel_name: String,
    channel: Option<&'a ChannelView>,
    catalog: &'a Catalog,
    facts: &Facts,
) -> Step<'a> {
    let known = match &facts.known {
        None => {
            let fs_image = channel.and_then(|c| c.filesystem.as_ref()).map(|r| r.meta.id);
            return Step::Need(Need::CheckIn { dev, channel: channel_name, fs_image });
        }
        Some(Ok(known)) => known,
        // Too many new devices (a cap or one address's rate): "no update", which the cores'
        // updaters take calmly and check again at their usual interval.
        Some(Err(why)) => {
            let headers = vec![("X-OTA-Forge-Reason", header_safe(why))];
            let reply = Reply::Text(Text::new(304, "", headers, true, why.clone()));
            return Step::Reply(Routed { reply, decision: None });
        }
    };
    let decision =
        unless_refused(decision::decide(dev, channel, catalog, Some(&known.device)), known.fs_refused);
    let reply = match &decision.answer {
        Answer::Serve(r) => release_reply(req, r.clone(), true),
        Answer::VersionInfo(r) => {
            let headers = vec![("x-version", r.meta.version.clone()), ("x-MD5", r.meta.md5.clone())];
            Reply::Text(Text::new(200, "", headers, true, decision.reason.clone()))
        }
        Answer::NoUpdate(_) => {
            let headers = vec![("X-OTA-Forge-Reason", header_safe(&decision.reason))];
            Reply::Text(Text::new(304, "", headers, true, decision.reason.clone()))
        }
    };
    Step::Reply(Routed { reply, decision: Some(decision) })
}

/// A release as the answer: its bytes whole or the range asked for, or why not.
fn release_reply(req: &Request, release: Arc<ReleaseView>, device: bool) -> Reply {
    let head_only = req.method == "HEAD";
    let Some(bytes) = release.bytes.clone() else {
        let why = "release file not loaded".to_string();
        return Reply::Text(Text::new(503, "release file unavailable\n", vec![], head_only, why));
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
            let h = vec![("Content-Range", format!("bytes */{total}"))];
            return Reply::Text(Text::new(
                416,
                "range not satisfiable\n",
                h,
                head_only,
                "range not satisfiable".into(),
            ));
        }
    };
    let len = if total == 0 { 0 } else { end - start + 1 };
    Reply::Release(Body { release, bytes, status, start, len, headers, head_only, device })
}

/// `decision`, unless it serves a filesystem image the device did not take `refused` times
/// already (a device whose filesystem is too small for it would be sent it at every check).
fn unless_refused(decision: Decision, refused: u32) -> Decision {
    let Answer::Serve(r) = &decision.answer else { return decision };
    if r.meta.kind != PayloadKind::Filesystem || refused < decision::MAX_ATTEMPTS {
        return decision;
    }
    Decision {
        reason: format!(
            "did not take filesystem image {} the last {refused} times it was sent (it closed the \
             connection before reading it; is its filesystem smaller?): no longer offered, to stop a \
             loop (publish a new image, or restart the server, to try again)",
            r.meta.version
        ),
        answer: Answer::NoUpdate(DeviceState::Held),
    }
}

/// The channel a path selects: the update path itself is the default channel, `<path>/<name>` a
/// named one. Names that are not valid channel names (`..`, `%2e`, slashes) select nothing.
pub(super) fn channel_of(base: &str, path: &str) -> Option<String> {
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
mod tests;
