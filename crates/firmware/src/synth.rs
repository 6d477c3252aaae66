//! Synthetic firmware images for tests, virtual devices and the demo: structurally real (headers,
//! segments, padding, checksums, the Arduino length/CRC words, the ESP32 app descriptor and
//! SHA-256) but with made-up segment contents, so nothing needs a toolchain or a real build.
//! They are made sound with the same `fix_checksums` a baked image goes through.

use sha2::{Digest, Sha256};

use super::checksums::{fix_checksums, write_arduino_words};
use super::chip::Chip;
use super::digest::{CHECKSUM_SEED, xor_all};
use super::image::{AppDesc, FlashMode, ImageError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Esp8266,
    Arduino,
    Esp32App,
}

/// Builds a valid image; see the constructors for the three layouts.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layout: Layout,
    chip: Chip,
    flash_mode: FlashMode,
    flash_size_code: u8,
    flash_freq_code: u8,
    entry: u32,
    segments: Vec<(u32, Vec<u8>)>,
    /// The segments are the defaults (zeros to be replaced by filler), not the caller's data.
    default_segments: bool,
    target_size: Option<usize>,
    app_desc: Option<AppDesc>,
    hash_appended: bool,
    seed: u64,
    filler: Filler,
}

/// What fills the segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Filler {
    /// Random bytes: nothing in them repeats, so they do not compress (the default).
    #[default]
    Random,
    /// Bytes that compress about as a real build does (see [`XorShift::fill_code_like`]), for
    /// what depends on it: gzip'd updates, their benchmarks.
    CodeLike,
}

/// Where eboot and the sketch's segments load (Arduino ESP8266).
const ESP8266_IRAM: u32 = 0x4010_0000;
const ESP8266_DRAM: u32 = 0x3FFE_8000;
const ESP8266_IROM_SKETCH: u32 = 0x4020_1010;
const EBOOT_ADDR: u32 = 0x4010_F000;

impl ImageBuilder {
    fn new(layout: Layout, chip: Chip) -> ImageBuilder {
        ImageBuilder {
            layout,
            chip,
            flash_mode: FlashMode::Dio,
            flash_size_code: if chip.is_esp8266() { 4 } else { 2 }, // 4 MB either way
            flash_freq_code: 0,                                     // 40 MHz
            entry: 0,
            segments: Vec::new(),
            default_segments: true,
            target_size: None,
            app_desc: None,
            hash_appended: false,
            seed: 0x0DA7_F04E,
            filler: Filler::Random,
        }
    }

    /// A single ESP8266 image: an IRAM and a DRAM segment.
    pub fn esp8266() -> ImageBuilder {
        let mut b = ImageBuilder::new(Layout::Esp8266, Chip::Esp8266);
        b.entry = ESP8266_IRAM + 4;
        b.segments = vec![(ESP8266_IRAM, vec![0; 1024]), (ESP8266_DRAM, vec![0; 128])];
        b
    }

    /// The Arduino ESP8266 layout: eboot at 0x0 padded with 0xAA, the sketch at 0x1000 with
    /// `.irom0.text` first (its first 8 bytes hold the length and CRC words).
    pub fn arduino_esp8266() -> ImageBuilder {
        let mut b = ImageBuilder::new(Layout::Arduino, Chip::Esp8266);
        b.entry = ESP8266_IRAM + 4;
        b.segments = vec![
            (ESP8266_IROM_SKETCH, vec![0; 4096]),
            (ESP8266_IRAM, vec![0; 1024]),
            (ESP8266_DRAM, vec![0; 256]),
            (ESP8266_DRAM + 0x400, vec![0; 128]),
        ];
        b
    }

    /// An ESP32-family app image for `chip`: DROM (holding the app descriptor), DRAM, IRAM and IROM
    /// segments, SHA-256 appended. For the ESP8266 this gives [`ImageBuilder::arduino_esp8266`].
    pub fn esp32_app(chip: Chip) -> ImageBuilder {
        if chip.is_esp8266() {
            return ImageBuilder::arduino_esp8266();
        }
        let [drom, dram, iram, irom] = synthetic_addresses(chip);
        let mut b = ImageBuilder::new(Layout::Esp32App, chip);
        b.entry = iram + 4;
        b.segments =
            vec![(drom, vec![0; 512]), (dram, vec![0; 256]), (iram, vec![0; 1024]), (irom, vec![0; 4096])];
        b.hash_appended = true;
        b.app_desc = Some(AppDesc {
            version: "1.0.0".into(),
            project_name: "otaforge-demo".into(),
            time: "12:00:00".into(),
            date: "Jan  1 2026".into(),
            idf_version: "v5.4".into(),
        });
        b
    }

