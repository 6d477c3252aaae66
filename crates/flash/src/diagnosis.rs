//! Why a flash failed, in words that say what to do, instead of a stack of library errors.
//!
//! The failures users report most (see the esptool/espflash trackers): the port is missing or
//! belongs to root, another program holds it, the board is not in download mode, the link fails
//! at a high baud rate, the cable drops mid-write, the image is for another chip.

use std::path::Path;

use super::progress::{Phase, human_bytes};
use otaforge_firmware::Chip;

/// A flash or monitor that did not work, and what to do about it.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashError {
    #[error("There is no serial port {port}. {}", found_hint(.found))]
    NoSuchPort { port: String, found: Vec<String> },
    #[error("You do not have permission to use {port}. {advice}")]
    PermissionDenied { port: String, advice: String },
    #[error(
        "{port} is in use by another program{holders}. Close it (a serial monitor in the Arduino IDE, screen, minicom, another flasher) and try again."
    )]
    Busy { port: String, holders: String },
    #[error("Cannot open {port}: {reason}")]
    Open { port: String, reason: String },
    #[error(
        "The board on {port} did not answer (tried for {secs} s). Put it in download mode: hold the BOOT (or FLASH) button, tap RESET (EN/RST), release BOOT, and flash again. If it still does not answer, check that this is the board's port and that the USB cable carries data (charge-only cables do not)."
    )]
    NoSync { port: String, secs: u64 },
    #[error(
        "The board stopped answering while {doing} ({progress}). Check the cable and the board's power, reset the board into download mode (hold BOOT, tap RESET) and flash again.",
        doing = .phase.doing(), progress = progress(*.written, *.total)
    )]
    StoppedAnswering { phase: Phase, written: u64, total: u64 },
    #[error(
        "The board's answers arrived garbled at {baud} baud while {doing}: the USB-serial adapter or cable cannot keep up at that speed.",
        doing = .phase.doing()
    )]
    Garbled { phase: Phase, baud: u32 },
    #[error(
        "The port {port} disappeared while {doing} ({progress}): the board was unplugged, reset or lost power. Plug it back in and flash again; until then it may not boot.",
        doing = .phase.doing(), progress = progress(*.written, *.total)
    )]
    PortVanished { port: String, phase: Phase, written: u64, total: u64 },
    #[error("The board refused the {command} command: {reason}.")]
    Refused { command: String, reason: String },
    #[error(
        "This image is for the {image} but the board is an {board}: nothing was written. Choose the image built for the {board}."
    )]
    WrongChip { image: Chip, board: Chip },
    #[error("You asked for the {asked} but the board on this port is an {board}: nothing was written.")]
    ChipMismatch { asked: Chip, board: Chip },
    #[error("The board answered, but as a chip OTA Forge cannot flash ({what}).")]
    UnknownChip { what: String },
    #[error(
        "The image ({size}) does not fit at 0x{offset:x} in the board's {flash} flash: nothing was written.",
        size = human_bytes(*.size), flash = human_bytes(*.flash)
    )]
    TooBig { size: u64, offset: u32, flash: u64 },
    #[error("{0}")]
    BadImage(String),
    #[error(
        "After writing, the board's flash does not match the image (MD5 differs). Flash again; if it happens again, try a lower baud rate, a shorter cable or a better power supply."
    )]
    VerifyFailed,
    #[error(
        "The flasher stub ({stub}) did not start on the board, and the board no longer answers. Reset it into download mode (hold BOOT, tap RESET, release BOOT) and flash again; if the stub fails again, flash through the ROM alone (otaforge flash --no-stub)."
    )]
    StubDidNotStart { stub: String },
    #[error(
        "Flashing was cancelled ({progress}). A half-written board may not boot: flash it again before using it.",
        progress = progress(*.written, *.total)
    )]
    Cancelled { written: u64, total: u64 },
    #[error(
        "The port {port} disappeared: the board was unplugged or reset (boards with native USB come back under a new port name)."
    )]
    MonitorLost { port: String },
    #[error("Flashing failed while {doing}: {detail}", doing = .phase.doing())]
    Other { phase: Phase, detail: String },
}

