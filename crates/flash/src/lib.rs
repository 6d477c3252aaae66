//! Flashing ESP8266 and ESP32-family boards over USB serial (step 3), and watching what they
//! print afterwards.
//!
//! - [`ports`]: which serial ports there are, named the way users know them, ESP boards first.
//! - [`plan`]: what a file is and where it goes (0x0, 0x10000, the chip's bootloader offset),
//!   checked before anything touches the board.
//! - [`connect`]: reaching the ROM bootloader (retrying while the user puts the board in download
//!   mode) and identifying the board; [`session`]: one flash from start to end: connect, refuse
//!   a wrong chip, write, verify, reset; slower baud rates when a fast one fails.
//! - [`esp8266`]: the ESP8266 ROM protocol on espflash's public `Connection` (espflash dropped
//!   the chip); [`esptool_stub`]: Espressif's ESP8266 flasher stub, found in the user's esptool;
//!   [`esp8266_stub`]: that stub's protocol (compressed writes, baud change, MD5); the ESP8266
//!   attempt picks stub or ROM. [`esp32`]: the ESP32 family through espflash's `Flasher`.
//! - [`progress`]: phases, bytes, rate, time left; [`diagnosis`]: failures in plain words.
//! - [`link`]: a port that Cancel can cut at any moment; [`monitor`]: the serial monitor.

pub mod connect;
pub mod diagnosis;
pub mod esp32;
pub mod esp8266;
mod esp8266_session;
pub mod esp8266_stub;
pub mod esptool_stub;
pub mod link;
pub mod monitor;
pub mod plan;
pub mod ports;
pub mod progress;
pub mod session;

pub use connect::identify;
pub use diagnosis::FlashError;
pub use esptool_stub::StubSource;
pub use link::Cancel;
pub use plan::{ImageKind, Plan};
pub use ports::{Likelihood, PortChoice, PortInfo, PortSource};
pub use progress::{BoardInfo, FlashUpdate, Phase, Progress};
pub use session::{Esp8266Route, FlashOutcome, FlashRequest, Verification, flash};

/// The baud rates tried in turn when a faster one fails.
pub const BAUD_LADDER: [u32; 4] = [921_600, 460_800, 230_400, 115_200];

/// The baud rate used unless the user picks one (esptool's default).
pub const DEFAULT_BAUD: u32 = 460_800;

/// The rate ESP ROMs talk at after reset, and ESP8266 sketches' usual `Serial.begin` rate.
pub const ROM_BAUD: u32 = 115_200;

/// The rate the ESP8266 ROM prints its boot messages at (26 MHz crystal).
pub const ESP8266_BOOT_LOG_BAUD: u32 = 74_880;
