//! A deterministic fuzz loop: mutated valid images must never make `inspect` or `fix_checksums`
//! panic, and whatever `fix_checksums` accepts must read back with every check value right.

use super::synth::{XorShift, append_signature};
use super::*;

fn bases() -> Vec<Vec<u8>> {
    let small = |n: usize| vec![0u8; n];
    let mut signed = ImageBuilder::arduino_esp8266()
        .segments([(0x4020_1010, small(64)), (0x4010_0000, small(32))])
        .build();
    append_signature(&mut signed, &[0xA5; 64]);
    let esp32 =
        |chip| ImageBuilder::esp32_app(chip).segments([(0x3C00_0020, small(256)), (0x4038_0000, small(64))]);
    let mut padded = esp32(Chip::Esp32).build();
    padded.resize(padded.len() + 100, 0xFF);
    let gz = gzip::compress(
        &ImageBuilder::arduino_esp8266()
            .segments([(0x4020_1010, small(200)), (0x3FFE_8000, small(20))])
            .build(),
    );
    vec![
        ImageBuilder::esp8266().segments([(0x4010_0000, small(40)), (0x3FFE_8000, small(12))]).build(),
        ImageBuilder::arduino_esp8266()
            .segments([(0x4020_1010, small(96)), (0x3FFE_8000, small(20))])
            .build(),
        esp32(Chip::Esp32C3).build(),
        esp32(Chip::Esp32S3).hash_appended(false).build(),
        signed,
        padded,
        gz,
    ]
}

const INTERESTING_U32: [u32; 9] = [0, 1, 3, 16, 17, 0x1000, 0x7FFF_FFFF, 0xFFFF_FFF0, 0xFFFF_FFFF];
const INTERESTING_U8: [u8; 8] = [0, 1, 2, 16, 17, 0xE9, 0x7F, 0xFF];

fn mutate(rng: &mut XorShift, img: &mut Vec<u8>) {
    let len = img.len();
    match rng.below(7) {
        0 if len > 0 => {
            let at = rng.below(len);
            img[at] ^= (rng.next_u64() as u8) | 1;
        }
        1 if len > 0 => {
            // Headers hold the structure: hit them more often.
            let at = rng.below(len.min(48));
            img[at] = rng.next_u64() as u8;
        }
        2 => img.truncate(rng.below(len + 1)),
        3 => {
            let extra = rng.below(80);
            let byte = if rng.below(2) == 0 { 0xFF } else { rng.next_u64() as u8 };
            img.extend(std::iter::repeat_n(byte, extra));
        }
        4 if len >= 4 => {
            let at = rng.below(len - 3);
            let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
            img[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        5 if len > 0 => {
            let at = rng.below(len);
            img[at] = INTERESTING_U8[rng.below(INTERESTING_U8.len())];
        }
        6 if len >= 4 => {
            // A plausible signature length at the end.
            let v = 64 + rng.below(1000) as u32;
            img[len - 4..].copy_from_slice(&v.to_le_bytes());
        }
        _ => img.push(0xE9),
    }
}

#[test]
fn inspect_never_panics_on_mutated_images() {
    let bases = bases();
    let mut rng = XorShift(0x0F0E_5EED_1234_5678);
    let (mut read, mut refused) = (0, 0);
    for i in 0..20_000 {
        let mut img = bases[i % bases.len()].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut img);
        }
        let info = match inspect(&img) {
            Ok(info) => info,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
                continue;
            }
        };
        read += 1;
        let _ = info.problems();
        assert_eq!(info.size, img.len());
        assert!(info.image_len <= img.len());
        assert!(serde_json::to_string(&info).is_ok());
        let mut fixed = img.clone();
        fix_checksums(&mut fixed)
            .unwrap_or_else(|e| panic!("iteration {i}: fix refused a readable image: {e}"));
        let again = inspect(&fixed).unwrap_or_else(|e| panic!("iteration {i}: unreadable after fixing: {e}"));
        assert_ne!(again.checksum_valid, Some(false), "iteration {i}");
        assert_ne!(again.sha256_valid, Some(false), "iteration {i}");
        if let Some(a) = &again.arduino {
            assert!(a.crc_valid && a.len_valid, "iteration {i}");
        }
    }
    // The loop must exercise both paths to mean anything.
    assert!(read > 2_000 && refused > 2_000, "read {read}, refused {refused}");
}
