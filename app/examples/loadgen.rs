//! A load generator that behaves like a fleet of ESP8266s polling an HTTPS update server, for
//! `bench/serve/run.sh` (a benchmark, not a test).
//!
//! Every request is what an ESP8266 running `ESP8266httpUpdate` sends: a NEW TCP connection and a
//! NEW full TLS 1.2 handshake (no session resumption, no keep-alive), the Arduino core's cipher
//! suite order (ChaCha20-Poly1305 first), an HTTP/1.0 request with `Connection: close`, a read of
//! the head and Content-Length bytes, then a TCP close without close_notify (`http.end()`). Every
//! run is bounded in time and in count and stops by itself.
//!
//! ```text
//! loadgen --addr 127.0.0.1:3443 --ca ca.pem --mode check --concurrency 16 --duration 5 \
//!         --header "x-ESP8266-STA-MAC: {mac}" --header "x-ESP8266-version: 1.0.0" --json
//! loadgen make-image firmware.bin 420000          # an ESP8266 image; prints its MD5
//! loadgen report results.jsonl                     # the table and ratios run.sh prints
//! ```
//!
//! `{mac}` in a header value becomes a station MAC: one per request (`--macs 0`, the default), or
//! taken round-robin from a fleet of `--macs N` devices; `--mac-base` shifts the numbering so that
//! separate runs use separate devices.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use md5::{Digest, Md5};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(
    about = "ESP8266-like HTTPS load generator for benchmarking update servers",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Writes an ESP8266 firmware image (Arduino layout) of SIZE bytes and prints its MD5.
    MakeImage {
        /// Where to write the image.
        out: PathBuf,
        /// Size in bytes.
        size: usize,
        /// Content seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Prints the results table and the ratios from the JSON lines written by run.sh.
    Report {
        /// One JSON object a line: server, workload, concurrency, cpu_s, rss_kib, load.
        results: PathBuf,
    },
    /// Prints server CPU per MB and per check against nginx for every suite and record size in
    /// run.sh's JSON lines, and whether otaforge is at or below nginx in each.
    Summary {
        /// One JSON object a line, with suite and records fields.
        results: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Update checks: a short answer (304 by default).
    Check,
    /// Firmware downloads: a 200 with a body whose length must match Content-Length.
    Download,
}

/// Which of the ESP8266's suites the client offers (the server picks among those).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// The Arduino core's whole list, in its order (ChaCha20-Poly1305 first).
    Esp,
    /// ECDHE-ECDSA-CHACHA20-POLY1305 only.
    Chacha20,
    /// ECDHE-ECDSA-AES128-GCM-SHA256 only.
    Aes128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kx {
    X25519,
    Secp256r1,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Server address (loopback only: this tool refuses any other).
    #[arg(long, required = true)]
    addr: Option<SocketAddr>,
    /// Name to verify the certificate against (and send as SNI).
    #[arg(long, default_value = "ota.test")]
    server_name: String,
    /// PEM file with the CA certificate: the only trusted root.
    #[arg(long, required = true)]
    ca: Option<PathBuf>,
    /// Request path.
    #[arg(long, default_value = "/update")]
    path: String,
    /// Requests in flight at once (each on its own connection).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Stop starting requests after this many seconds (10 when neither this nor --requests is
    /// given; never more than 600).
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// What is measured.
    #[arg(long, value_enum, default_value = "check")]
    mode: Mode,
    /// Extra request header "Name: value" (repeatable); `{mac}` in a value becomes a device MAC.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Status every answer must have (default: 304 for check, 200 for download).
    #[arg(long)]
    expect_status: Option<u16>,
    /// For downloads: MD5 the body must have (checked on each connection slot's first download).
    #[arg(long)]
    expect_md5: Option<String>,
    /// Distinct devices `{mac}` cycles through; 0: a new device for every request.
    #[arg(long, default_value_t = 0)]
    macs: u64,
    /// Number of the first device (keeps separate runs' devices apart).
    #[arg(long, default_value_t = 0)]
    mac_base: u64,
    /// Key exchange group preferred: x25519 (then P-256, which the P-256 certificate needs listed)
    /// or only secp256r1.
    #[arg(long, value_enum, default_value = "x25519")]
    kx: Kx,
    /// Cipher suites offered: the ESP8266's list, or one suite of it (to measure each).
    #[arg(long, value_enum, default_value = "esp")]
    suite: Suite,
    /// Verify the full certificate chain on every handshake (default: the chain once per run, the
    /// handshake signature on every handshake; the server's work is the same either way).
    #[arg(long)]
    full_verify: bool,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::MakeImage { out, size, seed }) => make_image(&out, size, seed),
        Some(Cmd::Report { results }) => report(&results),
        Some(Cmd::Summary { results }) => summary(&results),
        None => {
            // One thread: the benchmark pins this process to one CPU.
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(run(cli.run))
        }
    }
}