    /// The image a device of `chip` updates from: Arduino layout for the ESP8266, else an app image.
    pub fn for_chip(chip: Chip) -> ImageBuilder {
        ImageBuilder::esp32_app(chip)
    }

    /// Flash mode in the header(s).
    pub fn flash_mode(mut self, mode: FlashMode) -> Self {
        self.flash_mode = mode;
        self
    }

    /// Flash size code (high nibble of header byte 3).
    pub fn flash_size_code(mut self, code: u8) -> Self {
        self.flash_size_code = code & 0x0F;
        self
    }

    /// Flash frequency code (low nibble of header byte 3).
    pub fn flash_freq_code(mut self, code: u8) -> Self {
        self.flash_freq_code = code & 0x0F;
        self
    }

    /// Entry address of the (sketch or app) image.
    pub fn entry(mut self, entry: u32) -> Self {
        self.entry = entry;
        self
    }

    /// Replaces the default segments. Data is kept as given (lengths need not be multiples of 4);
    /// the builder still writes the app descriptor over the start of an ESP32 image's first
    /// segment and zeroes the length/CRC words at the start of an Arduino sketch's first one,
    /// growing that segment if it is too short.
    pub fn segments(mut self, segments: impl IntoIterator<Item = (u32, Vec<u8>)>) -> Self {
        self.segments = segments.into_iter().collect();
        self.default_segments = false;
        self
    }

    /// Grows the largest code segment with filler so the file comes out at roughly `bytes`.
    pub fn target_size(mut self, bytes: usize) -> Self {
        self.target_size = Some(bytes);
        self
    }

    /// Version in the app descriptor (ESP32). On every layout it also seeds the filler, so two
    /// versions give two different images.
    pub fn version(mut self, version: &str) -> Self {
        self.seed ^= fnv1a(version.as_bytes());
        if let Some(d) = &mut self.app_desc {
            d.version = version.into();
        }
        self
    }

    /// Project name in the app descriptor (ESP32).
    pub fn project_name(mut self, name: &str) -> Self {
        if let Some(d) = &mut self.app_desc {
            d.project_name = name.into();
        }
        self
    }

    /// Replaces the whole app descriptor (ESP32); `None` leaves it out.
    pub fn app_desc(mut self, desc: Option<AppDesc>) -> Self {
        self.app_desc = desc;
        self
    }

    /// Whether an ESP32 image gets a SHA-256 after its checksum (default yes).
    pub fn hash_appended(mut self, yes: bool) -> Self {
        self.hash_appended = yes;
        self
    }

    /// What fills the segments (random by default).
    pub fn filler(mut self, filler: Filler) -> Self {
        self.filler = filler;
        self
    }

    /// Seed for the filler bytes in segments.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Assembles the image.
    pub fn build(&self) -> Vec<u8> {
        let mut segments = self.segments.clone();
        let mut rng = XorShift(self.seed | 1);
        if self.default_segments {
            for (_, data) in &mut segments {
                rng.fill_as(self.filler, data);
            }
        }
        let plain = self.assemble(&segments);
        let Some(target) = self.target_size.filter(|&t| t > plain.len()) else { return plain };
        let grow = (target - plain.len()) & !3;
        let big = if self.layout == Layout::Esp32App { segments.len().saturating_sub(1) } else { 0 };
        if let Some((_, data)) = segments.get_mut(big) {
            let start = data.len();
            data.resize(start + grow, 0);
            rng.fill_as(self.filler, &mut data[start..]);
        }
        self.assemble(&segments)
    }

