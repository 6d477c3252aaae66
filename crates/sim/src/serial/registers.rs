//! What READ_REG and WRITE_REG reach: the chip-detect magic, efuses, the UART divider, and the
//! SPI flash controller (hosts read the flash's JEDEC id by driving its registers), plus plain
//! memory for everything else.

use std::collections::HashMap;

/// Where the ROM keeps the word hosts read to tell chips apart.
pub const CHIP_DETECT_MAGIC_REG: u32 = 0x4000_1000;

/// SPI_CMD's "start user command" bit; the controller clears it when done.
const SPI_USR: u32 = 1 << 18;

/// SPI flash controller registers a host drives to send a flash command.
#[derive(Debug, Clone, Copy)]
pub struct SpiLayout {
    /// SPI_CMD (also the base).
    pub cmd: u32,
    /// SPI_USR2: command bits and opcode.
    pub usr2: u32,
    /// SPI_W0: first data word.
    pub w0: u32,
}

/// A chip's fixed answers.
#[derive(Debug, Clone)]
pub struct ChipFacts {
    /// The word at [`CHIP_DETECT_MAGIC_REG`].
    pub magic: u32,
    /// Status bytes in ROM answers (2 on the ESP8266, 4 on newer ROMs).
    pub rom_status_len: usize,
    /// The SYNC answer's value field from the ROM (non-zero; a stub sends 0).
    pub rom_sync_value: u32,
    /// The SPI flash controller.
    pub spi: SpiLayout,
    /// UART_CLKDIV's address and the UART clock, so the divider matches the baud rate.
    pub uart_clkdiv: (u32, u32),
    /// Read-only words: efuses.
    pub fixed: Vec<(u32, u32)>,
}

/// The register file.
#[derive(Debug)]
pub struct Registers {
    facts: ChipFacts,
    jedec_id: u32,
    memory: HashMap<u32, u32>,
}

impl Registers {
    /// Registers for a chip whose flash answers RDID with `jedec_id`.
    pub fn new(facts: ChipFacts, jedec_id: u32) -> Registers {
        Registers { facts, jedec_id, memory: HashMap::new() }
    }

    /// The chip's facts.
    pub fn facts(&self) -> &ChipFacts {
        &self.facts
    }

    /// READ_REG at `addr`, with the UART running at `baud`.
    pub fn read(&self, addr: u32, baud: u32) -> u32 {
        if addr == CHIP_DETECT_MAGIC_REG {
            return self.facts.magic;
        }
        if addr == self.facts.uart_clkdiv.0 {
            return self.facts.uart_clkdiv.1 / baud.max(1);
        }
        if let Some(&(_, v)) = self.facts.fixed.iter().find(|(a, _)| *a == addr) {
            return v;
        }
        self.memory.get(&addr).copied().unwrap_or(0)
    }

    /// WRITE_REG: only the `mask` bits change. Setting SPI_CMD's USR bit runs the flash command.
    pub fn write(&mut self, addr: u32, value: u32, mask: u32) {
        if addr == CHIP_DETECT_MAGIC_REG || self.facts.fixed.iter().any(|(a, _)| *a == addr) {
            return; // ROM and efuses do not change
        }
        let old = self.memory.get(&addr).copied().unwrap_or(0);
        let new = (old & !mask) | (value & mask);
        self.memory.insert(addr, new);
        if addr == self.facts.spi.cmd && new & SPI_USR != 0 {
            self.run_spi_command();
            self.memory.insert(addr, new & !SPI_USR);
        }
    }

    /// The flash chip answers the opcode in SPI_USR2's low byte; the answer lands in W0.
    fn run_spi_command(&mut self) {
        let opcode = self.memory.get(&self.facts.spi.usr2).copied().unwrap_or(0) as u8;
        let answer = match opcode {
            0x9F => self.jedec_id,              // RDID: manufacturer, type, capacity
            0x05 | 0x35 | 0x15 => 0,            // status registers: idle, no protection
            0xAB => self.jedec_id >> 16 & 0xFF, // release power-down / device id
            _ => return,
        };
        self.memory.insert(self.facts.spi.w0, answer);
    }
}

/// RDID answer of a Winbond W25Q-style flash of `size` bytes: `EF 40 <log2 size>`.
pub fn jedec_id(size: u32) -> u32 {
    0xEF | 0x40 << 8 | size.trailing_zeros() << 16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Registers {
        Registers::new(super::super::esp8266::facts([0x18, 0xFE, 0x34, 1, 2, 3], None), jedec_id(4 << 20))
    }

    #[test]
    fn rdid_through_the_spi_registers_as_esptool_drives_them() {
        let mut r = regs();
        let spi = r.facts().spi;
        r.write(spi.usr2, 7 << 28 | 0x9F, u32::MAX);
        r.write(spi.w0, 0, u32::MAX);
        r.write(spi.cmd, SPI_USR, u32::MAX);
        assert_eq!(r.read(spi.cmd, 115_200) & SPI_USR, 0, "the command completes");
        assert_eq!(r.read(spi.w0, 115_200), 0x1640EF);
    }

    #[test]
    fn masks_and_read_only_words() {
        let mut r = regs();
        r.write(0x3FFE_8000, 0xAABB_CCDD, u32::MAX);
        r.write(0x3FFE_8000, 0x0000_1100, 0x0000_FF00);
        assert_eq!(r.read(0x3FFE_8000, 115_200), 0xAABB_11DD);
        r.write(CHIP_DETECT_MAGIC_REG, 0, u32::MAX);
        assert_eq!(r.read(CHIP_DETECT_MAGIC_REG, 115_200), 0xFFF0_C101);
        assert_eq!(r.read(0x6000_0014, 115_200), 451, "52 MHz / 115200");
    }
}
