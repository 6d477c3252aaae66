//! An ESP32's flash map: the partition table at 0x8000 (or, when none was flashed, the
//! arduino-esp32 "default" scheme), its OTA app slots, and `otadata`, the two sectors that say
//! which slot boots. Layout facts from ESP-IDF (`esp_flash_partitions.h`, `esp_ota_ops.c`,
//! `bootloader_common.c`); the code is written from those facts.

use super::flash::{Flash, FlashError, SECTOR};

/// Where the partition table lives.
pub const TABLE_OFFSET: usize = 0x8000;
const ENTRY_MAGIC: [u8; 2] = [0xAA, 0x50];
const ENTRY_LEN: usize = 32;

/// One app partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppSlot {
    /// `None` for the factory app, `Some(n)` for `ota_n`.
    pub ota: Option<u8>,
    /// Flash offset.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
}

impl AppSlot {
    /// `factory`, `ota_0`, …
    pub fn label(&self) -> String {
        self.ota.map_or_else(|| "factory".to_string(), |n| format!("ota_{n}"))
    }
}

/// The partitions a virtual ESP32 cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMap {
    /// Factory app, if any.
    pub factory: Option<AppSlot>,
    /// OTA slots in index order.
    pub ota: Vec<AppSlot>,
    /// `otadata` offset (two sectors).
    pub otadata: Option<usize>,
    /// Whether the map came from flash (false: the default scheme was assumed).
    pub from_flash: bool,
}

impl PartitionMap {
    /// Reads the table at 0x8000; when there is none, the arduino-esp32 default scheme for a
    /// 4 MB chip (two 1.25 MB OTA slots at 0x10000 and 0x150000, otadata at 0xE000).
    pub fn read(flash: &Flash) -> Result<PartitionMap, FlashError> {
        let table = flash.read(TABLE_OFFSET, 0xC00)?;
        let mut map = PartitionMap { factory: None, ota: Vec::new(), otadata: None, from_flash: false };
        for e in table.chunks_exact(ENTRY_LEN) {
            if e[..2] != ENTRY_MAGIC {
                break;
            }
            map.from_flash = true;
            let (ty, sub) = (e[2], e[3]);
            let offset = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as usize;
            let size = u32::from_le_bytes([e[8], e[9], e[10], e[11]]) as usize;
            match (ty, sub) {
                (0, 0x00) => map.factory = Some(AppSlot { ota: None, offset, size }),
                (0, 0x10..=0x1F) => map.ota.push(AppSlot { ota: Some(sub - 0x10), offset, size }),
                (1, 0x00) => map.otadata = Some(offset),
                _ => {}
            }
        }
        map.ota.sort_by_key(|s| s.ota);
        if !map.from_flash {
            map.ota = vec![
                AppSlot { ota: Some(0), offset: 0x10000, size: 0x140000 },
                AppSlot { ota: Some(1), offset: 0x150000, size: 0x140000 },
            ];
            map.otadata = Some(0xE000);
        }
        Ok(map)
    }

    /// The slot the bootloader tries first: the newest valid otadata entry's, else factory,
    /// else `ota_0`.
    pub fn boot_slot(&self, flash: &Flash) -> Option<AppSlot> {
        if let Some(seq) = self.otadata.and_then(|at| newest_seq(flash, at))
            && !self.ota.is_empty()
        {
            return self.ota.get(((seq - 1) as usize) % self.ota.len()).copied();
        }
        self.factory.or_else(|| self.ota.first().copied())
    }

    /// Every app slot, factory first.
    pub fn slots(&self) -> Vec<AppSlot> {
        self.factory.iter().chain(&self.ota).copied().collect()
    }

    /// `esp_ota_get_next_update_partition`: the OTA slot after `running`.
    pub fn next_update_slot(&self, running: AppSlot) -> Option<AppSlot> {
        match running.ota {
            None => self.ota.first().copied(),
            Some(n) => {
                let i = self.ota.iter().position(|s| s.ota == Some(n))?;
                let next = self.ota[(i + 1) % self.ota.len()];
                (next != running).then_some(next)
            }
        }
    }

