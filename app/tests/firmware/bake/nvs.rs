//! NVS partition images checked against Espressif's own generator (PyPI
//! `esp-idf-nvs-partition-gen`, installed by scripts/test): we decode what it writes, write the
//! same entries ourselves, and the two images must be the same bytes.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use otaforge_firmware::nvs::{self, NvsEntry, NvsValue};

/// The generator as a command line: `NVS_PARTITION_GEN` (scripts/test sets it), else the venv
/// scripts/test installs it into. Missing, the test fails: it must never pass without having run.
fn generator() -> Vec<String> {
    if let Ok(cmd) = std::env::var("NVS_PARTITION_GEN") {
        return cmd.split_whitespace().map(String::from).collect();
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/esptool-venv/bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import esp_idf_nvs_partition_gen"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "NVS_PARTITION_GEN is not set and target/esptool-venv has no esp-idf-nvs-partition-gen: run scripts/test \
         (it installs Espressif's NVS generator from PyPI), or set NVS_PARTITION_GEN=\"python -m esp_idf_nvs_partition_gen\""
    );
    vec![python.to_string_lossy().into_owned(), "-m".into(), "esp_idf_nvs_partition_gen".into()]
}

/// One CSV row per entry, a namespace row before each change of namespace.
fn csv(entries: &[NvsEntry]) -> String {
    let mut out = String::from("key,type,encoding,value\n");
    let mut current = None;
    for e in entries {
        if current != Some(&e.namespace) {
            writeln!(out, "{},namespace,,", e.namespace).unwrap();
            current = Some(&e.namespace);
        }
        let (encoding, value) = match &e.value {
            NvsValue::U8(v) => ("u8", v.to_string()),
            NvsValue::I8(v) => ("i8", v.to_string()),
            NvsValue::U16(v) => ("u16", v.to_string()),
            NvsValue::I16(v) => ("i16", v.to_string()),
            NvsValue::U32(v) => ("u32", v.to_string()),
            NvsValue::I32(v) => ("i32", v.to_string()),
            NvsValue::U64(v) => ("u64", v.to_string()),
            NvsValue::I64(v) => ("i64", v.to_string()),
            NvsValue::Str(s) => ("string", format!("\"{}\"", s.replace('"', "\"\""))),
            NvsValue::Blob(b) => ("hex2bin", b.iter().map(|x| format!("{x:02x}")).collect()),
        };
        writeln!(out, "{},data,{encoding},{value}", e.key).unwrap();
    }
    out
}

/// Runs `generate <csv> <out.bin> <size>`: the image, if it made one, and what it printed.
fn run_generator(csv_text: &str, size: usize) -> (Option<Vec<u8>>, String) {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("nvs.csv"), dir.path().join("nvs.bin"));
    std::fs::write(&input, csv_text).unwrap();
    let cmd = generator();
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .arg("generate")
        .arg(&input)
        .arg(&output)
        .arg(format!("{size:#x}"))
        .current_dir(dir.path())
        .output()
        .expect("run the NVS generator");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success().then(|| std::fs::read(&output).ok()).flatten(), log)
}

/// The generator's image of `csv_text`.
fn generate(csv_text: &str, size: usize) -> Vec<u8> {
    let (image, log) = run_generator(csv_text, size);
    let image = image.unwrap_or_else(|| panic!("nvs_partition_gen failed:\n{log}\nCSV:\n{csv_text}"));
    assert_eq!(image.len(), size, "{log}");
    image
}

/// Where two images first differ, as page / entry, for a readable failure.
fn first_difference(ours: &[u8], theirs: &[u8]) -> Option<String> {
    let at = ours.iter().zip(theirs).position(|(a, b)| a != b)?;
    let (page, within) = (at / 4096, at % 4096);
    let place = match within {
        0..32 => "page header".to_string(),
        32..64 => format!("entry-state bitmap (entries {}..)", (within - 32) * 4),
        _ => format!("entry {} byte {}", (within - 64) / 32, (within - 64) % 32),
    };
    let row =
        |b: &[u8]| b[at - at % 32..at - at % 32 + 32].iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(format!(
        "images differ at {at:#x} (page {page}, {place}):\n ours:      {}\n generator: {}",
        row(ours),
        row(theirs)
    ))
}

/// Fails with the first entry that differs, shortened: the lists are long.
fn assert_entries(got: &[NvsEntry], want: &[NvsEntry], what: &str) {
    let short = |e: Option<&NvsEntry>| {
        let s = format!("{e:?}");
        if s.len() > 160 { format!("{}…", &s[..s.floor_char_boundary(160)]) } else { s }
    };
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: {} entries, {} expected; entry {i} differs:\n got:  {}\n want: {}",
            got.len(),
            want.len(),
            short(got.get(i)),
            short(want.get(i))
        );
    }
}

