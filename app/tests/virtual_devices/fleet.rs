//! A fleet of virtual devices against the real server: distinct MACs, every one updated, the
//! server's inventory holding each; and `otaforge sim fleet` as a user runs it.

use crate::support;
use crate::virtual_device_support;

use std::collections::HashSet;
use std::time::Duration;

use otaforge_firmware::Chip;
use otaforge_sim::device::DeviceOptions;
use otaforge_sim::fleet::{Fleet, FleetOptions};
use otaforge_store::DeviceState;
use support::{Project, otaforge, run};
use virtual_device_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rolls_out_with_no_failed_check() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut s = settings(project.path(), "1.0.0", port(&server));
    let fleet = Fleet::start(FleetOptions {
        devices: 40,
        chip: Chip::Esp8266,
        image: bake(Chip::Esp8266, &s, IMAGE_SIZE),
        first_number: 0x30_0000,
        device: DeviceOptions { poll_interval: Some(Duration::from_millis(500)), ..quick() },
    })
    .unwrap();
    let macs: HashSet<String> = fleet.statuses().into_iter().map(|d| d.mac).collect();
    assert_eq!(macs.len(), 40, "distinct MACs");
    assert!(fleet.wait_all(Duration::from_secs(60), |d| d.checks >= 1).await, "{:?}", fleet.summary());

    s.version = "2.0.0".into();
    project.publish(&bake(Chip::Esp8266, &s, IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();
    let done = fleet.wait_all(Duration::from_secs(120), |d| d.version.as_deref() == Some("2.0.0")).await;
    let summary = fleet.summary();
    assert!(done, "{summary:?}");
    assert_eq!((summary.running("2.0.0"), summary.updates, summary.failures), (40, 40, 0), "{summary:?}");

    // The server knows every one of them, installed.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let installed = server
            .devices()
            .into_iter()
            .filter(|d| macs.contains(&d.mac) && d.state == DeviceState::Installed)
            .count();
        if installed == 40 {
            break;
        }
        assert!(std::time::Instant::now() < until, "{installed} of 40 marked installed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_command_reports_each_device() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut s = settings(project.path(), "2.0.0", port(&server));
    project.publish(&bake(Chip::Esp8266, &s, IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();
    s.version = "1.0.0".into();
    let dir = project.path().to_path_buf();
    let p = port(&server).to_string();
    let (out, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(otaforge(&dir).args([
            "sim",
            "fleet",
            "--devices",
            "5",
            "--interval",
            "0.5",
            "--host",
            "127.0.0.1",
            "--port",
            &p,
            "--until-version",
            "2.0.0",
            "--duration",
            "60",
            "--per-device",
            "--image-size",
            "60000",
        ]))
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("18:FE:34:") && l.contains("2.0.0")).count(),
        5,
        "{stdout}"
    );
    assert!(stdout.contains("running 2.0.0: 5"), "{stdout}");
    assert!(stdout.contains("failed checks: 0"), "{stdout}");

    // A fleet that cannot reach a server says so, and fails when it was asked for a version.
    let dir = project.path().to_path_buf();
    let (out, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run(otaforge(&dir).args([
            "sim",
            "fleet",
            "--devices",
            "3",
            "--interval",
            "0.5",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--until-version",
            "2.0.0",
            "--duration",
            "7",
        ]))
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(stdout.contains("error -1: HTTP error: connection failed: 3 devices"), "{stdout}");
    assert!(stderr.contains("0 of 3 devices run 2.0.0"), "{stderr}");
    server.shutdown().await;
}
