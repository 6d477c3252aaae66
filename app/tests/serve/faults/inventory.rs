//! The inventory under faults and abuse: check-ins answered while the database cannot be written
//! (a write lock held by another connection, a full filesystem, a server stopped meanwhile) all
//! reach it once the fault clears, and a flood of made-up MACs cannot grow the inventory without
//! bound while real devices are still served and admitted.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Project, esp8266_headers, esp8266_image, md5_hex};
use otaforge_server::ServerEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::broadcast;

const UNKNOWN_MD5: &str = "00000000000000000000000000000000";

/// A plain-HTTP update check as ESP8266httpUpdate sends it (running version 1.0), from source
/// address `from`; the status and the reason header.
async fn check_in(server: SocketAddr, from: IpAddr, mac: &str) -> (u16, Option<String>) {
    check_in_running(server, from, mac, "1.0", UNKNOWN_MD5).await
}

/// [`check_in`] running `version` with sketch MD5 `md5`. Like the device, it reads the head,
/// then `Content-Length` bytes of body, and closes.
async fn check_in_running(
    server: SocketAddr,
    from: IpAddr,
    mac: &str,
    version: &str,
    md5: &str,
) -> (u16, Option<String>) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut tcp = sock.connect(server).await.unwrap();
    let mut head = "GET /update HTTP/1.0\r\nHost: ota.test\r\nConnection: close\r\n".to_string();
    for (n, v) in esp8266_headers(mac, Some(version), md5) {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let read = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&answer[..end]).into_owned();
                let length: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while answer.len() < end + 4 + length {
                    match tcp.read(&mut buf).await.unwrap() {
                        0 => break,
                        n => answer.extend_from_slice(&buf[..n]),
                    }
                }
                return text;
            }
            match tcp.read(&mut buf).await.unwrap() {
                0 => return String::from_utf8_lossy(&answer).into_owned(),
                n => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), read).await.expect("answered in time");
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let reason = text
        .lines()
        .find_map(|l| l.strip_prefix("X-OTA-Forge-Reason: ").or(l.strip_prefix("x-ota-forge-reason: ")))
        .map(str::to_string);
    (status, reason)
}

fn mac(prefix: u8, i: u32) -> String {
    let b = i.to_be_bytes();
    format!("02:{prefix:02X}:{:02X}:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2], b[3])
}

/// How many of `macs` the database holds, as devices and as request-history entries.
fn stored(dir: &Path, macs: &[String]) -> (usize, usize) {
    let db = rusqlite::Connection::open(dir.join("otaforge.db")).unwrap();
    db.busy_timeout(Duration::from_secs(1)).unwrap();
    let count = |sql: &str, mac: &str| -> usize {
        db.query_row(sql, [mac], |r| r.get::<_, i64>(0)).map(|n| n as usize).unwrap_or(0)
    };
    let devices = macs.iter().map(|m| count("SELECT count(*) FROM devices WHERE mac = ?1", m)).sum();
    let requests = macs.iter().map(|m| count("SELECT count(*) FROM requests WHERE mac = ?1", m)).sum();
    (devices, requests)
}

/// Waits (bounded) until the database holds every one of `macs`; what it holds at the end.
async fn wait_stored(dir: &Path, macs: &[String], limit: Duration) -> (usize, usize) {
    let deadline = Instant::now() + limit;
    loop {
        let (d, r) = stored(dir, macs);
        if (d == macs.len() && r >= macs.len()) || Instant::now() >= deadline {
            return (d, r);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A source address that is not loopback (loopback is not rate-limited): 10.9.`a`.`b`, local to
/// the network namespace the test runs in (see [`addresses_on_loopback`]).
fn remote(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::new(10, 9, a, b))
}

/// Waits (bounded) for the first event `pick` takes.
async fn wait_for<T>(
    events: &mut broadcast::Receiver<ServerEvent>,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&ServerEvent) -> Option<T>,
) -> T {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(ev) => {
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the server stopped before {what}"),
            }
        }
    };
    tokio::time::timeout(limit, wait).await.unwrap_or_else(|_| panic!("no event within {limit:?}: {what}"))
}