/// Generator and we, on the same entries: both images decode to them, and are the same bytes.
fn check_same(entries: &[NvsEntry], size: usize) -> Vec<u8> {
    let theirs = generate(&csv(entries), size);
    assert_entries(&nvs::read_partition(&theirs).unwrap(), entries, "decoding the generator's image");
    let ours = nvs::write_partition(entries, size).unwrap();
    assert_entries(&nvs::read_partition(&ours).unwrap(), entries, "decoding our image");
    if let Some(diff) = first_difference(&ours, &theirs) {
        panic!("{diff}");
    }
    theirs
}

fn text(len: usize, seed: u32) -> String {
    (0..len as u32).map(|i| char::from(b'a' + ((i * 7 + seed) % 26) as u8)).collect()
}

#[test]
fn device_settings_as_espressifs_generator_writes_them() {
    let e = |ns: &str, key: &str, value: NvsValue| NvsEntry::new(ns, key, value);
    let s = |v: &str| NvsValue::Str(v.into());
    let mut entries = vec![
        e("otaforge", "name", s("kitchen")),
        e("otaforge", "wifi_ssid", s("Home Network 5G")),
        e("otaforge", "wifi_pass", s("correct \"horse\", battery staple")),
        e("otaforge", "format", NvsValue::U8(1)),
        // 700 bytes: a string spanning 23 entries.
        e("otaforge", "notes", NvsValue::Str(text(700, 0))),
        e("otaforge", "room", s("Küche")),
        e("other", "count", NvsValue::U32(4_000_000_000)),
        e("other", "offset", NvsValue::I32(-42)),
        e("other", "port", NvsValue::U16(3443)),
        e("other", "small", NvsValue::I8(-7)),
        e("other", "temp", NvsValue::I16(-300)),
        e("other", "big", NvsValue::U64(u64::MAX)),
        e("other", "neg", NvsValue::I64(i64::MIN)),
        e("other", "empty", s("")),
    ];
    // Strings of 900 bytes (30 entries each): the namespace goes on over pages 1 and 2.
    entries.extend((0..6).map(|i| e("other", &format!("text{i}"), NvsValue::Str(text(900, i)))));
    // A 5000-byte blob: chunks in two pages, then its index.
    entries.push(e("other", "cert", NvsValue::Blob((0..5000u32).map(|i| (i * 31 + 7) as u8).collect())));

    let image = check_same(&entries, 0x5000);
    // It did cross pages: four in use (full, full, full, active), the last of five kept free.
    let state = |p: usize| u32::from_le_bytes(image[p * 4096..p * 4096 + 4].try_into().unwrap());
    let states: Vec<u32> = (0..5).map(state).collect();
    assert_eq!(states, [0xFFFF_FFFC, 0xFFFF_FFFC, 0xFFFF_FFFC, 0xFFFF_FFFE, 0xFFFF_FFFF]);
}

#[test]
fn page_edges_as_espressifs_generator_handles_them() {
    // `n` one-entry keys after the namespace entry, then a 200-byte string (8 entries): it ends
    // before, exactly at and after the page's last entry, where the generator moves it on.
    for n in [115, 116, 117, 118, 119, 124, 125, 126] {
        let mut entries: Vec<NvsEntry> =
            (0..n).map(|i| NvsEntry::new("otaforge", format!("k{i}"), NvsValue::U8(i as u8))).collect();
        entries.push(NvsEntry::new("otaforge", "s", NvsValue::Str(text(199, n))));
        check_same(&entries, 0x3000);
    }
    // A 100-byte blob starting 3 or 2 entries before the page's end (chunks on both pages) or
    // just after it; and one whose only chunk ends at the page's end (its index goes on).
    for n in [122, 123, 125] {
        let mut entries: Vec<NvsEntry> =
            (0..n).map(|i| NvsEntry::new("otaforge", format!("k{i}"), NvsValue::U8(i as u8))).collect();
        entries.push(NvsEntry::new("otaforge", "b", NvsValue::Blob(vec![0x5A; 100])));
        check_same(&entries, 0x3000);
    }
    let mut entries: Vec<NvsEntry> =
        (0..120).map(|i| NvsEntry::new("otaforge", format!("k{i}"), NvsValue::U8(i as u8))).collect();
    entries.push(NvsEntry::new("otaforge", "b", NvsValue::Blob(vec![0xA5; 128])));
    entries.push(NvsEntry::new("otaforge", "z", NvsValue::U8(9)));
    let image = check_same(&entries, 0x3000);
    assert_eq!(&image[4096 + 64..4096 + 68], &[1, 0x48, 1, 0xFF], "the index opens page 1");
    // The longest string the generator takes (3967 bytes and its NUL) on a page of its own.
    check_same(&[NvsEntry::new("otaforge", "long", NvsValue::Str(text(3967, 1)))], 0x3000);
    // Nothing at all: page 0 active, empty.
    check_same(&[], 0x3000);
    // A bigger partition keeps only its last page free.
    check_same(&[NvsEntry::new("otaforge", "name", NvsValue::Str("porch".into()))], 0x6000);
}