fn progress(written: u64, total: u64) -> String {
    if total == 0 {
        "before anything was written".into()
    } else if written == 0 {
        format!("nothing of {} written yet", human_bytes(total))
    } else {
        format!("{} of {} written", human_bytes(written), human_bytes(total))
    }
}

fn found_hint(found: &[String]) -> String {
    if found.is_empty() {
        "No serial ports were found at all: is the board plugged in, with a data cable (charge-only cables have no data lines)? Some boards need a driver (CP210x, CH340).".into()
    } else {
        format!("Ports found: {}.", found.join(", "))
    }
}

impl FlashError {
    /// Whether trying again at a lower baud rate may help.
    pub fn slower_may_help(&self) -> bool {
        matches!(
            self,
            FlashError::StoppedAnswering { .. } | FlashError::Garbled { .. } | FlashError::VerifyFailed
        )
    }
}

/// The group that owns the device (dialout on Debian/Ubuntu/Fedora, uucp on Arch), and the
/// command that adds the user to it.
pub fn permission_advice(port: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let group = std::fs::metadata(port)
        .ok()
        .and_then(|m| group_name(m.gid()))
        .filter(|g| g != "root" && g != "tty")
        .unwrap_or_else(default_serial_group);
    format!(
        "Serial ports belong to the \"{group}\" group: run  sudo usermod -aG {group} $USER  then log out and back in (or reboot), and try again."
    )
}

fn group_name(gid: u32) -> Option<String> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _ = f.next();
        (f.next()?.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// dialout where it exists (Debian, Ubuntu, Fedora), else uucp (Arch).
fn default_serial_group() -> String {
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    if !groups.lines().any(|l| l.starts_with("dialout:")) && groups.lines().any(|l| l.starts_with("uucp:")) {
        "uucp".into()
    } else {
        "dialout".into()
    }
}

/// Diagnoses a failure to open the port.
pub fn open_error(port: &str, e: serialport::Error) -> FlashError {
    use serialport::ErrorKind;
    match e.kind() {
        ErrorKind::Io(std::io::ErrorKind::NotFound) => no_such_port(port),
        _ if !Path::new(port).exists() => no_such_port(port),
        ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            FlashError::PermissionDenied { port: port.into(), advice: permission_advice(port) }
        }
        ErrorKind::NoDevice => {
            let holders = holders(port);
            let holders =
                if holders.is_empty() { String::new() } else { format!(" ({})", holders.join(", ")) };
            FlashError::Busy { port: port.into(), holders }
        }
        _ => FlashError::Open { port: port.into(), reason: e.to_string() },
    }
}

/// The port does not exist; list the ones that do.
pub fn no_such_port(port: &str) -> FlashError {
    let found = super::ports::system_ports().into_iter().map(|p| p.path).collect();
    FlashError::NoSuchPort { port: port.into(), found }
}

/// Where a flash stood when something failed, for the diagnosis.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The port.
    pub port: &'a str,
    /// The phase.
    pub phase: Phase,
    /// Bytes written.
    pub written: u64,
    /// Bytes in all.
    pub total: u64,
    /// Baud rate in use.
    pub baud: u32,
    /// Whether the user cancelled.
    pub cancelled: bool,
}

/// What kind of failure an I/O error is.
enum Kind {
    Vanished,
    Silent,
    Other,
}

fn io_kind(e: &std::io::Error) -> Kind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::BrokenPipe | K::NotFound | K::UnexpectedEof | K::ConnectionReset => Kind::Vanished,
        K::TimedOut | K::WouldBlock => Kind::Silent,
        _ if e.raw_os_error() == Some(nix::libc::EIO) || e.raw_os_error() == Some(nix::libc::ENXIO) => {
            Kind::Vanished
        }
        _ => Kind::Other,
    }
}

