//! Which serial ports a board could be on, named the way users know them ("CP210x USB-serial"),
//! with the likely ESP boards first.
//!
//! `serialport::available_ports()` (built without libudev) scans `/sys/class/tty` and still reads
//! the USB vendor and product ids. Pseudo-terminals are never listed there, so virtual devices
//! are added by the caller, and a typed path is always accepted.

use std::path::Path;

use serialport::{SerialPortInfo, SerialPortType};

/// One port the user can pick.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortInfo {
    /// The device path, e.g. `/dev/ttyUSB0` (or a pty for a virtual device).
    pub path: String,
    /// What it is, in words: "CP210x USB-serial (Silicon Labs)", "virtual ESP8266".
    pub description: String,
    /// USB vendor and product id, when it is a USB device.
    pub usb: Option<(u16, u16)>,
    /// How likely an ESP board is behind it.
    pub likelihood: Likelihood,
}

/// How likely a port leads to an ESP board; lists sort by this, most likely first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Likelihood {
    /// A simulated board OTA Forge started.
    Virtual,
    /// A USB bridge ESP boards use (CP210x, CH340, FTDI …) or Espressif's own USB.
    EspBridge,
    /// Some other USB serial device.
    OtherUsb,
    /// A built-in or unknown serial port (often not connected to anything).
    Other,
}

/// USB ids of the serial bridges found on ESP boards, and Espressif's native USB.
const KNOWN_BRIDGES: &[(u16, u16, &str)] = &[
    (0x10c4, 0xea60, "CP210x USB-serial"),
    (0x10c4, 0xea70, "CP2105 USB-serial"),
    (0x1a86, 0x7523, "CH340 USB-serial"),
    (0x1a86, 0x7522, "CH340K USB-serial"),
    (0x1a86, 0x55d4, "CH9102 USB-serial"),
    (0x1a86, 0x55d3, "CH343 USB-serial"),
    (0x0403, 0x6001, "FTDI FT232R USB-serial"),
    (0x0403, 0x6010, "FTDI FT2232 USB-serial"),
    (0x0403, 0x6014, "FTDI FT232H USB-serial"),
    (0x0403, 0x6015, "FTDI FT231X USB-serial"),
    (0x303a, 0x1001, "Espressif USB JTAG/serial (native USB)"),
    (0x303a, 0x0002, "Espressif USB CDC (native USB, ESP32-S2/S3)"),
];

/// The friendly name for a USB id, if it is a bridge ESP boards use.
pub fn bridge_name(vid: u16, pid: u16) -> Option<&'static str> {
    KNOWN_BRIDGES.iter().find(|(v, p, _)| *v == vid && *p == pid).map(|(_, _, name)| *name)
}

/// Whether the USB id is Espressif's own USB (the board re-enumerates when it resets).
pub fn is_native_usb(vid: u16) -> bool {
    vid == 0x303a
}

/// Every serial port on this machine, likely ESP boards first. Never fails: a machine without
/// serial ports (or without `/sys`) gives an empty list.
pub fn system_ports() -> Vec<PortInfo> {
    // serialport panics when /sys/class/tty is missing (some containers).
    if cfg!(target_os = "linux") && !Path::new("/sys/class/tty").is_dir() {
        return Vec::new();
    }
    let mut ports: Vec<PortInfo> =
        serialport::available_ports().unwrap_or_default().into_iter().map(describe).collect();
    sort(&mut ports);
    ports
}

/// Sorts most likely first, then by path (so `ttyUSB0` comes before `ttyUSB1`).
pub fn sort(ports: &mut [PortInfo]) {
    ports.sort_by(|a, b| {
        a.likelihood.cmp(&b.likelihood).then_with(|| natural_key(&a.path).cmp(&natural_key(&b.path)))
    });
}

/// `/dev/ttyUSB10` after `/dev/ttyUSB9`.
fn natural_key(path: &str) -> (String, u64) {
    let digits = path.len() - path.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (head, tail) = path.split_at(path.len() - digits);
    (head.to_string(), tail.parse().unwrap_or(0))
}

fn describe(info: SerialPortInfo) -> PortInfo {
    let path = info.port_name;
    match info.port_type {
        SerialPortType::UsbPort(usb) => {
            let known = bridge_name(usb.vid, usb.pid);
            let maker = usb.manufacturer.filter(|m| !m.is_empty());
            let product = usb.product.filter(|p| !p.is_empty());
            let description = match (known, product, maker) {
                (Some(name), _, Some(maker)) => format!("{name} ({maker})"),
                (Some(name), _, None) => name.to_string(),
                (None, Some(product), _) => format!("{product} (USB {:04x}:{:04x})", usb.vid, usb.pid),
                (None, None, Some(maker)) => format!("{maker} USB device {:04x}:{:04x}", usb.vid, usb.pid),
                (None, None, None) => format!("USB device {:04x}:{:04x}", usb.vid, usb.pid),
            };
            let likelihood = if known.is_some() || is_native_usb(usb.vid) {
                Likelihood::EspBridge
            } else {
                Likelihood::OtherUsb
            };
            PortInfo { path, description, usb: Some((usb.vid, usb.pid)), likelihood }
        }
        SerialPortType::BluetoothPort => PortInfo {
            path,
            description: "Bluetooth serial".into(),
            usb: None,
            likelihood: Likelihood::Other,
        },
        SerialPortType::PciPort => {
            PortInfo { path, description: "PCI serial port".into(), usb: None, likelihood: Likelihood::Other }
        }
        SerialPortType::Unknown => PortInfo {
            path,
            description: "built-in serial port".into(),
            usb: None,
            likelihood: Likelihood::Other,
        },
    }
}

