//! What a flash reports while it runs, in the units people think in: which phase, bytes of the
//! image written out of the total, the rate and the time left.
//!
//! espflash counts (compressed) blocks, and an unchanged region it skips reports `finish(true)`
//! without ever calling `init`; [`SegmentProgress`] turns that into image bytes.

use std::time::{Duration, Instant};

use otaforge_firmware::Chip;

/// The steps of a flash, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Phase {
    /// Opening the port, syncing with the ROM, detecting the chip (and, for the ESP32 family,
    /// loading espflash's stub).
    Connect,
    /// Uploading esptool's flasher stub into an ESP8266's RAM and starting it.
    UploadStub,
    /// Erasing flash.
    Erase,
    /// Writing the image.
    Write,
    /// Comparing the flash with the image (MD5).
    Verify,
    /// Resetting the board into its new firmware.
    Reset,
}

impl Phase {
    /// The phase as a gerund, for "… while writing".
    pub fn doing(self) -> &'static str {
        match self {
            Phase::Connect => "connecting",
            Phase::UploadStub => "uploading the flasher stub",
            Phase::Erase => "erasing",
            Phase::Write => "writing",
            Phase::Verify => "verifying",
            Phase::Reset => "resetting",
        }
    }
}

/// The board at the other end, as detected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BoardInfo {
    /// The port it is on.
    pub port: String,
    /// The chip.
    pub chip: Chip,
    /// Station MAC address, `AA:BB:CC:DD:EE:FF`.
    pub mac: Option<String>,
    /// Flash size in bytes.
    pub flash_size: Option<u64>,
    /// Baud rate in use.
    pub baud: u32,
    /// Whether a flasher stub runs on it (compression, MD5); the ESP8266 ROM alone has neither.
    pub stub: bool,
}

/// Bytes written so far.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Progress {
    /// The phase these bytes belong to.
    pub phase: Phase,
    /// Image bytes written.
    pub written: u64,
    /// Image bytes in all.
    pub total: u64,
    /// Image bytes per second over the last moments.
    pub rate: f64,
    /// Time left at that rate.
    pub eta: Option<Duration>,
}

impl Progress {
    /// 0.0 ..= 1.0.
    pub fn fraction(&self) -> f32 {
        if self.total == 0 { 1.0 } else { (self.written as f64 / self.total as f64).min(1.0) as f32 }
    }

    /// "412 KiB of 1.0 MiB, 85 KiB/s, 7 s left".
    pub fn describe(&self) -> String {
        let mut s = format!("{} of {}", human_bytes(self.written), human_bytes(self.total));
        if self.rate > 0.0 {
            s += &format!(", {}/s", human_bytes(self.rate as u64));
        }
        if let Some(eta) = self.eta.filter(|_| self.written < self.total) {
            s += &format!(", {} s left", eta.as_secs() + u64::from(eta.subsec_millis() >= 500));
        }
        s
    }
}

/// Something that happened during a flash, for the GUI and the CLI alike.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum FlashUpdate {
    /// A new phase began.
    Phase(Phase),
    /// The board was identified.
    Board(BoardInfo),
    /// Bytes moved.
    Progress(Progress),
    /// Something worth telling the user: a retry, a slower baud rate, a skipped region.
    Note(String),
}

/// `1.5 MiB`, `412 KiB`, `96 B`.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f >= KIB * KIB {
        format!("{:.1} MiB", f / KIB / KIB)
    } else if f >= KIB {
        format!("{:.0} KiB", f / KIB)
    } else {
        format!("{n} B")
    }
}

/// Measures rate and time left over a sliding window and limits how often updates go out.
#[derive(Debug)]
pub struct Meter {
    total: u64,
    written: u64,
    phase: Phase,
    samples: std::collections::VecDeque<(Instant, u64)>,
    last_emit: Option<Instant>,
}

