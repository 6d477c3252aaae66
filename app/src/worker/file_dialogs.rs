//! File dialogs that cannot fail silently.
//!
//! On Linux rfd asks the XDG desktop portal for a dialog and falls back to `zenity`; where neither
//! exists it returns "nothing picked", exactly what a cancel returns. So the app never lets a
//! dialog stand alone: every file is taken by a path field (`ui::widgets::path_field`), and a
//! dialog only fills that field. Before opening one we check that one can open ([`probe`]); a
//! dialog that "closes" faster than a person could cancel it is reported as not opened.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Turns the file dialogs off (`OTAFORGE_FILE_DIALOG=off`), e.g. where a broken portal hangs.
pub const DIALOG_ENV: &str = "OTAFORGE_FILE_DIALOG";

/// Faster than this, a "cancelled" dialog never showed: nobody reads and dismisses a dialog in
/// a quarter of a second.
const TOO_FAST_TO_CANCEL: Duration = Duration::from_millis(250);

/// Every field of the app that takes a file or folder; each knows what its dialog asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileField {
    /// Where the CA certificate (PEM) is exported to.
    CaExportPem,
    /// Where the C header with the trust anchor is exported to.
    CaExportHeader,
    /// The reference image the Firmware step inspects and bakes into.
    FirmwareImage,
    /// Where the Firmware step writes the baked image.
    BakeOutput,
    /// The sketch folder `ota_config.h` is written into and built from.
    SketchFolder,
    /// The image the Flash step writes.
    FlashImage,
    /// The image the Serve step checks and publishes.
    PublishImage,
}

/// What a field's dialog does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    /// Pick an existing file.
    Open,
    /// Choose where to write a file.
    Save,
    /// Pick a folder.
    Folder,
}

impl FileField {
    /// Open, save or folder.
    pub fn kind(self) -> DialogKind {
        match self {
            FileField::CaExportPem | FileField::CaExportHeader | FileField::BakeOutput => DialogKind::Save,
            FileField::SketchFolder => DialogKind::Folder,
            FileField::FirmwareImage | FileField::FlashImage | FileField::PublishImage => DialogKind::Open,
        }
    }

    /// The dialog's title.
    pub fn title(self) -> &'static str {
        match self {
            FileField::CaExportPem => "Export the CA certificate",
            FileField::CaExportHeader => "Export the trust anchor as a C header",
            FileField::FirmwareImage => "Reference firmware image",
            FileField::BakeOutput => "Write the baked image to",
            FileField::SketchFolder => "Sketch folder",
            FileField::FlashImage => "Image to flash",
            FileField::PublishImage => "Firmware to publish",
        }
    }

    /// File-type filters of an open dialog: (name, extensions).
    fn filters(self) -> &'static [(&'static str, &'static [&'static str])] {
        match self {
            FileField::FlashImage => &[("Firmware", &["bin", "elf"]), ("Any file", &["*"])],
            FileField::FirmwareImage | FileField::PublishImage | FileField::BakeOutput => {
                &[("Firmware", &["bin"]), ("Any file", &["*"])]
            }
            FileField::CaExportPem => &[("PEM certificate", &["pem", "crt"])],
            FileField::CaExportHeader => &[("C header", &["h"])],
            FileField::SketchFolder => &[],
        }
    }
}

/// Whether a file dialog can open on this desktop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDialogs {
    /// One can (a portal with a file chooser, zenity, or a non-Linux desktop).
    Available,
    /// None can: why, and what to install. The path fields still work.
    Unavailable(String),
}

impl FileDialogs {
    /// The reason no dialog can open, if none can.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            FileDialogs::Available => None,
            FileDialogs::Unavailable(why) => Some(why),
        }
    }
}

/// What a Browse came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowseOutcome {
    /// The user picked this path.
    Picked(PathBuf),
    /// The user closed the dialog.
    Cancelled,
    /// No dialog opened: why, and what to install.
    NotOpened(String),
}

/// What to install for a dialog, said once for every message.
const INSTALL: &str = "Install a file dialog (Debian/Ubuntu: `sudo apt install zenity`, or \
                       `xdg-desktop-portal-gtk` on a desktop without a portal) and restart OTA Forge, \
                       or type the path in the field: it works without one.";

/// Checks whether a dialog can open, without opening one.
pub fn probe() -> FileDialogs {
    if std::env::var_os(DIALOG_ENV).is_some_and(|v| v == "off" || v == "0") {
        return FileDialogs::Unavailable(format!(
            "File dialogs are turned off ({DIALOG_ENV}=off). Type the path in the field."
        ));
    }
    if !cfg!(target_os = "linux") {
        return FileDialogs::Available; // Windows and macOS always have their own
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join("zenity").is_file()) {
        return FileDialogs::Available;
    }
    if !session_bus() {
        return FileDialogs::Unavailable(format!(
            "No file dialog can open: there is no desktop session bus (DBUS_SESSION_BUS_ADDRESS) \
             for a portal, and zenity is not installed. {INSTALL}"
        ));
    }
    if !portal_file_chooser(Path::new("/usr/share")) {
        return FileDialogs::Unavailable(format!(
            "No file dialog can open: no XDG desktop portal with a file chooser is installed, and \
             zenity is not either. {INSTALL}"
        ));
    }
    FileDialogs::Available
}

