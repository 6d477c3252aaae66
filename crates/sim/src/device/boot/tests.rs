use super::*;
use crate::device::partitions::TABLE_OFFSET;
use crate::device::reference_image;
use otaforge_firmware::ImageBuilder;
use otaforge_firmware::config_block;

/// Settings a test bakes (no Wi-Fi, no key), shared with the other device tests.
pub(crate) fn settings(version: &str) -> BakedSettings {
    BakedSettings {
        host: "ota.test".into(),
        port: 3443,
        path: "/update".into(),
        version: version.into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
        poll_interval_s: 60,
        tls_rx_buffer: 16384,
        tls_tx_buffer: 512,
        ..Default::default()
    }
}

fn baked(chip: Chip, version: &str) -> Vec<u8> {
    config_block::bake(&reference_image(chip, version, 64 * 1024), &settings(version)).unwrap()
}

#[test]
fn esp8266_reports_what_the_core_computes() {
    let image = baked(Chip::Esp8266, "1.0.0");
    let id = Identity::numbered(Chip::Esp8266, 7);
    let mut flash = Flash::with_image(id.flash_size, 0, &image).unwrap();
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert_eq!(b.sketch_size, image.len(), "an unsigned image is exactly what getSketchSize walks");
    assert_eq!(b.sketch_md5, digest::md5_hex(&image));
    assert_eq!(b.free_space, 0x200000 - image.len().next_multiple_of(4096));
    let Settings::Baked(s) = &b.settings else { panic!("{:?}", b.settings) };
    assert_eq!(s.version, "1.0.0");
}

#[test]
fn eboot_copies_a_pending_update_plain_or_gzipped() {
    let id = Identity::numbered(Chip::Esp8266, 1);
    let v1 = baked(Chip::Esp8266, "1.0.0");
    let v2 = baked(Chip::Esp8266, "2.0.0");
    for gz in [false, true] {
        let mut flash = Flash::with_image(id.flash_size, 0, &v1).unwrap();
        let payload = if gz {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&v2).unwrap();
            e.finish().unwrap()
        } else {
            v2.clone()
        };
        let src = 0x200000 - payload.len().next_multiple_of(4096);
        flash.erase_range(src, payload.len()).unwrap();
        flash.write(src, &payload).unwrap();
        let mut rtc =
            Rtc { eboot_copy: Some(EbootCopy { src, dst: 0, len: payload.len() }), ..Default::default() };
        let b = boot(&mut flash, &id, &mut rtc).unwrap();
        assert!(rtc.eboot_copy.is_none(), "the command is used once");
        assert_eq!(b.sketch_md5, digest::md5_hex(&v2), "gzip: {gz}");
    }
}

