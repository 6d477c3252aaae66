//! Every file the app takes has a path field that works with no file dialog at all, as on a
//! desktop without a portal or zenity: what is typed is acted on, and Browse… says why no dialog
//! opens and what to install, instead of saying nothing (or "Export cancelled.").

use egui_kittest::kittest::Queryable;
use otaforge::ui::certificate_labels::{EXPORT_HEADER, EXPORT_PEM, HEADER_FIELD, PEM_FIELD};
use otaforge::ui::serve::labels;
use otaforge::ui::widgets::BROWSE;

use crate::support::{Project, esp8266_image};
use crate::ui_support::{app_with, open_step, press, step_until, type_into};

/// The reason a Browse… shows on a desktop without dialogs (see `ui_support::no_dialogs`).
const NO_DIALOG: &str = "No file dialog can open here";

#[test]
fn export_writes_the_pem_and_the_c_header_where_typed_and_browse_says_why_no_dialog_opens() {
    let project = Project::new();
    let out = tempfile::tempdir().unwrap();
    let (pem_path, header_path) = (out.path().join("ca.pem"), out.path().join("anchor.h"));
    let mut h = app_with(project.path(), egui::vec2(1000.0, 1400.0), None);
    step_until(&mut h, "the certificate", |h| h.state().certificate.report.is_some());
    h.step();

    // Browse on a desktop with no dialog: the reason and what to install, under the field.
    h.get_all_by_label(BROWSE).next().unwrap().click_accesskit();
    h.step();
    h.get_by_label_contains(NO_DIALOG);
    assert!(!pem_path.exists());

    type_into(&mut h, PEM_FIELD, pem_path.to_str().unwrap());
    press(&mut h, EXPORT_PEM);
    step_until(&mut h, "the PEM on disk", |_| pem_path.is_file());
    let material = otaforge_pki::Material::load(project.path()).unwrap().unwrap();
    assert_eq!(std::fs::read_to_string(&pem_path).unwrap(), otaforge_pki::export::pem(&material));
    step_until(&mut h, "the notice", |h| h.query_by_label_contains("PEM written to").is_some());

    type_into(&mut h, HEADER_FIELD, header_path.to_str().unwrap());
    press(&mut h, EXPORT_HEADER);
    step_until(&mut h, "the header on disk", |_| header_path.is_file());
    let header = std::fs::read_to_string(&header_path).unwrap();
    assert_eq!(header, otaforge_pki::export::c_header(&material).unwrap());
    assert!(header.contains(otaforge_pki::export::C_SYMBOL));
    assert!(h.query_by_label_contains("cancelled").is_none());
}

#[test]
fn an_export_that_cannot_be_written_says_why() {
    let project = Project::new();
    let mut h = app_with(project.path(), egui::vec2(1000.0, 1400.0), None);
    step_until(&mut h, "the certificate", |h| h.state().certificate.report.is_some());
    h.step();
    type_into(&mut h, PEM_FIELD, "/nonexistent-dir/ca.pem");
    press(&mut h, EXPORT_PEM);
    step_until(&mut h, "the failure", |h| h.query_by_label_contains("Could not write").is_some());
}

#[test]
fn publishing_from_a_typed_path_opens_the_publish_check_and_browse_says_why_no_dialog_opens() {
    let project = Project::new();
    let image = project.path().join("kitchen.bin");
    std::fs::write(&image, esp8266_image(200_000, 4)).unwrap();
    let mut h = app_with(project.path(), egui::vec2(1000.0, 700.0), None);
    h.step();
    open_step(&mut h, "4. Serve");
    h.step();

    press(&mut h, BROWSE);
    h.get_by_label_contains(NO_DIALOG);
    h.get_by_label_contains("zenity");
    assert!(h.state().serve.dialog.is_none(), "no dialog, and nothing pretended to open");

    type_into(&mut h, labels::PUBLISH_FIELD, image.to_str().unwrap());
    press(&mut h, labels::CHECK);
    step_until(&mut h, "the publish check", |h| {
        h.state().serve.dialog.as_ref().is_some_and(|d| d.check.is_some())
    });
    h.step();
    assert_eq!(h.state().serve.dialog.as_ref().unwrap().path, image);
    h.get_by_label("Publish firmware");
    h.get_by_label("ESP8266");
}
