use std::collections::HashMap;
use std::sync::Arc;

use md5::{Digest, Md5};

use super::*;
use otaforge_store::{Channel, PayloadKind, Release};

fn image(tag: u8) -> Vec<u8> {
    let mut b = vec![0xE9, 1, 2, 0x40, 0, 0, 0x10, 0x40];
    b.extend(std::iter::repeat_n(tag, 4088));
    b
}

fn release(id: i64, version: &str, bytes: &[u8], kind: PayloadKind) -> Release {
    Release {
        id,
        channel: "stable".into(),
        kind,
        version: version.into(),
        chip: Some("ESP8266".into()),
        size: bytes.len() as u64,
        sha256: format!("sha{id}"),
        md5: hex::encode(Md5::digest(bytes)),
        md5_normalized: otaforge_firmware::image::normalized_md5(bytes),
        flash_size: Some(4 << 20),
        file_name: String::new(),
        notes: String::new(),
        published_at: 0,
    }
}

struct World {
    catalog: Catalog,
    old: Vec<u8>,
    new: Vec<u8>,
}

/// Channel "stable": release 1 = "1.9" (history), release 2 = "1.10" (current).
fn world(percent: u8, paused: bool) -> World {
    let old = image(1);
    let new = image(2);
    let r1 = Arc::new(ReleaseView::new(release(1, "1.9", &old, PayloadKind::Sketch), None));
    let r2 =
        Arc::new(ReleaseView::new(release(2, "1.10", &new, PayloadKind::Sketch), Some(new.clone().into())));
    let meta = Channel {
        name: "stable".into(),
        current_sketch: Some(2),
        current_fs: None,
        rollout_percent: percent,
        paused,
        require_signatures: false,
        auth: None,
    };
    let mut channels = HashMap::new();
    channels.insert("stable".into(), ChannelView { meta, sketch: Some(r2.clone()), filesystem: None });
    let releases = HashMap::from([(1, r1), (2, r2)]);
    World {
        catalog: Catalog { channels, releases, allowed: Default::default(), unreadable: Vec::new() },
        old,
        new,
    }
}

fn dev(version: Option<&str>, md5: Option<String>) -> DeviceRequest {
    DeviceRequest {
        family: Family::Esp8266,
        sta_mac: "18:FE:34:00:00:01".into(),
        ap_mac: None,
        chip_id: None,
        free_space: Some(1 << 20),
        sketch_size: Some(300_000),
        sketch_md5: md5,
        sketch_sha256: None,
        chip_size: Some(4 << 20),
        sdk_version: None,
        mode: Mode::Sketch,
        version: version.map(str::to_string),
    }
}

fn run(w: &World, d: &DeviceRequest, prev: Option<&Device>) -> Decision {
    decide(d, w.catalog.channels.get("stable"), &w.catalog, prev)
}

fn served(d: &Decision) -> Option<i64> {
    match &d.answer {
        Answer::Serve(r) => Some(r.meta.id),
        _ => None,
    }
}

fn md5(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

#[test]
fn older_version_gets_the_release_numerically_not_as_float() {
    let w = world(100, false);
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);
    assert_eq!(d.status(), 200);
}

#[test]
fn same_or_newer_version_gets_304() {
    let w = world(100, false);
    for v in ["1.10", "1.10.0", "v1.10", "2.0"] {
        let d = run(&w, &dev(Some(v), None), None);
        assert_eq!(d.status(), 304, "{v}: {}", d.reason);
    }
}

#[test]
fn no_version_is_judged_by_md5_including_the_rewritten_flash_mode_byte() {
    let w = world(100, false);
    let d = run(&w, &dev(None, Some(md5(&w.new))), None);
    assert_eq!(d.status(), 304, "{}", d.reason);
    let mut rewritten = w.new.clone();
    rewritten[2] = 3; // the device's updater wrote DOUT into byte 2
    let d = run(&w, &dev(None, Some(md5(&rewritten))), None);
    assert_eq!(d.status(), 304, "{}", d.reason);
    let d = run(&w, &dev(None, Some(md5(&w.old))), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);
    assert!(d.reason.contains("1.9"), "{}", d.reason);
}

#[test]
fn a_wrong_version_string_never_causes_a_loop_when_the_md5_says_current() {
    let w = world(100, false);
    // The sketch hard-codes "1.0" but it is the current image.
    let d = run(&w, &dev(Some("1.0"), Some(md5(&w.new))), None);
    assert_eq!(d.status(), 304, "{}", d.reason);
}

#[test]
fn repeated_downloads_without_running_stop_being_offered() {
    let w = world(100, false);
    let mut prev = Device {
        state: DeviceState::RolledBack,
        target_release: Some(2),
        attempts: MAX_ATTEMPTS - 1,
        ..base_device()
    };
    let unknown = Some("ffffffffffffffffffffffffffffffff".to_string());
    assert_eq!(served(&run(&w, &dev(None, unknown.clone()), Some(&prev))), Some(2));
    prev.attempts = MAX_ATTEMPTS;
    let d = run(&w, &dev(None, unknown), Some(&prev));
    assert!(matches!(d.answer, Answer::NoUpdate(DeviceState::Failed)), "{}", d.reason);
    assert!(d.reason.contains("update loop"), "{}", d.reason);
}

