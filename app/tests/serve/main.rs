//! Step 4, Serve: the update server as devices meet it (each updater's exact requests), downloads
//! over real TLS, the server on a bad day, and publishing that never strands a device.

#[path = "../support/mod.rs"]
mod support;
#[path = "../virtual_device_support/mod.rs"]
mod virtual_device_support;

mod cli;
mod faults;
mod fleet_safety;
mod protocol;
mod transfer;
