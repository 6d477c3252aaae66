//! `otaforge ports`, `otaforge flash` and `otaforge monitor`, run as a user runs them, against
//! virtual devices on real ptys; and the update server confirming an ESP8266 flash when the
//! device checks in.

use crate::support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_sim::serial::{self as sim, SimOptions, VirtualSerialDevice};
use support::{Project, device_get, esp8266_headers, md5_hex, otaforge, run};

const MAC: [u8; 6] = [0x18, 0xFE, 0x34, 0x0A, 0x0B, 0x0C];
const MAC_TEXT: &str = "18:FE:34:0A:0B:0C";

fn virtual_device(chip: sim::Chip, registry: Option<&std::path::Path>) -> VirtualSerialDevice {
    VirtualSerialDevice::spawn(SimOptions {
        chip,
        mac: Some(MAC),
        registry_dir: registry.map(|p| p.to_path_buf()),
        ..SimOptions::default()
    })
    .expect("virtual device starts")
}

#[test]
fn ports_lists_virtual_devices_first() {
    let project = tempfile::tempdir().unwrap();
    let dev = virtual_device(sim::Chip::Esp8266, Some(project.path()));
    let (out, stdout, stderr) = run(otaforge(project.path()).arg("ports"));
    assert!(out.status.success(), "{stderr}");
    let first = stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("* {}", dev.pty_path().display())), "{stdout}");
    assert!(first.contains("virtual ESP8266"), "{stdout}");
    let (_, json, _) = run(otaforge(project.path()).args(["ports", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list[0]["path"], dev.pty_path().display().to_string());
    assert_eq!(list[0]["likelihood"], "Virtual");
}

#[tokio::test(flavor = "multi_thread")]
async fn esp8266_flash_from_the_cli_is_confirmed_by_the_server() {
    let project = Project::new();
    let dev = virtual_device(sim::Chip::Esp8266, Some(project.path()));
    let image = ImageBuilder::arduino_esp8266().target_size(200 * 1024).seed(5).version("3.1.4").build();
    let file = project.path().join("sketch.bin");
    std::fs::write(&file, &image).unwrap();
    // No --port: the one virtual device in the project is the obvious board. Through the ROM
    // (--no-stub): the flash the update server has to confirm.
    let (out, stdout, stderr) =
        run(otaforge(project.path()).arg("flash").arg(&file).args(["--connect-timeout", "5", "--no-stub"]));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("Flashed 200 KiB at 0x0 to the ESP8266"), "{stdout}");
    assert!(stdout.contains("confirm this flash when the device first checks in"), "{stdout}");
    assert!(stderr.contains(&format!("MAC {MAC_TEXT}")), "{stderr}");
    assert!(stderr.contains("100%"), "progress reached the end: {stderr}");
    assert_eq!(&dev.flash_contents()[..image.len()], &image[..]);

    // The store waits for the device to confirm it.
    let waiting =
        otaforge_actions::flash_record::status(project.path(), MAC_TEXT).unwrap().expect("recorded");
    assert_eq!(waiting.confirmed_at, None);
    assert!(waiting.matches(&md5_hex(&image)), "{waiting:?}");

    let server = project.serve(|_| {}).await;
    let client = project.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update", server.tls_addr.port());
    // A check-in running something else confirms nothing.
    device_get(&client, &url, &esp8266_headers(MAC_TEXT, Some("3.1.3"), &"0".repeat(32))).await;
    server.flush().await;
    assert_eq!(
        otaforge_actions::flash_record::status(project.path(), MAC_TEXT).unwrap().unwrap().confirmed_at,
        None
    );
    // The device boots the flashed sketch and checks in with its MD5.
    device_get(&client, &url, &esp8266_headers(MAC_TEXT, Some("3.1.4"), &md5_hex(&image))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        server.flush().await;
        let f = otaforge_actions::flash_record::status(project.path(), MAC_TEXT).unwrap().unwrap();
        if f.confirmed_at.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the check-in did not confirm the flash");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let device = server.devices().into_iter().find(|d| d.mac == MAC_TEXT).expect("device known");
    assert_eq!(device.sketch_md5.as_deref(), Some(md5_hex(&image).as_str()));
    server.shutdown().await;
}

#[test]
fn esp32c3_app_from_the_cli_lands_at_0x10000() {
    let project = tempfile::tempdir().unwrap();
    let dev = virtual_device(sim::Chip::Esp32c3, None);
    let image = ImageBuilder::esp32_app(Chip::Esp32C3).target_size(150 * 1024).seed(9).build();
    let file = project.path().join("app.bin");
    std::fs::write(&file, &image).unwrap();
    let port = dev.pty_path().display().to_string();
    let (out, stdout, stderr) = run(otaforge(project.path())
        .args(["flash", "--port", &port, "--chip", "esp32c3", "--baud", "921600"])
        .arg(&file));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("at 0x10000 to the ESP32-C3") && stdout.contains("matches the image (MD5)"),
        "{stdout}"
    );
    assert_eq!(&dev.flash_contents()[0x10000..0x10000 + image.len()], &image[..]);
    // Flashing the same image again writes nothing.
    crate::reset_to_bootloader(&dev);
    let (out, stdout, stderr) = run(otaforge(project.path()).args(["flash", "--port", &port]).arg(&file));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("already held exactly this image"), "{stdout}");
}

