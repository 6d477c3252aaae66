//! Routing without a socket: each request is routed to its end, the facts it asks for given as a
//! test says, and the reply (and what was asked) compared.

use std::collections::HashMap;

use md5::{Digest, Md5};

use super::*;
use crate::catalog::ChannelView;
use crate::device;
use crate::events::ServerEvent;
use crate::handler::delivery::{Delivery, Lost};
use crate::handler::ledger::{End, account};
use crate::handler::write::{Fate, Written};
use otaforge_store::{Channel, Release};

const MAC: &str = "18:FE:34:00:00:01";

fn image(tag: u8) -> Vec<u8> {
    let mut b = vec![0xE9, 1, 2, 0x40, 0, 0, 0x10, 0x40];
    b.extend(std::iter::repeat_n(tag, 4088));
    b
}

fn release(
    id: i64,
    channel: &str,
    version: &str,
    chip: &str,
    kind: PayloadKind,
    bytes: Option<&[u8]>,
) -> Arc<ReleaseView> {
    let b = bytes.map_or_else(|| image(id as u8), <[u8]>::to_vec);
    let meta = Release {
        id,
        channel: channel.into(),
        kind,
        version: version.into(),
        chip: Some(chip.into()),
        size: b.len() as u64,
        sha256: format!("sha{id}"),
        md5: hex::encode(Md5::digest(&b)),
        md5_normalized: hex::encode(Md5::digest(&b)),
        flash_size: Some(4 << 20),
        file_name: String::new(),
        notes: String::new(),
        published_at: 0,
        signed_by: None,
        trusts: None,
    };
    Arc::new(ReleaseView::new(meta, bytes.map(|_| b.into())))
}

fn channel(
    name: &str,
    sketch: Option<&Arc<ReleaseView>>,
    fs: Option<&Arc<ReleaseView>>,
    auth: bool,
) -> ChannelView {
    let auth = auth.then(|| ChannelAuth { user: "dev".into(), password_hash: "$argon2id$unused".into() });
    let meta = Channel {
        name: name.into(),
        current_sketch: sketch.map(|r| r.meta.id),
        current_fs: fs.map(|r| r.meta.id),
        rollout_percent: 100,
        paused: false,
        require_signatures: false,
        gzip: Default::default(),
        auth,
    };
    ChannelView { meta, sketch: sketch.cloned(), filesystem: fs.cloned(), carriers: Vec::new() }
}

/// "stable": ESP8266 sketch 1.10 (#2, 1.9 #1 before it) and filesystem image fs-1 (#5);
/// "locked": 2.0 (#3) behind credentials; "big": an ESP32 image (#4).
fn catalog() -> Catalog {
    let r1 = release(1, "stable", "1.9", "ESP8266", PayloadKind::Sketch, None);
    let r2 = release(2, "stable", "1.10", "ESP8266", PayloadKind::Sketch, Some(&image(2)));
    let r3 = release(3, "locked", "2.0", "ESP8266", PayloadKind::Sketch, Some(&image(3)));
    let r4 = release(4, "big", "3.0", "ESP32", PayloadKind::Sketch, Some(&image(4)));
    let r5 = release(5, "stable", "fs-1", "ESP8266", PayloadKind::Filesystem, Some(&[7u8; 1000]));
    let channels = [
        channel("stable", Some(&r2), Some(&r5), false),
        channel("locked", Some(&r3), None, true),
        channel("big", Some(&r4), None, false),
    ];
    Catalog {
        channels: channels.into_iter().map(|c| (c.meta.name.clone(), c)).collect(),
        releases: HashMap::from([(1, r1), (2, r2), (3, r3), (4, r4), (5, r5)]),
        allowed: Default::default(),
        unreadable: Vec::new(),
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: None,
        minor_version: 0,
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
    }
}

/// An ESP8266httpUpdate check with `extra` headers (`x-ESP8266-version: 1.9`, …).
fn esp8266(path: &str, extra: &[(&str, &str)]) -> Request {
    let mut h = vec![
        ("x-ESP8266-STA-MAC", MAC),
        ("x-ESP8266-free-space", "1048576"),
        ("x-ESP8266-chip-size", "4194304"),
    ];
    h.extend_from_slice(extra);
    request("GET", path, &h)
}