#[test]
fn rollout_share_and_pause_hold_devices_back() {
    let d = dev(Some("1.0"), None);
    assert_eq!(run(&world(0, false), &d, None).status(), 304);
    assert!(run(&world(0, false), &d, None).reason.contains("rollout"));
    assert_eq!(run(&world(100, true), &d, None).status(), 304);
    assert!(run(&world(100, true), &d, None).reason.contains("paused"));
    let bucket = rollout_bucket(&d.sta_mac);
    assert_eq!(served(&run(&world(bucket + 1, false), &d, None)), Some(2));
    assert_eq!(run(&world(bucket, false), &d, None).status(), 304);
}

#[test]
fn rollout_buckets_are_stable_and_spread() {
    let macs: Vec<String> = (0..2000u32)
        .map(|i| format!("AC:D0:74:{:02X}:{:02X}:{:02X}", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let in_half = macs.iter().filter(|m| rollout_bucket(m) < 50).count();
    assert!((850..=1150).contains(&in_half), "{in_half} of 2000 in a 50% rollout");
    assert!(macs.iter().all(|m| rollout_bucket(m) == rollout_bucket(m) && rollout_bucket(m) < 100));
}

#[test]
fn too_little_space_too_little_flash_or_the_wrong_chip_get_304_with_a_reason() {
    let w = world(100, false);
    let mut d = dev(Some("1.0"), None);
    d.free_space = Some(4095);
    let r = run(&w, &d, None);
    assert_eq!(r.status(), 304);
    assert!(r.reason.contains("4096 bytes") && r.reason.contains("4095"), "{}", r.reason);
    let mut d = dev(Some("1.0"), None);
    d.chip_size = Some(1 << 20);
    assert!(run(&w, &d, None).reason.contains("built for 4 MB"));
    let mut d = dev(Some("1.0"), None);
    d.family = Family::Esp32;
    assert!(run(&w, &d, None).reason.contains("ESP8266 images"));
}

#[test]
fn version_mode_answers_the_current_version_without_a_body() {
    let w = world(100, false);
    let mut d = dev(Some("1.10"), None);
    d.mode = Mode::Version;
    assert!(matches!(run(&w, &d, None).answer, Answer::VersionInfo(ref r) if r.meta.version == "1.10"));
}

#[test]
fn filesystem_mode_serves_the_channel_image_once() {
    let mut w = world(100, false);
    let mut d = dev(Some("1.10"), None);
    d.mode = Mode::Filesystem;
    assert_eq!(run(&w, &d, None).status(), 304);
    let fs = vec![0u8; 8192];
    let view =
        Arc::new(ReleaseView::new(release(3, "fs-1", &fs, PayloadKind::Filesystem), Some(fs.clone().into())));
    w.catalog.channels.get_mut("stable").unwrap().filesystem = Some(view);
    assert_eq!(served(&run(&w, &d, None)), Some(3));
    let prev = Device { fs_release: Some(3), ..base_device() };
    assert_eq!(run(&w, &d, Some(&prev)).status(), 304);
}

fn base_device() -> Device {
    Device { last_status: 304, ..Device::new("18:FE:34:00:00:01", "ESP8266", "stable", "127.0.0.1", 0) }
}

#[test]
fn a_disabled_release_is_never_offered_and_the_device_is_told_why() {
    let mut w = world(100, false);
    let meta = w.catalog.releases[&2].meta.clone();
    let problem =
        otaforge_store::BlobProblem::Truncated { path: "blobs/x.bin".into(), found: 10, expected: 4096 };
    let view = Arc::new(ReleaseView::disabled(meta, problem));
    w.catalog.releases.insert(2, view.clone());
    w.catalog.channels.get_mut("stable").unwrap().sketch = Some(view);
    for mode in [Mode::Sketch, Mode::Version] {
        let mut d = dev(Some("1.9"), None);
        d.mode = mode;
        let decision = run(&w, &d, None);
        assert_eq!(decision.status(), 304, "{mode:?}");
        assert!(matches!(decision.answer, Answer::NoUpdate(DeviceState::Held)));
        assert!(
            decision.reason.contains("disabled") && decision.reason.contains("truncated"),
            "{}",
            decision.reason
        );
        assert!(!decision.reason.contains("x.bin"), "devices are not told file names: {}", decision.reason);
    }
}

#[test]
fn an_unreadable_row_is_named_in_the_answer() {
    use otaforge_store::{BadRow, RowKey};
    let mut w = world(100, false);
    // The current release's row cannot be read: it is not in the catalog.
    w.catalog.releases.remove(&2);
    w.catalog.channels.get_mut("stable").unwrap().sketch = None;
    w.catalog
        .unreadable
        .push(BadRow { key: RowKey::Release(2), why: "its \"size\" column holds text".into() });
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert_eq!(d.status(), 304);
    assert!(d.reason.contains("release #2 cannot be read"), "{}", d.reason);
    // The channel's own row cannot be read: nothing is offered on it.
    let mut w = world(100, false);
    w.catalog.unreadable.push(BadRow { key: RowKey::Channel("stable".into()), why: "paused".into() });
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert_eq!(d.status(), 304);
    assert!(d.reason.contains("channel \"stable\" cannot be read"), "{}", d.reason);
}
