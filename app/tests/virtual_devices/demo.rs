//! `otaforge demo`, as a user (and CI) runs it: every step, in order, and the exit status says
//! whether the device ended up running the new release, installed.

use crate::support;

use support::{otaforge, run};

fn demo(args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(otaforge(dir.path()).arg("demo").args(args));
    (out.status.success(), stdout, stderr)
}

fn assert_story(stdout: &str) {
    let steps: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    let expected =
        ["Certificates:", "Server:", "Firmware:", "Flash:", "Poll:", "Publish:", "Update:", "Installed:"];
    assert_eq!(steps.len(), expected.len(), "{stdout}");
    let mut last = -1.0f64;
    for (i, (line, word)) in steps.iter().zip(expected).enumerate() {
        assert!(line.contains(&format!("{}/8 {word}", i + 1)), "step {}: {line}", i + 1);
        let t: f64 = line[1..line.find(" s]").unwrap()].trim().parse().unwrap();
        assert!(t >= last, "times go forward: {stdout}");
        last = t;
    }
    assert!(stdout.contains("running 2.0.0, installed"), "{stdout}");
    assert!(stdout.contains("Done in"), "{stdout}");
}

#[test]
fn the_demo_shows_the_whole_story_with_a_virtual_esp8266() {
    let (ok, stdout, stderr) = demo(&[]);
    assert!(ok, "{stdout}\n{stderr}");
    assert_story(&stdout);
    // The device's own serial log is shown, from both firmwares.
    assert!(stdout.contains("| [otaforge] OTA Forge firmware 1.0.0 on \"demo\""), "{stdout}");
    assert!(stdout.contains("| [otaforge] update: 100% (300000 of 300000 bytes)"), "{stdout}");
    assert!(stdout.contains("reset reason: Software/System restart"), "{stdout}");
}

#[test]
fn the_demo_runs_with_a_virtual_esp32c3_too() {
    let (ok, stdout, stderr) = demo(&["--chip", "esp32c3", "--quiet"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert_story(&stdout);
    assert!(!stdout.contains("| [otaforge]"), "--quiet hides the serial log");
}

#[test]
fn the_demo_refuses_a_board_it_cannot_simulate() {
    let (ok, stdout, stderr) = demo(&["--chip", "esp32s3"]);
    assert!(!ok);
    assert!(stderr.contains("ESP8266 or an ESP32-C3"), "{stdout}\n{stderr}");
}
