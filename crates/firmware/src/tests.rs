//! Round trips through the builder and every kind of broken file.

use super::digest::{crc32_mpeg2, sha256_hex};
use super::synth::append_signature;
use super::*;

fn ok(bytes: &[u8]) -> ImageInfo {
    inspect(bytes).unwrap_or_else(|e| panic!("inspect failed: {e}"))
}

fn err(bytes: &[u8]) -> ImageError {
    match inspect(bytes) {
        Ok(info) => panic!("expected an error, got {info:?}"),
        Err(e) => e,
    }
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|s| s.contains(needle))
}

#[test]
fn hand_made_esp8266_image_reads() {
    // One 4-byte segment: 8 + 8 + 4 = 20 bytes, zero padding to 31, checksum 0xEF^1^2^3^4.
    let mut b = vec![0xE9, 1, 2, 0x20, 0x04, 0x00, 0x10, 0x40];
    b.extend_from_slice(&0x4010_0000u32.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&[1, 2, 3, 4]);
    b.resize(31, 0);
    b.push(0xEF ^ 1 ^ 2 ^ 3 ^ 4);
    let info = ok(&b);
    assert_eq!(info.format, ImageFormat::Esp8266);
    assert_eq!(info.chip, Some(Chip::Esp8266));
    assert_eq!(info.flash_mode, Some(FlashMode::Dio));
    assert_eq!(info.flash_size_code, Some(2));
    assert_eq!(info.flash_size_bytes, Some(1 << 20));
    assert_eq!(info.entry, Some(0x4010_0004));
    assert_eq!(info.segments, vec![Segment { load_addr: 0x4010_0000, len: 4, file_offset: 16 }]);
    assert_eq!(info.checksum, Some(Checksum { offset: 31, stored: 0xEB, computed: 0xEB, valid: true }));
    assert!(info.is_valid(), "{:?}", info.problems());
    assert_eq!(info.image_len, 32);
}

#[test]
fn esp8266_round_trip() {
    let bytes =
        ImageBuilder::esp8266().flash_mode(FlashMode::Qio).flash_size_code(2).flash_freq_code(0xF).build();
    let info = ok(&bytes);
    assert_eq!(info.format, ImageFormat::Esp8266);
    assert_eq!(info.chip, Some(Chip::Esp8266));
    assert_eq!(info.flash_mode, Some(FlashMode::Qio));
    assert_eq!((info.flash_size_code, info.flash_freq_code), (Some(2), Some(0xF)));
    assert_eq!(info.flash_size_bytes, Some(1 << 20));
    assert_eq!(info.entry, Some(0x4010_0004));
    let segs: Vec<_> = info.segments.iter().map(|s| (s.load_addr, s.len, s.file_offset)).collect();
    assert_eq!(segs, vec![(0x4010_0000, 1024, 16), (0x3FFE_8000, 128, 16 + 1024 + 8)]);
    assert_eq!(info.checksum_valid, Some(true));
    assert_eq!((info.sha256_valid, info.signature_len), (None, None));
    assert!(info.arduino.is_none() && info.app_desc.is_none() && info.extended_header.is_none());
    assert_eq!((info.size, info.image_len, info.size % 16), (bytes.len(), bytes.len(), 0));
    assert_eq!(info.md5, md5_hex(&bytes));
    assert_eq!(info.sha256, sha256_hex(&bytes));
    assert!(info.is_valid());
    assert!(has(&info.warnings, "no eboot"), "{:?}", info.warnings);
}