/// How the facts a route asks for turn out.
struct Given {
    authorized: bool,
    admitted: Result<u32, &'static str>,
}

const OPEN: Given = Given { authorized: true, admitted: Ok(0) };

/// Routes `req` to its end; returns the reply and the facts asked for, in order.
fn run(req: &Request, catalog: &Catalog, given: &Given) -> (Routed, Vec<&'static str>) {
    let device = device::parse(req);
    let mut facts = Facts::default();
    let mut asked = Vec::new();
    loop {
        match route(req, &device, "/update", catalog, &facts) {
            Step::Reply(routed) => return (routed, asked),
            Step::Need(Need::Credentials(_)) => {
                asked.push("credentials");
                facts.authorized = Some(given.authorized);
            }
            Step::Need(Need::CheckIn { dev, channel, .. }) => {
                asked.push("check-in");
                let device = Device::new(&dev.sta_mac, dev.family.name(), &channel, "10.0.0.1", 0);
                facts.known =
                    Some(given.admitted.map(|fs_refused| Known { device, fs_refused }).map_err(String::from));
            }
        }
    }
}

/// A text reply's status and reason; panics on a release.
fn text(routed: &Routed) -> (u16, &str) {
    match &routed.reply {
        Reply::Text(t) => (t.status, t.reason.as_str()),
        Reply::Release(b) => panic!("release #{} instead of a text answer", b.release.meta.id),
    }
}

fn body(routed: &Routed) -> &Body {
    match &routed.reply {
        Reply::Release(b) => b,
        Reply::Text(t) => panic!("{} {} instead of a release", t.status, t.reason),
    }
}

fn header<'a>(headers: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[test]
fn an_esp8266_check_is_answered_by_its_version_md5_and_chip() {
    let catalog = catalog();
    let running = hex::encode(Md5::digest(image(2)));
    // (what, channel path, the header that tells, status (0: the release as body), reason)
    let cases = [
        ("older", "/update", ("x-ESP8266-version", "1.9"), 0, "update to 1.10 from 1.9"),
        ("equal", "/update", ("x-ESP8266-version", "1.10"), 304, "runs 1.10, the current release"),
        (
            "newer",
            "/update",
            ("x-ESP8266-version", "2.0"),
            304,
            "runs 2.0, newer than the current release 1.10",
        ),
        ("md5", "/update", ("x-ESP8266-sketch-md5", running.as_str()), 304, "runs 1.10, the current release"),
        ("mode", "/update", ("x-ESP8266-mode", "version"), 200, "told the current version, 1.10"),
        (
            "chip",
            "/update/big",
            ("x-ESP8266-version", "1.9"),
            304,
            "this channel serves ESP32 images and this device is an ESP8266",
        ),
    ];
    for (what, path, tells, status, reason) in cases {
        let (routed, asked) = run(&esp8266(path, &[tells]), &catalog, &OPEN);
        assert_eq!(asked, ["check-in"], "{what}");
        assert_eq!(routed.decision.as_ref().map(|d| d.reason.as_str()), Some(reason), "{what}: recorded");
        if status == 0 {
            assert_eq!(body(&routed).release.meta.id, 2, "{what}: the release itself");
            continue;
        }
        assert_eq!(text(&routed), (status, reason), "{what}");
        let Reply::Text(t) = &routed.reply else { unreachable!() };
        assert_eq!(t.body, "", "{what}: no body");
        if status == 304 {
            assert_eq!(header(&t.headers, "X-OTA-Forge-Reason"), Some(reason), "{what}");
        } else {
            assert_eq!(header(&t.headers, "x-version"), Some("1.10"));
            assert_eq!(header(&t.headers, "x-MD5"), Some(catalog.releases[&2].meta.md5.as_str()));
        }
    }
}

#[test]
fn an_older_esp8266_gets_the_whole_release_and_the_decision_is_recorded() {
    let catalog = catalog();
    let (routed, _) = run(&esp8266("/update", &[("x-ESP8266-version", "1.9")]), &catalog, &OPEN);
    let b = body(&routed);
    assert_eq!(
        (b.release.meta.id, b.status, b.start, b.len, b.device, b.head_only),
        (2, 200, 0, 4096, true, false)
    );
    assert_eq!(b.slice(), &image(2)[..]);
    assert_eq!(header(&b.headers, "x-version"), Some("1.10"));
    assert_eq!(header(&b.headers, "Content-Disposition"), Some("attachment; filename=\"firmware-1.10.bin\""));
    assert_eq!(header(&b.headers, "Content-Range"), None);
    let decision = routed.decision.as_ref().expect("a device's decision is recorded");
    assert_eq!(decision.reason, "update to 1.10 from 1.9");
    assert!(matches!(&decision.answer, Answer::Serve(r) if r.meta.id == 2));
}

