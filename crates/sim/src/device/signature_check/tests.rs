//! The updater with and without a verifier, fed files no `otaforge publish` would store (signed by
//! another key, tampered, too short, padded oddly), the way the cores take them.

use std::sync::OnceLock;

use super::*;
use crate::device::boot::{self, BootError, Booted, Layout, Rtc, Settings};
use crate::device::status::Console;
use crate::device::updater::{Check, Machine, Net, feed};
use crate::device::{Identity, app_offset, console_for, reference_image};
use otaforge_firmware::{config_block, digest, gzip};
use otaforge_pki::signing::{Family, Keys};

/// Two projects' keys (both families), made once: RSA keys take a while.
fn keys() -> &'static [Keys; 2] {
    static KEYS: OnceLock<[Keys; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || {
            let dir = tempfile::tempdir().unwrap();
            otaforge_pki::signing::generate(dir.path(), &Family::ALL, false).unwrap()
        };
        [make(), make()]
    })
}

fn private(chip: Chip, project: usize) -> &'static otaforge_pki::signing::PrivateKey {
    keys()[project].current(signature::family(chip)).unwrap()
}

fn settings(version: &str, key: &[u8]) -> BakedSettings {
    BakedSettings { signing_key: key.to_vec(), ..crate::device::boot::tests::settings(version) }
}

fn image(chip: Chip, version: &str, key: &[u8]) -> Vec<u8> {
    config_block::bake(&reference_image(chip, version, 64 * 1024), &settings(version, key)).unwrap()
}

/// A board running 1.0.0 whose config block holds `key` (empty: none).
struct Board {
    id: Identity,
    flash: Flash,
    rtc: Rtc,
    v1: Vec<u8>,
}

impl Board {
    fn new(chip: Chip, key: &[u8]) -> Board {
        let id = Identity::numbered(chip, 5);
        let v1 = image(chip, "1.0.0", key);
        let flash = Flash::with_image(id.flash_size, app_offset(chip), &v1).unwrap();
        Board { id, flash, rtc: Rtc::default(), v1 }
    }

    /// With the project's key (0 or 1) for its family.
    fn keyed(chip: Chip, project: usize) -> Board {
        Board::new(chip, &private(chip, project).public().spki_der)
    }

    fn boot(&mut self) -> Result<Booted, BootError> {
        boot::boot(&mut self.flash, &self.id, &mut self.rtc)
    }

    /// Boots, then runs the updater on `file` (x-MD5: the file's own, unless `x_md5`).
    async fn update(&mut self, file: &[u8], x_md5: Option<&str>) -> Result<(), (i32, String)> {
        let booted = self.boot().unwrap();
        let Settings::Baked(s) = &booted.settings else { panic!("{:?}", booted.settings) };
        let console: Console = console_for(&self.id, 50);
        let net = Net::default();
        let c =
            Check { id: &self.id, settings: s, booted: &booted, x509_time: 0, net: &net, console: &console };
        let mut stuck = false;
        let m = Machine { flash: &mut self.flash, rtc: &mut self.rtc, updater_stuck: &mut stuck };
        let md5 = digest::md5_hex(file);
        feed(&c, m, file, Some(x_md5.unwrap_or(&md5))).await
    }

    /// What runs after the next reset: its sketch MD5 and version.
    fn running(&mut self) -> (String, String) {
        let b = self.boot().unwrap();
        let Settings::Baked(s) = b.settings else { panic!("{:?}", b.settings) };
        (b.sketch_md5, s.version)
    }

    fn still_on_v1(&mut self) {
        assert_eq!(self.running(), (digest::md5_hex(&self.v1), "1.0.0".to_string()));
    }
}

fn sign(chip: Chip, project: usize, bytes: &[u8]) -> Vec<u8> {
    signature::sign(bytes, private(chip, project)).unwrap()
}

fn refused(chip: Chip) -> (i32, String) {
    if chip.is_esp8266() {
        (12, "Signature verification failed".into())
    } else {
        (14, "Signature Verification Failed".into())
    }
}

#[tokio::test]
async fn a_signed_esp8266_image_installs_and_eboot_copies_it_without_the_trailer() {
    let mut b = Board::keyed(Chip::Esp8266, 0);
    let v2 = image(Chip::Esp8266, "2.0.0", &private(Chip::Esp8266, 0).public().spki_der);
    let signed = sign(Chip::Esp8266, 0, &v2);
    assert_eq!(signed.len(), v2.len() + 256 + 4);
    assert_eq!(b.update(&signed, None).await, Ok(()));
    assert_eq!(b.rtc.eboot_copy.map(|c| c.len), Some(v2.len()), "_size = binSize");
    assert_eq!(b.running(), (digest::md5_hex(&v2), "2.0.0".into()), "getSketchMD5 covers the image");
}

