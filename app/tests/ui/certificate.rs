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

/// The Signing key section: make the keys, see their fingerprints, rotate them (the old ones are
/// kept in retired/, which the carrier release needs), copy a public key.
#[test]
fn signing_keys_are_made_shown_rotated_and_copied_from_the_certificate_step() {
    use otaforge::ui::signing_key::{CONFIRM_REPLACE, NEW_KEYS, REPLACE_KEYS};
    use otaforge_pki::signing::{self, Family, FamilyKeys};
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let mut h = app(dir.path());
    step_until(&mut h, "the keys loaded", |h| h.state().certificate.signing.keys.is_some());
    h.step();
    h.get_by_label_contains("No signing keys yet");
    h.get_by_label(NEW_KEYS).click_accesskit();
    h.step();
    step_until(&mut h, "the new keys", |h| {
        h.state().certificate.signing.keys.as_ref().is_some_and(|k| k.len() == 2)
    });
    h.step();
    let first = signing::load(dir.path()).unwrap();
    for family in Family::ALL {
        let fp = first.current(family).unwrap().public().fingerprint();
        h.get_by_label(&format!("{}…", &fp[..16]));
        let mode = std::fs::metadata(dir.path().join(family.key_file())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{family:?} private key");
    }
    h.get_by_label("Copy the ESP8266 public key (PEM)").click_accesskit();
    h.step();
    let pem = first.current(Family::Esp8266).unwrap().public().to_pem();
    assert_eq!(ui_support::copied(&h), vec![pem]);
    let fp = first.current(Family::Esp8266).unwrap().public().fingerprint();
    h.get_by_label("Copy the ESP8266 signing key fingerprint").click_accesskit();
    h.step();
    assert_eq!(ui_support::copied(&h), vec![fp]);

    h.get_by_label(REPLACE_KEYS).click_accesskit();
    h.step();
    h.get_by_label_contains("moves them over");
    h.get_by_label(CONFIRM_REPLACE).click_accesskit();
    h.step();
    let old = first.current(Family::Esp8266).unwrap().public().fingerprint();
    step_until(&mut h, "the replaced keys", |h| {
        h.state().certificate.signing.keys.as_ref().is_some_and(|k| k.iter().all(|k| k.retired == 1))
    });
    h.step();
    let now = signing::load(dir.path()).unwrap();
    let new = now.current(Family::Esp8266).unwrap().public().fingerprint();
    assert_ne!(new, old);
    h.get_by_label(&format!("{}…, 1 replaced", &new[..16]));
    assert!(now.retired.iter().any(|(_, k)| k.fingerprint() == old), "the old key is kept for the carrier");
    h.get_by_label_contains("carrier");
}