#[test]
fn arduino_round_trip() {
    let bytes = ImageBuilder::arduino_esp8266()
        .flash_mode(FlashMode::Dout)
        .flash_size_code(3)
        .entry(0x4010_0123)
        .build();
    let info = ok(&bytes);
    assert_eq!(info.format, ImageFormat::ArduinoEsp8266);
    assert_eq!(info.chip, Some(Chip::Esp8266));
    assert_eq!(info.flash_mode, Some(FlashMode::Dout));
    assert_eq!(info.flash_size_bytes, Some(2 << 20));
    assert_eq!(info.entry, Some(0x4010_0123));
    assert_eq!(info.segments.len(), 4);
    assert_eq!((info.segments[0].load_addr, info.segments[0].file_offset), (0x4020_1010, 0x1010));
    let a = info.arduino.as_ref().unwrap();
    assert_eq!((a.eboot.offset, a.sketch.offset), (0, 0x1000));
    assert!(a.eboot.len <= 0x1000 && a.eboot.checksum.valid && a.sketch.checksum.valid);
    assert_eq!(a.eboot.flash_mode, Some(FlashMode::Dout));
    assert_eq!((a.sketch.flash_size_code, a.sketch.entry), (3, 0x4010_0123));
    assert!(bytes[a.eboot.len..0x1000].iter().all(|&b| b == 0xAA));
    assert_eq!(a.stored_len as usize, bytes.len());
    // The CRC, computed independently: the whole file with the two words zeroed.
    let mut zeroed = bytes.clone();
    zeroed[0x1010..0x1018].fill(0);
    assert_eq!(a.stored_crc, crc32_mpeg2(&zeroed));
    assert!(a.len_valid && a.crc_valid && a.computed_crc == a.stored_crc);
    assert!(info.is_valid() && info.warnings.is_empty(), "{:?} {:?}", info.problems(), info.warnings);
    assert_eq!(bytes.len() % 16, 0);
}

#[test]
fn esp32_round_trip_for_every_chip() {
    for chip in Chip::ALL.into_iter().filter(|c| !c.is_esp8266()) {
        let bytes = ImageBuilder::esp32_app(chip).version("2.4.1-beta.3").project_name("thermostat").build();
        let info = ok(&bytes);
        assert_eq!(info.format, ImageFormat::Esp32App, "{chip}");
        assert_eq!(info.chip, Some(chip));
        assert_eq!(info.flash_mode, Some(FlashMode::Dio));
        assert_eq!(info.flash_size_bytes, Some(4 << 20));
        let h = info.extended_header.unwrap();
        assert_eq!((Some(h.chip_id), h.hash_appended, h.wp_pin), (chip.image_chip_id(), 1, 0xEE));
        assert_eq!((info.checksum_valid, info.sha256_valid), (Some(true), Some(true)), "{chip}");
        assert_eq!(info.segments.len(), 4);
        assert_eq!(info.segments[0].file_offset, 0x20);
        let d = info.app_desc.as_ref().unwrap();
        assert_eq!((d.version.as_str(), d.project_name.as_str()), ("2.4.1-beta.3", "thermostat"));
        assert_eq!(
            (d.time.as_str(), d.date.as_str(), d.idf_version.as_str()),
            ("12:00:00", "Jan  1 2026", "v5.4")
        );
        assert_eq!((bytes.len() - 32) % 16, 0);
        assert!(info.is_valid() && info.warnings.is_empty(), "{chip}: {:?}", info.warnings);
    }
    let plain = ImageBuilder::esp32_app(Chip::Esp32S3).hash_appended(false).build();
    let info = ok(&plain);
    assert_eq!((info.sha256_valid, plain.len() % 16), (None, 0));
    assert!(info.is_valid());
    assert_eq!(ImageBuilder::for_chip(Chip::Esp8266).build(), ImageBuilder::arduino_esp8266().build());
}

#[test]
fn target_size_is_roughly_met() {
    for builder in
        [ImageBuilder::arduino_esp8266(), ImageBuilder::esp32_app(Chip::Esp32C3), ImageBuilder::esp8266()]
    {
        let bytes = builder.target_size(420_000).build();
        assert!(bytes.len().abs_diff(420_000) <= 48, "{}", bytes.len());
        assert!(ok(&bytes).is_valid());
    }
    assert_ne!(
        ImageBuilder::arduino_esp8266().version("1.0").build(),
        ImageBuilder::arduino_esp8266().version("1.1").build()
    );
}

#[test]
fn signed_and_padded_images() {
    let mut signed = ImageBuilder::arduino_esp8266().build();
    let image_len = signed.len();
    append_signature(&mut signed, &[0x5A; 256]);
    let info = ok(&signed);
    assert_eq!((info.signature_len, info.image_len), (Some(256), image_len));
    assert!(info.is_valid() && info.warnings.is_empty(), "{:?}", info.warnings);

    let mut odd = ImageBuilder::arduino_esp8266().build();
    append_signature(&mut odd, &[1; 10]); // too short to be a signature
    let info = ok(&odd);
    assert_eq!(info.signature_len, None);
    assert!(has(&info.warnings, "14 bytes that are not part of the image"), "{:?}", info.warnings);

    let mut padded = ImageBuilder::esp32_app(Chip::Esp32).build();
    padded.resize(65536, 0xFF);
    let info = ok(&padded);
    assert!(info.is_valid());
    assert!(has(&info.warnings, "0xFF padding"), "{:?}", info.warnings);
}

