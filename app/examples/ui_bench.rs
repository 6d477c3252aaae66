//! The desktop app's cost, measured headless (a benchmark, not a test): start-up to first frame,
//! idle CPU over 10 s with the server running, and frame time on the Serve step with 10,000
//! named devices in the inventory (a quarter also named by the user) and 50 downloads in flight
//! — all over real HTTPS to the app's own server — and of the frame that re-sorts them all.
//! Each number comes with a reference measured in the same process.
//!
//! ```text
//! cargo run --release -p otaforge --example ui_bench            # ~1 min
//! DEVICES=1000 DOWNLOADS=10 cargo run --release -p otaforge --example ui_bench
//! ```
//!
//! "Headless" means egui without a window or GPU (egui_kittest): a frame here is the app's own
//! work (layout of every widget shown, plus tessellation into triangles), not the GPU upload.
//! Frames are driven the way eframe drives them: only when the app or the worker asks for one.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use otaforge::ui::OtaForgeApp;
use otaforge::ui::serve::{Tab, labels};
use otaforge_firmware::ImageBuilder;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time this process has used (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15; after the ")" they are the 12th and 13th.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Frames are due when egui asks for one (at once or after a delay), as eframe's loop does: the
/// worker's wake-ups arrive through egui's repaint callback, the app's own requests through each
/// frame's output.
#[derive(Clone, Default)]
struct Due(Arc<(Mutex<Option<Instant>>, Condvar)>);

impl Due {
    fn install(&self, ctx: &egui::Context) {
        let due = self.clone();
        ctx.set_request_repaint_callback(move |info| due.at(Instant::now() + info.delay));
        self.at(Instant::now());
    }

    fn at(&self, at: Instant) {
        let mut d = self.0.0.lock().unwrap();
        *d = Some(d.map_or(at, |old| old.min(at)));
        self.0.1.notify_all();
    }

    /// Waits until a frame is due (true) or `end` passes (false).
    fn wait(&self, end: Instant) -> bool {
        let mut d = self.0.0.lock().unwrap();
        loop {
            let now = Instant::now();
            if let Some(at) = *d
                && at <= now
            {
                *d = None;
                return true;
            }
            if now >= end {
                return false;
            }
            let until = d.map_or(end, |at| at.min(end));
            d = self.0.1.wait_timeout(d, until - now).unwrap().0;
        }
    }
}

/// Runs the app as eframe would for `span`: a frame whenever one is due. Returns the frames drawn.
fn drive(h: &mut Harness<'static, OtaForgeApp>, due: &Due, span: Duration) -> usize {
    let end = Instant::now() + span;
    let mut frames = 0;
    while due.wait(end) {
        h.step();
        frames += 1;
        if let Some(out) = h.output().viewport_output.get(&egui::ViewportId::ROOT)
            && out.repaint_delay < Duration::from_secs(3600)
        {
            due.at(Instant::now() + out.repaint_delay);
        }
    }
    frames
}

/// One frame's work: the app's pass and tessellation.
fn frame(h: &mut Harness<'static, OtaForgeApp>) -> Duration {
    let t = Instant::now();
    h.step();
    let shapes = h.output().shapes.clone();
    let _ = h.ctx.tessellate(shapes, h.ctx.pixels_per_point());
    t.elapsed()
}

struct Stats {
    p50: Duration,
    p95: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats { p50: v[v.len() / 2], p95: v[v.len() * 95 / 100], max: *v.last().unwrap() }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let fleet = env("DEVICES", 10_000);
    let downloading = env("DOWNLOADS", 50).min(fleet);
    let dir = tempfile::tempdir()?;
    let hosts = ["ota.test", "127.0.0.1"].iter().map(|h| otaforge_pki::Host::parse(h).unwrap()).collect();
    otaforge_pki::generate(dir.path(), &otaforge_pki::IssueRequest::new(hosts), false)?;
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem"))?;
    let old = ImageBuilder::arduino_esp8266().target_size(300_000).seed(1).build();
    publish(dir.path(), &old, "1.0.0")?;
    seed_names(dir.path(), fleet)?;

    // Start-up to first frame, against an app with one label.
    let t = Instant::now();
    let mut reference = Harness::new_ui(|ui| {
        ui.label("hello");
    });
    reference.step();
    let bare_start = t.elapsed();
    let t = Instant::now();
    let path = dir.path().to_path_buf();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_eframe(move |cc| OtaForgeApp::new(cc, path).expect("worker starts"));
    h.step();
    let app_start = t.elapsed();
    let due = Due::default();
    due.install(&h.ctx);

    // Serve step, server on a free loopback port.
    h.get_by_label_contains("4. Serve").click();
    h.step();
    h.state_mut().serve.listen_on("127.0.0.1", 0);
    h.get_by_label(labels::START).click();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.state().serve.address().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start: {:?}", h.state().serve.server);
        drive(&mut h, &due, Duration::from_millis(20));
    }
    let addr = h.state().serve.address().unwrap();
    h.state_mut().serve.show_tab(Tab::Devices);
    drive(&mut h, &due, Duration::from_millis(500));

    // Idle: the server runs, nothing happens.
    let cpu = cpu_time();
    let frames = drive(&mut h, &due, Duration::from_secs(10));
    let idle_cpu = cpu_time() - cpu;

    // The fleet checks in (each over its own TLS connection, as devices do).
    let rt = tokio::runtime::Runtime::new()?;
    let tls = Arc::new(client_config(&ca_pem)?);
    let old_md5 = otaforge_firmware::md5_hex(&old);
    let t = Instant::now();
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for n in 0..fleet {
            let (tls, md5, gate) = (tls.clone(), old_md5.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await;
                device(addr, tls, n, &md5, None).await
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    let checkins = t.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state().serve.devices.len() < fleet && Instant::now() < deadline {
        drive(&mut h, &due, Duration::from_millis(50));
    }

    // A big release, and `downloading` devices fetching it at about 0.8 MB/s each (a TLS record
    // every 20 ms). The kernel's socket buffers hold a few MB per connection, so the server sees
    // each download advance in bursts; 12 MB keeps them all in flight through the measurements.
    let new = ImageBuilder::arduino_esp8266().target_size(12_000_000).seed(2).build();
    publish(dir.path(), &new, "1.1.0")?;
    std::thread::sleep(Duration::from_millis(1200)); // the server picks up publishes within 0.5 s
    let slow: Vec<_> = (0..downloading)
        .map(|n| {
            let (tls, md5) = (tls.clone(), old_md5.clone());
            rt.spawn(async move { device(addr, tls, n, &md5, Some(Duration::from_millis(20))).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.state().serve.downloads.len() < downloading {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} downloads started",
            h.state().serve.downloads.len()
        );
        drive(&mut h, &due, Duration::from_millis(20));
    }
    let devices_shown = h.state().serve.devices.len();
    let active = h.state().serve.downloads.len();

    // Event-driven repaints while the downloads run.
    let cpu = cpu_time();
    let busy_frames = drive(&mut h, &due, Duration::from_secs(3));
    let busy_cpu = cpu_time() - cpu;
    let mut devices_tab = Vec::new();
    for _ in 0..100 {
        devices_tab.push(frame(&mut h));
    }
    // Sorting by another column re-sorts every device, once, in the frame of the click. A real
    // pointer rests on the header before it presses (its tooltip appears then, in a frame of its
    // own), so the pointer is moved there one frame before the click, as it would be.
    let mut resort = Vec::new();
    for title in ["Name", "MAC", "Version", "Next check", "Last seen"].iter().cycle().take(20) {
        h.get_by_label(title).hover();
        h.step();
        h.get_by_label(title).click();
        resort.push(frame(&mut h));
    }
    h.state_mut().serve.show_tab(Tab::Downloads);
    h.step();
    let mut downloads_tab = Vec::new();
    for _ in 0..100 {
        downloads_tab.push(frame(&mut h));
    }
    let still_active = h.state().serve.downloads.len();
    for task in slow {
        task.abort();
    }

    // Reference: the same rows drawn without virtualisation.
    let rows: Vec<[String; 8]> = (0..fleet)
        .map(|n| {
            [
                mac(n),
                name(n),
                "ESP8266".into(),
                "1.0.0".into(),
                "just now".into(),
                "in 10 min".into(),
                "127.0.0.1".into(),
                "up to date".into(),
            ]
        })
        .collect();
    let mut plain = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_ui(move |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            for r in &rows {
                ui.horizontal(|ui| {
                    for c in r {
                        ui.label(c);
                    }
                });
            }
        });
    });
    let mut plain_frames = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        plain.step();
        let _ = plain.ctx.tessellate(plain.output().shapes.clone(), plain.ctx.pixels_per_point());
        plain_frames.push(t.elapsed());
    }

    let d = stats(devices_tab);
    let r = stats(resort);
    let l = stats(downloads_tab);
    let p = stats(plain_frames);
    println!(
        "OTA Forge UI benchmark (headless egui, {} build)",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    println!();
    println!(
        "start-up to first frame     {:>10}   (a one-label egui app: {}, ratio {:.1}x)",
        ms(app_start),
        ms(bare_start),
        ratio(app_start, bare_start)
    );
    println!(
        "idle, server running, 10 s  {:>10} CPU ({:.2}% of one core), {frames} frames",
        ms(idle_cpu),
        idle_cpu.as_secs_f64() * 10.0
    );
    println!(
        "fleet check-in              {fleet} devices over TLS in {:.1} s; {devices_shown} rows in the list",
        checkins.as_secs_f64()
    );
    println!(
        "downloads in flight         {active} at the start, {still_active} at the end of the frame measurements"
    );
    println!(
        "repaints while downloading  {:.1} frames/s over 3 s (event-driven), {:.1}% of one core for the whole process",
        busy_frames as f64 / 3.0,
        busy_cpu.as_secs_f64() / 3.0 * 100.0
    );
    println!();
    println!("frame time (pass + tessellation), 100 frames each:");
    println!(
        "  Devices tab, {fleet} devices      p50 {:>9}  p95 {:>9}  max {:>9}",
        ms(d.p50),
        ms(d.p95),
        ms(d.max)
    );
    println!(
        "  re-sort by a column, {fleet}      p50 {:>9}  p95 {:>9}  max {:>9}  (20 clicks)",
        ms(r.p50),
        ms(r.p95),
        ms(r.max)
    );
    println!(
        "  Downloads tab, {active} bars       p50 {:>9}  p95 {:>9}  max {:>9}",
        ms(l.p50),
        ms(l.p95),
        ms(l.max)
    );
    println!("  reference: {fleet} rows, no virtualisation  p50 {:>9}  p95 {:>9}", ms(p.p50), ms(p.p95));
    println!("  Devices tab / reference (p50): {:.2}x", ratio(d.p50, p.p50));
    println!(
        "  60 fps budget: 16.7 ms; Devices tab p95 uses {:.0}% of it",
        d.p95.as_secs_f64() / 0.016_67 * 100.0
    );
    Ok(())
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn publish(dir: &std::path::Path, bytes: &[u8], version: &str) -> Result<()> {
    let mut store = otaforge_store::Store::open(dir)?;
    let req = otaforge_actions::publish::PublishRequest::sketch("stable", Some(version));
    otaforge_actions::publish::check_and_publish(&mut store, bytes.to_vec(), req).context("publish")?;
    Ok(())
}

/// The fleet as the store knows it before the server starts: each device reports a name, and
/// every fourth also has one given by the user (shown instead).
fn seed_names(dir: &std::path::Path, fleet: usize) -> Result<()> {
    let mut store = otaforge_store::Store::open(dir)?;
    let now = otaforge_store::now_unix();
    let devices: Vec<otaforge_store::Device> = (0..fleet)
        .map(|n| {
            let mut d = otaforge_store::Device::new(&mac(n), "ESP8266", "stable", "127.0.0.1", now - 3600);
            d.name = name(n);
            d.poll_interval_s = Some(600 + (n % 600) as u32);
            d
        })
        .collect();
    store.save_devices(&devices, &[])?;
    for n in (0..fleet).step_by(4) {
        store.rename_device(&mac(n), &format!("Room {} sensor {}", n / 40, n % 40))?;
    }
    Ok(())
}

/// The name device `n` reports (`?name=`).
fn name(n: usize) -> String {
    format!("node-{n:05}")
}

fn mac(n: usize) -> String {
    format!("5C:CF:7F:{:02X}:{:02X}:{:02X}", (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF)
}

fn client_config(ca_pem: &str) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    Ok(rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One update check as an ESP8266 sends it; with `pace`, a pause after each read.
async fn device(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    n: usize,
    md5: &str,
    pace: Option<Duration>,
) -> Result<()> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if pace.is_some() {
        socket.set_recv_buffer_size(4096)?;
    }
    let tcp = socket.connect(addr).await?;
    let (mac, name) = (mac(n), name(n));
    let server = rustls::pki_types::ServerName::try_from("ota.test")?;
    let mut s = tokio_rustls::TlsConnector::from(tls).connect(server, tcp).await?;
    let head = format!(
        "GET /update?name={name} HTTP/1.0\r\nHost: ota.test\r\nUser-Agent: ESP8266-http-Update\r\nx-ESP8266-STA-MAC: {mac}\r\n\
         x-ESP8266-AP-MAC: 5E:CF:7F:00:00:00\r\nx-ESP8266-free-space: 16000000\r\nx-ESP8266-sketch-size: 300000\r\n\
         x-ESP8266-sketch-md5: {md5}\r\nx-ESP8266-chip-size: 16777216\r\nx-ESP8266-sdk-version: 2.2.2-dev(38a443e)\r\n\
         x-ESP8266-mode: sketch\r\nx-ESP8266-version: 1.0.0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            // The server closes without close_notify after Connection: close, as devices expect.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(p) = pace {
            tokio::time::sleep(p).await;
        }
    }
}