fn make_image(out: &PathBuf, size: usize, seed: u64) -> Result<()> {
    let image = otaforge_firmware::ImageBuilder::arduino_esp8266().target_size(size).seed(seed).build();
    std::fs::write(out, &image).with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", otaforge_firmware::md5_hex(&image));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// TLS like an ESP8266

/// The Arduino ESP8266 core's suite order (BearSSL), restricted to what rustls offers: the same
/// list the virtual devices use.
fn esp_provider(kx: Kx, suite: Suite) -> CryptoProvider {
    use rustls::CipherSuite as C;
    let mut p = aws_lc_rs::default_provider();
    p.cipher_suites = otaforge_sim::device::tls::esp8266_cipher_suites();
    let only = match suite {
        Suite::Esp => None,
        Suite::Chacha20 => Some(C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
        Suite::Aes128 => Some(C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
    };
    if let Some(only) = only {
        p.cipher_suites.retain(|s| s.suite() == only);
    }
    // In TLS 1.2 the supported-groups list also says which curves the client accepts in the
    // server's ECDSA certificate (RFC 8422), so P-256 must be listed for the P-256 certificate:
    // OpenSSL servers refuse the handshake otherwise.
    p.kx_groups = match kx {
        Kx::X25519 => vec![aws_lc_rs::kx_group::X25519, aws_lc_rs::kx_group::SECP256R1],
        Kx::Secp256r1 => vec![aws_lc_rs::kx_group::SECP256R1],
    };
    p
}

/// End-entity certificate, intermediates and server name of a verified chain.
type ChainKey = (Vec<u8>, Vec<Vec<u8>>, String);

/// Verifies the certificate chain the first time a given chain is seen and remembers it; the
/// ServerKeyExchange signature (which proves the server holds the key) is verified every time.
/// Keeps the load generator's CPU for making load rather than re-checking the same chain.
#[derive(Debug)]
struct OnceChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<ChainKey>>,
    every_time: bool,
}

impl ServerCertVerifier for OnceChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = || {
            (
                end_entity.to_vec(),
                intermediates.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
                server_name.to_str().into_owned(),
            )
        };
        if !self.every_time && self.seen.lock().unwrap().as_ref() == Some(&key()) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        *self.seen.lock().unwrap() = Some(key());
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn client_config(args: &RunArgs) -> Result<Arc<rustls::ClientConfig>> {
    let ca_path = args.ca.as_ref().expect("--ca is required");
    let pem = std::fs::read(ca_path).with_context(|| format!("cannot read {}", ca_path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.context("CA PEM")?).context("CA certificate")?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", ca_path.display());
    }
    let provider = Arc::new(esp_provider(args.kx, args.suite));
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let verifier =
        Arc::new(OnceChainVerifier { inner, seen: Mutex::new(None), every_time: args.full_verify });
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

// ---------------------------------------------------------------------------------------------
// The load

/// What the workers share.
struct Plan {
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    /// Request head split around the `{mac}` placeholders.
    head_parts: Vec<String>,
    expect_status: u16,
    expect_md5: Option<String>,
    mode: Mode,
    macs: u64,
    mac_base: u64,
    deadline: Instant,
    max_requests: u64,
    timeout: Duration,
    next: AtomicU64,
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    body_bytes: u64,
    wire_bytes: u64,
    latencies_us: Vec<u32>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    unclean_close: u64,
    tls: Option<String>,
    md5_checked: u64,
}

/// One finished request.
struct Answer {
    status: u16,
    body: u64,
    wire: u64,
    unclean_close: bool,
    md5: Option<String>,
    tls: String,
}

fn mac_text(n: u64) -> String {
    let b = n.to_be_bytes();
    format!("5C:CF:{:02X}:{:02X}:{:02X}:{:02X}", b[4], b[5], b[6], b[7])
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

async fn run(args: RunArgs) -> Result<()> {
    let addr = args.addr.expect("--addr is required");
    if !is_loopback(&addr) {
        bail!("{addr} is not a loopback address: this benchmark only loads servers on this machine");
    }
    if args.concurrency == 0 || args.concurrency > 4096 {
        bail!("--concurrency must be 1..=4096");
    }
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => d,
        (None, Some(_)) => 600.0,
        (None, None) => 10.0,
    };
    if !(duration > 0.0 && duration <= 600.0) {
        bail!("--duration must be in (0, 600] seconds");
    }
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        bail!("--timeout must be in (0, 600] seconds");
    }
    let max_requests = args.requests.unwrap_or(u64::MAX);
    let expect_status = args.expect_status.unwrap_or(match args.mode {
        Mode::Check => 304,
        Mode::Download => 200,
    });

    let host = if addr.port() == 443 {
        args.server_name.clone()
    } else {
        format!("{}:{}", args.server_name, addr.port())
    };
    // What ESP8266HTTPClient writes for ESP8266httpUpdate (useHTTP10(true)).
    let mut head = format!("GET {} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n", args.path);
    for h in &args.headers {
        let Some((n, v)) = h.split_once(':') else { bail!("--header must be \"Name: value\", got {h:?}") };
        head.push_str(&format!("{}: {}\r\n", n.trim(), v.trim()));
    }
    head.push_str("\r\n");
    let head_parts = head.split("{mac}").map(str::to_string).collect();

    let plan = Arc::new(Plan {
        addr,
        name: ServerName::try_from(args.server_name.clone()).context("--server-name")?,
        connector: tokio_rustls::TlsConnector::from(client_config(&args)?),
        head_parts,
        expect_status,
        expect_md5: args.expect_md5.as_ref().map(|m| m.to_ascii_lowercase()),
        mode: args.mode,
        macs: args.macs,
        mac_base: args.mac_base,
        deadline: Instant::now() + Duration::from_secs_f64(duration),
        max_requests,
        timeout: Duration::from_secs_f64(args.timeout),
        next: AtomicU64::new(0),
    });

    let cpu_before = self_cpu_seconds();
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency).map(|_| tokio::spawn(worker(plan.clone()))).collect();
    let mut all = Tally::default();
    for w in workers {
        let t = w.await?;
        all.ok += t.ok;
        all.body_bytes += t.body_bytes;
        all.wire_bytes += t.wire_bytes;
        all.latencies_us.extend(t.latencies_us);
        for (k, v) in t.status {
            *all.status.entry(k).or_default() += v;
        }
        for (k, v) in t.errors {
            *all.errors.entry(k).or_default() += v;
        }
        all.unclean_close += t.unclean_close;
        all.md5_checked += t.md5_checked;
        if all.tls.is_none() {
            all.tls = t.tls;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let client_cpu = self_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);

    all.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * all.latencies_us.len() as f64).ceil() as usize;
        all.latencies_us[i.clamp(1, all.latencies_us.len()) - 1] as f64 / 1000.0
    };
    let errors: u64 = all.errors.values().sum();
    let out = json!({
        "label": args.label,
        "mode": match args.mode { Mode::Check => "check", Mode::Download => "download" },
        "addr": addr.to_string(),
        "concurrency": args.concurrency,
        "macs": args.macs,
        "mac_base": args.mac_base,
        "attempted": all.ok + errors,
        "ok": all.ok,
        "errors": errors,
        "error_kinds": all.errors,
        "status": all.status.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "elapsed_s": elapsed,
        "rate": all.ok as f64 / elapsed,
        "body_bytes": all.body_bytes,
        "wire_bytes": all.wire_bytes,
        "mb_s": all.body_bytes as f64 / 1e6 / elapsed,
        "p50_ms": pct(50.0),
        "p99_ms": pct(99.0),
        "max_ms": pct(100.0),
        "unclean_close": all.unclean_close,
        "md5_checked": all.md5_checked,
        "tls": all.tls,
        "client_cpu_s": client_cpu,
    });
    // The summary goes to stdout, or to stderr when stdout carries the JSON.
    let mut summary = format!(
        "{} c={}: {} ok, {} errors in {:.2} s = {:.1}/s, {:.2} MB/s, p50 {:.2} ms, p99 {:.2} ms, client CPU {:.0}% ({})",
        out["mode"].as_str().unwrap_or(""),
        args.concurrency,
        all.ok,
        errors,
        elapsed,
        out["rate"].as_f64().unwrap_or(0.0),
        out["mb_s"].as_f64().unwrap_or(0.0),
        pct(50.0),
        pct(99.0),
        client_cpu.unwrap_or(f64::NAN) / elapsed * 100.0,
        all.tls.as_deref().unwrap_or("no TLS session")
    );
    for (e, n) in &all.errors {
        summary.push_str(&format!("\n  {n} × {e}"));
    }
    if args.json {
        println!("{out}");
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(())
}

async fn worker(plan: Arc<Plan>) -> Tally {
    let mut t = Tally::default();
    loop {
        if Instant::now() >= plan.deadline {
            break;
        }
        let i = plan.next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.max_requests {
            break;
        }
        let device = plan.mac_base + if plan.macs == 0 { i } else { i % plan.macs };
        let head = plan.head_parts.join(&mac_text(device));
        let check_md5 = plan.expect_md5.is_some() && t.md5_checked == 0 && plan.mode == Mode::Download;
        let began = Instant::now();
        let result = tokio::time::timeout(plan.timeout, one(&plan, head.as_bytes(), check_md5)).await;
        let took = began.elapsed();
        let answer = match result {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                *t.errors.entry(e).or_default() += 1;
                continue;
            }
            Err(_) => {
                *t.errors.entry(format!("no complete answer within {:?}", plan.timeout)).or_default() += 1;
                continue;
            }
        };
        *t.status.entry(answer.status).or_default() += 1;
        t.wire_bytes += answer.wire;
        if answer.unclean_close {
            t.unclean_close += 1;
        }
        if t.tls.is_none() {
            t.tls = Some(answer.tls.clone());
        }
        if answer.status != plan.expect_status {
            *t.errors
                .entry(format!("status {} (expected {})", answer.status, plan.expect_status))
                .or_default() += 1;
            continue;
        }
        if let (Some(want), Some(got)) = (&plan.expect_md5, &answer.md5) {
            t.md5_checked += 1;
            if want != got {
                *t.errors.entry(format!("body MD5 {got}, expected {want}")).or_default() += 1;
                continue;
            }
        }
        t.ok += 1;
        t.body_bytes += answer.body;
        t.latencies_us.push(took.as_micros().min(u32::MAX as u128) as u32);
    }
    t
}

