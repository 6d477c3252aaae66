//! The Serve step driven headless, as a user would: drop a .bin, read the publish dialog, publish;
//! drop bad files and see why nothing was published; start the server and watch a device that
//! talks real HTTPS go from downloading to installed.

mod devices_list;
mod release_faults;
use crate::support;
use crate::ui_support;

use egui_kittest::kittest::{NodeT, Queryable};
use otaforge::ui::serve::{Tab, labels};
use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_store::Store;
use support::{Project, device_get, esp8266_headers, esp8266_image, md5_hex};
use ui_support::{app, drop_file, step_until, type_into};

fn open_serve(h: &mut egui_kittest::Harness<'static, otaforge::ui::OtaForgeApp>) {
    h.step();
    h.get_by_label_contains("4. Serve").click();
    h.step();
    h.step();
}

fn problems(h: &egui_kittest::Harness<'_, otaforge::ui::OtaForgeApp>) -> Option<Vec<String>> {
    h.state().serve.dialog.as_ref().and_then(|d| d.current_check()).map(|c| c.problems.clone())
}

fn releases(dir: &std::path::Path) -> Vec<otaforge_store::Release> {
    Store::open(dir).unwrap().releases(None).unwrap()
}

#[test]
fn dropping_a_bin_shows_the_inspection_then_publishes_it() {
    let project = Project::new();
    let input = project.path().join("kitchen.bin");
    std::fs::write(&input, esp8266_image(300_000, 1)).unwrap();

    let mut h = app(project.path());
    open_serve(&mut h);
    drop_file(&mut h, &input);
    step_until(&mut h, "the inspection", |h| {
        h.state().serve.dialog.as_ref().is_some_and(|d| d.check.is_some())
    });
    h.step();
    h.get_by_label("Publish firmware");
    h.get_by_label("ESP8266");
    h.get_by_label_contains("(300");
    h.get_by_label("none: type one below");
    // No version yet: refused with the reason, the button stays disabled.
    h.get_by_label_contains("No version given");
    assert!(h.get_by_label(labels::PUBLISH).accesskit_node().is_disabled());

    type_into(&mut h, labels::VERSION, "1.0.0");
    step_until(&mut h, "the check of 1.0.0", |h| {
        h.state().serve.dialog.as_ref().and_then(|d| d.current_check()).is_some_and(|c| c.problems.is_empty())
    });
    h.step();
    h.get_by_label_contains("Devices will accept this image");
    assert!(releases(project.path()).is_empty(), "nothing is published before the user confirms");
    h.get_by_label(labels::PUBLISH).click();
    step_until(&mut h, "the publish", |h| h.state().serve.dialog.is_none());
    step_until(&mut h, "the release list", |h| !h.state().serve.releases.is_empty());
    h.step();
    h.get_by_label_contains("Published 1.0.0 on \"stable\"");
    h.get_by_label("1.0.0 — current");
    let stored = releases(project.path());
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].version.as_str(), stored[0].channel.as_str()), ("1.0.0", "stable"));
    assert_eq!(stored[0].file_name, "kitchen.bin");
}

#[test]
fn bad_files_say_why_and_nothing_is_published() {
    let project = Project::new();
    project.publish(&esp8266_image(200_000, 1), "2.0.0", "stable");
    let html = project.path().join("download.bin");
    std::fs::write(&html, "<!DOCTYPE html><html><body>Not found</body></html>").unwrap();
    let esp32 = project.path().join("esp32.bin");
    std::fs::write(&esp32, ImageBuilder::for_chip(Chip::Esp32).version("3.0.0").target_size(150_000).build())
        .unwrap();
    let older = project.path().join("older.bin");
    std::fs::write(&older, esp8266_image(200_000, 2)).unwrap();

    let mut h = app(project.path());
    open_serve(&mut h);

    drop_file(&mut h, &html);
    step_until(&mut h, "the HTML check", |h| problems(h).is_some());
    h.step();
    h.get_by_label_contains("HTML page, not a firmware image");
    assert!(h.get_by_label(labels::PUBLISH).accesskit_node().is_disabled());
    h.get_by_label(labels::CANCEL).click();
    h.step();
    assert!(h.state().serve.dialog.is_none());

    drop_file(&mut h, &esp32);
    type_into(&mut h, labels::VERSION, "3.0.0");
    step_until(&mut h, "the chip check", |h| problems(h).is_some_and(|p| !p.is_empty()));
    h.step();
    h.get_by_label_contains("serves ESP8266 images; this one is for ESP32");
    assert!(h.get_by_label(labels::PUBLISH).accesskit_node().is_disabled());
    h.get_by_label(labels::CANCEL).click();
    h.step();

    drop_file(&mut h, &older);
    type_into(&mut h, labels::VERSION, "1.9.0");
    step_until(&mut h, "the version check", |h| problems(h).is_some_and(|p| !p.is_empty()));
    h.step();
    h.get_by_label_contains("Version 1.9.0 is not newer than 2.0.0");
    assert!(h.get_by_label(labels::PUBLISH).accesskit_node().is_disabled());

    let stored = releases(project.path());
    assert_eq!(stored.len(), 1, "only the release made before the test: {stored:?}");
}