    fn header(&self, segment_count: usize, entry: u32) -> Vec<u8> {
        let mut h = vec![0xE9, segment_count.min(255) as u8, self.flash_mode.byte()];
        h.push(self.flash_size_code << 4 | self.flash_freq_code);
        h.extend_from_slice(&entry.to_le_bytes());
        if self.layout == Layout::Esp32App {
            h.extend_from_slice(&[0xEE, 0, 0, 0]); // WP pin disabled, default drive strengths
            h.extend_from_slice(&self.chip.image_chip_id().unwrap_or(0).to_le_bytes());
            h.push(0); // min chip rev (legacy)
            h.extend_from_slice(&0u16.to_le_bytes()); // min chip rev full
            h.extend_from_slice(&399u16.to_le_bytes()); // max chip rev full: v3.99
            h.extend_from_slice(&[0; 4]);
            h.push(u8::from(self.hash_appended));
        }
        h
    }

    fn assemble(&self, segments: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut segments = segments.to_vec();
        match self.layout {
            Layout::Esp8266 => image(&self.header(segments.len(), self.entry), &segments),
            Layout::Esp32App => {
                if let (Some(desc), Some((_, first))) = (&self.app_desc, segments.first_mut()) {
                    let bytes = app_desc_bytes(desc);
                    if first.len() < bytes.len() {
                        first.resize(bytes.len(), 0);
                    }
                    first[..bytes.len()].copy_from_slice(&bytes);
                }
                let mut out = image(&self.header(segments.len(), self.entry), &segments);
                if self.hash_appended {
                    let digest = Sha256::digest(&out);
                    out.extend_from_slice(&digest);
                }
                out
            }
            Layout::Arduino => {
                let mut rng = XorShift((self.seed ^ 0x00EB_007E_B007) | 1);
                let mut eboot_code = vec![0; 0x500];
                rng.fill(&mut eboot_code);
                let eboot_segments = [(EBOOT_ADDR, eboot_code), (EBOOT_ADDR + 0x500, vec![0x42; 64])];
                let mut out = image(&self.header(2, EBOOT_ADDR + 4), &eboot_segments);
                out.resize(0x1000, 0xAA);
                if let Some((_, first)) = segments.first_mut() {
                    if first.len() < 8 {
                        first.resize(8, 0);
                    }
                    first[..8].fill(0);
                }
                out.extend_from_slice(&image(&self.header(segments.len(), self.entry), &segments));
                write_arduino_words(&mut out);
                out
            }
        }
    }
}