/// Turns an error from the serial link (ours or espflash's) into a diagnosis.
pub fn diagnose(error: &(dyn std::error::Error + 'static), ctx: &Context<'_>) -> FlashError {
    let Context { port, phase, written, total, baud, cancelled } = *ctx;
    if cancelled {
        return FlashError::Cancelled { written, total };
    }
    let vanished = || FlashError::PortVanished { port: port.into(), phase, written, total };
    // A port that is gone explains everything else.
    if !Path::new(port).exists() {
        return vanished();
    }
    let silent = || match phase {
        Phase::Connect => FlashError::NoSync { port: port.into(), secs: 0 },
        _ => FlashError::StoppedAnswering { phase, written, total },
    };
    // Walk the chain: the most specific cause decides.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut texts = Vec::new();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io_kind(io) {
                Kind::Vanished => return vanished(),
                Kind::Silent => return silent(),
                Kind::Other => {}
            }
        }
        if let Some(se) = e.downcast_ref::<serialport::Error>() {
            match se.kind() {
                serialport::ErrorKind::Io(k) => match io_kind(&std::io::Error::from(k)) {
                    Kind::Vanished => return vanished(),
                    Kind::Silent => return silent(),
                    _ => {}
                },
                serialport::ErrorKind::NoDevice => return vanished(),
                _ if se.description.contains("Input/output error") => return vanished(),
                _ => {}
            }
        }
        if let Some(ef) = e.downcast_ref::<espflash::Error>()
            && let Some(d) = espflash_error(ef, ctx)
        {
            return d;
        }
        texts.push(e.to_string());
        cur = e.source();
    }
    // espflash keeps its connection and ROM errors private; their messages are stable in the
    // pinned version (=4.7.0).
    let all = texts.join(": ");
    if all.contains("Timeout while running") || all.contains("timed out") {
        return silent();
    }
    if all.contains("Serial port not found") || all.contains("Broken pipe") {
        return vanished();
    }
    if all.contains("invalid SLIP framing")
        || all.contains("too large for buffer")
        || all.contains("Invalid message")
    {
        return FlashError::Garbled { phase, baud };
    }
    if all.contains("Wrong boot mode") || all.contains("getting no sync reply") {
        return silent();
    }
    if let Some(i) = texts.iter().position(|t| t.starts_with("Error while running ")) {
        let command =
            protocol_name(texts[i].trim_start_matches("Error while running ").trim_end_matches(" command"));
        let reason = texts.get(i + 1).cloned().unwrap_or_else(|| "an error status".into());
        if reason.contains("Bad data checksum") || reason.contains("invalid CRC") {
            return FlashError::Garbled { phase, baud };
        }
        return FlashError::Refused { command, reason: lower_first(&reason) };
    }
    if all.contains("Failed to connect to the device") {
        return silent();
    }
    FlashError::Other { phase, detail: all }
}

fn espflash_error(e: &espflash::Error, ctx: &Context<'_>) -> Option<FlashError> {
    use espflash::Error as E;
    Some(match e {
        E::VerifyFailed | E::DigestMismatch(..) => FlashError::VerifyFailed,
        E::ChipMismatch(asked, found) => match (slug_chip(asked), slug_chip(found)) {
            (Some(asked), Some(board)) => FlashError::ChipMismatch { asked, board },
            _ => FlashError::UnknownChip { what: format!("{found}, not {asked}") },
        },
        E::ChipDetectError(what) => FlashError::UnknownChip { what: what.clone() },
        E::InvalidResponse(_) | E::IncorrectResponse | E::CorruptData(..) => {
            FlashError::Garbled { phase: ctx.phase, baud: ctx.baud }
        }
        _ => return None,
    })
}

/// espflash's chip names ("esp32c3") as OTA Forge chips.
pub fn slug_chip(name: &str) -> Option<Chip> {
    name.parse().ok()
}

