//! Writing an ESP8266 through its ROM bootloader, on espflash's public `Connection`/`Command`
//! API (espflash dropped the ESP8266 in 3.0).
//!
//! The ROM has no compression, no MD5 and no read-back, and its FLASH_BEGIN erases the wrong
//! amount unless the host asks for a corrected size (esptool's `get_erase_size`). What the ROM
//! cannot check, the update server confirms later: the flash records the image's MD5 for this
//! MAC, and the first check-in that reports it marks the flash confirmed.

use std::time::Duration;

use espflash::command::{Command, CommandType};
use espflash::connection::Connection;

use super::link::Cancel;
use super::progress::{FlashUpdate, Meter, Phase};

/// Chip magic the ESP8266 ROM returns for READ_REG 0x40001000.
pub const MAGIC: u32 = 0xFFF0_C101;
/// Where the chip magic is read.
pub const MAGIC_REG: u32 = 0x4000_1000;
/// The ROM takes flash data in blocks of this size.
pub const BLOCK: usize = 0x400;
const SECTOR: u32 = 0x1000;
const SECTORS_PER_BLOCK: u32 = 16;

/// The efuse words the MAC is made of.
const EFUSE_MAC0: u32 = 0x3FF0_0050;
const EFUSE_MAC1: u32 = 0x3FF0_0054;
const EFUSE_MAC3: u32 = 0x3FF0_005C;

/// SPI0 (the flash controller) registers.
const SPI_BASE: u32 = 0x6000_0200;
const SPI_CMD: u32 = SPI_BASE;
const SPI_USR: u32 = SPI_BASE + 0x1C;
const SPI_USR1: u32 = SPI_BASE + 0x20;
const SPI_USR2: u32 = SPI_BASE + 0x24;
const SPI_W0: u32 = SPI_BASE + 0x40;
const SPI_CMD_USR: u32 = 1 << 18;
const SPI_USR_COMMAND: u32 = 1 << 31;
const SPI_USR_MISO: u32 = 1 << 28;
/// JEDEC "read identification".
const RDID: u32 = 0x9F;

/// Time allowed for one 1 KiB data block (the ROM writes it in milliseconds).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(3);

/// The erase size to put in FLASH_BEGIN so the ROM erases exactly the sectors `size` bytes at
/// `offset` need. The ROM erases the sectors up to the next 64 KiB boundary and then the
/// requested count again from the start, so the request must be cut to make up for it.
pub fn rom_erase_size(offset: u32, size: u32) -> u32 {
    let sectors = size.div_ceil(SECTOR);
    let first = offset / SECTOR;
    let head = (SECTORS_PER_BLOCK - first % SECTORS_PER_BLOCK).min(sectors);
    if sectors < 2 * head { sectors.div_ceil(2) * SECTOR } else { (sectors - head) * SECTOR }
}

