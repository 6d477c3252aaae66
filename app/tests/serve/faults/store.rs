//! The store on a bad day: a database gone or emptied next to the firmware it described, a
//! damaged firmware file, a row someone wrote by hand, a read-only directory and a full disk.
//! Each is stated in words, and what is still sound goes on being served.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Project, device_get, esp8266_headers, esp8266_image, otaforge};
use otaforge_server::ServerEvent;

const UNKNOWN_MD5: &str = "00000000000000000000000000000000";

/// What a command did: its exit (None: still running when it printed that it serves, or at the
/// deadline, and killed) and everything it printed.
struct Ran {
    exit: Option<std::process::ExitStatus>,
    output: String,
}

/// Runs an otaforge command for at most 20 s; `serve` is stopped as soon as it says it serves.
fn run_bounded(cmd: &mut Command) -> Ran {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run otaforge");
    let (tx, rx) = mpsc::channel::<Option<String>>();
    let out = child.stdout.take().unwrap();
    let tx_out = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx_out.send(Some(line));
        }
        let _ = tx_out.send(None);
    });
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        // Nothing on stderr adds no line: an empty one landing between a release and its
        // "disabled" line made the listing check fail now and then.
        if !s.is_empty() {
            let _ = tx.send(Some(s.trim_end().to_string()));
        }
        let _ = tx.send(None);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut output = String::new();
    let mut closed = 0;
    while closed < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(text)) => {
                let serving = text.contains("Serving updates");
                output.push_str(&text);
                output.push('\n');
                if serving {
                    break;
                }
            }
            Ok(None) => closed += 1,
            Err(_) => break,
        }
    }
    if closed < 2 {
        let _ = child.kill();
        let _ = child.wait();
        return Ran { exit: None, output };
    }
    Ran { exit: Some(child.wait().unwrap()), output }
}

fn blob_path(dir: &Path, release: &otaforge_store::Release) -> PathBuf {
    dir.join("blobs").join(format!("{}.bin", release.sha256))
}

fn db_files(dir: &Path) -> Vec<(String, u64)> {
    ["otaforge.db", "otaforge.db-wal", "otaforge.db-shm"]
        .iter()
        .filter_map(|n| std::fs::metadata(dir.join(n)).ok().map(|m| (n.to_string(), m.len())))
        .collect()
}

