//! An ESP32's flash map: the partition table at 0x8000 (or, when none was flashed, the
//! arduino-esp32 "default" scheme), its OTA app slots, and `otadata`, the two sectors that say
//! which slot boots and in what state its app is. Written from the facts in ESP-IDF
//! (`bootloader_support/include/esp_flash_partitions.h`, `bootloader_support/src/
//! bootloader_common_loader.c`, `bootloader_support/src/bootloader_utility.c`,
//! `app_update/esp_ota_ops.c`, release/v5.4 and master):
//!
//! - An otadata entry is 32 bytes: `ota_seq` (u32), `seq_label[20]`, `ota_state` (u32), `crc`
//!   (u32, the ROM's `crc32_le(UINT32_MAX, ota_seq)`, over the 4 bytes of `ota_seq` only). Entry
//!   0 is at the start of the first otadata sector, entry 1 at the start of the second.
//! - An entry is unusable when `ota_seq` is 0xFFFFFFFF, its state is INVALID or ABORTED, or its
//!   CRC is wrong; of two usable entries the higher `ota_seq` wins (entry 0 on a tie). The slot it
//!   names is `(ota_seq - 1) % number_of_ota_slots`.
//! - With `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE` (arduino-esp32 builds with it:
//!   `configs/defconfig.common` of esp32-arduino-lib-builder, every release branch since
//!   2022-07, "Enable BOOTLOADER_APP_ROLLBACK (#73)"): `esp_ota_set_boot_partition` writes the new
//!   entry as NEW; at every boot the bootloader first turns any PENDING_VERIFY entry into ABORTED
//!   (the app had its chance and did not confirm), then, if the entry it boots is NEW, writes it
//!   as PENDING_VERIFY; `esp_ota_mark_app_valid_cancel_rollback` writes the active entry as VALID.
//!   So an app that never confirms itself runs once; the next reset boots the previous slot.

use super::flash::{Flash, FlashError, SECTOR};

/// Where the partition table lives.
pub const TABLE_OFFSET: usize = 0x8000;
const ENTRY_MAGIC: [u8; 2] = [0xAA, 0x50];
const ENTRY_LEN: usize = 32;

/// `esp_ota_img_states_t`, the `ota_state` of an otadata entry (`esp_flash_partitions.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtaState {
    /// 0x0: just written by an OTA update, not booted yet.
    New,
    /// 0x1: booted once by the bootloader, not confirmed by the app yet.
    PendingVerify,
    /// 0x2: confirmed by the app (`esp_ota_mark_app_valid_cancel_rollback`).
    Valid,
    /// 0x3: rejected by the app (`esp_ota_mark_app_invalid_rollback_and_reboot`); never booted.
    Invalid,
    /// 0x4: reset while PENDING_VERIFY; never booted again.
    Aborted,
    /// 0xFFFFFFFF: written without rollback support (or by the bootloader's first boot): boots.
    Undefined,
    /// Any other value (boots, as the bootloader only refuses INVALID and ABORTED).
    Other(u32),
}

impl OtaState {
    /// The state stored as `raw`.
    pub fn from_raw(raw: u32) -> OtaState {
        match raw {
            0x0 => OtaState::New,
            0x1 => OtaState::PendingVerify,
            0x2 => OtaState::Valid,
            0x3 => OtaState::Invalid,
            0x4 => OtaState::Aborted,
            0xFFFF_FFFF => OtaState::Undefined,
            other => OtaState::Other(other),
        }
    }

    /// The stored value.
    pub fn raw(self) -> u32 {
        match self {
            OtaState::New => 0x0,
            OtaState::PendingVerify => 0x1,
            OtaState::Valid => 0x2,
            OtaState::Invalid => 0x3,
            OtaState::Aborted => 0x4,
            OtaState::Undefined => 0xFFFF_FFFF,
            OtaState::Other(v) => v,
        }
    }
}