/// espflash's command names as the protocol writes them: `FlashDeflData` → `FLASH_DEFL_DATA`.
fn protocol_name(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Programs that have `path` open, as "name (pid N)", found through /proc (empty elsewhere).
pub fn holders(path: &str) -> Vec<String> {
    let Ok(target) = std::fs::canonicalize(path) else { return Vec::new() };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target));
        if holds {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push(format!("{} (pid {pid})", name.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(port: &str, phase: Phase) -> Context<'_> {
        Context { port, phase, written: 4096, total: 65536, baud: 921_600, cancelled: false }
    }

    /// A path that exists, so "the port vanished" is not the answer by default.
    fn existing() -> tempfile::NamedTempFile {
        tempfile::NamedTempFile::new().unwrap()
    }

    #[test]
    fn timeouts_mean_silence() {
        let f = existing();
        let port = f.path().to_str().unwrap();
        let e = espflash::Error::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "t"));
        let d = diagnose(&e, &ctx(port, Phase::Write));
        assert!(matches!(d, FlashError::StoppedAnswering { .. }), "{d:?}");
        assert!(d.to_string().contains("stopped answering while writing (4 KiB of 64 KiB written)"), "{d}");
        assert!(d.slower_may_help());
        let d = diagnose(&e, &ctx(port, Phase::Connect));
        assert!(d.to_string().contains("hold the BOOT"), "{d}");
    }

    #[test]
    fn a_hang_up_or_a_missing_port_means_it_vanished() {
        let f = existing();
        let port = f.path().to_str().unwrap();
        let e = espflash::Error::from(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "hup"));
        let d = diagnose(&e, &ctx(port, Phase::Write));
        assert!(d.to_string().contains("disappeared while writing"), "{d}");
        assert!(!d.slower_may_help());
        let other = std::io::Error::other("whatever");
        let d = diagnose(&other, &ctx("/dev/no-such-tty", Phase::Write));
        assert!(matches!(d, FlashError::PortVanished { .. }), "{d:?}");
    }

    #[test]
    fn espflash_specifics() {
        let f = existing();
        let port = f.path().to_str().unwrap();
        let d = diagnose(&espflash::Error::VerifyFailed, &ctx(port, Phase::Verify));
        assert_eq!(d, FlashError::VerifyFailed);
        let d = diagnose(
            &espflash::Error::ChipMismatch("esp32".into(), "esp32c3".into()),
            &ctx(port, Phase::Connect),
        );
        assert_eq!(d, FlashError::ChipMismatch { asked: Chip::Esp32, board: Chip::Esp32C3 });
        assert!(d.to_string().contains("board on this port is an ESP32-C3"), "{d}");
    }

    #[test]
    fn cancel_wins() {
        let mut c = ctx("/dev/no-such-tty", Phase::Write);
        c.cancelled = true;
        let d = diagnose(&std::io::Error::other("x"), &c);
        assert!(d.to_string().starts_with("Flashing was cancelled (4 KiB of 64 KiB written)"), "{d}");
    }

    #[test]
    fn open_errors() {
        let d = open_error(
            "/dev/ttyNOPE",
            serialport::Error::new(serialport::ErrorKind::Io(std::io::ErrorKind::NotFound), "x"),
        );
        assert!(d.to_string().starts_with("There is no serial port /dev/ttyNOPE."), "{d}");
        let f = existing();
        let port = f.path().to_str().unwrap();
        let d = open_error(
            port,
            serialport::Error::new(serialport::ErrorKind::Io(std::io::ErrorKind::PermissionDenied), "x"),
        );
        assert!(d.to_string().contains("sudo usermod -aG"), "{d}");
        let d = open_error(port, serialport::Error::new(serialport::ErrorKind::NoDevice, "locked"));
        assert!(d.to_string().contains("is in use by another program"), "{d}");
    }

    #[test]
    fn command_names() {
        assert_eq!(protocol_name("FlashDeflData"), "FLASH_DEFL_DATA");
        assert_eq!(protocol_name("Sync"), "SYNC");
    }

    #[test]
    fn wrong_chip_words() {
        let d = FlashError::WrongChip { image: Chip::Esp32C3, board: Chip::Esp8266 };
        assert_eq!(
            d.to_string(),
            "This image is for the ESP32-C3 but the board is an ESP8266: nothing was written. Choose the image built for the ESP8266."
        );
    }

    #[test]
    fn holders_names_this_test_for_other_processes_only() {
        let pair = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pair.slave).expect("ttyname").display().to_string();
        let _open = std::fs::File::open(&path).unwrap();
        assert!(holders(&path).is_empty(), "our own process is left out");
        assert!(holders("/no/such/port").is_empty());
    }
}
