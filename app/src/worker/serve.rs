//! The Serve step's side of the worker: the update server (inside the worker's runtime), releases,
//! publishing and the live device view.
//!
//! The server emits an event per 32 KB sent per download; [`forward`] folds them into snapshots
//! sent at most ten times a second, so 50 downloads never flood the window with repaints.

mod check;
mod devices;
mod forward;
mod messages;
mod virtual_device;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::Mutex;

pub use check::check_file;
pub use forward::{Download, LogEntry, LogKind};
pub use messages::{PublishCheck, PublishDraft, ServeCommand, ServeEvent, ServeSettings, ServerInfo};
pub use virtual_device::VirtualDeviceInfo;

use super::{Event, Runner};
use otaforge_server::{self as server, RunningServer, ServeConfig, ServeError};
use otaforge_store::{Device, Store};

/// The server while it runs, and the task that forwards its events.
pub(super) struct Running {
    server: Arc<RunningServer>,
    forward: tokio::task::JoinHandle<()>,
}

/// The Serve step's state inside the worker: the server, and the virtual devices switched on.
#[derive(Clone, Default)]
pub(super) struct ServeState(
    Arc<Mutex<Option<Running>>>,
    Arc<Mutex<Vec<otaforge_sim::device::DeviceHandle>>>,
);

