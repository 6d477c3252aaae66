//! The Firmware step's build path, end to end with stand-ins for arduino-cli and PlatformIO (see
//! `fake_toolchain`): the reference sketch copied into the project, a board picked from the list,
//! a missing toolchain or core named with the commands that install it, the build's log, and the
//! image it made handed to the Flash step.

use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use otaforge::ui::OtaForgeApp;
use otaforge::ui::firmware_labels as labels;
use otaforge_firmware::boards::{BOARDS, Family, FamilyBuild};
use otaforge_firmware::reference_sketch::{self, FILES};
use otaforge_firmware::toolchain::{self, Os};

use crate::fake_toolchain::{self, FakeTool};
use crate::support::Project;
use crate::ui_support::{app_with, open_step, press, step_until, type_into};

const SIZE: egui::Vec2 = egui::vec2(1000.0, 1400.0);

/// The app on the Firmware step's build tab, looking for toolchains only where `tool` is.
fn source_tab(project: &Project, tool: &FakeTool) -> Harness<'static, OtaForgeApp> {
    let mut h = app_with(project.path(), SIZE, None);
    h.state_mut().set_toolchain_path(tool.search());
    h.step();
    open_step(&mut h, "2. Firmware");
    press(&mut h, labels::SOURCE_TAB);
    step_until(&mut h, "the toolchain search", |h| h.state().firmware.toolchains.is_some());
    step_until(&mut h, "the reference check", |h| h.state().firmware.sketch_copy.is_some());
    h.step();
    h
}

/// Copies the reference sketches in, sets the version and builds; returns the message.
fn copy_and_build(h: &mut Harness<'static, OtaForgeApp>) -> (bool, String) {
    press(h, labels::COPY_SKETCH);
    step_until(h, "the copy", |h| {
        h.state().firmware.sketch_copy.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| r.complete()))
    });
    type_into(h, "Version", "1.0.0");
    press(h, labels::BUILD);
    step_until(h, "the build", |h| h.state().firmware.message.is_some());
    h.step();
    h.state().firmware.message.clone().unwrap()
}

/// Opens the board list with the pointer (its popup opens on a click).
fn open_board_list(h: &mut Harness<'static, OtaForgeApp>) {
    h.get_by_label(labels::BOARD).click();
    h.run_steps(2);
}

fn pick_board(h: &mut Harness<'static, OtaForgeApp>, name: &str) {
    open_board_list(h);
    h.get_by_label(name).click_accesskit();
    h.run_steps(2);
}

#[test]
fn arduino_cli_builds_the_reference_sketch_and_the_flash_step_gets_the_image() {
    let project = Project::new();
    let out = tempfile::tempdir().unwrap();
    let image = fake_toolchain::built_image(&out.path().join("made.bin"));
    let cli = fake_toolchain::arduino_cli(&["esp8266:esp8266"], &out.path().join("made.bin"));
    let mut h = source_tab(&project, &cli);

    // The board list, in arduino-cli's names, NodeMCU first.
    assert_eq!(h.state().firmware.board, "esp8266:esp8266:nodemcuv2");
    open_board_list(&mut h);
    for board in &BOARDS {
        h.get_by_label(board.name);
    }
    h.get_by_label(labels::OTHER_BOARD);
    h.get_by_label(BOARDS[0].name).click_accesskit();
    h.run_steps(2);

    let (ok, text) = copy_and_build(&mut h);
    assert!(ok, "{text}");
    let sketch = reference_sketch::sketch_dir(project.path(), Family::Esp8266);
    let out_dir = sketch.join("build/esp8266.esp8266.nodemcuv2");
    let calls = cli.calls();
    assert!(calls.contains(&vec!["core".to_string(), "list".to_string()]), "{calls:?}");
    let compile: Vec<String> = ["compile", "--fqbn", "esp8266:esp8266:nodemcuv2", "--output-dir"]
        .into_iter()
        .map(String::from)
        .chain([out_dir.display().to_string(), sketch.display().to_string()])
        .collect();
    assert!(calls.contains(&compile), "{calls:?}");
    assert!(sketch.join("ota_config.h").is_file(), "Build writes ota_config.h first");
    h.get_by_label_contains("Compiling sketch...");
    h.get_by_label_contains("Sketch uses 245844 bytes");

    // The application image (not the bootloader nor the merged one) goes to step 3.
    let bin = out_dir.join("otaforge_esp8266.ino.bin");
    assert_eq!(h.state().firmware.last_image(), Some(bin.clone()));
    assert_eq!(h.state().flash.file(), bin.display().to_string());
    step_until(&mut h, "the Flash step's check", |h| h.state().flash.image.is_some());
    let choice = h.state().flash.image.clone().unwrap();
    assert_eq!(choice.path, bin);
    let summary = choice.result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.size, image.len() as u64);
    assert!(!summary.virtual_only, "a build runs on real boards");
}