/// One device request: connect, handshake, send, read to the end.
async fn one(plan: &Plan, head: &[u8], check_md5: bool) -> Result<Answer, String> {
    let tcp = TcpStream::connect(plan.addr).await.map_err(|e| format!("connect: {}", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let mut tls =
        plan.connector.connect(plan.name.clone(), tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
    let session = {
        let (_, conn) = tls.get_ref();
        format!(
            "{:?} {:?} {:?}",
            conn.protocol_version().unwrap_or(rustls::ProtocolVersion::Unknown(0)),
            conn.negotiated_cipher_suite().map(|s| s.suite()).unwrap_or(rustls::CipherSuite::Unknown(0)),
            conn.negotiated_key_exchange_group().map(|g| g.name()).unwrap_or(rustls::NamedGroup::Unknown(0))
        )
    };
    tls.write_all(head).await.map_err(|e| format!("send request: {}", e.kind()))?;
    tls.flush().await.map_err(|e| format!("send request: {}", e.kind()))?;

    let mut buf = vec![0u8; 64 * 1024];
    let mut header: Vec<u8> = Vec::new();
    let mut parsed: Option<(u16, Option<u64>)> = None;
    let mut body = 0u64;
    let mut wire = 0u64;
    let mut md5 = check_md5.then(Md5::new);
    let mut unclean_close = false;
    loop {
        let n = match tls.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            // The peer closed the TCP connection without a TLS close_notify: complete if the body is.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                unclean_close = true;
                break;
            }
            Err(e) => return Err(format!("read: {}", e.kind())),
        };
        wire += n as u64;
        let mut chunk = &buf[..n];
        if parsed.is_none() {
            header.extend_from_slice(chunk);
            let Some(end) = header.windows(4).position(|w| w == b"\r\n\r\n") else {
                if header.len() > 16 * 1024 {
                    return Err("response head over 16 KB".into());
                }
                continue;
            };
            parsed = Some(parse_head(&header[..end])?);
            let rest = header.split_off(end + 4);
            body += rest.len() as u64;
            if let Some(m) = md5.as_mut() {
                m.update(&rest);
            }
            chunk = &[];
        }
        body += chunk.len() as u64;
        if let Some(m) = md5.as_mut() {
            m.update(chunk);
        }
        // As ESP8266httpUpdate does: read the head and Content-Length bytes, then `http.end()`
        // closes the TCP connection (no close_notify) without waiting for the server's close.
        if let Some((status, length)) = parsed
            && (status == 304 || length.is_some_and(|len| body >= len))
        {
            break;
        }
    }
    let Some((status, length)) = parsed else {
        return Err(if wire == 0 {
            "closed with no answer".into()
        } else {
            "incomplete response head".into()
        });
    };
    if let Some(len) = length
        && status != 304
        && len != body
    {
        return Err(format!("body of {body} bytes, Content-Length {len}"));
    }
    if plan.mode == Mode::Download && status == 200 && length.is_none() {
        return Err("download without Content-Length".into());
    }
    Ok(Answer {
        status,
        body,
        wire,
        unclean_close,
        md5: md5.map(|m| hex::encode(m.finalize())),
        tls: session,
    })
}

fn parse_head(head: &[u8]) -> Result<(u16, Option<u64>), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP answer: {:?}", status_line.chars().take(40).collect::<String>()));
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or("no status code")?;
    let mut length = None;
    for line in lines {
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case("content-length")
        {
            length = Some(v.trim().parse().map_err(|_| "bad Content-Length")?);
        }
    }
    Ok((status, length))
}

