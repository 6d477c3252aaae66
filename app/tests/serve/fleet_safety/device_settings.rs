//! Per-device settings survive updates: two virtual boards flashed with one generic image and
//! their own name and Wi-Fi (written by the real flasher into the ESP8266's EEPROM sector / the
//! ESP32-C3's NVS partition) update to a new generic release and still report their own names
//! and join their own networks; `otaforge devices` shows the names; provisioning new Wi-Fi
//! leaves the app image byte for byte.

use std::time::Duration;

use crate::support::{Project, otaforge, run};
use crate::virtual_device_support::*;
use otaforge_firmware::Chip;
use otaforge_firmware::device_settings::{DeviceSettings, Wifi};
use otaforge_flash::{self as flash, Cancel, FlashRequest};
use otaforge_sim::board::{BoardOptions, VirtualBoard};
use otaforge_sim::device::{Activity, CheckOutcome};

const T: Duration = Duration::from_secs(60);

fn own(name: &str, ssid: &str) -> DeviceSettings {
    DeviceSettings {
        name: name.into(),
        wifi: Some(Wifi { ssid: ssid.into(), password: format!("{ssid}-passphrase") }),
    }
}

async fn flash_with(board: &VirtualBoard, image: Option<Vec<u8>>, settings: Option<DeviceSettings>) {
    let port = board.port().display().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut req = match image {
            Some(image) => FlashRequest { device_settings: settings, ..FlashRequest::new(port, image) },
            None => FlashRequest::provision(port, settings.expect("provisioning writes settings")),
        };
        req.connect_timeout = Duration::from_secs(10);
        flash::flash(&req, &Cancel::new(), &mut |_| {})
    })
    .await
    .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

async fn settings_survive_updates(chip: Chip, first: u32) {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut s = settings(project.path(), "1.0.0", port(&server));
    let generic = bake(chip, &s, IMAGE_SIZE);
    let boards: Vec<(VirtualBoard, DeviceSettings)> = [own("kitchen", "net-A"), own("hall", "net-B")]
        .into_iter()
        .enumerate()
        .map(|(i, own)| {
            let opts = BoardOptions { device: quick(), ..BoardOptions::new(chip, first + i as u32) };
            (VirtualBoard::start(opts).unwrap(), own)
        })
        .collect();
    for (board, own) in &boards {
        flash_with(board, Some(generic.clone()), Some(own.clone())).await;
    }
    for (board, own) in &boards {
        let st = board
            .wait_until(T, |st| st.last_outcome == Some(CheckOutcome::UpToDate))
            .await
            .unwrap_or_else(|st| panic!("{st:?}\n{}", board.log().join("\n")));
        assert_eq!(st.name, own.name);
        assert_eq!(st.wifi_ssid, own.wifi.as_ref().map(|w| w.ssid.clone()));
    }

    s.version = "2.0.0".into();
    project.publish(&bake(chip, &s, IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();
    for (board, own) in &boards {
        let st = board
            .wait_until(T, |st| {
                st.version.as_deref() == Some("2.0.0") && st.last_outcome == Some(CheckOutcome::UpToDate)
            })
            .await
            .unwrap_or_else(|st| panic!("{st:?}\n{}", board.log().join("\n")));
        assert_eq!(st.name, own.name, "the update replaced the device's name");
        assert_eq!(st.wifi_ssid, own.wifi.as_ref().map(|w| w.ssid.clone()), "the update replaced its Wi-Fi");
    }
    server.shutdown().await;
    let (out, stdout, stderr) = run(otaforge(project.path()).args(["devices", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let devices: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    for (board, own) in &boards {
        let mac = board.identity().sta_mac();
        let d = devices
            .iter()
            .find(|d| d["mac"] == mac.as_str())
            .unwrap_or_else(|| panic!("{mac} not in {stdout}"));
        assert_eq!(d["name"], own.name.as_str(), "{stdout}");
    }

    // New Wi-Fi for the kitchen board, without reflashing: its app image stays byte for byte.
    let (kitchen, _) = &boards[0];
    let app_at = otaforge_sim::device::app_offset(chip);
    kitchen.reset_to_bootloader();
    kitchen.wait_until(T, |st| st.activity == Activity::Off).await.unwrap();
    let before = std::fs::read(kitchen.flash_path()).unwrap()[app_at..app_at + IMAGE_SIZE].to_vec();
    flash_with(kitchen, None, Some(own("kitchen", "net-C"))).await;
    let after = std::fs::read(kitchen.flash_path()).unwrap()[app_at..app_at + IMAGE_SIZE].to_vec();
    assert!(before == after, "provisioning changed the app image");
    let st = kitchen
        .wait_until(T, |st| st.wifi_ssid.as_deref() == Some("net-C") && st.last_outcome.is_some())
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", kitchen.log().join("\n")));
    assert_eq!((st.name.as_str(), st.version.as_deref()), ("kitchen", Some("2.0.0")));
    for (board, _) in boards {
        board.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esp8266_device_settings_survive_updates() {
    settings_survive_updates(Chip::Esp8266, 0x50_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esp32c3_device_settings_survive_updates() {
    settings_survive_updates(Chip::Esp32C3, 0x50_0101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_baked_with_a_name_moves_it_to_the_device_area() {
    // Today's images carry the name in the config block; the firmware copies it at first boot,
    // so the next (generic) update keeps it.
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut s = settings(project.path(), "1.0.0", port(&server));
    let mut legacy = s.clone();
    legacy.device_name = "porch".into();
    let board =
        VirtualBoard::start(BoardOptions { device: quick(), ..BoardOptions::new(Chip::Esp8266, 0x50_0201) })
            .unwrap();
    flash_with(&board, Some(bake(Chip::Esp8266, &legacy, IMAGE_SIZE)), None).await;
    board.wait_until(T, |st| st.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    assert_eq!(board.status().name, "porch");
    s.version = "2.0.0".into();
    project.publish(&bake(Chip::Esp8266, &s, IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();
    let st = board
        .wait_until(T, |st| st.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", board.log().join("\n")));
    assert_eq!(st.name, "porch", "{}", board.log().join("\n"));
    board.stop().await;
    server.shutdown().await;
}
