//! The Devices list as a user works it: names (reported and given here), an order that polls do
//! not shuffle, when each device is next due, and each row's actions — rename, forget, history,
//! open monitor — against the app's own server and the store.

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use otaforge::ui::OtaForgeApp;
use otaforge::ui::serve::{Tab, button_label, labels};
use otaforge_store::{Device, Store, now_unix};

use super::open_serve;
use crate::support::{Project, device_get, esp8266_headers, md5_hex};
use crate::ui_support::{app, step_until, type_into};

/// The app on the Devices tab with its server started; the server's address.
fn serving(project: &Project) -> (Harness<'static, OtaForgeApp>, std::net::SocketAddr) {
    let mut h = app(project.path());
    open_serve(&mut h);
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    step_until(&mut h, "the server", |h| h.state().serve.address().is_some());
    h.state_mut().serve.show_tab(Tab::Devices);
    h.step();
    let addr = h.state().serve.address().unwrap();
    (h, addr)
}

/// One update check by `mac`, reporting `name` as the reference firmware does.
fn check_in(project: &Project, addr: std::net::SocketAddr, mac: &str, name: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("https://ota.test:{}/update?name={name}", addr.port());
    let headers = esp8266_headers(mac, Some("1.0.0"), &md5_hex(b"running"));
    let answer = rt.block_on(device_get(&project.client(addr), &url, &headers));
    assert_eq!(answer.status(), 304);
}

/// The MACs of the rows, top to bottom, as drawn.
fn rows(h: &Harness<'_, OtaForgeApp>, macs: &[&str]) -> Vec<String> {
    let mut shown: Vec<(f32, String)> =
        macs.iter().filter_map(|m| h.query_by_label(m).map(|n| (n.rect().min.y, m.to_string()))).collect();
    shown.sort_by(|a, b| a.0.total_cmp(&b.0));
    shown.into_iter().map(|(_, m)| m).collect()
}

fn reported_name(h: &Harness<'_, OtaForgeApp>, mac: &str) -> Option<String> {
    h.state().serve.devices.get(mac).map(|d| d.name.clone())
}

fn open_action(h: &mut Harness<'static, OtaForgeApp>, mac: &str, action: &str) {
    // A popup or dialog is laid out unseen in its first frame, and shown in the next.
    h.get_by_label(&button_label(mac)).click();
    h.run_steps(2);
    h.get_by_label(action).click();
    h.run_steps(3);
}

#[test]
fn names_show_the_order_survives_polls_and_the_history_opens_from_a_row() {
    let project = Project::new();
    let now = now_unix();
    let (a, b, c, d) = ("18:FE:34:DD:00:0A", "18:FE:34:DD:00:0B", "18:FE:34:DD:00:0C", "18:FE:34:DD:00:0D");
    {
        let mut store = Store::open(project.path()).unwrap();
        let seeded: Vec<Device> = [(a, "kitchen", 300), (b, "porch", 200), (c, "", 100)]
            .iter()
            .map(|&(mac, name, ago)| {
                let mut dev = Device::new(mac, "ESP8266", "stable", "10.0.0.9", now - 7200);
                dev.name = name.into();
                dev.last_seen = now - ago;
                dev.poll_interval_s = Some(630);
                dev
            })
            .collect();
        store.save_devices(&seeded, &[]).unwrap();
        assert!(store.rename_device(b, "Porch light").unwrap());
    }
    let (mut h, addr) = serving(&project);
    step_until(&mut h, "the stored devices", |h| h.state().serve.devices.len() == 3);
    h.step();
    h.get_by_label("kitchen");
    h.get_by_label("Porch light");
    assert!(h.query_by_label("porch").is_none(), "the name given here stands over the reported one");
    h.get_by_label("in 5 min"); // a: seen 300 s ago, checks every 630 s
    assert_eq!(rows(&h, &[a, b, c]), [c, b, a], "most recently seen first");

    // Two polls: a, then b, check in (a full re-sort would put them on top).
    check_in(&project, addr, a, "kitchen-2");
    step_until(&mut h, "a's check-in", |h| reported_name(h, a).as_deref() == Some("kitchen-2"));
    h.step();
    assert_eq!(rows(&h, &[a, b, c]), [c, b, a], "rows keep their places across a poll");
    h.get_by_label("kitchen-2");
    check_in(&project, addr, b, "porch");
    step_until(&mut h, "b's check-in", |h| {
        h.state().serve.devices.get(b).is_some_and(|d| d.last_seen >= now)
    });
    h.step();
    assert_eq!(rows(&h, &[a, b, c]), [c, b, a], "and across the next");
    h.get_by_label("Porch light");
    // A new device goes last; nothing above it moves.
    check_in(&project, addr, d, "garage");
    step_until(&mut h, "the new device", |h| h.state().serve.devices.len() == 4);
    h.step();
    assert_eq!(rows(&h, &[a, b, c, d]), [c, b, a, d]);
    h.get_by_label(labels::SORT_AGAIN).click();
    h.step();
    h.step();
    assert_eq!(rows(&h, &[a, b, c, d]).last().map(String::as_str), Some(c), "sorted again: c is oldest");
    assert!(h.query_by_label(labels::SORT_AGAIN).is_none());

    // History, from a right click on a's row: its requests, with the headers it sent.
    h.get_by_label(a).click_secondary();
    h.run_steps(2);
    h.get_by_label(labels::HISTORY).click();
    h.run_steps(2);
    step_until(&mut h, "the history", |h| h.state().serve.devices.history.is_some());
    h.step();
    h.get_by_label(&format!("Device {a}"));
    let (of, requests) = h.state().serve.devices.history.clone().unwrap();
    assert_eq!(of, a);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].headers.contains(a), "{:?}", requests[0].headers);
    h.get_by_label_contains(&format!("GET {}", requests[0].path));
}

