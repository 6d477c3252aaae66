//! Firmware signing: `otaforge key` makes the keys, and what it signs verifies with independent
//! implementations of each device's check — BearSSL (Debian's libbearssl, called as the ESP8266
//! core's `SigningVerifier` calls it) and OpenSSL — while every kind of damage is refused.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use otaforge_firmware::{Chip, ImageBuilder};
use support::{otaforge, run};

/// The ESP8266 core's check, built from `tests/support/esp8266_verify.c` against libbearssl.
fn bearssl_verifier() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("esp8266_verify");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/esp8266_verify.c");
        let status = Command::new("cc")
            .args(["-O1", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-lbearssl")
            .status()
            .expect("a C compiler (cc) is needed");
        assert!(status.success(), "could not build the BearSSL verifier: install libbearssl-dev");
        out
    })
}

fn ok(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// BearSSL's verdict on `file` against the project's ESP8266 public key: the device's exit code.
fn bearssl_verdict(pem: &Path, file: &Path) -> i32 {
    let modulus = Command::new("openssl")
        .args(["rsa", "-pubin", "-noout", "-modulus", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    let modulus = String::from_utf8(modulus.stdout).unwrap();
    let modulus = modulus.trim().strip_prefix("Modulus=").expect("openssl prints the modulus");
    let out = Command::new(bearssl_verifier()).args([modulus, "010001"]).arg(file).output().unwrap();
    out.status.code().unwrap()
}

/// OpenSSL's verdict on body + signature split the way the family's updater splits the file.
fn openssl_verifies(pem: &Path, body: &[u8], sig: &[u8], dir: &Path) -> bool {
    std::fs::write(dir.join("body"), body).unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(pem)
        .arg("-signature")
        .arg(dir.join("sig"))
        .arg(dir.join("body"))
        .output()
        .unwrap()
        .status
        .success()
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        ok(otaforge(dir.path()).args(["key", "new"]));
        Project { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn export(&self, family: &str) -> PathBuf {
        let pem = self.path(&format!("{family}.pub.pem"));
        ok(otaforge(self.dir.path()).args(["key", "export", "--family", family, "--out"]).arg(&pem));
        pem
    }
    fn sign(&self, family: &str, image: &[u8]) -> Vec<u8> {
        let (src, out) = (self.path("image.bin"), self.path("signed.bin"));
        std::fs::write(&src, image).unwrap();
        ok(otaforge(self.dir.path())
            .args(["key", "sign", "--family", family])
            .arg(&src)
            .arg("--out")
            .arg(&out));
        std::fs::read(out).unwrap()
    }
}

#[test]
fn esp8266_signatures_verify_with_bearssl_and_openssl_and_every_damage_is_refused() {
    let p = Project::new();
    let pem = p.export("esp8266");
    let image = ImageBuilder::arduino_esp8266().target_size(300_000).build();
    let signed = p.sign("esp8266", &image);

    // Layout: image || 256-byte signature || u32_le(256).
    assert_eq!(&signed[..image.len()], &image[..]);
    assert_eq!(signed.len(), image.len() + 256 + 4);
    assert_eq!(&signed[signed.len() - 4..], &256u32.to_le_bytes());
    let sig = &signed[image.len()..image.len() + 256];
    assert!(openssl_verifies(&pem, &image, sig, p.dir.path()), "openssl refuses the signature");

    let check = |bytes: &[u8]| {
        let f = p.path("check.bin");
        std::fs::write(&f, bytes).unwrap();
        bearssl_verdict(&pem, &f)
    };
    assert_eq!(check(&signed), 0, "BearSSL refuses what OTA Forge signed");
    // And `otaforge key verify` says which key made it.
    std::fs::write(p.path("check.bin"), &signed).unwrap();
    let said =
        ok(otaforge(p.dir.path()).args(["key", "verify", "--family", "esp8266"]).arg(p.path("check.bin")));
    assert!(said.contains("this project's current ESP8266 key"), "{said}");

    let mut tampered = signed.clone();
    tampered[1000] ^= 1;
    let mut truncated = signed[..signed.len() - 4 - 10].to_vec();
    truncated.extend_from_slice(&246u32.to_le_bytes());
    let mut wrong_len = signed.clone();
    let n = wrong_len.len();
    wrong_len[n - 4..].copy_from_slice(&255u32.to_le_bytes());
    let other = Project::new().sign("esp8266", &image);
    for (what, bytes) in [
        ("tampered", &tampered),
        ("truncated", &truncated),
        ("wrong length word", &wrong_len),
        ("other key", &other),
        ("unsigned", &image),
    ] {
        assert_eq!(check(bytes), 12, "BearSSL accepted the {what} file");
        std::fs::write(p.path("check.bin"), bytes).unwrap();
        let (out, stdout, _) = run(otaforge(p.dir.path())
            .args(["key", "verify", "--family", "esp8266"])
            .arg(p.path("check.bin")));
        assert!(!out.status.success(), "key verify accepted the {what} file: {stdout}");
    }
    assert!(!openssl_verifies(&pem, &tampered[..image.len()], sig, p.dir.path()));
}

#[test]
fn esp32_signatures_fill_the_512_byte_trailer_and_verify_with_openssl() {
    let p = Project::new();
    let pem = p.export("esp32");
    let image = ImageBuilder::esp32_app(Chip::Esp32).build();
    let signed = p.sign("esp32", &image);
    assert_eq!(signed.len(), image.len() + 512, "arduino-esp32 reads a 512-byte trailer");
    let trailer = &signed[image.len()..];
    assert_eq!(trailer[0], 0x30, "ECDSA signature in DER, as bin_signing.py writes it");
    let der_len = 2 + trailer[1] as usize;
    assert!(trailer[der_len..].iter().all(|b| *b == 0), "zero padding after the signature");
    assert!(openssl_verifies(&pem, &image, &trailer[..der_len], p.dir.path()));

    let mut tampered = signed.clone();
    tampered[64] ^= 0x80;
    assert!(!openssl_verifies(&pem, &tampered[..image.len()], &trailer[..der_len], p.dir.path()));
    let other = Project::new().sign("esp32", &image);
    for (what, bytes) in [("tampered", &tampered), ("other key", &other), ("unsigned", &image)] {
        std::fs::write(p.path("check.bin"), bytes).unwrap();
        let (out, stdout, _) =
            run(otaforge(p.dir.path()).args(["key", "verify", "--family", "esp32"]).arg(p.path("check.bin")));
        assert!(!out.status.success(), "key verify accepted the {what} file: {stdout}");
    }
}

#[test]
fn keys_are_private_never_replaced_silently_and_the_c_header_compiles() {
    let p = Project::new();
    for f in ["signing-esp8266.key", "signing-esp32.key"] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p.path(f)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let before = std::fs::read(p.path("signing-esp8266.key")).unwrap();
    let (out, _, stderr) = run(otaforge(p.dir.path()).args(["key", "new"]));
    assert!(!out.status.success() && stderr.contains("--replace"), "{stderr}");
    assert_eq!(std::fs::read(p.path("signing-esp8266.key")).unwrap(), before, "a key was overwritten");
    let shown = ok(otaforge(p.dir.path()).args(["key", "show"]));
    ok(otaforge(p.dir.path()).args(["key", "new", "--family", "esp8266", "--replace"]));
    let after = ok(otaforge(p.dir.path()).args(["key", "show"]));
    assert!(after.contains("retired in"), "{after}");
    let old_fp = shown.lines().find(|l| l.starts_with("ESP8266")).unwrap().split_whitespace().nth(1).unwrap();
    assert!(after.lines().any(|l| l.contains(old_fp) && l.contains("retired")), "{after}");

    let header = ok(otaforge(p.dir.path()).args(["key", "export", "--family", "esp32", "--c-header"]));
    assert!(!header.contains("PRIVATE"));
    std::fs::write(p.path("key.h"), &header).unwrap();
    std::fs::write(
        p.path("use.c"),
        "#include \"key.h\"\nint main(void) { return OTAFORGE_SIGNING_KEY_ESP32_PEM[0] != '-'; }\n",
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-Wall", "-Werror", "-o"])
        .arg(p.path("use"))
        .arg(p.path("use.c"))
        .status()
        .unwrap();
    assert!(built.success());
    assert!(Command::new(p.path("use")).status().unwrap().success());
}

#[test]
fn inspect_says_whether_a_file_is_signed_and_by_which_key() {
    let p = Project::new();
    let image = ImageBuilder::arduino_esp8266().target_size(200_000).build();
    let signed = p.sign("esp8266", &image);
    let inspect = |bytes: &[u8]| {
        std::fs::write(p.path("look.bin"), bytes).unwrap();
        ok(otaforge(p.dir.path()).arg("inspect").arg(p.path("look.bin")))
    };
    assert!(inspect(&signed).contains("Signed:     signed by this project's current ESP8266 key"));
    assert!(inspect(&image).contains("Signed:     no:"));
    // A changed signature byte: the image inside is intact (its checksums hold), only the
    // signature check can tell.
    let mut tampered = signed.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 4;
    assert!(inspect(&tampered).contains("Signed:     the signature does not match"));
    ok(otaforge(p.dir.path()).args(["key", "new", "--family", "esp8266", "--replace"]));
    assert!(inspect(&signed).contains("signed by a retired ESP8266 key"));
}
