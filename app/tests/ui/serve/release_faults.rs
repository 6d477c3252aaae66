//! The Releases tab with a damaged firmware file and a row that cannot be read: the release is
//! shown disabled with the reason, the row is named, the rest is listed as ever.

use crate::support::{Project, esp8266_image};
use crate::ui_support::{app, step_until};
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

/// The publish dialog stores the bytes it checked: a file replaced on disk after the check (a
/// build finishing, a copy still being written) is not what gets published.
#[test]
fn what_is_published_is_what_was_checked_even_if_the_file_changed_since() {
    use otaforge::worker::{Command, Event, PublishDraft, ServeCommand, ServeEvent, Worker};
    use std::time::{Duration, Instant};

    let p = Project::new();
    let checked_image = esp8266_image(60_000, 7);
    let file = p.path().join("sketch.bin");
    std::fs::write(&file, &checked_image).unwrap();
    let worker = Worker::start(p.path().to_path_buf(), || {}).unwrap();
    let next = |what: &str| -> ServeEvent {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match worker.try_recv() {
                Some(Event::Serve(
                    e @ (ServeEvent::Checked(_) | ServeEvent::Published(_) | ServeEvent::Failed(_)),
                )) => {
                    return e;
                }
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        panic!("no answer to {what}");
    };
    let draft = PublishDraft {
        path: file.clone(),
        version: "1.0.0".into(),
        channel: "stable".into(),
        sign: false,
        gzip: false,
    };
    worker.send(Command::Serve(ServeCommand::Check(draft)));
    let ServeEvent::Checked(check) = next("the check") else { panic!("the check was not answered") };
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    let checked = check.checked.clone().expect("a passed check holds what passed");

    // The file changes before the user clicks Publish.
    std::fs::write(&file, esp8266_image(60_000, 9)).unwrap();
    worker.send(Command::Serve(ServeCommand::Publish(checked)));
    match next("the publish") {
        ServeEvent::Published(release) => {
            assert_eq!(
                release.md5,
                otaforge_firmware::md5_hex(&checked_image),
                "the checked bytes are stored"
            );
            assert_eq!(release.size as usize, checked_image.len());
        }
        other => panic!("not published: {other:?}"),
    }
}
