//! A virtual board flashed over its pty by the app's own flasher boots what was flashed, polls the
//! server and updates itself; reset into the bootloader, it stops running until flashed again.

mod support;
mod virtual_device_support;

use std::time::Duration;

use otaforge::firmware::Chip;
use otaforge::flash::{self, Cancel, FlashRequest};
use otaforge::sim::board::{BoardOptions, VirtualBoard};
use otaforge::sim::device::{Activity, CheckOutcome};
use support::Project;
use virtual_device_support::*;

const T: Duration = Duration::from_secs(60);

async fn flash_over_pty(board: &VirtualBoard, image: Vec<u8>) {
    let port = board.port().display().to_string();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut req = FlashRequest::new(port, image);
        req.connect_timeout = Duration::from_secs(10);
        flash::flash(&req, &Cancel::new(), &mut |_| {})
    })
    .await
    .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

async fn board_updates(chip: Chip, number: u32) {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut events = server.subscribe();
    let mut s = settings(project.path(), "1.0.0", port(&server));
    let board =
        VirtualBoard::start(BoardOptions { device: quick(), ..BoardOptions::new(chip, number) }).unwrap();
    assert_eq!(board.status().activity, Activity::Off, "nothing runs before it is flashed");

    flash_over_pty(&board, bake(chip, &s, IMAGE_SIZE)).await;
    let st = board
        .wait_until(T, |st| st.last_outcome == Some(CheckOutcome::UpToDate))
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", board.log().join("\n")));
    assert_eq!(st.version.as_deref(), Some("1.0.0"));
    assert!(board.log().iter().any(|l| l.contains("reset reason: External System") || chip != Chip::Esp8266));

    s.version = "2.0.0".into();
    project.publish(&bake(chip, &s, IMAGE_SIZE), "2.0.0", "stable");
    server.reload().unwrap();
    board
        .wait_until(T, |st| st.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|st| panic!("{st:?}\n{}", board.log().join("\n")));
    let mac = board.identity().sta_mac();
    assert!(
        event(
            &mut events,
            T,
            |e| matches!(e, otaforge::server::ServerEvent::DeviceInstalled { mac: m, .. } if *m == mac)
        )
        .await
        .is_some()
    );

    // Held in the bootloader, the firmware stops; flashed again, the new image runs.
    board.reset_to_bootloader();
    board.wait_until(T, |st| st.activity == Activity::Off).await.unwrap();
    s.version = "3.0.0".into();
    flash_over_pty(&board, bake(chip, &s, IMAGE_SIZE)).await;
    board.wait_until(T, |st| st.version.as_deref() == Some("3.0.0")).await.unwrap();
    assert_eq!(board.status().boots, 3);
    board.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_board_flashed_over_its_pty_updates_itself() {
    board_updates(Chip::Esp8266, 0x40_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32c3_board_flashed_over_its_pty_updates_itself() {
    board_updates(Chip::Esp32C3, 0x40_0002).await;
}
