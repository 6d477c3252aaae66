//! What an OTA Forge user does, decided once: the command line and the desktop app both call
//! these and only translate input and output, so the two can never give different answers.
//!
//! - [`channels`]: which channels exist, as every command taking a channel sees it.
//! - [`publish`]: check a firmware file, then make exactly the checked bytes a channel's release.
//! - [`flash_record`]: flash, and when the board could not verify the image, record what its
//!   device must report for the server to confirm.
//! - [`ports`]: the ports to flash, virtual boards included.

pub mod channels;
pub mod flash_record;
pub mod ports;
pub mod publish;
