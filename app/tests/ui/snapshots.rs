//! Pictures of the Serve step, rendered with wgpu on the CPU (Mesa llvmpipe / lavapipe) and compared
//! with the PNGs in `tests/snapshots/`: a layout change shows up as a failing test with a diff image.
//! Create or refresh them with `UPDATE_SNAPSHOTS=1 cargo test -p otaforge --test ui_snapshots`.
//!
//! A separate test target because rendering needs a wgpu adapter: where none exists (no Mesa), the
//! harness panics here and nowhere else.
//!
//! What is shown must not change between runs: a fixed project directory (its path is on screen),
//! the server stopped (certificate fingerprints differ per project), fixed test images.

use crate::ui_support;

use std::path::PathBuf;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use otaforge::ui::OtaForgeApp;
use otaforge::ui::serve::labels;
use ui_support::{drop_file, settle, step_until, type_into};

/// The same directory every run, emptied first.
fn project(name: &str) -> PathBuf {
    // A path that is the same on every machine, since it is drawn in the sidebar and the dialog.
    let dir = std::env::temp_dir().join("otaforge-ui-snapshots").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn app(dir: &std::path::Path) -> Harness<'static, OtaForgeApp> {
    let dir = dir.to_path_buf();
    Harness::builder().with_size(egui::vec2(1000.0, 700.0)).build_eframe(move |cc| {
        cc.egui_ctx.set_theme(egui::Theme::Dark);
        OtaForgeApp::new(cc, dir).expect("worker starts")
    })
}

fn open_serve(h: &mut Harness<'static, OtaForgeApp>) {
    h.step();
    h.get_by_label_contains("4. Serve").click();
    settle(h);
}

#[test]
fn serve_step_before_anything_is_published() {
    let dir = project("empty");
    let mut h = app(&dir);
    open_serve(&mut h);
    h.snapshot("serve_empty");
}

#[test]
fn publish_dialog_with_a_good_image() {
    let dir = project("good");
    let image = otaforge_firmware::ImageBuilder::arduino_esp8266().target_size(300_000).seed(7).build();
    let path = dir.join("kitchen.bin");
    std::fs::write(&path, image).unwrap();
    let mut h = app(&dir);
    open_serve(&mut h);
    drop_file(&mut h, &path);
    step_until(&mut h, "the dialog", |h| h.state().serve.dialog.as_ref().is_some_and(|d| d.check.is_some()));
    settle(&mut h);
    type_into(&mut h, labels::VERSION, "1.2.0");
    step_until(&mut h, "the check", |h| {
        h.state().serve.dialog.as_ref().and_then(|d| d.current_check()).is_some()
    });
    settle(&mut h);
    h.snapshot("publish_dialog_good");
}

#[test]
fn publish_dialog_with_a_web_page() {
    let dir = project("bad");
    let path = dir.join("download.bin");
    std::fs::write(&path, "<!DOCTYPE html><html><body>Not found</body></html>").unwrap();
    let mut h = app(&dir);
    open_serve(&mut h);
    drop_file(&mut h, &path);
    step_until(&mut h, "the check", |h| {
        h.state().serve.dialog.as_ref().and_then(|d| d.current_check()).is_some()
    });
    settle(&mut h);
    h.snapshot("publish_dialog_refused");
}
