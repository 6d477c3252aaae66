//! The device's UART: frames in and out over the pty, at the device's baud rate.
//!
//! Two things make it behave like a wire rather than a pipe:
//! - **Baud rate.** While the ROM auto-bauds, any host rate works. Once the device's rate is fixed
//!   (a flasher stub runs, or CHANGE_BAUDRATE was answered), bytes a host sends at another rate
//!   arrive as garbage and are dropped, so a host that forgets to switch fails as on hardware.
//!   The same holds the other way: text the chip prints ([`Link::print`]) at a rate the host
//!   does not read at is garbage to it, and is dropped.
//! - **Throttling** (optional): bytes take `10 / baud` seconds each in either direction, so a
//!   1 MB write takes as long as it would over a real adapter.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::pty::Pty;
use super::slip;

/// The pty went away (closed by a fault knob) or the simulator is stopping.
#[derive(Debug)]
pub struct LinkDown;

/// Bytes the chip's UART sends while it runs its firmware, with the rate they are sent at: the
/// ESP8266's ROM prints at 74880 baud, sketches at what `Serial.begin()` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UartBytes {
    /// The sender's baud rate.
    pub baud: u32,
    /// What it sends.
    pub bytes: Vec<u8>,
}

/// A UART on a pty.
pub struct Link {
    pty: Option<Pty>,
    decoder: slip::Decoder,
    frames: VecDeque<Vec<u8>>,
    throttle: bool,
    device_baud: Option<u32>,
    rx_clock: Instant,
    tx_clock: Instant,
    stop: Arc<AtomicBool>,
}

/// How long the simulator waits for input before checking whether it should stop.
const POLL: Duration = Duration::from_millis(50);

impl Link {
    /// A link on `pty`; `stop` ends any wait.
    pub fn new(pty: Pty, throttle: bool, stop: Arc<AtomicBool>) -> Link {
        let now = Instant::now();
        Link {
            pty: Some(pty),
            decoder: slip::Decoder::new(),
            frames: VecDeque::new(),
            throttle,
            device_baud: None,
            rx_clock: now,
            tx_clock: now,
            stop,
        }
    }

    /// Fixes the device's baud rate (`None`: auto-baud, follow whatever the host uses).
    pub fn set_device_baud(&mut self, baud: Option<u32>) {
        self.device_baud = baud;
    }

    /// The device's baud rate: the fixed one, else the host's.
    pub fn baud(&self) -> u32 {
        self.device_baud.unwrap_or_else(|| self.host_baud())
    }

    /// The rate the host set on its end of the pty.
    pub fn host_baud(&self) -> u32 {
        self.pty.as_ref().and_then(|p| p.host_baud().ok()).filter(|&b| b > 0).unwrap_or(115_200)
    }

