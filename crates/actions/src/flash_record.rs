//! What the ESP8266 ROM cannot verify, the update server confirms: after a flash the project
//! store records the image's MD5s for the board's MAC, and the device's first check-in that
//! reports one of them marks the flash confirmed (see `otaforge_store::FlashedImage`).

use std::path::Path;

use otaforge_firmware::device_md5s;
use otaforge_flash::session::{FlashOutcome, Verification};
use otaforge_flash::{Cancel, FlashError, FlashRequest, FlashUpdate};
use otaforge_store::{FlashedImage, Store, StoreError};

/// A finished flash, and what was recorded for the update server to confirm.
#[derive(Debug)]
pub struct Flashed {
    /// What the flash did.
    pub outcome: FlashOutcome,
    /// Whether the server is to confirm it (the board could not verify what it was given).
    pub awaiting_confirmation: bool,
    /// Why nothing could be recorded although it should have been (the flash itself worked).
    pub record_error: Option<StoreError>,
}

/// Flashes `req` and, when the board could not verify the image, records what its device must
/// report: the one flash-and-record the CLI and the app both run. A settings-only write records
/// nothing (the image on the board did not change).
pub fn flash_and_record(
    dir: &Path,
    req: &FlashRequest,
    cancel: &Cancel,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<Flashed, FlashError> {
    let outcome = otaforge_flash::flash(req, cancel, report)?;
    let recorded = if req.settings_only { Ok(false) } else { remember(dir, &outcome, &req.image) };
    let (awaiting_confirmation, record_error) = match recorded {
        Ok(awaiting) => (awaiting, None),
        Err(e) => (false, Some(e)),
    };
    Ok(Flashed { outcome, awaiting_confirmation, record_error })
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