#[test]
fn other_clients_get_the_current_release_with_head_and_range() {
    let catalog = catalog();
    let (get, asked) = run(&request("GET", "/update/", &[]), &catalog, &OPEN);
    let b = body(&get);
    assert_eq!((b.status, b.len, b.device, b.head_only), (200, 4096, false, false));
    assert!(get.decision.is_none() && asked.is_empty(), "no device: nothing checked in, nothing recorded");

    let (head, _) = run(&request("HEAD", "/update", &[]), &catalog, &OPEN);
    assert_eq!((body(&head).status, body(&head).len, body(&head).head_only), (200, 4096, true));

    let (part, _) = run(&request("GET", "/update", &[("Range", "bytes=10-19")]), &catalog, &OPEN);
    let b = body(&part);
    assert_eq!((b.status, b.start, b.len), (206, 10, 10));
    assert_eq!(header(&b.headers, "Content-Range"), Some("bytes 10-19/4096"));
    assert_eq!(b.slice(), &image(2)[10..20]);

    for (method, want) in [("GET", "range not satisfiable\n"), ("HEAD", "")] {
        let (routed, _) = run(&request(method, "/update", &[("Range", "bytes=4096-")]), &catalog, &OPEN);
        let Reply::Text(t) = routed.reply else { panic!("{method}: not a text answer") };
        assert_eq!((t.status, t.body.as_str()), (416, want), "{method}");
        assert_eq!(header(&t.headers, "Content-Range"), Some("bytes */4096"));
    }
}

#[test]
fn channels_unknown_and_demo() {
    let catalog = catalog();
    let (routed, asked) = run(&esp8266("/update/nosuch", &[]), &catalog, &OPEN);
    assert_eq!((text(&routed), asked.len()), ((404, "no channel \"nosuch\""), 0));
    // The demo channel always exists: a device is checked in and told nothing is published.
    let (routed, asked) = run(&esp8266("/update/demo", &[]), &catalog, &OPEN);
    assert_eq!(text(&routed), (304, "nothing has been published on this channel yet"));
    assert_eq!(asked, ["check-in"]);
    let (routed, _) = run(&request("GET", "/update/demo", &[]), &catalog, &OPEN);
    assert_eq!(text(&routed), (404, "nothing published on this channel"));
}

#[test]
fn refusals_cost_neither_a_password_check_nor_a_check_in() {
    let mut catalog = catalog();
    let (routed, asked) = run(&request("POST", "/update/locked", &[]), &catalog, &OPEN);
    assert_eq!((text(&routed), asked.len()), ((405, "method POST not allowed"), 0));
    let Reply::Text(t) = &routed.reply else { unreachable!() };
    assert_eq!((header(&t.headers, "Allow"), t.body.as_str()), (Some("GET, HEAD"), "only GET and HEAD\n"));

    let (routed, asked) = run(&esp8266("/elsewhere", &[]), &catalog, &OPEN);
    assert_eq!((text(&routed), asked.len()), ((404, "/elsewhere is not an update path"), 0));

    let bad = request("GET", "/update/locked", &[("x-ESP8266-STA-MAC", "not-a-mac")]);
    let (routed, asked) = run(&bad, &catalog, &OPEN);
    assert_eq!(
        (text(&routed), asked.len()),
        ((400, "x-esp8266-sta-mac is not a MAC address: \"not-a-mac\""), 0)
    );

    catalog.allowed.insert("18:FE:34:00:00:02".into());
    let (routed, asked) = run(&esp8266("/update/locked", &[]), &catalog, &OPEN);
    assert_eq!((text(&routed), asked.len()), ((403, "not on the MAC allow-list"), 0));
}