#[test]
fn a_device_row_goes_downloading_then_installed() {
    let project = Project::new();
    let old = esp8266_image(300_000, 1);
    // Bigger than the kernel's largest socket send buffer (4 MB), so an unread download stays in
    // flight and "downloading" can be seen; the device says it has a 16 MB flash with room for it.
    let new = esp8266_image(6_000_000, 2);
    project.publish(&new, "1.1.0", "stable");

    let mut h = app(project.path());
    open_serve(&mut h);
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    step_until(&mut h, "the server", |h| {
        h.state().serve.address().is_some()
            || matches!(h.state().serve.server, otaforge::ui::serve::ServerState::Failed(_))
    });
    let addr = h.state().serve.address().unwrap_or_else(|| panic!("{:?}", h.state().serve.server));
    h.step();
    h.get_by_label_contains(&format!("https://ota.test:{}/update", addr.port()));
    h.state_mut().serve.show_tab(Tab::Devices);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = project.client(addr);
    let url = format!("https://ota.test:{}/update", addr.port());
    let mac = "18:FE:34:AA:00:01";
    let roomy = |version, md5: &str| {
        let mut headers = esp8266_headers(mac, Some(version), md5);
        for (name, value) in &mut headers {
            match name.as_str() {
                "x-ESP8266-chip-size" => *value = (16 << 20).to_string(),
                "x-ESP8266-free-space" => *value = (8 << 20).to_string(),
                _ => {}
            }
        }
        headers
    };
    let headers = roomy("1.0.0", &md5_hex(&old));
    let device = rt.block_on(SlowDevice::start(addr, &project.ca_pem, &headers));
    assert!(device.head.starts_with("HTTP/1.1 200"), "{}", device.head);
    step_until(&mut h, "the row downloading", |h| {
        h.state().serve.devices.state_text(mac).is_some_and(|s| s.starts_with("downloading"))
    });
    h.step();
    h.get_by_label(mac);
    let shown = h.state().serve.devices.state_text(mac).unwrap();
    h.get_by_label(&shown);

    let body = rt.block_on(device.rest());
    assert_eq!(md5_hex(&body), md5_hex(&new), "the device got the release byte for byte");
    let response = rt.block_on(device_get(&client, &url, &roomy("1.1.0", &md5_hex(&new))));
    assert_eq!(response.status(), 304);
    step_until(&mut h, "the row installed", |h| {
        h.state().serve.devices.state_text(mac).is_some_and(|s| s.ends_with('✔'))
    });
    h.step();
    h.get_by_label("installed 1.1.0 ✔");

    // The detail: the device's requests with the headers it sent.
    h.get_by_label(mac).click();
    step_until(&mut h, "the history", |h| h.state().serve.devices.history.is_some());
    h.step();
    h.get_by_label(&format!("Device {mac}"));
    let (_, requests) = h.state().serve.devices.history.clone().unwrap();
    assert_eq!(requests.len(), 2, "{requests:?}");
    // Both requests, each with its headers (a download is recorded once the device has read it,
    // so the check-in that followed it may be recorded first).
    for version in ["1.0.0", "1.1.0"] {
        let sent = format!("x-esp8266-version: {version}");
        assert!(requests.iter().any(|r| r.headers.to_lowercase().contains(&sent)), "{requests:?}");
    }

    // The log tells the same story.
    let log: Vec<String> = h.state().serve.log.lines().map(|l| l.text.clone()).collect();
    assert!(log.iter().any(|l| l.starts_with("downloading 1.1.0")), "{log:?}");
    assert!(log.iter().any(|l| l == "installed 1.1.0 ✔"), "{log:?}");
}