#[test]
fn a_gzipped_image_is_checked_by_what_is_inside() {
    let image = ImageBuilder::arduino_esp8266().segments([(0x4020_1010, vec![7u8; 20_000])]).build();
    let gz = gzip::compress(&image);
    let info = ok(&gz);
    assert_eq!((info.format, info.chip), (ImageFormat::Gzip, Some(Chip::Esp8266)));
    assert_eq!(info.checksum_valid, Some(true), "the sketch's checksums are read from the unpacked image");
    assert!(info.arduino.is_some() && !info.segments.is_empty());
    assert_eq!(
        (info.size, info.md5.clone()),
        (gz.len(), md5_hex(&gz)),
        "size and digests are the served file's"
    );
    let contents = info.gzip.clone().expect("gzip contents");
    assert_eq!((contents.unpacked_len, contents.trailer_len), (Some(image.len()), image.len() as u32));
    assert!(info.is_valid(), "{:?}", info.problems());
    assert!(has(&info.warnings, "smaller"), "{:?}", info.warnings);
}

#[test]
fn a_damaged_image_inside_a_sound_gzip_is_refused() {
    let mut image = ImageBuilder::arduino_esp8266().segments([(0x4020_1010, vec![7u8; 4000])]).build();
    let at = image.len() / 2;
    image[at] ^= 0x5A; // the sketch's checksum and the Arduino CRC no longer hold
    let info = ok(&gzip::compress(&image));
    assert!(!info.is_valid());
    assert!(has(&info.problems(), "the image is corrupt"), "{:?}", info.problems());

    let esp32 = gzip::compress(&ImageBuilder::esp32_app(Chip::Esp32C3).build());
    assert!(has(&ok(&esp32).problems(), "accepts only plain images"), "ESP32 updaters do not unpack gzip");

    let not_an_image = gzip::compress(b"<html>not firmware</html> and some more bytes to be long enough");
    assert!(has(&ok(&not_an_image).problems(), "not one the chip runs"));

    let mut bad_trailer = gzip::compress(&ImageBuilder::arduino_esp8266().build());
    let n = bad_trailer.len();
    bad_trailer[n - 4..].copy_from_slice(&1u32.to_le_bytes());
    assert!(has(&ok(&bad_trailer).problems(), "does not unpack"), "eboot copies the trailer's length");

    let mut cut = gzip::compress(&image);
    cut.truncate(cut.len() - 30);
    assert!(has(&ok(&cut).problems(), "does not unpack"));
}

