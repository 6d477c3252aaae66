//! ESP-IDF NVS partition images: written for `otaforge provision`, read back by the virtual ESP32.
//!
//! ESP32-family devices keep their per-device settings in the `otaforge` namespace of the `nvs`
//! partition, where arduino-esp32's `Preferences` reads them. [`write_partition`] lays out a whole
//! partition image the way Espressif's generator (PyPI `esp-idf-nvs-partition-gen`,
//! `nvs_partition_gen.py`) does, byte for byte; [`read_partition`] decodes an image the way
//! ESP-IDF's `nvs_flash` loads one, so images from either side work.
//!
//! Format facts from ESP-IDF `components/nvs_flash/src/nvs_page.hpp`, `nvs_page.cpp`,
//! `nvs_types.hpp`, `nvs_pagemanager.cpp` and from `nvs_partition_gen.py` (0.3); the code is
//! written from those facts:
//!
//! - The partition is a run of 4096-byte pages. A page starts with a 32-byte header: state `u32`
//!   (0xFFFFFFFF uninitialised, 0xFFFFFFFE active, 0xFFFFFFFC full, 0xFFFFFFF8 freeing), sequence
//!   number `u32`, version `u8` (0xFE: version 2, multi-page blobs), 19 bytes 0xFF, and a CRC32 of
//!   bytes 4..28. Then a 32-byte bitmap with 2 bits per entry (low bits first: 11 empty,
//!   10 written, 00 erased), then 126 entries of 32 bytes.
//! - An entry: namespace index `u8`, type `u8`, span `u8` (entries it covers, itself included),
//!   chunk index `u8` (0xFF unless a blob chunk), CRC32 `u32` of bytes 0..4 and 8..32, key
//!   (16 bytes, NUL padded), data (8 bytes). Integers are little-endian in the data, padded 0xFF.
//!   Strings (type 0x21) and blob chunks (0x42) carry size `u16`, 0xFFFF and the data's CRC32
//!   there; the bytes follow in the next span - 1 entries. A blob index (0x48) carries the total
//!   size `u32`, chunk count `u8` and first chunk index `u8`.
//! - Namespace names are entries of namespace 0 whose U8 value is the namespace's index (1..=254).
//! - Every CRC32 is ESP-IDF's `esp_rom_crc32_le(0xffffffff, …)`, which is Python's
//!   `zlib.crc32(data, 0xFFFFFFFF)`: the reflected 0xEDB88320 polynomial with a zero register and
//!   a final inversion (not the usual zlib CRC32, whose register starts at 0xFFFFFFFF).

use std::collections::{HashMap, HashSet};

use thiserror::Error;

/// Size of a flash page (sector) of the partition.
pub const PAGE_SIZE: usize = 4096;
/// Smallest partition ESP-IDF uses read-write: two pages of data and the page it keeps free.
pub const MIN_PARTITION_SIZE: usize = 3 * PAGE_SIZE;
/// Longest key or namespace name, in bytes (`Item::MAX_KEY_LENGTH`).
pub const MAX_KEY_LEN: usize = 15;
/// Longest string, in bytes without its NUL: stored with the NUL it must fit one page's 4000-byte
/// chunk (`Page::CHUNK_MAX_SIZE`).
pub const MAX_STRING_LEN: usize = CHUNK_MAX_SIZE - 1;
/// Longest blob ESP-IDF stores (`nvs_set_blob`'s documented limit).
pub const MAX_BLOB_LEN: usize = 508_000;
/// Most namespaces a partition holds (indices 1..=254; 0 holds the names, 255 means "any").
pub const MAX_NAMESPACES: usize = 254;
/// arduino-esp32's default partition scheme: `nvs` at 0x9000, 20 KB; for flash without a table.
pub const DEFAULT_NVS: (usize, usize) = (0x9000, 0x5000);

