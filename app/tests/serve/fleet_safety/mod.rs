//! Never strand a device (one test binary, so CI links it once):
//!
//! - [`device_settings`]: a board's own name and Wi-Fi survive any number of updates, and
//!   provisioning leaves its firmware byte for byte;
//! - [`publish_refusals`]: what would strand a device or leak a secret is refused, with the
//!   reason, and nothing is stored;
//! - [`signing_keys`]: firmware that would trust a key the project cannot sign with is refused,
//!   and a channel whose firmware verifies gets only signed releases.

mod device_settings;
mod publish_refusals;
mod signing_keys;
