//! What users paste elsewhere has a Copy button: the CA's PEM and the fingerprints in step 1, the
//! poll URL and fingerprints in step 4, a device's MAC. Each puts exactly that on the clipboard
//! (egui's copy command, which eframe hands to the system clipboard).

use egui_kittest::kittest::Queryable;
use otaforge::ui::serve::{Tab, button_label, labels};
use otaforge_store::{Device, Store, now_unix};

use crate::support::Project;
use crate::ui_support::{app_with, copied, open_step, press, step_until};

#[test]
fn the_certificate_step_copies_the_pem_and_both_fingerprints() {
    let project = Project::new();
    let mut h = app_with(project.path(), egui::vec2(1000.0, 1400.0), None);
    step_until(&mut h, "the PEM read", |h| h.query_by_label("Copy the CA certificate (PEM)").is_some());
    let report = h.state().certificate.report.clone().unwrap();

    press(&mut h, "Copy the CA certificate (PEM)");
    assert_eq!(copied(&h), vec![project.ca_pem.clone()]);
    press(&mut h, "Copy the CA SHA-256 fingerprint");
    assert_eq!(copied(&h), vec![report.ca.as_ref().unwrap().sha256.clone()]);
    press(&mut h, "Copy the server SHA-256 fingerprint");
    assert_eq!(copied(&h), vec![report.server.sha256.clone()]);
}

#[test]
fn the_serve_step_copies_the_poll_url_the_fingerprints_and_a_mac() {
    let project = Project::new();
    let mac = "18:FE:34:CC:00:01";
    let mut device = Device::new(mac, "ESP8266", "stable", "10.0.0.7", now_unix() - 60);
    device.name = "porch".into();
    Store::open(project.path()).unwrap().save_devices(&[device], &[]).unwrap();

    let mut h = app_with(project.path(), egui::vec2(1000.0, 700.0), None);
    h.step();
    open_step(&mut h, "4. Serve");
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    press(&mut h, labels::START);
    step_until(&mut h, "the server", |h| h.state().serve.address().is_some());
    h.step();
    let port = h.state().serve.address().unwrap().port();
    let report = otaforge_pki::load(project.path(), &[]).unwrap().unwrap();

    press(&mut h, "Copy the poll URL");
    assert_eq!(copied(&h), vec![format!("https://ota.test:{port}/update")]);
    press(&mut h, "Copy the server certificate fingerprint");
    assert_eq!(copied(&h), vec![report.server.sha256.clone()]);
    press(&mut h, "Copy the trusted fingerprint");
    assert_eq!(copied(&h), vec![report.anchor_fingerprint().to_string()]);

    h.state_mut().serve.show_tab(Tab::Devices);
    step_until(&mut h, "the device row", |h| h.query_by_label(mac).is_some());
    // From the row's menu…
    press(&mut h, &button_label(mac));
    h.step();
    press(&mut h, &format!("Copy the MAC {mac}"));
    assert_eq!(copied(&h), vec![mac.to_string()]);
    // …and from its detail window.
    h.get_by_label(mac).click();
    step_until(&mut h, "the detail", |h| h.query_by_label("Copy the MAC").is_some());
    press(&mut h, "Copy the MAC");
    assert_eq!(copied(&h), vec![mac.to_string()]);
}