/// A virtual device's port, for lists that show simulated boards next to real ones.
pub fn virtual_port(path: &str, chip: &str) -> PortInfo {
    PortInfo {
        path: path.to_string(),
        description: format!("virtual {chip} (simulated by OTA Forge)"),
        usb: None,
        likelihood: Likelihood::Virtual,
    }
}

/// Ports that are not the system's. The app wires in its virtual boards (see
/// `otaforge_actions::ports`), so flashing knows nothing of the simulator.
pub trait PortSource {
    /// The ports this source has now.
    fn ports(&self) -> Vec<PortInfo>;
}

/// No ports beyond the system's.
impl PortSource for () {
    fn ports(&self) -> Vec<PortInfo> {
        Vec::new()
    }
}

/// The system's ports and `extra`'s, most likely ESP boards first.
pub fn all_ports(extra: &dyn PortSource) -> Vec<PortInfo> {
    let mut ports = extra.ports();
    ports.extend(system_ports());
    sort(&mut ports);
    ports
}

/// Which port to flash when the user named none: the CLI and the app take the same one, the
/// first likely ESP board in [`all_ports`]' order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortChoice {
    /// Exactly one port looks like an ESP board.
    Only(PortInfo),
    /// Several do; `chosen` is the first. The app takes it and says so; the CLI refuses to guess.
    FirstOfSeveral {
        /// The port taken.
        chosen: PortInfo,
        /// Every likely port, `chosen` first.
        candidates: Vec<PortInfo>,
    },
    /// There are ports, none like an ESP board.
    NoneLikely(Vec<PortInfo>),
    /// There are no serial ports at all.
    NoPorts,
}

impl PortChoice {
    /// Chooses among `ports` (sorted as [`all_ports`] sorts them).
    pub fn among(ports: &[PortInfo]) -> PortChoice {
        let likely: Vec<PortInfo> =
            ports.iter().filter(|p| p.likelihood <= Likelihood::EspBridge).cloned().collect();
        match likely.len() {
            0 if ports.is_empty() => PortChoice::NoPorts,
            0 => PortChoice::NoneLikely(ports.to_vec()),
            1 => PortChoice::Only(likely.into_iter().next().expect("one")),
            _ => PortChoice::FirstOfSeveral { chosen: likely[0].clone(), candidates: likely },
        }
    }

    /// The port taken, if any.
    pub fn chosen(&self) -> Option<&PortInfo> {
        match self {
            PortChoice::Only(p) | PortChoice::FirstOfSeveral { chosen: p, .. } => Some(p),
            PortChoice::NoneLikely(_) | PortChoice::NoPorts => None,
        }
    }

    /// What to tell the user, if anything: why nothing was chosen, or that the choice was one of
    /// several. `name_one` is how they name a port (`--port`, "pick one in the list").
    pub fn note(&self, name_one: &str) -> Option<String> {
        let paths = |ps: &[PortInfo]| ps.iter().map(|p| p.path.as_str()).collect::<Vec<_>>().join(", ");
        match self {
            PortChoice::Only(_) => None,
            PortChoice::FirstOfSeveral { chosen, candidates } => Some(format!(
                "several ports could be an ESP board ({}); {} was taken: {name_one} to flash another",
                paths(candidates),
                chosen.path
            )),
            PortChoice::NoneLikely(ports) => {
                Some(format!("no port looks like an ESP board ({}): {name_one}", paths(ports)))
            }
            PortChoice::NoPorts => Some(format!(
                "no serial port found: plug the board in with a data cable (charge-only cables have no data lines), or {name_one}"
            )),
        }
    }