/// The station MAC from the efuses, `18:FE:34:…`; `None` when the efuses name no OUI this code
/// knows (the flash still works).
pub fn read_mac(conn: &mut Connection) -> Result<Option<String>, espflash::Error> {
    let mac0 = conn.read_reg(EFUSE_MAC0)?;
    let mac1 = conn.read_reg(EFUSE_MAC1)?;
    let mac3 = conn.read_reg(EFUSE_MAC3)?;
    let oui = if mac3 != 0 {
        [(mac3 >> 16) as u8, (mac3 >> 8) as u8, mac3 as u8]
    } else {
        match (mac1 >> 16) & 0xFF {
            0 => [0x18, 0xFE, 0x34],
            1 => [0xAC, 0xD0, 0x74],
            _ => return Ok(None),
        }
    };
    let mac = [oui[0], oui[1], oui[2], (mac1 >> 8) as u8, mac1 as u8, (mac0 >> 24) as u8];
    Ok(Some(mac.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")))
}

/// The SPI flash's JEDEC id (manufacturer | type << 8 | capacity << 16), read by driving the
/// flash controller's registers: the ROM has no command for it.
pub fn flash_id(conn: &mut Connection) -> Result<u32, espflash::Error> {
    // The ROM only talks to the flash after a FLASH_BEGIN (esptool does the same).
    begin(conn, 0, 0, 0)?;
    let old_usr = conn.read_reg(SPI_USR)?;
    let old_usr2 = conn.read_reg(SPI_USR2)?;
    conn.write_reg(SPI_USR, SPI_USR_COMMAND | SPI_USR_MISO, None)?;
    conn.write_reg(SPI_USR2, (7 << 28) | RDID, None)?;
    conn.write_reg(SPI_USR1, (24 - 1) << 8, None)?;
    conn.write_reg(SPI_W0, 0, None)?;
    conn.write_reg(SPI_CMD, SPI_CMD_USR, None)?;
    let mut done = false;
    for _ in 0..10 {
        if conn.read_reg(SPI_CMD)? & SPI_CMD_USR == 0 {
            done = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let id = conn.read_reg(SPI_W0)? & 0xFF_FFFF;
    conn.write_reg(SPI_USR, old_usr, None)?;
    conn.write_reg(SPI_USR2, old_usr2, None)?;
    if !done {
        return Err(espflash::Error::InvalidResponse(
            "the flash controller did not finish reading the flash id".into(),
        ));
    }
    Ok(id)
}

/// Flash size from a JEDEC id: the capacity byte is log2 of the size in bytes.
pub fn flash_size(id: u32) -> Option<u64> {
    let cap = (id >> 16) & 0xFF;
    (0x12..=0x19).contains(&cap).then(|| 1u64 << cap)
}

fn begin(conn: &mut Connection, offset: u32, size: u32, blocks: u32) -> Result<(), espflash::Error> {
    let erase = rom_erase_size(offset, size);
    let timeout = CommandType::FlashBegin.timeout_for_size(size);
    conn.with_timeout(timeout, |c| {
        c.command(Command::FlashBegin {
            size: erase,
            blocks,
            block_size: BLOCK as u32,
            offset,
            supports_encryption: false,
        })
        .map(drop)
    })
}

/// Erases and writes `data` at `offset` in 1 KiB blocks, reporting bytes as they go (counted on
/// from what `meter` already holds: several regions make one progress bar). Stops between blocks
/// when cancelled (the port is cut as well, so a blocked wait ends too).
pub fn write(
    conn: &mut Connection,
    offset: u32,
    data: &[u8],
    meter: &mut Meter,
    cancel: &Cancel,
    report: &mut dyn FnMut(FlashUpdate),
) -> Result<(), espflash::Error> {
    let before = meter.written();
    let blocks = data.len().div_ceil(BLOCK);
    report(FlashUpdate::Phase(Phase::Erase));
    begin(conn, offset, data.len() as u32, blocks as u32)?;
    report(FlashUpdate::Phase(Phase::Write));
    meter.set_phase(Phase::Write);
    for (seq, block) in data.chunks(BLOCK).enumerate() {
        if cancel.is_cancelled() {
            return Err(espflash::Error::Cancelled);
        }
        conn.with_timeout(BLOCK_TIMEOUT, |c| {
            c.command(Command::FlashData { data: block, pad_to: BLOCK, pad_byte: 0xFF, sequence: seq as u32 })
                .map(drop)
        })?;
        let written = before + ((seq + 1) * BLOCK).min(data.len()) as u64;
        if let Some(p) = meter.record(written) {
            report(FlashUpdate::Progress(p));
        }
    }
    Ok(())
}

/// Leaves the bootloader: FLASH_END with "run user code", so the new firmware starts (a board
/// with reset lines is then also reset by the caller). The ROM may jump before answering, so
/// the answer is not waited for.
pub fn run_firmware(conn: &mut Connection) -> Result<(), espflash::Error> {
    conn.with_timeout(Duration::from_secs(1), |c| c.write_command(Command::FlashEnd { reboot: false }))?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erase_size_matches_the_rom_workaround() {
        // The reference case: 0x4B3C4 bytes at 0 → 0x3C000.
        assert_eq!(rom_erase_size(0, 0x4B3C4), 0x3C000);
        // Small writes: half the sectors, rounded up.
        assert_eq!(rom_erase_size(0, 0x1000), 0x1000);
        assert_eq!(rom_erase_size(0, 0x3000), 0x2000);
        // Starting mid-block: the head is the sectors up to the next 64 KiB boundary.
        assert_eq!(rom_erase_size(0xF000, 0x1000), 0x1000);
        assert_eq!(rom_erase_size(0x8000, 0x20000), 0x18000);
        assert_eq!(rom_erase_size(0, 0), 0);
    }

    #[test]
    fn flash_sizes_from_ids() {
        assert_eq!(flash_size(0x1640EF), Some(4 << 20));
        assert_eq!(flash_size(0x144020), Some(1 << 20));
        assert_eq!(flash_size(0x18_4068), Some(16 << 20));
        assert_eq!(flash_size(0xFFFFFF), None);
        assert_eq!(flash_size(0), None);
    }
}
