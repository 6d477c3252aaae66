//! Signed updates end to end: virtual boards whose firmware has the project's signing key baked in
//! (so the reference firmware installs a verifier) take only releases that key signed, and refuse
//! the rest with the core's code and words (ESP8266 12, "Signature verification failed"; ESP32
//! 14, "Signature Verification Failed"), staying on the image they run. The boards are flashed
//! with baked images that were never published, so the server does not recognise what they run and
//! offers them every release: the refusal is the board's own.
//!
//! Files the project would not publish as they are (signed by another key, tampered after signing)
//! reach the board through the real server anyway: a file signed elsewhere is published as an
//! unsigned one (`publish` without `--sign` does not check a signature it cannot attribute), or the
//! board trusts another project's key.

use crate::support;
use crate::virtual_device_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use otaforge_firmware::settings::BakeForm;
use otaforge_firmware::{Chip, md5_hex};
use otaforge_sim::device::{CheckOutcome, DeviceHandle, bake_reference_image};
use otaforge_store::DeviceState;
use support::Project;
use virtual_device_support::*;

const T: Duration = Duration::from_secs(30);

/// A project with its signing keys (`otaforge key new`), serving.
async fn keyed_project() -> (Project, otaforge_server::RunningServer) {
    let project = Project::new();
    cli(project.path(), &["key", "new"]);
    let server = project.serve(|_| {}).await;
    (project, server)
}

