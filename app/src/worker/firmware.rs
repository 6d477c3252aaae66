//! The Firmware step's side of the worker: inspecting and baking prebuilt images, writing
//! `ota_config.h`, copying the embedded reference sketches into the project, and building a sketch
//! with arduino-cli or PlatformIO (found where the UI says to look, so a test can point it at a
//! stand-in), its log streamed line by line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{Event, Runner};
use otaforge_firmware::reference_sketch::{self, CopyMode, CopyReport};
use otaforge_firmware::settings::{self, BakeForm};
use otaforge_firmware::source::{self, Toolchain};
use otaforge_firmware::{self as firmware, FirmwareReport, toolchain, virtual_only};

/// What the Firmware step asks for.
#[derive(Debug, Clone)]
pub enum FirmwareCommand {
    /// Inspect a firmware file.
    Inspect(PathBuf),
    /// Bake settings into a prebuilt image and write the result.
    Bake {
        /// The reference image.
        input: PathBuf,
        /// Where to write the baked copy.
        output: PathBuf,
        /// The settings.
        form: BakeForm,
    },
    /// Write ota_config.h (and the headers beside it) into a sketch folder.
    WriteSketchConfig {
        /// The sketch folder.
        dir: PathBuf,
        /// The settings.
        form: BakeForm,
    },
    /// Look for arduino-cli and PlatformIO in `search` (a PATH-style list; `None`: the default
    /// places), and ask arduino-cli which cores it has.
    FindToolchains {
        /// Where to look.
        search: Option<OsString>,
    },
    /// Write ota_config.h, then build the sketch; the log streams back as events.
    Build {
        /// The toolchain (as found).
        toolchain: Toolchain,
        /// The sketch folder.
        dir: PathBuf,
        /// FQBN (arduino-cli) or environment (PlatformIO).
        board: String,
        /// The settings ota_config.h is written from.
        form: BakeForm,
    },
    /// Stop the running build.
    CancelBuild,
    /// Look at (or write) the reference sketches in the project's `firmware/` folder.
    ReferenceSketch(CopyMode),
}

/// A toolchain found, and for arduino-cli the cores it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToolchain {
    /// The tool.
    pub toolchain: Toolchain,
    /// arduino-cli's installed platforms (`esp8266:esp8266`), or why they could not be listed;
    /// `None` for PlatformIO, which installs platforms itself.
    pub cores: Option<Result<Vec<String>, String>>,
}

/// What the Firmware step hears back.
#[derive(Debug, Clone)]
pub enum FirmwareEvent {
    /// A firmware file was read (or could not be, with the reason).
    Inspected {
        /// The file.
        path: PathBuf,
        /// The report, or why the file is not usable.
        result: Result<Box<FirmwareReport>, String>,
        /// It is a stand-in that runs on virtual boards only.
        virtual_only: bool,
    },
    /// A baked image was written.
    Baked {
        /// Where.
        path: PathBuf,
        /// The baked image's report.
        report: Box<FirmwareReport>,
        /// Fingerprint of the public key baked in: the image installs only updates signed by it.
        signing_key: Option<String>,
        /// Baked from a stand-in that runs on virtual boards only.
        virtual_only: bool,
    },
    /// ota_config.h (and the block header) were written.
    SketchConfigWritten(Vec<PathBuf>),
    /// A firmware action failed; nothing was written.
    Failed(String),
    /// The toolchains found (empty: none).
    Toolchains {
        /// Where the worker looked (as asked).
        search: Option<OsString>,
        /// What it found.
        found: Vec<FoundToolchain>,
    },
    /// A line the build printed.
    BuildLog(String),
    /// The build ended: the .bin it made, or why not.
    BuildFinished(Result<PathBuf, String>),
    /// The reference sketches in the project, as found or after a copy.
    ReferenceSketch(Result<CopyReport, String>),
}

impl Runner {
    fn firmware_event(&self, event: FirmwareEvent) {
        self.emit(Event::Firmware(event));
    }

