//! `otaforge cert …` as a user runs it: files, permissions, refusals, bad input, exports.

use crate::support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use support::{otaforge, run};

/// Every file under `dir` (relative path → bytes), to prove "nothing changed".
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn cert_new(dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut cmd = otaforge(dir);
    cmd.args(["cert", "new"]).args(extra);
    let (out, stdout, stderr) = run(&mut cmd);
    (out.status.success(), stdout, stderr)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn new_writes_four_files_with_private_keys_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = cert_new(dir.path(), &["--host", "ota.test"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("SHA-256:"), "{stdout}");
    assert!(stdout.contains("No problems found."), "{stdout}");
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
        assert_eq!(mode(&dir.path().join("server.key")), 0o600);
        assert_eq!(mode(&dir.path().join("ca.pem")), 0o644);
    }
}

#[test]
fn second_new_refuses_without_force_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    let before = snapshot(dir.path());
    let (ok, _, stderr) = cert_new(dir.path(), &["--host", "other.test"]);
    assert!(!ok);
    assert!(stderr.contains("already holds certificates") && stderr.contains("--force"), "{stderr}");
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn force_replaces_and_keeps_the_old_material_in_retired() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    let old_ca = fs::read(dir.path().join("ca.pem")).unwrap();
    let (ok, _, stderr) = cert_new(dir.path(), &["--host", "other.test", "--force"]);
    assert!(ok, "{stderr}");
    assert_ne!(fs::read(dir.path().join("ca.pem")).unwrap(), old_ca);
    let retired: Vec<_> = snapshot(dir.path())
        .into_iter()
        .filter(|(k, _)| k.starts_with("retired/") && k.ends_with("ca.pem"))
        .collect();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].1, old_ca, "the old CA is kept, not lost");
}

#[test]
fn bad_hosts_get_a_clear_error_and_write_nothing() {
    let long_label = format!("{}.example.com", "a".repeat(300));
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("my server", "whitespace"),
        ("*.", "wildcard"),
        (&long_label, "253"),
        ("192.168.1.300", "not a valid one"),
        ("https://ota.test/update", "looks like a URL"),
    ];
    for (host, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (ok, _, stderr) = cert_new(dir.path(), &["--host", host]);
        assert!(!ok, "{host} accepted");
        assert!(stderr.contains(want), "{host}: {stderr}");
        assert!(snapshot(dir.path()).is_empty(), "{host}: files written");
    }
}

#[test]
fn bad_host_on_existing_project_leaves_keys_untouched() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    let before = snapshot(dir.path());
    let (ok, _, stderr) = cert_new(dir.path(), &["--host", "bad host", "--force"]);
    assert!(!ok && stderr.contains("whitespace"), "{stderr}");
    let mut renew = otaforge(dir.path());
    renew.args(["cert", "renew", "--host", "a..b"]);
    let (out, _, stderr) = run(&mut renew);
    assert!(!out.status.success() && stderr.contains("empty label"), "{stderr}");
    assert_eq!(snapshot(dir.path()), before);
}

#[cfg(unix)]
#[test]
fn unwritable_directory_is_reported_and_existing_keys_survive() {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc_geteuid() } == 0 {
        // root ignores directory permissions; use a path under a file instead, which fails for everyone.
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        fs::write(&blocker, b"x").unwrap();
        let (ok, _, stderr) = cert_new(&blocker.join("project"), &["--host", "ota.test"]);
        assert!(!ok);
        assert!(stderr.contains("cannot write") && stderr.contains("not-a-dir"), "{stderr}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    let before = snapshot(dir.path());
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o500)).unwrap();
    let (ok, _, stderr) = cert_new(dir.path(), &["--host", "ota.test", "--force"]);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    assert!(!ok && stderr.contains("cannot write"), "{stderr}");
    assert_eq!(snapshot(dir.path()), before);
}

#[cfg(unix)]
unsafe fn libc_geteuid() -> u32 {
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() }
}

