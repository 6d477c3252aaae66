//! The generated material works with the TLS stacks that matter: rustls (the server and strict
//! clients) and BearSSL (the ESP8266), by name and by IP; and fails where a device would fail.

use crate::support;

use otaforge_pki::{self as pki, Host, IssueRequest, KeyKind, TrustMode};
use support::{TlsServer, bearssl_connect, rustls_tls12_connect};

fn hosts(list: &[&str]) -> Vec<Host> {
    list.iter().map(|h| Host::parse(h).unwrap()).collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    anchor: String,
    server: TlsServer,
}

fn setup(key: KeyKind, mode: TrustMode, list: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut req = IssueRequest::new(hosts(list));
    req.key = key;
    req.mode = mode;
    pki::generate(dir.path(), &req, false).unwrap();
    let m = pki::Material::load(dir.path()).unwrap().unwrap();
    let server = TlsServer::start(&m.server.cert_pem, &m.server.key_pem);
    Setup { anchor: m.trust_anchor_pem().to_string(), server, _dir: dir }
}

const HOSTS: &[&str] = &["ota.test", "127.0.0.1", "192.168.1.70"];

#[test]
fn rustls_client_with_only_the_ca_connects_by_every_name_and_ip() {
    for key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let s = setup(key, TrustMode::PrivateCa, HOSTS);
        for name in HOSTS {
            rustls_tls12_connect(&s.anchor, name, s.server.addr)
                .unwrap_or_else(|e| panic!("{key:?} {name}: {e}"));
        }
        let err = rustls_tls12_connect(&s.anchor, "other.test", s.server.addr).unwrap_err();
        assert!(err.contains("NotValidForName") || err.contains("name"), "{err}");
        let err = rustls_tls12_connect(&s.anchor, "10.0.0.9", s.server.addr).unwrap_err();
        assert!(err.contains("NotValidForName") || err.contains("name"), "{err}");
    }
}

#[test]
fn bearssl_with_only_the_ca_completes_tls12_by_name_and_by_ip() {
    for key in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let s = setup(key, TrustMode::PrivateCa, HOSTS);
        for name in HOSTS {
            let r = bearssl_connect(&s.anchor, name, s.server.addr, &["--get", "/"]);
            assert!(r.ok, "{key:?} {name}: {}", r.stdout);
            assert!(r.stdout.contains("version=0x0303"), "TLS 1.2 expected: {}", r.stdout);
            assert!(r.stdout.contains("bytes="), "{}", r.stdout);
        }
        // ChaCha20 first in the ESP8266 order, and rustls follows the client.
        let r = bearssl_connect(&s.anchor, "ota.test", s.server.addr, &[]);
        let suite = if key == KeyKind::EcdsaP256 { "suite=0xCCA9" } else { "suite=0xCCA8" };
        assert!(r.stdout.contains(suite), "{}", r.stdout);
    }
}

#[test]
fn bearssl_rejects_an_uncovered_name_with_error_56() {
    let s = setup(KeyKind::EcdsaP256, TrustMode::PrivateCa, HOSTS);
    let r = bearssl_connect(&s.anchor, "other.test", s.server.addr, &[]);
    assert!(!r.ok);
    assert!(r.stdout.starts_with("BEARSSL_ERROR 56"), "{}", r.stdout);
}

#[test]
fn bearssl_rejects_a_server_from_another_ca_with_error_62() {
    let s = setup(KeyKind::EcdsaP256, TrustMode::PrivateCa, HOSTS);
    let other = setup(KeyKind::EcdsaP256, TrustMode::PrivateCa, HOSTS);
    let r = bearssl_connect(&other.anchor, "ota.test", s.server.addr, &[]);
    assert!(r.stdout.starts_with("BEARSSL_ERROR 62"), "{}", r.stdout);
}

#[test]
fn bearssl_with_an_unset_clock_says_not_yet_valid() {
    let s = setup(KeyKind::EcdsaP256, TrustMode::PrivateCa, HOSTS);
    // A device that never got SNTP time thinks it is 1970.
    let r = bearssl_connect(&s.anchor, "ota.test", s.server.addr, &["--time", "0"]);
    assert!(r.stdout.starts_with("BEARSSL_ERROR 54"), "{}", r.stdout);
    // notBefore is backdated: a device clock 12 hours slow still works.
    let slow = time::OffsetDateTime::now_utc().unix_timestamp() - 12 * 3600;
    let r = bearssl_connect(&s.anchor, "ota.test", s.server.addr, &["--time", &slow.to_string()]);
    assert!(r.ok, "{}", r.stdout);
}

#[test]
fn renewed_server_certificate_is_accepted_by_devices_with_the_old_ca() {
    let dir = tempfile::tempdir().unwrap();
    pki::generate(dir.path(), &IssueRequest::new(hosts(&["ota.test"])), false).unwrap();
    let before = pki::Material::load(dir.path()).unwrap().unwrap();
    let report = pki::renew(dir.path(), Some(hosts(&["ota.test", "127.0.0.1"])), 90).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let after = pki::Material::load(dir.path()).unwrap().unwrap();
    assert_eq!(before.ca, after.ca, "the CA must not change on renewal");
    assert_ne!(before.server.key_pem, after.server.key_pem, "renewal makes a new key");
    let server = TlsServer::start(&after.server.cert_pem, &after.server.key_pem);
    for name in ["ota.test", "127.0.0.1"] {
        let r = bearssl_connect(before.trust_anchor_pem(), name, server.addr, &[]);
        assert!(r.ok, "{name}: {}", r.stdout);
    }
}

#[test]
fn pinned_leaf_works_for_bearssl_until_it_is_replaced() {
    let s = setup(KeyKind::Rsa2048, TrustMode::PinLeaf, &["ota.test", "127.0.0.1"]);
    let r = bearssl_connect(&s.anchor, "127.0.0.1", s.server.addr, &[]);
    assert!(r.ok, "{}", r.stdout);
    // Another self-signed leaf for the same names is not trusted: the device pinned the first one.
    let other = setup(KeyKind::Rsa2048, TrustMode::PinLeaf, &["ota.test", "127.0.0.1"]);
    let r = bearssl_connect(&s.anchor, "127.0.0.1", other.server.addr, &[]);
    assert!(!r.ok, "{}", r.stdout);
}