/// One otadata entry (`esp_ota_select_entry_t`), as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtaEntry {
    /// `ota_seq`.
    pub seq: u32,
    /// `seq_label` (unused by the bootloader; kept as found).
    pub label: [u8; 20],
    /// `ota_state`, raw.
    pub state: u32,
    /// `crc`.
    pub crc: u32,
}

impl OtaEntry {
    /// An erased entry (all 0xFF).
    pub const ERASED: OtaEntry =
        OtaEntry { seq: u32::MAX, label: [0xFF; 20], state: u32::MAX, crc: u32::MAX };

    fn from_bytes(e: &[u8]) -> OtaEntry {
        let word = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
        let mut label = [0u8; 20];
        label.copy_from_slice(&e[4..24]);
        OtaEntry { seq: word(0), label, state: word(24), crc: word(28) }
    }

    fn to_bytes(self) -> [u8; ENTRY_LEN] {
        let mut e = [0u8; ENTRY_LEN];
        e[..4].copy_from_slice(&self.seq.to_le_bytes());
        e[4..24].copy_from_slice(&self.label);
        e[24..28].copy_from_slice(&self.state.to_le_bytes());
        e[28..32].copy_from_slice(&self.crc.to_le_bytes());
        e
    }

    /// Its state.
    pub fn ota_state(&self) -> OtaState {
        OtaState::from_raw(self.state)
    }

    /// `bootloader_common_ota_select_crc`: the CRC its `ota_seq` must carry.
    fn seq_crc(&self) -> u32 {
        rom_crc32_le(&self.seq.to_le_bytes())
    }

    fn crc_ok(&self) -> bool {
        self.crc == self.seq_crc()
    }

    /// `bootloader_common_ota_select_invalid`: erased, INVALID or ABORTED (the CRC aside).
    fn unusable(&self) -> bool {
        self.seq == u32::MAX || matches!(self.ota_state(), OtaState::Invalid | OtaState::Aborted)
    }

    /// `bootloader_common_ota_select_valid`: usable and its CRC right.
    pub fn is_valid(&self) -> bool {
        !self.unusable() && self.crc_ok()
    }

    /// `ota_seq` erased or its CRC wrong: the "initial contents" the bootloader repairs.
    fn is_initial(&self) -> bool {
        self.seq == u32::MAX || !self.crc_ok()
    }
}

/// `bootloader_common_get_active_otadata`: the entry that decides, if any.
fn active_entry(e: &[OtaEntry; 2]) -> Option<usize> {
    match (e[0].is_valid(), e[1].is_valid()) {
        (true, true) => Some(if e[0].seq.max(e[1].seq) == e[0].seq { 0 } else { 1 }),
        (true, false) => Some(0),
        (false, true) => Some(1),
        (false, false) => None,
    }
}

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

/// Where the bootloader starts looking (`bootloader_utility_get_selected_boot_partition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootStart {
    /// `None`: the factory index; `Some(n)`: the `ota_n` index.
    pub index: Option<u8>,
    /// Both otadata entries were erased (or had bad CRCs) and there is no factory app: the
    /// bootloader then writes a VALID entry for the slot it ends up booting (`set_actual_ota_seq`).
    pub initial: bool,
}

