//! Where this project's server was last reachable (port and update path), recorded at each start
//! so that publishing can refuse an image baked for another port or path even while the server
//! is stopped.

use std::path::Path;

/// The record's file in the project directory.
pub const FILE: &str = "endpoint.json";

/// The port and path devices must poll.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    /// The HTTPS port the server listened on.
    pub port: u16,
    /// The update path.
    pub path: String,
}

impl Endpoint {
    /// The last recorded endpoint, if the server ever ran here.
    pub fn load(dir: &Path) -> Option<Endpoint> {
        serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
    }

    /// Records the endpoint (whole or not at all).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        otaforge_project::write_atomic(&dir.join(FILE), &json, otaforge_project::Secrecy::Secret)
    }
}
