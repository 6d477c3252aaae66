//! One connection's facts, shared by the steps that serve it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::delivery::{FsRefusals, SendQueue};

/// One connection's facts, from its accept on.
pub(super) struct Conn {
    pub remote: SocketAddr,
    /// When it was accepted (the header timeout runs from here).
    pub started: Instant,
    /// The TLS record limit in force (None: full size, or plain HTTP).
    pub record_size: Option<usize>,
    /// How much of what was written the client has not acknowledged yet.
    pub sent: Option<SendQueue>,
    /// Filesystem images devices did not take (shared by the listener's connections).
    pub refusals: Arc<FsRefusals>,
}
