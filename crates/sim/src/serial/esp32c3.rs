//! ESP32-C3 facts: chip id 5 in GET_SECURITY_INFO, the efuse words espflash and esptool read for
//! the MAC and revision (v0.4 here), its SPI_MEM controller, and a 40 MHz crystal.

use super::registers::{ChipFacts, SpiLayout};

/// The word at 0x40001000 on an ESP32-C3 ECO3 (revision v0.3/v0.4).
pub const MAGIC: u32 = 0x1B31_506F;
/// The chip id GET_SECURITY_INFO reports.
pub const CHIP_ID: u32 = 5;

/// efuse BLOCK1 (MAC_SPI_8M_SYS) as the ROM maps it.
const BLOCK1: u32 = 0x6000_8844;
/// efuse BLOCK2 (SYS_DATA_PART1).
const BLOCK2: u32 = 0x6000_885C;

/// Register values of an ESP32-C3 with this MAC (`magic`: report another chip's magic instead).
pub fn facts(mac: [u8; 6], magic: Option<u32>) -> ChipFacts {
    let mac0 = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let mac1 = u16::from_be_bytes([mac[0], mac[1]]) as u32;
    // Revision v0.4: WAFER_VERSION_MINOR_LO (bits 114..117 of the block) = 4, MINOR_HI = 0,
    // MAJOR = 0. PKG_VERSION 0 (QFN32), FLASH_CAP 0 (external flash).
    let word3 = 4 << (114 - 96);
    let word5 = 0;
    ChipFacts {
        magic: magic.unwrap_or(MAGIC),
        rom_status_len: 4,
        rom_sync_value: 0x5520_1207,
        spi: SpiLayout { cmd: 0x6000_2000, usr2: 0x6000_2020, w0: 0x6000_2058 },
        uart_clkdiv: (0x6000_0014, 40_000_000),
        fixed: vec![
            (BLOCK1, mac0),
            (BLOCK1 + 4, mac1),
            (BLOCK1 + 8, 0),
            (BLOCK1 + 12, word3),
            (BLOCK1 + 16, 0),
            (BLOCK1 + 20, word5),
            // BLK_VERSION_MAJOR 1 (bits 128..130 of BLOCK2): calibration data present.
            (BLOCK2 + 16, 1),
        ],
    }
}

/// GET_SECURITY_INFO's payload: flags, flash_crypt_cnt, 7 key purposes, chip id, API version.
/// Nothing is secured: no secure boot, no flash encryption, no secure download mode.
pub fn security_info(chip_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(20);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(&chip_id.to_le_bytes());
    out.extend_from_slice(&7u32.to_le_bytes()); // ECO version / API version as the ROM reports it
    out
}