/// Waits (at most 10 s) for events of the variant named `variant`, one mentioning each of
/// `needles` (in any order), and returns their fields in the order of `needles`.
async fn wait_events(
    events: &mut tokio::sync::broadcast::Receiver<ServerEvent>,
    variant: &str,
    needles: &[&str],
) -> Vec<serde_json::Value> {
    let mut found: Vec<Option<serde_json::Value>> = vec![None; needles.len()];
    let wait = async {
        while found.iter().any(Option::is_none) {
            match events.recv().await {
                Ok(ev) => {
                    let json = serde_json::to_value(&ev).unwrap();
                    let Some(fields) = json.get(variant) else { continue };
                    for (slot, needle) in found.iter_mut().zip(needles) {
                        if slot.is_none() && fields.to_string().contains(needle) {
                            *slot = Some(fields.clone());
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), wait).await.is_err() {
        panic!("no {variant} event for each of {needles:?}; found {found:?}");
    }
    found.into_iter().map(Option::unwrap).collect()
}

#[test]
fn a_missing_or_empty_database_next_to_firmware_is_an_error_and_nothing_is_created() {
    let p = Project::new();
    p.publish(&esp8266_image(60_000, 1), "1.0", "stable");
    p.publish(&esp8266_image(60_000, 2), "1.1", "beta");
    let fw = p.path().join("fw.bin");
    std::fs::write(&fw, esp8266_image(60_000, 3)).unwrap();
    let fw = fw.to_str().unwrap().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["releases"],
        vec!["devices"],
        vec!["rollout", "--percent", "50"],
        vec!["publish", &fw, "--version", "2.0"],
        vec!["serve", "--bind", "127.0.0.1", "--port", "0"],
    ];
    for case in ["missing", "empty"] {
        for f in ["otaforge.db", "otaforge.db-wal", "otaforge.db-shm"] {
            let _ = std::fs::remove_file(p.path().join(f));
        }
        if case == "empty" {
            std::fs::write(p.path().join("otaforge.db"), b"").unwrap();
        }
        let before = db_files(p.path());
        for args in &commands {
            let ran = run_bounded(otaforge(p.path()).args(args));
            let what = format!("{case} database, otaforge {}: {}", args.join(" "), ran.output);
            assert!(ran.exit.is_some_and(|s| !s.success()), "refused: {what}");
            assert!(ran.output.contains("otaforge.db") && ran.output.contains(case), "says what: {what}");
            assert!(ran.output.contains("backup") && ran.output.contains("blobs"), "says how: {what}");
            assert_eq!(db_files(p.path()), before, "nothing created: {what}");
        }
        let e = otaforge_store::Store::open(p.path()).err().expect("Store::open refuses");
        assert!(e.to_string().contains("backup"), "{e}");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let cfg = otaforge_server::ServeConfig {
            bind: "127.0.0.1".parse().unwrap(),
            port: 0,
            ..Default::default()
        };
        let started = rt.block_on(otaforge_server::start(p.path(), cfg));
        let e = started.err().expect("the server refuses to start");
        assert!(e.to_string().contains("backup"), "{e}");
        assert_eq!(db_files(p.path()), before, "nothing created ({case})");
    }
}

#[test]
fn a_brand_new_project_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("new");
    otaforge_store::Store::open(&fresh).expect("a new project");
    // An empty blobs/ (no firmware) beside no database is a new project too.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("blobs")).unwrap();
    let ran = run_bounded(otaforge(&other).arg("releases"));
    assert!(ran.exit.is_some_and(|s| s.success()), "{}", ran.output);
    assert!(ran.output.contains("No releases yet"), "{}", ran.output);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_firmware_file_disables_its_release_only() {
    let p = Project::new();
    // Odd seeds: the image builder's generator ignores the lowest bit.
    let good = esp8266_image(80_000, 1);
    let stable = p.publish(&good, "1.0", "stable");
    let beta = p.publish(&esp8266_image(80_000, 3), "1.1", "beta");
    let canary = p.publish(&esp8266_image(80_000, 5), "1.2", "canary");
    let gone = p.publish(&esp8266_image(80_000, 7), "1.3", "nightly");
    // beta: one byte changed; canary: truncated; nightly: the file is gone.
    let mut bytes = std::fs::read(blob_path(p.path(), &beta)).unwrap();
    bytes[40_000] ^= 0xFF;
    std::fs::write(blob_path(p.path(), &beta), &bytes).unwrap();
    let canary_bytes = std::fs::read(blob_path(p.path(), &canary)).unwrap();
    std::fs::write(blob_path(p.path(), &canary), &canary_bytes[..50_000]).unwrap();
    std::fs::remove_file(blob_path(p.path(), &gone)).unwrap();

    let cfg =
        otaforge_server::ServeConfig { bind: "127.0.0.1".parse().unwrap(), port: 0, ..Default::default() };
    let server =
        otaforge_server::start(p.path(), cfg).await.expect("the server starts with damaged firmware");
    let mut events = server.subscribe();
    let disabled =
        wait_events(&mut events, "ReleaseDisabled", &["\"beta\"", "\"canary\"", "\"nightly\""]).await;
    for (ev, needle) in disabled.iter().zip(["damaged", "truncated", "missing"]) {
        assert!(ev.to_string().contains(needle), "{ev}");
    }
    let client = p.client(server.tls_addr);
    let base = format!("https://ota.test:{}/update", server.tls_addr.port());
    let h = esp8266_headers("18:FE:34:00:00:01", Some("0.1"), UNKNOWN_MD5);
    let r = device_get(&client, &base, &h).await;
    assert_eq!(r.status(), 200, "the sound channel is served");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &good[..]);
    for (release, needle) in [(&beta, "damaged"), (&canary, "truncated"), (&gone, "missing")] {
        let r = device_get(&client, &format!("{base}/{}", release.channel), &h).await;
        assert_eq!(r.status(), 304, "{}", release.channel);
        let reason = r.headers()["x-ota-forge-reason"].to_str().unwrap().to_string();
        assert!(reason.contains("disabled") && reason.contains(needle), "{}: {reason}", release.channel);
    }

    // Damaged while serving: found at the next reload, and only that channel stops.
    let mut bytes = good.clone();
    bytes[100] ^= 0xFF;
    std::fs::write(blob_path(p.path(), &stable), &bytes).unwrap();
    server.reload().unwrap();
    wait_events(&mut events, "ReleaseDisabled", &["\"stable\""]).await;
    let r = device_get(&client, &base, &h).await;
    assert_eq!(r.status(), 304);
    // Put back (from a backup): served again at the next reload.
    std::fs::write(blob_path(p.path(), &beta), esp8266_image(80_000, 3)).unwrap();
    server.reload().unwrap();
    let r = device_get(&client, &format!("{base}/beta"), &h).await;
    assert_eq!(r.status(), 200, "beta is served again once its file is sound");
    server.shutdown().await;

    // The listing says which release is disabled, and why.
    let ran = run_bounded(otaforge(p.path()).arg("releases"));
    eprintln!("{}", ran.output);
    assert!(ran.exit.is_some_and(|s| s.success()), "{}", ran.output);
    for (release, needle) in [(&stable, "damaged"), (&canary, "truncated"), (&gone, "missing")] {
        let line = ran
            .output
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(&format!("{}*", release.id)))
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(line.contains("disabled") && line.contains(needle), "#{}: {}", release.id, ran.output);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_cannot_be_read_is_reported_with_its_key_and_the_rest_is_served() {
    let p = Project::new();
    let good = esp8266_image(60_000, 1);
    p.publish(&good, "1.0", "stable");
    let beta = p.publish(&esp8266_image(60_000, 3), "1.1", "beta");
    let old = p.publish(&esp8266_image(60_000, 5), "1.2", "gamma");
    p.publish(&esp8266_image(60_000, 7), "1.3", "gamma");
    p.publish(&esp8266_image(60_000, 9), "1.4", "delta");
    {
        // What someone with the sqlite3 shell might leave: text where a number belongs.
        let db = rusqlite::Connection::open(p.path().join("otaforge.db")).unwrap();
        db.execute("UPDATE releases SET size = 'lots' WHERE id = ?1", [beta.id]).unwrap();
        db.execute("UPDATE releases SET published_at = 'yesterday' WHERE id = ?1", [old.id]).unwrap();
        db.execute("UPDATE channels SET paused = 'maybe' WHERE name = 'delta'", []).unwrap();
    }
    let cfg =
        otaforge_server::ServeConfig { bind: "127.0.0.1".parse().unwrap(), port: 0, ..Default::default() };
    let server = otaforge_server::start(p.path(), cfg).await.expect("the server starts with a bad row");
    let mut events = server.subscribe();
    let (b, o) = (format!("release #{}", beta.id), format!("release #{}", old.id));
    let rows = wait_events(&mut events, "RowUnreadable", &[&b, &o, "delta"]).await;
    assert!(rows[0].to_string().contains("size"), "{}", rows[0]);

    let client = p.client(server.tls_addr);
    let base = format!("https://ota.test:{}/update", server.tls_addr.port());
    let h = esp8266_headers("18:FE:34:00:00:02", Some("0.1"), UNKNOWN_MD5);
    let r = device_get(&client, &base, &h).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &good[..]);
    // gamma's current release is sound (only an old one is bad): served.
    assert_eq!(device_get(&client, &format!("{base}/gamma"), &h).await.status(), 200);
    for (channel, key) in [("beta", format!("#{}", beta.id)), ("delta", "delta".to_string())] {
        let r = device_get(&client, &format!("{base}/{channel}"), &h).await;
        assert_eq!(r.status(), 304, "{channel}");
        let reason = r.headers()["x-ota-forge-reason"].to_str().unwrap().to_string();
        assert!(reason.contains(&key) && reason.contains("cannot be read"), "{channel}: {reason}");
    }
    server.shutdown().await;

    let ran = run_bounded(otaforge(p.path()).arg("releases"));
    eprintln!("{}", ran.output);
    assert!(ran.exit.is_some_and(|s| s.success()), "{}", ran.output);
    assert!(ran.output.contains(&format!("release #{} cannot be read", beta.id)), "{}", ran.output);
    assert!(ran.output.contains("channel \"delta\" cannot be read"), "{}", ran.output);
    assert!(ran.output.contains("1.0") && ran.output.contains("1.3"), "the rest is listed: {}", ran.output);
}

#[test]
fn a_missing_firmware_file_is_not_called_a_write_error() {
    let p = Project::new();
    let beta = p.publish(&esp8266_image(60_000, 1), "1.0", "beta");
    std::fs::remove_file(blob_path(p.path(), &beta)).unwrap();
    let id = beta.id.to_string();
    let ran = run_bounded(otaforge(p.path()).args(["rollout", "--promote", &id, "--channel", "stable"]));
    assert!(ran.exit.is_some_and(|s| !s.success()), "{}", ran.output);
    assert!(!ran.output.contains("cannot write"), "{}", ran.output);
    assert!(ran.output.contains("missing"), "{}", ran.output);
}

/// A tmpfs mounted for one test (needs root; the test is skipped without), unmounted at the end.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("mnt");
        std::fs::create_dir(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Tmpfs(at, dir))
    }

    fn remount(&self, opt: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,{opt}")]).arg(&self.0).status();
        assert!(ok.unwrap().success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_read_only_directory_and_a_full_disk_are_said_in_words() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let dir = fs.0.join("project");
    drop(otaforge_store::Store::open(&dir).unwrap());

    fs.remount("ro");
    let ran = run_bounded(otaforge(&dir).arg("releases"));
    assert!(ran.exit.is_some_and(|s| !s.success()), "{}", ran.output);
    assert!(!ran.output.contains("unable to open database file"), "{}", ran.output);
    assert!(ran.output.contains("read-only"), "{}", ran.output);
    fs.remount("rw");

    // Fill the disk, then start: SQLite cannot make its shared-memory file.
    let mut filler = std::fs::File::create(fs.0.join("filler")).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    drop(filler);
    for args in [vec!["releases"], vec!["devices"]] {
        let ran = run_bounded(otaforge(&dir).args(&args));
        assert!(ran.exit.is_some_and(|s| !s.success()), "{}", ran.output);
        assert!(!ran.output.contains("xShmMap"), "{}", ran.output);
        assert!(ran.output.contains("full"), "{}", ran.output);
    }
}