#[test]
fn rename_forget_and_open_monitor_from_a_row() {
    let project = Project::new();
    let (mut h, addr) = serving(&project);
    let mac = "18:FE:34:DD:01:01";
    let stored = || Store::open(project.path()).unwrap().device(mac).unwrap();
    check_in(&project, addr, mac, "kitchen");
    step_until(&mut h, "the device", |h| h.state().serve.devices.len() == 1);
    h.step();
    h.get_by_label("kitchen");

    // Rename: shown at once, kept in the store, and a later check-in does not undo it.
    open_action(&mut h, mac, labels::RENAME);
    type_into(&mut h, labels::NAME_FIELD, "Shelf");
    h.get_by_label(labels::SAVE_NAME).click();
    step_until(&mut h, "the rename", |h| {
        h.state().serve.devices.get(mac).is_some_and(|d| d.shown_name() == "Shelf")
    });
    h.step();
    h.get_by_label("Shelf");
    assert_eq!(stored().unwrap().user_name, "Shelf");
    check_in(&project, addr, mac, "kitchen-2");
    step_until(&mut h, "the next check-in", |h| reported_name(h, mac).as_deref() == Some("kitchen-2"));
    step_until(&mut h, "it saved", |_| stored().is_some_and(|d| d.name == "kitchen-2"));
    h.step();
    h.get_by_label("Shelf");
    assert_eq!(stored().unwrap().user_name, "Shelf", "the server's save kept the name given here");
    // An empty name goes back to the reported one.
    open_action(&mut h, mac, labels::RENAME);
    h.get_by_label(labels::NAME_FIELD).set_text_value_accesskit("");
    h.step();
    h.get_by_label(labels::SAVE_NAME).click();
    step_until(&mut h, "the name cleared", |_| stored().is_some_and(|d| d.user_name.is_empty()));
    step_until(&mut h, "the reported name", |h| h.query_by_label("kitchen-2").is_some());

    // Open monitor: disabled, saying why, while no board with this MAC is on USB…
    h.get_by_label(&button_label(mac)).click();
    h.run_steps(2);
    assert!(h.get_by_label(labels::OPEN_MONITOR).accesskit_node().is_disabled());
    h.key_press(egui::Key::Escape);
    h.step();
    // …and opening the Flash step's monitor on its port once the Flash step has found it there.
    let port = "/dev/otaforge-test-no-such-port";
    h.state_mut().flash.ports = Some(vec![otaforge_flash::PortInfo {
        path: port.into(),
        description: "test port".into(),
        usb: Some((0x10c4, 0xea60)),
        likelihood: otaforge_flash::Likelihood::EspBridge,
    }]);
    h.state_mut().flash.board = Some(otaforge_flash::BoardInfo {
        port: port.into(),
        chip: otaforge_firmware::Chip::Esp8266,
        mac: Some(mac.into()),
        flash_size: Some(4 << 20),
        baud: 115_200,
        stub: false,
    });
    h.step();
    open_action(&mut h, mac, labels::OPEN_MONITOR);
    assert_eq!(h.state().flash.port, port);
    h.get_by_label("Serial monitor");
    h.get_by_label_contains("4. Serve").click();
    h.step();
    h.step();

    // Forget, after a confirmation that says what it means; it comes back at its next check.
    open_action(&mut h, mac, labels::FORGET);
    h.get_by_label_contains("reappears at its next check");
    h.get_by_label(labels::FORGET_CONFIRM).click();
    step_until(&mut h, "the row gone", |h| h.state().serve.devices.is_empty());
    assert!(stored().is_none(), "forgotten in the store");
    assert!(Store::open(project.path()).unwrap().requests(mac, 10).unwrap().is_empty());
    check_in(&project, addr, mac, "kitchen-2");
    step_until(&mut h, "its return", |h| h.state().serve.devices.len() == 1);
    h.step();
    h.get_by_label("kitchen-2");
}
