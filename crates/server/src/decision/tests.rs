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
        signed_by: None,
        trusts: None,
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
        gzip: Default::default(),
        auth: None,
    };
    let mut channels = HashMap::new();
    channels.insert(
        "stable".into(),
        ChannelView { meta, sketch: Some(r2.clone()), filesystem: None, carriers: Vec::new() },
    );
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

/// A key rotation on channel "stable": 1 = "1.0" signed by and trusting K1; 2 = "1.1", the
/// carrier (signed by K1, trusting K2); 3 = "2.0" signed by and trusting K2 (current).
fn rotated(with_carrier: bool, current_signed: bool) -> World {
    let mut w = world(100, false);
    let keyed = |id, version: &str, tag, by: Option<&str>, trusts: &str, bytes: bool| {
        let b = image(tag);
        let mut meta = release(id, version, &b, PayloadKind::Sketch);
        meta.signed_by = by.map(str::to_string);
        meta.trusts = Some(trusts.to_string());
        Arc::new(ReleaseView::new(meta, bytes.then(|| b.into())))
    };
    let r1 = keyed(1, "1.0", 1, Some("k1"), "k1", false);
    let r2 = keyed(2, "1.1", 2, Some("k1"), "k2", true);
    let r3 = keyed(3, "2.0", 3, current_signed.then_some("k2"), "k2", true);
    let channel = w.catalog.channels.get_mut("stable").unwrap();
    channel.meta.current_sketch = Some(3);
    channel.sketch = Some(r3.clone());
    channel.carriers = if with_carrier { vec![r2.clone()] } else { Vec::new() };
    w.catalog.releases = HashMap::from([(1, r1), (3, r3)]);
    if with_carrier {
        w.catalog.releases.insert(2, r2);
    }
    w
}

#[test]
fn a_device_on_the_old_key_is_offered_the_carrier_then_the_release_signed_by_the_new_key() {
    let w = rotated(true, true);
    let d = run(&w, &dev(Some("1.0"), None), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);
    assert!(d.reason.contains("carrier") && d.reason.contains("2.0 comes next"), "{}", d.reason);
    let d = run(&w, &dev(Some("1.1"), None), None);
    assert_eq!(served(&d), Some(3), "{}", d.reason);
    // Firmware the server does not know: offered the current release (it refuses what it
    // cannot verify itself).
    let d = run(&w, &dev(Some("0.9"), None), None);
    assert_eq!(served(&d), Some(3), "{}", d.reason);
}

#[test]
fn a_device_is_never_offered_a_release_its_firmware_cannot_verify() {
    let w = rotated(false, true);
    let d = run(&w, &dev(Some("1.0"), None), None);
    assert_eq!(d.status(), 304, "{}", d.reason);
    assert!(matches!(d.answer, Answer::NoUpdate(DeviceState::Held)));
    assert!(d.reason.contains("installs only updates signed by key k1"), "{}", d.reason);

    let w = rotated(true, false);
    let d = run(&w, &dev(Some("1.1"), None), None);
    assert_eq!(d.status(), 304, "{}", d.reason);
    assert!(d.reason.contains("2.0 is not signed"), "{}", d.reason);
}

#[test]
fn a_channel_that_requires_signatures_serves_no_unsigned_release_published_before_it_did() {
    let mut w = world(100, false);
    w.catalog.channels.get_mut("stable").unwrap().meta.require_signatures = true;
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert_eq!(d.status(), 304, "{}", d.reason);
    assert!(d.reason.contains("takes only signed releases"), "{}", d.reason);
}

/// A gzip'd, signed ESP8266 release: the bootloader of a device that checks no signatures would
/// take the signature's length word for the unpacked size, so only devices whose firmware is
/// known to verify get it; a signed plain image still reaches everyone.
#[test]
fn a_signed_gzip_release_reaches_only_esp8266_devices_known_to_verify_signatures() {
    let with_current = |bytes: Vec<u8>, keyless_history: bool| {
        let mut w = world(100, false);
        let mut meta = release(2, "1.10", &bytes, PayloadKind::Sketch);
        meta.signed_by = Some("k1".into());
        meta.trusts = Some("k1".into());
        let r2 = Arc::new(ReleaseView::new(meta, Some(bytes.into())));
        let mut old = release(1, "1.9", &w.old, PayloadKind::Sketch);
        if !keyless_history {
            old.signed_by = Some("k1".into());
            old.trusts = Some("k1".into());
        }
        w.catalog.releases = HashMap::from([(1, Arc::new(ReleaseView::new(old, None))), (2, r2.clone())]);
        w.catalog.channels.get_mut("stable").unwrap().sketch = Some(r2);
        w
    };
    let mut gzip = vec![0x1f, 0x8b, 8, 0];
    gzip.extend(std::iter::repeat_n(7u8, 4092));

    let w = with_current(gzip.clone(), true);
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert!(matches!(d.answer, Answer::NoUpdate(DeviceState::Held)), "{}", d.reason);
    assert!(d.reason.contains("runs 1.9, which checks no signatures"), "{}", d.reason);
    // Firmware the server does not know (flashed over USB): served, like any other release.
    let d = run(&w, &dev(Some("0.5"), None), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);

    // The fleet verifies: served.
    let w = with_current(gzip, false);
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);

    // Signed but not gzip'd: the keyless device gets it (the trailer sits after the image).
    let w = with_current(image(2), true);
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);
}

