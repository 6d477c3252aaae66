//! Steps 2 (Firmware) and 3 (Flash) as a newcomer meets them: at the window's smallest size
//! (800×600) and the size it opens with (1000×700) each step's action is on screen and clicked
//! with the pointer, nothing runs off the right edge, the image step 2 makes is the one step 3
//! offers, and both steps come back as they were after a restart.

use std::path::{Path, PathBuf};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use otaforge::ui::OtaForgeApp;
use otaforge::ui::firmware_labels as firmware;
use otaforge::ui::flash::labels as flash;
use otaforge_firmware::{Chip, ImageBuilder, config_block};
use otaforge_sim::serial::{SimOptions, VirtualSerialDevice};

use crate::fake_toolchain;
use crate::support::Project;
use crate::ui_support::{
    MemoryStorage, app_with, close, drop_file, nothing_cut_off, on_screen, open_step, press, step_until,
    type_into,
};

const SMALL: egui::Vec2 = egui::vec2(800.0, 600.0);
const DEFAULT: egui::Vec2 = egui::vec2(1000.0, 700.0);

/// A reference image (a sketch build with an unbaked config block) in the project.
fn reference(project: &Project) -> PathBuf {
    let mut image = ImageBuilder::for_chip(Chip::Esp8266).target_size(120_000).build();
    config_block::reserve(&mut image).unwrap();
    let input = project.path().join("reference.bin");
    std::fs::write(&input, &image).unwrap();
    input
}

/// Drops `input` on the Firmware step, sets the version and bakes it with a pointer click.
fn bake(h: &mut Harness<'_, OtaForgeApp>, input: &Path) -> PathBuf {
    drop_file(h, input);
    step_until(h, "the inspection", |h| h.state().firmware.input.is_some());
    h.step();
    type_into(h, "Version", "1.0.0");
    h.get_by_label(firmware::BAKE).click();
    step_until(h, "the bake", |h| h.state().firmware.baked.is_some() || h.state().firmware.message.is_some());
    h.step();
    let baked = h.state().firmware.baked.as_ref().map(|(p, _)| p.clone());
    baked.unwrap_or_else(|| panic!("{:?}", h.state().firmware.message))
}

#[test]
fn the_firmware_step_fits_and_its_actions_are_on_screen() {
    for size in [SMALL, DEFAULT] {
        let project = Project::new();
        let none = fake_toolchain::nowhere();
        let mut h = app_with(project.path(), size, None);
        h.state_mut().set_toolchain_path(none.search());
        h.step();
        open_step(&mut h, "2. Firmware");
        nothing_cut_off(&h, "Firmware, nothing chosen");
        drop_file(&mut h, &reference(&project));
        step_until(&mut h, "the inspection", |h| h.state().firmware.input.is_some());
        h.step();
        on_screen(&h, firmware::BAKE, size);
        nothing_cut_off(&h, "Firmware, inspected");
        let baked = bake(&mut h, &reference(&project));
        assert!(baked.is_file());
        nothing_cut_off(&h, "Firmware, baked");

        press(&mut h, firmware::SOURCE_TAB);
        step_until(&mut h, "the toolchain search", |h| h.state().firmware.toolchains.is_some());
        h.step();
        nothing_cut_off(&h, "Firmware, install hints");
        // With a toolchain, and a build whose log has a line far wider than the window.
        let out = tempfile::tempdir().unwrap();
        fake_toolchain::built_image(&out.path().join("made.bin"));
        let cli = fake_toolchain::arduino_cli(&["esp8266:esp8266"], &out.path().join("made.bin"));
        h.state_mut().set_toolchain_path(cli.search());
        step_until(&mut h, "the toolchain", |h| {
            h.state().firmware.toolchains.as_ref().is_some_and(|t| !t.is_empty())
        });
        h.step();
        on_screen(&h, firmware::COPY_SKETCH, size);
        on_screen(&h, firmware::BUILD, size);
        h.get_by_label(firmware::COPY_SKETCH).click();
        step_until(&mut h, "the copy", |h| {
            h.state().firmware.sketch_copy.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| r.complete()))
        });
        h.step();
        h.get_by_label(firmware::BUILD).click();
        step_until(&mut h, "the build", |h| {
            !h.state().firmware.log.is_empty() && h.state().firmware.message.is_some()
        });
        h.run_steps(2);
        let (ok, text) = h.state().firmware.message.clone().unwrap();
        assert!(ok, "{text}");
        nothing_cut_off(&h, &format!("Firmware, build log at {size:?}"));
        // A board whose core is missing: the message and its command wrap too.
        h.get_by_label(firmware::BOARD).scroll_to_me();
        h.run_steps(2);
        h.get_by_label(firmware::BOARD).click();
        h.run_steps(2);
        h.get_by_label("ESP32-S3 Dev Module").click_accesskit();
        h.run_steps(2);
        h.get_by_label_contains("arduino-cli has no esp32:esp32 core installed");
        nothing_cut_off(&h, &format!("Firmware, missing core at {size:?}"));
    }
}