const ENTRY_LEN: usize = 32;
const ENTRY_COUNT: usize = 126;
const BITMAP_OFFSET: usize = 32;
const FIRST_ENTRY_OFFSET: usize = 64;
/// Bytes of blob data one page holds: every entry but the chunk's header.
const CHUNK_MAX_SIZE: usize = (ENTRY_COUNT - 1) * ENTRY_LEN;
/// Chunk indices of one blob version run from 0 (or 0x80) and stay below 0x80 (`VerOffset`).
const MAX_CHUNKS: usize = 0x80;

const STATE_UNINITIALIZED: u32 = 0xFFFF_FFFF;
const STATE_ACTIVE: u32 = 0xFFFF_FFFE;
const STATE_FULL: u32 = 0xFFFF_FFFC;
const STATE_FREEING: u32 = 0xFFFF_FFF8;
/// Version byte of format 2 (multi-page blobs). Version 1 pages say 0xFF; lower is newer.
const VERSION_2: u8 = 0xFE;
const CHUNK_ANY: u8 = 0xFF;

const ENTRY_EMPTY: u8 = 0b11;
const ENTRY_WRITTEN: u8 = 0b10;

const TYPE_U8: u8 = 0x01;
const TYPE_I8: u8 = 0x11;
const TYPE_U16: u8 = 0x02;
const TYPE_I16: u8 = 0x12;
const TYPE_U32: u8 = 0x04;
const TYPE_I32: u8 = 0x14;
const TYPE_U64: u8 = 0x08;
const TYPE_I64: u8 = 0x18;
const TYPE_STR: u8 = 0x21;
/// Version-1 blob, all in one page: still read, never written.
const TYPE_BLOB_V1: u8 = 0x41;
const TYPE_BLOB_DATA: u8 = 0x42;
const TYPE_BLOB_IDX: u8 = 0x48;

/// A value as `Preferences::put*` (or `nvs_set_*`) stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvsValue {
    /// `putUChar` / `putBool`.
    U8(u8),
    /// `putChar`.
    I8(i8),
    /// `putUShort`.
    U16(u16),
    /// `putShort`.
    I16(i16),
    /// `putUInt` / `putULong`.
    U32(u32),
    /// `putInt` / `putLong`.
    I32(i32),
    /// `putULong64`.
    U64(u64),
    /// `putLong64`.
    I64(i64),
    /// `putString`: UTF-8 without NUL bytes, at most [`MAX_STRING_LEN`] bytes.
    Str(String),
    /// `putBytes`: at most [`MAX_BLOB_LEN`] bytes.
    Blob(Vec<u8>),
}

/// One key of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvsEntry {
    /// Namespace name (`Preferences::begin`), 1..=15 bytes.
    pub namespace: String,
    /// Key, 1..=15 bytes.
    pub key: String,
    /// Value.
    pub value: NvsValue,
}

impl NvsEntry {
    /// An entry.
    pub fn new(namespace: impl Into<String>, key: impl Into<String>, value: NvsValue) -> NvsEntry {
        NvsEntry { namespace: namespace.into(), key: key.into(), value }
    }
}

