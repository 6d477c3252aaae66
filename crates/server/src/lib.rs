//! The HTTPS update server devices poll for the rest of their lives.
//!
//! tokio + rustls (TLS 1.2 for the ESP8266, 1.3 for others) on a real socket; every answer follows
//! what the device-side updaters expect (see `device`, `decision`); records fit small device
//! buffers (`tls`); everything that happens is an event (`events`), told in words by `event_words`; devices build the inventory
//! (`inventory`); published releases are answered from memory (`catalog`); `preflight` connects
//! to a server the way a device will.

pub mod catalog;
pub mod decision;
pub mod device;
pub mod event_words;
pub mod events;
mod handler;
pub mod http;
pub mod inventory;
pub mod preflight;
pub mod tls;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, watch};

pub use catalog::Catalog;
pub use event_words::{EventKind, Words};
pub use events::ServerEvent;
pub use tls::FragmentPolicy;

use otaforge_pki::Material;
use otaforge_project::{LockError, ProjectLock};
use otaforge_protocol::{DEFAULT_PATH, DEFAULT_PORT};
use otaforge_store::{Store, StoreError};

/// Everything the server can be told; every limit is here.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind (default all interfaces).
    pub bind: IpAddr,
    /// HTTPS port; 0 picks a free one.
    pub port: u16,
    /// Optional plain-HTTP port (for devices without TLS; not recommended).
    pub http_port: Option<u16>,
    /// Update path; `<path>/<channel>` selects a channel.
    pub path: String,
    /// How to treat `max_fragment_length`.
    pub fragment_policy: FragmentPolicy,
    /// Time allowed for the TLS handshake and the request head.
    pub header_timeout: Duration,
    /// Time any write (a download, an answer, the closing TLS shutdown) may go without the client
    /// reading anything; then the connection is dropped and its slot freed.
    pub idle_timeout: Duration,
    /// Largest request head accepted (answered 431 beyond).
    pub max_header_bytes: usize,
    /// Connections served at once; more are closed at once (devices retry later).
    pub max_connections: usize,
    /// The port devices reach this server on, when a router or proxy forwards another one to
    /// `port` (what publishing checks images against; default: `port`).
    pub public_port: Option<u16>,
    /// Devices never seen to install anything that the inventory admits; new MACs beyond are
    /// not recorded (existing devices are never evicted). New MACs are also limited to
    /// `inventory::NEW_PER_ADDRESS` a minute per address (loopback excepted).
    pub max_unproven_devices: usize,
    /// The slowest a download may go on average, bytes per second: a download gets
    /// `idle_timeout` plus its size at this rate, so a client that trickles just under the idle
    /// timeout cannot hold its slot for ever either (an ESP8266 on weak Wi-Fi does 5–20 KB/s).
    pub min_download_rate: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_PORT,
            http_port: None,
            path: DEFAULT_PATH.into(),
            fragment_policy: FragmentPolicy::Honour,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 8 * 1024,
            max_connections: 512,
            public_port: None,
            max_unproven_devices: inventory::DEFAULT_MAX_UNPROVEN_DEVICES,
            min_download_rate: 1024,
        }
    }
}

impl ServeConfig {
    /// Refuses settings that cannot work, saying which and why (named by their `serve` options).
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |why: String| Err(ServeError::Config(why));
        if self.max_connections == 0 {
            return bad("--max-connections 0 would turn every device away: use at least 1".into());
        }
        if self.header_timeout.is_zero() {
            return bad("--header-timeout 0 would time out every device before it could send its request: \
                 use at least 1 (seconds)"
                .into());
        }
        if self.idle_timeout.is_zero() {
            return bad(
                "--idle-timeout 0 would drop every download at its first pause: use at least 1 (seconds)"
                    .into(),
            );
        }
        if self.max_header_bytes < MIN_HEADER_BYTES {
            return bad(format!(
                "--max-header-bytes {} is less than a device's update check takes (about 500 bytes): \
                 use at least {MIN_HEADER_BYTES}",
                self.max_header_bytes
            ));
        }
        if self.min_download_rate == 0 {
            return bad("--min-download-rate 0 would let a client that trickles hold its slot for ever: use at least 1 \
                 (bytes/s; devices do thousands)"
                .into());
        }
        if let Err(why) = self.fragment_policy.limit_code() {
            return bad(format!("--record-size: {why}"));
        }
        if let Err(why) = check_path(&self.path) {
            return bad(format!("--path {:?}: {why}", self.path));
        }
        Ok(())
    }
}

/// The smallest `max_header_bytes` accepted.
pub const MIN_HEADER_BYTES: usize = 1024;

/// An update path is an absolute URL path devices can send as it is: `/`, then letters, digits
/// and `-._~!$&'()*+,;=:@/`, no empty, `.` or `..` segment.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("an update path starts with '/' (like /update)".into());
    }
    if let Some(c) = path.chars().find(|&c| !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/".contains(c)))
    {
        return Err(format!(
            "{c:?} cannot be in an update path (letters, digits and -._~!$&'()*+,;=:@/ can)"
        ));
    }
    if path.len() > 1 && path[1..].trim_end_matches('/').split('/').any(|seg| matches!(seg, "" | "." | ".."))
    {
        return Err("an update path has no empty, \".\" or \"..\" part".into());
    }
    Ok(())
}