    /// The next frame from the host, waiting up to `timeout` (`None`: until stopped).
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, LinkDown> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut buf = [0u8; 4096];
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(Some(f));
            }
            if self.stop.load(Ordering::Relaxed) {
                return Err(LinkDown);
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Whole milliseconds, rounded up, so poll() never spins with a 0 timeout.
                    Duration::from_millis(left.as_millis() as u64 + 1).min(POLL)
                }
                None => POLL,
            };
            let pty = self.pty.as_mut().ok_or(LinkDown)?;
            let n = match pty.read_timeout(&mut buf, wait) {
                Ok(n) => n,
                Err(e) => {
                    log::debug!("virtual device: pty read failed: {e}");
                    return Err(LinkDown);
                }
            };
            if n == 0 {
                continue;
            }
            if let Some(device) = self.device_baud {
                let host = self.host_baud();
                if !rates_match(device, host) {
                    log::debug!(
                        "virtual device: {n} bytes at {host} baud while the UART runs at {device}: garbage"
                    );
                    self.decoder = slip::Decoder::new();
                    continue;
                }
            }
            self.pace_rx(n);
            let frames = self.decoder.feed(&buf[..n]);
            self.frames.extend(frames);
        }
    }

    /// Sends one SLIP frame holding `payload`.
    pub fn send(&mut self, payload: &[u8]) -> Result<(), LinkDown> {
        let wire = slip::encode(payload);
        self.send_raw(&wire)
    }

    /// Sends bytes as they are (a frame already encoded, or boot-log text).
    pub fn send_raw(&mut self, wire: &[u8]) -> Result<(), LinkDown> {
        self.pace_tx(wire.len());
        let pty = self.pty.as_mut().ok_or(LinkDown)?;
        pty.write_all(wire, Duration::from_secs(2)).map_err(|e| {
            log::debug!("virtual device: pty write failed: {e}");
            LinkDown
        })
    }

    /// Sends text the chip prints at `baud` (its ROM's rate, or the sketch's). A host reading at
    /// another rate would see garbage; a pty would pass it clean, so it is dropped (false). Never
    /// waits for a host that does not read: a UART's bytes are lost then too.
    pub fn print(&mut self, baud: u32, text: &[u8]) -> Result<bool, LinkDown> {
        let host = self.host_baud();
        if !rates_match(baud, host) {
            log::debug!(
                "virtual device: {} bytes at {baud} baud while the host reads at {host}: garbage",
                text.len()
            );
            return Ok(false);
        }
        if self.throttle {
            self.tx_clock = self.tx_clock.max(Instant::now()) + byte_time(text.len(), baud);
            sleep_until(self.tx_clock, &self.stop);
        }
        let pty = self.pty.as_mut().ok_or(LinkDown)?;
        pty.write_all(text, Duration::ZERO).map_err(|e| {
            log::debug!("virtual device: pty write failed: {e}");
            LinkDown
        })?;
        Ok(true)
    }

    /// Unplugs the device: closes the pty, so the host's next read or write fails.
    pub fn close(&mut self) {
        self.pty = None;
    }

    /// Drops whatever the host sent that was not read yet (a reset loses the UART FIFO).
    pub fn discard_input(&mut self) {
        self.frames.clear();
        self.decoder = slip::Decoder::new();
        if let Some(p) = self.pty.as_mut() {
            p.discard_input();
        }
    }

    /// Drops what was sent to the host and not read yet.
    pub fn discard_output(&mut self) {
        if let Some(p) = self.pty.as_mut() {
            p.discard_output();
        }
    }

    /// Waits out `d` of device-side work (a flash erase), unless stopping.
    pub fn busy(&self, d: Duration) {
        sleep_until(Instant::now() + d, &self.stop);
    }

    /// Waits until `t` (device-side work that runs alongside the UART ends), unless stopping.
    pub fn wait_until(&self, t: Instant) {
        sleep_until(t, &self.stop);
    }

    fn byte_time(&self, n: usize) -> Duration {
        byte_time(n, self.baud())
    }

    fn pace_rx(&mut self, n: usize) {
        if !self.throttle {
            return;
        }
        self.rx_clock = self.rx_clock.max(Instant::now()) + self.byte_time(n);
        sleep_until(self.rx_clock, &self.stop);
    }

    fn pace_tx(&mut self, n: usize) {
        if !self.throttle {
            return;
        }
        self.tx_clock = self.tx_clock.max(Instant::now()) + self.byte_time(n);
        sleep_until(self.tx_clock, &self.stop);
    }
}

/// How long `n` bytes take at `baud` (8N1: 10 bits each).
fn byte_time(n: usize, baud: u32) -> Duration {
    Duration::from_nanos(n as u64 * 10 * 1_000_000_000 / baud.max(300) as u64)
}

/// UARTs tolerate a few percent of rate error.
fn rates_match(a: u32, b: u32) -> bool {
    let (a, b) = (a as u64, b as u64);
    a.abs_diff(b) * 100 <= a.max(b) * 3
}

fn sleep_until(t: Instant, stop: &AtomicBool) {
    loop {
        let left = t.saturating_duration_since(Instant::now());
        if left.is_zero() || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep(left.min(POLL));
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("device_baud", &self.device_baud)
            .field("throttle", &self.throttle)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use nix::sys::termios::{self, BaudRate, SetArg};

    #[test]
    fn printed_text_reaches_a_host_reading_at_its_rate_only() {
        let pty = Pty::open().unwrap();
        let mut host = std::fs::OpenOptions::new().read(true).write(true).open(pty.path()).unwrap();
        let mut link = Link::new(pty, false, Arc::new(AtomicBool::new(false)));
        let mut t = termios::tcgetattr(&host).unwrap();
        termios::cfmakeraw(&mut t);
        termios::cfsetspeed(&mut t, BaudRate::B115200).unwrap();
        termios::tcsetattr(&host, SetArg::TCSANOW, &t).unwrap();

        assert!(!link.print(74_880, b" ets Jan  8 2013,rst cause:2\r\n").unwrap(), "garbage at 115200");
        assert!(link.print(115_200, b"[otaforge] hello\n").unwrap());
        let mut got = [0u8; 17];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"[otaforge] hello\n", "only the text at the host's rate");
    }
}
