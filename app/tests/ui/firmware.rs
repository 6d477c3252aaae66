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

/// On a desktop where no file dialog can open, every path is typed: the reference image is
/// inspected and baked, Browse says why it shows nothing, and the Flash step has the baked image.
#[test]
fn typed_paths_inspect_and_bake_and_the_flash_step_gets_the_image() {
    use otaforge::ui::firmware_labels as labels;
    let project = crate::support::Project::new();
    let mut image = ImageBuilder::for_chip(Chip::Esp8266).target_size(120_000).build();
    config_block::reserve(&mut image).unwrap();
    let input = project.path().join("reference.bin");
    std::fs::write(&input, &image).unwrap();
    let mut h = ui_support::app_with(project.path(), egui::vec2(1000.0, 1400.0), None);
    h.step();
    ui_support::open_step(&mut h, "2. Firmware");
    h.get_by_label(otaforge::ui::widgets::BROWSE).click_accesskit();
    h.step();
    h.get_by_label_contains("No file dialog can open here");

    type_into(&mut h, labels::REFERENCE_IMAGE, &input.display().to_string());
    ui_support::press(&mut h, labels::INSPECT);
    step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    h.get_by_label("present, not baked yet");
    let output = project.path().join("fleet.bin");
    h.get_by_label(labels::OUTPUT).focus();
    h.step();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_label(labels::OUTPUT).type_text(&output.display().to_string());
    h.step();
    type_into(&mut h, "Version", "2.0.0");
    ui_support::press(&mut h, labels::BAKE);
    step_until(&mut h, "the bake", |h| {
        h.state().firmware.baked.is_some() || h.state().firmware.message.is_some()
    });
    assert_eq!(
        h.state().firmware.baked.as_ref().map(|(p, _)| p.clone()),
        Some(output.clone()),
        "{:?}",
        h.state().firmware.message
    );
    assert_eq!(config_block::read(&std::fs::read(&output).unwrap()).unwrap().unwrap().version, "2.0.0");

    // Step 3 has it, checked, before the user opens it.
    assert_eq!(h.state().flash.file(), output.display().to_string());
    step_until(&mut h, "the Flash step's check", |h| h.state().flash.image.is_some());
    ui_support::press(&mut h, "Go to Flash ➡");
    h.step();
    h.get_by_label_contains("✔ ESP8266 image at 0x0");
}

/// `otaforge sim reference-image` makes a stand-in: the step says it runs on virtual boards only.
#[test]
fn a_stand_in_for_virtual_boards_is_called_so() {
    let project = crate::support::Project::new();
    let input = project.path().join("sim-reference.bin");
    std::fs::write(&input, otaforge_sim::device::reference_image(Chip::Esp8266, "1.0.0", 96 * 1024)).unwrap();
    let mut h = app(project.path());
    h.step();
    drop_file(&mut h, &input);
    step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    h.get_by_label_contains("⚠ Runs on virtual boards only");
    h.get_by_label(otaforge_firmware::virtual_only::VIRTUAL_BOARDS_ONLY);
}
