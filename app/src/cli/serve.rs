//! `otaforge serve` and `otaforge check`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use otaforge_server::{self as server, EventKind, FragmentPolicy, ServeConfig, ServerEvent};

/// `otaforge serve`.
///
/// Every option can also be set by its `OTAFORGE_*` environment variable (the packaged service
/// reads them from /etc/otaforge/server.conf); an option on the command line wins over it.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OTAFORGE_BIND", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// HTTPS port.
    #[arg(long, env = "OTAFORGE_PORT", default_value_t = otaforge_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Also serve plain HTTP on this port (devices without TLS; not recommended).
    #[arg(long, env = "OTAFORGE_HTTP_PORT", value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Update path; <path>/<channel> selects a channel.
    #[arg(long, env = "OTAFORGE_PATH", default_value = otaforge_protocol::DEFAULT_PATH)]
    pub path: String,
    /// Send full 16 KB TLS records even to devices that advertise a smaller max_fragment_length
    /// (faster for ESP8266s with 16 KB receive buffers; breaks those built with setBufferSizes(512, 512)).
    /// Not with --record-size.
    // `config` checks that, not clap: clap counts the variable as given even when it says false.
    #[arg(long, env = "OTAFORGE_IGNORE_FRAGMENT_LENGTH")]
    pub ignore_fragment_length: bool,
    /// Send every device TLS records of at most this many bytes (512, 1024, 2048 or 4096), also
    /// those that do not advertise max_fragment_length (mbedTLS builds with small buffers); a
    /// device that asks for less still gets less.
    #[arg(long, env = "OTAFORGE_RECORD_SIZE", value_name = "BYTES")]
    pub record_size: Option<u16>,
    /// Seconds allowed for the TLS handshake and request head.
    #[arg(long, env = "OTAFORGE_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a client may take nothing of what it is sent (a download, an answer, the closing
    /// TLS shutdown) before its connection is dropped and its slot freed.
    #[arg(long, env = "OTAFORGE_IDLE_TIMEOUT", default_value_t = 30)]
    pub idle_timeout: u64,
    /// Largest request head, bytes.
    #[arg(long, env = "OTAFORGE_MAX_HEADER_BYTES", default_value_t = 8192)]
    pub max_header_bytes: usize,
    /// Connections served at once.
    #[arg(long, env = "OTAFORGE_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// The port devices use, when a router or reverse proxy forwards it to --port: images
    /// baked for it can then be published.
    #[arg(long, env = "OTAFORGE_PUBLIC_PORT", value_name = "PORT")]
    pub public_port: Option<u16>,
    /// Devices never seen to install anything that the inventory admits; further new MACs are
    /// answered 304 (no update) without being recorded (known devices are never evicted). New MACs are also
    /// limited to 20 a minute per address (loopback excepted).
    #[arg(long, env = "OTAFORGE_MAX_UNPROVEN_DEVICES", value_name = "N", default_value_t = server::inventory::DEFAULT_MAX_UNPROVEN_DEVICES)]
    pub max_unproven_devices: usize,
    /// The slowest a download may go on average (bytes/s) before its slot is freed: it gets
    /// --idle-timeout plus its size at this rate.
    #[arg(long, env = "OTAFORGE_MIN_DOWNLOAD_RATE", value_name = "BYTES_PER_S", default_value_t = 1024)]
    pub min_download_rate: u64,
}

impl ServeArgs {
    fn config(&self) -> Result<ServeConfig> {
        if self.ignore_fragment_length && self.record_size.is_some() {
            anyhow::bail!(
                "--ignore-fragment-length (OTAFORGE_IGNORE_FRAGMENT_LENGTH) and --record-size \
                 (OTAFORGE_RECORD_SIZE) contradict each other: use one"
            );
        }
        Ok(ServeConfig {
            bind: self.bind,
            port: self.port,
            http_port: self.http_port,
            path: self.path.clone(),
            fragment_policy: match (self.ignore_fragment_length, self.record_size) {
                (true, _) => FragmentPolicy::Ignore,
                (false, Some(bytes)) => FragmentPolicy::Limit(bytes),
                (false, None) => FragmentPolicy::Honour,
            },
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            public_port: self.public_port,
            max_header_bytes: self.max_header_bytes,
            max_connections: self.max_connections,
            max_unproven_devices: self.max_unproven_devices,
            min_download_rate: self.min_download_rate,
        })
    }
}

pub(super) fn serve(dir: &Path, args: ServeArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The event log runs as a task on the server's runtime, not on this thread: an event then
    // wakes no other thread (with one worker, the server's and the log's tasks share it).
    let dir = dir.to_path_buf();
    rt.block_on(async move { tokio::spawn(run(dir, args)).await? })
}

