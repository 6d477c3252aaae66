//! Publishing never hands devices firmware that would lock them out of later updates: an image
//! whose firmware verifies with a key this project does not have, or with one it replaced, is
//! refused; once a channel's firmware verifies signatures, every sketch published there is signed
//! (by the CLI without being asked), and an unsigned publish is refused naming --sign.

use crate::support::{Project, otaforge, run};
use otaforge_actions::publish::{self, PublishError, PublishRequest};
use otaforge_firmware::config_block::{self, BakedSettings};
use otaforge_firmware::settings::{BakeForm, baked_settings};
use otaforge_firmware::{ImageBuilder, signature};
use otaforge_pki::signing::{self, Family};
use otaforge_store::Store;

fn keyed_image(project: &Project, version: &str, key: &[u8]) -> Vec<u8> {
    let mut image = ImageBuilder::arduino_esp8266().target_size(96 * 1024).version(version).build();
    config_block::reserve(&mut image).unwrap();
    let form = BakeForm { host: "ota.test".into(), version: version.into(), ..BakeForm::default() };
    let s =
        BakedSettings { signing_key: key.to_vec(), ..baked_settings(project.path(), &form, true).unwrap() };
    config_block::bake(&image, &s).unwrap()
}

fn key_of(dir: &std::path::Path) -> Vec<u8> {
    signing::load(dir).unwrap().current(Family::Esp8266).unwrap().public().spki_der
}

fn new_key(dir: &std::path::Path, replace: bool) {
    let mut cmd = otaforge(dir);
    cmd.args(["key", "new", "--family", "esp8266"]);
    if replace {
        cmd.arg("--replace");
    }
    let (out, stdout, stderr) = run(&mut cmd);
    assert!(out.status.success(), "{stdout}{stderr}");
}

fn check(project: &Project, bytes: Vec<u8>, version: &str) -> Result<publish::Checked, PublishError> {
    let store = Store::open(project.path()).unwrap();
    let mut req = PublishRequest::sketch("stable", Some(version));
    req.sign_with = Some(std::sync::Arc::new(signing::load(project.path()).unwrap()));
    publish::check(&store, bytes, req)
}

#[test]
fn firmware_trusting_a_foreign_or_replaced_key_is_refused() {
    let project = Project::new();
    new_key(project.path(), false);
    let other = tempfile::tempdir().unwrap();
    new_key(other.path(), false);

    let err = check(&project, keyed_image(&project, "1.0.0", &key_of(other.path())), "1.0.0").unwrap_err();
    assert!(matches!(err, PublishError::TrustsUnknownKey(_)), "{err}");
    assert!(err.to_string().contains("which this project does not have"), "{err}");

    let first = key_of(project.path());
    let checked = check(&project, keyed_image(&project, "1.0.0", &first), "1.0.0").unwrap();
    let fp = signing::PublicKey { family: Family::Esp8266, spki_der: first.clone() }.fingerprint();
    assert_eq!((checked.signed_by.as_deref(), checked.trusts.as_deref()), (Some(&*fp), Some(&*fp)));
    assert!(!checked.is_carrier());

    new_key(project.path(), true);
    let err = check(&project, keyed_image(&project, "1.0.0", &first), "1.0.0").unwrap_err();
    assert!(matches!(err, PublishError::TrustsRetiredKey(_)), "{err}");
    assert!(err.to_string().contains("otaforge bake"), "{err}");
    assert!(Store::open(project.path()).unwrap().releases(None).unwrap().is_empty());
}