/// Why an NVS image could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NvsError {
    /// The partition size is not whole pages.
    #[error(
        "NVS partition size {0:#x} is not a multiple of 4096 bytes (0x1000): check the nvs row of the partition table"
    )]
    NotWholePages(usize),
    /// Fewer than three pages.
    #[error(
        "NVS partition of {0:#x} bytes is too small: ESP-IDF needs at least 0x3000 (three 4 KB pages, one of which it keeps free)"
    )]
    TooSmall(usize),
    /// An empty name or key.
    #[error("NVS {what} is empty: namespaces and keys need 1 to 15 bytes")]
    EmptyName {
        /// `namespace` or `key`.
        what: &'static str,
    },
    /// A name or key longer than 15 bytes.
    #[error("NVS {what} `{name}` is {} bytes long: ESP-IDF allows at most 15; use a shorter one", name.len())]
    NameTooLong {
        /// `namespace` or `key`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A NUL byte in a name, key or string (ESP-IDF keeps them as C strings).
    #[error("NVS {what} `{name}` contains a NUL byte, which ESP-IDF cannot store (it ends C strings)")]
    HasNul {
        /// `namespace`, `key` or `string value of key`.
        what: &'static str,
        /// The name or key.
        name: String,
    },
    /// More namespaces than NVS can index.
    #[error("{0} NVS namespaces given: a partition holds at most 254")]
    TooManyNamespaces(usize),
    /// A string longer than one page holds.
    #[error(
        "string for NVS key `{key}` is {len} bytes: ESP-IDF stores at most 3999 (4000 with its NUL); store it as a blob or shorten it"
    )]
    StringTooLong {
        /// The key.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A blob longer than ESP-IDF stores.
    #[error("blob for NVS key `{key}` is {len} bytes: ESP-IDF stores at most 508000")]
    BlobTooLong {
        /// The key.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The entries need more pages than the partition has.
    #[error(
        "the NVS entries do not fit in a {size:#x}-byte partition ({} pages of data, one page kept free for ESP-IDF): use a bigger nvs partition or fewer, shorter values",
        size / PAGE_SIZE - 1
    )]
    DoesNotFit {
        /// The partition size.
        size: usize,
    },
    /// An image that is not whole pages.
    #[error("{0} bytes is not an NVS partition image: it must be a non-empty multiple of 4096 bytes")]
    NotAnImage(usize),
    /// A page written by a newer NVS format than ESP-IDF's version 2.
    #[error(
        "NVS page {page} has format version {version:#04x}, newer than ESP-IDF's 0xfe: the firmware refuses it (ESP_ERR_NVS_NEW_VERSION_FOUND) and arduino-esp32 erases the partition"
    )]
    NewerVersion {
        /// Page number within the partition.
        page: usize,
        /// Its version byte.
        version: u8,
    },
    /// Every page is in use.
    #[error(
        "no free page in the NVS partition: ESP-IDF refuses it (ESP_ERR_NVS_NO_FREE_PAGES) and arduino-esp32 erases it; write it with one 4 KB page left erased"
    )]
    NoFreePage,
}

/// Offset and size of the `nvs` data partition (type 0x01, subtype 0x02, label `nvs`: the one
/// `nvs_flash_init` and `Preferences` use) in a partition table as read from flash at 0x8000.
pub fn find_nvs_partition(table: &[u8]) -> Option<(usize, usize)> {
    // ESP-IDF `esp_flash_partitions.h`: 32-byte entries starting AA 50; type, subtype, offset
    // u32, size u32, label[16], flags u32. The table ends at the first other entry (the MD5 row
    // starts EB EB, erased flash FF FF).
    table.chunks_exact(32).take_while(|e| e[..2] == [0xAA, 0x50]).find_map(|e| {
        let label = &e[12..28];
        let label = &label[..label.iter().position(|&b| b == 0).unwrap_or(label.len())];
        ((e[2], e[3]) == (0x01, 0x02) && label == b"nvs").then(|| {
            let offset = u32::from_le_bytes(e[4..8].try_into().unwrap()) as usize;
            let size = u32::from_le_bytes(e[8..12].try_into().unwrap()) as usize;
            (offset, size)
        })
    })
}

