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

mod flash;
mod serve;
mod signing_keys;

pub use signing_keys::SigningKeyInfo;

pub use flash::{FlashCommand, FlashEvent, ImageChoice, ImageSummary};
pub use serve::{
    Download, LogEntry, LogKind, PublishCheck, PublishDraft, ServeCommand, ServeEvent, ServeSettings,
    ServerInfo, VirtualDeviceInfo, check_file,
};

use otaforge_firmware::settings::{self, BakeForm};
use otaforge_firmware::{self as firmware, FirmwareReport, source};
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
    /// Export the trust anchor; with no path, ask the user where with a file dialog.
    ExportAnchor {
        /// PEM or C header.
        format: ExportFormat,
        /// Destination; `None` asks with a file dialog.
        to: Option<PathBuf>,
    },
    /// Read the project's update-signing keys.
    LoadSigningKeys,
    /// Make update-signing keys for both families; `replace` retires the current ones.
    NewSigningKeys {
        /// Replace existing keys (they move to `retired/`).
        replace: bool,
    },
    /// Inspect a firmware file; with no path, ask with a file dialog.
    InspectFirmware(Option<PathBuf>),
    /// Bake settings into a prebuilt image and write the result.
    BakeImage {
        /// The reference image.
        input: PathBuf,
        /// Where to write the baked copy.
        output: PathBuf,
        /// The settings.
        form: BakeForm,
    },
    /// Write ota_config.h into a sketch folder; with no folder, ask with a dialog.
    WriteSketchConfig {
        /// The sketch folder.
        dir: Option<PathBuf>,
        /// The settings.
        form: BakeForm,
    },
    /// Look for arduino-cli / PlatformIO.
    FindToolchain,
    /// Build a sketch folder with the toolchain on PATH; the log streams back as events.
    BuildSketch {
        /// The sketch folder.
        dir: PathBuf,
        /// FQBN (arduino-cli) or environment (PlatformIO).
        board: String,
    },
    /// Stop the running build.
    CancelBuild,
    /// Flash step (see `worker/flash.rs`).
    Flash(FlashCommand),
    /// Serve step (see `worker/serve.rs`).
    Serve(ServeCommand),
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
    Exported(PathBuf),
    /// Export did not happen (cancelled or failed), with the reason.
    ExportFailed(String),
    /// A firmware file was read (or could not be, with the reason).
    FirmwareInspected {
        /// The file.
        path: PathBuf,
        /// The report, or why the file is not usable.
        result: Result<Box<FirmwareReport>, String>,
    },
    /// A baked image was written.
    FirmwareBaked {
        /// Where.
        path: PathBuf,
        /// The baked image's report.
        report: Box<FirmwareReport>,
        /// Fingerprint of the public key baked in: the image installs only updates signed by it.
        signing_key: Option<String>,
    },
    /// ota_config.h (and the block header) were written.
    SketchConfigWritten(Vec<PathBuf>),
    /// A firmware action failed; nothing was written.
    FirmwareFailed(String),
    /// The toolchain found on PATH (None: none).
    Toolchain(Option<String>),
    /// A line the build printed.
    BuildLog(String),
    /// The build ended: the .bin it made, or why not.
    BuildFinished(Result<PathBuf, String>),
    /// Flash step (see `worker/flash.rs`).
    Flash(FlashEvent),
    /// Serve step (see `worker/serve.rs`).
    Serve(ServeEvent),
}

