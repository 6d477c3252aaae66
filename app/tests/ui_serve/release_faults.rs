//! The Releases tab with a damaged firmware file and a row that cannot be read: the release is
//! shown disabled with the reason, the row is named, the rest is listed as ever.

use super::support::{Project, esp8266_image};
use super::ui_support::{app, step_until};
use egui_kittest::kittest::Queryable;

#[test]
fn the_releases_tab_shows_a_disabled_release_and_an_unreadable_row() {
    let p = Project::new();
    // Odd seeds: the image builder's generator ignores the lowest bit.
    p.publish(&esp8266_image(60_000, 1), "1.0", "stable");
    let beta = p.publish(&esp8266_image(60_000, 3), "2.0", "beta");
    let gamma = p.publish(&esp8266_image(60_000, 5), "3.0", "gamma");
    let blob = p.path().join("blobs").join(format!("{}.bin", beta.sha256));
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..1000]).unwrap();
    let db = rusqlite::Connection::open(p.path().join("otaforge.db")).unwrap();
    db.execute("UPDATE releases SET size = 'lots' WHERE id = ?1", [gamma.id]).unwrap();
    drop(db);

    let mut h = app(p.path());
    h.step();
    h.get_by_label_contains("4. Serve").click();
    step_until(&mut h, "the release list", |h| !h.state().serve.releases.is_empty());
    h.step();
    assert!(h.state().serve.disabled.contains_key(&beta.id), "{:?}", h.state().serve.disabled);
    h.get_by_label("2.0 — current, disabled");
    h.get_by_label_contains("2.0 (#2) is disabled: its firmware file blobs/");
    h.get_by_label_contains("is truncated: 1000 of 60000 bytes");
    h.get_by_label_contains(&format!("release #{} cannot be read from the database", gamma.id));
    h.get_by_label("1.0 — current");
}