#[test]
fn platformio_builds_its_environment_in_the_project_folder() {
    let project = Project::new();
    let out = tempfile::tempdir().unwrap();
    fake_toolchain::built_image(&out.path().join("made.bin"));
    let pio = fake_toolchain::pio(&out.path().join("made.bin"));
    let mut h = source_tab(&project, &pio);
    assert_eq!(h.state().firmware.board, "nodemcuv2", "the same board, in PlatformIO's name");
    open_board_list(&mut h);
    for board in BOARDS.iter().filter(|b| b.pio_env.is_some()) {
        h.get_by_label(board.name);
    }
    h.get_by_label(BOARDS[0].name).click_accesskit();
    h.run_steps(2);

    let (ok, text) = copy_and_build(&mut h);
    assert!(ok, "{text}");
    let root = reference_sketch::root(project.path());
    let sketch = reference_sketch::sketch_dir(project.path(), Family::Esp8266);
    let calls = pio.calls();
    let run = calls.iter().find(|c| c.first().is_some_and(|a| a == "run")).expect("pio run");
    assert_eq!(run[..3], ["run", "-e", "nodemcuv2"]);
    assert!(run.contains(&format!("cwd={}", root.canonicalize().unwrap().display())), "{run:?}");
    assert!(run.contains(&format!("src={}", sketch.canonicalize().unwrap().display())), "{run:?}");
    let bin = root.join(".pio/build/nodemcuv2/firmware.bin");
    assert_eq!(h.state().firmware.last_image(), Some(bin.clone()));
    assert_eq!(h.state().flash.file(), bin.display().to_string());
}

#[test]
fn without_a_toolchain_the_step_says_how_to_install_one_and_the_cores() {
    let project = Project::new();
    let empty = fake_toolchain::nowhere();
    let mut h = source_tab(&project, &empty);
    h.get_by_label_contains("No arduino-cli or PlatformIO found");
    for hint in toolchain::install_hints(Os::current()) {
        for command in &hint.commands {
            h.get_by_label(command);
        }
    }
    for url in [toolchain::ESP8266_INDEX_URL, toolchain::ESP32_INDEX_URL] {
        assert!(h.query_all_by_label_contains(url).count() >= 1, "{url}");
    }
    assert!(h.get_by_label(labels::BUILD).accesskit_node().is_disabled());
    // The board list is there all the same (for the Arduino IDE, in its names).
    h.get_by_label(labels::BOARD);

    // Installed now: Look again finds it.
    let out = tempfile::tempdir().unwrap();
    fake_toolchain::built_image(&out.path().join("made.bin"));
    let cli = fake_toolchain::arduino_cli(&["esp8266:esp8266"], &out.path().join("made.bin"));
    std::fs::copy(cli.dir().join("arduino-cli"), empty.dir().join("arduino-cli")).unwrap();
    press(&mut h, labels::LOOK_AGAIN);
    step_until(&mut h, "the new search", |h| {
        h.state().firmware.toolchains.as_ref().is_some_and(|t| !t.is_empty())
    });
    h.step();
    assert!(h.query_by_label_contains("No arduino-cli or PlatformIO found").is_none());
}

#[test]
fn a_missing_core_is_named_with_the_command_that_installs_it() {
    let project = Project::new();
    let out = tempfile::tempdir().unwrap();
    fake_toolchain::built_image(&out.path().join("made.bin"));
    let cli = fake_toolchain::arduino_cli(&["esp8266:esp8266"], &out.path().join("made.bin"));
    let mut h = source_tab(&project, &cli);
    assert!(h.query_by_label_contains("core installed").is_none(), "the ESP8266 core is there");
    pick_board(&mut h, "ESP32 Dev Module");
    assert_eq!(h.state().firmware.board, "esp32:esp32:esp32");
    let command = Family::Esp32.install_core_command();
    assert_eq!(
        command,
        "arduino-cli core install esp32:esp32 --additional-urls https://espressif.github.io/arduino-esp32/package_esp32_index.json"
    );
    h.get_by_label_contains("arduino-cli has no esp32:esp32 core installed");
    h.get_by_label(&command);
    h.get_by_label("Copy the install command");

    let (ok, text) = copy_and_build(&mut h);
    assert!(!ok && text.contains(&command), "{text}");
    assert!(cli.calls().iter().all(|c| c.first().is_none_or(|a| a != "compile")), "nothing compiled");
    // The ESP32 board builds the ESP32 sketch.
    let sketch = reference_sketch::sketch_dir(project.path(), Family::Esp32);
    assert!(sketch.join("ota_config.h").is_file(), "{}", sketch.display());
}

#[test]
fn the_reference_sketch_is_copied_into_the_project_and_edits_are_kept() {
    let project = Project::new();
    let empty = fake_toolchain::nowhere();
    let mut h = source_tab(&project, &empty);
    h.get_by_label_contains("files not in");
    press(&mut h, labels::COPY_SKETCH);
    step_until(&mut h, "the copy", |h| {
        h.state().firmware.sketch_copy.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| r.complete()))
    });
    let root = reference_sketch::root(project.path());
    for f in FILES {
        assert_eq!(std::fs::read_to_string(root.join(f.path)).unwrap(), f.text, "{}", f.path);
    }
    let sketch = reference_sketch::sketch_dir(project.path(), Family::Esp8266);
    let ino = sketch.join("otaforge_esp8266.ino");

    std::fs::write(&ino, "// my changes\n").unwrap();
    press(&mut h, labels::COPY_SKETCH);
    step_until(&mut h, "the second copy", |h| {
        h.state()
            .firmware
            .sketch_copy
            .as_ref()
            .is_some_and(|r| r.as_ref().is_ok_and(|r| !r.edited.is_empty()))
    });
    h.step();
    assert_eq!(
        std::fs::read_to_string(&ino).unwrap(),
        "// my changes\n",
        "an edit is never overwritten unasked"
    );
    h.get_by_label_contains("Kept your edits");
    press(&mut h, labels::OVERWRITE_EDITS);
    h.step();
    press(&mut h, "Replace them");
    step_until(&mut h, "the overwrite", |h| {
        h.state().firmware.sketch_copy.as_ref().is_some_and(|r| r.as_ref().is_ok_and(|r| r.edited.is_empty()))
    });
    assert_eq!(std::fs::read_to_string(&ino).unwrap(), FILES[3].text);
}