#[test]
fn a_gzip_that_expands_to_a_gigabyte_is_refused_quickly() {
    use std::io::Write;
    // 1 GiB of zeros deflates to about 1 MB; the inspector must stop at 16 MiB, not unpack it all.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < MAX_FILE_SIZE);
    let started = std::time::Instant::now();
    let info = ok(&bomb);
    assert!(has(&info.problems(), "more than 16 MiB"), "{:?}", info.problems());
    assert_eq!(info.gzip.and_then(|g| g.unpacked_len), None);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn files_that_are_not_images() {
    assert_eq!(err(&[]), ImageError::Empty);
    assert_eq!(err(&vec![0xE9; 17 * 1024 * 1024]), ImageError::TooLarge { len: 17 * 1024 * 1024 });
    assert_eq!(err(&[0xE9, 1, 2]), ImageError::TooSmall { len: 3 });
    let e = err(&[0x12, 0x99, 0x00, 0x88, 0x01]);
    assert_eq!(e, ImageError::NotAnImage { first_byte: 0x12 });
    assert!(e.to_string().contains("starts with 0x12 where ESP images start with 0xE9"), "{e}");
    let e = err(b"\x7FELF\x01\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x5E\0");
    assert_eq!(e, ImageError::Elf);
    assert!(e.to_string().contains("publish the .bin"), "{e}");
    assert_eq!(err(b"PK\x03\x04\x14\0\0\0\x08\0"), ImageError::Zip);
    assert_eq!(err(b"\n  <!DOCTYPE html><html><body>502 Bad Gateway</body></html>"), ImageError::Html);
    assert_eq!(err(b"Not Found\r\n"), ImageError::Text { start: "Not Found".into() });
    assert_eq!(err(b"UF2\nWQ]\x9e\0\0\0\0"), ImageError::Uf2);
    assert_eq!(err(&[0xEA, 4, 0, 0, 0, 0, 0x10, 0x40]), ImageError::Esp8266V2);
    assert_eq!(err(&[0xFF; 4096]), ImageError::BlankStart);
    let mut random = vec![0u8; 1000];
    synth::XorShift(7).fill(&mut random);
    random[0] = 0x42;
    assert_eq!(err(&random), ImageError::NotAnImage { first_byte: 0x42 });
}

#[test]
fn header_limits() {
    let mut many = ImageBuilder::esp8266().build();
    many[1] = 200;
    let e = err(&many);
    assert_eq!(e, ImageError::TooManySegments { count: 200 });
    assert!(e.to_string().contains("200 segments"), "{e}");
    many[1] = 0;
    assert_eq!(err(&many), ImageError::NoSegments);
    // Exactly 16 MiB is not refused for its size.
    assert_eq!(err(&vec![0xE9; MAX_FILE_SIZE]), ImageError::TooManySegments { count: 0xE9 });
}

#[test]
fn truncated_images_say_where() {
    let trunc = |bytes: &[u8], cut: usize| match err(&bytes[..cut]) {
        ImageError::Truncated { what, need, have } => (what, need, have),
        other => panic!("cut at {cut}: {other}"),
    };
    let e8266 = ImageBuilder::esp8266().build();
    assert_eq!(trunc(&e8266, 20), ("segment 1 of the image".into(), 1024, 4));
    assert_eq!(trunc(&e8266, 16 + 1024 + 4).0, "the header of segment 2 of the image");
    assert!(trunc(&e8266, e8266.len() - 1).0.contains("checksum"));
    let msg = err(&e8266[..20]).to_string();
    assert_eq!(msg, "the file ends too soon: segment 1 of the image needs 1024 bytes but only 4 are left");

    let esp32 = ImageBuilder::esp32_app(Chip::Esp32C3).build();
    assert_eq!(trunc(&esp32, 20), ("the header of the image".into(), 24, 20));
    assert_eq!(trunc(&esp32, 100).0, "segment 1 of the image");
    assert_eq!(trunc(&esp32, esp32.len() - 10), ("the SHA-256 appended to the image".into(), 32, 22));

    let arduino = ImageBuilder::arduino_esp8266().build();
    assert_eq!(trunc(&arduino, 0x1004).0, "the header of the sketch image");
    assert_eq!(trunc(&arduino, 0x1100).0, "segment 1 of the sketch image");
    assert!(trunc(&arduino, arduino.len() - 1).0.contains("checksum"));
    // Every cut gives an error or a readable image, never a panic.
    for bytes in [&e8266, &esp32, &arduino] {
        for cut in 0..bytes.len() {
            let _ = inspect(&bytes[..cut]);
        }
    }
}

#[test]
fn bad_checksums_are_problems() {
    let mut e8266 = ImageBuilder::esp8266().build();
    e8266[40] ^= 0x30;
    let info = ok(&e8266);
    assert_eq!(info.checksum_valid, Some(false));
    let c = info.checksum.unwrap();
    let expected = format!(
        "the checksum byte is 0x{:02x} but the segments give 0x{:02x}: the image is corrupt",
        c.stored, c.computed
    );
    assert_eq!(info.problems(), vec![expected]);
    assert!(!info.is_valid());

    let mut esp32 = ImageBuilder::esp32_app(Chip::Esp32).build();
    let n = esp32.len();
    esp32[n - 1] ^= 1; // the SHA only
    let info = ok(&esp32);
    assert_eq!((info.checksum_valid, info.sha256_valid), (Some(true), Some(false)));
    assert_eq!(info.problems().len(), 1);
    assert!(has(&info.problems(), "SHA-256"));
    esp32[0x200] ^= 1; // segment data: checksum and SHA
    let info = ok(&esp32);
    assert_eq!((info.checksum_valid, info.sha256_valid), (Some(false), Some(false)));
    assert_eq!(info.problems().len(), 2);

    let arduino = ImageBuilder::arduino_esp8266().build();
    let mut crc = arduino.clone();
    crc[0x1015] ^= 0xFF;
    let info = ok(&crc);
    assert!(!info.arduino.as_ref().unwrap().crc_valid && info.checksum_valid == Some(true));
    assert_eq!(info.problems().len(), 1);
    assert!(has(&info.problems(), "CRC-32 stored at 0x1014"), "{:?}", info.problems());
    let mut len = arduino.clone();
    len[0x1010] ^= 4;
    assert!(has(&ok(&len).problems(), "length stored at 0x1010"));
    let mut sketch = arduino.clone();
    sketch[0x1100] ^= 1;
    let problems = ok(&sketch).problems();
    assert!(has(&problems, "the sketch's checksum") && has(&problems, "CRC-32"), "{problems:?}");
    let mut eboot = arduino.clone();
    eboot[0x20] ^= 1;
    let problems = ok(&eboot).problems();
    assert!(has(&problems, "eboot's checksum") && has(&problems, "CRC-32"), "{problems:?}");
}

#[test]
fn fix_checksums_repairs_and_leaves_sound_images_alone() {
    let builders = [
        ImageBuilder::esp8266(),
        ImageBuilder::arduino_esp8266(),
        ImageBuilder::esp32_app(Chip::Esp32C6),
        ImageBuilder::esp32_app(Chip::Esp32).hash_appended(false),
    ];
    for builder in builders {
        let good = builder.build();
        let mut same = good.clone();
        fix_checksums(&mut same).unwrap();
        assert_eq!(same, good, "fixing a sound image changes nothing");
        let mut patched = good.clone();
        for at in [0x30, good.len() / 2, good.len() - 200] {
            patched[at] ^= 0x5A; // patch segment data (e.g. a PROGMEM string)
        }
        assert!(!ok(&patched).is_valid());
        fix_checksums(&mut patched).unwrap();
        let info = ok(&patched);
        assert!(info.is_valid(), "{:?}", info.problems());
    }
    let mut gz = vec![0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let before = gz.clone();
    fix_checksums(&mut gz).unwrap();
    assert_eq!(gz, before);
    assert_eq!(fix_checksums(&mut [0u8; 0]), Err(ImageError::Empty));
}

#[test]
fn normalized_md5_ignores_the_flash_mode_byte() {
    let image = ImageBuilder::arduino_esp8266().flash_mode(FlashMode::Qio).build();
    let mut on_device = image.clone();
    on_device[2] = FlashMode::Dout.byte(); // what the updater writes on a DOUT device
    assert_ne!(md5_hex(&image), md5_hex(&on_device));
    assert_eq!(normalized_md5(&image), normalized_md5(&on_device));
    assert_eq!(md5_with_flash_mode(&image, 3), md5_hex(&on_device));
    let info = ok(&on_device);
    assert_eq!(info.normalized_md5, normalized_md5(&image));
    assert!(has(&info.warnings, "disagree on flash settings"));
    // The Arduino CRC covers the header, so a copy whose mode byte was rewritten fails it: as
    // `ESP.checkFlashCRC()` does on a device whose flash mode differs from the file's.
    assert_eq!(info.problems().len(), 1);
    assert!(has(&info.problems(), "CRC-32"));
    // No check covers a plain image's header.
    let mut plain = ImageBuilder::esp8266().build();
    plain[2] = 3;
    assert!(ok(&plain).is_valid());
}

#[test]
fn oddities_are_warnings() {
    let odd = ImageBuilder::esp8266().segments([(0x4010_0000, vec![1; 1001])]).flash_size_code(7).build();
    let info = ok(&odd);
    assert!(info.is_valid());
    assert!(has(&info.warnings, "segment 1 of the image holds 1001 bytes, not a multiple of 4"));
    assert!(has(&info.warnings, "flash size code 7"));
    assert_eq!(info.flash_size_bytes, None);

    let mut mode = ImageBuilder::esp8266().build();
    mode[2] = 9;
    let info = ok(&mode);
    assert_eq!(info.flash_mode, None);
    assert!(has(&info.warnings, "flash mode byte is 9"));

    let bare = ImageBuilder::esp32_app(Chip::Esp32S3).app_desc(None).build();
    let info = ok(&bare);
    assert!(info.is_valid() && info.app_desc.is_none());
    assert!(has(&info.warnings, "no ESP-IDF app descriptor"));

    let mut unknown = ImageBuilder::esp32_app(Chip::Esp32C3).build();
    unknown[12] = 77;
    fix_checksums(&mut unknown).unwrap();
    let info = ok(&unknown);
    assert_eq!((info.format, info.chip), (ImageFormat::Esp32App, None));
    assert!(info.is_valid() && has(&info.warnings, "chip id 77"), "{:?}", info.warnings);

    let mut flag = ImageBuilder::esp32_app(Chip::Esp32C3).build();
    flag[23] = 2;
    let info = ok(&flag);
    assert_eq!(info.format, ImageFormat::Esp32App);
    assert!(has(&info.problems(), "byte 23"), "{:?}", info.problems());
}

#[test]
fn info_serialises() {
    let info = ok(&ImageBuilder::arduino_esp8266().build());
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["format"], "arduino_esp8266");
    assert_eq!(json["chip"], "esp8266");
    assert_eq!(json["flash_mode"], "dio");
    assert_eq!(json["arduino"]["crc_valid"], true);
}

/// gzip on an image shaped like a real build (the builder's code-like filler: see
/// `XorShift::fill_code_like`); random filler is the control, which gzip cannot shrink.
#[test]
fn an_image_shaped_like_a_real_build_compresses_by_about_a_third_and_random_bytes_do_not() {
    use crate::synth::Filler;
    for size in [300_000, 1_000_000] {
        let realistic = ImageBuilder::arduino_esp8266().filler(Filler::CodeLike).target_size(size).build();
        let random = ImageBuilder::arduino_esp8266().target_size(size).build();
        let saved = |image: &[u8]| 100.0 * (1.0 - gzip::compress(image).len() as f64 / image.len() as f64);
        let (r, c) = (saved(&realistic), saved(&random));
        println!("{size}-byte image: gzip saves {r:.1}% (code-like), {c:.1}% (random control)");
        assert!((25.0..45.0).contains(&r), "code-like: {r:.1}% saved");
        assert!(c < 1.0, "random: {c:.1}% saved");
        // And the compressed file is one the inspector passes, with the image inside intact.
        let info = ok(&gzip::compress(&realistic));
        assert!(info.is_valid(), "{:?}", info.problems());
    }
}

/// Every gzip'd file OTA Forge makes is a whole number of words long (so a signature after it is
/// word-aligned for the ESP8266 Updater's hash: esp8266/Arduino PR #9109), and still unpacks the
/// way eboot does: uzlib skips the 10-byte header and the extra field, inflates, and takes the
/// size from the trailer.
#[test]
fn gzip_files_are_padded_to_whole_words_and_eboot_still_unpacks_them() {
    use std::io::{Read, Write};
    let eboot_unpacks = |gz: &[u8]| -> Vec<u8> {
        let mut at = 10;
        if gz[3] & 0x04 != 0 {
            at += 2 + u16::from_le_bytes([gz[10], gz[11]]) as usize;
        }
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&gz[at..]).read_to_end(&mut out).unwrap();
        let isize = u32::from_le_bytes(gz[gz.len() - 4..].try_into().unwrap()) as usize;
        assert_eq!(isize, out.len(), "ISIZE, what eboot copies");
        out
    };
    let mut residues = std::collections::BTreeSet::new();
    for n in 0..24u64 {
        let image = ImageBuilder::arduino_esp8266().seed(n + 1).target_size(20_000 + 13 * n as usize).build();
        // A plain gzip of the same bytes, as `gzip -9` would make it: its length is anything.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&image).unwrap();
        let plain = e.finish().unwrap();
        residues.insert(plain.len() % 4);
        for gz in [gzip::compress(&image), gzip::pad_to_words(plain.clone())] {
            assert_eq!(gz.len() % 4, 0, "{} bytes", gz.len());
            assert_eq!(eboot_unpacks(&gz), image);
            assert_eq!(gzip::unpack(&gz).0.as_deref(), Some(&image[..]));
            assert!(gz.len() <= plain.len() + 9);
        }
    }
    assert_eq!(residues.len(), 4, "the unpadded lengths took every remainder: {residues:?}");
}