/// Why the server could not start.
#[allow(missing_docs)] // each variant's message is its documentation
#[derive(Debug)]
pub enum ServeError {
    NoCertificates(PathBuf),
    Pki(otaforge_pki::PkiError),
    Tls(String),
    Store(StoreError),
    /// The message includes the cause (so the cause is not also its `source`, which would show
    /// it twice in a chain: "Address already in use … Address already in use").
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    AlreadyServing {
        dir: PathBuf,
        pid: Option<u32>,
    },
    Lock(LockError),
    /// A setting that cannot work ([`ServeConfig::validate`]).
    Config(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::NoCertificates(dir) => {
                write!(f, "no certificates in {}: run \"otaforge cert new --host HOST\" first", dir.display())
            }
            ServeError::Pki(e) => e.fmt(f),
            ServeError::Tls(e) => write!(f, "TLS setup: {e}"),
            ServeError::Store(e) => e.fmt(f),
            ServeError::Bind { addr, source } => {
                write!(f, "cannot listen on {addr}: {source}{}", hint(source))
            }
            ServeError::AlreadyServing { dir, pid } => write!(
                f,
                "another otaforge serve ({}) already serves {}: two would overwrite each other's inventory. \
                 Stop it first, or serve another project with --dir",
                pid.map_or("PID unknown".to_string(), |p| format!("PID {p}")),
                dir.display()
            ),
            ServeError::Lock(e) => write!(f, "cannot lock the project for serving: {e}"),
            ServeError::Config(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Transparent wrappers pass their inner error's cause on; the rest say theirs in words.
        match self {
            ServeError::Pki(e) => e.source(),
            ServeError::Store(e) => e.source(),
            _ => None,
        }
    }
}

impl From<otaforge_pki::PkiError> for ServeError {
    fn from(e: otaforge_pki::PkiError) -> Self {
        ServeError::Pki(e)
    }
}

impl From<StoreError> for ServeError {
    fn from(e: StoreError) -> Self {
        ServeError::Store(e)
    }
}

/// The lock file that makes one `serve` per project (it holds the server's PID).
pub const SERVE_LOCK: &str = "serve.lock";

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program, or another otaforge serve, uses this port: pick another with --port)"
        }
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges: use a port like 3443)",
        _ => "",
    }
}

struct Shared {
    config: ServeConfig,
    tls: tls::TlsConfigs,
    catalog: RwLock<Arc<Catalog>>,
    store: Mutex<Store>,
    inventory: Arc<inventory::Inventory>,
    events: broadcast::Sender<ServerEvent>,
    next_conn: AtomicU64,
    slots: Arc<Semaphore>,
    /// Password checks running at once (each Argon2 check takes ~19 MiB).
    hashing: Semaphore,
    /// Digests of credentials that verified (see `handler::authorized`).
    verified: Mutex<HashSet<[u8; 32]>>,
    /// This process's claim to serve the project, released at shutdown.
    serving: Mutex<Option<ProjectLock>>,
    /// What was wrong when the server started (disabled releases, unreadable rows), sent once the
    /// first subscriber listens: nobody could hear it before.
    startup_problems: Mutex<Vec<ServerEvent>>,
}

impl Shared {
    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn emit(&self, event: ServerEvent) {
        let _ = self.events.send(event);
    }

    /// Re-reads releases and channels if the database changed (or `force`).
    fn reload(&self, last_version: &mut i64, force: bool) -> Result<bool, StoreError> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let version = store.data_version()?;
        if !force && version == *last_version {
            return Ok(false);
        }
        *last_version = version;
        let previous = self.catalog();
        let next = Catalog::load(&store, Some(&previous))?;
        // Inventory writes also bump data_version; only a real change of what is served counts.
        if !force && next.same_as(&previous) {
            return Ok(false);
        }
        let problems = next.problems_since(Some(&previous));
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        for event in problems {
            self.emit(event);
        }
        Ok(true)
    }
}

/// How long stopping waits for connections in flight (one still going after it finishes on its
/// own, and is recorded when it ends).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A running server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The HTTPS address actually bound.
    pub tls_addr: SocketAddr,
    /// The plain-HTTP address, if enabled.
    pub http_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Subscribes to the event stream. The first subscriber also hears what was wrong at start
    /// (each disabled release and unreadable row).
    pub fn subscribe(&self) -> broadcast::Receiver<ServerEvent> {
        let events = self.shared.events.subscribe();
        let startup =
            std::mem::take(&mut *self.shared.startup_problems.lock().unwrap_or_else(|p| p.into_inner()));
        for event in startup {
            self.shared.emit(event);
        }
        events
    }

    /// Makes the server answer from the current database now (after an in-process publish).
    pub fn reload(&self) -> Result<(), StoreError> {
        let mut v = -1;
        self.shared.reload(&mut v, true)?;
        self.shared.emit(ServerEvent::CatalogReloaded);
        Ok(())
    }

    /// The live inventory.
    pub fn devices(&self) -> Vec<otaforge_store::Device> {
        self.shared.inventory.all()
    }

    /// The live inventory itself (renaming and forgetting devices while the server runs).
    pub fn inventory(&self) -> &inventory::Inventory {
        &self.shared.inventory
    }

    /// Stops accepting, gives the connections in flight up to [`SHUTDOWN_GRACE`] to finish (an
    /// answer a device already has is then in the inventory and the history), lets the
    /// inventory reach the disk, and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
        }
        // Every connection holds a slot until what it did is recorded.
        let slots = u32::try_from(self.shared.config.max_connections).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.shared.slots.acquire_many(slots)).await;
        self.shared.inventory.flush().await;
        // Connections still finishing hold `shared`; the project is free for a new server now.
        self.shared.serving.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Waits until everything the inventory recorded is on disk.
    pub async fn flush(&self) {
        self.shared.inventory.flush().await;
    }
}

