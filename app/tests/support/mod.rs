//! Shared test helpers: the CLI binary, a real TLS server, and the real TLS clients devices use.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::thread;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The `otaforge` binary with `--dir` set.
pub fn otaforge(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otaforge"));
    cmd.arg("--dir").arg(dir).env_remove("OTAFORGE_DIR");
    cmd
}

/// Runs a command and returns its output, with stdout/stderr as text.
pub fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run otaforge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate").to_vec()
}

/// A TLS server on loopback presenting `cert_pem`/`key_pem` (rustls, TLS 1.2 and 1.3, no SNI
/// dependence), answering every connection with a small HTTP response.
pub struct TlsServer {
    pub addr: SocketAddr,
}

impl TlsServer {
    pub fn start(cert_pem: &str, key_pem: &str) -> TlsServer {
        let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let config = config.clone();
                thread::spawn(move || serve_one(stream, config));
            }
        });
        TlsServer { addr }
    }
}

fn serve_one(stream: TcpStream, config: Arc<rustls::ServerConfig>) {
    let Ok(conn) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut buf = [0u8; 2048];
    let mut request = Vec::new();
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let body = vec![b'x'; 4000];
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(&body);
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Connects with rustls as a strict client: only `ca_pem` as root, TLS 1.2 only, verifying
/// `server_name`. Returns the handshake error, if any.
pub fn rustls_tls12_connect(ca_pem: &str, server_name: &str, addr: SocketAddr) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body);
    if tls.conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_2) {
        return Err(format!("negotiated {:?}", tls.conn.protocol_version()));
    }
    if !body.starts_with(b"HTTP/1.0 200") {
        return Err(format!("no HTTP answer ({} bytes)", body.len()));
    }
    Ok(())
}

/// The BearSSL client (the ESP8266's TLS library), compiled once per test run.
pub fn esp_tls_client() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("esp_tls_client");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/esp_tls_client.c");
        let status = Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-lbearssl")
            .status()
            .expect("a C compiler (cc) is needed to build the BearSSL client");
        assert!(
            status.success(),
            "could not build the BearSSL client: install libbearssl-dev (the README's test command does)"
        );
        out
    })
}

/// Result of one BearSSL handshake.
pub struct EspTls {
    pub ok: bool,
    pub stdout: String,
}

/// Connects with the BearSSL client to `addr`, verifying `server_name` against the trust anchor.
pub fn bearssl_connect(anchor_pem: &str, server_name: &str, addr: SocketAddr, extra: &[&str]) -> EspTls {
    let dir = tempfile::tempdir().unwrap();
    let anchor = dir.path().join("anchor.der");
    std::fs::write(&anchor, pem_to_der(anchor_pem)).unwrap();
    let out = Command::new(esp_tls_client())
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(server_name)
        .arg(&anchor)
        .args(extra)
        .output()
        .unwrap();
    EspTls { ok: out.status.success(), stdout: String::from_utf8_lossy(&out.stdout).into_owned() }
}

/// A project directory with certificates for `ota.test` and 127.0.0.1.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let hosts = ["ota.test", "127.0.0.1"].iter().map(|h| otaforge_pki::Host::parse(h).unwrap()).collect();
        otaforge_pki::generate(dir.path(), &otaforge_pki::IssueRequest::new(hosts), false).unwrap();
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        Project { dir, ca_pem }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes `bytes` as `version` on `channel`.
    pub fn publish(&self, bytes: &[u8], version: &str, channel: &str) -> otaforge_store::Release {
        let mut store = otaforge_store::Store::open(self.path()).unwrap();
        let req = otaforge_actions::publish::PublishRequest::sketch(channel, Some(version));
        otaforge_actions::publish::check_and_publish(&mut store, bytes.to_vec(), req).unwrap()
    }

    /// Starts `otaforge serve` in-process on a free loopback port.
    pub async fn serve(
        &self,
        tweak: impl FnOnce(&mut otaforge_server::ServeConfig),
    ) -> otaforge_server::RunningServer {
        let mut cfg = otaforge_server::ServeConfig {
            bind: "127.0.0.1".parse().unwrap(),
            port: 0,
            ..Default::default()
        };
        tweak(&mut cfg);
        otaforge_server::start(self.path(), cfg).await.unwrap()
    }

    /// A reqwest client as strict as a device: TLS 1.2 only, only the CA as root, `ota.test` → `addr`.
    pub fn client(&self, addr: SocketAddr) -> reqwest::Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
        let tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots)
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .resolve("ota.test", addr)
            .http1_only()
            .build()
            .unwrap()
    }
}

/// An ESP8266 image (Arduino layout) of about `size` bytes whose content depends on `seed`.
pub fn esp8266_image(size: usize, seed: u64) -> Vec<u8> {
    otaforge_firmware::ImageBuilder::arduino_esp8266().target_size(size).seed(seed).build()
}

/// The headers ESP8266httpUpdate sends (version omitted when None).
pub fn esp8266_headers(mac: &str, version: Option<&str>, sketch_md5: &str) -> Vec<(String, String)> {
    let mut h = vec![
        ("User-Agent", "ESP8266-http-Update".to_string()),
        ("x-ESP8266-Chip-ID", "10560374".into()),
        ("x-ESP8266-STA-MAC", mac.into()),
        ("x-ESP8266-AP-MAC", "1A:FE:34:A1:B2:C3".into()),
        ("x-ESP8266-free-space", "2093056".into()),
        ("x-ESP8266-sketch-size", "300000".into()),
        ("x-ESP8266-sketch-md5", sketch_md5.into()),
        ("x-ESP8266-chip-size", "4194304".into()),
        ("x-ESP8266-sdk-version", "2.2.2-dev(38a443e)".into()),
        ("x-ESP8266-mode", "sketch".into()),
    ];
    if let Some(v) = version {
        h.push(("x-ESP8266-version", v.into()));
    }
    h.into_iter().map(|(n, v)| (n.to_string(), v)).collect()
}

/// Sends an update check the way the device does (HTTP/1.0, Connection: close).
pub async fn device_get(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
) -> reqwest::Response {
    let mut req = client.get(url).version(reqwest::Version::HTTP_10).header("Connection", "close");
    for (n, v) in headers {
        req = req.header(n.as_str(), v.as_str());
    }
    req.send().await.unwrap()
}

/// MD5 as the devices report it.
pub fn md5_hex(bytes: &[u8]) -> String {
    otaforge_firmware::md5_hex(bytes)
}
