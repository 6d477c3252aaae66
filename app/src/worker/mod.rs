//! The worker behind the desktop app: a tokio runtime on its own thread that does every piece of
//! I/O and slow work, so the window never stalls.
//!
//! The UI sends [`Command`]s and drains [`Event`]s; after each event the worker calls the `wake`
//! callback the UI gave it (egui's `request_repaint`). Nothing here knows about egui.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

pub mod file_dialogs;
mod firmware;
mod flash;
mod serve;
mod signing_keys;

pub use file_dialogs::{BrowseOutcome, FileDialogs, FileField};
pub use signing_keys::SigningKeyInfo;

pub use firmware::{FirmwareCommand, FirmwareEvent, FoundToolchain};
pub use flash::{FlashCommand, FlashEvent, ImageChoice, ImageSummary};
pub use serve::{
    Download, LogEntry, LogKind, PublishCheck, PublishDraft, ServeCommand, ServeEvent, ServeSettings,
    ServerInfo, VirtualDeviceInfo, check_file,
};

use otaforge_pki::{self as pki, CertReport, Host, IssueRequest, export, local};

/// What the UI asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// Load (or reload) the project's certificates, checked against these hosts.
    LoadCertificate {
        /// Extra hosts to check coverage for.
        hosts: Vec<Host>,
    },
    /// Make a new CA + server certificate (or pinned leaf). `replace` allows retiring existing material.
    Generate {
        /// What to issue.
        request: IssueRequest,
        /// Allow replacing existing material (it moves to `retired/`).
        replace: bool,
    },
    /// Issue a new server certificate from the existing CA.
    RenewServer {
        /// New host list; `None` keeps the current names.
        hosts: Option<Vec<Host>>,
        /// Validity in days.
        days: u32,
    },
    /// List this machine's addresses and host name.
    DiscoverHosts,
    /// Check where a host leads.
    CheckHost(Host),
    /// Write the trust anchor to the path typed in its field (a file dialog only fills the field).
    ExportAnchor {
        /// PEM or C header.
        format: ExportFormat,
        /// Destination.
        to: PathBuf,
    },
    /// Read the trust anchor's text, for the Copy button and the PEM shown in the window;
    /// answered by [`Event::Anchor`].
    ReadAnchor(ExportFormat),
    /// Read the project's update-signing keys.
    LoadSigningKeys,
    /// Make update-signing keys for both families; `replace` retires the current ones.
    NewSigningKeys {
        /// Replace existing keys (they move to `retired/`).
        replace: bool,
    },
    /// Firmware step (see `worker/firmware.rs`).
    Firmware(FirmwareCommand),
    /// Flash step (see `worker/flash.rs`).
    Flash(FlashCommand),
    /// Serve step (see `worker/serve.rs`).
    Serve(ServeCommand),
    /// Open `field`'s file dialog, starting from what is typed in it; answered by
    /// [`Event::Browsed`]. A dialog only ever fills its field: the field acts.
    Browse {
        /// The field to fill.
        field: FileField,
        /// What the field holds now (the dialog starts beside it).
        current: Option<PathBuf>,
    },
}

/// Formats the trust anchor can be exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// The PEM certificate.
    Pem,
    /// A C header with the PEM as a string literal.
    CHeader,
}

impl ExportFormat {
    /// Default file name for the export.
    pub fn file_name(self) -> &'static str {
        match self {
            ExportFormat::Pem => "otaforge-ca.pem",
            ExportFormat::CHeader => "otaforge_trust_anchor.h",
        }
    }
}

/// What the worker reports back.
#[derive(Debug, Clone)]
pub enum Event {
    /// The project's certificates (None: there are none yet).
    Certificate(Option<Box<CertReport>>),
    /// A certificate command failed; nothing was changed on disk.
    CertificateFailed(String),
    /// This machine's addresses and host name.
    LocalHosts(local::LocalHosts),
    /// Where a host leads, in words.
    HostChecked {
        /// The host checked.
        host: Host,
        /// Devices using it would reach this machine.
        reaches_here: bool,
        /// The verdict in one sentence.
        message: String,
    },
    /// The project's update-signing keys (empty: none yet).
    SigningKeys(Vec<SigningKeyInfo>),
    /// Reading or making signing keys failed; nothing was changed.
    SigningKeysFailed(String),
    /// The trust anchor was written.
    Exported {
        /// PEM or C header.
        format: ExportFormat,
        /// Where.
        path: PathBuf,
    },
    /// Export failed, with the reason; nothing was written.
    ExportFailed(String),
    /// The trust anchor's text (or why it cannot be read).
    Anchor {
        /// PEM or C header.
        format: ExportFormat,
        /// The text.
        text: Result<String, String>,
    },
    /// Firmware step (see `worker/firmware.rs`).
    Firmware(FirmwareEvent),
    /// Flash step (see `worker/flash.rs`).
    Flash(FlashEvent),
    /// Serve step (see `worker/serve.rs`).
    Serve(ServeEvent),
    /// A field's file dialog closed (or could not open).
    Browsed {
        /// The field it was opened for.
        field: FileField,
        /// What came of it.
        outcome: BrowseOutcome,
    },
}

