//! The window at its smallest sensible size (800×600) and at the size it opens with (1000×700):
//! each step's main action is on screen without scrolling, nothing is cut off at the right edge
//! (tables wrap: a device's state, a log line), and no text anywhere is drawn under 11 px.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use otaforge::ui::certificate_labels::{GENERATE, HOST_FIELD};
use otaforge::ui::serve::{Tab, labels};
use otaforge::ui::{MIN_TEXT_SIZE, OtaForgeApp};
use otaforge_store::{Device, DeviceState, Store, now_unix};

use crate::support::{Project, device_get, esp8266_headers, esp8266_image, md5_hex};
use crate::ui_support::{
    app_with, drawn_texts, nothing_cut_off, on_screen, open_step, step_until, type_into,
};

const SMALL: egui::Vec2 = egui::vec2(800.0, 600.0);
const DEFAULT: egui::Vec2 = egui::vec2(1000.0, 700.0);

/// Why this failed device stands where it does: long enough to need two lines at 800 px.
const LONG_STATE: &str = "download broke off: the device stopped reading after 131072 of 1048576 bytes \
                          (its Wi-Fi dropped or it ran out of memory)";

/// No text the last frame drew is smaller than the app's minimum.
fn no_small_text(h: &Harness<'_, OtaForgeApp>, what: &str) {
    let texts = drawn_texts(h);
    assert!(!texts.is_empty(), "{what}: no text drawn at all?");
    let small: Vec<_> = texts.iter().filter(|(_, size)| *size < MIN_TEXT_SIZE).collect();
    assert!(small.is_empty(), "{what}: text under {MIN_TEXT_SIZE} px: {small:?}");
}

#[test]
fn the_certificate_step_fits_and_generate_is_on_screen() {
    for size in [SMALL, DEFAULT] {
        let dir = tempfile::tempdir().unwrap();
        let mut h = app_with(dir.path(), size, None);
        step_until(&mut h, "the first load", |h| h.query_by_label_contains("No certificates").is_some());
        // This machine's addresses arrive late and move what is below them: wait for them.
        step_until(&mut h, "the local hosts", |h| h.query_by_label_contains("This machine").is_some());
        type_into(&mut h, HOST_FIELD, "ota.test");
        h.step();
        on_screen(&h, GENERATE, size);
        nothing_cut_off(&h, "Certificate, no material");
        // Hit-testable: the pointer, not AccessKit, presses it.
        h.get_by_label(GENERATE).click();
        step_until(&mut h, "the certificate", |h| h.state().certificate.report.is_some());
        step_until(&mut h, "the PEM", |h| h.query_by_label("Copy the CA certificate (PEM)").is_some());
        nothing_cut_off(&h, "Certificate with material");
    }
}

/// A project with releases, 300 devices (the first with a long failure) and a running server
/// that devices have checked in with (each check-in is a long log line).
fn busy_serve(size: egui::Vec2, project: &Project) -> Harness<'static, OtaForgeApp> {
    project.publish(&esp8266_image(100_000, 1), "1.0.0", "beta");
    project.publish(&esp8266_image(100_000, 2), "1.1.0", "beta");
    let now = now_unix();
    let devices: Vec<Device> = (0..300)
        .map(|i| {
            let mac = format!("18:FE:34:EE:{:02X}:{:02X}", i / 256, i % 256);
            let mut d = Device::new(&mac, "ESP8266", "stable", "192.168.100.200", now - 7200);
            d.name = format!("sensor in room {i} of the east wing");
            d.version = Some("1.0.0-rc.1+build.20240101".into());
            d.last_seen = now - 30 - i;
            d.poll_interval_s = Some(600);
            if i == 0 {
                d.state = DeviceState::Failed;
                d.state_detail = LONG_STATE.into();
            }
            d
        })
        .collect();
    Store::open(project.path()).unwrap().save_devices(&devices, &[]).unwrap();
    let mut h = app_with(project.path(), size, None);
    h.step();
    open_step(&mut h, "4. Serve");
    on_screen(&h, labels::START, size);
    on_screen(&h, labels::PUBLISH_FIELD, size);
    nothing_cut_off(&h, "Serve, stopped");
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    step_until(&mut h, "the server", |h| h.state().serve.address().is_some());
    let addr = h.state().serve.address().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for i in 0..5 {
        let mac = format!("18:FE:34:EF:00:{i:02X}");
        let headers = esp8266_headers(&mac, Some("1.0.0"), &md5_hex(b"x"));
        let url = format!("https://ota.test:{}/update", addr.port());
        rt.block_on(device_get(&project.client(addr), &url, &headers));
    }
    step_until(&mut h, "the log lines", |h| h.state().serve.log.len() >= 5);
    h.step();
    h
}

#[test]
fn the_serve_step_fits_with_many_devices_and_long_log_lines() {
    for size in [SMALL, DEFAULT] {
        let project = Project::new();
        let mut h = busy_serve(size, &project);
        on_screen(&h, labels::STOP, size);
        on_screen(&h, labels::CHECK, size);
        for tab in [Tab::Releases, Tab::Devices, Tab::Downloads, Tab::Log] {
            h.state_mut().serve.show_tab(tab);
            h.run_steps(2);
            nothing_cut_off(&h, &format!("Serve, {tab:?} tab at {size:?}"));
        }
        h.state_mut().serve.show_tab(Tab::Devices);
        h.run_steps(2);
        type_into(&mut h, labels::FILTER, "18:FE:34:EE:00:00");
        h.run_steps(2);
        // The failed device's state is shown whole (it wraps), inside the window.
        on_screen(&h, &format!("failed: {LONG_STATE}"), size);
        h.state_mut().serve.show_tab(Tab::Log);
        h.run_steps(2);
        let line =
            h.get_all_by_label_contains("nothing has been published on this channel yet").next().unwrap();
        assert!(line.rect().max.x <= size.x, "a log line runs off the window: {:?}", line.rect());
    }
}

#[test]
fn no_step_draws_text_under_11_px() {
    let project = Project::new();
    let mut h = busy_serve(DEFAULT, &project);
    for tab in [Tab::Releases, Tab::Devices, Tab::Log] {
        h.state_mut().serve.show_tab(tab);
        h.run_steps(2);
        no_small_text(&h, &format!("Serve, {tab:?}"));
    }
    for step in ["1. Certificate", "2. Firmware", "3. Flash"] {
        open_step(&mut h, step);
        h.run_steps(2);
        no_small_text(&h, step);
    }
}
