//! The whole path of an ESP8266 flash the ROM cannot verify, through the worker the app uses:
//! the Serve step's server runs; a virtual board is added in the Flash step and flashed over its
//! pty with a firmware baked for this project; the board boots it, checks in with the server
//! over TLS, and the Flash step hears that the flash is confirmed.

use crate::support;

use std::time::{Duration, Instant};

use otaforge::worker::{
    Command, Event, FlashCommand, FlashEvent, ServeCommand, ServeEvent, ServeSettings, Worker,
};
use otaforge_firmware::settings::{BakeForm, baked_settings};
use otaforge_firmware::{Chip, config_block};
use otaforge_flash::Verification;
use support::Project;

/// The first event `pick` accepts within `within` (others are dropped).
fn wait_for<T>(worker: &Worker, within: Duration, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        match worker.try_recv() {
            Some(e) => {
                if let Some(t) = pick(e) {
                    return t;
                }
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn a_flashed_virtual_board_confirms_its_flash_by_checking_in() {
    let project = Project::new();
    let worker = Worker::start(project.path().to_path_buf(), || {}).unwrap();

    worker.send(Command::Serve(ServeCommand::Start(ServeSettings { bind: "127.0.0.1".into(), port: 0 })));
    let addr = wait_for(&worker, Duration::from_secs(20), "the server", |e| match e {
        Event::Serve(ServeEvent::Started(info)) => Some(info.addr),
        Event::Serve(ServeEvent::StartFailed(why)) => panic!("{why}"),
        _ => None,
    });

    // Firmware baked for this project and this server (what the Firmware step writes).
    let form = BakeForm {
        host: "127.0.0.1".into(),
        port: addr.port(),
        version: "1.0.0".into(),
        ..Default::default()
    };
    let settings = baked_settings(project.path(), &form, true).unwrap();
    let image = config_block::bake(
        &otaforge_sim::device::reference_image(Chip::Esp8266, "1.0.0", 300 * 1024),
        &settings,
    )
    .unwrap();
    let file = project.path().join("kitchen.bin");
    std::fs::write(&file, &image).unwrap();

    worker.send(Command::Flash(FlashCommand::AddVirtualDevice(Chip::Esp8266)));
    let port = wait_for(&worker, Duration::from_secs(10), "the virtual board", |e| match e {
        Event::Flash(FlashEvent::VirtualDeviceAdded(port)) => Some(port),
        Event::Flash(FlashEvent::VirtualDeviceFailed(why)) => panic!("{why}"),
        _ => None,
    });

    worker.send(Command::Flash(FlashCommand::Flash {
        port,
        image: file,
        chip: None,
        baud: 460_800,
        monitor_after: None,
        device_settings: None,
        // The ROM path: the flash the update server has to confirm.
        stub: otaforge_flash::StubSource::None,
    }));
    let (outcome, awaiting) = wait_for(&worker, Duration::from_secs(30), "the flash", |e| match e {
        Event::Flash(FlashEvent::Done { outcome, awaiting_confirmation }) => {
            Some((outcome, awaiting_confirmation))
        }
        Event::Flash(FlashEvent::Failed(why)) => panic!("{why}"),
        _ => None,
    });
    assert_eq!(outcome.verification, Verification::ServerWillConfirm);
    assert!(awaiting, "recorded for the server to confirm");
    let mac = outcome.board.mac.clone().expect("the MAC was read from the efuses");

    // The Flash step is on screen: the worker watches for the confirmation.
    worker.send(Command::Flash(FlashCommand::WatchPorts(true)));
    let confirmed = wait_for(&worker, Duration::from_secs(60), "the confirmation", |e| match e {
        Event::Flash(FlashEvent::Confirmed { mac }) => Some(mac),
        _ => None,
    });
    assert_eq!(confirmed, mac);
    let stored = otaforge_actions::flash_record::status(project.path(), &mac).unwrap().unwrap();
    assert!(stored.confirmed_at.is_some());
    worker.send(Command::Serve(ServeCommand::Stop));
}
