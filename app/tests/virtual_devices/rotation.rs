//! Signing-key rotation on virtual boards, as a user runs it: releases signed by the old key, a new
//! key, the carrier release (signed by the old key, carrying the new one), then releases signed by
//! the new key — and a board that was off during the carrier release still arrives.

use crate::support;
use crate::virtual_device_support;

use std::time::Duration;

use otaforge_firmware::Chip;
use otaforge_firmware::config_block::BakedSettings;
use otaforge_sim::device::DeviceEvent;
use support::{Project, otaforge, run};
use virtual_device_support::*;

/// The project's current ESP8266 public key, DER.
fn current_key(dir: &std::path::Path) -> Vec<u8> {
    let keys = otaforge_pki::signing::load(dir).unwrap();
    keys.current(otaforge_pki::signing::Family::Esp8266).expect("a key").public().spki_der
}

/// Bakes `version` with the project's current key, publishes it with `otaforge publish --sign`
/// and returns what the command printed.
fn publish_signed(project: &Project, s: &BakedSettings, version: &str) -> String {
    let mut s = s.clone();
    s.version = version.into();
    s.signing_key = current_key(project.path());
    let file = project.path().join(format!("app-{version}.bin"));
    std::fs::write(&file, bake(Chip::Esp8266, &s, IMAGE_SIZE)).unwrap();
    let (out, stdout, stderr) = run(otaforge(project.path()).args([
        "publish",
        file.to_str().unwrap(),
        "--channel",
        DEMO,
        "--version",
        version,
        "--sign",
    ]));
    assert!(out.status.success(), "publish {version}: {stdout}{stderr}");
    stdout
}

/// The versions a board boots after its first boot, in order, collected from its events. The
/// first boot (of the flashed image) may come before the subscription: it is left out, and the
/// count of boots is checked from the board's status instead.
fn boots(board: &otaforge_sim::device::DeviceHandle) -> tokio::task::JoinHandle<Vec<String>> {
    let mut rx = board.subscribe();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(e) = rx.recv().await {
            match e {
                DeviceEvent::Booted { version: Some(v) } => seen.push(v),
                DeviceEvent::Stopped => break,
                _ => {}
            }
        }
        if seen.first().map(String::as_str) == Some("1.0.0") {
            seen.remove(0);
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reaches_every_board_through_the_carrier_even_one_that_was_off() {
    let project = Project::new();
    let dir = project.path();
    let (out, stdout, stderr) = run(otaforge(dir).args(["key", "new", "--family", "esp8266"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let server = project.serve(|_| {}).await;
    let s = settings(dir, "1.0.0", port(&server));
    let first_key = current_key(dir);

    // 1.0.0 signed by and carrying the first key; two boards run it.
    let printed = publish_signed(&project, &s, "1.0.0");
    assert!(printed.contains("accept only updates signed by key"), "{printed}");
    let mut v1 = s.clone();
    v1.signing_key = first_key.clone();
    let v1_image = bake(Chip::Esp8266, &v1, IMAGE_SIZE);
    let v1_file = dir.join("app-1.0.0.bin");
    assert_eq!(std::fs::read(&v1_file).unwrap(), v1_image, "the boards run the published 1.0.0");
    server.reload().unwrap();

    // The new key; the old one is kept in retired/ for the carrier.
    let (out, stdout, stderr) = run(otaforge(dir).args(["key", "new", "--family", "esp8266", "--replace"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_ne!(current_key(dir), first_key);

    // The online board.
    let online = start(Chip::Esp8266, 0x51, &v1_image, quick());
    let online_boots = boots(&online);
    online.wait_until(Duration::from_secs(30), |st| st.checks >= 1).await.expect("first check");

    // 1.1.0 carries the new key; `publish --sign` signs it with the key the channel's boards
    // verify with (the old one): the carrier.
    let printed = publish_signed(&project, &s, "1.1.0");
    assert!(printed.contains("carrier release"), "{printed}");
    server.reload().unwrap();
    online.check_now();
    online
        .wait_until(Duration::from_secs(60), |st| st.version.as_deref() == Some("1.1.0"))
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", log_text(&online)));

    // 2.0.0 is signed by the new key (the channel's firmware now carries it).
    let printed = publish_signed(&project, &s, "2.0.0");
    assert!(!printed.contains("carrier"), "{printed}");
    server.reload().unwrap();
    online.check_now();
    online
        .wait_until(Duration::from_secs(60), |st| st.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", log_text(&online)));

    // The board that was off all along still runs 1.0.0 (old key only): it is offered the carrier
    // first, then 2.0.0.
    let late = start(Chip::Esp8266, 0x52, &v1_image, quick());
    let late_boots = boots(&late);
    late.wait_until(Duration::from_secs(90), |st| st.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", log_text(&late)));
    assert_eq!(late.status().failures, 0, "{}", log_text(&late));

    // Three boots each: the flashed 1.0.0, then the two updates.
    assert_eq!((online.status().boots, late.status().boots), (3, 3));
    online.stop().await;
    late.stop().await;
    assert_eq!(online_boots.await.unwrap(), ["1.1.0", "2.0.0"]);
    assert_eq!(late_boots.await.unwrap(), ["1.1.0", "2.0.0"], "the late board went through the carrier");

    // `otaforge releases` shows who signed what and which key each release's firmware carries.
    let (_, listing, _) = run(otaforge(dir).args(["releases"]));
    let key_col = |version: &str| {
        listing
            .lines()
            .find(|l| l.contains(version))
            .unwrap_or_else(|| panic!("{version}: {listing}"))
            .to_string()
    };
    let (old, new) = (
        otaforge_pki::signing::PublicKey {
            family: otaforge_pki::signing::Family::Esp8266,
            spki_der: first_key,
        }
        .fingerprint(),
        otaforge_pki::signing::PublicKey {
            family: otaforge_pki::signing::Family::Esp8266,
            spki_der: current_key(dir),
        }
        .fingerprint(),
    );
    assert!(key_col("1.0.0").contains(&format!("{} (old) / {} (old)", &old[..8], &old[..8])), "{listing}");
    assert!(key_col("1.1.0").contains(&format!("{} (old) / {}", &old[..8], &new[..8])), "{listing}");
    assert!(key_col("2.0.0").contains(&format!("{} / {}", &new[..8], &new[..8])), "{listing}");
    server.shutdown().await;
}
