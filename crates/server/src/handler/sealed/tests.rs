//! Records sealed here are read by a real rustls client, for every suite and version the server
//! offers, at full size and at 512 bytes: a wrong nonce, AAD, sequence number or layout fails
//! the client's decryption, a missing close_notify its clean end.

use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CipherSuite, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Link, Tls};
use crate::tls::{FragmentPolicy, TlsConfigs};

const STEP: usize = 64 * 1024;

struct Pki {
    _dir: tempfile::TempDir,
    cert: String,
    key: String,
    anchor: String,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let hosts = vec![otaforge_pki::Host::parse("localhost").unwrap()];
    otaforge_pki::generate(dir.path(), &otaforge_pki::IssueRequest::new(hosts), false).unwrap();
    let m = otaforge_pki::Material::load(dir.path()).unwrap().unwrap();
    Pki {
        cert: m.server.cert_pem.clone(),
        key: m.server.key_pem.clone(),
        anchor: m.trust_anchor_pem().into(),
        _dir: dir,
    }
}

/// What the client's side of the socket carried, kept to read the records' sizes afterwards.
#[derive(Clone, Default)]
struct Tap(Arc<Mutex<Vec<u8>>>);

struct Tapped {
    tcp: TcpStream,
    tap: Tap,
}

impl tokio::io::AsyncRead for Tapped {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf);
        self.tap.0.lock().unwrap().extend_from_slice(&buf.filled()[before..]);
        polled
    }
}

impl tokio::io::AsyncWrite for Tapped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The largest record length field among the TLS records in `raw`.
fn largest_record(raw: &[u8]) -> usize {
    let mut at = 0;
    let mut largest = 0;
    while at + 5 <= raw.len() {
        let len = u16::from_be_bytes([raw[at + 3], raw[at + 4]]) as usize;
        largest = largest.max(len);
        at += 5 + len;
    }
    largest
}

/// Serves one request on loopback the way `write` answers a release: a short text answer
/// through rustls first when `text_first`, then the keys handed over, a head and `body` sealed
/// here in steps, and a sealed close. The client offers only `version` and `suite`; returns what
/// it read up to the close_notify (an error if that close was missing or anything failed to
/// decrypt), and the largest record it received.
async fn exchange(
    version: &'static SupportedProtocolVersion,
    suite: CipherSuite,
    policy: FragmentPolicy,
    body: Arc<Vec<u8>>,
    engine: Engine,
) -> (std::io::Result<Vec<u8>>, usize) {
    let pki = pki();
    let configs = TlsConfigs::new(&pki.cert, &pki.key, policy).unwrap();
    let (config, record) = configs.for_client_hello(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = body.clone();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await.unwrap();
        let mut tls = Tls::new(stream, record, STEP);
        if engine == Engine::AwsLc {
            tls = tls.aws_lc_only();
        }
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            assert_eq!(tls.read(&mut b).await.unwrap(), 1);
            request.push(b[0]);
        }
        tls.flush().await.unwrap();
        assert!(tls.seal_records(), "the keys were not handed over");
        let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", served.len());
        tls.write_all(head.as_bytes()).await.unwrap();
        for chunk in served.chunks(STEP) {
            tls.write_all(chunk).await.unwrap();
            tls.flush().await.unwrap();
        }
        tls.shutdown().await.unwrap();
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.anchor.as_bytes()).unwrap()).unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| s.suite() == suite);
    assert_eq!(provider.cipher_suites.len(), 1, "{suite:?} is not a suite rustls has");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tap = Tap::default();
    let tcp = Tapped { tcp: TcpStream::connect(addr).await.unwrap(), tap: tap.clone() };
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await.unwrap();
    stream.write_all(b"GET /update HTTP/1.0\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let read = stream.read_to_end(&mut got).await.map(|_| got);
    server.await.unwrap();
    let raw = tap.0.lock().unwrap().clone();
    (read, largest_record(&raw))
}

fn body() -> Arc<Vec<u8>> {
    Arc::new((0..200_003u32).map(|i| (i * 7 + i / 251) as u8).collect())
}

/// Which library seals the ChaCha20-Poly1305 records (AES-GCM is aws-lc's either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    AwsLc,
    /// The system's libcrypto; the test fails where there is none (scripts/test installs it).
    System,
}

async fn check(
    version: &'static SupportedProtocolVersion,
    suite: CipherSuite,
    policy: FragmentPolicy,
    limit: usize,
) {
    if cfg!(target_os = "linux") {
        assert!(super::libcrypto::api().is_some(), "no usable libcrypto.so.3 (OpenSSL 3): install libssl3");
    }
    for engine in [Engine::AwsLc, Engine::System] {
        check_with(version, suite, policy, limit, engine).await;
    }
}

async fn check_with(
    version: &'static SupportedProtocolVersion,
    suite: CipherSuite,
    policy: FragmentPolicy,
    limit: usize,
    engine: Engine,
) {
    let body = body();
    let (read, largest) = exchange(version, suite, policy, body.clone(), engine).await;
    let got = read.unwrap_or_else(|e| panic!("{suite:?} {policy:?} {engine:?}: the client failed: {e}"));
    let text = String::from_utf8_lossy(&got[..got.len().min(100)]).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert_eq!(&got[head.len() + 4..], &body[..], "{suite:?} {policy:?} {engine:?}: the body differs");
    assert!(largest <= limit, "{suite:?} {policy:?}: a record of {largest} bytes, more than {limit}");
}

#[tokio::test]
async fn tls12_records_sealed_here_are_read_by_rustls_in_every_suite() {
    use rustls::version::TLS12;
    let full = 16 * 1024 + 8 + 16;
    for suite in [
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ] {
        check(&TLS12, suite, FragmentPolicy::Honour, full).await;
    }
}

/// An ESP8266 that asked for 512-byte records gets no larger one from the sealed path either.
#[tokio::test]
async fn records_sealed_here_keep_the_agreed_512_bytes() {
    use rustls::version::TLS12;
    for suite in [
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ] {
        check(&TLS12, suite, FragmentPolicy::Limit(512), 512 + 8 + 16).await;
    }
}

/// TLS 1.3 (curl, browsers, ESP-IDF builds with it enabled): the inner content type, and the
/// sequence numbers the session tickets already used.
#[tokio::test]
async fn tls13_records_sealed_here_are_read_by_rustls() {
    use rustls::version::TLS13;
    for suite in [CipherSuite::TLS13_AES_128_GCM_SHA256, CipherSuite::TLS13_CHACHA20_POLY1305_SHA256] {
        check(&TLS13, suite, FragmentPolicy::Honour, 16 * 1024 + 1 + 16).await;
    }
}
