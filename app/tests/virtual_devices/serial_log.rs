//! A virtual board's serial port as `otaforge monitor` shows it: the ROM's boot messages at the
//! ROM's rate, the sketch's log at 115200 baud (boot banner, checks, an update's progress and
//! result), and at each rate nothing of what was printed at the other.

use crate::support;
use crate::virtual_device_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use otaforge_firmware::{Chip, md5_hex};
use otaforge_sim::board::{BoardOptions, VirtualBoard};
use otaforge_sim::device::CheckOutcome;
use support::Project;
use virtual_device_support::*;

const T: Duration = Duration::from_secs(60);

/// `otaforge monitor --port PORT --baud BAUD`, its stdout collected line by line.
struct Monitor {
    child: Child,
    rx: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Monitor {
    fn start(dir: &Path, port: &Path, baud: u32) -> Monitor {
        let mut child = support::otaforge(dir)
            .arg("monitor")
            .arg("--port")
            .arg(port)
            .args(["--baud", &baud.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Monitor { child, rx, lines: Vec::new() }
    }

    /// The index of the first line after `from` matching `pred`, waiting at most `within`.
    fn find(&mut self, from: usize, within: Duration, pred: impl Fn(&str) -> bool) -> Option<usize> {
        let deadline = Instant::now() + within;
        let mut at = from;
        loop {
            if let Some(i) = self.lines[at.min(self.lines.len())..].iter().position(|l| pred(l)) {
                return Some(at + i);
            }
            at = self.lines.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::task::block_in_place(|| self.rx.recv_timeout(left)) {
                Ok(l) => self.lines.push(l),
                Err(_) => return None,
            }
        }
    }

    /// Like [`Monitor::find`] within [`T`], failing the test when no line matches.
    fn expect(&mut self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        match self.find(from, T, pred) {
            Some(i) => i,
            None => panic!("no {what} after line {from} of the monitor:\n{}", self.lines.join("\n")),
        }
    }

    /// Resets `board` until a line matching `pred` comes after `from` (the monitor reads once it
    /// has opened the port, which nothing shows at a rate the firmware does not print at).
    fn reset_until(&mut self, board: &VirtualBoard, from: usize, pred: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + T;
        while Instant::now() < deadline {
            board.reset();
            if let Some(i) = self.find(from, Duration::from_secs(2), &pred) {
                return i;
            }
        }
        panic!("no boot messages after {T:?} of resets:\n{}", self.lines.join("\n"));
    }

    /// Ctrl-C; the lines it printed.
    fn stop(mut self) -> Vec<String> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        assert!(tokio::task::block_in_place(|| self.child.wait()).unwrap().success());
        self.lines.extend(self.rx.try_iter());
        self.lines
    }
}

const ESP8266_ROM_FIRST_LINE: &str = " ets Jan  8 2013,rst cause:2, boot mode:(3,6)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otaforge_monitor_shows_a_virtual_esp8266_booting_and_checking_in() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let board =
        VirtualBoard::start(BoardOptions { device: quick(), ..BoardOptions::new(Chip::Esp8266, 0x40_0021) })
            .unwrap();
    let image =
        baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |s| s.device_name = "kitchen".into());
    flash_over_pty(&board, image).await;
    board.wait_until(T, |st| st.checks > 0).await.unwrap_or_else(|st| panic!("{st:?}"));

    // At the sketch's 115200 baud: attached once the running firmware's lines come through;
    // reset, the whole boot follows.
    let mut mon = Monitor::start(project.path(), board.port(), 115_200);
    let from = mon.expect(0, "line of the running firmware", |l| l.starts_with("[otaforge] "));
    board.reset();
    let banner =
        mon.expect(from, "boot banner", |l| l == "[otaforge] OTA Forge firmware 1.0.0 on \"kitchen\"");
    mon.expect(banner, "chip line", |l| {
        l.starts_with("[otaforge] chip ESP8266 id ") && l.contains(", reset reason: External System, heap ")
    });
    let url = format!("[otaforge] check: GET https://127.0.0.1:{}/", port(&server));
    let check = mon.expect(banner, "check-in", |l| {
        l.starts_with(&url) && l.contains("/demo?name=kitchen as version 1.0.0 (certificate time ")
    });
    mon.expect(check, "answer", |l| {
        l == "[otaforge] check: up to date (the server has nothing newer for version 1.0.0)"
    });
    let lines = mon.stop();
    // The ROM's boot messages (74880 baud) are not shown, not even as noise: every line is the
    // sketch's, or the blank one its setup() prints.
    for l in &lines {
        assert!(l.is_empty() || l.starts_with("[otaforge] "), "{l:?} in\n{}", lines.join("\n"));
    }