fn backlog(ev: &ServerEvent) -> Option<(u64, u64, String)> {
    match ev {
        ServerEvent::InventoryBacklog { held, spilled, why, .. } => Some((*held, *spilled, why.clone())),
        _ => None,
    }
}

fn caught_up(ev: &ServerEvent) -> Option<u64> {
    match ev {
        ServerEvent::InventoryCaughtUp { saved } => Some(*saved),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_ins_answered_while_another_connection_holds_the_write_lock_are_all_stored() {
    let p = Project::new();
    let server = p.serve(|c| c.http_port = Some(0)).await;
    let mut events = server.subscribe();
    let addr = server.http_addr.unwrap();

    // Another process holds the write lock for longer than the busy timeout (5 s).
    let holder = rusqlite::Connection::open(p.path().join("otaforge.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let macs: Vec<String> = (0..50).map(|i| mac(0xA0, i)).collect();
    let started = Instant::now();
    for m in &macs {
        let (status, _) = check_in(addr, LOCAL, m).await;
        assert_eq!(status, 304, "{m} answered");
    }
    let answered = started.elapsed();
    // The writer tried, waited out its busy timeout, failed, and says so.
    let (held, spilled, why) = wait_for(&mut events, Duration::from_secs(15), "the backlog", backlog).await;
    eprintln!(
        "50 check-ins answered in {answered:?} under the lock; backlog: {held} held, {spilled} spilled ({why})"
    );
    assert!(why.contains("locked"), "{why}");
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let released = Instant::now();

    let saved = wait_for(&mut events, Duration::from_secs(15), "the backlog saved", caught_up).await;
    let (devices, requests) = stored(p.path(), &macs);
    eprintln!(
        "{:?} after the lock was released: {saved} records saved; {devices} of 50 devices, {requests} of 50 requests stored",
        released.elapsed()
    );
    assert_eq!((devices, requests), (50, 50), "every answered check-in is stored");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_left_at_shutdown_is_saved_by_the_next_server() {
    let p = Project::new();
    let server = p.serve(|c| c.http_port = Some(0)).await;
    let mut events = server.subscribe();
    let addr = server.http_addr.unwrap();
    let holder = rusqlite::Connection::open(p.path().join("otaforge.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let macs: Vec<String> = (0..30).map(|i| mac(0xD0, i)).collect();
    for m in &macs {
        assert_eq!(check_in(addr, LOCAL, m).await.0, 304);
    }
    wait_for(&mut events, Duration::from_secs(15), "the backlog", backlog).await;
    // Stopping while the database refuses: the backlog goes to the spill file, owner-only.
    server.shutdown().await;
    let spill = p.path().join(otaforge_server::inventory::BACKLOG_FILE);
    assert!(spill.exists(), "the backlog is on disk after the server stopped");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&spill).unwrap().permissions().mode() & 0o777, 0o600);
    }
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);

    // The next server has them in its inventory at once, and saves them.
    let next = p.serve(|_| {}).await;
    let known = next.devices();
    assert!(macs.iter().all(|m| known.iter().any(|d| &d.mac == m)), "the next server knows every device");
    let (devices, requests) = wait_stored(p.path(), &macs, Duration::from_secs(15)).await;
    eprintln!("after a restart: {devices} of 30 devices, {requests} of 30 requests stored");
    assert_eq!((devices, requests), (30, 30));
    assert!(!spill.exists(), "the spill file is gone once saved");
    next.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn serve_says_when_the_inventory_waits_and_where_it_is_kept_at_stop() {
    use std::io::BufRead;
    let p = Project::new();
    let (port, http) = (free_port(), free_port());
    let mut child = crate::support::otaforge(p.path())
        .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string(), "--http-port", &http.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(_) => panic!("serve never printed {what:?}"),
            }
        }
    };
    wait_line("Plain HTTP on");

    let holder = rusqlite::Connection::open(p.path().join("otaforge.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    for i in 0..5 {
        assert_eq!(check_in(addr, LOCAL, &mac(0xF0, i)).await.0, 304);
    }
    let line = wait_line("inventory not saved");
    assert!(line.contains("database is locked") && line.contains("retrying"), "{line}");
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let status = wait_line("Inventory:");
    assert!(
        status.contains(otaforge_server::inventory::BACKLOG_FILE) && status.contains("next serve"),
        "{status}"
    );
    assert!(child.wait().unwrap().success());
    holder.execute_batch("COMMIT").unwrap();
    assert!(p.path().join(otaforge_server::inventory::BACKLOG_FILE).exists());
}

/// Sends `n` check-ins of made-up MACs (`prefix`) from `from`, 16 at a time; their answers.
async fn flood(
    addr: SocketAddr,
    from: impl Fn(u32) -> IpAddr + Send + Sync + 'static,
    prefix: u8,
    n: u32,
) -> Vec<(u16, Option<String>)> {
    let from = std::sync::Arc::new(from);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16u32 {
        let from = from.clone();
        tasks.spawn(async move {
            let mut answers = Vec::new();
            for i in (worker..n).step_by(16) {
                answers.push(check_in(addr, from(i), &mac(prefix, i)).await);
            }
            answers
        });
    }
    tasks.join_all().await.into_iter().flatten().collect()
}

/// Distinct MACs of `prefix` the request history names.
fn history_macs(dir: &Path, prefix: u8) -> i64 {
    let db = rusqlite::Connection::open(dir.join("otaforge.db")).unwrap();
    let pattern = format!("02:{prefix:02X}:%");
    db.query_row("SELECT count(DISTINCT mac) FROM requests WHERE mac LIKE ?1", [pattern], |r| r.get(0))
        .unwrap()
}

#[test]
fn two_thousand_made_up_macs_from_one_address_cannot_fill_the_inventory() {
    if inside_namespace(
        "inventory::two_thousand_made_up_macs_from_one_address_cannot_fill_the_inventory",
        &["--net"],
    ) {
        addresses_on_loopback();
        runtime().block_on(one_address_floods());
    }
}

async fn one_address_floods() {
    let p = Project::new();
    let server = p.serve(|c| c.http_port = Some(0)).await;
    let addr = server.http_addr.unwrap();
    // A real device the server already knows, behind the address the flood will come from.
    let nat = remote(1, 1);
    let known = "18:FE:34:00:00:01".to_string();
    assert_eq!(check_in(addr, nat, &known).await.0, 304);

    let mut events = server.subscribe();
    let watch = tokio::spawn(async move {
        wait_for(&mut events, Duration::from_secs(30), "new MACs refused", |ev| match ev {
            ServerEvent::NewDevicesRateLimited { remote, per_minute, refused } => {
                Some((*remote, *per_minute, *refused))
            }
            _ => None,
        })
        .await
    });
    let started = Instant::now();
    let answers = flood(addr, move |_| nat, 0xBB, 2000).await;
    let took = started.elapsed();
    let (from, per_minute, refused) = watch.await.unwrap();
    let devices = server.devices();
    eprintln!(
        "2000 made-up MACs from one address in {took:?}: {} devices in the inventory; first event: {refused} refused from {from} (> {per_minute}/min)",
        devices.len()
    );
    assert_eq!(answers.len(), 2000);
    assert!(answers.iter().all(|(status, _)| *status == 304), "every one answered as a device expects");
    let refused_answers = answers
        .iter()
        .filter(|(_, reason)| reason.as_deref().is_some_and(|r| r.contains("not admitted")))
        .count();
    assert_eq!(refused_answers, 1981, "every MAC past the first 19 is told why");
    assert_eq!(devices.len(), 20, "the known device and 19 new ones (20 new MACs a minute from one address)");
    assert_eq!((from, per_minute), (nat, 20));

    // The known device, behind that same address, is still served and its record kept current.
    let (status, _) = check_in_running(addr, nat, &known, "1.1", UNKNOWN_MD5).await;
    assert_eq!(status, 304);
    // A new real device behind another address is admitted.
    let newcomer = "18:FE:34:00:00:02".to_string();
    assert_eq!(check_in(addr, remote(2, 2), &newcomer).await.0, 304);
    let devices = server.devices();
    let version = devices.iter().find(|d| d.mac == known).and_then(|d| d.version.clone());
    assert_eq!(version.as_deref(), Some("1.1"));
    assert!(devices.iter().any(|d| d.mac == newcomer), "the new device from another address is admitted");
    // Loopback (this machine: simulated fleets, a local reverse proxy) is capped, not rate-limited.
    flood(addr, |_| LOCAL, 0xEE, 30).await;
    assert_eq!(server.devices().iter().filter(|d| d.mac.starts_with("02:EE:")).count(), 30);

    // Nor does the request history grow a device's worth for each refused MAC.
    server.flush().await;
    assert_eq!(history_macs(p.path(), 0xBB), 19);
    server.shutdown().await;
}

#[test]
fn devices_never_seen_to_install_anything_are_capped_and_known_ones_are_never_evicted() {
    const NAME: &str =
        "inventory::devices_never_seen_to_install_anything_are_capped_and_known_ones_are_never_evicted";
    if inside_namespace(NAME, &["--net"]) {
        addresses_on_loopback();
        runtime().block_on(many_addresses_flood());
    }
}

async fn many_addresses_flood() {
    let p = Project::new();
    let img = esp8266_image(60_000, 5);
    p.publish(&img, "1.0", "stable");
    let server = p
        .serve(|c| {
            c.http_port = Some(0);
            c.max_unproven_devices = 50;
        })
        .await;
    let addr = server.http_addr.unwrap();
    // A real device installs 1.0: it downloads it and comes back running it.
    let real = "18:FE:34:00:00:01".to_string();
    assert_eq!(check_in_running(addr, remote(0, 5), &real, "0.9", UNKNOWN_MD5).await.0, 200);
    assert_eq!(check_in_running(addr, remote(0, 5), &real, "1.0", &md5_hex(&img)).await.0, 304);

    // 600 made-up MACs, 20 from each of 30 addresses (within the per-address rate).
    let mut events = server.subscribe();
    let watch = tokio::spawn(async move {
        wait_for(&mut events, Duration::from_secs(30), "the cap", |ev| match ev {
            ServerEvent::NewDevicesCapped { max, .. } => Some(*max),
            _ => None,
        })
        .await
    });
    let answers = flood(addr, |i| remote(3, (i / 20) as u8), 0xCA, 600).await;
    assert_eq!(watch.await.unwrap(), 50);
    assert!(answers.iter().all(|(status, _)| *status == 304));
    let devices = server.devices();
    let made_up = devices.iter().filter(|d| d.mac.starts_with("02:CA:")).count();
    eprintln!("600 made-up MACs from 30 addresses: {made_up} admitted under a cap of 50");
    assert_eq!(made_up, 50);

    // The device that installed something is served and kept; nothing admitted was evicted.
    let (status, _) = check_in_running(addr, remote(4, 1), &real, "1.0", &md5_hex(&img)).await;
    assert_eq!(status, 304);
    let before: Vec<String> = devices.iter().map(|d| d.mac.clone()).collect();
    let after = server.devices();
    assert!(before.iter().all(|m| after.iter().any(|d| &d.mac == m)), "no device was evicted");
    let d = after.iter().find(|d| d.mac == real).unwrap();
    assert_eq!(d.state, otaforge_store::DeviceState::Installed, "{d:?}");
    // A new MAC, even from a fresh address, waits until there is room.
    check_in(addr, remote(4, 2), "18:FE:34:00:00:03").await;
    assert!(!server.devices().iter().any(|d| d.mac == "18:FE:34:00:00:03"));
    server.shutdown().await;
}

/// Set in the copy of this test binary that runs inside its own namespaces.
const IN_NAMESPACE: &str = "OTAFORGE_TEST_NAMESPACE";

/// Whether this is the copy of the test binary running test `name` inside private namespaces
/// (`unshare` options: `--mount`, `--net`), as root or as root of a new user namespace, where it
/// may mount a small filesystem or give loopback more addresses, and nothing outlives it. In the
/// outer process this runs that copy, checks that it passed and returns false.
fn inside_namespace(name: &str, namespaces: &[&str]) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return true;
    }
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = Command::new("unshare");
    if !root {
        cmd.arg("--map-root-user");
    }
    // The test's name as this binary knows it: this module's path (without the binary's name)
    // and the function's name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let name = format!("{module}::{}", name.rsplit("::").next().unwrap_or(name));
    cmd.args(namespaces)
        .args(["--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", &name, "--nocapture", "--test-threads", "1"])
        .env(IN_NAMESPACE, "1");
    let out = cmd.output().expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    // unshare itself failing (no privileges, user namespaces disabled) exits before the test.
    assert!(
        stdout.contains("running 1 test"),
        "this test needs private namespaces ({namespaces:?}): run it as root or allow unprivileged user namespaces"
    );
    assert!(out.status.success() && stdout.contains("1 passed"), "the test failed in its namespace");
    false
}