/// Where our layout differs from the generator's, on purpose: a blob reaching a page's last
/// entry. The generator writes an empty chunk there and goes on in the next page; ESP-IDF never
/// writes empty chunks of non-empty blobs, so we start the blob in the next page. Both decode the
/// same, with our reader and (by the format) with ESP-IDF's.
#[test]
fn blob_at_a_pages_last_entry() {
    let mut entries: Vec<NvsEntry> =
        (0..124).map(|i| NvsEntry::new("otaforge", format!("k{i}"), NvsValue::U8(i as u8))).collect();
    entries.push(NvsEntry::new("otaforge", "b", NvsValue::Blob((0..300u32).map(|i| i as u8).collect())));
    let theirs = generate(&csv(&entries), 0x3000);
    assert_eq!(nvs::read_partition(&theirs).unwrap(), entries);
    assert_eq!(&theirs[64 + 125 * 32..64 + 125 * 32 + 4], &[1, 0x42, 1, 0], "the generator's empty chunk 0");
    let ours = nvs::write_partition(&entries, 0x3000).unwrap();
    assert_eq!(nvs::read_partition(&ours).unwrap(), entries);
    assert_eq!(&ours[64 + 125 * 32..64 + 126 * 32], &[0xFF; 32], "no empty chunk in ours");
}

/// The one difference in meaning: a CSV that comes back to an earlier namespace. The generator
/// (0.3) writes no second name entry, as it should, but files the keys that follow under the
/// newest namespace (`write_entry` defaults to `namespace_count`, not the index it just
/// selected). We keep them in the namespace they were given for, which is what the device reads,
/// so our layouts only agree when each namespace's keys come together.
#[test]
fn generator_cannot_return_to_a_namespace() {
    let entries = [
        NvsEntry::new("otaforge", "name", NvsValue::Str("kitchen".into())),
        NvsEntry::new("other", "x", NvsValue::U8(1)),
        NvsEntry::new("otaforge", "format", NvsValue::U8(1)),
    ];
    let theirs = nvs::read_partition(&generate(&csv(&entries), 0x3000)).unwrap();
    assert_eq!(theirs[2], NvsEntry::new("other", "format", NvsValue::U8(1)), "the generator's namespace bug");
    let ours = nvs::read_partition(&nvs::write_partition(&entries, 0x3000).unwrap()).unwrap();
    assert_eq!(ours, entries);
}

#[test]
fn generator_refuses_what_we_refuse() {
    // Keys over 15 bytes: both refuse.
    let long_key = [NvsEntry::new("otaforge", "sixteen_bytes_kk", NvsValue::U8(1))];
    assert!(nvs::write_partition(&long_key, 0x3000).is_err());
    let (image, log) = run_generator(&csv(&long_key), 0x3000);
    assert!(image.is_none() && log.contains("<= 15"), "{log}");
    // Strings over 3999 bytes (4000 with the NUL, a page's chunk): both refuse.
    let too_long = [NvsEntry::new("otaforge", "s", NvsValue::Str(text(4000, 0)))];
    assert!(nvs::write_partition(&too_long, 0x3000).is_err());
    let (image, log) = run_generator(&csv(&too_long), 0x3000);
    assert!(image.is_none() && log.contains("exceeds max allowed length"), "{log}");
    // 3968..=3999 bytes: the generator fails (PageFullError: it never uses a page's last entry
    // for a string), ESP-IDF stores them, and so do we, on a page of their own.
    let longest = [NvsEntry::new("otaforge", "s", NvsValue::Str(text(3968, 0)))];
    let (image, log) = run_generator(&csv(&longest), 0x3000);
    assert!(image.is_none() && log.contains("PageFullError"), "{log}");
    let ours = nvs::write_partition(&longest, 0x3000).unwrap();
    assert_eq!(nvs::read_partition(&ours).unwrap(), longest);
}

#[test]
fn a_virtual_esp32_reads_its_settings_from_the_generators_image_and_ours() {
    use otaforge_firmware::device_settings::{DeviceSettings, Wifi};
    use otaforge_sim::device::{Flash, Identity, device_area};
    let want = DeviceSettings {
        name: "kitchen".into(),
        wifi: Some(Wifi { ssid: "home-net".into(), password: "correct horse".into() }),
    };
    let entries = [
        NvsEntry::new("otaforge", "format", NvsValue::U8(1)),
        NvsEntry::new("otaforge", "name", NvsValue::Str("kitchen".into())),
        NvsEntry::new("otaforge", "wifi_ssid", NvsValue::Str("home-net".into())),
        NvsEntry::new("otaforge", "wifi_pass", NvsValue::Str("correct horse".into())),
    ];
    let theirs = generate(&csv(&entries), 0x5000);
    let id = Identity::numbered(otaforge_firmware::Chip::Esp32, 7);
    let (at, ours) = device_area::image_for(&Flash::erased(id.flash_size).unwrap(), &id, &want).unwrap();
    assert_eq!(at, 0x9000, "arduino-esp32's default nvs partition");
    for (what, image) in [("the generator's", theirs), ("OTA Forge's", ours)] {
        let flash = Flash::with_image(id.flash_size, 0x9000, &image).unwrap();
        assert_eq!(device_area::read(&flash, &id), Some(want.clone()), "reading {what} image");
    }
}
