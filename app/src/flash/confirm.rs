//! What the ESP8266 ROM cannot verify, the update server confirms: after a flash the project
//! store records the image's MD5s for the board's MAC, and the device's first check-in that
//! reports one of them marks the flash confirmed (see `store::FlashedImage`).

use std::path::Path;

use super::session::{FlashOutcome, Verification};
use crate::firmware::{md5_hex, md5_with_flash_mode};
use crate::store::{FlashedImage, Store, StoreError};

/// The MD5s a device running `image` can report: the file's, and with each flash mode the
/// bootloader or updater may have written into header byte 2.
pub fn device_md5s(image: &[u8]) -> Vec<String> {
    let mut md5s = vec![md5_hex(image)];
    md5s.extend((0..4u8).map(|mode| md5_with_flash_mode(image, mode)));
    md5s.sort();
    md5s.dedup();
    md5s
}

/// After a flash the board could not verify, records what its device should report. Returns
/// whether anything was recorded (nothing when the board verified itself or its MAC is unknown).
pub fn remember(dir: &Path, outcome: &FlashOutcome, image: &[u8]) -> Result<bool, StoreError> {
    let Some(mac) = outcome.board.mac.as_deref() else { return Ok(false) };
    if outcome.verification != Verification::ServerWillConfirm {
        return Ok(false);
    }
    let mut store = Store::open(dir)?;
    store.expect_flashed(mac, &device_md5s(image), outcome.version.as_deref())?;
    Ok(true)
}

/// The flash recorded for `mac`, with whether its device has confirmed it.
pub fn status(dir: &Path, mac: &str) -> Result<Option<FlashedImage>, StoreError> {
    Store::open(dir)?.flashed(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5s_cover_the_flash_modes() {
        let img = crate::firmware::ImageBuilder::arduino_esp8266().target_size(4096).build();
        let md5s = device_md5s(&img);
        assert!(md5s.contains(&md5_hex(&img)));
        assert!(md5s.len() >= 4 && md5s.len() <= 5, "{md5s:?}");
        assert!(device_md5s(b"not an image").len() == 1);
    }
}
