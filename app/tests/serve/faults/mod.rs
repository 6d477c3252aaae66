//! The update server on a bad day, each fault reproduced the way it was found (one test binary, so
//! CI links it once):
//!
//! - [`stalls`]: clients that stop reading, other processes opening the store, a second `serve`;
//! - [`secrets`]: a project readable only by its owner, channel passwords kept as hashes, no
//!   `Authorization` kept;
//! - [`delivery`]: a download counts once the device has read it, not once the kernel took it;
//! - [`edges`]: the header timeout, half ClientHellos, empty requests, odd MACs and versions,
//!   control characters, options that cannot work;
//! - [`store`]: a database gone or emptied next to its firmware, a damaged blob, a bad row;
//! - [`inventory`]: check-ins answered while the database cannot be written, and floods of
//!   made-up devices.

mod delivery;
mod edges;
mod inventory;
mod secrets;
mod stalls;
mod store;
