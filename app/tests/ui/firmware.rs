//! The Firmware step driven headless: drop a reference .bin on the window, see its inspection,
//! give a version, bake, see the settings read back from the written file.

use crate::ui_support;

use egui_kittest::kittest::Queryable;
use otaforge_firmware::{Chip, ImageBuilder, config_block};
use ui_support::{app, drop_file, step_until, type_into};

#[test]
fn dropping_a_reference_bin_then_baking_it() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec![otaforge_pki::Host::parse("ota.test").unwrap()];
    otaforge_pki::generate(dir.path(), &otaforge_pki::IssueRequest::new(hosts), false).unwrap();
    let keys =
        otaforge_pki::signing::generate(dir.path(), &otaforge_pki::signing::Family::ALL, false).unwrap();
    let key = keys.current(otaforge_pki::signing::Family::Esp8266).unwrap().public();
    let mut image = ImageBuilder::for_chip(Chip::Esp8266).target_size(120_000).build();
    config_block::reserve(&mut image).unwrap();
    let input = dir.path().join("reference.bin");
    std::fs::write(&input, &image).unwrap();

    let mut h = app(dir.path());
    h.step();
    drop_file(&mut h, &input);
    step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    h.get_by_label("present, not baked yet");
    h.get_by_label("all valid");

    type_into(&mut h, "Version", "1.2.3");
    h.get_by_label(otaforge::ui::firmware_labels::BAKE).click();
    h.step();
    step_until(&mut h, "the baked image", |h| {
        h.state().firmware.baked.is_some() || h.state().firmware.message.is_some()
    });
    h.step();
    let baked_path = h.state().firmware.baked.as_ref().map(|(p, _)| p.clone()).unwrap_or_else(|| {
        panic!("bake failed: {:?}", h.state().firmware.message);
    });
    h.get_by_label("baked: https://ota.test:3443/update version 1.2.3 \"\"");
    let settings = config_block::read(&std::fs::read(&baked_path).unwrap()).unwrap().unwrap();
    assert_eq!(settings.version, "1.2.3");
    assert_eq!(settings.ca_pem, std::fs::read_to_string(dir.path().join("ca.pem")).unwrap());
    // The public signing key went in, and the step says what that means.
    assert_eq!(settings.signing_key, key.spki_der);
    h.get_by_label_contains(&format!(
        "installs only updates signed by this project's key {}",
        &key.fingerprint()[..16]
    ));
}

#[test]
fn dropping_something_else_says_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.bin");
    std::fs::write(&notes, "<html><body>404</body></html>").unwrap();
    let mut h = app(dir.path());
    h.step();
    drop_file(&mut h, &notes);
    step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    h.get_by_label_contains("HTML page, not a firmware image");
    assert!(h.query_by_label(otaforge::ui::firmware_labels::BAKE).is_none(), "nothing to bake");
}