#[test]
fn a_channel_whose_firmware_verifies_gets_only_signed_releases_signed_by_the_key_it_trusts() {
    let project = Project::new();
    let dir = project.path();
    new_key(dir, false);
    let publish_cli = |version: &str, bytes: &[u8]| {
        let file = dir.join(format!("{version}.bin"));
        std::fs::write(&file, bytes).unwrap();
        run(otaforge(dir).args(["publish", file.to_str().unwrap(), "--version", version]))
    };
    // Firmware that verifies, published unsigned (old boards install anything).
    let first = key_of(dir);
    let (out, stdout, stderr) = publish_cli("1.0.0", &keyed_image(&project, "1.0.0", &first));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stdout.contains("signature trailer"), "nothing asked for a signature yet: {stdout}");
    assert!(stdout.contains("accept only updates signed by key"), "{stdout}");

    // Now the channel's firmware verifies: the CLI signs without --sign, the library refuses an
    // unsigned publish (what the app did before it offered signing).
    let (out, stdout, stderr) = publish_cli("1.1.0", &keyed_image(&project, "1.1.0", &first));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("-byte signature trailer"), "{stdout}");
    let mut store = Store::open(dir).unwrap();
    let stored = store.blobs().get(&store.releases(None).unwrap()[0].sha256).unwrap();
    let key = signing::PublicKey { family: Family::Esp8266, spki_der: first.clone() };
    assert_eq!(signature::verify(&stored, &key), Ok(()));
    let err = publish::check_and_publish(
        &mut store,
        keyed_image(&project, "1.2.0", &first),
        PublishRequest::sketch("stable", Some("1.2.0")),
    )
    .unwrap_err();
    assert!(matches!(err, PublishError::FleetVerifies { .. }), "{err}");
    assert!(err.to_string().contains("--sign"), "{err}");
    assert!(signature::trusted_key(&keyed_image(&project, "1.2.0", &first), Family::Esp8266, &[]).is_some());
}

#[test]
fn a_signed_gzip_release_is_refused_where_the_fleet_checks_no_signatures() {
    let project = Project::new();
    let dir = project.path();
    new_key(dir, false);
    let publish_cli = |version: &str, bytes: &[u8], flags: &[&str]| {
        let file = dir.join(format!("{version}.bin"));
        std::fs::write(&file, bytes).unwrap();
        run(otaforge(dir).args(["publish", file.to_str().unwrap(), "--version", version]).args(flags))
    };
    // The fleet runs firmware without a key.
    let (out, stdout, stderr) = publish_cli("1.0.0", &keyed_image(&project, "1.0.0", &[]), &[]);
    assert!(out.status.success(), "{stdout}{stderr}");
    // The release that brings the key, signed and gzip'd: keyless bootloaders would unpack it
    // wrongly, so it is refused and nothing is stored.
    let carrying = keyed_image(&project, "1.1.0", &key_of(dir));
    let (out, stdout, stderr) = publish_cli("1.1.0", &carrying, &["--sign", "--gzip"]);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("run 1.0.0, which checks no signatures") && stderr.contains("drop --gzip"),
        "{stderr}"
    );
    assert_eq!(Store::open(dir).unwrap().releases(None).unwrap().len(), 1);
    // Signed, uncompressed: fine; then signed gzip'd releases are, too.
    let (out, stdout, stderr) = publish_cli("1.1.0", &carrying, &["--sign"]);
    assert!(out.status.success(), "{stdout}{stderr}");
    let (out, stdout, stderr) =
        publish_cli("1.2.0", &keyed_image(&project, "1.2.0", &key_of(dir)), &["--sign", "--gzip"]);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("gzip'd:") && stdout.contains("signed by key"), "{stdout}");
}

#[test]
fn a_gzip_signed_elsewhere_with_an_unaligned_length_is_published_with_a_warning() {
    use std::io::Write;
    let project = Project::new();
    new_key(project.path(), false);
    let keys = signing::load(project.path()).unwrap();
    // What `gzip -9` and the core's signing.py make: no padding, so the signature starts wherever
    // the gzip ends.
    let image = keyed_image(&project, "1.0.0", &key_of(project.path()));
    let mut unaligned = None;
    for level in 1..=9 {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(&image).unwrap();
        let gz = e.finish().unwrap();
        if gz.len() % 4 != 0 {
            unaligned = Some(gz);
            break;
        }
    }
    let gz = unaligned.expect("some compression level gives an unaligned length");
    let signed = signature::sign(&gz, keys.current(Family::Esp8266).unwrap()).unwrap();
    let checked = check(&project, signed, "1.0.0").unwrap();
    assert!(checked.warnings.iter().any(|w| w.contains("PR #9109")), "{:?}", checked.warnings);
    // What OTA Forge compresses and signs itself is padded: no warning.
    let store = Store::open(project.path()).unwrap();
    let mut req = PublishRequest::sketch("stable", Some("1.0.0"));
    req.gzip = true;
    req.sign_with = Some(std::sync::Arc::new(keys));
    let ours = publish::check(&store, image, req).unwrap();
    assert!(!ours.warnings.iter().any(|w| w.contains("PR #9109")), "{:?}", ours.warnings);
    assert_eq!(signature::split(Family::Esp8266, ours.bytes()).unwrap().body.len() % 4, 0);
}
