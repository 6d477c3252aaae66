//! Driving the desktop app headless (egui_kittest, no renderer), as a user would.
#![allow(dead_code)] // each UI test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use otaforge::ui::OtaForgeApp;

/// The app for the project in `dir`, with its real worker thread.
pub fn app(dir: &Path) -> Harness<'static, OtaForgeApp> {
    let dir = dir.to_path_buf();
    Harness::builder()
        .with_size(egui::vec2(1100.0, 1400.0))
        .build_eframe(move |cc| OtaForgeApp::new(cc, dir).expect("worker starts"))
}

/// Steps the UI until `done` holds, failing after a deadline (the worker works on its own thread).
pub fn step_until(
    h: &mut Harness<'_, OtaForgeApp>,
    what: &str,
    done: impl Fn(&Harness<'_, OtaForgeApp>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(h) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
}

/// Focuses the field labelled `label` and types `text` into it.
pub fn type_into(h: &mut Harness<'_, OtaForgeApp>, label: &str, text: &str) {
    h.get_by_label(label).focus();
    h.step();
    h.get_by_label(label).type_text(text);
    h.step();
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Drops a file onto the window, as from a file manager.
pub fn drop_file(h: &mut Harness<'_, OtaForgeApp>, path: &Path) {
    h.input_mut().dropped_files.push(Arc::new(Dropped(path.to_path_buf())));
    h.step();
}
