//! Running virtual devices, listed as ports.
//!
//! `serialport` never lists `/dev/pts/N`, so each running virtual device writes
//! `<dir>/virtual-devices/<name>.json` (`{"name", "chip", "pty", "flash_file", "pid"}`) and
//! removes it when it stops. [`running`] reads them back, skipping entries whose process or pty
//! is gone (a simulator that was killed cannot clean up after itself).

use std::io;
use std::path::{Path, PathBuf};

use super::Chip;

/// A running virtual device, as a port list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtualPort {
    /// Its name, e.g. `virtual-esp8266-pts7`.
    pub name: String,
    /// The chip it simulates.
    pub chip: Chip,
    /// The port to open, e.g. `/dev/pts/7`.
    pub pty: PathBuf,
    /// The file that holds its flash.
    pub flash_file: PathBuf,
    /// The process that runs it.
    pub pid: u32,
}

/// The folder the entries live in.
pub fn registry_folder(dir: &Path) -> PathBuf {
    dir.join("virtual-devices")
}

/// Writes the entry for `port`; returns its path.
pub fn register(dir: &Path, port: &VirtualPort) -> io::Result<PathBuf> {
    let folder = registry_folder(dir);
    std::fs::create_dir_all(&folder)?;
    let safe: String = port
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .collect();
    let path = folder.join(format!("{safe}.json"));
    let tmp = folder.join(format!(".{safe}.json.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(port).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The virtual devices running now (on this machine, for the project directory `dir`), by name.
pub fn running(dir: &Path) -> Vec<VirtualPort> {
    let Ok(entries) = std::fs::read_dir(registry_folder(dir)) else {
        return Vec::new();
    };
    let mut ports: Vec<VirtualPort> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice::<VirtualPort>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|p| alive(p.pid) && p.pty.exists())
        .collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_live_entries_and_skips_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        assert!(running(dir.path()).is_empty());
        let live = VirtualPort {
            name: "bench 1".into(),
            chip: Chip::Esp8266,
            pty: PathBuf::from("/dev/null"),
            flash_file: PathBuf::from("/tmp/f.bin"),
            pid: std::process::id(),
        };
        let entry = register(dir.path(), &live).unwrap();
        assert_eq!(entry.file_name().unwrap(), "bench_1.json");
        let dead = VirtualPort { name: "dead".into(), pid: i32::MAX as u32, ..live.clone() };
        register(dir.path(), &dead).unwrap();
        let gone = VirtualPort {
            name: "gone".into(),
            pty: PathBuf::from("/dev/pts/does-not-exist"),
            ..live.clone()
        };
        register(dir.path(), &gone).unwrap();
        std::fs::write(registry_folder(dir.path()).join("junk.json"), b"{").unwrap();
        assert_eq!(running(dir.path()), vec![live]);
    }
}