/// Rate is measured over this much recent time.
const WINDOW: Duration = Duration::from_secs(3);
/// At most this many updates per second go out (the last one always does).
const MIN_GAP: Duration = Duration::from_millis(100);

impl Meter {
    /// A meter for `total` bytes, at zero.
    pub fn new(total: u64) -> Meter {
        Meter { total, written: 0, phase: Phase::Write, samples: Default::default(), last_emit: None }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Records the phase the next updates belong to.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = phase;
    }

    /// Records `written` bytes at `now`; returns an update when one is due.
    pub fn record_at(&mut self, written: u64, now: Instant) -> Option<Progress> {
        self.written = written.min(self.total);
        self.samples.push_back((now, self.written));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > WINDOW {
            self.samples.pop_front();
        }
        let done = self.written >= self.total;
        let due = self.last_emit.is_none_or(|t| now.duration_since(t) >= MIN_GAP);
        if !(done || due) {
            return None;
        }
        self.last_emit = Some(now);
        Some(self.snapshot(now))
    }

    /// Records `written` bytes now.
    pub fn record(&mut self, written: u64) -> Option<Progress> {
        self.record_at(written, Instant::now())
    }

    fn snapshot(&self, now: Instant) -> Progress {
        let (t0, b0) = self.samples.front().copied().unwrap_or((now, 0));
        let secs = now.duration_since(t0).as_secs_f64();
        let rate = if secs > 0.05 { (self.written - b0) as f64 / secs } else { 0.0 };
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64((self.total - self.written) as f64 / rate));
        Progress { phase: self.phase, written: self.written, total: self.total, rate, eta }
    }
}

/// espflash's block-counting callbacks, turned into image bytes over several segments written
/// in order (bootloader, partition table, app). A segment espflash skips as unchanged reports
/// `finish(true)` with no `init`, so the position is tracked by order, and by address when
/// `init` names one.
pub struct SegmentProgress<'a> {
    /// (address, bytes before it, length) per segment.
    table: Vec<(u32, u64, u64)>,
    current: usize,
    blocks: usize,
    skipped: usize,
    meter: &'a mut Meter,
    report: &'a mut dyn FnMut(FlashUpdate),
}

impl<'a> SegmentProgress<'a> {
    /// Progress for segments given as (address, length), in the order they are written.
    pub fn new(
        segments: &[(u32, u64)],
        meter: &'a mut Meter,
        report: &'a mut dyn FnMut(FlashUpdate),
    ) -> Self {
        let mut base = 0;
        let table = segments
            .iter()
            .map(|&(addr, len)| {
                let row = (addr, base, len);
                base += len;
                row
            })
            .collect();
        SegmentProgress { table, current: 0, blocks: 1, skipped: 0, meter, report }
    }

    /// Whether every segment was written (or skipped) and, if asked, verified.
    pub fn all_finished(&self) -> bool {
        self.current >= self.table.len()
    }

    /// Whether espflash skipped every segment because the flash already held it.
    pub fn all_skipped(&self) -> bool {
        !self.table.is_empty() && self.skipped == self.table.len()
    }

    fn at(&mut self, within: u64) {
        let (_, base, len) = self.table.get(self.current).copied().unwrap_or((0, self.meter.total(), 0));
        if let Some(p) = self.meter.record(base + within.min(len)) {
            (self.report)(FlashUpdate::Progress(p));
        }
    }
}