/// A whole `size`-byte partition image holding `entries`: the same bytes Espressif's generator
/// writes for a CSV of them in this order, a namespace's name entry before its first key, pages
/// after the last used one erased (the last of them is the page ESP-IDF keeps free).
///
/// Where ours differs, on purpose (`app/tests/firmware/bake/nvs.rs` shows each case): a blob reaching a
/// page's last entry starts in the next page (the generator writes an empty chunk there, which
/// ESP-IDF never does); a string of 3968..=3999 bytes is written on a fresh page (the generator
/// fails, ESP-IDF stores it); keys given after coming back to an earlier namespace stay in it (the
/// generator files them under the newest namespace); and when a (namespace, key) is given twice
/// only the later value is written, in the place of the first (the generator writes both).
pub fn write_partition(entries: &[NvsEntry], size: usize) -> Result<Vec<u8>, NvsError> {
    if !size.is_multiple_of(PAGE_SIZE) {
        return Err(NvsError::NotWholePages(size));
    }
    if size < MIN_PARTITION_SIZE {
        return Err(NvsError::TooSmall(size));
    }
    let mut unique: Vec<&NvsEntry> = Vec::with_capacity(entries.len());
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    for e in entries {
        check_name("namespace", &e.namespace)?;
        check_name("key", &e.key)?;
        match &e.value {
            NvsValue::Str(s) if s.as_bytes().contains(&0) => {
                return Err(NvsError::HasNul { what: "string value of key", name: e.key.clone() });
            }
            NvsValue::Str(s) if s.len() > MAX_STRING_LEN => {
                return Err(NvsError::StringTooLong { key: e.key.clone(), len: s.len() });
            }
            NvsValue::Blob(b) if b.len() > MAX_BLOB_LEN => {
                return Err(NvsError::BlobTooLong { key: e.key.clone(), len: b.len() });
            }
            _ => {}
        }
        match at.get(&(e.namespace.as_str(), e.key.as_str())) {
            Some(&i) => unique[i] = e,
            None => {
                at.insert((e.namespace.as_str(), e.key.as_str()), unique.len());
                unique.push(e);
            }
        }
    }

    let namespace_count = unique.iter().map(|e| e.namespace.as_str()).collect::<HashSet<_>>().len();
    if namespace_count > MAX_NAMESPACES {
        return Err(NvsError::TooManyNamespaces(namespace_count));
    }

    let mut w = Writer { pages: Vec::new(), max_pages: size / PAGE_SIZE - 1, size, next: 0 };
    // The generator opens page 0 before anything else, so even an empty image has it active.
    w.new_page()?;
    let mut namespaces: HashMap<&str, u8> = HashMap::new();
    for e in unique {
        let ns = match namespaces.get(e.namespace.as_str()) {
            Some(&ns) => ns,
            None => {
                let ns = namespaces.len() as u8 + 1;
                w.primitive(0, &e.namespace, TYPE_U8, &[ns])?;
                namespaces.insert(&e.namespace, ns);
                ns
            }
        };
        match &e.value {
            NvsValue::U8(v) => w.primitive(ns, &e.key, TYPE_U8, &v.to_le_bytes())?,
            NvsValue::I8(v) => w.primitive(ns, &e.key, TYPE_I8, &v.to_le_bytes())?,
            NvsValue::U16(v) => w.primitive(ns, &e.key, TYPE_U16, &v.to_le_bytes())?,
            NvsValue::I16(v) => w.primitive(ns, &e.key, TYPE_I16, &v.to_le_bytes())?,
            NvsValue::U32(v) => w.primitive(ns, &e.key, TYPE_U32, &v.to_le_bytes())?,
            NvsValue::I32(v) => w.primitive(ns, &e.key, TYPE_I32, &v.to_le_bytes())?,
            NvsValue::U64(v) => w.primitive(ns, &e.key, TYPE_U64, &v.to_le_bytes())?,
            NvsValue::I64(v) => w.primitive(ns, &e.key, TYPE_I64, &v.to_le_bytes())?,
            NvsValue::Str(s) => w.string(ns, &e.key, s)?,
            NvsValue::Blob(b) => w.blob(ns, &e.key, b)?,
        }
    }

    // Pages after the last used one stay erased; the last of them is the page ESP-IDF keeps free.
    let mut out = Vec::with_capacity(size);
    for p in &w.pages {
        out.extend_from_slice(&p[..]);
    }
    out.resize(size, 0xFF);
    Ok(out)
}