/// The device reports the MD5 of what it runs: for a signed release that is the image without
/// its trailer, so it is recognised as current without a version.
#[test]
fn a_device_running_a_signed_release_is_recognised_by_the_md5_of_the_image_it_installed() {
    let mut w = world(100, false);
    let mut signed = w.new.clone();
    signed.extend([0xA5; 256]);
    signed.extend(256u32.to_le_bytes());
    let mut meta = release(2, "1.10", &signed, PayloadKind::Sketch);
    meta.signed_by = Some("k1".into());
    let r2 = Arc::new(ReleaseView::new(meta, Some(signed.into())));
    w.catalog.releases.insert(2, r2.clone());
    w.catalog.channels.get_mut("stable").unwrap().sketch = Some(r2);
    let d = run(&w, &dev(None, Some(md5(&w.new))), None);
    assert!(matches!(d.answer, Answer::NoUpdate(DeviceState::UpToDate)), "{}", d.reason);
    let d = run(&w, &dev(None, Some(md5(&w.old))), None);
    assert_eq!(served(&d), Some(2), "{}", d.reason);
}

#[test]
fn a_gzip_release_is_held_from_devices_whose_sdk_ships_with_cores_before_2_7() {
    let mut w = world(100, false);
    let mut gzip = vec![0x1f, 0x8b, 8, 0];
    gzip.extend(std::iter::repeat_n(7u8, 4092));
    let r2 = Arc::new(ReleaseView::new(release(2, "1.10", &gzip, PayloadKind::Sketch), Some(gzip.into())));
    w.catalog.releases.insert(2, r2.clone());
    w.catalog.channels.get_mut("stable").unwrap().sketch = Some(r2);
    let with_sdk =
        |sdk: Option<&str>| DeviceRequest { sdk_version: sdk.map(str::to_string), ..dev(Some("1.9"), None) };
    for old in ["2.2.1(cfd48f3)", "2.0.0(e271380)", "1.5.3(aec24ac9)"] {
        let d = run(&w, &with_sdk(Some(old)), None);
        assert!(matches!(d.answer, Answer::NoUpdate(DeviceState::Held)), "{old}: {}", d.reason);
        assert!(d.reason.contains("older than 2.7.0"), "{}", d.reason);
    }
    for new in [Some("2.2.2-dev(38a443e)"), Some("3.0.5"), None] {
        let d = run(&w, &with_sdk(new), None);
        assert_eq!(served(&d), Some(2), "{new:?}: {}", d.reason);
    }
}

#[test]
fn a_channel_set_to_take_no_gzip_serves_no_gzipd_release() {
    let mut w = world(100, false);
    let mut gzip = vec![0x1f, 0x8b, 8, 0];
    gzip.extend(std::iter::repeat_n(7u8, 4092));
    let r2 = Arc::new(ReleaseView::new(release(2, "1.10", &gzip, PayloadKind::Sketch), Some(gzip.into())));
    w.catalog.releases.insert(2, r2.clone());
    let channel = w.catalog.channels.get_mut("stable").unwrap();
    channel.sketch = Some(r2);
    assert_eq!(served(&run(&w, &dev(Some("1.9"), None), None)), Some(2));
    w.catalog.channels.get_mut("stable").unwrap().meta.gzip = otaforge_store::GzipPolicy::Never;
    let d = run(&w, &dev(Some("1.9"), None), None);
    assert!(matches!(d.answer, Answer::NoUpdate(DeviceState::Held)), "{}", d.reason);
    assert!(d.reason.contains("set to take none"), "{}", d.reason);
}