/// A running worker. Dropping it stops the runtime.
pub struct Worker {
    commands: mpsc::UnboundedSender<Command>,
    events: std_mpsc::Receiver<Event>,
    dir: PathBuf,
    file_dialogs: Arc<std::sync::RwLock<FileDialogs>>,
}

impl Worker {
    /// Starts the worker thread for the project in `dir`. `wake` is called after every event.
    pub fn start(dir: PathBuf, wake: impl Fn() + Send + Sync + 'static) -> std::io::Result<Worker> {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = std_mpsc::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otaforge-worker")
            .enable_all()
            .build()?;
        let file_dialogs = Arc::new(std::sync::RwLock::new(file_dialogs::probe()));
        let worker = Runner {
            dir: dir.clone(),
            file_dialogs: file_dialogs.clone(),
            events: ev_tx,
            wake: Arc::new(wake),
            cancel_build: Arc::new(AtomicBool::new(false)),
            cert_writes: Arc::new(AtomicU64::new(0)),
            serve_state: Default::default(),
            flash_state: Default::default(),
        };
        std::thread::Builder::new()
            .name("otaforge-runtime".into())
            .spawn(move || runtime.block_on(worker.run(cmd_rx)))?;
        Ok(Worker { commands: cmd_tx, events: ev_rx, dir, file_dialogs })
    }

    /// Queues a command; never blocks.
    pub fn send(&self, command: Command) {
        // The worker only stops when the Worker is dropped, so a send cannot fail while we exist.
        let _ = self.commands.send(command);
    }

    /// The next event, if one is waiting; never blocks.
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The project directory this worker serves.
    pub fn dir(&self) -> &PathBuf {
        &self.dir
    }

    /// Whether a file dialog can open here (probed when the worker started).
    pub fn file_dialogs(&self) -> FileDialogs {
        self.file_dialogs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Overrides the probe: tests use it to be a desktop without (or with) file dialogs.
    pub fn set_file_dialogs(&self, dialogs: FileDialogs) {
        *self.file_dialogs.write().unwrap_or_else(|p| p.into_inner()) = dialogs;
    }
}

/// The runtime side of the worker: what every task it runs shares.
#[derive(Clone)]
struct Runner {
    dir: PathBuf,
    /// Whether file dialogs can open (shared with [`Worker::file_dialogs`]).
    file_dialogs: Arc<std::sync::RwLock<FileDialogs>>,
    events: std_mpsc::Sender<Event>,
    wake: Arc<dyn Fn() + Send + Sync>,
    /// Set to stop the running build.
    cancel_build: Arc<AtomicBool>,
    /// Certificate-writing commands (generate, renew) received so far: a load that started
    /// before one of them must not report after it and put the old state back on screen.
    cert_writes: Arc<AtomicU64>,
    /// The Serve step's server, while it runs.
    serve_state: serve::ServeState,
    /// The Flash step's running flash, monitor and virtual boards.
    flash_state: flash::FlashState,
}

impl Runner {
    async fn run(self, mut commands: mpsc::UnboundedReceiver<Command>) {
        while let Some(command) = commands.recv().await {
            // Counted here, in the order the UI sent them, not in the order the tasks run.
            if matches!(command, Command::Generate { .. } | Command::RenewServer { .. }) {
                self.cert_writes.fetch_add(1, Ordering::SeqCst);
            }
            let writes_before = self.cert_writes.load(Ordering::SeqCst);
            let worker = self.clone();
            tokio::spawn(async move { worker.handle(command, writes_before).await });
        }
        // The window is gone: its monitor and flash run on blocking threads the runtime would
        // wait for, holding the port, so they are stopped.
        self.stop_serial_work();
    }