#[test]
fn try_without_hardware_then_publish_the_newer_build() {
    let project = Project::new();
    let mut h = app(project.path());
    open_serve(&mut h);
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    step_until(&mut h, "the server", |h| h.state().serve.address().is_some());
    h.step();
    h.get_by_label(labels::TRY).click();
    step_until(&mut h, "the virtual device", |h| !h.state().serve.virtual_devices.is_empty());
    let info = h.state().serve.virtual_devices[0].clone();
    assert_eq!((info.version.as_str(), info.newer_version.as_str()), ("1.0.0", "1.1.0"));
    step_until(&mut h, "its first check", |h| {
        h.state().serve.devices.state_text(&info.mac).is_some_and(|s| s == "up to date")
    });
    h.step();
    h.get_by_label(&info.mac);
    h.get_by_label(&format!("{} (virtual)", info.name));

    h.get_by_label(labels::PUBLISH_DEMO).click();
    step_until(&mut h, "the check of the demo build", |h| {
        h.state().serve.dialog.as_ref().and_then(|d| d.current_check()).is_some_and(|c| c.problems.is_empty())
    });
    h.step();
    h.get_by_label("1.1.0"); // the version found in the image, filled in
    h.get_by_label(labels::PUBLISH).click();
    step_until(&mut h, "the virtual device installed", |h| {
        h.state().serve.devices.state_text(&info.mac).is_some_and(|s| s == "installed 1.1.0 ✔")
    });
    h.state_mut().serve.show_tab(Tab::Devices);
    h.step();
    h.get_by_label("installed 1.1.0 ✔");
    let device = Store::open(project.path()).unwrap().device(&info.mac).unwrap();
    assert!(device.is_some_and(|d| d.version.as_deref() == Some("1.1.0")));
}

#[test]
fn keyboard_opens_steps_escape_closes_the_dialog_and_an_idle_window_asks_for_no_frames() {
    let project = Project::new();
    let input = project.path().join("fw.bin");
    std::fs::write(&input, esp8266_image(100_000, 3)).unwrap();
    let mut h = app(project.path());
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num4);
    h.step();
    h.step();
    h.get_by_label("4. Serve");
    drop_file(&mut h, &input);
    step_until(&mut h, "the dialog", |h| h.state().serve.dialog.as_ref().is_some_and(|d| d.check.is_some()));
    h.key_press(egui::Key::Escape);
    h.step();
    h.step();
    assert!(h.state().serve.dialog.is_none(), "Escape closes the publish dialog");
    assert!(releases(project.path()).is_empty());

    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    // The server is up and the answers the window asked for when it opened are in (certificate,
    // keys, this machine's addresses, releases): none of them arrives late to cause a repaint.
    step_until(&mut h, "the server and the window's first answers", |h| {
        h.state().serve.address().is_some() && h.state().loaded()
    });
    // Nothing moves: the window settles instead of repainting continuously.
    let frames = h.try_run().expect("an idle window must stop asking for frames");
    assert!(frames < 10, "{frames} frames to settle");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Num1);
    h.step();
    h.step();
    h.get_by_label("1. Certificate");
}

#[test]
fn releases_roll_back_make_current_pause_share_and_promote_from_the_window() {
    let project = Project::new();
    project.publish(&esp8266_image(100_000, 1), "1.0.0", "stable");
    project.publish(&esp8266_image(100_000, 2), "1.1.0", "stable");
    project.publish(&esp8266_image(100_000, 3), "2.0.0", "beta");
    let stable = || Store::open(project.path()).unwrap().channel("stable").unwrap().unwrap();
    let mut h = app(project.path());
    open_serve(&mut h);
    step_until(&mut h, "the releases", |h| h.state().serve.releases.len() == 3);
    h.step();

    h.get_by_label("Roll back \"stable\"").click();
    step_until(&mut h, "the rollback", |h| h.state().serve.message.is_some());
    assert_eq!(stable().current_sketch, Some(1));
    step_until(&mut h, "the list", |h| h.state().serve.channels.iter().any(|c| c.current_sketch == Some(1)));
    h.step();
    h.get_by_label("Make #2 current").click();
    step_until(&mut h, "make current", |_| stable().current_sketch == Some(2));

    h.get_by_label("Pause \"stable\"").click();
    step_until(&mut h, "the pause", |_| stable().paused);
    step_until(&mut h, "the button", |h| h.query_by_label("Resume \"stable\"").is_some());
    h.get_by_label("Resume \"stable\"").click();
    step_until(&mut h, "the resume", |_| !stable().paused);

    h.get_by_role_and_label(egui::Role::Slider, "Rollout share of \"stable\"").set_value_accesskit(25.0);
    step_until(&mut h, "the share button", |h| h.query_by_label("Offer to 25%").is_some());
    h.get_by_label("Offer to 25%").click();
    step_until(&mut h, "the share", |_| stable().rollout_percent == 25);

    type_into(&mut h, "Promote 2.0.0 to channel", "stable");
    h.get_by_label("Promote \"beta\"").click();
    step_until(&mut h, "the promotion", |_| {
        let s = Store::open(project.path()).unwrap();
        let id = stable().current_sketch.unwrap();
        s.release(id).unwrap().version == "2.0.0"
    });
    step_until(&mut h, "its message", |h| {
        h.state().serve.message.as_ref().is_some_and(|(ok, m)| *ok && m.contains("2.0.0"))
    });
}

