//! What the docs promise about the command line, held against the binary: a refusal for a
//! missing input names the flag that gives it, the default channel has one name everywhere
//! (`stable`; an image baked with the old empty one is still the default channel), and every
//! command taking `--channel` refuses one that does not exist, listing those that do and naming
//! `--create` where creating one makes sense.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::{Chip, ImageBuilder};
use otaforge_sim::serial::{self as sim, SimOptions, VirtualSerialDevice};
use otaforge_store::Store;
use support::{Project, esp8266_image, otaforge};

/// Runs `otaforge ARGS` in `project` (stdin closed, no password in the environment); exit
/// status and stdout + stderr.
fn cli(project: &Path, args: &[&str]) -> (bool, String) {
    let out = otaforge(project)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("OTAFORGE_WIFI_PASSWORD")
        .env_remove("OTAFORGE_AUTH_PASSWORD")
        .output()
        .expect("run otaforge");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Asserts `otaforge ARGS` fails and says each of `words`.
#[track_caller]
fn refused(project: &Path, args: &[&str], words: &[&str]) -> String {
    let (ok, out) = cli(project, args);
    assert!(!ok, "otaforge {} succeeded:\n{out}", args.join(" "));
    for w in words {
        assert!(out.contains(w), "otaforge {}: the refusal does not say {w:?}:\n{out}", args.join(" "));
    }
    out
}

#[track_caller]
fn succeeds(project: &Path, args: &[&str]) -> String {
    let (ok, out) = cli(project, args);
    assert!(ok, "otaforge {} failed:\n{out}", args.join(" "));
    out
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn write(project: &Project, name: &str, bytes: &[u8]) -> String {
    let path = project.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// The stand-in for the built reference firmware (unbaked config block, no version).
fn reference(project: &Project) -> String {
    write(project, "reference.bin", &otaforge_sim::device::reference_image(Chip::Esp8266, "1.0.0", 64 * 1024))
}

/// A sketch build (not synthetic) with an unbaked config block, baked by the library with
/// `channel`: what a board built and baked before the default channel had its one name carries.
fn baked_sketch(project: &Project, name: &str, channel: &str, version: &str) -> String {
    let mut image = ImageBuilder::for_chip(Chip::Esp8266).target_size(120_000).seed(7).build();
    config_block::reserve(&mut image).unwrap();
    let settings = BakedSettings {
        host: "ota.test".into(),
        port: otaforge_protocol::DEFAULT_PORT,
        path: otaforge_protocol::DEFAULT_PATH.into(),
        channel: channel.into(),
        version: version.into(),
        device_name: String::new(),
        wifi_ssid: String::new(),
        wifi_password: String::new(),
        ca_pem: project.ca_pem.clone(),
        poll_interval_s: 3600,
        tls_rx_buffer: 16384,
        tls_tx_buffer: 512,
        baked_at: 1_790_000_000,
        signing_key: Vec::new(),
    };
    write(project, name, &config_block::bake(&image, &settings).unwrap())
}

fn channels(project: &Project) -> Vec<String> {
    Store::open(project.path()).unwrap().channels().unwrap().into_iter().map(|c| c.name).collect()
}

fn inspect_json(project: &Project, file: &str) -> serde_json::Value {
    serde_json::from_str(&succeeds(project.path(), &["inspect", "--json", file])).unwrap()
}

#[test]
fn the_default_channel_is_stable_in_every_command_and_help_text() {
    let p = Project::new();
    for sub in [&["bake"][..], &["publish"], &["rollout"]] {
        let help = succeeds(p.path(), &[sub, &["--help"]].concat());
        // The option's lines: up to the next option.
        let from = help.find("--channel").unwrap_or_else(|| panic!("no --channel in {}'s help", sub[0]));
        let rest = &help[from + "--channel".len()..];
        let end = rest.find('\n').map(|first| {
            let after = &rest[first + 1..];
            first
                + 1
                + after
                    .lines()
                    .take_while(|l| !l.trim_start().starts_with('-'))
                    .map(|l| l.len() + 1)
                    .sum::<usize>()
        });
        let channel = &rest[..end.unwrap_or(rest.len()).min(rest.len())];
        assert!(channel.contains("[default: stable]"), "otaforge {} --help, --channel:\n{channel}", sub[0]);
        assert!(!channel.contains("\"\""), "no second spelling in {}'s help:\n{channel}", sub[0]);
    }
    // Baked without --channel: the block says "stable", and so does inspect.
    let reference = reference(&p);
    let out = p.path().join("fleet.bin").display().to_string();
    succeeds(p.path(), &["bake", "--image", &reference, "--out", &out, "--version", "1.0.0"]);
    assert_eq!(inspect_json(&p, &out)["config_block"]["settings"]["channel"], "stable");
    let text = succeeds(p.path(), &["inspect", &out]);
    assert!(text.contains("channel \"stable\""), "{text}");
}

#[test]
fn an_image_baked_with_the_old_empty_channel_is_the_default_channel() {
    let p = Project::new();
    let old = baked_sketch(&p, "old.bin", "", "1.0.0");
    // inspect names the channel it polls by its one name…
    assert_eq!(inspect_json(&p, &old)["config_block"]["settings"]["channel"], "stable");
    assert!(succeeds(p.path(), &["inspect", &old]).contains("channel \"stable\""));
    // …publishing to the default channel takes it, and another channel is refused naming the
    // flag that would publish it where its devices poll.
    refused(
        p.path(),
        &["publish", &old, "--channel", "beta", "--create"],
        &["polls channel \"stable\"", "--channel stable"],
    );
    assert_eq!(channels(&p), Vec::<String>::new(), "nothing was created");
    let out = succeeds(p.path(), &["publish", &old]);
    assert!(out.contains("on \"stable\""), "{out}");
    // An image baked for a named channel, published without --channel, is refused naming it.
    let beta = baked_sketch(&p, "beta.bin", "beta", "1.1.0");
    refused(p.path(), &["publish", &beta], &["polls channel \"beta\"", "--channel beta"]);
}

#[test]
fn publish_refuses_an_unknown_channel_unless_create() {
    let p = Project::new();
    let fw = write(&p, "fw.bin", &esp8266_image(60_000, 1));
    succeeds(p.path(), &["publish", &fw, "--version", "1.0.0"]);
    let fw2 = write(&p, "fw2.bin", &esp8266_image(60_000, 2));
    refused(
        p.path(),
        &["publish", &fw2, "--version", "1.1.0", "--channel", "stabel"],
        &["no channel \"stabel\"", "\"stable\"", "--create"],
    );
    assert_eq!(channels(&p), ["stable"], "a mistyped channel is not created");
    let out = succeeds(p.path(), &["publish", &fw2, "--version", "1.1.0", "--channel", "beta", "--create"]);
    assert!(out.contains("on \"beta\""), "{out}");
    // Known now: no --create needed; the default and demo channels always exist.
    let fw3 = write(&p, "fw3.bin", &esp8266_image(60_000, 3));
    succeeds(p.path(), &["publish", &fw3, "--version", "1.2.0", "--channel", "beta"]);
    let synthetic = reference(&p);
    let baked = p.path().join("demo.bin").display().to_string();
    succeeds(
        p.path(),
        &["bake", "--image", &synthetic, "--out", &baked, "--version", "1.0.0", "--channel", "demo"],
    );
    succeeds(p.path(), &["publish", &baked, "--channel", "demo"]);
}

#[test]
fn rollout_and_releases_refuse_an_unknown_channel_listing_the_known_ones() {
    let p = Project::new();
    p.publish(&esp8266_image(50_000, 11), "1.0.0", "stable");
    p.publish(&esp8266_image(50_000, 12), "1.0.0", "beta");
    refused(
        p.path(),
        &["rollout", "--channel", "nosuch", "--percent", "5"],
        &["no channel \"nosuch\"", "\"stable\"", "\"beta\"", "--create"],
    );
    // Promoting into a channel that does not exist would create it just the same.
    refused(
        p.path(),
        &["rollout", "--promote", "1", "--channel", "nosuch"],
        &["no channel \"nosuch\"", "--create"],
    );
    assert_eq!(channels(&p), ["beta", "stable"]);
    // The default and demo channels always exist: a release promoted into them needs no --create.
    let fresh = Project::new();
    fresh.publish(&esp8266_image(50_000, 13), "1.0.0", "beta");
    succeeds(fresh.path(), &["rollout", "--promote", "1", "--channel", "stable"]);
    refused(
        p.path(),
        &["releases", "--channel", "nosuch"],
        &["no channel \"nosuch\"", "\"stable\"", "\"beta\""],
    );
    // --create makes an empty channel to set up before its first release.
    let out = succeeds(p.path(), &["rollout", "--channel", "next", "--create", "--require-signatures"]);
    assert!(out.contains("Channel \"next\""), "{out}");
    assert_eq!(channels(&p), ["beta", "next", "stable"]);
    succeeds(p.path(), &["rollout", "--promote", "1", "--channel", "later", "--create"]);
}

#[test]
fn bake_refuses_a_channel_nothing_serves_unless_create() {
    let p = Project::new();
    let reference = reference(&p);
    let out = p.path().join("beta.bin").display().to_string();
    let bake = |extra: &[&str]| {
        let mut args = vec!["bake", "--image", &reference, "--out", &out, "--version", "1.0.0"];
        args.extend_from_slice(extra);
        owned(&args)
    };
    refused(p.path(), &strs(&bake(&["--channel", "beta"])), &["no channel \"beta\"", "--create"]);
    assert!(!Path::new(&out).exists(), "nothing was written");
    succeeds(p.path(), &strs(&bake(&["--channel", "beta", "--create"])));
    assert_eq!(channels(&p), ["beta"], "the channel devices will poll exists now");
    assert_eq!(inspect_json(&p, &out)["config_block"]["settings"]["channel"], "beta");
    // sim fleet bakes for a channel too; it cannot create one (it publishes nothing).
    refused(
        p.path(),
        &["sim", "fleet", "--channel", "nosuch", "--duration", "1"],
        &["no channel \"nosuch\""],
    );
}

#[test]
fn bake_without_an_input_names_the_flag_that_gives_it() {
    let p = Project::new();
    let reference = reference(&p);
    let out = p.path().join("out.bin").display().to_string();
    let sketch = p.path().join("sketch");
    std::fs::create_dir(&sketch).unwrap();
    let sketch = sketch.display().to_string();
    refused(p.path(), &["bake"], &["--sketch", "--image"]);
    refused(p.path(), &["bake", "--sketch", &sketch], &["--version"]);
    refused(p.path(), &["bake", "--image", &reference, "--out", &out], &["--version"]);
    refused(p.path(), &["bake", "--image", &reference], &["--out"]);
    refused(p.path(), &["bake", "--sketch", &sketch, "--version", "1.0.0", "--build"], &["--board"]);
    refused(
        p.path(),
        &["bake", "--image", &reference, "--out", &out, "--version", "1.0.0", "--host", "elsewhere.lan"],
        &["otaforge cert renew --host elsewhere.lan"],
    );
    // Wi-Fi: the password's file or variable, and an SSID for a password file.
    refused(
        p.path(),
        &["bake", "--image", &reference, "--out", &out, "--version", "1.0.0", "--wifi-ssid", "home"],
        &["--wifi-password-file", "OTAFORGE_WIFI_PASSWORD", "--open-network"],
    );
    let pw = write(&p, "wifi.txt", b"correct horse battery\n");
    refused(
        p.path(),
        &["bake", "--image", &reference, "--out", &out, "--version", "1.0.0", "--wifi-password-file", &pw],
        &["--wifi-ssid"],
    );
    // No project material at all: the command that makes it.
    let empty = tempfile::tempdir().unwrap();
    refused(
        empty.path(),
        &["bake", "--image", &reference, "--out", &out, "--version", "1.0.0"],
        &["otaforge cert new --host"],
    );
}

#[test]
fn a_wifi_password_is_never_a_flag_value_and_must_be_one_wpa2_takes() {
    let p = Project::new();
    let board = VirtualSerialDevice::spawn(SimOptions {
        chip: sim::Chip::Esp8266,
        registry_dir: Some(p.path().to_path_buf()),
        ..SimOptions::default()
    })
    .unwrap();
    let port = board.pty_path().display().to_string();
    let provision = |extra: &[&str]| {
        let mut args = vec!["provision", "--port", &port, "--connect-timeout", "5", "--wifi-ssid", "home"];
        args.extend_from_slice(extra);
        owned(&args)
    };
    // The old flag: refused with why, naming the ways that keep it off the command line.
    let args = provision(&["--wifi-password", "x"]);
    refused(
        p.path(),
        &strs(&args),
        &["visible to every user", "--wifi-password-file", "OTAFORGE_WIFI_PASSWORD"],
    );
    let args =
        ["bake", "--sketch", ".", "--version", "1.0.0", "--wifi-ssid", "home", "--wifi-password", "hunter22"];
    refused(p.path(), &args, &["visible to every user", "--wifi-password-file"]);
    // Too short for WPA2 (a placeholder), or empty (which would quietly mean an open network).
    for (content, words) in [
        (&b"x\n"[..], &["8", "63"][..]),
        (b"\xe2\x80\xa6\n", &["character"][..]),
        (b"\n", &["empty", "--open-network"][..]),
    ] {
        let file = write(&p, "wifi.txt", content);
        refused(p.path(), &strs(&provision(&["--wifi-password-file", &file])), words);
    }
    // flash says so before it looks for a board.
    let fw = write(&p, "fw.bin", &esp8266_image(60_000, 4));
    let nowhere = tempfile::tempdir().unwrap();
    refused(
        nowhere.path(),
        &["flash", &fw, "--wifi-ssid", "home"],
        &["--wifi-password-file", "--open-network"],
    );
    board.stop();
}

#[test]
fn a_port_that_cannot_be_chosen_is_refused_naming_port() {
    let p = Project::new();
    let fw = write(&p, "fw.bin", &esp8266_image(60_000, 5));
    let boards: Vec<VirtualSerialDevice> = (0..2)
        .map(|_| {
            VirtualSerialDevice::spawn(SimOptions {
                chip: sim::Chip::Esp8266,
                registry_dir: Some(p.path().to_path_buf()),
                ..SimOptions::default()
            })
            .unwrap()
        })
        .collect();
    let ports: Vec<PathBuf> = boards.iter().map(|b| b.pty_path().to_path_buf()).collect();
    for cmd in [&["flash", &fw][..], &["board"], &["monitor"], &["provision", "--device-name", "hall"]] {
        let out = refused(p.path(), cmd, &["several ports", "--port"]);
        for port in &ports {
            assert!(out.contains(&port.display().to_string()), "{out}");
        }
    }
    refused(p.path(), &["provision"], &["--device-name", "--wifi-ssid"]);
    for b in boards {
        b.stop();
    }
}

#[test]
fn publish_without_a_version_names_the_flag() {
    let p = Project::new();
    let fw = write(&p, "fw.bin", &esp8266_image(60_000, 6));
    refused(p.path(), &["publish", &fw], &["--version"]);
    refused(p.path(), &["publish", &fw, "--version", "one"], &["version"]);
    refused(p.path(), &["publish", &fw, "--version", "1.0.0", "--sign"], &["otaforge key new"]);
    refused(p.path(), &["key", "export", "--family", "esp8266"], &["otaforge key new"]);
    let empty = tempfile::tempdir().unwrap();
    refused(empty.path(), &["cert", "show"], &["otaforge cert new --host"]);
}