#[test]
fn corrupt_pem_is_named_on_load_and_not_overwritten_by_renew() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    fs::write(
        dir.path().join("server.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let before = snapshot(dir.path());
    for args in [&["cert", "show"][..], &["cert", "renew"][..], &["cert", "export"][..]] {
        let (out, _, stderr) = run(otaforge(dir.path()).args(args));
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains("server.pem is not a valid certificate"), "{args:?}: {stderr}");
    }
    fs::write(dir.path().join("ca.key"), "garbage").unwrap();
    let (out, _, stderr) = run(otaforge(dir.path()).args(["cert", "show"]));
    assert!(!out.status.success() && stderr.contains("ca.key is not a valid private key"), "{stderr}");
    let mut after = snapshot(dir.path());
    after.insert("ca.key".into(), before["ca.key"].clone());
    assert_eq!(after, before);
}

#[test]
fn show_flags_hosts_the_certificate_does_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    let (out, stdout, _) = run(otaforge(dir.path()).args(["cert", "show", "--host", "10.1.2.3"]));
    assert!(out.status.success());
    assert!(stdout.contains("\"10.1.2.3\"") && stdout.contains("error 56"), "{stdout}");
    let (_, json, _) = run(otaforge(dir.path()).args(["cert", "show", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["server"]["dns_sans"][0], "ota.test");
    assert_eq!(v["mode"], "PrivateCa");
    assert!(v["server"]["sha256"].as_str().unwrap().len() == 95);
}

#[test]
fn pin_leaf_warns_about_expiry_and_cannot_be_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = cert_new(dir.path(), &["--host", "ota.test", "--pin-leaf", "--days", "365"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("every device must be reflashed"), "{stdout}");
    assert!(!dir.path().join("ca.pem").exists() && !dir.path().join("ca.key").exists());
    let (out, _, stderr) = run(otaforge(dir.path()).args(["cert", "renew"]));
    assert!(!out.status.success() && stderr.contains("pins one self-signed certificate"), "{stderr}");
}

#[test]
fn renew_keeps_the_ca_and_changes_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test", "--key", "rsa"]).0);
    let before = snapshot(dir.path());
    let (out, stdout, stderr) = run(otaforge(dir.path()).args(["cert", "renew", "--days", "30"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("RSA 2048"), "key kind kept: {stdout}");
    assert!(stdout.contains("expires in 29 day") || stdout.contains("expires in 30 day"), "{stdout}");
    let after = snapshot(dir.path());
    assert_eq!(after["ca.pem"], before["ca.pem"]);
    assert_eq!(after["ca.key"], before["ca.key"]);
    assert_ne!(after["server.pem"], before["server.pem"]);
    assert!(after.keys().any(|k| k.starts_with("retired/") && k.ends_with("server.key")));
}

#[test]
fn export_gives_the_ca_never_a_key_and_the_c_header_compiles_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(cert_new(dir.path(), &["--host", "ota.test"]).0);
    let ca = fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let (out, pem, _) = run(otaforge(dir.path()).args(["cert", "export"]));
    assert!(out.status.success());
    assert_eq!(pem, ca);
    assert!(!pem.contains("PRIVATE KEY"));

    let header = dir.path().join("anchor.h");
    let (out, _, stderr) =
        run(otaforge(dir.path()).args(["cert", "export", "--c-header", "--out"]).arg(&header));
    assert!(out.status.success(), "{stderr}");
    let text = fs::read_to_string(&header).unwrap();
    assert!(!text.contains("PRIVATE KEY"));
    // Compile it as C (and as C++), print the literal, and compare byte for byte.
    let harness = dir.path().join("main.c");
    fs::write(
        &harness,
        "#include <stdio.h>\n#include \"anchor.h\"\nint main(void){fputs(OTAFORGE_TRUST_ANCHOR_PEM, stdout);return 0;}\n",
    )
    .unwrap();
    for (compiler, std) in [("cc", "-std=c99"), ("c++", "-std=c++11")] {
        let exe = dir.path().join(format!("print-{compiler}"));
        let status = Command::new(compiler)
            .args([std, "-Wall", "-Werror", "-x", if compiler == "cc" { "c" } else { "c++" }])
            .arg(&harness)
            .arg("-o")
            .arg(&exe)
            .status()
            .unwrap();
        assert!(status.success(), "{compiler} failed on the header");
        let printed = Command::new(&exe).output().unwrap().stdout;
        assert_eq!(String::from_utf8(printed).unwrap(), ca, "{compiler}");
    }
}

#[test]
fn show_without_material_says_how_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(otaforge(dir.path()).args(["cert", "show"]));
    assert!(!out.status.success());
    assert!(stderr.contains("otaforge cert new --host"), "{stderr}");
}