fn check_name(what: &'static str, name: &str) -> Result<(), NvsError> {
    if name.is_empty() {
        return Err(NvsError::EmptyName { what });
    }
    if name.len() > MAX_KEY_LEN {
        return Err(NvsError::NameTooLong { what, name: name.into() });
    }
    if name.as_bytes().contains(&0) {
        return Err(NvsError::HasNul { what, name: name.into() });
    }
    Ok(())
}

/// Fills pages in order as `nvs_partition_gen.py` does: one active page at a time, the one before
/// it marked full, sequence numbers counting from 0.
struct Writer {
    pages: Vec<Box<[u8; PAGE_SIZE]>>,
    /// Pages data may use: all but the one ESP-IDF keeps free.
    max_pages: usize,
    size: usize,
    /// Next free entry of the last page.
    next: usize,
}

impl Writer {
    fn new_page(&mut self) -> Result<(), NvsError> {
        if self.pages.len() == self.max_pages {
            return Err(NvsError::DoesNotFit { size: self.size });
        }
        if let Some(last) = self.pages.last_mut() {
            last[..4].copy_from_slice(&STATE_FULL.to_le_bytes());
        }
        let mut page = Box::new([0xFFu8; PAGE_SIZE]);
        page[..4].copy_from_slice(&STATE_ACTIVE.to_le_bytes());
        page[4..8].copy_from_slice(&(self.pages.len() as u32).to_le_bytes());
        page[8] = VERSION_2;
        let crc = crc32(&page[4..28]);
        page[28..32].copy_from_slice(&crc.to_le_bytes());
        self.pages.push(page);
        self.next = 0;
        Ok(())
    }

    /// Writes `bytes` into the next entries of the current page and marks them written.
    fn put(&mut self, bytes: &[u8]) {
        let count = bytes.len().div_ceil(ENTRY_LEN);
        debug_assert!(self.next + count <= ENTRY_COUNT);
        let page = self.pages.last_mut().expect("a page is open");
        let at = FIRST_ENTRY_OFFSET + self.next * ENTRY_LEN;
        page[at..at + bytes.len()].copy_from_slice(bytes);
        for i in self.next..self.next + count {
            page[BITMAP_OFFSET + i / 4] &= !(1 << ((i % 4) * 2));
        }
        self.next += count;
    }

    fn primitive(&mut self, ns: u8, key: &str, ty: u8, le: &[u8]) -> Result<(), NvsError> {
        if self.next >= ENTRY_COUNT {
            self.new_page()?;
        }
        let mut e = header(ns, ty, 1, CHUNK_ANY, key);
        e[24..24 + le.len()].copy_from_slice(le);
        self.put(&seal(e));
        Ok(())
    }

    fn string(&mut self, ns: u8, key: &str, s: &str) -> Result<(), NvsError> {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        let span = 1 + data.len().div_ceil(ENTRY_LEN);
        // The generator moves a string to the next page when it would reach the page's last
        // entry, one entry earlier than ESP-IDF must (`mNextFreeEntry + entriesCount >
        // ENTRY_COUNT`); its layout is followed. On a fresh page ESP-IDF's own rule applies: there
        // the generator would fail for the longest strings, which ESP-IDF stores.
        if self.next + span >= ENTRY_COUNT && !(self.next == 0 && span <= ENTRY_COUNT) {
            self.new_page()?;
        }
        let mut e = header(ns, TYPE_STR, span as u8, CHUNK_ANY, key);
        var_length(&mut e, &data);
        self.put(&seal(e));
        self.put(&data);
        Ok(())
    }