/// utime + stime of this process, in seconds (Linux).
fn self_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

// ---------------------------------------------------------------------------------------------
// The summary: otaforge against nginx in every variant

/// One cell's key in the summary: suite, record size, workload, concurrency.
type VariantKey = (String, String, String, u64);

/// The median of `v` (NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn summary(path: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Per (variant, server): each round's CPU ms per MB (downloads) or per answer (checks).
    let mut cells: BTreeMap<(VariantKey, String), Vec<f64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("bad line: {line}"))?;
        let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
        let (workload, load) = (s("workload"), &v["load"]);
        let cpu_ms = v["cpu_s"].as_f64().unwrap_or(f64::NAN) * 1000.0;
        let per = if workload == "check" {
            cpu_ms / load["ok"].as_u64().unwrap_or(0) as f64
        } else {
            cpu_ms / (load["body_bytes"].as_f64().unwrap_or(0.0) / 1e6)
        };
        let key = (s("suite"), s("records"), workload, v["concurrency"].as_u64().unwrap_or(0));
        if per.is_finite() {
            cells.entry((key, s("server"))).or_default().push(per);
        }
    }
    let variants: std::collections::BTreeSet<VariantKey> = cells.keys().map(|(k, _)| k.clone()).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "otaforge against nginx: server CPU (medians over the rounds); at or below nginx is met")?;
    writeln!(
        out,
        "{:<9} {:<8} {:<9} {:>5} {:>13} {:>13} {:>7}  target",
        "suite", "records", "workload", "conc", "otaforge", "nginx", "ratio"
    )?;
    let (mut met, mut all) = (0, 0);
    for key in variants {
        let get = |server: &str| cells.get(&(key.clone(), server.to_string())).cloned().map(median);
        let (Some(ours), Some(theirs)) = (get("otaforge"), get("nginx")) else { continue };
        let unit = if key.2 == "check" { "ms/check" } else { "ms/MB" };
        let ratio = ours / theirs;
        let ok = ratio <= 1.0;
        all += 1;
        met += ok as u32;
        writeln!(
            out,
            "{:<9} {:<8} {:<9} {:>5} {:>7.3} {unit:<5} {:>7.3} {unit:<5} {:>6.2}×  {}",
            key.0,
            key.1,
            key.2,
            key.3,
            ours,
            theirs,
            ratio,
            if ok { "met" } else { "not met" }
        )?;
    }
    writeln!(out, "{met} of {all} cells at or below nginx")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report

