//! OTA Forge: secure self-updating ESP8266 and ESP32 devices.
//!
//! The library holds everything the app does; the `otaforge` binary is a thin shell over it that
//! opens the desktop app or runs a CLI verb. Core modules never import egui, so every capability
//! also runs headless (a Raspberry Pi, CI, a test):
//!
//! - [`pki`]: the private CA and server certificate devices and server share (step 1).
//! - [`project`]: the project directory and whole-or-nothing file writes.
//! - [`firmware`]: reading and checking ESP firmware images.
//! - [`flash`]: writing firmware to a board over USB serial (step 3).
//! - [`sim`]: virtual devices: a simulated ESP on a pseudo-terminal that boots and updates itself.
//! - [`store`]: releases, channels and the device inventory (SQLite) and firmware blobs.
//! - [`publish`]: checking a firmware file and making it a channel's release.
//! - [`server`]: the HTTPS update server devices poll.
//! - [`preflight`]: checking the server the way a device will.
//! - [`version`]: firmware versions, ordered numerically.
//! - [`backend`]: the worker thread the desktop app sends commands to.
//! - [`cli`]: the command line.
//! - [`ui`]: the egui desktop app (the only module that knows egui).

#![deny(missing_docs)]

pub mod backend;
pub mod cli;
pub mod firmware;
pub mod flash;
pub mod pki;
pub mod preflight;
pub mod project;
pub mod publish;
pub mod server;
pub mod sim;
pub mod store;
pub mod ui;
pub mod version;