async fn run(dir: std::path::PathBuf, args: ServeArgs) -> Result<()> {
    use std::io::Write as _;
    let running = server::start(&dir, args.config()?).await.map_err(|e| match e {
        server::ServeError::NoCertificates(dir) => anyhow::anyhow!(no_certificates(&dir)),
        other => other.into(),
    })?;
    let mut events = running.subscribe();
    // SIGTERM (systemd, kill) stops as cleanly as Ctrl-C: the inventory reaches the disk. Both
    // handlers are in place before the first line, since whoever reads it may signal at once
    // (before, a SIGTERM right after "Serving updates" killed the process uncleanly).
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    #[cfg(unix)]
    let terminated = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    #[cfg(not(unix))]
    let terminated = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::pin!(terminated);
    println!("Serving updates on https://{}{} (Ctrl-C stops)", running.tls_addr, args.path);
    if let Some(a) = running.http_addr {
        println!("Plain HTTP on http://{a}{}", args.path);
    }
    let mut last_progress: HashMap<u64, Instant> = HashMap::new();
    let mut lines = Vec::new();
    loop {
        tokio::select! {
            _ = &mut terminated => break,
            ev = events.recv() => {
                use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                // What has queued up meanwhile goes out in the same write. Err: events skipped
                // (Some) or the server gone (None).
                let mut got = ev.map_err(|e| match e {
                    RecvError::Lagged(n) => Some(n),
                    RecvError::Closed => None,
                });
                let stamp = stamp();
                let closed = loop {
                    match got {
                        Ok(ev) => log_event(&mut lines, &stamp, &ev, &mut last_progress),
                        Err(Some(n)) => {
                            let _ = writeln!(lines, "({n} events skipped)");
                        }
                        Err(None) => break true,
                    }
                    if lines.len() >= 64 * 1024 {
                        break false;
                    }
                    got = match events.try_recv() {
                        Ok(ev) => Ok(ev),
                        Err(TryRecvError::Lagged(n)) => Err(Some(n)),
                        Err(TryRecvError::Closed) => Err(None),
                        Err(TryRecvError::Empty) => break false,
                    };
                };
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&lines).and_then(|()| out.flush());
                lines.clear();
                if closed {
                    break;
                }
            },
        }
    }
    println!("Stopping…");
    running.shutdown().await;
    let backlog = dir.join(server::inventory::BACKLOG_FILE);
    if backlog.exists() {
        println!(
            "Inventory: check-ins the database could not take yet are kept in {}; the next serve saves them",
            backlog.display()
        );
    }
    Ok(())
}

/// What to do when the project has no certificates yet, as the exact command for this binary and
/// this project: under systemd (the packaged `otaforge-server` service) as the service's user,
/// then a restart, since the service itself cannot be asked.
fn no_certificates(dir: &Path) -> String {
    let exe = std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "otaforge".into());
    let cert_new = format!("{exe} --dir {} cert new --host HOST", shell_word(&dir.to_string_lossy()));
    // systemd sets INVOCATION_ID for every unit it runs, and USER for a unit with User=.
    let unit = std::env::var_os("INVOCATION_ID").and_then(|_| systemd_unit());
    match (unit, std::env::var("USER")) {
        (Some(unit), Ok(user)) => format!(
            "no certificates in {}. Make them as the service's user (HOST: the name or address devices \
             will use), then restart the service:\n  sudo -u {user} {cert_new}\n  sudo systemctl restart {unit}",
            dir.display()
        ),
        _ => format!("no certificates in {}: run \"{cert_new}\" first", dir.display()),
    }
}

/// The systemd unit this process runs in, from its cgroup (`0::/system.slice/NAME.service`).
fn systemd_unit() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup.lines().filter_map(|l| l.rsplit('/').next()).find(|n| n.ends_with(".service")).map(str::to_owned)
}

/// `s` as one word for a POSIX shell: as it is when that is safe, else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@%,".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:02}:{:02}:{:02}", now.hour(), now.minute(), now.second())
}

/// One line per event (the server's words, see `otaforge_server::event_words`) into `out`,
/// requests left out; download progress at most once a second per download.
fn log_event(out: &mut Vec<u8>, t: &str, ev: &ServerEvent, last: &mut HashMap<u64, Instant>) {
    use std::io::Write as _;
    match ev {
        ServerEvent::DownloadStarted { conn, .. } => {
            last.insert(*conn, Instant::now());
        }
        ServerEvent::DownloadProgress { conn, mac, sent, total, .. } => {
            let due = last.get(conn).is_none_or(|l| l.elapsed() >= Duration::from_secs(1));
            if due && sent < total {
                last.insert(*conn, Instant::now());
                let who = mac.as_deref().unwrap_or("(no MAC)");
                let _ = writeln!(out, "{t} {who}   {sent}/{total} bytes ({}%)", sent * 100 / (*total).max(1));
            }
        }
        ServerEvent::DownloadFinished { conn, .. } | ServerEvent::DownloadAborted { conn, .. } => {
            last.remove(conn);
        }
        // The start line already says where it listens.
        ServerEvent::Listening { .. } => return,
        _ => {}
    }
    match ev.words() {
        Some(w) if w.kind != EventKind::Request => match w.mac {
            Some(mac) => {
                let _ = writeln!(out, "{t} {mac} {}", w.text);
            }
            None => {
                let _ = writeln!(out, "{t} {}", w.text);
            }
        },
        _ => {}
    }
}

/// `otaforge check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Host devices use (default: the first name in the server certificate).
    #[arg(long)]
    pub host: Option<String>,
    /// Port.
    #[arg(long, default_value_t = otaforge_protocol::DEFAULT_PORT)]
    pub port: u16,
    /// Update path.
    #[arg(long, default_value = otaforge_protocol::DEFAULT_PATH)]
    pub path: String,
}

pub(super) fn check(dir: &Path, args: CheckArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ok = rt.block_on(otaforge_server::preflight::run(
        dir,
        args.host.as_deref(),
        args.port,
        &args.path,
        &mut |step| {
            println!("{} {}: {}", if step.ok { "✔" } else { "✖" }, step.name, step.detail);
        },
    ))?;
    if !ok {
        anyhow::bail!("devices would not get updates from this server yet (see ✖ above)");
    }
    println!("Devices can update from this server.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_word_quotes_only_what_a_shell_would_split() {
        assert_eq!(shell_word("/var/lib/otaforge"), "/var/lib/otaforge");
        assert_eq!(shell_word("/home/me/my project"), "'/home/me/my project'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