    /// A version-2 blob: data chunks filling each page to its end, then the index.
    fn blob(&mut self, ns: u8, key: &str, data: &[u8]) -> Result<(), NvsError> {
        if self.next >= ENTRY_COUNT {
            self.new_page()?;
        }
        let mut chunks = 0usize;
        let mut rest = data;
        loop {
            // The generator writes an empty chunk into a page's last entry when the blob reaches
            // it there; ESP-IDF never writes empty chunks of non-empty blobs, so this moves on.
            if self.next == ENTRY_COUNT - 1 && !rest.is_empty() {
                self.new_page()?;
            }
            if chunks == MAX_CHUNKS {
                return Err(NvsError::DoesNotFit { size: self.size });
            }
            let tailroom = (ENTRY_COUNT - self.next - 1) * ENTRY_LEN;
            let (chunk, after) = rest.split_at(rest.len().min(tailroom));
            let span = 1 + chunk.len().div_ceil(ENTRY_LEN);
            let mut e = header(ns, TYPE_BLOB_DATA, span as u8, chunks as u8, key);
            var_length(&mut e, chunk);
            self.put(&seal(e));
            self.put(chunk);
            chunks += 1;
            rest = after;
            if !rest.is_empty() || self.next == ENTRY_COUNT {
                self.new_page()?;
            }
            if rest.is_empty() {
                break;
            }
        }
        let mut e = header(ns, TYPE_BLOB_IDX, 1, CHUNK_ANY, key);
        e[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
        e[28] = chunks as u8;
        e[29] = 0; // VerOffset::VER_0_OFFSET
        self.put(&seal(e));
        Ok(())
    }
}

/// An entry with everything but its CRC and data: data 0xFF, key NUL padded.
fn header(ns: u8, ty: u8, span: u8, chunk: u8, key: &str) -> [u8; ENTRY_LEN] {
    let mut e = [0xFFu8; ENTRY_LEN];
    e[..4].copy_from_slice(&[ns, ty, span, chunk]);
    e[8..24].fill(0);
    e[8..8 + key.len()].copy_from_slice(key.as_bytes());
    e
}

/// Size, reserved 0xFFFF and the data's CRC, as strings and blob chunks carry them.
fn var_length(e: &mut [u8; ENTRY_LEN], data: &[u8]) {
    e[24..26].copy_from_slice(&(data.len() as u16).to_le_bytes());
    e[28..32].copy_from_slice(&crc32(data).to_le_bytes());
}

fn seal(mut e: [u8; ENTRY_LEN]) -> [u8; ENTRY_LEN] {
    let crc = entry_crc(&e);
    e[4..8].copy_from_slice(&crc.to_le_bytes());
    e
}

/// `Item::calculateCrc32`: over the entry without its CRC field.
fn entry_crc(e: &[u8]) -> u32 {
    crc32_update(crc32_update(0, &e[..4]), &e[8..32]) ^ 0xFFFF_FFFF
}

/// `esp_rom_crc32_le(0xffffffff, data)` = `zlib.crc32(data, 0xFFFFFFFF)`.
fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data) ^ 0xFFFF_FFFF
}

/// The reflected CRC-32 register update (polynomial 0xEDB88320), without pre- or post-inversion.
fn crc32_update(mut reg: u32, data: &[u8]) -> u32 {
    for &b in data {
        reg ^= u32::from(b);
        for _ in 0..8 {
            reg = if reg & 1 != 0 { (reg >> 1) ^ 0xEDB8_8320 } else { reg >> 1 };
        }
    }
    reg
}