#[test]
fn esp8266_refuses_what_would_not_boot() {
    let id = Identity::numbered(Chip::Esp8266, 1);
    let mut blank = Flash::erased(id.flash_size).unwrap();
    assert!(matches!(boot(&mut blank, &id, &mut Rtc::default()), Err(BootError::Blank(0))));
    let plain = ImageBuilder::esp8266().build();
    let mut f = Flash::with_image(id.flash_size, 0, &plain).unwrap();
    assert!(matches!(boot(&mut f, &id, &mut Rtc::default()), Err(BootError::NotArduino)));
    let mut image = baked(Chip::Esp8266, "1.0.0");
    image[0x1000 + 8 + 8 + 100] ^= 0xFF; // a byte inside the sketch's first segment
    let mut f = Flash::with_image(id.flash_size, 0, &image).unwrap();
    let e = boot(&mut f, &id, &mut Rtc::default()).unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[test]
fn settings_sources() {
    let id = Identity::numbered(Chip::Esp8266, 1);
    let unbaked = reference_image(Chip::Esp8266, "1.0.0", 32 * 1024);
    let mut f = Flash::with_image(id.flash_size, 0, &unbaked).unwrap();
    assert_eq!(boot(&mut f, &id, &mut Rtc::default()).unwrap().settings, Settings::Unbaked);
    let foreign = ImageBuilder::arduino_esp8266().build();
    let mut f = Flash::with_image(id.flash_size, 0, &foreign).unwrap();
    assert!(matches!(boot(&mut f, &id, &mut Rtc::default()).unwrap().settings, Settings::NotReference(_)));
}

#[test]
fn esp32_boots_the_selected_slot_and_falls_back() {
    let id = Identity::numbered(Chip::Esp32, 3);
    let v1 = baked(Chip::Esp32, "1.0.0");
    let mut flash = Flash::with_image(id.flash_size, 0x10000, &v1).unwrap();
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert_eq!(b.free_space, 0x140000);
    assert_eq!(b.sketch_size, v1.len());
    assert_eq!(b.sketch_sha256.as_deref(), Some(hex::encode_upper(&v1[v1.len() - 32..]).as_str()));
    let Layout::Esp32 { map, running } = b.layout else { panic!() };
    // A broken image in the other slot, selected: the bootloader falls back to ota_0.
    let next = map.next_update_slot(running).unwrap();
    let mut wrong = baked(Chip::Esp32C3, "2.0.0");
    flash.write(next.offset, &wrong).unwrap();
    map.set_boot(&mut flash, next).unwrap();
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    let Layout::Esp32 { running: again, .. } = b.layout else { panic!() };
    assert_eq!(again, running);
    assert!(image_check::check_esp32(&wrong, Chip::Esp32).unwrap_err().contains("mismatch chip ID"));
    wrong[40] ^= 1;
    assert!(image_check::check_esp32(&wrong, Chip::Esp32C3).is_err());
    // With a partition table flashed, the table is used.
    let mut f = Flash::with_image(id.flash_size, TABLE_OFFSET, &PartitionMap::default_table_bytes()).unwrap();
    f.write(0x10000, &v1).unwrap();
    assert!(boot(&mut f, &id, &mut Rtc::default()).is_ok());
}

#[test]
fn esp32_rollback_states_through_boots() {
    use crate::device::partitions::{MarkValid, OtaState};
    let id = Identity::numbered(Chip::Esp32, 4);
    let v1 = baked(Chip::Esp32, "1.0.0");
    let v2 = baked(Chip::Esp32, "2.0.0");
    let mut flash = Flash::with_image(id.flash_size, 0x10000, &v1).unwrap();
    let version = |b: &Booted| match &b.settings {
        Settings::Baked(s) => s.version.clone(),
        other => panic!("{other:?}"),
    };
    // Serial-flashed, otadata erased: ota_0 boots and the bootloader records it as VALID.
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert!(!b.pending_verify);
    let Layout::Esp32 { map, running } = b.layout.clone() else { panic!() };
    assert_eq!(map.state_of(&flash, running).unwrap(), Some(OtaState::Valid));

    // An OTA update into ota_1, as the updater leaves it: NEW.
    let ota1 = map.next_update_slot(running).unwrap();
    let install = |flash: &mut Flash| {
        flash.erase_range(ota1.offset, v2.len().next_multiple_of(SECTOR)).unwrap();
        flash.write(ota1.offset, &v2).unwrap();
        map.set_boot(flash, ota1).unwrap();
        assert_eq!(map.state_of(flash, ota1).unwrap(), Some(OtaState::New));
    };
    install(&mut flash);
    // Its first boot: PENDING_VERIFY.
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert!(b.pending_verify);
    assert_eq!(version(&b), "2.0.0");
    assert_eq!(map.state_of(&flash, ota1).unwrap(), Some(OtaState::PendingVerify));
    // A reset before it was marked valid: ABORTED, and the previous slot boots.
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert!(!b.pending_verify);
    assert_eq!(version(&b), "1.0.0", "rolled back");
    assert_eq!(map.state_of(&flash, ota1).unwrap(), Some(OtaState::Aborted));
    assert_eq!(mark_app_valid(&mut flash, &b).unwrap(), MarkValid::AlreadyValid);

    // The same update again, this time confirmed: it stays.
    install(&mut flash);
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert!(b.pending_verify);
    assert_eq!(mark_app_valid(&mut flash, &b).unwrap(), MarkValid::Marked);
    assert_eq!(map.state_of(&flash, ota1).unwrap(), Some(OtaState::Valid));
    let b = boot(&mut flash, &id, &mut Rtc::default()).unwrap();
    assert!(!b.pending_verify);
    assert_eq!(version(&b), "2.0.0", "a confirmed app survives resets");

    // The ESP8266 has no otadata.
    let e = Identity::numbered(Chip::Esp8266, 1);
    let mut f = Flash::with_image(e.flash_size, 0, &baked(Chip::Esp8266, "1.0.0")).unwrap();
    let b = boot(&mut f, &e, &mut Rtc::default()).unwrap();
    assert!(!b.pending_verify);
    assert_eq!(mark_app_valid(&mut f, &b).unwrap(), MarkValid::NotOta);
}
