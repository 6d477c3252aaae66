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

use std::time::{Duration, Instant};

use otaforge_sim::serial::{DeviceState, VirtualSerialDevice};

/// Resets `dev` into its ROM bootloader and returns once it is there. `reset_to_bootloader` only
/// raises a flag that the simulator's thread acts on between commands (within 100 ms when idle,
/// later under load), so the state turning `Rom` again is the moment the reset has happened and
/// the next flasher's first bytes can no longer be discarded by it.
fn reset_to_bootloader(dev: &VirtualSerialDevice) {
    let before = dev.status().state;
    assert_ne!(before, DeviceState::Rom, "already in the ROM bootloader: the reset could not be seen");
    dev.reset_to_bootloader();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = dev.status().state;
        if now == DeviceState::Rom {
            return;
        }
        assert!(Instant::now() < deadline, "still {now:?} (was {before:?}) 20 s after the reset");
        std::thread::sleep(Duration::from_millis(5));
    }
}