#[tokio::test]
async fn with_a_verifier_the_esp8266_never_compares_the_md5() {
    let wrong = "00112233445566778899aabbccddeeff";
    let v2 = image(Chip::Esp8266, "2.0.0", &[]);
    let mut b = Board::keyed(Chip::Esp8266, 0);
    assert_eq!(b.update(&sign(Chip::Esp8266, 0, &v2), Some(wrong)).await, Ok(()));
    // Without one, the same file and x-MD5 are error 7.
    let mut b = Board::new(Chip::Esp8266, &[]);
    assert_eq!(b.update(&sign(Chip::Esp8266, 0, &v2), Some(wrong)).await.map_err(|e| e.0), Err(7));
}

#[tokio::test]
async fn an_esp8266_refuses_with_12_at_every_step_and_keeps_its_image() {
    let chip = Chip::Esp8266;
    let v2 = image(chip, "2.0.0", &[]);
    let signed = sign(chip, 0, &v2);
    let n = signed.len();
    let mut other_mode = v2.clone();
    let mut b = Board::keyed(chip, 0);
    other_mode[2] = (b.v1[2] + 1) % 4;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Its last four bytes are image bytes, not 256.
        ("unsigned", v2.clone()),
        ("length word 255", [&signed[..n - 4], &255u32.to_le_bytes()[..]].concat()),
        ("length word 512", [&signed[..n - 4], &512u32.to_le_bytes()[..]].concat()),
        ("a signature byte changed", {
            let mut t = signed.clone();
            t[v2.len() + 10] ^= 0x01;
            t
        }),
        ("an image byte changed", {
            let mut t = signed.clone();
            t[0x1000 + 200] ^= 0x01;
            t
        }),
        ("signed by another key", sign(chip, 1, &v2)),
        // The updater writes the chip's mode into byte 2 before it hashes the flash.
        ("signed for another flash mode", sign(chip, 0, &other_mode)),
    ];
    for (what, file) in cases {
        assert_eq!(b.update(&file, None).await, Err(refused(chip)), "{what}");
        assert!(b.rtc.eboot_copy.is_none(), "{what}: nothing staged");
        b.still_on_v1();
    }
    // A key that is not RSA (the ESP32 family's, baked by mistake) refuses everything, a good
    // signature included: BearSSL's `length()` is then the EC point's, never 256.
    let mut b = Board::new(chip, &private(Chip::Esp32, 0).public().spki_der);
    assert_eq!(b.update(&signed, None).await, Err(refused(chip)));
}

#[tokio::test]
async fn an_esp8266_verifies_the_gzip_bytes_and_eboot_finds_the_gzip_size() {
    let chip = Chip::Esp8266;
    let v2 = image(chip, "2.0.0", &[]);
    let packed = gzip::compress(&v2);
    let signed = sign(chip, 0, &packed);
    let mut b = Board::keyed(chip, 0);
    let mut tampered = signed.clone();
    tampered[4] ^= 0x01; // MTIME: eboot never reads it, the hash covers it
    assert_eq!(b.update(&tampered, None).await, Err(refused(chip)));
    b.still_on_v1();
    assert_eq!(b.update(&signed, None).await, Ok(()));
    assert_eq!(b.rtc.eboot_copy.map(|c| c.len), Some(packed.len()));
    assert_eq!(b.running(), (digest::md5_hex(&v2), "2.0.0".into()));
}

/// No verifier: the file is taken whole, so eboot reads the signature's length word (256) as the
/// unpacked size, writes 256 bytes of eboot over 0x0 and the board no longer starts — as a real
/// one would not. A signed gzip'd release must only reach boards that verify.
#[tokio::test]
async fn without_a_verifier_a_signed_gzip_leaves_an_esp8266_unbootable() {
    let chip = Chip::Esp8266;
    let packed = gzip::compress(&image(chip, "2.0.0", &[]));
    let mut b = Board::new(chip, &[]);
    assert_eq!(b.update(&sign(chip, 0, &packed), None).await, Ok(()));
    assert_eq!(b.rtc.eboot_copy.map(|c| c.len), Some(packed.len() + 260));
    match b.boot() {
        Err(BootError::Broken { addr: 0, why }) => assert!(why.starts_with("eboot:"), "{why}"),
        other => panic!("{:?}", other.map(|b| b.sketch_md5)),
    }
}

