//! OpenSSL, an independent X.509 implementation, agrees with what `otaforge cert new` wrote.

use crate::support;

use std::path::Path;
use std::process::Command;

use otaforge_pki::{CertInfo, SERVER_CERT};
use support::{otaforge, run};

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (the README's test command installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of `openssl x509 -text` from the extension heading `name` to the next heading.
fn extension<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    let rest = &text[start..];
    let end = rest[name.len()..].find("X509v3").map(|e| e + name.len()).unwrap_or(rest.len());
    &rest[..end]
}

fn new_material(key: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (out, _, err) = run(otaforge(dir.path()).args([
        "cert",
        "new",
        "--host",
        "ota.test",
        "--host",
        "192.168.1.70",
        "--key",
        key,
    ]));
    assert!(out.status.success(), "{err}");
    dir
}

#[test]
fn openssl_verifies_the_chain_and_sees_every_required_field() {
    for (key, sig, usages) in [
        ("ecdsa", "ecdsa-with-SHA256", "Digital Signature"),
        ("rsa", "sha256WithRSAEncryption", "Digital Signature, Key Encipherment"),
    ] {
        let dir = new_material(key);
        let p = dir.path();
        assert_eq!(openssl(&["verify", "-CAfile", "ca.pem", "server.pem"], p).trim(), "server.pem: OK");

        let ca = openssl(&["x509", "-in", "ca.pem", "-noout", "-text"], p);
        let bc = extension(&ca, "X509v3 Basic Constraints");
        assert!(bc.contains("critical") && bc.contains("CA:TRUE") && bc.contains("pathlen:0"), "{bc}");
        let ku = extension(&ca, "X509v3 Key Usage");
        assert!(ku.contains("critical") && ku.contains("Certificate Sign, CRL Sign"), "{ku}");
        assert!(ca.contains("O = OTA Forge"), "{ca}");
        assert!(ca.contains(&format!("Signature Algorithm: {sig}")), "{ca}");

        let server = openssl(&["x509", "-in", "server.pem", "-noout", "-text"], p);
        let san = extension(&server, "X509v3 Subject Alternative Name");
        for want in ["DNS:ota.test", "DNS:192.168.1.70", "IP Address:192.168.1.70"] {
            assert!(san.contains(want), "{want} missing: {san}");
        }
        assert!(server.contains("CN = ota.test"), "CN must be the first host: {server}");
        let eku = extension(&server, "X509v3 Extended Key Usage");
        assert!(eku.contains("TLS Web Server Authentication") && !eku.contains("critical"), "{eku}");
        let ku = extension(&server, "X509v3 Key Usage");
        assert!(ku.contains(usages), "{ku}");
        let bc = extension(&server, "X509v3 Basic Constraints");
        assert!(bc.contains("CA:FALSE"), "{bc}");
        assert!(server.contains(&format!("Signature Algorithm: {sig}")), "{server}");
        assert!(!server.contains("rsassaPss") && !ca.contains("rsassaPss"));
    }
}

#[test]
fn validity_is_backdated_and_the_defaults_hold() {
    let dir = new_material("ecdsa");
    let now = time::OffsetDateTime::now_utc();
    let server =
        CertInfo::from_pem(&std::fs::read_to_string(dir.path().join(SERVER_CERT)).unwrap(), "s").unwrap();
    let ca = CertInfo::from_pem(&std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(), "c").unwrap();
    assert!(now - server.not_before >= time::Duration::days(1), "notBefore must be backdated a day");
    assert!((824..=825).contains(&server.days_left(now)), "{}", server.days_left(now));
    assert!((3640..=3660).contains(&ca.days_left(now)), "CA ~10 years: {}", ca.days_left(now));
}