/// Makes every 10.9.x.y address local (inside a private network namespace), so connections to
/// the server can come from many addresses that are not loopback.
fn addresses_on_loopback() {
    for args in [&["link", "set", "lo", "up"][..], &["route", "add", "local", "10.9.0.0/16", "dev", "lo"]] {
        let status = Command::new("ip").args(args).status().expect("run ip (iproute2)");
        assert!(status.success(), "ip {args:?}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// A tmpfs of `mb` MiB mounted on a fresh directory (only ever called inside a private mount
/// namespace, so nothing outlives the test).
fn small_filesystem(mb: u32) -> tempfile::TempDir {
    let mount = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m,mode=0700"), "tmpfs"])
        .arg(mount.path())
        .status()
        .unwrap();
    assert!(status.success(), "mount a {mb} MiB tmpfs");
    mount
}

/// A project with certificates in a directory under `parent`.
fn project_in(parent: &Path) -> Project {
    let dir = tempfile::tempdir_in(parent).unwrap();
    let hosts = ["ota.test", "127.0.0.1"].iter().map(|h| otaforge_pki::Host::parse(h).unwrap()).collect();
    otaforge_pki::generate(dir.path(), &otaforge_pki::IssueRequest::new(hosts), false).unwrap();
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    Project { dir, ca_pem }
}

/// Writes zeros to `path` until the filesystem is full; the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected, got {e}");
                break;
            }
        }
    }
    // The last few bytes a partial write may have left.
    while let Ok(n) = f.write(&chunk[..512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    written
}

#[test]
fn check_ins_answered_while_the_disk_is_full_are_all_stored_once_space_returns() {
    const NAME: &str =
        "inventory::check_ins_answered_while_the_disk_is_full_are_all_stored_once_space_returns";
    if !inside_namespace(NAME, &["--mount"]) {
        return;
    }
    let fs = small_filesystem(24);
    let p = project_in(fs.path());
    runtime().block_on(async {
        let server = p.serve(|c| c.http_port = Some(0)).await;
        let mut events = server.subscribe();
        let addr = server.http_addr.unwrap();
        // Nothing the WAL already holds can take new pages: every write must find new space.
        let db = rusqlite::Connection::open(p.path().join("otaforge.db")).unwrap();
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        drop(db);
        let filler = fs.path().join("filler");
        let filled = fill(&filler);
        eprintln!("filled the filesystem with {filled} bytes");

        let macs: Vec<String> = (0..50).map(|i| mac(0xC0, i)).collect();
        for m in &macs {
            let (status, _) = check_in(addr, LOCAL, m).await;
            assert_eq!(status, 304, "{m} answered");
        }
        let (held, spilled, why) = wait_for(&mut events, Duration::from_secs(10), "the backlog", backlog).await;
        eprintln!("backlog: {held} held, {spilled} spilled ({why})");
        let (during, _) = stored(p.path(), &macs);
        assert!(during < macs.len(), "the full disk did not stop the writes ({during} stored)");

        std::fs::remove_file(&filler).unwrap();
        let freed = Instant::now();
        let saved = wait_for(&mut events, Duration::from_secs(10), "the backlog saved", caught_up).await;
        let (devices, requests) = stored(p.path(), &macs);
        eprintln!(
            "{:?} after space came back: {saved} records saved; {devices} of 50 devices, {requests} of 50 requests stored",
            freed.elapsed()
        );
        assert_eq!((devices, requests), (50, 50), "every answered check-in is stored");
        server.shutdown().await;
    });
}