#[test]
fn board_identifies_without_writing() {
    let project = tempfile::tempdir().unwrap();
    let dev = virtual_device(sim::Chip::Esp32c3, None);
    let port = dev.pty_path().display().to_string();
    let (out, stdout, stderr) = run(otaforge(project.path()).args(["board", "--port", &port]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("Chip:  ESP32-C3"), "{stdout}");
    assert!(stdout.contains(&format!("MAC:   {MAC_TEXT}")), "{stdout}");
    assert!(stdout.contains("Flash: 4.0 MiB"), "{stdout}");
    assert!(dev.flash_contents().iter().all(|&b| b == 0xFF));
}

#[test]
fn cli_errors_are_plain_words() {
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join("x.bin");
    std::fs::write(&file, ImageBuilder::arduino_esp8266().target_size(8192).build()).unwrap();
    let (out, _, stderr) =
        run(otaforge(project.path()).args(["flash", "--port", "/dev/ttyNOPE9"]).arg(&file));
    assert!(!out.status.success());
    assert!(stderr.contains("There is no serial port /dev/ttyNOPE9."), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (out, _, stderr) = run(otaforge(project.path()).args(["flash", "--chip", "esp31"]).arg(&file));
    assert!(!out.status.success());
    assert!(stderr.contains("\"esp31\" is not a chip"), "{stderr}");
}

#[test]
fn permission_denied_gets_the_group_advice() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dev = virtual_device(sim::Chip::Esp8266, None);
    let port = dev.pty_path().display().to_string();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), ImageBuilder::arduino_esp8266().target_size(8192).build()).unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = otaforge(std::path::Path::new("/tmp/otaforge-flash-perm-test"));
    cmd.args(["flash", "--port", &port]).arg(file.path());
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } == 0 {
        // Root opens any device: run as an ordinary user, for whom the pty is out of reach.
        cmd.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&port, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let (out, stdout, stderr) = run(&mut cmd);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains(&format!("You do not have permission to use {port}.")), "{stderr}");
    assert!(stderr.contains("sudo usermod -aG"), "{stderr}");
}

/// What a child writes to one of its pipes, as it writes it: a thread reads the pipe and sends
/// each piece on, so a test can wait for a given text with a deadline instead of sleeping.
struct PipeText {
    pieces: std::sync::mpsc::Receiver<Vec<u8>>,
    text: String,
}

impl PipeText {
    fn read(mut pipe: impl Read + Send + 'static) -> Self {
        let (tx, pieces) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        PipeText { pieces, text: String::new() }
    }

    /// Waits until everything read so far contains each of `wanted`; panics with `what` and the
    /// text so far if that takes longer than `within` or the pipe closes first.
    #[track_caller]
    fn wait_for(&mut self, wanted: &[&str], within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while !wanted.iter().all(|w| self.text.contains(w)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.pieces.recv_timeout(left) {
                Ok(piece) => self.text.push_str(&String::from_utf8_lossy(&piece)),
                Err(e) => panic!("{what} ({e}); so far: {:?}", self.text),
            }
        }
    }

    /// Everything, once the pipe has closed (the child exited).
    #[track_caller]
    fn rest(mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.pieces.recv_timeout(left) {
                Ok(piece) => self.text.push_str(&String::from_utf8_lossy(&piece)),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return self.text,
                Err(e) => panic!("the pipe did not close ({e}); so far: {:?}", self.text),
            }
        }
    }
}

/// A child killed when the test fails before it ended, so a failed run leaves no monitor behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn monitor_shows_what_the_board_prints_until_ctrl_c() {
    let pair = nix::pty::openpty(None, None).unwrap();
    let port = nix::unistd::ttyname(&pair.slave).unwrap().display().to_string();
    let project = tempfile::tempdir().unwrap();
    let mut child = Reaped(
        otaforge(project.path())
            .args(["monitor", "--port", &port, "--baud", "74880"])
            .env_remove("RUST_LOG") // its stderr is checked whole below
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = PipeText::read(child.0.stdout.take().unwrap());
    let mut stderr = PipeText::read(child.0.stderr.take().unwrap());
    // The ready line comes once the port is open: from then on nothing written is missed.
    let ready = format!("Monitoring {port} at 74880 baud. Ctrl-C stops.\n");
    stderr.wait_for(&[&ready], Duration::from_secs(20), "the monitor did not say it is ready");
    let mut master = std::fs::File::from(pair.master);
    master.write_all(b"\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n").unwrap();
    master.write_all(b"OTA Forge device 1.0 up\r\nprompt> ").unwrap();
    // Both lines shown before Ctrl-C, the prompt too although no newline ends it.
    let boot = " ets Jan  8 2013,rst cause:2, boot mode:(3,6)\n";
    let up = "OTA Forge device 1.0 up\nprompt> \n";
    stdout.wait_for(&[boot, up], Duration::from_secs(20), "the monitor did not show what the board printed");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "monitor did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.rest(Duration::from_secs(5));
    let stderr = stderr.rest(Duration::from_secs(5));
    assert!(status.success(), "{status:?} {stdout} {stderr}");
    // Each line once, nothing else; the ready line and nothing else on stderr.
    assert_eq!(stdout, format!("\n{boot}{up}"), "{stderr}");
    assert_eq!(stderr, ready, "{stdout}");
}