/// A running worker. Dropping it stops the runtime.
pub struct Worker {
    commands: mpsc::UnboundedSender<Command>,
    events: std_mpsc::Receiver<Event>,
    dir: PathBuf,
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
        let worker = Runner {
            dir: dir.clone(),
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
        Ok(Worker { commands: cmd_tx, events: ev_rx, dir })
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
}

/// The runtime side of the worker: what every task it runs shares.
#[derive(Clone)]
struct Runner {
    dir: PathBuf,
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
            Command::InspectFirmware(path) => {
                let path = match path {
                    Some(p) => p,
                    None => {
                        match rfd::AsyncFileDialog::new().add_filter("Firmware", &["bin"]).pick_file().await {
                            Some(h) => h.path().to_path_buf(),
                            None => return,
                        }
                    }
                };
                let p = path.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let bytes = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                    firmware::report(&bytes).map(Box::new).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                self.emit(Event::FirmwareInspected { path, result });
            }
            Command::BakeImage { input, output, form } => {
                let out = output.clone();
                type Baked = (Box<FirmwareReport>, Option<String>);
                let result = tokio::task::spawn_blocking(move || -> Result<Baked, String> {
                    let bytes =
                        std::fs::read(&input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
                    let (baked, s) = settings::bake_image(&dir, &bytes, &form).map_err(|e| e.to_string())?;
                    let key = (!s.signing_key.is_empty())
                        .then(|| otaforge_pki::signing::fingerprint(&s.signing_key));
                    otaforge_project::write_atomic(&out, &baked, otaforge_project::Secrecy::Secret)
                        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
                    Ok((firmware::report(&baked).map(Box::new).map_err(|e| e.to_string())?, key))
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                self.emit(match result {
                    Ok((report, signing_key)) => Event::FirmwareBaked { path: output, report, signing_key },
                    Err(e) => Event::FirmwareFailed(e),
                });
            }
            Command::WriteSketchConfig { dir: sketch, form } => {
                let sketch = match sketch {
                    Some(d) => d,
                    None => {
                        match rfd::AsyncFileDialog::new().set_title("Sketch folder").pick_folder().await {
                            Some(h) => h.path().to_path_buf(),
                            None => return,
                        }
                    }
                };
                let result = tokio::task::spawn_blocking(move || -> Result<Vec<PathBuf>, String> {
                    let s = settings::baked_settings(&dir, &form, true).map_err(|e| e.to_string())?;
                    let keys = settings::sketch_keys(&dir, &form).map_err(|e| e.to_string())?;
                    source::write_sketch_config(&sketch, &s, &keys).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                self.emit(match result {
                    Ok(paths) => Event::SketchConfigWritten(paths),
                    Err(e) => Event::FirmwareFailed(e),
                });
            }
            Command::FindToolchain => {
                let found = tokio::task::spawn_blocking(source::find_toolchain).await.ok().flatten();
                self.emit(Event::Toolchain(found.map(|t| match t {
                    source::Toolchain::ArduinoCli(p) | source::Toolchain::PlatformIo(p) => {
                        p.display().to_string()
                    }
                })));
            }
            Command::BuildSketch { dir: sketch, board } => {
                self.cancel_build.store(false, Ordering::Relaxed);
                let worker = self.clone();
                let result = tokio::task::spawn_blocking(move || -> Result<PathBuf, String> {
                    let tc = source::find_toolchain()
                        .ok_or_else(|| source::SourceError::NoToolchain.to_string())?;
                    let mut log = |line: String| worker.emit(Event::BuildLog(line));
                    source::build(&tc, &sketch, &board, &mut log, &worker.cancel_build)
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                if let Ok(bin) = &result {
                    let writes = self.cert_writes.load(Ordering::SeqCst);
                    Box::pin(self.handle(Command::InspectFirmware(Some(bin.clone())), writes)).await;
                }
                self.emit(Event::BuildFinished(result));
            }
            Command::CancelBuild => self.cancel_build.store(true, Ordering::Relaxed),
            Command::Flash(command) => self.flash(command).await,
            Command::Serve(command) => self.serve(command).await,
            Command::ExportAnchor { format, to } => {
                let event = match self.export(format, to).await {
                    Ok(Some(path)) => Event::Exported(path),
                    Ok(None) => Event::ExportFailed("Export cancelled.".into()),
                    Err(e) => Event::ExportFailed(e),
                };
                self.emit(event);
            }
        }
    }

    async fn export(&self, format: ExportFormat, to: Option<PathBuf>) -> Result<Option<PathBuf>, String> {
        let dir = self.dir.clone();
        let text = blocking(move || {
            let material = pki::Material::load(&dir)?.ok_or(pki::PkiError::NoMaterial { dir })?;
            match format {
                ExportFormat::Pem => Ok(export::pem(&material).to_string()),
                ExportFormat::CHeader => export::c_header(&material),
            }
        })
        .await?;
        let path = match to {
            Some(p) => p,
            None => {
                let picked = rfd::AsyncFileDialog::new()
                    .set_title("Export trust anchor")
                    .set_file_name(format.file_name())
                    .save_file()
                    .await;
                match picked {
                    Some(handle) => handle.path().to_path_buf(),
                    None => return Ok(None),
                }
            }
        };
        let target = path.clone();
        tokio::task::spawn_blocking(move || {
            otaforge_project::write_atomic(&target, text.as_bytes(), otaforge_project::Secrecy::Public)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("Could not write {}: {e}", path.display()))?;
        Ok(Some(path))
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