/// Runs the CLI in `dir` and returns its standard output; panics with its output when it fails.
fn cli(dir: &Path, args: &[&str]) -> String {
    let (out, stdout, stderr) = support::run(support::otaforge(dir).args(args));
    assert!(out.status.success(), "otaforge {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The reference image baked the way `otaforge bake` bakes it for the project in `dir` (with the
/// project's current key for the chip's family, unless `no_key`), for 127.0.0.1:`port`.
fn bake_for(dir: &Path, chip: Chip, version: &str, port: u16, no_key: bool) -> Vec<u8> {
    let form = BakeForm { no_signing_key: no_key, ..form(version, port) };
    bake_reference_image(dir, chip, &form, IMAGE_SIZE).expect("bake")
}

fn family_arg(chip: Chip) -> &'static str {
    if chip.is_esp8266() { "esp8266" } else { "esp32" }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `otaforge publish FILE --version V --channel demo` plus `extra`.
fn publish(dir: &Path, file: &Path, version: &str, extra: &[&str]) {
    let file = file.to_str().unwrap();
    let mut args = vec!["publish", file, "--version", version, "--channel", DEMO];
    args.extend_from_slice(extra);
    cli(dir, &args);
}

/// `otaforge key sign FILE --family F` in `dir`: the file signed in `chip`'s family's format.
fn key_sign(dir: &Path, chip: Chip, file: &Path) -> Vec<u8> {
    let out = file.with_extension("signed");
    cli(
        dir,
        &[
            "key",
            "sign",
            file.to_str().unwrap(),
            "--family",
            family_arg(chip),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

/// The words each core uses for a refused signature, with its number.
fn refusal(chip: Chip) -> (i32, &'static str) {
    if chip.is_esp8266() {
        (12, "Update error: ERROR[12]: Signature verification failed")
    } else {
        (14, "Update error: Signature Verification Failed")
    }
}

/// The board downloads what is published, refuses it with the core's signature error, and keeps
/// running `running` (no reboot, the same sketch MD5), check after check.
async fn refuses(chip: Chip, d: &DeviceHandle, running: &[u8]) {
    let f = first_failure(d).await;
    let (code, words) = refusal(chip);
    assert_eq!((f.code, f.message.as_str()), (code, words), "{f:?}\n{}", log_text(d));
    let log = log_text(d);
    assert!(log.contains(&format!("check failed: error {code}: {words}")), "{log}");
    assert!(log.contains("update: 100% ("), "it downloaded the whole file first\n{log}");
    if chip.is_esp8266() {
        assert!(log.contains("  = the image's signature did not verify"), "{log}");
    }
    // Offered again (the server does not know what the board runs), refused again.
    let checks = d.status().checks;
    let s = d.wait_until(T, |s| s.checks >= checks + 2).await.unwrap();
    assert!(matches!(&s.last_outcome, Some(CheckOutcome::Failed(f)) if f.code == code), "{s:?}");
    assert_eq!((s.updates, s.boots), (0, 1), "never rebooted into it\n{}", log_text(d));
    assert_eq!(s.version.as_deref(), Some("1.0.0"));
    assert_eq!(s.sketch_md5.as_deref(), Some(md5_hex(running).as_str()), "the old image still runs");
}

/// The board installs the release, boots `v2` (its sketch MD5 is the image's, without the
/// signature trailer) and the server then counts it installed and offers it nothing more.
async fn installs(d: &DeviceHandle, server: &otaforge_server::RunningServer, v2: &[u8]) {
    let s = d
        .wait_until(T, |s| s.version.as_deref() == Some("2.0.0"))
        .await
        .unwrap_or_else(|s| panic!("not updated: {s:?}\n{}", log_text(d)));
    assert_eq!((s.updates, s.boots), (1, 2));
    assert_eq!(s.sketch_md5.as_deref(), Some(md5_hex(v2).as_str()), "what runs is the image itself");
    let checks = s.checks;
    let s = d.wait_until(T, |s| s.checks >= checks + 3).await.unwrap();
    assert_eq!((s.updates, &s.last_outcome), (1, &Some(CheckOutcome::UpToDate)), "{}", log_text(d));
    let inv = server.devices().into_iter().find(|i| i.mac == s.mac).unwrap();
    assert_eq!((inv.state, inv.version.as_deref()), (DeviceState::Installed, Some("2.0.0")), "{inv:?}");
}

async fn signed_release_installs(chip: Chip, n: u32) {
    let (project, server) = keyed_project().await;
    let v1 = bake_for(project.path(), chip, "1.0.0", port(&server), false);
    let v2 = bake_for(project.path(), chip, "2.0.0", port(&server), false);
    let d = start(chip, n, &v1, quick());
    d.wait_until(T, |s| s.last_outcome == Some(CheckOutcome::UpToDate)).await.unwrap();
    publish(project.path(), &write(project.path(), "v2.bin", &v2), "2.0.0", &["--sign"]);
    server.reload().unwrap();
    installs(&d, &server, &v2).await;
    d.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_with_the_key_installs_a_signed_release() {
    signed_release_installs(Chip::Esp8266, 0x51_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_with_the_key_installs_a_signed_release() {
    signed_release_installs(Chip::Esp32, 0x51_0002).await;
}

/// The ESP8266 hashes the gzip bytes it wrote, and hands eboot the gzip without the trailer, so
/// eboot finds the unpacked size where the gzip keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_with_the_key_installs_a_gzipped_signed_release() {
    let (project, server) = keyed_project().await;
    let v1 = bake_for(project.path(), Chip::Esp8266, "1.0.0", port(&server), false);
    let v2 = bake_for(project.path(), Chip::Esp8266, "2.0.0", port(&server), false);
    let d = start(Chip::Esp8266, 0x51_0003, &v1, quick());
    publish(project.path(), &write(project.path(), "v2.bin", &v2), "2.0.0", &["--gzip", "--sign"]);
    server.reload().unwrap();
    installs(&d, &server, &v2).await;
    d.stop().await;
    server.shutdown().await;
}

async fn unsigned_release_is_refused(chip: Chip, n: u32) {
    let (project, server) = keyed_project().await;
    let v1 = bake_for(project.path(), chip, "1.0.0", port(&server), false);
    let v2 = bake_for(project.path(), chip, "2.0.0", port(&server), false);
    let d = start(chip, n, &v1, quick());
    // The channel requires no signatures and serves nothing yet: publish takes it unsigned.
    publish(project.path(), &write(project.path(), "v2.bin", &v2), "2.0.0", &[]);
    server.reload().unwrap();
    refuses(chip, &d, &v1).await;
    d.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_with_the_key_refuses_an_unsigned_release_with_error_12() {
    unsigned_release_is_refused(Chip::Esp8266, 0x51_0011).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_with_the_key_refuses_an_unsigned_release_with_error_14() {
    unsigned_release_is_refused(Chip::Esp32, 0x51_0012).await;
}

/// The board trusts another project's key; this project signs with its own.
async fn another_keys_signature_is_refused(chip: Chip, n: u32) {
    let (project, server) = keyed_project().await;
    let other = Project::new();
    cli(other.path(), &["key", "new"]);
    let keys = otaforge_pki::signing::load(other.path()).unwrap();
    let foreign = keys.current(otaforge_firmware::signature::family(chip)).unwrap().public();
    let mut s = settings(project.path(), "1.0.0", port(&server));
    s.signing_key = foreign.spki_der;
    let v1 = bake(chip, &s, IMAGE_SIZE);
    let v2 = bake_for(project.path(), chip, "2.0.0", port(&server), false);
    let d = start(chip, n, &v1, quick());
    publish(project.path(), &write(project.path(), "v2.bin", &v2), "2.0.0", &["--sign"]);
    server.reload().unwrap();
    refuses(chip, &d, &v1).await;
    d.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_refuses_a_release_signed_by_another_key() {
    another_keys_signature_is_refused(Chip::Esp8266, 0x51_0021).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_refuses_a_release_signed_by_another_key() {
    another_keys_signature_is_refused(Chip::Esp32, 0x51_0022).await;
}

/// The project's key signed `v2`; what is served is another valid image of the same length (its
/// settings changed after signing) carrying that signature.
async fn tampered_signed_image_is_refused(chip: Chip, n: u32) {
    let (project, server) = keyed_project().await;
    let dir = project.path();
    let v1 = bake_for(dir, chip, "1.0.0", port(&server), false);
    let v2 = bake_for(dir, chip, "2.0.0", port(&server), false);
    let signed = key_sign(dir, chip, &write(dir, "v2.bin", &v2));
    let mut s = otaforge_firmware::config_block::read(&v2).unwrap().unwrap();
    s.poll_interval_s = 20;
    let changed = otaforge_firmware::config_block::bake(&v2, &s).unwrap();
    assert_eq!(changed.len(), v2.len());
    assert_ne!(changed, v2);
    let tampered = [&changed[..], &signed[v2.len()..]].concat();
    let d = start(chip, n, &v1, quick());
    publish(dir, &write(dir, "tampered.bin", &tampered), "2.0.0", &[]);
    server.reload().unwrap();
    refuses(chip, &d, &v1).await;
    d.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_refuses_a_signed_image_changed_after_signing() {
    tampered_signed_image_is_refused(Chip::Esp8266, 0x51_0031).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_refuses_a_signed_image_changed_after_signing() {
    tampered_signed_image_is_refused(Chip::Esp32, 0x51_0032).await;
}

/// gzip'd, then signed, then one byte of the gzip header changed (its MTIME, which eboot never
/// reads, so the file still unpacks to the same image): the hash no longer matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_refuses_a_gzipped_signed_image_with_a_changed_byte() {
    let (project, server) = keyed_project().await;
    let dir = project.path();
    let v1 = bake_for(dir, Chip::Esp8266, "1.0.0", port(&server), false);
    let v2 = bake_for(dir, Chip::Esp8266, "2.0.0", port(&server), false);
    let packed = otaforge_firmware::gzip::compress(&v2);
    let mut signed = key_sign(dir, Chip::Esp8266, &write(dir, "v2.bin.gz", &packed));
    signed[4] ^= 0x01;
    let d = start(Chip::Esp8266, 0x51_0041, &v1, quick());
    publish(dir, &write(dir, "tampered.bin.gz", &signed), "2.0.0", &[]);
    server.reload().unwrap();
    refuses(Chip::Esp8266, &d, &v1).await;
    d.stop().await;
    server.shutdown().await;
}

/// No key baked (`otaforge bake --no-signing-key`): the firmware installs no verifier and takes
/// unsigned releases as before, in a project that has keys.
async fn keyless_board_installs_unsigned(chip: Chip, n: u32) {
    let (project, server) = keyed_project().await;
    let v1 = bake_for(project.path(), chip, "1.0.0", port(&server), true);
    let v2 = bake_for(project.path(), chip, "2.0.0", port(&server), true);
    let d = start(chip, n, &v1, quick());
    publish(project.path(), &write(project.path(), "v2.bin", &v2), "2.0.0", &[]);
    server.reload().unwrap();
    installs(&d, &server, &v2).await;
    d.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp8266_without_a_key_still_installs_unsigned_releases() {
    keyless_board_installs_unsigned(Chip::Esp8266, 0x51_0051).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esp32_without_a_key_still_installs_unsigned_releases() {
    keyless_board_installs_unsigned(Chip::Esp32, 0x51_0052).await;
}
