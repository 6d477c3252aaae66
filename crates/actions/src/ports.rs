//! The ports a user can flash: the system's and this project's running virtual boards, in one
//! list for the CLI and the app alike.

use std::path::{Path, PathBuf};

use otaforge_flash::ports::{self, PortInfo, PortSource};

/// The project's running virtual boards (see `otaforge_sim::serial::running`) as ports.
pub struct VirtualBoards {
    dir: PathBuf,
}

impl VirtualBoards {
    /// The virtual boards of the project in `dir`.
    pub fn new(dir: &Path) -> VirtualBoards {
        VirtualBoards { dir: dir.to_path_buf() }
    }
}

impl PortSource for VirtualBoards {
    fn ports(&self) -> Vec<PortInfo> {
        otaforge_sim::serial::running(&self.dir)
            .into_iter()
            .map(|v| {
                let mut p = ports::virtual_port(&v.pty.display().to_string(), v.chip.name());
                p.description = format!("{} ({})", p.description, v.name);
                p
            })
            .collect()
    }
}

/// Real ports and the project's running virtual boards, most likely ESP boards first.
pub fn all_ports(dir: &Path) -> Vec<PortInfo> {
    ports::all_ports(&VirtualBoards::new(dir))
}
