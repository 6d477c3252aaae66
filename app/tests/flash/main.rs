//! Step 3, Flash: the flasher against virtual boards on real pseudo-terminals, its faults, the
//! port list, confirmation by the server, and the simulated ROM held against esptool and espflash.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod confirm;
mod faults;
mod library;
mod ports;
mod serial;
