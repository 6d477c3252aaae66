//! ESP8266 facts: its chip magic, the efuse words that carry the MAC, the UART divider of a 26 MHz
//! crystal, its SPI controller, and the ROM's erase-size bug.

use super::registers::{ChipFacts, SpiLayout};

/// The word at 0x40001000 on every ESP8266.
pub const MAGIC: u32 = 0xFFF0_C101;

/// The MAC prefixes a host can rebuild from the efuses without a third word: code 0 and 1 in
/// bits 16..24 of the second MAC word. Any other prefix goes into the third word.
const OUI_CODES: [([u8; 3], u32); 2] = [([0x18, 0xFE, 0x34], 0), ([0xAC, 0xD0, 0x74], 1)];

/// Register values of an ESP8266 with this MAC (`magic`: report another chip's magic instead).
pub fn facts(mac: [u8; 6], magic: Option<u32>) -> ChipFacts {
    let [o0, o1, o2, m3, m4, m5] = mac;
    let oui = [o0, o1, o2];
    let (code, mac3) = match OUI_CODES.iter().find(|(o, _)| *o == oui) {
        Some(&(_, code)) => (code, 0),
        None => (0, (o0 as u32) << 16 | (o1 as u32) << 8 | o2 as u32),
    };
    // Bits 4 of word 0 and 16 of word 2 stay clear: set, they would make it an ESP8285.
    let mac0 = (m5 as u32) << 24 | 0x0000_0A00;
    let mac1 = 0x0200_0000 | code << 16 | (m3 as u32) << 8 | m4 as u32;
    let mac2 = 0x0000_0000;
    ChipFacts {
        magic: magic.unwrap_or(MAGIC),
        rom_status_len: 2,
        rom_sync_value: 0x2012_0707,
        spi: SpiLayout { cmd: 0x6000_0200, usr2: 0x6000_0224, w0: 0x6000_0240 },
        uart_clkdiv: (0x6000_0014, 52_000_000),
        fixed: vec![(0x3FF0_0050, mac0), (0x3FF0_0054, mac1), (0x3FF0_0058, mac2), (0x3FF0_005C, mac3)],
    }
}

/// What the ESP8266 ROM's FLASH_BEGIN really erases when asked to erase `size` bytes at
/// `offset`: it erases the sectors up to the next 64 KB boundary twice over, so it erases
/// `n + min(n, sectors to the boundary)` sectors for a request of `n`. Hosts compensate by
/// sending esptool's `get_erase_size` value; a host that sends the plain size erases too much
/// (and may wipe what follows the image).
pub fn rom_erase_span(offset: u32, size: u32) -> (u32, u32) {
    const SECTOR: u32 = 0x1000;
    const SECTORS_PER_BLOCK: u32 = 16;
    let n = size.div_ceil(SECTOR);
    let start = offset / SECTOR;
    let head = (SECTORS_PER_BLOCK - start % SECTORS_PER_BLOCK).min(n);
    (start * SECTOR, (n + head) * SECTOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// esptool's workaround, restated: the size a host sends to get `size` bytes erased.
    fn host_erase_size(offset: u32, size: u32) -> u32 {
        let n = size.div_ceil(0x1000);
        let start = offset / 0x1000;
        let head = (16 - start % 16).min(n);
        if n < 2 * head { n.div_ceil(2) * 0x1000 } else { (n - head) * 0x1000 }
    }

    #[test]
    fn the_rom_bug_and_the_host_workaround_cancel_out() {
        // The reference example: 0x4B3C4 bytes at 0 → the host sends 0x3C000.
        assert_eq!(host_erase_size(0, 0x4B3C4), 0x3C000);
        assert_eq!(rom_erase_span(0, 0x3C000), (0, 0x4C000));
        for offset in [0u32, 0x1000, 0x7000, 0xF000, 0x10000, 0x3A000] {
            for size in [1u32, 0x1000, 0x1001, 0x8000, 0x10000, 0x4B3C4, 0x100000] {
                let wanted = size.div_ceil(0x1000) * 0x1000;
                let (start, len) = rom_erase_span(offset, host_erase_size(offset, size));
                assert_eq!(start, offset);
                assert!(len >= wanted && len <= wanted + 0x1000, "{offset:#x}+{size:#x}: {len:#x}");
            }
        }
        // Without the workaround the ROM erases more than asked.
        assert_eq!(rom_erase_span(0, 0x10000), (0, 0x20000));
    }

    #[test]
    fn efuses_carry_the_mac_as_esptool_reads_it() {
        for mac in
            [[0x18, 0xFE, 0x34, 0xA1, 0xB2, 0xC3], [0xAC, 0xD0, 0x74, 1, 2, 3], [0x5C, 0xCF, 0x7F, 9, 8, 7]]
        {
            let f = facts(mac, None);
            let word = |a: u32| f.fixed.iter().find(|(x, _)| *x == a).unwrap().1;
            let (mac0, mac1, mac3) = (word(0x3FF0_0050), word(0x3FF0_0054), word(0x3FF0_005C));
            let oui = if mac3 != 0 {
                [(mac3 >> 16) as u8, (mac3 >> 8) as u8, mac3 as u8]
            } else if (mac1 >> 16) & 0xFF == 0 {
                [0x18, 0xFE, 0x34]
            } else {
                assert_eq!((mac1 >> 16) & 0xFF, 1);
                [0xAC, 0xD0, 0x74]
            };
            let read = [oui[0], oui[1], oui[2], (mac1 >> 8) as u8, mac1 as u8, (mac0 >> 24) as u8];
            assert_eq!(read, mac);
            assert_eq!(mac0 & 1 << 4, 0, "not an ESP8285");
        }
    }
}