    /// Why a caller that will not guess takes no port (the CLI, where a wrong board is flashed
    /// with nobody watching): as [`note`](Self::note), but several candidates are refused too.
    /// None when exactly one port is likely.
    pub fn refusal(&self, name_one: &str) -> Option<String> {
        match self {
            PortChoice::Only(_) => None,
            PortChoice::FirstOfSeveral { candidates, .. } => Some(format!(
                "several ports could be an ESP board ({}): {name_one}",
                candidates.iter().map(|p| p.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
            other => other.note(name_one),
        }
    }
}

/// The USB id of the device behind a path, read from sysfs (None for ptys and non-USB ports).
pub fn usb_id(path: &str) -> Option<(u16, u16)> {
    let real = std::fs::canonicalize(path).ok()?;
    let name = real.file_name()?.to_string_lossy().to_string();
    system_ports().into_iter().find(|p| p.path.ends_with(&format!("/{name}"))).and_then(|p| p.usb)
}

/// Whether `port` is a pseudo-terminal (a virtual board's), never a USB serial adapter: what
/// keeps synthetic images off real boards.
pub fn is_pseudo_terminal(port: &str) -> bool {
    let path = std::path::Path::new(port);
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    real.starts_with("/dev/pts") || path.starts_with("/dev/pts")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(path: &str, vid: u16, pid: u16, maker: Option<&str>, product: Option<&str>) -> SerialPortInfo {
        SerialPortInfo {
            port_name: path.into(),
            port_type: SerialPortType::UsbPort(serialport::UsbPortInfo {
                vid,
                pid,
                serial_number: None,
                manufacturer: maker.map(Into::into),
                product: product.map(Into::into),
            }),
        }
    }

    #[test]
    fn known_bridges_get_friendly_names_and_come_first() {
        let mut ports = vec![
            describe(SerialPortInfo { port_name: "/dev/ttyS0".into(), port_type: SerialPortType::Unknown }),
            describe(usb("/dev/ttyACM0", 0x2341, 0x0043, Some("Arduino"), Some("Uno"))),
            describe(usb("/dev/ttyUSB10", 0x1a86, 0x7523, None, Some("USB Serial"))),
            describe(usb("/dev/ttyUSB9", 0x10c4, 0xea60, Some("Silicon Labs"), Some("CP2102"))),
            virtual_port("/dev/pts/7", "ESP8266"),
            describe(usb("/dev/ttyACM1", 0x303a, 0x1001, None, None)),
        ];
        sort(&mut ports);
        let paths: Vec<&str> = ports.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/dev/pts/7", "/dev/ttyACM1", "/dev/ttyUSB9", "/dev/ttyUSB10", "/dev/ttyACM0", "/dev/ttyS0"]
        );
        assert_eq!(ports[2].description, "CP210x USB-serial (Silicon Labs)");
        assert_eq!(ports[3].description, "CH340 USB-serial");
        assert!(ports[1].description.contains("native USB"));
        assert_eq!(ports[4].description, "Uno (USB 2341:0043)");
        assert_eq!(ports[4].likelihood, Likelihood::OtherUsb);
        assert_eq!(ports[5].description, "built-in serial port");
        assert!(ports[0].description.contains("virtual ESP8266"));
    }

    #[test]
    fn the_choice_is_the_first_likely_port_and_says_when_there_were_several() {
        let ch340 = describe(usb("/dev/ttyUSB1", 0x1a86, 0x7523, None, None));
        let cp210x = describe(usb("/dev/ttyUSB0", 0x10c4, 0xea60, None, None));
        let uno = describe(usb("/dev/ttyACM0", 0x2341, 0x0043, Some("Arduino"), Some("Uno")));
        assert_eq!(PortChoice::among(&[]), PortChoice::NoPorts);
        assert!(PortChoice::among(&[]).note("--port").unwrap().contains("no serial port"));
        let none = PortChoice::among(std::slice::from_ref(&uno));
        assert_eq!(none.chosen(), None);
        assert!(none.note("--port").unwrap().contains("/dev/ttyACM0"));
        let only = PortChoice::among(&[ch340.clone(), uno.clone()]);
        assert_eq!(only.chosen(), Some(&ch340));
        assert_eq!(only.note("--port"), None);
        let mut ports = vec![uno, ch340, cp210x.clone()];
        sort(&mut ports);
        let several = PortChoice::among(&ports);
        assert_eq!(several.chosen(), Some(&cp210x), "the first in list order");
        let note = several.note("--port").unwrap();
        assert!(note.contains("/dev/ttyUSB0, /dev/ttyUSB1") && note.contains("--port"), "{note}");
        assert!(note.contains("/dev/ttyUSB0 was taken"), "{note}");
        let refusal = several.refusal("pick one with --port").unwrap();
        assert_eq!(
            refusal,
            "several ports could be an ESP board (/dev/ttyUSB0, /dev/ttyUSB1): pick one with --port"
        );
        assert_eq!(only.refusal("--port"), None);
        assert_eq!(none.refusal("--port"), none.note("--port"));
    }

    #[test]
    fn bridge_table() {
        assert_eq!(bridge_name(0x1a86, 0x55d4), Some("CH9102 USB-serial"));
        assert_eq!(bridge_name(0x0403, 0x6015), Some("FTDI FT231X USB-serial"));
        assert_eq!(bridge_name(0x1234, 0x5678), None);
        assert!(is_native_usb(0x303a));
    }

    #[test]
    fn listing_never_panics() {
        // Whatever this machine has, listing works and is sorted.
        let ports = system_ports();
        let mut sorted = ports.clone();
        sort(&mut sorted);
        assert_eq!(ports, sorted);
    }
}