/// Every key of every namespace in a partition image, as ESP-IDF's `nvs_flash` would find them.
///
/// Pages are taken in sequence-number order. Uninitialised, corrupt (bad header CRC, unknown
/// state) pages hold nothing; unwritten and erased entries are skipped, and so are entries whose
/// CRC, span or data CRC is wrong (ESP-IDF erases those), entries of namespaces without a name
/// and blobs with missing chunks. When a (namespace, key) occurs more than once the later one
/// wins, in the place of the first: ESP-IDF resolves the duplicates it leaves itself (a power cut
/// between writing a new value and erasing the old) the same way. Strings are read up to their
/// first NUL, invalid UTF-8 replaced.
///
/// Fails where the firmware would give up on the partition (and arduino-esp32 erase it): a page
/// of a newer format, or no free page left.
pub fn read_partition(bytes: &[u8]) -> Result<Vec<NvsEntry>, NvsError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(PAGE_SIZE) {
        return Err(NvsError::NotAnImage(bytes.len()));
    }
    let mut pages: Vec<(u32, &[u8])> = Vec::new();
    let mut free = 0;
    for (n, page) in bytes.chunks_exact(PAGE_SIZE).enumerate() {
        let state = u32::from_le_bytes(page[..4].try_into().unwrap());
        let stored_crc = u32::from_le_bytes(page[28..32].try_into().unwrap());
        // `Page::load`: an uninitialised page (erased, or corrupt if anything is written in it)
        // and a page with a bad header CRC or an unknown state go to the free list.
        if state == STATE_UNINITIALIZED || crc32(&page[4..28]) != stored_crc {
            free += 1;
            continue;
        }
        if page[8] < VERSION_2 {
            return Err(NvsError::NewerVersion { page: n, version: page[8] });
        }
        match state {
            STATE_ACTIVE | STATE_FULL | STATE_FREEING => {
                pages.push((u32::from_le_bytes(page[4..8].try_into().unwrap()), page));
            }
            _ => free += 1,
        }
    }
    // `PageManager::load`: a read-write partition needs at least one free page.
    if free == 0 {
        return Err(NvsError::NoFreePage);
    }
    pages.sort_by_key(|&(seq, _)| seq);

    let mut names: HashMap<u8, String> = HashMap::new();
    let mut items: Vec<(u8, String, Item)> = Vec::new();
    let mut chunks: HashMap<(u8, String, u8), Vec<u8>> = HashMap::new();
    for &(_, page) in &pages {
        read_page(page, &mut names, &mut items, &mut chunks);
    }

    let mut out: Vec<NvsEntry> = Vec::new();
    let mut at: HashMap<(String, String), usize> = HashMap::new();
    for (ns, key, item) in items {
        let Some(namespace) = names.get(&ns) else { continue };
        let value = match item {
            Item::Value(v) => v,
            Item::BlobIndex { size, count, start } => {
                let parts: Option<Vec<&[u8]>> = (0..count)
                    .map(|i| {
                        start
                            .checked_add(i)
                            .and_then(|c| chunks.get(&(ns, key.clone(), c)))
                            .map(Vec::as_slice)
                    })
                    .collect();
                match parts.map(|p| p.concat()) {
                    Some(data) if data.len() == size => NvsValue::Blob(data),
                    _ => continue,
                }
            }
        };
        match at.get(&(namespace.clone(), key.clone())) {
            Some(&i) => out[i].value = value,
            None => {
                at.insert((namespace.clone(), key.clone()), out.len());
                out.push(NvsEntry { namespace: namespace.clone(), key, value });
            }
        }
    }
    Ok(out)
}

/// What an entry header holds before blobs are put together.
enum Item {
    Value(NvsValue),
    BlobIndex { size: usize, count: u8, start: u8 },
}

fn entry_state(page: &[u8], i: usize) -> u8 {
    (page[BITMAP_OFFSET + i / 4] >> ((i % 4) * 2)) & 0b11
}

