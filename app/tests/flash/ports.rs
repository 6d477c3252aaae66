//! The port list in the worker: reported when the Flash step starts watching, again only when a
//! board comes or goes (virtual boards register in the project, as USB boards appear in /sys),
//! and not at all once the step stops watching.

use std::time::{Duration, Instant};

use otaforge::worker::{Command, Event, FlashCommand, FlashEvent, Worker};
use otaforge_flash::PortInfo;
use otaforge_sim::serial::{SimOptions, VirtualSerialDevice};

/// The next port list within `within`, skipping other events.
fn next_ports(worker: &Worker, within: Duration) -> Option<Vec<PortInfo>> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match worker.try_recv() {
            Some(Event::Flash(FlashEvent::Ports(p))) => return Some(p),
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    None
}

fn lists(ports: &[PortInfo], path: &std::path::Path) -> bool {
    ports.iter().any(|p| p.path == path.display().to_string())
}

#[test]
fn ports_are_reported_on_change_only_while_watched() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path().to_path_buf(), || {}).unwrap();
    worker.send(Command::Flash(FlashCommand::WatchPorts(true)));
    let first = next_ports(&worker, Duration::from_secs(5)).expect("the list comes at once");
    assert!(first.iter().all(|p| !p.path.starts_with("/dev/pts/")), "no virtual board yet: {first:?}");
    assert!(next_ports(&worker, Duration::from_secs(4)).is_none(), "nothing changed, nothing reported");

    // Plug a board in.
    let dev = VirtualSerialDevice::spawn(SimOptions {
        registry_dir: Some(dir.path().into()),
        ..SimOptions::default()
    })
    .unwrap();
    let pty = dev.pty_path().to_path_buf();
    let plugged = next_ports(&worker, Duration::from_secs(4)).expect("reported within a poll or two");
    assert!(lists(&plugged, &pty), "{plugged:?}");
    assert_eq!(plugged[0].path, pty.display().to_string(), "virtual boards come first");

    // Unplug it.
    dev.stop();
    let unplugged = next_ports(&worker, Duration::from_secs(4)).expect("reported within a poll or two");
    assert!(!lists(&unplugged, &pty), "{unplugged:?}");

    // Not watching: no polling, no events.
    worker.send(Command::Flash(FlashCommand::WatchPorts(false)));
    // The stop has no answer to wait on (commands run concurrently): a pause lets it take effect
    // before the board is plugged in. Too short a pause fails the test below; it cannot pass it.
    std::thread::sleep(Duration::from_millis(200));
    let _quiet = VirtualSerialDevice::spawn(SimOptions {
        registry_dir: Some(dir.path().into()),
        ..SimOptions::default()
    })
    .unwrap();
    assert!(next_ports(&worker, Duration::from_secs(4)).is_none(), "no events while the step is hidden");
}
