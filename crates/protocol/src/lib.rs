//! What devices, the server and the app agree on: default port, path and channels, the chip
//! family, how firmware versions compare, the endpoint record publishing checks against, and what
//! stands in for a credential wherever a request is recorded.
//!
//! Everything here is a convention several layers must share; keeping it in one crate below all
//! of them is what lets the firmware baker, the publisher and the server never disagree.

pub mod endpoint;
mod family;
pub mod version;

pub use family::Family;

/// Default HTTPS port (the tutorial's).
pub const DEFAULT_PORT: u16 = 3443;
/// Default update path.
pub const DEFAULT_PATH: &str = "/update";

/// The default channel devices poll at the update path.
pub const DEFAULT_CHANNEL: &str = "stable";

/// The channel "Try without hardware" and the demo publish synthetic builds to.
pub const DEMO_CHANNEL: &str = "demo";

/// Whether a channel is kept for synthetic builds (`demo`, `demo-…`): only there may an image that
/// is not firmware be published, so no real board is ever offered one.
pub fn is_demo_channel(name: &str) -> bool {
    name == DEMO_CHANNEL || name.starts_with("demo-")
}

/// What stands in for a credential's value wherever requests are recorded (the server's log, the
/// store's request history).
pub const REDACTED: &str = "(redacted)";
