use super::*;

fn ns(key: &str, value: NvsValue) -> NvsEntry {
    NvsEntry::new("otaforge", key, value)
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn page(image: &[u8], n: usize) -> &[u8] {
    &image[n * PAGE_SIZE..(n + 1) * PAGE_SIZE]
}

fn entry(image: &[u8], page_no: usize, i: usize) -> &[u8] {
    let at = page_no * PAGE_SIZE + FIRST_ENTRY_OFFSET + i * ENTRY_LEN;
    &image[at..at + ENTRY_LEN]
}

fn state(image: &[u8], page_no: usize) -> u32 {
    u32::from_le_bytes(page(image, page_no)[..4].try_into().unwrap())
}

/// A writer with raw control, for images `write_partition` would not make.
fn writer(pages: usize) -> Writer {
    let mut w = Writer { pages: Vec::new(), max_pages: pages - 1, size: pages * PAGE_SIZE, next: 0 };
    w.new_page().unwrap();
    w
}

fn finish(w: Writer, pages: usize) -> Vec<u8> {
    let mut out: Vec<u8> = w.pages.iter().flat_map(|p| p.iter().copied()).collect();
    out.resize(pages * PAGE_SIZE, 0xFF);
    out
}

#[test]
fn crc_is_the_rom_crc32_le_seeded_with_all_ones() {
    // zlib.crc32(data, 0xFFFFFFFF) in Python, which the generator uses.
    assert_eq!(crc32(b"123456789"), 0xD202_D277);
    assert_eq!(crc32(b""), 0xFFFF_FFFF);
    assert_eq!(crc32(b"kitchen\0"), 0x6981_9860);
    // Not the zlib-style CRC32 (register starting at all ones) the config block uses.
    assert_eq!(crate::config_block::crc32(b"123456789"), 0xCBF4_3926);
    // The entry CRC leaves out bytes 4..8 (the CRC itself).
    let e = unhex("000101ffd43330e76f7461666f726765000000000000000001ffffffffffffff");
    assert_eq!(entry_crc(&e), 0xE730_33D4);
    let mut other = e.clone();
    other[4..8].fill(0);
    assert_eq!(entry_crc(&other), entry_crc(&e));
}

#[test]
fn matches_espressifs_generator_byte_for_byte() {
    // `nvs_partition_gen.py generate` (esp-idf-nvs-partition-gen 0.3.0), size 0x3000, of
    //   otaforge,namespace,,
    //   format,data,u8,1
    //   name,data,string,kitchen
    // is this, then 0xFF to the end.
    let mut want = unhex(
        "feffffff00000000feffffffffffffffffffffffffffffffffffffff842dbab9
         aaffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
         000101ffd43330e76f7461666f726765000000000000000001ffffffffffffff
         010101ff513e6a09666f726d61740000000000000000000001ffffffffffffff
         012102ff5cabe27e6e616d650000000000000000000000000800ffff60988169
         6b69746368656e00",
    );
    want.resize(0x3000, 0xFF);
    let got = write_partition(
        &[ns("format", NvsValue::U8(1)), ns("name", NvsValue::Str("kitchen".into()))],
        0x3000,
    )
    .unwrap();
    assert_eq!(got, want);
}

#[test]
fn round_trip_of_every_type() {
    let entries = vec![
        ns("format", NvsValue::U8(1)),
        ns("name", NvsValue::Str("kitchen".into())),
        ns("wifi_ssid", NvsValue::Str("home net".into())),
        ns("wifi_pass", NvsValue::Str("pä$$wörd".into())),
        ns("empty", NvsValue::Str(String::new())),
        NvsEntry::new("other", "i8", NvsValue::I8(-5)),
        NvsEntry::new("other", "u16", NvsValue::U16(0xBEEF)),
        NvsEntry::new("other", "i16", NvsValue::I16(-30000)),
        NvsEntry::new("other", "u32", NvsValue::U32(0xDEAD_BEEF)),
        NvsEntry::new("other", "i32", NvsValue::I32(-1)),
        NvsEntry::new("other", "u64", NvsValue::U64(u64::MAX - 1)),
        NvsEntry::new("other", "i64", NvsValue::I64(i64::MIN)),
        NvsEntry::new("other", "blob", NvsValue::Blob(vec![1, 2, 3])),
        NvsEntry::new("other", "no_bytes", NvsValue::Blob(Vec::new())),
        ns("poll", NvsValue::U32(600)),
    ];
    let image = write_partition(&entries, 0x5000).unwrap();
    assert_eq!(image.len(), 0x5000);
    assert_eq!(read_partition(&image).unwrap(), entries);
    // One active page; the rest erased.
    assert_eq!(state(&image, 0), STATE_ACTIVE);
    assert!(image[PAGE_SIZE..].iter().all(|&b| b == 0xFF));
    // Integers: little-endian, padded with 0xFF.
    let i = (0..ENTRY_COUNT).find(|&i| &entry(&image, 0, i)[8..12] == b"u16\0").unwrap();
    assert_eq!(&entry(&image, 0, i)[24..32], &[0xEF, 0xBE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
}

#[test]
fn empty_partition() {
    let image = write_partition(&[], 0x3000).unwrap();
    assert_eq!(state(&image, 0), STATE_ACTIVE);
    assert_eq!(read_partition(&image).unwrap(), vec![]);
    assert_eq!(read_partition(&[0xFF; 0x5000]).unwrap(), vec![]);
}

#[test]
fn string_spans_several_entries() {
    let long: String = (0..100).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let image = write_partition(&[ns("long", NvsValue::Str(long.clone()))], 0x3000).unwrap();
    // Entry 0 names the namespace; entry 1 heads the string: 101 bytes with the NUL = 4 entries.
    let head = entry(&image, 0, 1);
    assert_eq!(&head[..4], &[1, TYPE_STR, 5, CHUNK_ANY]);
    assert_eq!(u16::from_le_bytes([head[24], head[25]]), 101);
    assert_eq!(&head[26..28], &[0xFF, 0xFF]);
    let mut data = long.as_bytes().to_vec();
    data.push(0);
    assert_eq!(u32::from_le_bytes(head[28..32].try_into().unwrap()), crc32(&data));
    let at = FIRST_ENTRY_OFFSET + 2 * ENTRY_LEN;
    assert_eq!(&image[at..at + 101], &data[..]);
    assert!(image[at + 101..at + 4 * ENTRY_LEN].iter().all(|&b| b == 0xFF));
    // Six entries written: bitmap 10 10 10 10 | 10 10 11 11.
    assert_eq!(&image[BITMAP_OFFSET..BITMAP_OFFSET + 3], &[0xAA, 0xFA, 0xFF]);
    assert_eq!(read_partition(&image).unwrap(), vec![ns("long", NvsValue::Str(long))]);

    // The longest string fits a fresh page.
    let longest = "x".repeat(MAX_STRING_LEN);
    let image =
        write_partition(&[ns("a", NvsValue::U8(1)), ns("longest", NvsValue::Str(longest.clone()))], 0x3000)
            .unwrap();
    assert_eq!(read_partition(&image).unwrap()[1], ns("longest", NvsValue::Str(longest)));
}

#[test]
fn a_namespace_crosses_into_the_second_page() {
    let entries: Vec<NvsEntry> = (0..200).map(|i| ns(&format!("k{i}"), NvsValue::U32(i))).collect();
    let image = write_partition(&entries, 0x4000).unwrap();
    assert_eq!(state(&image, 0), STATE_FULL);
    assert_eq!(state(&image, 1), STATE_ACTIVE);
    assert_eq!(&page(&image, 1)[4..9], &[1, 0, 0, 0, VERSION_2]);
    // Namespace entry and 125 keys fill page 0; the rest goes on in page 1, same namespace index.
    assert_eq!(&entry(&image, 0, 125)[8..13], b"k124\0");
    assert_eq!(&entry(&image, 1, 0)[..1], &[1]);
    assert_eq!(&entry(&image, 1, 0)[8..13], b"k125\0");
    assert!(page(&image, 2).iter().all(|&b| b == 0xFF));
    assert_eq!(read_partition(&image).unwrap(), entries);
}

#[test]
fn a_string_does_not_cross_a_page() {
    // Namespace + 119 keys: entries 0..120 used. A 200-byte string needs 1 + 7 = 8 entries: it
    // goes to page 1 and page 0 is closed with 6 entries unused.
    let mut entries: Vec<NvsEntry> = (0..119).map(|i| ns(&format!("k{i}"), NvsValue::U8(i as u8))).collect();
    entries.push(ns("s", NvsValue::Str("y".repeat(199))));
    let image = write_partition(&entries, 0x3000).unwrap();
    assert_eq!(state(&image, 0), STATE_FULL);
    assert_eq!(entry(&image, 0, 120), &[0xFF; 32]);
    assert_eq!(&entry(&image, 1, 0)[..3], &[1, TYPE_STR, 8]);
    assert_eq!(read_partition(&image).unwrap(), entries);

    // As the generator does, a string that would end exactly at the page's end moves on too:
    // entries 0..118 used, 8 more would fill 118..126.
    let mut entries: Vec<NvsEntry> = (0..117).map(|i| ns(&format!("k{i}"), NvsValue::U8(i as u8))).collect();
    entries.push(ns("s", NvsValue::Str("y".repeat(199))));
    let image = write_partition(&entries, 0x3000).unwrap();
    assert_eq!(entry(&image, 0, 118), &[0xFF; 32]);
    assert_eq!(&entry(&image, 1, 0)[..3], &[1, TYPE_STR, 8]);
}

#[test]
fn blob_spans_pages_in_chunks() {
    let blob: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let entries = vec![ns("a", NvsValue::U8(1)), ns("cert", NvsValue::Blob(blob.clone()))];
    let image = write_partition(&entries, 0x4000).unwrap();
    // Page 0: namespace, "a", chunk 0 header + 123 entries of data (3936 bytes).
    let c0 = entry(&image, 0, 2);
    assert_eq!(&c0[..4], &[1, TYPE_BLOB_DATA, 124, 0]);
    assert_eq!(u16::from_le_bytes([c0[24], c0[25]]), 3936);
    assert_eq!(state(&image, 0), STATE_FULL);
    // Page 1: chunk 1 (1064 bytes), then the index.
    let c1 = entry(&image, 1, 0);
    assert_eq!(&c1[..4], &[1, TYPE_BLOB_DATA, 1 + 34, 1]);
    let idx = entry(&image, 1, 35);
    assert_eq!(&idx[..4], &[1, TYPE_BLOB_IDX, 1, CHUNK_ANY]);
    assert_eq!(&idx[24..32], &[0x88, 0x13, 0, 0, 2, 0, 0xFF, 0xFF]);
    assert_eq!(read_partition(&image).unwrap(), entries);

    // A missing chunk loses the blob, nothing else.
    let mut broken = image.clone();
    broken[PAGE_SIZE + FIRST_ENTRY_OFFSET + 8] ^= 1; // chunk 1's key: its CRC fails
    assert_eq!(read_partition(&broken).unwrap(), vec![ns("a", NvsValue::U8(1))]);
}

#[test]
fn limits_are_refused_with_clear_errors() {
    let one = |e: NvsEntry| write_partition(&[e], 0x3000).unwrap_err();
    let err = one(ns("a_sixteen_b_key_", NvsValue::U8(1)));
    assert_eq!(err, NvsError::NameTooLong { what: "key", name: "a_sixteen_b_key_".into() });
    assert!(err.to_string().contains("16 bytes long") && err.to_string().contains("at most 15"), "{err}");
    write_partition(&[ns("fifteen_b_key__", NvsValue::U8(1))], 0x3000).unwrap();
    let err = one(NvsEntry::new("namespace_is_long", "k", NvsValue::U8(1)));
    assert!(matches!(err, NvsError::NameTooLong { what: "namespace", .. }), "{err}");
    assert_eq!(one(ns("", NvsValue::U8(1))), NvsError::EmptyName { what: "key" });
    assert!(matches!(one(ns("a\0b", NvsValue::U8(1))), NvsError::HasNul { what: "key", .. }));
    assert!(matches!(one(ns("s", NvsValue::Str("a\0b".into()))), NvsError::HasNul { .. }));
    let err = one(ns("s", NvsValue::Str("x".repeat(4000))));
    assert_eq!(err, NvsError::StringTooLong { key: "s".into(), len: 4000 });
    assert!(err.to_string().contains("at most 3999"), "{err}");
    let err = one(ns("b", NvsValue::Blob(vec![0; MAX_BLOB_LEN + 1])));
    assert!(matches!(err, NvsError::BlobTooLong { .. }), "{err}");

    assert_eq!(write_partition(&[], 0x3100).unwrap_err(), NvsError::NotWholePages(0x3100));
    let err = write_partition(&[], 0x2000).unwrap_err();
    assert_eq!(err, NvsError::TooSmall(0x2000));
    assert!(err.to_string().contains("at least 0x3000"), "{err}");

    let many: Vec<NvsEntry> =
        (0..255).map(|i| NvsEntry::new(format!("ns{i}"), "k", NvsValue::U8(1))).collect();
    assert_eq!(write_partition(&many, 0x10000).unwrap_err(), NvsError::TooManyNamespaces(255));
    write_partition(&many[..254], 0x10000).unwrap();

    // Two pages of data in 0x3000: three 3000-byte strings need three.
    let big: Vec<NvsEntry> = (0..3).map(|i| ns(&format!("s{i}"), NvsValue::Str("z".repeat(3000)))).collect();
    let err = write_partition(&big, 0x3000).unwrap_err();
    assert_eq!(err, NvsError::DoesNotFit { size: 0x3000 });
    assert!(err.to_string().contains("2 pages of data"), "{err}");
    write_partition(&big[..2], 0x3000).unwrap();
}

#[test]
fn a_bad_entry_crc_is_skipped() {
    let entries = vec![
        ns("format", NvsValue::U8(1)),
        ns("name", NvsValue::Str("kitchen".into())),
        ns("wifi_ssid", NvsValue::Str("home".into())),
    ];
    let image = write_partition(&entries, 0x3000).unwrap();
    // Entry 1 is "format": flip a bit of its value.
    let mut bad = image.clone();
    bad[FIRST_ENTRY_OFFSET + ENTRY_LEN + 24] ^= 0x02;
    assert_eq!(read_partition(&bad).unwrap(), entries[1..]);
    // A string whose data no longer matches its CRC is skipped too.
    let mut bad = image.clone();
    bad[FIRST_ENTRY_OFFSET + 3 * ENTRY_LEN] = b'K';
    assert_eq!(read_partition(&bad).unwrap(), vec![entries[0].clone(), entries[2].clone()]);
    // A broken namespace entry orphans the namespace's keys.
    let mut bad = image.clone();
    bad[FIRST_ENTRY_OFFSET + 9] = b'O';
    assert_eq!(read_partition(&bad).unwrap(), vec![]);
    // An erased entry (bitmap 00) is skipped.
    let mut erased = image;
    erased[BITMAP_OFFSET] &= !0b1100;
    assert_eq!(read_partition(&erased).unwrap(), entries[1..]);
}

#[test]
fn a_bad_page_header_loses_the_page() {
    let entries: Vec<NvsEntry> = (0..130).map(|i| ns(&format!("k{i}"), NvsValue::U16(i))).collect();
    let mut image = write_partition(&entries, 0x4000).unwrap();
    image[PAGE_SIZE + 4] = 7; // page 1's sequence number, under its CRC
    let got = read_partition(&image).unwrap();
    assert_eq!(got, entries[..125]);
}

#[test]
fn later_value_wins() {
    // By hand: two entries for "name" on one page, as a power cut between writing the new value
    // and erasing the old leaves them.
    let mut w = writer(3);
    w.primitive(0, "otaforge", TYPE_U8, &[1]).unwrap();
    w.string(1, "name", "old").unwrap();
    w.primitive(1, "format", TYPE_U8, &[1]).unwrap();
    w.string(1, "name", "new").unwrap();
    let got = read_partition(&finish(w, 3)).unwrap();
    assert_eq!(got, vec![ns("name", NvsValue::Str("new".into())), ns("format", NvsValue::U8(1))]);

    // And across pages, in sequence order, whatever order the pages have in flash.
    let mut w = writer(4);
    w.primitive(0, "otaforge", TYPE_U8, &[1]).unwrap();
    w.primitive(1, "n", TYPE_U32, &1u32.to_le_bytes()).unwrap();
    w.new_page().unwrap();
    w.primitive(1, "n", TYPE_U32, &2u32.to_le_bytes()).unwrap();
    let mut image = finish(w, 4);
    let (a, b) = image.split_at_mut(PAGE_SIZE);
    a.swap_with_slice(&mut b[..PAGE_SIZE]);
    assert_eq!(read_partition(&image).unwrap(), vec![ns("n", NvsValue::U32(2))]);

    // write_partition keeps only the later of two values.
    let image = write_partition(
        &[
            ns("name", NvsValue::Str("a".into())),
            ns("x", NvsValue::U8(0)),
            ns("name", NvsValue::Str("b".into())),
        ],
        0x3000,
    )
    .unwrap();
    assert_eq!(&image[BITMAP_OFFSET..BITMAP_OFFSET + 2], &[0xAA, 0xFF], "namespace, name (2 entries), x");
    assert_eq!(
        read_partition(&image).unwrap(),
        vec![ns("name", NvsValue::Str("b".into())), ns("x", NvsValue::U8(0))]
    );
}

#[test]
fn images_the_firmware_would_erase_are_refused() {
    let mut image = write_partition(&[ns("a", NvsValue::U8(1))], 0x3000).unwrap();
    let first = image[..PAGE_SIZE].to_vec();
    // Every page in use: ESP-IDF finds no free page.
    image[PAGE_SIZE..2 * PAGE_SIZE].copy_from_slice(&first);
    image[2 * PAGE_SIZE..].copy_from_slice(&first);
    assert_eq!(read_partition(&image).unwrap_err(), NvsError::NoFreePage);
    // A newer format version.
    let mut image = write_partition(&[ns("a", NvsValue::U8(1))], 0x3000).unwrap();
    image[8] = 0xFD;
    let crc = crc32(&image[4..28]);
    image[28..32].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(read_partition(&image).unwrap_err(), NvsError::NewerVersion { page: 0, version: 0xFD });
    assert_eq!(read_partition(&[0xFF; 100]).unwrap_err(), NvsError::NotAnImage(100));
    assert_eq!(read_partition(&[]).unwrap_err(), NvsError::NotAnImage(0));
}

#[test]
fn finds_the_nvs_partition_in_a_table() {
    let row = |label: &str, ty: u8, sub: u8, offset: u32, size: u32| {
        let mut r = vec![0xAA, 0x50, ty, sub];
        r.extend_from_slice(&offset.to_le_bytes());
        r.extend_from_slice(&size.to_le_bytes());
        let mut l = [0u8; 16];
        l[..label.len()].copy_from_slice(label.as_bytes());
        r.extend_from_slice(&l);
        r.extend_from_slice(&[0; 4]);
        r
    };
    let mut table = [
        row("app0", 0, 0x10, 0x10000, 0x140000),
        row("nvs_ext", 1, 0x02, 0x300000, 0x10000),
        row("nvs", 1, 0x02, 0x9000, 0x6000),
    ]
    .concat();
    let mut md5_row = vec![0xEB, 0xEB];
    md5_row.resize(32, 0xFF);
    table.extend_from_slice(&md5_row);
    table.extend_from_slice(&row("nvs", 1, 0x02, 0xA000, 0x1000)); // after the end: ignored
    table.resize(0xC00, 0xFF);
    assert_eq!(find_nvs_partition(&table), Some((0x9000, 0x6000)));
    assert_eq!(find_nvs_partition(&[0xFF; 0xC00]), None);
    let no_nvs = [row("nvs", 1, 0x03, 0x9000, 0x6000), row("otadata", 1, 0x00, 0xE000, 0x2000)].concat();
    assert_eq!(find_nvs_partition(&no_nvs), None);
    assert_eq!(DEFAULT_NVS, (0x9000, 0x5000));
}