#[test]
fn a_channel_with_credentials_asks_for_them_before_the_check_in() {
    let catalog = catalog();
    let old = [("x-ESP8266-version", "1.0")];
    let wrong = Given { authorized: false, ..OPEN };
    let (routed, asked) = run(&esp8266("/update/locked", &old), &catalog, &wrong);
    assert_eq!(text(&routed), (401, "missing or wrong credentials"));
    assert_eq!(asked, ["credentials"], "a device with wrong credentials is not checked in");
    let Reply::Text(t) = &routed.reply else { unreachable!() };
    assert_eq!(header(&t.headers, "WWW-Authenticate"), Some("Basic realm=\"OTA Forge\""));
    // HEAD: the same answer without its text.
    let (routed, _) = run(&request("HEAD", "/update/locked", &[]), &catalog, &wrong);
    assert!(matches!(routed.reply, Reply::Text(Text { status: 401, ref body, .. }) if body.is_empty()));

    let (routed, asked) = run(&esp8266("/update/locked", &old), &catalog, &OPEN);
    assert_eq!((body(&routed).release.meta.id, asked), (3, vec!["credentials", "check-in"]));
    let (_, asked) = run(&esp8266("/update", &old), &catalog, &wrong);
    assert_eq!(asked, ["check-in"], "a channel without credentials asks for none");
}

#[test]
fn a_device_not_admitted_is_told_no_update_and_nothing_is_recorded() {
    let not_admitted = Given { admitted: Err("too many new devices\nat once"), ..OPEN };
    let (routed, _) = run(&esp8266("/update", &[("x-ESP8266-version", "1.0")]), &catalog(), &not_admitted);
    assert_eq!(text(&routed), (304, "too many new devices\nat once"));
    let Reply::Text(t) = &routed.reply else { unreachable!() };
    assert_eq!(header(&t.headers, "X-OTA-Forge-Reason"), Some("too many new devices?at once"));
    assert!(routed.decision.is_none());
}

#[test]
fn a_filesystem_image_not_taken_too_often_is_no_longer_offered() {
    let catalog = catalog();
    let fs = esp8266("/update", &[("x-ESP8266-mode", "spiffs")]);
    let (routed, _) = run(&fs, &catalog, &Given { admitted: Ok(decision::MAX_ATTEMPTS - 1), ..OPEN });
    assert_eq!((body(&routed).release.meta.id, body(&routed).len), (5, 1000));
    let (routed, _) = run(&fs, &catalog, &Given { admitted: Ok(decision::MAX_ATTEMPTS), ..OPEN });
    let (status, reason) = text(&routed);
    assert!(
        status == 304 && reason.starts_with("did not take filesystem image fs-1 the last 3 times"),
        "{reason}"
    );
}

#[test]
fn the_decision_event_names_the_release_a_reply_carried() {
    let catalog = catalog();
    let idle = std::time::Duration::from_secs(30);
    let release_of = |fate: Fate| {
        let (routed, _) = run(&esp8266("/update", &[("x-ESP8266-version", "1.9")]), &catalog, &OPEN);
        let Reply::Release(b) = routed.reply else { panic!("no release") };
        account(&Written::Release(b, fate), idle)
    };
    let sent = release_of(Fate::Sent { millis: 5, delivery: Some(Delivery::Read) });
    assert_eq!(
        (sent.reason.as_str(), &sent.end),
        ("sent release 1.10 (4096 bytes)", &Some(End::Finished { millis: 5 }))
    );
    let ServerEvent::Decision { release, status, .. } = sent.event(7, Some(MAC.into())) else {
        unreachable!()
    };
    assert_eq!((release, status), (Some(2), 200));
    assert_eq!(release_of(Fate::Head).release, Some(2));
    let refused = release_of(Fate::Sent { millis: 5, delivery: Some(Delivery::Refused { unread: 96 }) });
    assert_eq!(refused.release, Some(2));
    assert_eq!(
        refused.reason,
        "download of release 1.10 not taken after 4000 of 4096 bytes: the device closed the connection \
         without reading about 96 bytes of it"
    );
    assert!(matches!(refused.end, Some(End::Aborted { sent: 4000, lost: Lost::Refused, .. })));

    let (routed, _) = run(&esp8266("/update", &[("x-ESP8266-version", "1.10")]), &catalog, &OPEN);
    let Reply::Text(t) = routed.reply else { panic!("not a 304") };
    assert_eq!(account(&Written::Text(t), idle).release, None, "a 304 carries no release");
}

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
