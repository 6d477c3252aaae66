//! OTA Forge's two faces over the library crates: the `otaforge` command line and the desktop app.
//!
//! Every capability lives below, in crates that know no GUI (see ARCHITECTURE in README.md);
//! what both faces do is decided once in `otaforge-actions`. Here input is translated and output
//! shown:
//!
//! - [`cli`]: the command line.
//! - `worker`: the thread the desktop app sends commands to (feature `worker`, part of `gui`).
//! - `ui`: the egui desktop app, the only module that knows egui (feature `gui`).

pub mod cli;
#[cfg(feature = "gui")]
pub mod ui;
#[cfg(feature = "worker")]
pub mod worker;
