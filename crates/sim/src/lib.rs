//! Virtual devices: simulated ESP boards for trying the app without hardware, for CI, and as a
//! load generator.
//!
//! - [`serial`]: an ESP ROM bootloader (and flasher stub) on a pseudo-terminal, with its flash kept
//!   in a file: what the Flash step writes to.
//! - [`device`]: the same board after reset: it boots what is in its flash and polls the update
//!   server the way the Arduino cores' HTTP updaters do.
//! - [`board`]: a whole board: the serial side and the firmware sharing one flash; flashing it
//!   over its pty boots what was flashed.
//! - [`fleet`]: many devices at once, as tasks on one runtime: a load generator and a rollout to watch.

pub mod board;
pub mod device;
pub mod fleet;
pub mod serial;
