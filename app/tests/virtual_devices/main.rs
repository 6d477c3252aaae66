//! Virtual boards end to end: booting what was flashed, polling, updating themselves, failing
//! the way real boards fail, fleets of them, the demo, and signed updates.

#[path = "../support/mod.rs"]
mod support;
#[path = "../virtual_device_support/mod.rs"]
mod virtual_device_support;

mod basics;
mod board;
mod demo;
mod docs;
mod failures;
mod fleet;
mod rotation;
mod serial_log;
mod signed;