const SERVERS: [&str; 3] = ["otaforge", "node", "nginx"];

struct Cell {
    rate: f64,
    mb_s: f64,
    p50: f64,
    p99: f64,
    /// Server CPU seconds per answer.
    cpu_per: f64,
    /// Server CPU seconds per MB of body.
    cpu_per_mb: f64,
    server_util: f64,
    client_util: f64,
    /// CPU time of everything else on the two CPUs, over wall time.
    other_util: f64,
    rss_mib: f64,
    ok: u64,
    errors: u64,
}

/// A figure for the table: "-" where it means nothing (no body, no data).
fn num(v: f64, precision: usize, meaningless: bool) -> String {
    if meaningless || !v.is_finite() { "-".into() } else { format!("{v:.precision$}") }
}

impl Cell {
    /// Each figure's median over the rounds (peak RSS: the first round's; counts: the sums).
    fn median(all: &[Cell]) -> Cell {
        let med = |f: &dyn Fn(&Cell) -> f64| median(all.iter().map(f).collect());
        Cell {
            rate: med(&|c| c.rate),
            mb_s: med(&|c| c.mb_s),
            p50: med(&|c| c.p50),
            p99: med(&|c| c.p99),
            cpu_per: med(&|c| c.cpu_per),
            cpu_per_mb: med(&|c| c.cpu_per_mb),
            server_util: med(&|c| c.server_util),
            client_util: med(&|c| c.client_util),
            other_util: med(&|c| c.other_util),
            // Peak RSS only grows; the first round's says what this cell itself needed.
            rss_mib: all.first().map_or(f64::NAN, |c| c.rss_mib),
            ok: all.iter().map(|c| c.ok).sum(),
            errors: all.iter().map(|c| c.errors).sum(),
        }
    }
}

