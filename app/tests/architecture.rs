//! The core stays headless: only the `ui` module (and the binary that opens it) may use egui/eframe,
//! so every capability runs on a Raspberry Pi or in CI without a display.

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_ui_module_uses_egui() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 5, "source tree not found");
    let mut offenders = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel.starts_with("ui") {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if code.contains("egui::")
                || code.contains("eframe::")
                || code.contains("use egui")
                || code.contains("use eframe")
            {
                offenders.push(format!("{}:{}: {}", rel.display(), n + 1, code));
            }
        }
    }
    assert!(offenders.is_empty(), "egui outside src/ui:\n{}", offenders.join("\n"));
}