impl espflash::target::ProgressCallbacks for SegmentProgress<'_> {
    fn init(&mut self, addr: u32, total: usize) {
        if let Some(i) = self.table.iter().position(|(a, _, _)| *a == addr) {
            self.current = i;
        }
        self.blocks = total.max(1);
        self.meter.set_phase(Phase::Write);
        (self.report)(FlashUpdate::Phase(Phase::Write));
        self.at(0);
    }

    fn update(&mut self, current: usize) {
        let len = self.table.get(self.current).map_or(0, |r| r.2);
        // Compressed blocks stand for roughly equal shares of the segment.
        self.at(len * current.min(self.blocks) as u64 / self.blocks as u64);
    }

    fn verifying(&mut self) {
        self.meter.set_phase(Phase::Verify);
        (self.report)(FlashUpdate::Phase(Phase::Verify));
    }

    fn finish(&mut self, skipped: bool) {
        if skipped {
            self.skipped += 1;
            let addr = self.table.get(self.current).map_or(0, |r| r.0);
            (self.report)(FlashUpdate::Note(format!(
                "The flash at 0x{addr:x} already holds this data (same MD5): skipped."
            )));
        }
        self.at(u64::MAX);
        self.current += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espflash::target::ProgressCallbacks;

    #[test]
    fn meter_gives_rate_and_eta_and_throttles() {
        let t0 = Instant::now();
        let mut m = Meter::new(10_000);
        assert!(m.record_at(0, t0).is_some(), "first update goes out");
        assert!(m.record_at(100, t0 + Duration::from_millis(10)).is_none(), "throttled");
        let p = m.record_at(5_000, t0 + Duration::from_secs(1)).expect("due");
        assert_eq!(p.written, 5_000);
        assert!((p.rate - 5_000.0).abs() < 1.0, "{}", p.rate);
        assert_eq!(p.eta.map(|d| d.as_secs()), Some(1));
        let end =
            m.record_at(10_000, t0 + Duration::from_millis(1010)).expect("the last one always goes out");
        assert_eq!(end.fraction(), 1.0);
        assert!(end.describe().starts_with("10 KiB of 10 KiB"), "{}", end.describe());
    }

    fn progress_of(f: impl FnOnce(&mut SegmentProgress<'_>)) -> (Vec<FlashUpdate>, bool) {
        let mut meter = Meter::new(300);
        let mut seen = Vec::new();
        let mut report = |u: FlashUpdate| seen.push(u);
        let all_skipped = {
            let mut s =
                SegmentProgress::new(&[(0x0, 100), (0x8000, 50), (0x10000, 150)], &mut meter, &mut report);
            f(&mut s);
            s.all_skipped()
        };
        (seen, all_skipped)
    }

    fn bytes(seen: &[FlashUpdate]) -> Vec<u64> {
        seen.iter()
            .filter_map(|u| if let FlashUpdate::Progress(p) = u { Some(p.written) } else { None })
            .collect()
    }

    #[test]
    fn blocks_become_bytes_across_segments_with_skips() {
        let (seen, all_skipped) = progress_of(|s| {
            s.finish(true); // bootloader unchanged: no init
            s.init(0x8000, 1);
            std::thread::sleep(MIN_GAP);
            s.update(1);
            s.finish(false);
            s.init(0x10000, 3);
            std::thread::sleep(MIN_GAP);
            s.update(2);
            s.verifying();
            s.finish(false);
        });
        assert!(!all_skipped);
        let b = bytes(&seen);
        assert_eq!(b.first(), Some(&100), "{b:?}");
        assert!(b.contains(&150) && b.contains(&250), "{b:?}");
        assert_eq!(b.last(), Some(&300), "{b:?}");
        assert!(b.windows(2).all(|w| w[0] <= w[1]), "never goes backwards: {b:?}");
        assert!(seen.contains(&FlashUpdate::Phase(Phase::Verify)));
        assert!(seen.iter().any(|u| matches!(u, FlashUpdate::Note(n) if n.contains("0x0 already holds"))));
    }

    #[test]
    fn everything_skipped_is_complete() {
        let (seen, all_skipped) = progress_of(|s| {
            s.finish(true);
            s.finish(true);
            s.finish(true);
        });
        assert!(all_skipped);
        assert!(matches!(seen.last(), Some(FlashUpdate::Progress(p)) if p.written == 300 && p.total == 300));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(96), "96 B");
        assert_eq!(human_bytes(412 * 1024), "412 KiB");
        assert_eq!(human_bytes(1024 * 1024 * 3 / 2), "1.5 MiB");
    }
}
