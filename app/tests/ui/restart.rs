//! Closing and opening the app again: what was done stays done (the sidebar's marks), the server
//! that was running is started again when the setting says so, and each step's Next button leads
//! on. "Closing" is what eframe does: save into its storage, then `on_exit`; the next harness
//! opens with that storage.

use egui::accesskit::Toggled;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use otaforge::ui::serve::{ServerState, labels};
use otaforge::ui::{OtaForgeApp, Step};
use otaforge_firmware::{Chip, ImageBuilder, config_block};

use crate::support::{Project, esp8266_image};
use crate::ui_support::{MemoryStorage, app_with, close, drop_file, open_step, press, step_until, type_into};

const SIZE: egui::Vec2 = egui::vec2(1000.0, 700.0);

fn serving(h: &mut Harness<'_, OtaForgeApp>) {
    h.step();
    open_step(h, "4. Serve");
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    press(h, labels::START);
    step_until(h, "the server", |h| h.state().serve.address().is_some());
}

/// Until the reopened window has read everything back and its server has started (or not).
fn settled(h: &mut Harness<'_, OtaForgeApp>) {
    step_until(h, "the window's first answers", |h| h.state().loaded());
}

#[test]
fn the_server_running_at_close_starts_again_when_the_app_opens() {
    let project = Project::new();
    let mut storage = MemoryStorage::default();
    let mut h = app_with(project.path(), SIZE, None);
    serving(&mut h);
    assert_eq!(
        h.get_by_label(labels::RESTART).accesskit_node().toggled(),
        Some(Toggled::True),
        "on by default"
    );
    let before = h.state().serve.address().unwrap();
    close(h, &mut storage);
    assert!(std::net::TcpStream::connect(before).is_err(), "closed: the server stopped");

    let mut h = app_with(project.path(), SIZE, Some(&storage));
    settled(&mut h);
    let addr = h.state().serve.address().unwrap_or_else(|| panic!("{:?}", h.state().serve.server));
    assert!(std::net::TcpStream::connect(addr).is_ok(), "it listens again");
    assert_eq!(h.state().step(), Step::Serve, "on the step it was closed on");
    close(h, &mut MemoryStorage::default());

    // Another project opened with the same settings: its server is not started behind its back.
    let other = Project::new();
    let mut h = app_with(other.path(), SIZE, Some(&storage));
    step_until(&mut h, "the certificate", |h| h.state().certificate.report.is_some());
    h.run_steps(3);
    assert!(matches!(h.state().serve.server, ServerState::Stopped), "{:?}", h.state().serve.server);
}

#[test]
fn with_the_setting_off_the_server_stays_stopped_and_the_setting_is_remembered() {
    let project = Project::new();
    let mut storage = MemoryStorage::default();
    let mut h = app_with(project.path(), SIZE, None);
    serving(&mut h);
    press(&mut h, labels::RESTART);
    assert!(!h.state().serve.restarts());
    close(h, &mut storage);

    let mut h = app_with(project.path(), SIZE, Some(&storage));
    step_until(&mut h, "the releases", |h| h.state().certificate.report.is_some());
    h.run_steps(3);
    assert!(matches!(h.state().serve.server, ServerState::Stopped), "{:?}", h.state().serve.server);
    assert!(!h.state().serve.restarts(), "the setting is remembered");
    assert_eq!(h.get_by_label(labels::RESTART).accesskit_node().toggled(), Some(Toggled::False));
    h.get_by_label(labels::START);
}

#[test]
fn steps_done_before_a_restart_keep_their_check_marks() {
    let project = Project::new();
    project.publish(&esp8266_image(100_000, 1), "1.0.0", "stable");
    let mut image = ImageBuilder::for_chip(Chip::Esp8266).target_size(120_000).build();
    config_block::reserve(&mut image).unwrap();
    let input = project.path().join("reference.bin");
    std::fs::write(&input, &image).unwrap();
    let mut storage = MemoryStorage::default();

    let mut h = app_with(project.path(), SIZE, None);
    h.step();
    open_step(&mut h, "2. Firmware");
    drop_file(&mut h, &input);
    step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    type_into(&mut h, "Version", "1.2.3");
    press(&mut h, otaforge::ui::firmware_labels::BAKE);
    step_until(&mut h, "the baked image", |h| h.state().firmware.baked.is_some());
    serving(&mut h);
    h.step();
    for mark in ["✔ 1. Certificate", "✔ 2. Firmware", "✔ 4. Serve"] {
        h.get_by_label(mark);
    }
    close(h, &mut storage);

    let mut h = app_with(project.path(), SIZE, Some(&storage));
    settled(&mut h);
    h.step();
    for mark in ["✔ 1. Certificate", "✔ 2. Firmware", "○ 3. Flash", "✔ 4. Serve"] {
        h.get_by_label(mark);
    }
    close(h, &mut MemoryStorage::default());
}

#[test]
fn next_buttons_lead_to_the_next_step() {
    let project = Project::new();
    let mut h = app_with(project.path(), egui::vec2(1000.0, 1400.0), None);
    step_until(&mut h, "the certificate", |h| h.state().certificate.report.is_some());
    h.step();
    press(&mut h, "Go to Firmware ➡");
    h.step();
    assert_eq!(h.state().step(), Step::Firmware);
    h.get_by_label("2. Firmware");

    // The last step leads back to flashing a board while no device has checked in.
    serving(&mut h);
    h.step();
    press(&mut h, "Go to Flash ➡");
    h.step();
    assert_eq!(h.state().step(), Step::Flash);
}

#[test]
fn the_image_baked_in_step_2_is_offered_for_publishing_in_step_4() {
    let project = Project::new();
    let mut image = ImageBuilder::for_chip(Chip::Esp8266).target_size(120_000).build();
    config_block::reserve(&mut image).unwrap();
    let input = project.path().join("reference.bin");
    std::fs::write(&input, &image).unwrap();
    let mut h = app_with(project.path(), SIZE, None);
    h.step();
    open_step(&mut h, "4. Serve");
    assert!(h.state().serve.offered_image().is_none(), "nothing made yet, nothing offered");

    open_step(&mut h, "2. Firmware");
    drop_file(&mut h, &input);
    step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    type_into(&mut h, "Version", "1.2.3");
    press(&mut h, otaforge::ui::firmware_labels::BAKE);
    step_until(&mut h, "the baked image", |h| h.state().firmware.last_image().is_some());
    let baked = h.state().firmware.last_image().unwrap();
    open_step(&mut h, "4. Serve");
    let name = baked.file_name().unwrap().to_string_lossy().into_owned();
    press(&mut h, &labels::offer(&name));
    step_until(&mut h, "the publish check", |h| {
        h.state().serve.dialog.as_ref().and_then(|d| d.current_check()).is_some()
    });
    h.step();
    assert_eq!(h.state().serve.dialog.as_ref().unwrap().path, baked);
    h.get_by_label("1.2.3"); // the version baked in, filled in
}