    pub(super) async fn firmware(&self, command: FirmwareCommand) {
        let dir = self.dir.clone();
        match command {
            FirmwareCommand::Inspect(path) => self.inspect(path).await,
            FirmwareCommand::Bake { input, output, form } => {
                let out = output.clone();
                type Baked = (Box<FirmwareReport>, Option<String>, bool);
                let result = blocking(move || -> Result<Baked, String> {
                    let bytes =
                        std::fs::read(&input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
                    let (baked, s) = settings::bake_image(&dir, &bytes, &form).map_err(|e| e.to_string())?;
                    let key = (!s.signing_key.is_empty())
                        .then(|| otaforge_pki::signing::fingerprint(&s.signing_key));
                    otaforge_project::write_atomic(&out, &baked, otaforge_project::Secrecy::Secret)
                        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
                    let report = firmware::report(&baked).map(Box::new).map_err(|e| e.to_string())?;
                    Ok((report, key, virtual_only::is_virtual_only(&baked)))
                })
                .await;
                self.firmware_event(match result {
                    Ok((report, signing_key, virtual_only)) => {
                        FirmwareEvent::Baked { path: output, report, signing_key, virtual_only }
                    }
                    Err(e) => FirmwareEvent::Failed(e),
                });
            }
            FirmwareCommand::WriteSketchConfig { dir: sketch, form } => {
                let result = blocking(move || write_config(&dir, &sketch, &form)).await;
                self.firmware_event(
                    result.map_or_else(FirmwareEvent::Failed, FirmwareEvent::SketchConfigWritten),
                );
            }
            FirmwareCommand::FindToolchains { search } => {
                let asked = search.clone();
                let found = blocking(move || Ok(find(asked))).await.unwrap_or_default();
                self.firmware_event(FirmwareEvent::Toolchains { search, found });
            }
            FirmwareCommand::Build { toolchain, dir: sketch, board, form } => {
                self.build(toolchain, sketch, board, form).await
            }
            FirmwareCommand::CancelBuild => self.cancel_build.store(true, Ordering::Relaxed),
            FirmwareCommand::ReferenceSketch(mode) => {
                let result =
                    blocking(move || reference_sketch::copy(&dir, mode).map_err(|e| e.to_string())).await;
                self.firmware_event(FirmwareEvent::ReferenceSketch(result));
            }
        }
    }

    async fn inspect(&self, path: PathBuf) {
        let p = path.clone();
        let result = blocking(move || {
            let bytes = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let virtual_only = virtual_only::is_virtual_only(&bytes);
            Ok((firmware::report(&bytes).map(Box::new).map_err(|e| e.to_string()), virtual_only))
        })
        .await;
        let (result, virtual_only) = result.unwrap_or_else(|e| (Err(e), false));
        self.firmware_event(FirmwareEvent::Inspected { path, result, virtual_only });
    }

    async fn build(&self, tc: Toolchain, sketch: PathBuf, board: String, form: BakeForm) {
        self.cancel_build.store(false, Ordering::Relaxed);
        let worker = self.clone();
        let dir = self.dir.clone();
        let result = blocking(move || -> Result<PathBuf, String> {
            let mut log = |line: String| worker.firmware_event(FirmwareEvent::BuildLog(line));
            for written in write_config(&dir, &sketch, &form)? {
                log(format!("Wrote {}", written.display()));
            }
            log(format!(
                "{} {}",
                tc.name(),
                source::build_command(&tc, &sketch, &board)
                    .get_args()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            source::build(&tc, &sketch, &board, &mut log, &worker.cancel_build).map_err(|e| e.to_string())
        })
        .await;
        if let Ok(bin) = &result {
            self.inspect(bin.clone()).await;
        }
        self.firmware_event(FirmwareEvent::BuildFinished(result));
    }
}

/// Writes ota_config.h and the headers beside it into `sketch`.
fn write_config(
    project: &std::path::Path,
    sketch: &std::path::Path,
    form: &BakeForm,
) -> Result<Vec<PathBuf>, String> {
    let s = settings::baked_settings(project, form, true).map_err(|e| e.to_string())?;
    let keys = settings::sketch_keys(project, form).map_err(|e| e.to_string())?;
    source::write_sketch_config(sketch, &s, &keys).map_err(|e| e.to_string())
}

/// The toolchains in `search`, with arduino-cli's cores.
fn find(search: Option<OsString>) -> Vec<FoundToolchain> {
    let search = search.unwrap_or_else(toolchain::default_search_path);
    toolchain::find_toolchains(&search)
        .into_iter()
        .map(|tc| {
            let cores = match &tc {
                Toolchain::ArduinoCli(exe) => Some(toolchain::installed_cores(exe)),
                Toolchain::PlatformIo(_) => None,
            };
            FoundToolchain { toolchain: tc, cores }
        })
        .collect()
}

/// Runs file I/O and child processes off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| Err(format!("internal error: {e}")))
}
