use super::*;
use crate::{Chip, ImageBuilder, inspect};

fn settings() -> BakedSettings {
    BakedSettings {
        host: "ota.lan".into(),
        port: 3443,
        path: "/update".into(),
        channel: "stable".into(),
        version: "1.4.2".into(),
        device_name: "kitchen-sensor".into(),
        wifi_ssid: "home".into(),
        wifi_password: "correct horse".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        poll_interval_s: 3600,
        tls_rx_buffer: 16384,
        tls_tx_buffer: 512,
        baked_at: 1_790_000_000,
        signing_key: Vec::new(),
    }
}

fn with_block(mut b: Vec<u8>) -> (Vec<u8>, usize) {
    let at = reserve(&mut b).unwrap();
    (b, at)
}

#[test]
fn settings_round_trip_through_the_block() {
    let block = settings().encode().unwrap();
    assert_eq!(block.len(), BLOCK_LEN);
    assert_eq!(BakedSettings::decode(&block).unwrap(), Some(settings()));
    assert_eq!(BakedSettings::decode(&unbaked_block()).unwrap(), None);
    let mut broken = block.clone();
    broken[field("host").0] ^= 1;
    assert_eq!(BakedSettings::decode(&broken), Err(ConfigError::BadCrc));
}

#[test]
fn values_too_long_for_the_block_are_refused_by_name() {
    let mut s = settings();
    s.host = "h".repeat(64);
    assert_eq!(s.encode(), Err(ConfigError::TooLong { field: "host", len: 64, max: 63 }));
    let mut s = settings();
    s.ca_pem = format!("-----BEGIN CERTIFICATE-----\n{}", "A".repeat(3000));
    assert!(matches!(s.encode(), Err(ConfigError::TooLong { field: "ca_pem", .. })));
    let mut s = settings();
    s.tls_rx_buffer = 256;
    assert!(matches!(s.encode(), Err(ConfigError::Invalid(m)) if m.contains("512 to 16384")));
}

#[test]
fn the_layout_fits_and_the_crc_is_zlibs() {
    assert!(fields_len() <= CRC_OFFSET);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(field("magic"), (0, Kind::Bytes(16)));
}

#[test]
fn baking_fixes_every_checksum_and_changes_nothing_else() {
    let images = [
        ("arduino", ImageBuilder::arduino_esp8266().target_size(300_000).build()),
        ("esp32", ImageBuilder::esp32_app(Chip::Esp32).target_size(200_000).build()),
        ("esp32c3", ImageBuilder::esp32_app(Chip::Esp32C3).target_size(200_000).build()),
        ("esp8266", ImageBuilder::esp8266().target_size(100_000).build()),
    ];
    for (what, image) in images {
        let (image, at) = with_block(image);
        assert!(inspect(&image).unwrap().is_valid(), "{what}: reserve left a bad image");
        assert_eq!(read(&image).unwrap(), None, "{what}: unbaked");
        let baked = bake(&image, &settings()).unwrap();
        let info = inspect(&baked).unwrap();
        assert!(info.is_valid(), "{what}: {:?}", info.problems());
        assert_eq!(read(&baked).unwrap(), Some(settings()), "{what}");
        // Outside the block only check values may differ.
        let mut allowed = vec![];
        allowed.push(at..at + BLOCK_LEN);
        if let Some(c) = &info.checksum {
            allowed.push(c.offset..c.offset + 1);
        }
        if let Some(a) = &info.arduino {
            allowed.push(0x1010..0x1018);
            let c = &a.sketch.checksum;
            allowed.push(c.offset..c.offset + 1);
        }
        if info.sha256_valid.is_some() {
            allowed.push(info.image_len - 32..info.image_len);
        }
        for (i, (a, b)) in image.iter().zip(&baked).enumerate() {
            if a != b {
                assert!(allowed.iter().any(|r| r.contains(&i)), "{what}: byte {i:#x} changed");
            }
        }
    }
}

#[test]
fn images_without_a_block_or_damaged_ones_are_refused() {
    let plain = ImageBuilder::arduino_esp8266().target_size(100_000).build();
    assert_eq!(bake(&plain, &settings()), Err(ConfigError::NoBlock));
    let (mut image, _) = with_block(plain);
    let last = image.len() - 1;
    image[last] ^= 0x55;
    assert!(matches!(bake(&image, &settings()), Err(ConfigError::Invalid(m)) if m.contains("damaged")));
}

#[test]
fn the_committed_c_header_is_the_generated_one() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../device-firmware/common/otaforge_config_block.h");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == c_header(),
        "{} is out of date: run `otaforge firmware-header > {}`",
        path.display(),
        path.display()
    );
}

#[test]
fn a_signing_key_round_trips_and_format_1_firmware_is_still_baked_without_one() {
    let spki = {
        let mut k = vec![0x30, 0x59];
        k.extend((0..89).map(|i| i as u8));
        k
    };
    let keyed = BakedSettings { signing_key: spki.clone(), ..settings() };
    let (image, _) = with_block(ImageBuilder::arduino_esp8266().target_size(300_000).build());
    assert_eq!(read(&bake(&image, &keyed).unwrap()).unwrap(), Some(keyed.clone()));

    // An image built from format-1 firmware (3072-byte block, no key field).
    let mut old = ImageBuilder::arduino_esp8266().target_size(300_000).build();
    let at = reserve_as(&mut old, 1).unwrap();
    assert_eq!(block_at(&old, at), (1, 3072));
    let baked = bake(&old, &settings()).unwrap();
    assert_eq!(read(&baked).unwrap(), Some(settings()));
    assert!(inspect(&baked).unwrap().is_valid());
    // Nothing past the old block's end was touched.
    assert_eq!(baked[at + 3072..at + 3584], old[at + 3072..at + 3584]);
    assert_eq!(bake(&old, &keyed), Err(ConfigError::NoRoomForKey));

    let mut s = settings();
    s.signing_key = b"-----BEGIN PUBLIC KEY-----".to_vec();
    assert!(matches!(s.encode(), Err(ConfigError::Invalid(m)) if m.contains("DER")));
    s.signing_key = vec![0x30; SIGNING_KEY_MAX + 1];
    assert!(matches!(s.encode(), Err(ConfigError::TooLong { field: "signing_key", .. })));
}