/// Starts the server for the project in `dir` (certificates from the Certificate step).
pub async fn start(dir: &Path, config: ServeConfig) -> Result<RunningServer, ServeError> {
    config.validate()?;
    let material = Material::load(dir)?.ok_or_else(|| ServeError::NoCertificates(dir.to_path_buf()))?;
    // Taken before anything is written: a second server must not touch the inventory.
    let serving = ProjectLock::acquire(dir, SERVE_LOCK).map_err(|e| match e {
        LockError::Held { pid } => ServeError::AlreadyServing { dir: dir.to_path_buf(), pid },
        other => ServeError::Lock(other),
    })?;
    let tls =
        tls::TlsConfigs::new(&material.server.cert_pem, &material.server.key_pem, config.fragment_policy)
            .map_err(ServeError::Tls)?;
    let store = Store::open(dir)?;
    let (events, _) = broadcast::channel(4096);
    let inventory = inventory::Inventory::start(dir, &store, events.clone(), config.max_unproven_devices)?;
    let catalog = Catalog::load(&store, None)?;
    let startup_problems = Mutex::new(catalog.problems_since(None));
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(config.max_connections)),
        config,
        tls,
        catalog: RwLock::new(Arc::new(catalog)),
        store: Mutex::new(store),
        inventory,
        events,
        next_conn: AtomicU64::new(1),
        hashing: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get().min(4))),
        verified: Mutex::new(HashSet::new()),
        serving: Mutex::new(Some(serving)),
        startup_problems,
    });
    let (stop, stop_rx) = watch::channel(false);
    let bind = |port| SocketAddr::new(shared.config.bind, port);
    let tls_listener = TcpListener::bind(bind(shared.config.port))
        .await
        .map_err(|source| ServeError::Bind { addr: bind(shared.config.port), source })?;
    let tls_addr = tls_listener.local_addr().map_err(|source| ServeError::Bind { addr: bind(0), source })?;
    // Publishing checks images against where devices find this server (an unwritable record only
    // means that check is skipped with a warning, so it does not stop the server).
    let endpoint = otaforge_protocol::endpoint::Endpoint {
        port: shared.config.public_port.unwrap_or(tls_addr.port()),
        path: shared.config.path.clone(),
    };
    if let Err(e) = endpoint.save(dir) {
        log::warn!("cannot record the server's port and path in {}: {e}", otaforge_protocol::endpoint::FILE);
    }
    let mut tasks =
        vec![tokio::spawn(handler::accept_loop(shared.clone(), tls_listener, true, stop_rx.clone()))];
    shared.emit(ServerEvent::Listening { addr: tls_addr, tls: true });
    let mut http_addr = None;
    if let Some(port) = shared.config.http_port {
        let l = TcpListener::bind(bind(port))
            .await
            .map_err(|source| ServeError::Bind { addr: bind(port), source })?;
        let addr = l.local_addr().map_err(|source| ServeError::Bind { addr: bind(port), source })?;
        http_addr = Some(addr);
        tasks.push(tokio::spawn(handler::accept_loop(shared.clone(), l, false, stop_rx.clone())));
        shared.emit(ServerEvent::Listening { addr, tls: false });
    }
    tasks.push(tokio::spawn(watch_health(shared.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(watch_catalog(shared.clone(), stop_rx)));
    Ok(RunningServer { tls_addr, http_addr, shared, stop, tasks })
}

/// Looks for devices gone silent since their update once a second (a pass over the in-memory
/// inventory: microseconds for a few thousand devices).
async fn watch_health(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        shared.inventory.report_silent(otaforge_store::now_unix());
    }
}

/// Picks up publishes made by other processes (`otaforge publish` while `otaforge serve` runs).
async fn watch_catalog(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut version = -1;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        let s = shared.clone();
        let mut v = version;
        let result =
            tokio::task::spawn_blocking(move || s.reload(&mut v, false).map(|changed| (changed, v))).await;
        match result {
            Ok(Ok((changed, v))) => {
                version = v;
                if changed {
                    shared.emit(ServerEvent::CatalogReloaded);
                }
            }
            Ok(Err(e)) => log::warn!("could not reload releases: {e}"),
            Err(_) => {}
        }
    }
}
