//! A worker event that redraws one part of a step must not renumber the widgets of the other
//! parts: egui would drop a click between press and release, and the keyboard focus of a field
//! being typed into (see [`super::widgets::section`]). These tests feed the app the events that
//! arrive on their own schedule (this machine's addresses, the port list) and compare every
//! control's id before and after.

use std::collections::BTreeMap;

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};

use super::OtaForgeApp;
use crate::worker::{Event, ExportFormat, FlashEvent};

fn app(dir: &std::path::Path) -> Harness<'static, OtaForgeApp> {
    let dir = dir.to_path_buf();
    Harness::builder()
        .with_size(egui::vec2(1100.0, 1400.0))
        .build_eframe(move |cc| OtaForgeApp::new(cc, dir).expect("worker starts"))
}

/// A project whose CA and server certificate exist, as after "Generate cert".
fn with_certificate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let req = otaforge_pki::IssueRequest::new(vec![otaforge_pki::Host::parse("ota.test").unwrap()]);
    otaforge_pki::generate(dir.path(), &req, false).unwrap();
    dir
}

fn step_until(h: &mut Harness<'_, OtaForgeApp>, what: &str, done: impl Fn(&OtaForgeApp) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done(h.state()) {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        h.step();
    }
    h.step();
}

/// Every button, field, check box and radio button with a label shown once: its id, by label.
fn controls(h: &Harness<'_, OtaForgeApp>) -> BTreeMap<String, String> {
    use egui::accesskit::Role;
    let mut seen: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let interactive = h.query_all_by(|n| {
        matches!(n.role(), Role::Button | Role::TextInput | Role::CheckBox | Role::RadioButton)
    });
    for node in interactive {
        let n = node.accesskit_node();
        if let Some(label) = n.label() {
            seen.entry(label).or_default().push(format!("{:?}", n.id()));
        }
    }
    seen.into_iter()
        .filter(|(_, ids)| ids.len() == 1)
        .map(|(label, mut ids)| (label, ids.remove(0)))
        .collect()
}

/// The controls in both maps that changed id, and whether each of `required` was in both.
fn renumbered(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    required: &[&str],
) -> Vec<String> {
    for label in required {
        assert!(before.contains_key(*label) && after.contains_key(*label), "{label:?} not on screen");
    }
    before
        .iter()
        .filter(|(label, id)| after.get(*label).is_some_and(|a| a != *id))
        .map(|(l, _)| l.clone())
        .collect()
}

#[test]
fn this_machines_addresses_arriving_late_renumber_nothing_below_them() {
    let dir = with_certificate();
    let mut h = app(dir.path());
    step_until(&mut h, "the step loaded", |app| {
        let c = &app.certificate;
        c.report.is_some() && c.signing.keys.is_some() && c.local.is_some()
    });
    // As the window opens: the certificate read back, this machine's addresses not yet found.
    let mut found = h.state_mut().certificate.local.take().unwrap();
    h.step();
    let before = controls(&h);

    for ip in ["198.51.100.7", "203.0.113.9"] {
        found
            .addresses
            .push(otaforge_pki::local::LocalAddress { interface: "wlan9".into(), ip: ip.parse().unwrap() });
    }
    let app = h.state_mut();
    app.certificate.on_event(Event::LocalHosts(found), &app.worker);
    h.step();
    h.get_by_label("Use 203.0.113.9");
    let after = controls(&h);

    let required = [super::signing_key::NEW_KEYS, "Replace CA…", super::certificate_labels::PEM_FIELD];
    assert_eq!(renumbered(&before, &after, &required), Vec::<String>::new());
}

#[test]
fn the_ca_pem_arriving_late_renumbers_neither_export_field() {
    let dir = with_certificate();
    let mut h = app(dir.path());
    step_until(&mut h, "the step loaded", |app| app.loaded() && app.certificate.export.pem.is_some());
    // As the window opens: the certificate read back, its PEM not yet.
    let pem = h.state_mut().certificate.export.pem.take().unwrap();
    h.step();
    let before = controls(&h);

    let app = h.state_mut();
    app.certificate.on_event(Event::Anchor { format: ExportFormat::Pem, text: Ok(pem) }, &app.worker);
    h.step();
    h.get_by_label("Copy the CA certificate (PEM)");
    let after = controls(&h);

    use super::certificate_labels::{EXPORT_HEADER, EXPORT_PEM, HEADER_FIELD, PEM_FIELD};
    let required = [PEM_FIELD, EXPORT_PEM, HEADER_FIELD, EXPORT_HEADER, super::signing_key::NEW_KEYS];
    assert_eq!(renumbered(&before, &after, &required), Vec::<String>::new());
}

#[test]
fn a_board_plugged_in_renumbers_nothing_below_the_port_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app(dir.path());
    h.get_by_label_contains("3. Flash").click();
    step_until(&mut h, "the port list", |app| app.flash.ports.is_some());
    let before = controls(&h);

    let mut ports = h.state().flash.ports.clone().unwrap();
    ports.push(otaforge_flash::PortInfo {
        path: "/dev/ttyUSB7".into(),
        description: "CP210x USB-serial (Silicon Labs)".into(),
        usb: Some((0x10c4, 0xea60)),
        likelihood: otaforge_flash::Likelihood::EspBridge,
    });
    h.state_mut().flash.on_event(FlashEvent::Ports(ports));
    h.step();
    h.get_by_label_contains("/dev/ttyUSB7");
    let after = controls(&h);

    let labels = super::flash::labels::FLASH;
    let required = [labels, super::flash::labels::FILE, super::flash::labels::MONITOR];
    assert_eq!(renumbered(&before, &after, &required), Vec::<String>::new());
}