fn session_bus() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).join("bus").exists())
}

/// A portal front end (activatable on the session bus) and a back end that implements the file
/// chooser, as installed under `share` (normally /usr/share).
fn portal_file_chooser(share: &Path) -> bool {
    let front = share.join("dbus-1/services/org.freedesktop.portal.Desktop.service");
    if !front.exists() {
        return false;
    }
    let Ok(backends) = std::fs::read_dir(share.join("xdg-desktop-portal/portals")) else {
        return false;
    };
    backends.flatten().any(|entry| {
        std::fs::read_to_string(entry.path())
            .is_ok_and(|text| text.contains("org.freedesktop.impl.portal.FileChooser"))
    })
}

/// Opens `field`'s dialog (when `dialogs` says one can open) and says what came of it.
pub(super) async fn browse(field: FileField, dialogs: &FileDialogs, start: Option<PathBuf>) -> BrowseOutcome {
    if let Some(why) = dialogs.unavailable() {
        return BrowseOutcome::NotOpened(why.to_string());
    }
    let mut dialog = rfd::AsyncFileDialog::new().set_title(field.title());
    for (name, extensions) in field.filters() {
        dialog = dialog.add_filter(*name, extensions);
    }
    if let Some(start) = &start {
        let (folder, file) = split_start(start, field.kind());
        if let Some(folder) = folder {
            dialog = dialog.set_directory(folder);
        }
        if let Some(file) = file {
            dialog = dialog.set_file_name(file);
        }
    }
    let opened = Instant::now();
    let picked = match field.kind() {
        DialogKind::Open => dialog.pick_file().await,
        DialogKind::Save => dialog.save_file().await,
        DialogKind::Folder => dialog.pick_folder().await,
    };
    match picked {
        Some(handle) => BrowseOutcome::Picked(handle.path().to_path_buf()),
        None if opened.elapsed() < TOO_FAST_TO_CANCEL => BrowseOutcome::NotOpened(format!(
            "The file dialog closed at once, so it probably could not open here. {INSTALL}"
        )),
        None => BrowseOutcome::Cancelled,
    }
}

/// The folder a dialog starts in and, for a save dialog, the file name it suggests.
fn split_start(start: &Path, kind: DialogKind) -> (Option<PathBuf>, Option<String>) {
    if start.is_dir() {
        return (Some(start.to_path_buf()), None);
    }
    let folder = start.parent().filter(|p| p.is_dir()).map(Path::to_path_buf);
    let file = match kind {
        DialogKind::Save => start.file_name().map(|f| f.to_string_lossy().into_owned()),
        DialogKind::Open | DialogKind::Folder => None,
    };
    (folder, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_portal_counts_only_with_a_file_chooser_back_end() {
        let share = tempfile::tempdir().unwrap();
        assert!(!portal_file_chooser(share.path()), "nothing installed");
        let services = share.path().join("dbus-1/services");
        std::fs::create_dir_all(&services).unwrap();
        std::fs::write(services.join("org.freedesktop.portal.Desktop.service"), "[D-BUS Service]\n").unwrap();
        assert!(!portal_file_chooser(share.path()), "a front end alone opens no dialog");
        let portals = share.path().join("xdg-desktop-portal/portals");
        std::fs::create_dir_all(&portals).unwrap();
        std::fs::write(portals.join("wlr.portal"), "Interfaces=org.freedesktop.impl.portal.Screenshot;\n")
            .unwrap();
        assert!(!portal_file_chooser(share.path()), "a back end without a file chooser");
        std::fs::write(portals.join("gtk.portal"), "Interfaces=org.freedesktop.impl.portal.FileChooser;\n")
            .unwrap();
        assert!(portal_file_chooser(share.path()));
    }

    #[test]
    fn a_save_dialog_starts_beside_the_typed_path_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let typed = dir.path().join("ca.pem");
        assert_eq!(
            split_start(&typed, DialogKind::Save),
            (Some(dir.path().to_path_buf()), Some("ca.pem".into()))
        );
        assert_eq!(split_start(&typed, DialogKind::Open), (Some(dir.path().to_path_buf()), None));
        assert_eq!(split_start(dir.path(), DialogKind::Folder), (Some(dir.path().to_path_buf()), None));
        assert_eq!(split_start(Path::new("/no/such/dir/x.bin"), DialogKind::Open), (None, None));
    }

    #[tokio::test]
    async fn no_dialog_is_opened_where_none_can_open() {
        let none = FileDialogs::Unavailable("no dialog here".into());
        assert_eq!(
            browse(FileField::FlashImage, &none, None).await,
            BrowseOutcome::NotOpened("no dialog here".into())
        );
    }
}