/// One active, full or freeing page's entries, in order (`Page::mLoadEntryTable`).
fn read_page(
    page: &[u8],
    names: &mut HashMap<u8, String>,
    items: &mut Vec<(u8, String, Item)>,
    chunks: &mut HashMap<(u8, String, u8), Vec<u8>>,
) {
    let active = u32::from_le_bytes(page[..4].try_into().unwrap()) == STATE_ACTIVE;
    // An active page is read up to its first empty entry, where ESP-IDF will write next.
    let end = if active {
        (0..ENTRY_COUNT).find(|&i| entry_state(page, i) == ENTRY_EMPTY).unwrap_or(ENTRY_COUNT)
    } else {
        ENTRY_COUNT
    };
    let entry =
        |i: usize| &page[FIRST_ENTRY_OFFSET + i * ENTRY_LEN..FIRST_ENTRY_OFFSET + (i + 1) * ENTRY_LEN];
    let mut i = 0;
    while i < end {
        if entry_state(page, i) != ENTRY_WRITTEN {
            i += 1;
            continue;
        }
        let e = entry(i);
        if entry_crc(e) != u32::from_le_bytes(e[4..8].try_into().unwrap()) {
            i += 1;
            continue;
        }
        let (ns, ty, span, chunk) = (e[0], e[1], e[2] as usize, e[3]);
        let key_field = &e[8..24];
        let key = String::from_utf8_lossy(
            &key_field[..key_field.iter().position(|&b| b == 0).unwrap_or(MAX_KEY_LEN)],
        )
        .into_owned();
        let data = &e[24..32];
        let varlen = matches!(ty, TYPE_STR | TYPE_BLOB_V1 | TYPE_BLOB_DATA);
        if !varlen {
            i += 1;
            let value = match ty {
                TYPE_U8 => NvsValue::U8(data[0]),
                TYPE_I8 => NvsValue::I8(data[0] as i8),
                TYPE_U16 => NvsValue::U16(u16::from_le_bytes(data[..2].try_into().unwrap())),
                TYPE_I16 => NvsValue::I16(i16::from_le_bytes(data[..2].try_into().unwrap())),
                TYPE_U32 => NvsValue::U32(u32::from_le_bytes(data[..4].try_into().unwrap())),
                TYPE_I32 => NvsValue::I32(i32::from_le_bytes(data[..4].try_into().unwrap())),
                TYPE_U64 => NvsValue::U64(u64::from_le_bytes(data.try_into().unwrap())),
                TYPE_I64 => NvsValue::I64(i64::from_le_bytes(data.try_into().unwrap())),
                TYPE_BLOB_IDX if chunk == CHUNK_ANY && ns != 0 => {
                    let size = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
                    items.push((ns, key, Item::BlobIndex { size, count: data[4], start: data[5] }));
                    continue;
                }
                _ => continue,
            };
            match (ns, value) {
                (0, NvsValue::U8(index)) if index != 0 && index != 0xFF => {
                    names.insert(index, key);
                }
                (0, _) => {}
                (ns, value) => items.push((ns, key, Item::Value(value))),
            }
            continue;
        }
        // A variable-length item covers `span` entries, all of them written.
        if span == 0
            || i + span > ENTRY_COUNT
            || (i + 1..i + span).any(|j| entry_state(page, j) != ENTRY_WRITTEN)
        {
            i += 1;
            continue;
        }
        let size = u16::from_le_bytes(data[..2].try_into().unwrap()) as usize;
        let body =
            &page[FIRST_ENTRY_OFFSET + (i + 1) * ENTRY_LEN..FIRST_ENTRY_OFFSET + (i + span) * ENTRY_LEN];
        i += span;
        if size > body.len()
            || crc32(&body[..size]) != u32::from_le_bytes(data[4..8].try_into().unwrap())
            || ns == 0
        {
            continue;
        }
        let body = &body[..size];
        match ty {
            TYPE_STR => {
                let text = &body[..body.iter().position(|&b| b == 0).unwrap_or(body.len())];
                items.push((ns, key, Item::Value(NvsValue::Str(String::from_utf8_lossy(text).into_owned()))));
            }
            TYPE_BLOB_V1 => items.push((ns, key, Item::Value(NvsValue::Blob(body.to_vec())))),
            _ => {
                chunks.insert((ns, key, chunk), body.to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests;