    // At the ROM's 74880 baud: the boot messages, and nothing the sketch prints at 115200.
    let mut rom = Monitor::start(project.path(), board.port(), 74_880);
    let first = rom.reset_until(&board, 0, |l| l == ESP8266_ROM_FIRST_LINE);
    rom.expect(first, "eboot's last line", |l| l == "~ld");
    // Once this boot has checked in, the next reset's boot messages close the span to look at.
    let checks = board.status().checks;
    board.wait_until(T, |st| st.checks > checks).await.unwrap_or_else(|st| panic!("{st:?}"));
    board.reset();
    let next = rom.expect(first + 1, "second boot", |l| l == ESP8266_ROM_FIRST_LINE);
    let lines = rom.stop();
    for l in &lines[first..next] {
        assert!(!l.contains("[otaforge]") && !l.contains('\u{FFFD}'), "{l:?} in\n{}", lines.join("\n"));
    }
    board.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_reaches_a_virtual_esp32c3s_serial_log_and_it_reboots_into_it() {
    let project = Project::new();
    let server = project.serve(|_| {}).await;
    let mut s = settings(project.path(), "1.0.0", port(&server));
    let board =
        VirtualBoard::start(BoardOptions { device: quick(), ..BoardOptions::new(Chip::Esp32C3, 0x40_0022) })
            .unwrap();
    flash_over_pty(&board, bake(Chip::Esp32C3, &s, IMAGE_SIZE)).await;
    board
        .wait_until(T, |st| st.last_outcome == Some(CheckOutcome::UpToDate))
        .await
        .unwrap_or_else(|st| panic!("{st:?}"));

    let mut mon = Monitor::start(project.path(), board.port(), 115_200);
    let from = mon.expect(0, "line of the running firmware", |l| l.starts_with("[otaforge] "));
    s.version = "2.0.0".into();
    project.publish(&bake(Chip::Esp32C3, &s, IMAGE_SIZE), "2.0.0", DEMO);
    server.reload().unwrap();

    let start = mon.expect(from, "update start", |l| {
        l == "[otaforge] update: a new image is available; downloading and writing it to the OTA partition"
    });
    let zero = mon.expect(start, "progress", |l| l.starts_with("[otaforge] update: 0% (0 of "));
    let all = mon.expect(zero, "end of the download", |l| l.starts_with("[otaforge] update: 100% ("));
    let tenths = mon.lines[zero..=all].iter().filter(|l| l.starts_with("[otaforge] update: ")).count();
    assert!(tenths >= 5, "progress in tenths:\n{}", mon.lines.join("\n"));
    let done = mon.expect(all, "result", |l| {
        l == "[otaforge] update: download complete; the device reboots into the new firmware"
    });
    // esp_restart(): the ROM's words for a software reset, at 115200 like the sketch.
    let rom = mon.expect(done, "ROM boot messages", |l| {
        l == "rst:0x3 (RTC_SW_SYS_RST),boot:0xc (SPI_FAST_FLASH_BOOT)"
    });
    let banner =
        mon.expect(rom, "boot banner", |l| l.starts_with("[otaforge] OTA Forge firmware 2.0.0 on \""));
    mon.expect(banner, "trial", |l| {
        l.starts_with("[otaforge] rollback: this image was just installed and is on trial")
    });
    mon.expect(banner, "answer", |l| {
        l == "[otaforge] check: up to date (the server has nothing newer for version 2.0.0)"
    });
    let lines = mon.stop();
    assert!(!lines.iter().any(|l| l.contains('\u{FFFD}')), "{}", lines.join("\n"));
    board.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_update_shows_the_updaters_error_on_the_serial_log() {
    let project = Project::new();
    let v2 = publish_with_wrong_md5(&project);
    let server = project.serve(|_| {}).await;
    let board =
        VirtualBoard::start(BoardOptions { device: quick(), ..BoardOptions::new(Chip::Esp8266, 0x40_0023) })
            .unwrap();
    flash_over_pty(&board, baked(project.path(), Chip::Esp8266, "1.0.0", port(&server), |_| {})).await;

    // It retries every poll: the monitor sees a whole attempt once it is attached.
    let mut mon = Monitor::start(project.path(), board.port(), 115_200);
    let start = mon.expect(0, "update start", |l| {
        l == "[otaforge] update: a new image is available; downloading and writing it to flash"
    });
    let all = mon.expect(start, "end of the download", |l| l.starts_with("[otaforge] update: 100% ("));
    let error = format!(
        "error 7: Update error: ERROR[7]: MD5 verification failed: expected: 00112233445566778899aabbccddeeff, calculated: {}",
        md5_hex(&v2)
    );
    let failed = mon.expect(all, "updater error", |l| l == format!("[otaforge] update: {error}"));
    let failed = mon.expect(failed, "failed check", |l| l == format!("[otaforge] check failed: {error}"));
    mon.expect(failed, "explanation", |l| {
        l == "[otaforge]   = the download's MD5 does not match the server's x-MD5"
    });
    mon.stop();
    assert_eq!(board.status().version.as_deref(), Some("1.0.0"));
    board.stop().await;
    server.shutdown().await;
}
