//! Driving the desktop app headless (egui_kittest, no renderer), as a user would.
#![allow(dead_code)] // each UI test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::{By, NodeT, Queryable};
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

/// Steps until the app asks for no more frames: the worker's answers to what the window asked
/// for when it opened (the certificate, keys, releases, this machine's addresses) may arrive
/// at any step, each asking for a repaint; a picture taken before they are in would differ run to
/// run.
pub fn settle(h: &mut Harness<'_, OtaForgeApp>) {
    step_until(h, "the window's first answers", |h| h.state().loaded());
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.try_run().is_err() {
        assert!(Instant::now() < deadline, "the window never stopped repainting");
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

/// eframe's storage kept in memory: what the app saves when it closes, for the next harness to
/// open with (eframe keeps it in a file; the harness has none).
#[derive(Default)]
pub struct MemoryStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

/// The app for `dir` in a window of `size`, opened with what `storage` holds (as eframe opens it
/// with what the last run saved), on a desktop where no file dialog can open.
pub fn app_with<'a>(
    dir: &Path,
    size: egui::Vec2,
    storage: Option<&'a MemoryStorage>,
) -> Harness<'a, OtaForgeApp> {
    let dir = dir.to_path_buf();
    Harness::builder().with_size(size).build_eframe(move |cc| {
        cc.storage = storage.map(|s| s as &dyn eframe::Storage);
        let mut app = OtaForgeApp::new(cc, dir).expect("worker starts");
        app.set_file_dialogs(no_dialogs());
        app
    })
}

/// What a desktop without any file dialog is told.
pub fn no_dialogs() -> otaforge::worker::FileDialogs {
    otaforge::worker::FileDialogs::Unavailable(
        "No file dialog can open here (test desktop): install zenity. Type the path in the field.".into(),
    )
}

/// Closes the window as eframe does: saves into `storage`, then lets the app stop its server.
pub fn close(mut h: Harness<'_, OtaForgeApp>, storage: &mut MemoryStorage) {
    eframe::App::save(h.state_mut(), storage);
    eframe::App::on_exit(h.state_mut(), None);
}

/// The texts the last frame put on the clipboard.
pub fn copied(h: &Harness<'_, OtaForgeApp>) -> Vec<String> {
    h.output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(text) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// Every text the last frame drew, with its font size (points; pixels at scale 1).
pub fn drawn_texts(h: &Harness<'_, OtaForgeApp>) -> Vec<(String, f32)> {
    fn walk(shape: &egui::Shape, out: &mut Vec<(String, f32)>) {
        match shape {
            egui::Shape::Vec(shapes) => shapes.iter().for_each(|s| walk(s, out)),
            egui::Shape::Text(text) => {
                let job = &text.galley.job;
                for section in &job.sections {
                    let range = section.byte_range.start.0..section.byte_range.end.0;
                    let words = job.text.get(range).unwrap_or_default();
                    if !words.trim().is_empty() {
                        out.push((words.to_string(), section.format.font_id.size));
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for clipped in &h.output().shapes {
        walk(&clipped.shape, &mut out);
    }
    out
}

/// Clicks the button labelled `label` through AccessKit and runs the frame that takes the click.
pub fn press(h: &mut Harness<'_, OtaForgeApp>, label: &str) {
    h.get_by_label(label).click_accesskit();
    h.step();
}

/// Opens a step from the sidebar ("4. Serve"; its entry also shows the step's mark).
pub fn open_step(h: &mut Harness<'_, OtaForgeApp>, title: &str) {
    // The sidebar is the window's left 200 points; the step's own heading says the title too.
    let entry = h.get_all_by_label_contains(title).find(|n| n.rect().max.x <= 200.0);
    entry.unwrap_or_else(|| panic!("no sidebar entry {title}")).click_accesskit();
    h.step();
    h.step();
}

/// The widget labelled `label` lies inside the window, where a click reaches it unscrolled.
pub fn on_screen(h: &Harness<'_, OtaForgeApp>, label: &str, size: egui::Vec2) {
    let rect = h.get_by_label(label).rect();
    let window = egui::Rect::from_min_size(egui::Pos2::ZERO, size);
    assert!(window.contains_rect(rect), "{label} at {rect:?} is not inside the {size:?} window");
}

/// Every widget drawn lies within the window's width (nothing is cut off at the right edge).
pub fn nothing_cut_off(h: &Harness<'_, OtaForgeApp>, what: &str) {
    let width = h.ctx.content_rect().width();
    let cut: Vec<String> = h
        .query_all(By::new().predicate(|n| n.bounding_box().is_some()))
        .filter(|n| n.rect().max.x > width + 0.5)
        .map(|n| {
            format!(
                "{:?} {:?} at {:?}",
                n.accesskit_node().role(),
                n.accesskit_node().label().or(n.value()),
                n.rect()
            )
        })
        .collect();
    assert!(cut.is_empty(), "{what}: cut off at the right edge of {width}:\n{}", cut.join("\n"));
}
