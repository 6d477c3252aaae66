//! `otaforge sim serial`: prints the port, lists itself, stops on SIGTERM, refuses bad options.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::esptool::esptool_path;
use crate::support;

#[test]
fn the_cli_runs_a_virtual_device_until_told_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let flash = dir.path().join("cli-flash.bin");
    let mut child = support::otaforge(dir.path())
        .args(["sim", "serial", "--chip", "esp8266", "--flash-size", "2MB", "--flash"])
        .arg(&flash)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let pty = String::from_utf8(line).unwrap();
    assert!(pty.starts_with("/dev/pts/"), "{pty}");
    let listed = otaforge_sim::serial::running(dir.path());
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].pty, PathBuf::from(&pty));
    assert_eq!(listed[0].flash_file, flash);
    assert_eq!(std::fs::metadata(&flash).unwrap().len(), 2 << 20);

    let (ok, out) = {
        let port = PathBuf::from(&pty);
        let mut cmd = Command::new(esptool_path());
        cmd.arg("--port").arg(&port).args([
            "--before",
            "no-reset",
            "--after",
            "no-reset",
            "--no-stub",
            "flash-id",
        ]);
        let o = cmd.output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert!(ok && out.contains("2MB"), "{out}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(otaforge_sim::serial::running(dir.path()).is_empty(), "the registry entry is gone");
}

#[test]
fn the_cli_refuses_bad_options_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, err) =
        support::run(support::otaforge(dir.path()).args(["sim", "serial", "--flash-size", "3MB"]));
    assert!(!out.status.success());
    assert!(err.contains("flash size 3MB"), "{err}");
    let (out, _, err) =
        support::run(support::otaforge(dir.path()).args(["sim", "serial", "--chip", "esp32s9"]));
    assert!(!out.status.success());
    assert!(err.contains("esp8266 or esp32c3"), "{err}");
}
