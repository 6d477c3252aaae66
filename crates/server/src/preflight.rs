//! Pre-flight: connect to the update server the way a device will, and say in words what a
//! device would meet at each step (name, handshake, certificate, clock, record sizes, answer).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;

use otaforge_pki::{self as pki, Host, local};

/// One pre-flight step and its verdict.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was checked.
    pub name: &'static str,
    /// Whether a device would pass it.
    pub ok: bool,
    /// Passes here, but needs the user's attention (e.g. a loopback host).
    pub warn: bool,
    /// What was found, in words.
    pub detail: String,
}

/// Runs every step, reporting each as it completes. Returns true when a device would succeed.
pub async fn run(
    dir: &Path,
    host: Option<&str>,
    port: u16,
    path: &str,
    report: &mut dyn FnMut(&Step),
) -> anyhow::Result<bool> {
    let mut all_ok = true;
    let mut step_warn = |name, ok: bool, warn: bool, detail: String| {
        all_ok &= ok;
        report(&Step { name, ok, warn, detail });
    };
    let mut step = |name, ok: bool, detail: String| step_warn(name, ok, false, detail);
    let Some(material) = pki::Material::load(dir)? else {
        step("Certificates", false, format!("none in {}: run otaforge cert new --host HOST", dir.display()));
        return Ok(false);
    };
    let cert = pki::load(dir, &[])?.expect("material exists");
    let blocking: Vec<String> =
        cert.warnings.iter().filter(|w| w.is_blocking()).map(ToString::to_string).collect();
    step(
        "Certificates",
        blocking.is_empty(),
        if blocking.is_empty() {
            format!("devices trust {}", cert.anchor_fingerprint())
        } else {
            blocking.join(" ")
        },
    );
    let host = match host {
        Some(h) => Host::parse(h)?,
        None => {
            cert.hosts.first().cloned().ok_or_else(|| anyhow::anyhow!("the certificate names no host"))?
        }
    };
    let locals = tokio::task::spawn_blocking(local::LocalHosts::discover).await?;
    let resolution = local::check(&host, &locals).await;
    let loopback =
        matches!(resolution, local::Resolution::Loopback | local::Resolution::ResolvesToLoopback { .. });
    let name_ok = resolution.reaches_here() || loopback;
    step("Name", name_ok, format!("{}{}", if loopback { "⚠ " } else { "" }, resolution.describe(&host)));

    let anchor = material.trust_anchor_pem().to_string();
    let target = connect_address(&host, port);
    let name = host.as_dns_text();
    let handshake = tokio::task::spawn_blocking(move || device_handshake(&anchor, &name, target)).await?;
    match handshake {
        Ok(seen) => {
            step(
                "Handshake",
                true,
                format!("TLS 1.2 with {} to {target}; the certificate is valid for {host}", seen.suite),
            );
            step(
                "Record sizes",
                true,
                format!(
                    "largest TLS record {} bytes; devices that advertise a smaller max_fragment_length get records that fit",
                    seen.largest_record
                ),
            );
        }
        Err(why) => {
            step("Handshake", false, why);
            return Ok(false);
        }
    }
    let now = OffsetDateTime::now_utc();
    let s = &cert.server;
    step(
        "Clock",
        now >= s.not_before && now <= s.not_after,
        format!(
            "valid from {} (a device clock up to {} h slow still accepts it) to {} ({} days left); devices must set their clock by SNTP first",
            s.not_before.date(),
            (now - s.not_before).whole_hours(),
            s.not_after.date(),
            s.days_left(now)
        ),
    );
    let answer = update_check(material.trust_anchor_pem(), &host, target, path).await;
    match answer {
        Ok((200, version, size)) => step("Update check", true, format!("serves {version} ({size} bytes)")),
        Ok((404, _, _)) => step(
            "Update check",
            true,
            "answers; nothing is published yet (otaforge publish FILE --version V)".into(),
        ),
        Ok((status, _, _)) => step("Update check", false, format!("answered HTTP {status}")),
        Err(e) => step("Update check", false, e),
    }
    Ok(all_ok)
}

