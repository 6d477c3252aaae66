//! The update server on a bad day: clients that stop reading, other processes opening the store
//! while a publish writes, and a second `otaforge serve` on the same project.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use crate::support::{Project, esp8266_headers, esp8266_image, md5_hex, otaforge, run};
use otaforge_server::ServerEvent;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const UNKNOWN_MD5: &str = "00000000000000000000000000000000";

/// A strict TLS 1.2 client config trusting only the project's CA.
fn tls_client(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Starts a download and never reads a byte of it: a receive buffer of a few KB, so the
/// server's writes stall once the socket buffers are full. The stream is returned so it stays
/// open for as long as the test wants.
async fn stalled_download(
    ca_pem: &str,
    addr: SocketAddr,
    mac: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(addr).await.unwrap();
    let name = ServerName::try_from("ota.test").unwrap();
    let mut tls = tls_client(ca_pem).connect(name, tcp).await.unwrap();
    let mut head = "GET /update HTTP/1.0\r\nHost: ota.test\r\nConnection: close\r\n".to_string();
    for (n, v) in esp8266_headers(mac, Some("0.1"), UNKNOWN_MD5) {
        // Room for the large image this test serves.
        let v = match n.as_str() {
            "x-ESP8266-free-space" => "8000000".to_string(),
            "x-ESP8266-chip-size" => "16777216".to_string(),
            _ => v,
        };
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_stop_reading_free_their_slots_within_the_idle_timeout() {
    let p = Project::new();
    // Far more than loopback socket buffers hold, so a reader that stops really stalls the server.
    let img = esp8266_image(3_500_000, 11);
    p.publish(&img, "2.0", "stable");
    let server = p
        .serve(|c| {
            c.max_connections = 2;
            c.idle_timeout = Duration::from_secs(2);
        })
        .await;
    let mut events = server.subscribe();
    let addr = server.tls_addr;
    let _held = [
        stalled_download(&p.ca_pem, addr, "18:FE:34:00:00:A1").await,
        stalled_download(&p.ca_pem, addr, "18:FE:34:00:00:A2").await,
    ];

    // Both downloads have begun: every slot is taken by a client that reads nothing.
    let mut started = 0;
    let wait_started = async {
        while started < 2 {
            if let Ok(ServerEvent::DownloadStarted { .. }) = events.recv().await {
                started += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait_started).await.expect("both downloads start");
    let since = Instant::now();

    // A real device retries as devices do; it must be answered once the stalled clients' idle
    // timeout (2 s) has passed, not when they decide to leave.
    let client = p.client(addr);
    let url = format!("https://ota.test:{}/update", addr.port());
    let h = esp8266_headers("18:FE:34:00:00:B1", Some("2.0"), &md5_hex(&img));
    let mut answer = None;
    while answer.is_none() && since.elapsed() < Duration::from_secs(8) {
        let mut req = client.get(&url).version(reqwest::Version::HTTP_10).header("Connection", "close");
        for (n, v) in &h {
            req = req.header(n.as_str(), v.as_str());
        }
        match tokio::time::timeout(Duration::from_secs(2), req.send()).await {
            Ok(Ok(r)) => answer = Some(r.status()),
            // Refused while every slot is busy: the device tries again shortly.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let waited = since.elapsed();
    eprintln!("a device got a slot {waited:?} after every slot was taken by a stalled download");
    assert_eq!(answer.map(|s| s.as_u16()), Some(304), "no answer after {waited:?}");
    assert!(waited < Duration::from_millis(3500), "the device waited {waited:?} for a slot");
    server.shutdown().await;
}

/// Runs one otaforge command to completion and says whether it succeeded (with its output).
fn succeeds(cmd: &mut Command) -> (bool, String) {
    let (out, stdout, stderr) = run(cmd);
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn publishes_succeed_while_other_processes_open_the_store() {
    let p = Project::new();
    let work = tempfile::tempdir().unwrap();
    let files: Vec<_> = (1..=20)
        .map(|i| {
            let f = work.path().join(format!("fw-{i}.bin"));
            std::fs::write(&f, esp8266_image(400_000, 100 + i)).unwrap();
            f
        })
        .collect();
    otaforge_store::Store::open(p.path()).unwrap();

    // Other processes open the store over and over: `releases` and `devices` in loops.
    let stop = Arc::new(AtomicBool::new(false));
    let (ran, first_runs) = mpsc::channel();
    let readers: Vec<_> = ["releases", "devices", "releases", "devices"]
        .into_iter()
        .map(|command| {
            let (dir, stop, ran) = (p.path().to_path_buf(), stop.clone(), ran.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (ok, out) = succeeds(otaforge(&dir).arg(command));
                    if !ok {
                        failures.push(out);
                    }
                    let _ = ran.send(());
                }
                failures
            })
        })
        .collect();
    for _ in 0..readers.len() {
        first_runs.recv_timeout(Duration::from_secs(30)).expect("the readers run");
    }

    let mut failed = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let version = format!("1.0.{}", i + 1);
        let (ok, out) =
            succeeds(otaforge(p.path()).args(["publish", file.to_str().unwrap(), "--version", &version]));
        if !ok {
            failed.push(format!("{version}: {out}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reader_failures: Vec<String> = readers.into_iter().flat_map(|r| r.join().unwrap()).collect();
    assert!(failed.is_empty(), "{} of 20 publishes failed:\n{}", failed.len(), failed.join("\n"));
    assert!(reader_failures.is_empty(), "readers failed:\n{}", reader_failures.join("\n"));
    let releases = otaforge_store::Store::open(p.path()).unwrap().releases(None).unwrap();
    assert_eq!(releases.len(), 20);
    let staging: Vec<_> = std::fs::read_dir(p.path().join("blobs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging"))
        .collect();
    assert!(staging.is_empty(), "staging files left behind: {staging:?}");
}

/// `otaforge serve` on a free port, with its stdout lines arriving on a channel (None at the end).
struct Serve {
    child: Child,
    lines: mpsc::Receiver<Option<String>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Serve {
    fn start(p: &Project, port: u16) -> Serve {
        let mut child = otaforge(p.path())
            .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(Some(line));
            }
            let _ = tx.send(None);
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        Serve { child, lines, stderr }
    }

    /// The first line on stdout, or None if it exited without printing one.
    fn first_line(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(20)).expect("serve says something or exits")
    }

    /// Waits (bounded) for the process to exit; its status and stderr.
    fn exit(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stderr.join().unwrap());
            }
            assert!(Instant::now() < deadline, "serve did not exit");
            // Drain stdout while waiting so the child never blocks on a full pipe.
            let _ = self.lines.recv_timeout(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[cfg(unix)]
#[test]
fn a_second_serve_on_one_project_is_refused_and_writes_keep_working() {
    let p = Project::new();
    let first = Serve::start(&p, free_port());
    let line = first.first_line().unwrap_or_default();
    assert!(line.contains("Serving updates"), "{line}");

    let second = Serve::start(&p, free_port());
    let said = second.first_line();
    if said.as_deref().is_some_and(|l| l.contains("Serving updates")) {
        second.signal("-KILL");
        first.signal("-KILL");
        panic!("a second serve started on the same project: {said:?}");
    }
    let (status, stderr) = second.exit();
    assert!(!status.success());
    let pid = first.child.id().to_string();
    assert!(stderr.contains(&pid) && stderr.contains("serve"), "should name PID {pid}: {stderr}");

    // Commands that write still work while the server runs.
    let fw = p.path().join("fw.bin");
    std::fs::write(&fw, esp8266_image(100_000, 7)).unwrap();
    let (ok, out) =
        succeeds(otaforge(p.path()).args(["publish", fw.to_str().unwrap(), "--version", "1.0.0"]));
    assert!(ok, "{out}");
    let (ok, out) = succeeds(otaforge(p.path()).args(["rollout", "--percent", "50"]));
    assert!(ok, "{out}");

    // A server that dies without cleaning up does not lock the project forever.
    first.signal("-KILL");
    let (status, _) = first.exit();
    assert!(!status.success());
    let third = Serve::start(&p, free_port());
    let line = third.first_line().unwrap_or_default();
    assert!(line.contains("Serving updates"), "{line}");
    third.signal("-TERM");
    let (status, stderr) = third.exit();
    assert!(status.success(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_trickles_just_under_the_idle_timeout_frees_its_slot_in_time() {
    let p = Project::new();
    let img = esp8266_image(7_000_000, 12);
    p.publish(&img, "2.0", "stable");
    // 7 MB at no less than 10 MB/s on average: the download's time is 2 s + 0.7 s.
    let server = p
        .serve(|c| {
            c.max_connections = 1;
            c.idle_timeout = Duration::from_secs(2);
            c.min_download_rate = 10_000_000;
        })
        .await;
    let mut events = server.subscribe();
    let addr = server.tls_addr;
    let mut trickler = stalled_download(&p.ca_pem, addr, "18:FE:34:00:00:C1").await;
    // Reads all the time, never idle for the 2 s timeout, but at about 2 MB/s: the download
    // would take 3.5 s, longer than it is given.
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            match trickler.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    });
    let since = Instant::now();
    let aborted = async {
        loop {
            if let Ok(ServerEvent::DownloadAborted { why, .. }) = events.recv().await {
                return why;
            }
        }
    };
    let why =
        tokio::time::timeout(Duration::from_secs(10), aborted).await.expect("the slow download is cut off");
    let took = since.elapsed();
    eprintln!("a trickling client lost its slot after {took:?}: {why}");
    assert!(why.contains("slower than"), "{why}");
    assert!(took < Duration::from_millis(3500), "held its slot for {took:?}");
    reader.abort();
    server.shutdown().await;
}
