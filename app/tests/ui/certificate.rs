//! The Certificate step driven the way a user drives it, headless (egui_kittest, no renderer):
//! type a host, click "Generate cert", see the fingerprint and names appear.

use crate::ui_support;

use egui_kittest::kittest::Queryable;
use ui_support::{app, step_until, type_into};

#[test]
fn typing_a_host_and_generating_shows_fingerprint_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app(dir.path());
    step_until(&mut h, "initial load", |h| {
        h.query_by_label_contains("No certificates in this project yet").is_some()
    });

    type_into(&mut h, "Update-server host", "ota.test, 192.168.1.70");
    h.get_by_label("Generate cert").click_accesskit();
    h.step();
    step_until(&mut h, "the generated report", |h| h.state().certificate.report.is_some());
    h.step();

    let report = h.state().certificate.report.clone().unwrap();
    assert_eq!(report.server.dns_sans, vec!["ota.test", "192.168.1.70"]);
    // What the user sees: both fingerprints and the names, in the window.
    h.get_by_label(&report.server.sha256);
    h.get_by_label(&report.ca.as_ref().unwrap().sha256);
    h.get_by_label("DNS:ota.test, DNS:192.168.1.70, IP:192.168.1.70");
    // The material is on disk, and the button now guards the CA.
    assert!(dir.path().join("ca.key").is_file());
    h.get_by_label("Replace CA…");
    h.get_by_label("Renew server certificate");
}

#[test]
fn a_bad_host_is_explained_and_generate_stays_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = app(dir.path());
    step_until(&mut h, "initial load", |h| {
        h.query_by_label_contains("No certificates in this project yet").is_some()
    });
    type_into(&mut h, "Update-server host", "192.168.1.300");
    h.step();
    h.get_by_label_contains("not a valid one");
    h.get_by_label("Generate cert").click_accesskit();
    h.run_steps(5);
    assert!(h.state().certificate.report.is_none());
    assert!(!dir.path().join("ca.pem").exists(), "nothing may be written for a bad host");
}

#[test]
fn existing_material_loads_at_start_and_replacing_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let req = otaforge_pki::IssueRequest::new(vec![otaforge_pki::Host::parse("ota.test").unwrap()]);
    otaforge_pki::generate(dir.path(), &req, false).unwrap();
    let ca_before = std::fs::read(dir.path().join("ca.pem")).unwrap();

    let mut h = app(dir.path());
    step_until(&mut h, "existing report", |h| h.state().certificate.report.is_some());
    h.step();
    // Clicks through AccessKit, not the pointer: a late worker event (host discovery) can move
    // the layout between finding a button and the frame that takes the click.
    h.get_by_label("Replace CA…").click_accesskit();
    h.run_steps(3);
    h.get_by_label_contains("strands every device");
    h.get_by_label("Cancel").click_accesskit();
    h.run_steps(3);
    assert!(h.query_by_label_contains("strands every device").is_none());
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca_before, "cancel changes nothing");
}