#[test]
fn closing_the_window_stops_the_server_with_the_inventory_on_disk() {
    let project = Project::new();
    let mut h = app(project.path());
    open_serve(&mut h);
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    step_until(&mut h, "the server", |h| h.state().serve.address().is_some());
    let addr = h.state().serve.address().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("https://ota.test:{}/update", addr.port());
    let mac = "18:FE:34:AA:00:09";
    let headers = esp8266_headers(mac, Some("1.0.0"), &md5_hex(b"x"));
    let answer = rt.block_on(device_get(&project.client(addr), &url, &headers));
    assert_eq!(answer.status(), 304);

    eframe::App::on_exit(h.state_mut(), None);
    let stored = Store::open(project.path()).unwrap().device(mac).unwrap();
    assert!(stored.is_some(), "the device's check-in is on disk when the window has closed");
    assert!(std::net::TcpStream::connect(addr).is_err(), "the server no longer listens");
}

/// A device on a slow link: it reads the answer's head, then nothing until told to, so its
/// download stays in flight (a tiny receive buffer keeps the server from finishing early).
struct SlowDevice {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    head: String,
    body: Vec<u8>,
}

impl SlowDevice {
    async fn start(addr: std::net::SocketAddr, ca_pem: &str, headers: &[(String, String)]) -> SlowDevice {
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots)
            .with_no_client_auth();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("ota.test").unwrap();
        let mut stream =
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
        let mut request = format!("GET /update HTTP/1.0\r\nHost: ota.test:{}\r\n", addr.port());
        for (n, v) in headers {
            request.push_str(&format!("{n}: {v}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        let end = loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the head: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&got[..end]).into_owned();
        SlowDevice { stream, head, body: got[end..].to_vec() }
    }

    /// Reads the rest of the body (Content-Length bytes) and closes, as ESP8266httpUpdate does.
    async fn rest(mut self) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let len: usize = self
            .head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
            })
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length");
        let mut body = std::mem::take(&mut self.body);
        let mut buf = vec![0u8; 64 * 1024];
        while body.len() < len {
            let n = self.stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the server closed after {} of {len} bytes", body.len());
            body.extend_from_slice(&buf[..n]);
        }
        let _ = self.stream.shutdown().await;
        body
    }
}

#[test]
fn the_publish_dialog_refuses_what_would_strand_a_device_or_leak_a_secret() {
    use otaforge_firmware::config_block;
    use otaforge_firmware::settings::{BakeForm, baked_settings};
    let project = Project::new();
    let other = Project::new();
    let reference = || {
        let mut image = ImageBuilder::arduino_esp8266().target_size(96 * 1024).build();
        config_block::reserve(&mut image).unwrap();
        image
    };
    let form = BakeForm { host: "ota.test".into(), version: "1.1.0".into(), ..BakeForm::default() };
    let fleet = baked_settings(project.path(), &form, true).unwrap();
    let mut with_wifi = fleet.clone();
    with_wifi.wifi_ssid = "home".into();
    with_wifi.wifi_password = "correct horse battery".into();
    let cases = [
        ("wifi.bin", config_block::bake(&reference(), &with_wifi).unwrap(), None, "Wi-Fi network \"home\""),
        (
            "theirs.bin",
            config_block::bake(&reference(), &baked_settings(other.path(), &form, true).unwrap()).unwrap(),
            None,
            "trusts another CA",
        ),
        (
            "demo.bin",
            config_block::bake(
                &otaforge_sim::device::reference_image(Chip::Esp8266, "1.1.0", 96 * 1024),
                &fleet,
            )
            .unwrap(),
            None,
            "synthetic image",
        ),
        ("typed.bin", config_block::bake(&reference(), &fleet).unwrap(), Some("2.0.0"), "contradicts"),
    ];
    let mut h = app(project.path());
    open_serve(&mut h);
    for (name, bytes, typed, why) in cases {
        let file = project.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        drop_file(&mut h, &file);
        step_until(&mut h, "the first check", |h| problems(h).is_some());
        if let Some(v) = typed {
            // The field holds the image's own version by now; replace it, as a user would.
            step_until(&mut h, "the version filled in", |h| {
                h.state().serve.dialog.as_ref().is_some_and(|d| !d.version.is_empty())
            });
            h.get_by_label(labels::VERSION).focus();
            h.step();
            h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
            h.step();
            h.get_by_label(labels::VERSION).type_text(v);
            h.step();
        }
        step_until(&mut h, why, |h| problems(h).is_some_and(|p| p.iter().any(|p| p.contains(why))));
        h.step();
        h.get_by_label_contains(why);
        assert!(h.get_by_label(labels::PUBLISH).accesskit_node().is_disabled(), "{name}");
        h.get_by_label(labels::CANCEL).click();
        h.step();
    }
    assert!(releases(project.path()).is_empty());
}

