//! The update server's command line as a user runs it: publish refusals that store nothing, a
//! publish that hits a full disk, and `otaforge serve` + `otaforge check` as real processes.

use crate::support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use otaforge_store::Store;
use support::{Project, esp8266_image, otaforge, run};

fn publish(p: &Project, file: &std::path::Path, version: &str) -> (bool, String) {
    let (out, stdout, stderr) =
        run(otaforge(p.path()).args(["publish", file.to_str().unwrap(), "--version", version]));
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn release_count(p: &Project) -> usize {
    Store::open(p.path()).unwrap().releases(None).unwrap().len()
}

#[test]
fn wrong_files_and_versions_are_refused_with_reasons_and_nothing_is_stored() {
    let p = Project::new();
    let dir = p.path();
    let text = dir.join("notes.txt");
    std::fs::write(&text, "hello world\n").unwrap();
    let empty = dir.join("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let mut damaged = esp8266_image(60_000, 1);
    let last = damaged.len() - 1;
    damaged[last] ^= 0xFF;
    let damaged_file = dir.join("damaged.bin");
    std::fs::write(&damaged_file, &damaged).unwrap();
    let good = dir.join("good.bin");
    std::fs::write(&good, esp8266_image(60_000, 2)).unwrap();

    for (file, version, want) in [
        (&text, "1.0", "not a firmware image"),
        (&empty, "1.0", "empty"),
        (&damaged_file, "1.0", "damaged"),
        (&good, "latest", "not a version"),
        (&good, &"1".repeat(10_000), "at most 64"),
    ] {
        let (ok, out) = publish(&p, file, version);
        assert!(!ok, "{} {version} accepted", file.display());
        assert!(out.contains(want), "{want}: {out}");
    }
    assert_eq!(release_count(&p), 0);

    let (ok, out) = publish(&p, &good, "1.10");
    assert!(ok, "{out}");
    let (ok, out) = publish(&p, &good, "1.9");
    assert!(!ok && out.contains("not newer than 1.10"), "{out}");
    assert_eq!(release_count(&p), 1);
    let (out, listing, _) = run(otaforge(dir).args(["releases"]));
    assert!(out.status.success() && listing.contains("1.10") && listing.contains('*'), "{listing}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_during_publish_is_a_clear_error_and_stores_nothing() {
    let p = Project::new();
    let file = p.path().join("big.bin");
    std::fs::write(&file, esp8266_image(2 * 1024 * 1024, 3)).unwrap();
    // A 512 KiB file-size limit makes the blob write fail part-way, as a full disk does
    // (SIGXFSZ ignored so the write returns an error instead of killing the process).
    let script = format!(
        "trap '' XFSZ; ulimit -f 512; exec '{}' --dir '{}' publish '{}' --version 2.0.0",
        env!("CARGO_BIN_EXE_otaforge"),
        p.path().display(),
        file.display()
    );
    let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot write firmware"), "{stderr}");
    assert_eq!(release_count(&p), 0);
    let staging = std::fs::read_dir(p.path().join("blobs")).unwrap().count();
    assert_eq!(staging, 0, "the partial file is gone once the store is reopened");
}

/// A mistyped channel is refused and creates nothing (it used to become an empty channel).
#[test]
fn rollout_on_a_channel_that_does_not_exist_is_refused_and_creates_nothing() {
    let p = Project::new();
    let rollout = |args: &[&str]| {
        let (out, stdout, stderr) = run(otaforge(p.path()).arg("rollout").args(args));
        (out.status.success(), format!("{stdout}{stderr}"))
    };
    let (ok, out) = rollout(&["--channel", "stable", "--percent", "50"]);
    assert!(!ok && out.contains("publish a release first"), "{out}");
    p.publish(&esp8266_image(50_000, 31), "1.0.0", "stable");
    let (ok, out) = rollout(&["--channel", "stabel", "--percent", "50"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("no channel \"stabel\"")
            && out.contains("\"stable\"")
            && out.contains("--channel stabel"),
        "{out}"
    );
    let channels: Vec<String> =
        Store::open(p.path()).unwrap().channels().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(channels, ["stable"]);
    let (ok, out) = rollout(&["--channel", "stable", "--percent", "50"]);
    assert!(ok && out.contains("rollout 50%"), "{out}");
}

#[test]
fn serve_and_check_as_real_processes() {
    let p = Project::new();
    let img = p.path().join("fw.bin");
    std::fs::write(&img, esp8266_image(100_000, 4)).unwrap();
    let port = free_port();
    let mut server = otaforge(p.path())
        .args(["serve", "--bind", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("Serving updates on https://127.0.0.1"), "{first}");

    // Published by another process while serving: picked up without a restart.
    let (ok, out) = publish(&p, &img, "1.0.0");
    assert!(ok, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reloaded = false;
    while Instant::now() < deadline && !reloaded {
        reloaded = lines.next().unwrap().unwrap().contains("releases changed");
    }
    assert!(reloaded, "the server did not pick up the publish");

    let (out, stdout, stderr) =
        run(otaforge(p.path()).args(["check", "--host", "127.0.0.1", "--port", &port.to_string()]));
    // SIGTERM (what systemd and kill send) stops it cleanly, with the inventory flushed.
    let term = std::process::Command::new("kill").args(["-TERM", &server.id().to_string()]).status().unwrap();
    assert!(term.success());
    let stopped = lines.map_while(Result::ok).any(|l| l.contains("Stopping"));
    let status = server.wait().unwrap();
    assert!(stopped && status.success(), "serve did not stop cleanly on SIGTERM: {status:?}");
    assert!(out.status.success(), "{stdout}{stderr}");
    for want in ["✔ Handshake: TLS 1.2", "CHACHA20", "✔ Update check: serves 1.0.0 (", "Devices can update"]
    {
        assert!(stdout.contains(want), "{want}:\n{stdout}");
    }
}

#[test]
fn check_says_what_is_wrong_when_no_server_runs() {
    let p = Project::new();
    let (out, stdout, stderr) =
        run(otaforge(p.path()).args(["check", "--host", "127.0.0.1", "--port", &free_port().to_string()]));
    assert!(!out.status.success());
    assert!(
        stdout.contains("✖ Handshake") && stdout.contains("is otaforge serve running?"),
        "{stdout}{stderr}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `publish --gzip` stores a gzip'd file that unpacks to exactly the image given, and refuses what
/// no device would unpack.
#[test]
fn publish_gzip_stores_what_eboot_unpacks_to_the_image_and_refuses_esp32() {
    let p = Project::new();
    let image = esp8266_image(300_000, 5);
    let file = p.path().join("sketch.bin");
    std::fs::write(&file, &image).unwrap();
    let (out, stdout, stderr) =
        run(otaforge(p.path()).args(["publish", file.to_str().unwrap(), "--version", "1.0.0", "--gzip"]));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("gzip'd:") && stdout.contains("less"), "{stdout}");
    let release = Store::open(p.path()).unwrap().releases(None).unwrap().remove(0);
    let stored = otaforge_store::Blobs::open(&p.path().join("blobs")).unwrap().get(&release.sha256).unwrap();
    assert!(stored.starts_with(&[0x1F, 0x8B]) && stored.len() < image.len());
    let (unpacked, contents) = otaforge_firmware::gzip::unpack(&stored);
    assert_eq!((unpacked.as_deref(), contents.error), (Some(&image[..]), None));

    let esp32 = p.path().join("esp32.bin");
    std::fs::write(
        &esp32,
        otaforge_firmware::synth::ImageBuilder::esp32_app(otaforge_firmware::chip::Chip::Esp32).build(),
    )
    .unwrap();
    let (out, stdout, stderr) = run(otaforge(p.path()).args([
        "publish",
        esp32.to_str().unwrap(),
        "--version",
        "2.0.0",
        "--channel",
        "c3",
        "--gzip",
    ]));
    assert!(!out.status.success() && stderr.contains("ESP8266 sketches only"), "{stdout}{stderr}");
    assert_eq!(release_count(&p), 1);
}

#[test]
fn publish_sign_stores_images_the_projects_key_verifies_gzipd_ones_signed_after_compressing() {
    use otaforge_firmware::signature;
    use otaforge_pki::signing::{self, Family};
    let p = Project::new();
    let file = p.path().join("sketch.bin");
    std::fs::write(&file, esp8266_image(300_000, 5)).unwrap();
    let publish = |file: &std::path::Path, extra: &[&str]| {
        let mut cmd = otaforge(p.path());
        cmd.args(["publish", file.to_str().unwrap(), "--sign"]).args(extra);
        run(&mut cmd)
    };
    // No key yet: refused, naming the command that makes one, nothing stored.
    let (out, _, stderr) = publish(&file, &["--version", "1.0.0"]);
    assert!(!out.status.success() && stderr.contains("otaforge key new"), "{stderr}");
    assert_eq!(release_count(&p), 0);

    let (out, _, stderr) = run(otaforge(p.path()).args(["key", "new"]));
    assert!(out.status.success(), "{stderr}");
    let keys = signing::load(p.path()).unwrap();
    let blobs = otaforge_store::Blobs::open(&p.path().join("blobs")).unwrap();
    let newest = || {
        let release = Store::open(p.path()).unwrap().releases(None).unwrap().remove(0);
        blobs.get(&release.sha256).unwrap()
    };
    // The gzip'd one on a channel of its own: on "stable" the fleet runs 1.0.0, which verifies
    // nothing, and a signed gzip'd file would not unpack there (see fleet_safety::signing_keys).
    for (version, extra) in [("1.0.0", &[][..]), ("1.1.0", &["--gzip", "--channel", "gz", "--create"][..])] {
        let mut args = vec!["--version", version];
        args.extend_from_slice(extra);
        let (out, stdout, stderr) = publish(&file, &args);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("260-byte signature trailer"), "{stdout}");
        let stored = newest();
        let key = keys.current(Family::Esp8266).unwrap().public();
        assert_eq!(signature::verify(&stored, &key), Ok(()), "{version} {extra:?}");
        let signed = signature::split(Family::Esp8266, &stored).unwrap();
        assert_eq!(signed.body.starts_with(&[0x1F, 0x8B]), extra.contains(&"--gzip"), "gzip'd then signed");
    }

    // A file signed by another project's key is refused, not signed twice.
    let other = tempfile::tempdir().unwrap();
    assert!(run(otaforge(other.path()).args(["key", "new"])).0.status.success());
    let foreign = signature::sign(
        &esp8266_image(300_000, 6),
        signing::load(other.path()).unwrap().current(Family::Esp8266).unwrap(),
    )
    .unwrap();
    let foreign_file = p.path().join("foreign.bin");
    std::fs::write(&foreign_file, foreign).unwrap();
    let (out, _, stderr) = publish(&foreign_file, &["--version", "2.0.0"]);
    assert!(!out.status.success() && stderr.contains("does not verify"), "{stderr}");
    assert_eq!(release_count(&p), 2);

    // ESP32: the 512-byte trailer, by the ECDSA key.
    let esp32 = p.path().join("esp32.bin");
    std::fs::write(
        &esp32,
        otaforge_firmware::ImageBuilder::esp32_app(otaforge_firmware::Chip::Esp32).build(),
    )
    .unwrap();
    let (out, stdout, stderr) = publish(&esp32, &["--version", "1.0.0", "--channel", "esp32", "--create"]);
    assert!(out.status.success(), "{stdout}{stderr}");
    let key = keys.current(Family::Esp32).unwrap().public();
    assert_eq!(signature::verify(&newest(), &key), Ok(()));
}

#[test]
fn a_channel_that_requires_signatures_signs_every_publish_and_refuses_what_it_cannot_sign() {
    use otaforge_actions::publish::{self, PublishError, PublishRequest};
    use otaforge_firmware::signature;
    use otaforge_pki::signing::{self, Family};
    let p = Project::new();
    let write = |name: &str, version_seed: u64| {
        let f = p.path().join(name);
        std::fs::write(&f, esp8266_image(200_000, version_seed)).unwrap();
        f
    };
    let publish_cli = |file: &std::path::Path, version: &str| {
        run(otaforge(p.path()).args(["publish", file.to_str().unwrap(), "--version", version]))
    };
    assert!(publish_cli(&write("a.bin", 1), "1.0.0").0.status.success(), "unsigned is fine by default");
    let (out, stdout, stderr) =
        run(otaforge(p.path()).args(["rollout", "--channel", "stable", "--require-signatures"]));
    assert!(out.status.success() && stdout.contains("only releases signed"), "{stdout}{stderr}");
    assert!(Store::open(p.path()).unwrap().channel("stable").unwrap().unwrap().require_signatures);

    // No key yet: the CLI would have to sign, and cannot.
    let (out, _, stderr) = publish_cli(&write("b.bin", 2), "1.1.0");
    assert!(!out.status.success() && stderr.contains("otaforge key new"), "{stderr}");
    assert_eq!(release_count(&p), 1);

    // With a key, a plain publish is signed without --sign.
    assert!(run(otaforge(p.path()).args(["key", "new"])).0.status.success());
    let (out, stdout, stderr) = publish_cli(&write("b.bin", 2), "1.1.0");
    assert!(out.status.success() && stdout.contains("-byte signature trailer"), "{stdout}{stderr}");
    let keys = signing::load(p.path()).unwrap();
    let release = Store::open(p.path()).unwrap().releases(None).unwrap().remove(0);
    let stored = otaforge_store::Blobs::open(&p.path().join("blobs")).unwrap().get(&release.sha256).unwrap();
    assert_eq!(signature::verify(&stored, &keys.current(Family::Esp8266).unwrap().public()), Ok(()));

    // A publisher that does not sign (as the app's dialog does today) is refused, naming the fix.
    let store = Store::open(p.path()).unwrap();
    let err =
        publish::check(&store, esp8266_image(200_000, 3), PublishRequest::sketch("stable", Some("1.2.0")))
            .unwrap_err();
    assert!(matches!(err, PublishError::SignatureRequired(_)), "{err}");
    assert!(err.to_string().contains("--sign"), "{err}");

    // Allowing unsigned releases again takes them.
    assert!(
        run(otaforge(p.path()).args(["rollout", "--channel", "stable", "--allow-unsigned"]))
            .0
            .status
            .success()
    );
    let store = Store::open(p.path()).unwrap();
    publish::check(&store, esp8266_image(200_000, 3), PublishRequest::sketch("stable", Some("1.2.0")))
        .unwrap();
}

#[test]
fn a_channel_set_to_gzip_always_compresses_every_publish_and_one_set_to_never_refuses_gzip() {
    let p = Project::new();
    let cli = |args: &[&str]| {
        let (out, stdout, stderr) = run(otaforge(p.path()).args(args));
        (out.status.success(), format!("{stdout}{stderr}"))
    };
    let write = |name: &str, bytes: &[u8]| {
        let f = p.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        f.to_str().unwrap().to_string()
    };
    p.publish(&esp8266_image(200_000, 41), "1.0.0", "stable");
    let (ok, out) = cli(&["rollout", "--channel", "stable", "--gzip", "always"]);
    assert!(ok && out.contains("every ESP8266 release is gzip'd"), "{out}");

    // No --gzip, yet compressed: the channel says so.
    let image = esp8266_image(200_000, 42);
    let (ok, out) = cli(&["publish", &write("b.bin", &image), "--version", "1.1.0"]);
    assert!(ok && out.contains("gzip'd:"), "{out}");
    let release = Store::open(p.path()).unwrap().releases(None).unwrap().remove(0);
    let stored = otaforge_store::Blobs::open(&p.path().join("blobs")).unwrap().get(&release.sha256).unwrap();
    assert_eq!(otaforge_firmware::gzip::unpack(&stored).0.as_deref(), Some(&image[..]));

    // Devices on old cores: nothing gzip'd goes in, asked for or already compressed.
    let (ok, out) = cli(&["rollout", "--channel", "stable", "--gzip", "never"]);
    assert!(ok && out.contains("takes no gzip'd images"), "{out}");
    let c = write("c.bin", &esp8266_image(200_000, 43));
    let (ok, out) = cli(&["publish", &c, "--version", "1.2.0", "--gzip"]);
    assert!(!ok && out.contains("takes no gzip'd images") && out.contains("--gzip per-publish"), "{out}");
    let (ok, out) = cli(&["publish", &write("d.bin", &stored), "--version", "1.2.0"]);
    assert!(!ok && out.contains("takes no gzip'd images"), "{out}");
    assert_eq!(release_count(&p), 2);
    let (ok, out) = cli(&["publish", &c, "--version", "1.2.0"]);
    assert!(ok && !out.contains("gzip'd:"), "{out}");
}

#[test]
fn devices_lists_names_and_renames_and_forgets_by_mac() {
    let p = Project::new();
    let devices = |args: &[&str]| {
        let (out, stdout, stderr) = run(otaforge(p.path()).arg("devices").args(args));
        (out.status.success(), stdout, stderr)
    };
    let mac = "18:FE:34:00:AA:01";
    {
        let mut d =
            otaforge_store::Device::new(mac, "ESP8266", "stable", "10.0.0.7", otaforge_store::now_unix());
        d.name = "kitchen".into();
        d.last_seen -= 30;
        d.poll_interval_s = Some(3600);
        Store::open(p.path()).unwrap().save_devices(&[d], &[]).unwrap();
    }
    let (ok, list, _) = devices(&[]);
    assert!(ok && list.contains("kitchen") && list.contains("in 59 min"), "{list}");

    // Any MAC spelling; the name given is shown, marked, over the reported one.
    let (ok, out, err) = devices(&["rename", "18-fe-34-00-aa-01", "Kitchen shelf"]);
    assert!(ok && out.contains("shown as \"Kitchen shelf\""), "{out}{err}");
    let (_, list, _) = devices(&[]);
    assert!(list.contains("Kitchen shelf *") && !list.contains(" kitchen "), "{list}");
    let (_, json, _) = devices(&["--json"]);
    assert!(
        json.contains("\"user_name\": \"Kitchen shelf\"") && json.contains("\"name\": \"kitchen\""),
        "{json}"
    );
    let (ok, out, _) = devices(&["rename", mac, ""]);
    assert!(ok && out.contains("\"kitchen\""), "{out}");
    assert_eq!(Store::open(p.path()).unwrap().device(mac).unwrap().unwrap().user_name, "");

    let (ok, _, err) = devices(&["rename", mac, "two\nlines"]);
    assert!(!ok && err.contains("control characters"), "{err}");
    let (ok, _, err) = devices(&["rename", "18:FE:34:00:AA:02", "x"]);
    assert!(!ok && err.contains("no device 18:FE:34:00:AA:02"), "{err}");

    let (ok, out, err) = devices(&["forget", mac]);
    assert!(ok && out.contains("reappears at its next check"), "{out}{err}");
    assert!(Store::open(p.path()).unwrap().device(mac).unwrap().is_none());
    let (ok, _, err) = devices(&["forget", mac]);
    assert!(!ok && err.contains("no device"), "{err}");
    let (ok, _, err) = devices(&["forget", "not-a-mac"]);
    assert!(!ok && err.contains("not a MAC address"), "{err}");
}