/// Header, segments, zero padding to 15 mod 16, checksum byte.
fn image(header: &[u8], segments: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = header.to_vec();
    let mut checksum = CHECKSUM_SEED;
    for (addr, data) in segments {
        out.extend_from_slice(&addr.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        checksum ^= xor_all(data);
    }
    out.resize(out.len() | 15, 0);
    out.push(checksum);
    out
}

/// The 256-byte `esp_app_desc_t`.
fn app_desc_bytes(d: &AppDesc) -> Vec<u8> {
    let mut out = vec![0u8; 256];
    out[..4].copy_from_slice(&0xABCD_5432u32.to_le_bytes());
    for (off, len, text) in [
        (0x10, 32, &d.version),
        (0x30, 32, &d.project_name),
        (0x50, 16, &d.time),
        (0x60, 16, &d.date),
        (0x70, 32, &d.idf_version),
    ] {
        let n = text.len().min(len - 1); // keep the terminating NUL
        out[off..off + n].copy_from_slice(&text.as_bytes()[..n]);
    }
    out
}

/// Segment load addresses typical of each chip (DROM, DRAM, IRAM, IROM); close enough for a
/// synthetic image, not a memory map to rely on.
fn synthetic_addresses(chip: Chip) -> [u32; 4] {
    match chip {
        Chip::Esp32 => [0x3F40_0020, 0x3FFB_0000, 0x4008_0000, 0x400D_0020],
        Chip::Esp32S2 => [0x3F00_0020, 0x3FFB_0000, 0x4002_2000, 0x4008_0020],
        Chip::Esp32S3 => [0x3C00_0020, 0x3FC8_8000, 0x4037_0000, 0x4200_0020],
        Chip::Esp32C2 | Chip::Esp32C3 => [0x3C00_0020, 0x3FC8_0000, 0x4038_0000, 0x4200_0020],
        Chip::Esp32P4 => [0x4800_0020, 0x4FF0_0000, 0x4FF1_0000, 0x4000_0020],
        Chip::Esp8266 | Chip::Esp32C5 | Chip::Esp32C6 | Chip::Esp32C61 | Chip::Esp32H2 => {
            [0x4280_0020, 0x4080_0000, 0x4080_4000, 0x4200_0020]
        }
    }
}

/// Appends an ESP8266 signature the way the Arduino signing tool lays it out:
/// `image || signature || u32_le(signature length)`.
pub fn append_signature(image: &mut Vec<u8>, signature: &[u8]) {
    image.extend_from_slice(signature);
    image.extend_from_slice(&(signature.len() as u32).to_le_bytes());
}

/// FNV-1a, to turn a version string into a seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

/// A small deterministic generator (xorshift64*), for filler bytes and the tests' fuzz loop.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn fill_as(&mut self, filler: Filler, buf: &mut [u8]) {
        match filler {
            Filler::Random => self.fill(buf),
            Filler::CodeLike => self.fill_code_like(buf),
        }
    }

    /// Fills `buf` the way a firmware build is made up, in 1 KiB runs: mostly machine code (3-byte
    /// instructions drawn from a small, skewed vocabulary, with random immediates and addresses
    /// among them), text (log and format strings), and tables and keys that look random. A model,
    /// not real code: it is tuned so that gzip saves about what it saves on Arduino ESP8266
    /// builds (a third; the core's docs and Tasmota's builds), and the benchmarks say so.
    pub fn fill_code_like(&mut self, buf: &mut [u8]) {
        const WORDS: &[&str] = &[
            "WiFi", "connect", "failed", "update", "HTTP", "error", "%s", "%d", "ms", "ok", "TLS", "server",
            "client", "sensor", "value", "read", "write", "flash", "status", "timeout", "retry", "mqtt",
            "topic", "json", "config", "saved", "boot", "version", "heap", "free", "[%u]", "=", ":",
        ];
        let mut vocabulary = [[0u8; 3]; 256];
        for op in &mut vocabulary {
            let w = self.next_u64().to_le_bytes();
            op.copy_from_slice(&w[..3]);
        }
        for run in buf.chunks_mut(1024) {
            match self.below(10) {
                0..=6 => {
                    let mut i = 0;
                    while i < run.len() {
                        let op = if self.below(7) == 0 {
                            let w = self.next_u64().to_le_bytes();
                            [w[0], w[1], w[2]]
                        } else {
                            // Skewed: a few instructions are most of the code.
                            vocabulary[self.below(256) * self.below(256) / 256]
                        };
                        let n = 3.min(run.len() - i);
                        run[i..i + n].copy_from_slice(&op[..n]);
                        i += n;
                    }
                }
                7 => {
                    let mut text = Vec::with_capacity(run.len());
                    while text.len() < run.len() {
                        text.extend_from_slice(WORDS[self.below(WORDS.len())].as_bytes());
                        text.push(if self.below(6) == 0 { 0 } else { b' ' });
                    }
                    run.copy_from_slice(&text[..run.len()]);
                }
                _ => self.fill(run),
            }
        }
    }
}

/// Written into every stand-in for the reference firmware ([`mark_synthetic`]): such an image is
/// structurally valid but is not firmware, so a real board must never get it (publishing keeps it
/// to demo channels, flashing to virtual boards).
pub const SYNTHETIC_MARKER: &[u8; 32] = b"OTAFORGE-SYNTHETIC-IMAGE:NOT-FW\0";

/// Marks an image as synthetic: the marker goes right after its config block (inside the same
/// segment, which `config_block::reserve` sizes for it), and the checksums are fixed.
pub fn mark_synthetic(image: &mut [u8], block_at: usize) -> Result<(), ImageError> {
    let at = block_at + super::config_block::BLOCK_LEN;
    image[at..at + SYNTHETIC_MARKER.len()].copy_from_slice(SYNTHETIC_MARKER);
    fix_checksums(image)
}

/// Whether an image is a synthetic stand-in (see [`SYNTHETIC_MARKER`]).
pub fn is_synthetic(image: &[u8]) -> bool {
    image.windows(SYNTHETIC_MARKER.len()).any(|w| w == SYNTHETIC_MARKER)
}