/// Signing and compressing from the window: ticked, the dialog says which key signs and how much
/// smaller the download is; on a channel whose firmware verifies signatures the file is signed
/// without being asked (as `otaforge publish` does) and the box cannot be cleared.
#[test]
fn the_publish_dialog_signs_and_compresses_and_signs_by_itself_where_devices_verify() {
    use otaforge_firmware::config_block;
    use otaforge_firmware::settings::{BakeForm, bake_image};
    use otaforge_pki::signing::{self, Family};
    let project = Project::new();
    let keys = signing::generate(project.path(), &Family::ALL, false).unwrap();
    let fp = keys.current(Family::Esp8266).unwrap().public().fingerprint();
    let baked = |version: &str| {
        let mut image = ImageBuilder::arduino_esp8266().target_size(200 * 1024).build();
        config_block::reserve(&mut image).unwrap();
        let form = BakeForm { host: "ota.test".into(), version: version.into(), ..BakeForm::default() };
        bake_image(project.path(), &image, &form).unwrap().0
    };
    let publish =
        |h: &mut egui_kittest::Harness<'static, otaforge::ui::OtaForgeApp>, name: &str, tick: &[&str]| {
            let file = project.path().join(name);
            std::fs::write(&file, baked(name.trim_end_matches(".bin"))).unwrap();
            drop_file(h, &file);
            step_until(h, "the version filled in", |h| {
                h.state()
                    .serve
                    .dialog
                    .as_ref()
                    .and_then(|d| d.current_check())
                    .is_some_and(|c| c.found_version.is_some())
                    && h.state().serve.dialog.as_ref().is_some_and(|d| !d.version.is_empty())
            });
            h.step();
            for label in tick {
                h.get_by_label(label).click_accesskit();
                h.step();
            }
            step_until(h, "a passed check", |h| {
                h.state()
                    .serve
                    .dialog
                    .as_ref()
                    .and_then(|d| d.current_check())
                    .is_some_and(|c| c.checked.is_some())
            });
            h.step();
        };

    let mut h = app(project.path());
    open_serve(&mut h);
    publish(&mut h, "1.1.0.bin", &[labels::SIGN, labels::GZIP]);
    h.get_by_label_contains(&format!("signed by key {} (260-byte trailer)", &fp[..16]));
    h.get_by_label_contains(&format!("accept only updates signed by key {}", &fp[..16]));
    h.get_by_label_contains("% less)");
    h.get_by_label(labels::PUBLISH).click();
    step_until(&mut h, "the publish", |h| h.state().serve.dialog.is_none());
    let first = releases(project.path()).pop().unwrap();
    assert_eq!((first.signed_by.as_deref(), first.trusts.as_deref()), (Some(&fp[..]), Some(&fp[..])));
    assert!(first.size < 200 * 1024, "stored gzip'd: {} bytes", first.size);
    step_until(&mut h, "the release list", |h| !h.state().serve.releases.is_empty());
    h.step();
    h.get_by_label(&format!("signed by {0}, verifies {0}", &fp[..8]));

    // The channel's firmware now verifies: nothing ticked, the file is signed all the same.
    publish(&mut h, "1.2.0.bin", &[]);
    h.get_by_label_contains("this channel takes only signed firmware");
    assert!(h.get_by_label(labels::SIGN).accesskit_node().is_disabled());
    h.get_by_label(&format!("signed by key {} (260-byte trailer)", &fp[..16]));
    h.get_by_label(labels::PUBLISH).click();
    step_until(&mut h, "the publish", |h| h.state().serve.dialog.is_none());
    let second = releases(project.path()).into_iter().find(|r| r.version == "1.2.0").unwrap();
    assert_eq!(second.signed_by.as_deref(), Some(&fp[..]));
}