    fn emit(&self, event: Event) {
        if self.events.send(event).is_ok() {
            (self.wake)();
        }
    }

    /// `writes_before`: certificate writes issued before this command (see `cert_writes`).
    async fn handle(&self, command: Command, writes_before: u64) {
        let dir = self.dir.clone();
        match command {
            Command::LoadCertificate { hosts } => {
                let result = blocking(move || pki::load(&dir, &hosts)).await;
                if self.cert_writes.load(Ordering::SeqCst) != writes_before {
                    return; // a generate or renew was asked for meanwhile; its answer is newer
                }
                self.emit(match result {
                    Ok(report) => Event::Certificate(report.map(Box::new)),
                    Err(e) => Event::CertificateFailed(e),
                });
            }
            Command::LoadSigningKeys => {
                let result = blocking(move || signing_keys::load(&dir)).await;
                self.emit(result.map_or_else(Event::SigningKeysFailed, Event::SigningKeys));
            }
            Command::NewSigningKeys { replace } => {
                let result = blocking(move || signing_keys::generate(&dir, replace)).await;
                self.emit(result.map_or_else(Event::SigningKeysFailed, Event::SigningKeys));
            }
            Command::Generate { request, replace } => {
                let result = blocking(move || pki::generate(&dir, &request, replace)).await;
                self.emit(match result {
                    Ok(report) => Event::Certificate(Some(Box::new(report))),
                    Err(e) => Event::CertificateFailed(e),
                });
            }
            Command::RenewServer { hosts, days } => {
                let result = blocking(move || pki::renew(&dir, hosts, days)).await;
                self.emit(match result {
                    Ok(report) => Event::Certificate(Some(Box::new(report))),
                    Err(e) => Event::CertificateFailed(e),
                });
            }
            Command::DiscoverHosts => {
                let hosts =
                    tokio::task::spawn_blocking(local::LocalHosts::discover).await.unwrap_or_default();
                self.emit(Event::LocalHosts(hosts));
            }
            Command::CheckHost(host) => {
                let local =
                    tokio::task::spawn_blocking(local::LocalHosts::discover).await.unwrap_or_default();
                let resolution = local::check(&host, &local).await;
                self.emit(Event::HostChecked {
                    message: resolution.describe(&host),
                    reaches_here: resolution.reaches_here(),
                    host,
                });
            }
            Command::Firmware(command) => self.firmware(command).await,
            Command::Browse { field, current } => {
                let dialogs = self.file_dialogs.read().unwrap_or_else(|p| p.into_inner()).clone();
                let outcome = file_dialogs::browse(field, &dialogs, current).await;
                self.emit(Event::Browsed { field, outcome });
            }
            Command::Flash(command) => self.flash(command).await,
            Command::Serve(command) => self.serve(command).await,
            Command::ExportAnchor { format, to } => {
                let event = match self.export(format, to).await {
                    Ok(path) => Event::Exported { format, path },
                    Err(e) => Event::ExportFailed(e),
                };
                self.emit(event);
            }
            Command::ReadAnchor(format) => {
                let text = self.anchor_text(format).await;
                self.emit(Event::Anchor { format, text });
            }
        }
    }

    /// The trust anchor as `format` says.
    async fn anchor_text(&self, format: ExportFormat) -> Result<String, String> {
        let dir = self.dir.clone();
        blocking(move || {
            let material = pki::Material::load(&dir)?.ok_or(pki::PkiError::NoMaterial { dir })?;
            match format {
                ExportFormat::Pem => Ok(export::pem(&material).to_string()),
                ExportFormat::CHeader => export::c_header(&material),
            }
        })
        .await
    }

    /// Writes the trust anchor to `to`; a relative path is taken from the project folder.
    async fn export(&self, format: ExportFormat, to: PathBuf) -> Result<PathBuf, String> {
        if to.as_os_str().is_empty() {
            return Err("Type where to write it (or use Browse…), then export.".into());
        }
        let text = self.anchor_text(format).await?;
        let path = if to.is_relative() { self.dir.join(to) } else { to };
        let target = path.clone();
        tokio::task::spawn_blocking(move || {
            otaforge_project::write_atomic(&target, text.as_bytes(), otaforge_project::Secrecy::Public)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("Could not write {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// Runs CPU-bound or blocking work (key generation, file I/O) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, pki::PkiError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("internal error: {e}")),
    }
}