#[test]
fn the_flash_step_fits_and_flash_device_is_on_screen() {
    for size in [SMALL, DEFAULT] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sketch.bin");
        std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(16 * 1024).seed(5).build())
            .unwrap();
        let mut h = app_with(dir.path(), size, None);
        h.step();
        open_step(&mut h, "3. Flash");
        step_until(&mut h, "the port list", |h| h.state().flash.ports.is_some());
        nothing_cut_off(&h, "Flash, nothing chosen");
        h.get_by_label(flash::ADD_VIRTUAL).click();
        step_until(&mut h, "the virtual board", |h| {
            let f = &h.state().flash;
            f.port.starts_with("/dev/pts/")
                && f.ports.as_ref().is_some_and(|p| p.iter().any(|p| p.path == f.port))
        });
        type_into(&mut h, flash::FILE, &file.display().to_string());
        h.get_by_label(flash::USE_FILE).click();
        step_until(&mut h, "the file check", |h| h.state().flash.image.is_some());
        h.step();
        on_screen(&h, flash::FLASH, size);
        nothing_cut_off(&h, "Flash, ready");
        h.get_by_label(flash::FLASH).click();
        step_until(&mut h, "the flash", |h| h.state().flash.message.is_some());
        h.run_steps(2);
        let (ok, text) = h.state().flash.message.clone().unwrap();
        assert!(ok, "{text}");
        nothing_cut_off(&h, &format!("Flash, flashed at {size:?}"));
    }
}

/// Step 2's new image is step 3's until the user picks another there; a newer one from step 2
/// is offered again.
#[test]
fn the_image_made_in_step_2_is_offered_in_step_3_until_another_is_chosen_there() {
    let project = Project::new();
    let input = reference(&project);
    let mut h = app_with(project.path(), DEFAULT, None);
    h.step();
    open_step(&mut h, "2. Firmware");
    let baked = bake(&mut h, &input);
    assert_eq!(h.state().firmware.last_image(), Some(baked.clone()));
    assert_eq!(h.state().flash.file(), baked.display().to_string());

    open_step(&mut h, "3. Flash");
    let mine = project.path().join("mine.bin");
    std::fs::write(&mine, ImageBuilder::arduino_esp8266().target_size(16 * 1024).build()).unwrap();
    drop_file(&mut h, &mine);
    step_until(&mut h, "the user's file", |h| h.state().flash.image.as_ref().is_some_and(|c| c.path == mine));
    open_step(&mut h, "2. Firmware");
    open_step(&mut h, "3. Flash");
    h.run_steps(3);
    assert_eq!(h.state().flash.file(), mine.display().to_string(), "the user's choice stands");

    open_step(&mut h, "2. Firmware");
    press(&mut h, firmware::BAKE);
    step_until(&mut h, "the second bake", |h| h.state().flash.file() == baked.display().to_string());
}

#[test]
fn steps_2_and_3_come_back_as_they_were_after_a_restart() {
    let project = Project::new();
    let input = reference(&project);
    let board = VirtualSerialDevice::spawn(SimOptions::default()).unwrap();
    let port = board.pty_path().display().to_string();
    let mut storage = MemoryStorage::default();

    let mut h = app_with(project.path(), DEFAULT, None);
    h.step();
    open_step(&mut h, "2. Firmware");
    let baked = bake(&mut h, &input);
    open_step(&mut h, "3. Flash");
    step_until(&mut h, "the port list", |h| h.state().flash.ports.is_some());
    h.state_mut().flash.port.clear();
    type_into(&mut h, flash::TYPED_PORT, &port);
    step_until(&mut h, "the baked image's check", |h| {
        h.state().flash.image.as_ref().is_some_and(|c| c.result.is_ok())
    });
    h.step();
    h.get_by_label(flash::FLASH).click();
    step_until(&mut h, "the flash", |h| h.state().flash.message.is_some());
    let (ok, text) = h.state().flash.message.clone().unwrap();
    assert!(ok, "{text}");
    h.step();
    for mark in ["✔ 2. Firmware", "✔ 3. Flash"] {
        h.get_by_label(mark);
    }
    close(h, &mut storage);

    let mut h = app_with(project.path(), DEFAULT, Some(&storage));
    h.run_steps(2);
    for mark in ["✔ 2. Firmware", "✔ 3. Flash"] {
        h.get_by_label(mark);
    }
    assert_eq!(h.state().firmware.last_image(), Some(baked.clone()), "the image step 4 offers");
    assert_eq!(
        (h.state().flash.port.as_str(), h.state().flash.file()),
        (port.as_str(), baked.display().to_string().as_str())
    );
    step_until(&mut h, "the remembered image's check", |h| h.state().flash.image.is_some());
    open_step(&mut h, "2. Firmware");
    step_until(&mut h, "the reference inspected again", |h| {
        h.state().firmware.input.as_ref().is_some_and(|(p, r)| *p == input && r.is_ok())
    });
    h.step();
    on_screen(&h, firmware::BAKE, DEFAULT);
    close(h, &mut MemoryStorage::default());
}