    /// `esp_ota_set_boot_partition`: writes the next sequence number that selects `slot` into the
    /// otadata sector not holding the newest entry.
    pub fn set_boot(&self, flash: &mut Flash, slot: AppSlot) -> Result<(), FlashError> {
        let (Some(at), Some(n)) = (self.otadata, slot.ota) else { return Ok(()) };
        let count = self.ota.len().max(1) as u32;
        let index = self.ota.iter().position(|s| s.ota == Some(n)).unwrap_or(0) as u32;
        let entries = [entry(flash, at)?, entry(flash, at + SECTOR)?];
        let current = entries.iter().flatten().map(|e| e.0).max().unwrap_or(0);
        let mut seq = current + 1;
        while (seq - 1) % count != index {
            seq += 1;
        }
        // Write into the sector that does not hold the newest entry, so a power cut mid-write
        // leaves the old choice intact.
        let target = match entries {
            [Some(a), Some(b)] if a.0 >= b.0 => at + SECTOR,
            [Some(_), None] => at + SECTOR,
            _ => at,
        };
        let mut e = [0xFFu8; ENTRY_LEN];
        e[..4].copy_from_slice(&seq.to_le_bytes());
        e[28..32].copy_from_slice(&rom_crc32_le(&seq.to_le_bytes()).to_le_bytes());
        flash.erase_range(target, SECTOR)?;
        flash.write(target, &e)
    }

    /// A partition table (binary, as `gen_esp32part.py` writes it) with the default scheme, for
    /// flashing whole virtual ESP32s.
    pub fn default_table_bytes() -> Vec<u8> {
        let rows: [(&str, u8, u8, u32, u32); 6] = [
            ("nvs", 1, 0x02, 0x9000, 0x5000),
            ("otadata", 1, 0x00, 0xE000, 0x2000),
            ("app0", 0, 0x10, 0x10000, 0x140000),
            ("app1", 0, 0x11, 0x150000, 0x140000),
            ("spiffs", 1, 0x82, 0x290000, 0x160000),
            ("coredump", 1, 0x03, 0x3F0000, 0x10000),
        ];
        let mut out = Vec::new();
        for (label, ty, sub, offset, size) in rows {
            out.extend_from_slice(&ENTRY_MAGIC);
            out.extend_from_slice(&[ty, sub]);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            let mut l = [0u8; 16];
            l[..label.len()].copy_from_slice(label.as_bytes());
            out.extend_from_slice(&l);
            out.extend_from_slice(&0u32.to_le_bytes());
        }
        out.resize(0xC00, 0xFF);
        out
    }
}

/// `(seq, state)` of the otadata entry at `at`, when it is valid.
fn entry(flash: &Flash, at: usize) -> Result<Option<(u32, u32)>, FlashError> {
    let e = flash.read(at, ENTRY_LEN)?;
    let seq = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
    let state = u32::from_le_bytes([e[24], e[25], e[26], e[27]]);
    let crc = u32::from_le_bytes([e[28], e[29], e[30], e[31]]);
    // ESP_OTA_IMG_INVALID (3) and ESP_OTA_IMG_ABORTED (4) do not boot.
    let ok = seq != u32::MAX && seq != 0 && crc == rom_crc32_le(&e[..4]) && state != 3 && state != 4;
    Ok(ok.then_some((seq, state)))
}

fn newest_seq(flash: &Flash, at: usize) -> Option<u32> {
    let a = entry(flash, at).ok().flatten();
    let b = entry(flash, at + SECTOR).ok().flatten();
    a.into_iter().chain(b).map(|e| e.0).max()
}

/// The ROM's `crc32_le(UINT32_MAX, data)`, which otadata entries carry.
fn rom_crc32_le(data: &[u8]) -> u32 {
    let mut crc = 0u32; // !UINT32_MAX
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_and_boot_selection() {
        let mut flash = Flash::erased(4 << 20).unwrap();
        let map = PartitionMap::read(&flash).unwrap();
        assert!(!map.from_flash);
        let first = map.boot_slot(&flash).unwrap();
        assert_eq!(first.offset, 0x10000);
        let next = map.next_update_slot(first).unwrap();
        assert_eq!(next.offset, 0x150000);
        map.set_boot(&mut flash, next).unwrap();
        assert_eq!(map.boot_slot(&flash), Some(next));
        map.set_boot(&mut flash, first).unwrap();
        assert_eq!(map.boot_slot(&flash), Some(first));
        map.set_boot(&mut flash, next).unwrap();
        assert_eq!(map.boot_slot(&flash), Some(next));
    }

    #[test]
    fn a_flashed_table_is_read() {
        let flash = Flash::with_image(4 << 20, TABLE_OFFSET, &PartitionMap::default_table_bytes()).unwrap();
        let map = PartitionMap::read(&flash).unwrap();
        assert!(map.from_flash);
        assert_eq!(map.ota.len(), 2);
        assert_eq!(map.otadata, Some(0xE000));
        assert_eq!(map.slots()[1].label(), "ota_1");
    }
}