fn report(path: &PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Every round's measurement of each cell; reduced to medians below.
    let mut rounds: BTreeMap<(String, String, u64), Vec<Cell>> = BTreeMap::new();
    // Devices otaforge had seen by the end of each of its cells: the check fleet plus one new
    // device per download (its inventory, kept in memory, grows with them).
    let mut fleet = 0u64;
    let mut downloads = 0u64;
    let mut devices_seen: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut last_rss = (f64::NAN, 0u64);
    let mut notes = Vec::new();
    let mut sessions: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("bad line: {line}"))?;
        let server = v["server"].as_str().unwrap_or("?").to_string();
        let workload = v["workload"].as_str().unwrap_or("?").to_string();
        let conc = v["concurrency"].as_u64().unwrap_or(0);
        let load = &v["load"];
        let cpu = v["cpu_s"].as_f64().unwrap_or(f64::NAN);
        let ok = load["ok"].as_u64().unwrap_or(0);
        let errors = load["errors"].as_u64().unwrap_or(0);
        let elapsed = load["elapsed_s"].as_f64().unwrap_or(f64::NAN);
        let mb = load["body_bytes"].as_f64().unwrap_or(0.0) / 1e6;
        if server == "otaforge" {
            match workload.as_str() {
                "check" => {
                    let macs = load["macs"].as_u64().unwrap_or(0);
                    let n = if macs == 0 { load["attempted"].as_u64().unwrap_or(0) } else { macs };
                    fleet = fleet.max(n)
                }
                _ => downloads += load["attempted"].as_u64().unwrap_or(0),
            }
            devices_seen.entry((workload.clone(), conc)).or_insert(fleet + downloads);
            last_rss = (v["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0, fleet + downloads);
        }
        if errors > 0 {
            notes.push(format!("{server} {workload} c={conc}: {errors} errors {}", load["error_kinds"]));
        }
        if let Some(t) = load["tls"].as_str() {
            sessions.entry(server.clone()).or_default().insert(t.to_string());
        }
        rounds.entry((server, workload, conc)).or_default().push(Cell {
            rate: load["rate"].as_f64().unwrap_or(0.0),
            mb_s: load["mb_s"].as_f64().unwrap_or(0.0),
            p50: load["p50_ms"].as_f64().unwrap_or(0.0),
            p99: load["p99_ms"].as_f64().unwrap_or(0.0),
            cpu_per: if ok > 0 { cpu / ok as f64 } else { f64::NAN },
            cpu_per_mb: if mb > 0.0 { cpu / mb } else { f64::NAN },
            server_util: cpu / elapsed,
            client_util: load["client_cpu_s"].as_f64().unwrap_or(f64::NAN) / elapsed,
            other_util: (v["busy_s"].as_f64().unwrap_or(f64::NAN)
                - cpu
                - load["client_cpu_s"].as_f64().unwrap_or(f64::NAN))
            .max(0.0)
                / v["wall_s"].as_f64().unwrap_or(f64::NAN),
            rss_mib: v["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0,
            ok,
            errors,
        });
    }
    let n_rounds = rounds.values().map(Vec::len).max().unwrap_or(0);
    let cells: BTreeMap<(String, String, u64), Cell> =
        rounds.into_iter().map(|(k, v)| (k, Cell::median(&v))).collect();
    let concs: Vec<u64> = {
        let mut c: Vec<u64> = cells.keys().map(|k| k.2).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let mut out = std::io::stdout().lock();
    if n_rounds > 1 {
        writeln!(
            out,
            "Medians over {n_rounds} rounds (RSS: as after the first round's cell; errors: all rounds)"
        )?;
    }
    for workload in ["check", "download"] {
        let unit = if workload == "check" { "checks/s" } else { "dl/s" };
        writeln!(out)?;
        writeln!(
            out,
            "{:<9} {:<8} {:>4} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>6} {:>6} {:>7} {:>8} {:>7}",
            "server",
            workload,
            "conc",
            unit,
            "MB/s",
            "p50 ms",
            "p99 ms",
            "CPU/req ms",
            "CPU/MB ms",
            "srv %",
            "cli %",
            "other %",
            "RSS MiB",
            "errors"
        )?;
        for server in SERVERS {
            for &c in &concs {
                let Some(x) = cells.get(&(server.to_string(), workload.to_string(), c)) else { continue };
                writeln!(
                    out,
                    "{:<9} {:<8} {:>4} {:>9.1} {:>8} {:>8.2} {:>8.2} {:>10.3} {:>10} {:>6.0} {:>6.0} {:>7.0} {:>8.1} {:>7}",
                    server,
                    workload,
                    c,
                    x.rate,
                    num(x.mb_s, 2, workload == "check"),
                    x.p50,
                    x.p99,
                    x.cpu_per * 1000.0,
                    num(x.cpu_per_mb * 1000.0, 2, workload == "check"),
                    x.server_util * 100.0,
                    x.client_util * 100.0,
                    x.other_util * 100.0,
                    x.rss_mib,
                    x.errors
                )?;
                if x.ok == 0 {
                    writeln!(out, "          (no successful request in this cell)")?;
                }
            }
        }
    }

    let get = |s: &str, w: &str, c: u64| cells.get(&(s.to_string(), w.to_string(), c));
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    writeln!(out)?;
    writeln!(out, "Ratios (otaforge ÷ reference; for CPU lower is better, for rates higher is better)")?;
    writeln!(
        out,
        "{:<8} {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "workload",
        "conc",
        "rate/node",
        "rate/nginx",
        "CPU/req:node",
        "CPU/req:ngx",
        "MB/s:node",
        "MB/s:nginx",
        "CPU/MB:node",
        "CPU/MB:ngx"
    )?;
    for workload in ["check", "download"] {
        for &c in &concs {
            let Some(o) = get("otaforge", workload, c) else { continue };
            let r = |s: &str, f: &dyn Fn(&Cell) -> f64| get(s, workload, c).map(|x| f(o) / f(x));
            let fmt = |x: Option<f64>| x.map(|v| num(v, 2, false)).unwrap_or_else(|| "-".into());
            writeln!(
                out,
                "{:<8} {:>4} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
                workload,
                c,
                fmt(r("node", &|x| x.rate)),
                fmt(r("nginx", &|x| x.rate)),
                fmt(r("node", &|x| x.cpu_per)),
                fmt(r("nginx", &|x| x.cpu_per)),
                fmt(r("node", &|x| x.mb_s)),
                fmt(r("nginx", &|x| x.mb_s)),
                fmt(r("node", &|x| x.cpu_per_mb)),
                fmt(r("nginx", &|x| x.cpu_per_mb)),
            )?;
        }
    }

    writeln!(out)?;
    writeln!(out, "Targets from the issue")?;
    for c in [16, 64] {
        if let (Some(o), Some(n), Some(g)) =
            (get("otaforge", "check", c), get("node", "check", c), get("nginx", "check", c))
        {
            let cpu = o.cpu_per / g.cpu_per;
            let rate = o.rate / n.rate;
            writeln!(
                out,
                "  checks c={c}: CPU per check ≤ nginx's: {:.3} vs {:.3} ms (×{cpu:.2}) → {}",
                o.cpu_per * 1000.0,
                g.cpu_per * 1000.0,
                verdict(cpu <= 1.0)
            )?;
            writeln!(
                out,
                "  checks c={c}: checks/s ≥ 2× Node: {:.0} vs {:.0} (×{rate:.2}) → {}",
                o.rate,
                n.rate,
                verdict(rate >= 2.0)
            )?;
        }
    }
    for &c in &concs {
        if let (Some(o), Some(g)) = (get("otaforge", "download", c), get("nginx", "download", c)) {
            let mb = o.mb_s / g.mb_s;
            let cpu = o.cpu_per_mb / g.cpu_per_mb;
            writeln!(
                out,
                "  downloads c={c}: MB/s ≥ 0.9× nginx: {:.1} vs {:.1} (×{mb:.2}) → {}; CPU per MB ≤ 1.25× nginx: {:.2} vs {:.2} ms (×{cpu:.2}) → {}",
                o.mb_s,
                g.mb_s,
                verdict(mb >= 0.9),
                o.cpu_per_mb * 1000.0,
                g.cpu_per_mb * 1000.0,
                verdict(cpu <= 1.25)
            )?;
        }
    }
    if let Some(o) = get("otaforge", "download", 64) {
        let seen = devices_seen.get(&("download".to_string(), 64)).copied().unwrap_or(0);
        writeln!(
            out,
            "  peak RSS with 64 concurrent downloads ≤ 50 MiB: {:.1} MiB → {} (by then otaforge's inventory held about {seen} devices, plus up to 200 from the warm-up)",
            o.rss_mib,
            verdict(o.rss_mib <= 50.0)
        )?;
        if n_rounds > 1 {
            writeln!(
                out,
                "    (otaforge's peak RSS at the end of all rounds: {:.1} MiB, with about {} devices)",
                last_rss.0, last_rss.1
            )?;
        }
    }
    let busy: Vec<String> = cells
        .iter()
        .filter(|(_, x)| x.client_util > 0.9)
        .map(|((s, w, c), x)| format!("{s} {w} c={c} ({:.0}%)", x.client_util * 100.0))
        .collect();
    if !busy.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "The load generator's CPU was over 90% busy in: {} — there the rate says as much about the client as about the server; CPU per request still compares the servers.",
            busy.join(", ")
        )?;
    }
    let noisy: Vec<String> = cells
        .iter()
        .filter(|(_, x)| x.other_util > 0.1)
        .map(|((s, w, c), x)| format!("{s} {w} c={c} ({:.0}%)", x.other_util * 100.0))
        .collect();
    if !noisy.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "Other work took over 10% of the two CPUs in: {} — rates there are lower than on a quiet machine.",
            noisy.join(", ")
        )?;
    }
    writeln!(out)?;
    for (server, s) in &sessions {
        writeln!(out, "Negotiated with {server}: {}", s.iter().cloned().collect::<Vec<_>>().join("; "))?;
    }
    let distinct: std::collections::BTreeSet<&String> = sessions.values().flatten().collect();
    if distinct.len() > 1 {
        writeln!(out, "WARNING: the servers did not all negotiate the same protocol, suite and group")?;
    }
    for n in &notes {
        writeln!(out, "  {n}")?;
    }
    Ok(())
}
