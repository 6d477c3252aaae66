//! Labels of the Serve step's main controls (tests and the screenshot script find them by these).

/// Starts the server.
pub const START: &str = "Start server";
/// Stops it.
pub const STOP: &str = "Stop server";
/// The field holding the .bin to publish (typed, filled by Browse… or by a drop).
pub const PUBLISH_FIELD: &str = "Firmware to publish";
/// Opens the publish check on what the field holds.
pub const CHECK: &str = "Check and publish…";
/// The setting that starts the server again when the app opens, if it was serving when closed.
pub const RESTART: &str = "Start the server again when OTA Forge opens";
/// The button that opens the publish check on the image step 2 made: "Publish kitchen.bin".
pub fn offer(file_name: &str) -> String {
    format!("Publish {file_name}")
}
/// The publish dialog's confirm button.
pub const PUBLISH: &str = "Publish";
/// The publish dialog's cancel button.
pub const CANCEL: &str = "Cancel";
/// The version field of the publish dialog.
pub const VERSION: &str = "Version to publish";
/// The channel field of the publish dialog.
pub const CHANNEL: &str = "Publish to channel";
/// The publish dialog's signing checkbox.
pub const SIGN: &str = "Sign with this project's key";
/// The publish dialog's compression checkbox.
pub const GZIP: &str = "Compress (gzip; ESP8266 core 2.7.0 or newer)";
/// The device list's filter field.
pub const FILTER: &str = "Filter devices";
/// A device row's actions: name it here.
pub const RENAME: &str = "Rename…";
/// …forget it (after a confirmation).
pub const FORGET: &str = "Forget…";
/// …open its detail with the request history.
pub const HISTORY: &str = "History";
/// …show what its board prints, when it is on USB.
pub const OPEN_MONITOR: &str = "Open monitor";
/// …copy its MAC.
pub const COPY_MAC: &str = "Copy MAC";
/// The rename dialog's field.
pub const NAME_FIELD: &str = "Name shown for this device";
/// The rename dialog's confirm button.
pub const SAVE_NAME: &str = "Save name";
/// The forget confirmation's button.
pub const FORGET_CONFIRM: &str = "Forget device";
/// Re-sorts the device list after polls moved devices out of order.
pub const SORT_AGAIN: &str = "Sort again";
/// Switches on a virtual device.
pub const TRY: &str = "Try without hardware";
/// Opens the publish dialog with the virtual device's newer firmware.
pub const PUBLISH_DEMO: &str = "Publish the newer demo build…";
pub use super::Tab;
