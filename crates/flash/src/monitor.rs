//! The serial monitor: what the board prints, line by line, until the user stops it or the port
//! goes away.
//!
//! The ESP8266 ROM prints its boot messages at 74880 baud (26 MHz crystal); sketches usually
//! `Serial.begin(115200)`. Text arrives in pieces; a line is passed on when it ends, or when the
//! board has been quiet for a moment (a prompt without a newline).

use std::io::Read;
use std::time::{Duration, Instant};

use serialport::SerialPort;

use super::diagnosis::FlashError;
use super::link::{self, Cancel};

/// How long a partial line may wait for its end before it is shown anyway.
const PARTIAL_AFTER: Duration = Duration::from_millis(300);
/// How long one read waits, so Cancel and partial lines are noticed.
const READ_WAIT: Duration = Duration::from_millis(100);
/// Longest line kept; longer ones are split (a board printing binary).
const MAX_LINE: usize = 4096;

/// How a monitor session ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorEnd {
    /// The user stopped it.
    Stopped,
}

/// Splits a byte stream into printable lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    since: Option<Instant>,
}

impl LineSplitter {
    /// Feeds bytes; returns the lines they complete.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' || self.partial.len() >= MAX_LINE {
                out.push(printable(&self.partial));
                self.partial.clear();
                if b == b'\n' {
                    continue;
                }
            }
            self.partial.push(b);
        }
        self.since = if self.partial.is_empty() { None } else { self.since.or(Some(now)) };
        out
    }

    /// The partial line, once it has waited long enough for its end.
    pub fn flush_stale(&mut self, now: Instant) -> Option<String> {
        let since = self.since?;
        if now.duration_since(since) < PARTIAL_AFTER {
            return None;
        }
        self.since = None;
        let line = printable(&self.partial);
        self.partial.clear();
        Some(line)
    }
}

/// Text as the board meant it: UTF-8 where it is, no carriage returns or control bytes (boot
/// ROM noise at the wrong baud rate shows as replacement marks instead of garbling a terminal).
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().filter(|c| *c == '\t' || !c.is_control()).collect()
}

/// Shows what the board on `port` prints at `baud`, one line at a time, until cancelled. With
/// `reset`, the board is restarted first (when the port has reset lines) so its boot is seen.
/// `on_open` is called once the port is open: from then on nothing the board prints is missed,
/// and no other program can open the port.
pub fn monitor(
    port: &str,
    baud: u32,
    reset: bool,
    cancel: &Cancel,
    on_open: &mut dyn FnMut(),
    on_line: &mut dyn FnMut(String),
) -> Result<MonitorEnd, FlashError> {
    let (mut link, lines) = link::open(port, baud, cancel)?;
    let serial = link.get();
    serial
        .set_timeout(READ_WAIT)
        .map_err(|e| FlashError::Open { port: port.into(), reason: e.to_string() })?;
    on_open();
    if reset && lines == link::ResetLines::Available {
        // EN low for 100 ms with IO0 high: a normal boot.
        let _ = serial.write_data_terminal_ready(false);
        let _ = serial.write_request_to_send(true);
        std::thread::sleep(Duration::from_millis(100));
        let _ = serial.write_request_to_send(false);
    }
    let mut splitter = LineSplitter::default();
    let mut buf = [0u8; 1024];
    loop {
        if cancel.is_cancelled() {
            if let Some(rest) = splitter.flush_stale(Instant::now() + PARTIAL_AFTER) {
                on_line(rest);
            }
            return Ok(MonitorEnd::Stopped);
        }
        match serial.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                for line in splitter.feed(&buf[..n], Instant::now()) {
                    on_line(line);
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(_) if cancel.is_cancelled() => continue,
            Err(_) => return Err(FlashError::MonitorLost { port: port.into() }),
        }
        if let Some(line) = splitter.flush_stale(Instant::now()) {
            on_line(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_and_partials_flush_when_stale() {
        let t0 = Instant::now();
        let mut s = LineSplitter::default();
        assert_eq!(
            s.feed(b"ets Jan  8 2013,rst cause:2\r\nload 0x4010f000", t0),
            ["ets Jan  8 2013,rst cause:2"]
        );
        assert_eq!(s.flush_stale(t0 + Duration::from_millis(100)), None);
        assert_eq!(s.feed(b", len 3584\r\n> ", t0), ["load 0x4010f000, len 3584"]);
        assert_eq!(s.flush_stale(t0 + Duration::from_millis(400)).as_deref(), Some("> "));
        assert_eq!(s.flush_stale(t0 + Duration::from_secs(9)), None);
        // Noise at the wrong baud rate stays on one line and harmless.
        let noisy = s.feed(&[0xFF, 0x1B, b'[', b'2', b'J', 0xC3, b'\n'], t0);
        assert_eq!(noisy.len(), 1);
        assert!(!noisy[0].contains('\u{1b}'));
    }
}
