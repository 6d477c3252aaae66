//! Secrets at rest: a project readable only by its owner, channel passwords kept as salted hashes,
//! `Authorization` values never stored or logged, and HTTP Basic checked the way RFC 7617 reads.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{Project, device_get, esp8266_headers, esp8266_image, otaforge, run};
use base64::Engine;
use otaforge_store::Store;

const MAC: &str = "18:FE:34:A1:B2:C3";
const UNKNOWN_MD5: &str = "00000000000000000000000000000000";

fn basic(scheme: &str, user: &str, pass: &str) -> (String, String) {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    ("Authorization".to_string(), format!("{scheme} {token}"))
}

/// `otaforge serve` as a real process; stdout lines on a channel, stderr collected.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: std::thread::JoinHandle<Vec<String>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Serve {
    fn start(dir: &Path, port: u16, env: &[(&str, &str)]) -> Serve {
        let mut child = otaforge(dir)
            .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let serve = Serve { child, lines, stdout, stderr };
        let first = serve.lines.recv_timeout(Duration::from_secs(20)).expect("serve starts");
        assert!(first.contains("Serving updates"), "{first}");
        serve
    }

    /// Stops it the way systemd does (the inventory reaches the disk) and returns everything it printed.
    fn stop(mut self) -> String {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        let stdout = self.stdout.join().unwrap().join("\n");
        format!("{stdout}\n{}", self.stderr.join().unwrap())
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every file and directory under `dir` another user could read, with its mode. Certificates
/// (`*.pem`) are public by design: they go into firmware.
#[cfg(unix)]
fn readable_by_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    if mode != 0o700 {
        found.push((dir.to_path_buf(), mode));
    }
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            found.extend(readable_by_others(&path));
        } else {
            let mode = meta.permissions().mode() & 0o777;
            let public = path.extension().is_some_and(|e| e == "pem");
            if !public && mode & 0o077 != 0 {
                found.push((path, mode));
            }
        }
    }
    found
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn everything_in_a_project_is_private_after_serve_and_publish() {
    use std::os::unix::fs::PermissionsExt;
    let p = Project::new();
    // A project directory made before OTA Forge tightened it.
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tempfile::tempdir().unwrap();
    let fw = work.path().join("fw.bin");
    std::fs::write(&fw, esp8266_image(100_000, 21)).unwrap();

    let (out, stdout, stderr) =
        run(otaforge(p.path()).args(["publish", fw.to_str().unwrap(), "--version", "1.0"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    let said = format!("{stdout}{stderr}");
    assert!(said.contains("0755") && said.contains("0700"), "no note about tightening: {said}");

    let port = free_port();
    let serve = Serve::start(p.path(), port, &[]);
    let client = p.client(format!("127.0.0.1:{port}").parse().unwrap());
    let url = format!("https://ota.test:{port}/update");
    let r = device_get(&client, &url, &esp8266_headers(MAC, Some("0.9"), UNKNOWN_MD5)).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    // While serving (WAL and shared-memory files exist) and after.
    let open = readable_by_others(p.path());
    let log = serve.stop();
    let stopped = readable_by_others(p.path());
    assert!(open.is_empty() && stopped.is_empty(), "while serving: {open:?}\nafter: {stopped:?}\n{log}");
    // The note is given once: the directory is private now.
    let (_, stdout, stderr) = run(otaforge(p.path()).arg("releases"));
    assert!(!format!("{stdout}{stderr}").contains("0700"), "{stdout}{stderr}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn no_password_or_authorization_value_is_kept_in_the_database_log_or_history() {
    const PASSWORD: &str = "Xyzzy-plugh-42";
    const WRONG: &str = "Wrong-guess-77";
    let p = Project::new();
    p.publish(&esp8266_image(60_000, 22), "1.0.0", "beta");
    Store::open(p.path()).unwrap().set_auth("beta", Some(("dev", PASSWORD))).unwrap();

    let port = free_port();
    let serve = Serve::start(p.path(), port, &[("RUST_LOG", "debug")]);
    let client = p.client(format!("127.0.0.1:{port}").parse().unwrap());
    let url = format!("https://ota.test:{port}/update/beta");
    let mut h = esp8266_headers(MAC, Some("0.9"), UNKNOWN_MD5);
    h.push(basic("Basic", "dev", WRONG));
    assert_eq!(device_get(&client, &url, &h).await.status(), 401);
    h.pop();
    h.push(basic("Basic", "dev", PASSWORD));
    let r = device_get(&client, &url, &h).await;
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let log = serve.stop();

    let history = Store::open(p.path()).unwrap().requests(MAC, 100).unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    let history_text: String = history.iter().map(|r| format!("{}\n", r.headers)).collect();
    assert!(
        history_text.to_ascii_lowercase().contains("authorization"),
        "the header is listed: {history_text}"
    );
    let mut kept = log.into_bytes();
    kept.extend_from_slice(history_text.as_bytes());
    for name in ["otaforge.db", "otaforge.db-wal", "otaforge.db-shm"] {
        if let Ok(bytes) = std::fs::read(p.path().join(name)) {
            kept.extend_from_slice(&bytes);
        }
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [
        PASSWORD.to_string(),
        WRONG.to_string(),
        b64(&format!("dev:{PASSWORD}")),
        b64(&format!("dev:{WRONG}")),
    ] {
        assert!(!kept.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is kept");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_takes_any_case_of_the_scheme_and_refuses_empty_and_wrong_passwords() {
    let p = Project::new();
    p.publish(&esp8266_image(50_000, 23), "1.0.0", "beta");
    {
        let mut store = Store::open(p.path()).unwrap();
        assert!(store.set_auth("beta", Some(("dev", ""))).is_err(), "an empty password is refused");
        store.set_auth("beta", Some(("dev", "s3cret"))).unwrap();
    }
    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update/beta", server.tls_addr.port());
    let h = esp8266_headers(MAC, Some("0.9"), UNKNOWN_MD5);
    for (auth, want) in [
        (basic("Basic", "dev", "s3cret"), 200),
        (basic("basic", "dev", "s3cret"), 200),
        (basic("BASIC", "dev", "s3cret"), 200),
        (basic("Basic", "dev", ""), 401),
        (basic("Basic", "dev", "s3cre"), 401),
        (basic("Basic", "dev", "s3cret!"), 401),
        (basic("Basic", "eve", "s3cret"), 401),
        (basic("Bearer", "dev", "s3cret"), 401),
    ] {
        let mut with = h.clone();
        with.push(auth.clone());
        let r = device_get(&client, &url, &with).await;
        assert_eq!(r.status(), want, "{auth:?}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_auth_takes_the_password_from_a_file_or_the_environment_never_the_command_line() {
    let p = Project::new();
    p.publish(&esp8266_image(50_000, 24), "1.0.0", "beta");
    let work = tempfile::tempdir().unwrap();
    let rollout = |extra: &[&str], env: Option<&str>| {
        let mut cmd = otaforge(p.path());
        cmd.args(["rollout", "--channel", "beta"]).args(extra).stdin(Stdio::null());
        cmd.env_remove("OTAFORGE_AUTH_PASSWORD");
        if let Some(v) = env {
            cmd.env("OTAFORGE_AUTH_PASSWORD", v);
        }
        let (out, stdout, stderr) = run(&mut cmd);
        (out.status.success(), format!("{stdout}{stderr}"))
    };

    // The old USER:PASSWORD form would show the password to every user (ps, shell history).
    let (ok, out) = rollout(&["--auth", "dev:hunter2"], None);
    assert!(!ok && out.contains("--auth-password-file"), "{out}");
    // No password from anywhere, and no terminal to ask on.
    let (ok, out) = rollout(&["--auth", "dev"], None);
    assert!(!ok && out.contains("OTAFORGE_AUTH_PASSWORD"), "{out}");
    let empty = work.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let (ok, out) = rollout(&["--auth", "dev", "--auth-password-file", empty.to_str().unwrap()], None);
    assert!(!ok && out.contains("empty"), "{out}");
    let (ok, out) = rollout(&["--auth", "dev"], Some(""));
    assert!(!ok && out.contains("empty"), "{out}");

    let file = work.path().join("pw");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let (ok, out) = rollout(&["--auth", "dev", "--auth-password-file", file.to_str().unwrap()], None);
    assert!(ok, "{out}");
    assert!(out.contains("\"dev\"") && out.contains(file.to_str().unwrap()), "says what it set: {out}");
    assert!(!out.contains("from-a-file"), "{out}");

    let server = p.serve(|_| {}).await;
    let client = p.client(server.tls_addr);
    let url = format!("https://ota.test:{}/update/beta", server.tls_addr.port());
    let answer = |pass: &'static str| {
        let mut h = esp8266_headers(MAC, Some("0.9"), UNKNOWN_MD5);
        h.push(basic("Basic", "dev", pass));
        let (client, url) = (client.clone(), url.clone());
        async move { device_get(&client, &url, &h).await.status() }
    };
    assert_eq!(answer("from-a-file").await, 200, "the trailing newline is not part of the password");

    let (ok, out) = rollout(&["--auth", "dev"], Some("from-the-env"));
    assert!(ok && out.contains("OTAFORGE_AUTH_PASSWORD"), "{out}");
    server.reload().unwrap();
    assert_eq!(answer("from-the-env").await, 200);
    assert_eq!(answer("from-a-file").await, 401);

    let (ok, out) = rollout(&["--auth", "-"], None);
    assert!(ok && out.contains("no credentials"), "{out}");
    server.reload().unwrap();
    assert_eq!(answer("anything").await, 200);
    server.shutdown().await;
}