#[tokio::test]
async fn a_signed_esp32_image_installs_with_its_trailer_in_the_slot() {
    let chip = Chip::Esp32;
    let mut b = Board::keyed(chip, 0);
    let v2 = image(chip, "2.0.0", &private(chip, 0).public().spki_der);
    let signed = sign(chip, 0, &v2);
    assert_eq!(signed.len(), v2.len() + ESP32_SIGNATURE_SIZE);
    assert_eq!(b.update(&signed, None).await, Ok(()));
    let booted = b.boot().unwrap();
    assert_eq!(booted.sketch_md5, digest::md5_hex(&v2), "getSketchMD5 covers the app image");
    let Layout::Esp32 { running, .. } = booted.layout else { unreachable!() };
    assert_eq!(b.flash.read(running.offset, signed.len()).unwrap(), signed, "the file as written");
}

#[tokio::test]
async fn an_esp32_checks_the_md5_then_the_signature_and_keeps_its_image() {
    let chip = Chip::Esp32;
    let v2 = image(chip, "2.0.0", &[]);
    let signed = sign(chip, 0, &v2);
    let mut b = Board::keyed(chip, 0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unsigned", v2.clone()),
        ("an image byte changed", {
            let mut t = signed.clone();
            t[0x2000] ^= 0x01;
            t
        }),
        ("a signature byte changed", {
            let mut t = signed.clone();
            t[v2.len() + 20] ^= 0x01;
            t
        }),
        ("signed by another key", sign(chip, 1, &v2)),
        ("a byte short", signed[..signed.len() - 1].to_vec()),
    ];
    for (what, file) in cases {
        assert_eq!(b.update(&file, None).await, Err(refused(chip)), "{what}");
        b.still_on_v1();
    }
    // The MD5 comes first.
    let wrong = Some("00112233445566778899aabbccddeeff");
    assert_eq!(b.update(&signed, wrong).await, Err((7, "MD5 Check Failed".into())));
    // `begin` wants room for the trailer.
    let short = &v2[..400];
    assert_eq!(b.update(short, None).await, Err((5, "Bad Size Given".into())));
    b.still_on_v1();
}

/// The verifier reads the DER length and ignores what follows; the project's own check insists
/// on zero padding (what bin_signing.py writes), the device does not.
#[tokio::test]
async fn an_esp32_does_not_read_the_trailer_padding() {
    let chip = Chip::Esp32;
    let v2 = image(chip, "2.0.0", &[]);
    let mut padded = sign(chip, 0, &v2);
    let n = padded.len();
    padded[n - 8..].fill(0xAB);
    let key = private(chip, 0).public();
    assert_eq!(signature::verify(&padded, &key), Err(SignatureError::Unsigned));
    let mut b = Board::keyed(chip, 0);
    assert_eq!(b.update(&padded, None).await, Ok(()));
    assert_eq!(b.running(), (digest::md5_hex(&v2), "2.0.0".into()));
}

#[tokio::test]
async fn boards_without_a_key_take_what_they_took_before() {
    for chip in [Chip::Esp8266, Chip::Esp32] {
        let v2 = image(chip, "2.0.0", &[]);
        let mut b = Board::new(chip, &[]);
        assert_eq!(b.update(&v2, None).await, Ok(()), "{chip}");
        assert_eq!(b.running(), (digest::md5_hex(&v2), "2.0.0".into()), "{chip}");
    }
}

#[test]
fn the_der_length_is_read_as_mbedtls_reads_it() {
    let mut buf = [0u8; 512];
    buf[..2].copy_from_slice(&[0x30, 0x45]);
    assert_eq!(der_sequence_len(&buf), Some(0x47));
    buf[..4].copy_from_slice(&[0x30, 0x82, 0x01, 0x00]);
    assert_eq!(der_sequence_len(&buf), Some(4 + 256));
    buf[..4].copy_from_slice(&[0x30, 0x82, 0x02, 0x00]); // longer than the buffer
    assert_eq!(der_sequence_len(&buf), None);
    buf[..2].copy_from_slice(&[0x30, 0x80]); // indefinite length: not DER
    assert_eq!(der_sequence_len(&buf), None);
    buf[0] = 0xE9;
    assert_eq!(der_sequence_len(&buf), None);
    assert_eq!(installed(Chip::Esp32C3, &BakedSettings::default()), None);
    let with = BakedSettings { signing_key: vec![1, 2, 3], ..Default::default() };
    assert_eq!(installed(Chip::Esp32C3, &with).map(|k| k.family), Some(Family::Esp32));
}