/// What `esp_ota_mark_app_valid_cancel_rollback` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkValid {
    /// The active entry was not VALID; it is now.
    Marked,
    /// The active entry was already VALID: nothing written.
    AlreadyValid,
    /// No usable otadata entry, or no OTA slot (the factory app runs): `ESP_FAIL`, "Running
    /// firmware is factory".
    NotOta,
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

    /// Every app slot, factory first.
    pub fn slots(&self) -> Vec<AppSlot> {
        self.factory.iter().chain(&self.ota).copied().collect()
    }

    /// The number of OTA slots (`esp_ota_get_app_partition_count`, the bootloader's `app_count`).
    fn ota_count(&self) -> u32 {
        self.ota.len() as u32
    }

    /// The OTA slot an `ota_seq` selects: `(ota_seq - 1) % app_count`, in unsigned arithmetic.
    fn slot_of_seq(&self, seq: u32) -> Option<u8> {
        (self.ota_count() > 0).then(|| (seq.wrapping_sub(1) % self.ota_count()) as u8)
    }

    fn ota_slot(&self, n: u8) -> Option<AppSlot> {
        self.ota.iter().find(|s| s.ota == Some(n)).copied()
    }

    /// Both otadata entries, or `None` without an otadata partition.
    pub fn otadata_entries(&self, flash: &Flash) -> Result<Option<[OtaEntry; 2]>, FlashError> {
        let Some(at) = self.otadata else { return Ok(None) };
        let a = OtaEntry::from_bytes(&flash.read(at, ENTRY_LEN)?);
        let b = OtaEntry::from_bytes(&flash.read(at + SECTOR, ENTRY_LEN)?);
        Ok(Some([a, b]))
    }

    /// Writes entry `i` the way both the bootloader (`write_otadata`) and the app
    /// (`rewrite_ota_seq`) do: erase its sector, write the 32 bytes.
    fn write_entry(&self, flash: &mut Flash, i: usize, e: OtaEntry) -> Result<(), FlashError> {
        let Some(at) = self.otadata else { return Ok(()) };
        let at = at + i * SECTOR;
        flash.erase_range(at, SECTOR)?;
        flash.write(at, &e.to_bytes())
    }

    /// What the second-stage bootloader does with otadata before loading an app
    /// (`bootloader_utility_get_selected_boot_partition`, rollback enabled): PENDING_VERIFY
    /// entries become ABORTED, the active entry picks the slot, and a NEW active entry becomes
    /// PENDING_VERIFY. Writes to flash as the bootloader does.
    pub fn select_boot(&self, flash: &mut Flash) -> Result<BootStart, FlashError> {
        let Some(mut e) = self.otadata_entries(flash)? else {
            return Ok(BootStart { index: None, initial: false });
        };
        for (i, entry) in e.iter_mut().enumerate() {
            if entry.ota_state() == OtaState::PendingVerify {
                entry.state = OtaState::Aborted.raw();
                self.write_entry(flash, i, *entry)?;
            }
        }
        if (e[0].unusable() && e[1].unusable()) || self.ota.is_empty() {
            // Both empty (or invalid), or no OTA slot: factory, else ota_0.
            if self.factory.is_some() {
                return Ok(BootStart { index: None, initial: false });
            }
            return Ok(BootStart { index: Some(0), initial: e[0].is_initial() && e[1].is_initial() });
        }
        let Some(active) = active_entry(&e) else {
            // "ota data partition invalid": factory, or every partition from the factory index on.
            return Ok(BootStart { index: None, initial: false });
        };
        if e[active].ota_state() == OtaState::New {
            e[active].state = OtaState::PendingVerify.raw();
            self.write_entry(flash, active, e[active])?;
        }
        Ok(BootStart { index: self.slot_of_seq(e[active].seq), initial: false })
    }

    /// The order the bootloader tries app partitions in (`bootloader_utility_load_boot_image`):
    /// from `start` down to the factory app, then the OTA slots after `start`. Slots the table does
    /// not have are skipped.
    pub fn load_order(&self, start: Option<u8>) -> Vec<AppSlot> {
        let mut order = Vec::new();
        if let Some(n) = start {
            order.extend((0..=n).rev().filter_map(|i| self.ota_slot(i)));
        }
        order.extend(self.factory);
        let after = start.map_or(0, |n| u32::from(n) + 1);
        order.extend((after..self.ota_count()).filter_map(|i| self.ota_slot(i as u8)));
        order
    }

    /// `set_actual_ota_seq`: after booting `slot` from initial otadata, the bootloader records
    /// it as a VALID entry 0 (`ota_seq = index + 1`). Nothing for the factory app.
    pub fn record_initial_boot(&self, flash: &mut Flash, slot: AppSlot) -> Result<(), FlashError> {
        let Some(n) = slot.ota else { return Ok(()) };
        let mut e = OtaEntry::ERASED;
        e.seq = u32::from(n) + 1;
        e.state = OtaState::Valid.raw();
        e.crc = e.seq_crc();
        self.write_entry(flash, 0, e)
    }

    /// `esp_ota_get_state_partition`: the state of the first entry (0, then 1) that names `slot`
    /// with a right CRC; `None` for the factory app or when no entry names it.
    pub fn state_of(&self, flash: &Flash, slot: AppSlot) -> Result<Option<OtaState>, FlashError> {
        let (Some(n), Some(e)) = (slot.ota, self.otadata_entries(flash)?) else { return Ok(None) };
        Ok(e.iter().find(|e| self.slot_of_seq(e.seq) == Some(n) && e.crc_ok()).map(OtaEntry::ota_state))
    }

    /// `esp_ota_get_next_update_partition(NULL)`: the OTA slot after `running`, or the first OTA
    /// slot (when `running` is the last one or not an OTA slot). With a single OTA slot that is
    /// the running one itself (the updater then refuses it). `None` without OTA slots.
    pub fn next_update_slot(&self, running: AppSlot) -> Option<AppSlot> {
        let mut after_running = false;
        for s in &self.ota {
            if after_running {
                return Some(*s);
            }
            after_running = *s == running;
        }
        self.ota.first().copied()
    }

    /// `esp_ota_set_boot_partition` once the image has been verified: for an OTA slot, the next
    /// `ota_seq` that selects it, written as NEW into the entry that is not the active one (both
    /// entries unusable: entry 0); for the factory app, otadata erased.
    pub fn set_boot(&self, flash: &mut Flash, slot: AppSlot) -> Result<(), FlashError> {
        let Some(at) = self.otadata else { return Ok(()) };
        let Some(n) = slot.ota else {
            return flash.erase_range(at, 2 * SECTOR);
        };
        let Some(mut e) = self.otadata_entries(flash)? else { return Ok(()) };
        let count = self.ota_count().max(1);
        let id = u32::from(n);
        let (target, seq) = match active_entry(&e) {
            Some(active) => {
                // The smallest seq >= the active one that selects `slot` (`esp_rewrite_ota_data`).
                let seq = e[active].seq;
                let mut i = 0;
                while seq > (id + 1) % count + i * count {
                    i += 1;
                }
                (1 - active, (id + 1) % count + i * count)
            }
            None => (0, id + 1),
        };
        e[target].seq = seq;
        e[target].state = OtaState::New.raw();
        e[target].crc = e[target].seq_crc();
        self.write_entry(flash, target, e[target])
    }

    /// `esp_ota_mark_app_valid_cancel_rollback`: the active entry becomes VALID.
    pub fn mark_app_valid(&self, flash: &mut Flash) -> Result<MarkValid, FlashError> {
        let Some(e) = self.otadata_entries(flash)? else { return Ok(MarkValid::NotOta) };
        let Some(active) = active_entry(&e).filter(|_| !self.ota.is_empty()) else {
            return Ok(MarkValid::NotOta);
        };
        if e[active].ota_state() == OtaState::Valid {
            return Ok(MarkValid::AlreadyValid);
        }
        let mut entry = e[active];
        entry.state = OtaState::Valid.raw();
        entry.crc = entry.seq_crc();
        self.write_entry(flash, active, entry)?;
        Ok(MarkValid::Marked)
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
        table_bytes(&rows)
    }
}

/// A binary partition table from `(label, type, subtype, offset, size)` rows.
fn table_bytes(rows: &[(&str, u8, u8, u32, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(label, ty, sub, offset, size) in rows {
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
mod tests;