/// Where to connect: the host itself when it resolves, else this machine (the check runs on the
/// server) while still verifying the device's name.
fn connect_address(host: &Host, port: u16) -> SocketAddr {
    let resolved = match host {
        Host::Ip(ip) => Some(SocketAddr::new(*ip, port)),
        Host::Dns(name) => (name.as_str(), port).to_socket_addrs().ok().and_then(|mut a| a.next()),
    };
    resolved.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)))
}

struct Seen {
    suite: String,
    largest_record: usize,
}

/// A TLS 1.2 handshake with only the trust anchor as root, as an ESP8266 does, watching the size of
/// every record the server sends.
fn device_handshake(anchor_pem: &str, name: &str, addr: SocketAddr) -> Result<Seen, String> {
    let mut roots = rustls::RootCertStore::empty();
    let anchor = CertificateDer::from_pem_slice(anchor_pem.as_bytes()).map_err(|e| e.to_string())?;
    roots.add(anchor).map_err(|e| format!("the trust anchor is not usable as a root: {e}"))?;
    // The ESP8266 core offers ChaCha20 first; rustls servers follow the client's order.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.sort_by_key(|s| !format!("{:?}", s.suite()).contains("CHACHA20"));
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e} (is otaforge serve running?)"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut watched = RecordWatcher { inner: tcp, pending: 0, header: Vec::new(), largest: 0 };
    let mut tls = rustls::Stream::new(&mut conn, &mut watched);
    tls.write_all(b"HEAD / HTTP/1.0\r\n\r\n").map_err(|e| describe_tls_error(&e))?;
    let mut sink = Vec::new();
    let _ = tls.read_to_end(&mut sink);
    let suite =
        conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "?".into());
    Ok(Seen { suite, largest_record: watched.largest })
}

fn describe_tls_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("NotValidForName") {
        format!("the certificate does not name this host: devices fail with BearSSL error 56 ({text})")
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!(
            "the server's certificate is not signed by the project's CA: devices fail with BearSSL error 62 ({text})"
        )
    } else if text.contains("Expired") || text.contains("NotValidYet") {
        format!("the server's certificate is outside its validity dates: BearSSL error 54 ({text})")
    } else {
        format!("handshake failed: {text}")
    }
}

/// Counts TLS record sizes as bytes arrive.
struct RecordWatcher {
    inner: TcpStream,
    pending: usize,
    header: Vec<u8>,
    largest: usize,
}

impl Read for RecordWatcher {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            if self.pending > 0 {
                let take = self.pending.min(rest.len());
                self.pending -= take;
                rest = &rest[take..];
            } else {
                let need = 5 - self.header.len();
                let take = need.min(rest.len());
                self.header.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if self.header.len() == 5 {
                    self.pending = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                    self.largest = self.largest.max(self.pending);
                    self.header.clear();
                }
            }
        }
        Ok(n)
    }
}

impl Write for RecordWatcher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A HEAD of the update path with reqwest (TLS 1.2, the trust anchor as the only root).
async fn update_check(
    anchor_pem: &str,
    host: &Host,
    addr: SocketAddr,
    path: &str,
) -> Result<(u16, String, u64), String> {
    let mut roots = rustls::RootCertStore::empty();
    let anchor = CertificateDer::from_pem_slice(anchor_pem.as_bytes()).map_err(|e| e.to_string())?;
    roots.add(anchor).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = host.as_dns_text();
    let mut builder =
        reqwest::Client::builder().tls_backend_preconfigured(tls).timeout(Duration::from_secs(10));
    if let Host::Dns(n) = host {
        builder = builder.resolve(n, addr);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let url_host = match host {
        Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => name,
    };
    let url = format!("https://{url_host}:{}{path}", addr.port());
    let resp = client.head(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
    let version = resp.headers().get("x-version").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let size = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((resp.status().as_u16(), version, size))
}