impl Runner {
    pub(super) async fn serve(&self, command: ServeCommand) {
        match command {
            ServeCommand::Start(settings) => {
                let event = match self.start_server(settings).await {
                    Ok(info) => ServeEvent::Started(info),
                    Err(why) => ServeEvent::StartFailed(why),
                };
                self.emit(Event::Serve(event));
            }
            ServeCommand::Stop => {
                self.stop_server().await;
                self.emit(Event::Serve(ServeEvent::Stopped));
                self.refresh().await;
            }
            ServeCommand::StopAndNotify(done) => {
                self.stop_server().await;
                let _ = done.try_send(());
            }
            ServeCommand::Refresh => self.refresh().await,
            ServeCommand::Check(draft) => {
                let devices = self.live_devices().await;
                let dir = self.dir.clone();
                let check =
                    tokio::task::spawn_blocking(move || check::check_file(&dir, draft, devices)).await;
                match check {
                    Ok(c) => self.emit(Event::Serve(ServeEvent::Checked(Box::new(c)))),
                    Err(e) => self.emit(Event::Serve(ServeEvent::Failed(format!("internal error: {e}")))),
                }
            }
            ServeCommand::Publish(checked) => {
                let dir = self.dir.clone();
                let result =
                    tokio::task::spawn_blocking(move || check::publish_checked(&dir, &checked)).await;
                match result.unwrap_or_else(|e| Err(e.to_string())) {
                    Ok(release) => {
                        self.reload_server().await;
                        self.emit(Event::Serve(ServeEvent::Published(release)));
                    }
                    Err(why) => self.emit(Event::Serve(ServeEvent::Failed(why))),
                }
                self.refresh_catalog().await;
            }
            ServeCommand::Promote { id, to } => {
                self.release_action(move |s| {
                    let r = s.promote(id, to.as_deref())?;
                    Ok(format!("Channel \"{}\" now serves {} (#{}).", r.channel, r.version, r.id))
                })
                .await
            }
            ServeCommand::RollBack(channel) => {
                self.release_action(move |s| {
                    let r = s.roll_back(&channel)?;
                    Ok(format!("Rolled back: \"{}\" serves {} (#{}) again.", r.channel, r.version, r.id))
                })
                .await
            }
            ServeCommand::Rollout { channel, percent, paused } => {
                self.release_action(move |s| {
                    let c = s.set_rollout(&channel, percent, paused)?;
                    let state = if c.paused { "paused" } else { "offered" };
                    Ok(format!("\"{}\": {} to {}% of devices.", c.name, state, c.rollout_percent))
                })
                .await
            }
            ServeCommand::TryVirtualDevice => {
                let Some(port) = self.server().await.map(|s| s.tls_addr.port()) else {
                    let why = "Start the server first: the virtual device polls it.".to_string();
                    return self.emit(Event::Serve(ServeEvent::Failed(why)));
                };
                let mut devices = self.serve_state.1.lock().await;
                let n = devices.len() as u32 + 1;
                let dir = self.dir.clone();
                // Baking is quick (a few hundred KB); the device itself runs as a task of this runtime.
                match tokio::task::block_in_place(|| virtual_device::start(&dir, port, n)) {
                    Ok((info, handle)) => {
                        devices.push(handle);
                        self.emit(Event::Serve(ServeEvent::VirtualDevice(info)));
                    }
                    Err(why) => self.emit(Event::Serve(ServeEvent::Failed(why))),
                }
            }
            ServeCommand::Rename { mac, name } => self.rename_device(mac, name).await,
            ServeCommand::Forget(mac) => self.forget_device(mac).await,
            ServeCommand::History(mac) => {
                if let Some(server) = self.server().await {
                    server.flush().await;
                }
                let dir = self.dir.clone();
                let m = mac.clone();
                let requests = tokio::task::spawn_blocking(move || {
                    Store::open(&dir).and_then(|s| s.requests(&m, 100)).map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
                self.emit(Event::Serve(match requests {
                    Ok(requests) => ServeEvent::History { mac, requests },
                    Err(why) => ServeEvent::Failed(format!("Could not read the history of {mac}: {why}")),
                }));
            }
        }
    }

    /// Stops accepting and lets the inventory reach the disk.
    async fn stop_server(&self) {
        let running = self.serve_state.0.lock().await.take();
        if let Some(r) = running {
            r.forward.abort();
            let _ = r.forward.await;
            match Arc::try_unwrap(r.server) {
                Ok(server) => server.shutdown().await,
                // A command still holds it (a history read): its flush happens anyway.
                Err(server) => server.flush().await,
            }
        }
    }

    async fn server(&self) -> Option<Arc<RunningServer>> {
        self.serve_state.0.lock().await.as_ref().map(|r| r.server.clone())
    }

    async fn start_server(&self, settings: ServeSettings) -> Result<ServerInfo, String> {
        let mut state = self.serve_state.0.lock().await;
        if let Some(r) = state.as_ref() {
            return Err(format!("The server is already running on port {}.", r.server.tls_addr.port()));
        }
        let bind: IpAddr = settings.bind.trim().parse().map_err(|_| {
            format!(
                "\"{}\" is not an IP address to listen on: use 0.0.0.0 for every interface, or one of this \
                 machine's addresses.",
                settings.bind.trim()
            )
        })?;
        let dir = self.dir.clone();
        let d = dir.clone();
        let report = tokio::task::spawn_blocking(move || otaforge_pki::load(&d, &[]))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("There is no certificate yet: make one in step 1, Certificate, then start the server.")?;
        let config = ServeConfig { bind, port: settings.port, ..Default::default() };
        let server = server::start(&dir, config).await.map_err(|e| start_error(&e, settings.port))?;
        let addr = server.tls_addr;
        let mut hosts: Vec<String> = report.server.dns_sans.clone();
        for ip in &report.server.ip_sans {
            if !hosts.contains(&ip.to_string()) {
                hosts.push(ip.to_string());
            }
        }
        let urls = hosts
            .iter()
            .map(|h| format!("https://{h}:{}{}", addr.port(), otaforge_protocol::DEFAULT_PATH))
            .collect::<Vec<_>>();
        let server = Arc::new(server);
        let events = server.subscribe();
        let forward = tokio::spawn(forward::run(self.clone(), server.clone(), events));
        *state = Some(Running { server, forward });
        drop(state);
        self.refresh_catalog().await;
        Ok(ServerInfo {
            addr,
            urls,
            server_fingerprint: report.server.sha256.clone(),
            anchor_fingerprint: report.anchor_fingerprint().to_string(),
        })
    }

    /// The live inventory when the server runs, else the stored one.
    async fn live_devices(&self) -> Vec<Device> {
        if let Some(server) = self.server().await {
            return server.devices();
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|s| s.devices()).unwrap_or_default())
            .await
            .unwrap_or_default()
    }

    async fn refresh(&self) {
        self.refresh_catalog().await;
        let devices = self.live_devices().await;
        self.emit(Event::Serve(ServeEvent::Devices(devices)));
    }

    async fn refresh_catalog(&self) {
        let dir = self.dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            let store = Store::open(&dir)?;
            let (channels, bad_channels) = store.read_channels()?;
            let (releases, bad_releases) = store.read_releases(None)?;
            // The files channels serve, checked as the server checks them (each unchanged file is
            // hashed once per process, so this is cheap after the first time).
            let disabled = releases
                .iter()
                .filter(|r| {
                    channels.iter().any(|c| c.current_sketch == Some(r.id) || c.current_fs == Some(r.id))
                })
                .filter_map(|r| store.blobs().check(&r.sha256, r.size).err().map(|p| (r.id, p.to_string())))
                .collect();
            let unreadable = bad_channels.iter().chain(&bad_releases).map(ToString::to_string).collect();
            Ok::<_, otaforge_store::StoreError>((channels, releases, disabled, unreadable))
        })
        .await;
        match result {
            Ok(Ok((channels, releases, disabled, unreadable))) => {
                self.emit(Event::Serve(ServeEvent::Catalog { channels, releases, disabled, unreadable }))
            }
            Ok(Err(e)) => self.emit(Event::Serve(ServeEvent::Failed(e.to_string()))),
            Err(e) => self.emit(Event::Serve(ServeEvent::Failed(format!("internal error: {e}")))),
        }
    }

    /// After a change to releases: the running server answers from it at once.
    async fn reload_server(&self) {
        if let Some(server) = self.server().await
            && let Err(e) = tokio::task::spawn_blocking(move || server.reload()).await.unwrap_or(Ok(()))
        {
            self.emit(Event::Serve(ServeEvent::Failed(format!("The server could not reload releases: {e}"))));
        }
    }

    async fn release_action(
        &self,
        action: impl FnOnce(&mut Store) -> Result<String, otaforge_store::StoreError> + Send + 'static,
    ) {
        let dir = self.dir.clone();
        let result =
            tokio::task::spawn_blocking(move || Store::open(&dir).and_then(|mut s| action(&mut s))).await;
        match result {
            Ok(Ok(done)) => {
                self.reload_server().await;
                self.emit(Event::Serve(ServeEvent::Done(done)));
            }
            Ok(Err(e)) => self.emit(Event::Serve(ServeEvent::Failed(sentence(&e.to_string())))),
            Err(e) => self.emit(Event::Serve(ServeEvent::Failed(format!("internal error: {e}")))),
        }
        self.refresh_catalog().await;
    }
}

/// A start failure in words that say what to do in the window (not on the command line).
fn start_error(e: &ServeError, port: u16) -> String {
    match e {
        ServeError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse => format!(
            "Port {port} is already in use (another program, or OTA Forge running elsewhere): choose \
             another port and start again."
        ),
        ServeError::Bind { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("Port {port} needs administrator rights: use a port above 1024, such as 3443.")
        }
        ServeError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrNotAvailable => {
            "This machine has no such address: use 0.0.0.0 (every interface) or one of its addresses."
                .to_string()
        }
        other => sentence(&other.to_string()),
    }
}

/// Capitalises a library message so it reads as a sentence in the window.
pub(crate) fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
