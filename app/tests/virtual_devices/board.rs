//! A virtual board flashed over its pty by the app's own flasher boots what was flashed, polls the
//! server and updates itself; reset into the bootloader, it stops running until flashed again.

use crate::support;
use crate::virtual_device_support;

use std::time::Duration;

use otaforge_firmware::Chip;
use otaforge_sim::board::{BoardOptions, VirtualBoard};
use otaforge_sim::device::{Activity, CheckOutcome};
use support::Project;
use virtual_device_support::*;

const T: Duration = Duration::from_secs(60);

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
    project.publish(&bake(chip, &s, IMAGE_SIZE), "2.0.0", DEMO);
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
            |e| matches!(e, otaforge_server::ServerEvent::DeviceInstalled { mac: m, .. } if *m == mac)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaforge_sim_board_boots_what_otaforge_flash_writes() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let image = project.path().join("kitchen.bin");
    std::fs::write(
        &image,
        baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |s| s.device_name = "kitchen".into()),
    )
    .unwrap();

    let mut child = support::otaforge(project.path())
        .args(["sim", "board", "--number", "77", "--interval", "0.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let pty = rx.recv_timeout(T).expect("the board prints its port");
    assert!(pty.starts_with("/dev/"), "{pty}");
    // It is in the port list the Flash step shows.
    assert!(otaforge_sim::serial::running(project.path()).iter().any(|p| p.pty.display().to_string() == pty));

    let dir = project.path().to_path_buf();
    let (out, stdout, stderr) = tokio::task::spawn_blocking(move || {
        support::run(support::otaforge(&dir).args(["flash"]).arg(&image).args([
            "--port",
            &pty,
            "--connect-timeout",
            "10",
        ]))
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let mut log = Vec::new();
    let deadline = std::time::Instant::now() + T;
    while !log.iter().any(|l: &String| l.contains("check: up to date")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => log.push(l),
            Err(_) => panic!("no check in the board's log:\n{}", log.join("\n")),
        }
    }
    assert!(
        log.iter().any(|l| l == "[otaforge] OTA Forge firmware 1.0.0 on \"kitchen\""),
        "{}",
        log.join("\n")
    );
    assert!(server.devices().iter().any(|d| d.mac == "18:FE:34:00:00:4D"), "the server saw the board");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(otaforge_sim::serial::running(project.path()).is_empty(), "its port is gone from the list");
    server.shutdown().await;
}
